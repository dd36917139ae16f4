"""bench/gpu_step.py's logic on CPU (--smoke): every run, the comparisons and the final JSON line.

The outside oracle: transformers' Olmo3ForCausalLM, trained by the script from the same weights on the same batches
in fp32, must follow olmoflow's loss step for step; flex's untrained forward must give SDPA's loss.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from olmoflow.model import ModelConfig
from olmoflow.model.flops import flops_per_token, num_params

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_step.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores; the tiny model gains nothing from a second thread


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env=ENV, cwd=SCRIPT.parents[1])


def test_smoke_runs_every_step_and_ends_with_one_json_line():
    proc = run("--smoke")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    cfg = ModelConfig(**out["config"])
    assert out["smoke"] and out["device"] == "cpu"
    assert out["params"] == num_params(cfg) and out["flops_per_token"] == flops_per_token(cfg, out["seq"])

    runs, compare = out["runs"], out["compare"]
    steps = out["warmup"] + out["steps"]
    for name in ("sdpa", "sdpa-docs", "transformers"):
        r = runs[name]
        assert "error" not in r, (name, r)
        assert r["tokens_per_s"] > 0 and r["mfu"] == pytest.approx(r["tokens_per_s"] * out["flops_per_token"] / 989e12)
        assert len(r["losses"]) == steps
        # untrained, near-uniform predictions over the 256-token vocabulary
        assert abs(r["losses"][0] - math.log(cfg.vocab_size)) < 0.1, (name, r["losses"])
    assert compare["olmoflow_vs_transformers_max_abs_loss_delta"] < 1e-4
    # packing documents changes what tokens see, so the two olmoflow runs really differ
    assert runs["sdpa-docs"]["losses"][0] != runs["sdpa"]["losses"][0]

    for suffix in ("", "_docs"):
        assert compare[f"flex_vs_sdpa{suffix}_max_abs_loss_delta"] < 1e-5
    assert "no CPU backward" in runs["flex"]["skipped"]
    assert compare["block_mask_ms_docs"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gets")
def test_without_cuda_it_exits_with_one_line():
    proc = run()
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["bench/gpu_step.py: needs a CUDA device (torch.cuda.is_available() "
                                                "is False); --smoke runs a tiny config on CPU"]


def test_a_chosen_subset_runs_in_order_and_reports_each_run_as_it_ends():
    proc = run("--smoke", "--runs", "sdpa-compiled,sdpa")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [x.get("run") for x in lines[:2]] == ["sdpa-compiled", "sdpa"] and "runs" in lines[-1]
    assert list(lines[-1]["runs"]) == ["sdpa-compiled", "sdpa"]
    # compiled blocks (pretrain.compile: true) train the same numbers as the eager ones
    assert lines[-1]["compare"]["compiled_vs_eager_sdpa_max_abs_loss_delta"] < 1e-4


def test_an_unknown_run_name_is_one_line():
    proc = run("--smoke", "--runs", "sdpa,fast")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "bench/gpu_step.py: --runs: unknown run(s) fast; known: sdpa, flex, sdpa-docs, flex-docs, sdpa-compiled, "
        "flex-compiled, flex-docs-compiled, transformers"]
