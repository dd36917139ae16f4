"""Post-training test kit: a tiny dataset and base checkpoint, the smoke preset's post-training sections with
overrides, a stage context over plain folders, and SFT / DPO on spawned ranks (gloo on 127.0.0.1, as torchrun sets
them up), whose rank 0 leaves the metrics and full weights in `{root}/result.pt`."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from kit import input_from_dir, make_test_context

from olmoflow.config import FlowConfig, from_dict
from olmoflow.contract.context import StageContext
from olmoflow.data.tokenizer import train_bpe
from olmoflow.model import ModelConfig, Olmo3
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.stages import dpo, rlvr, sft

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"sft": sft, "dpo": dpo, "rlvr": rlvr}


class Stop(Exception):
    """Raised from the metrics sink to kill a run after a given step."""


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rows() -> dict[str, list[dict]]:
    """Synthetic arithmetic, as curate writes it: chat SFT, preference pairs whose chosen reply has a consistent
    style the rejected one lacks, and verifiable RL prompts."""
    rng = random.Random(0)
    sums = [(a, b) for a in range(10) for b in range(10)]
    rng.shuffle(sums)
    q = "What is {} plus {}?"
    return {
        "sft": [{"messages": ([{"role": "system", "content": "You are a helpful assistant."}] if i % 3 == 0 else [])
                 + [{"role": "user", "content": q.format(a, b)},
                    {"role": "assistant", "content": f"{a} plus {b} is {a + b}. The answer is {a + b}."}]}
                for i, (a, b) in enumerate(sums[:80])],
        "dpo": [{"messages": [{"role": "user", "content": q.format(a, b)}],
                 "chosen": f"{a} plus {b} is {a + b}. The answer is {a + b}.",
                 "rejected": f"Hmm, maybe {a + b + rng.randint(1, 5)}? I am not sure."} for a, b in sums[:64]],
        "rl": [{"prompt": q.format(a, b), "answer": str(a + b), "verifier": "math"} for a, b in sums],
    }


def make_payloads(root: Path) -> tuple[Path, Path]:
    """(dataset folder, base checkpoint folder) under root."""
    data = root / "dataset"
    rows = _rows()
    for name, r in rows.items():
        _jsonl(data / "post" / f"{name}.jsonl", r)
    # min_frequency=0: this small corpus then still fills all 400 ids the model has; whole numbers stay whole.
    tok = train_bpe([json.dumps(x) for r in rows.values() for x in r] + ["system\nuser\nassistant\n"], 400,
                    min_frequency=0, split_digits=False)
    tok.save(str(data / "tokenizer.json"))
    torch.manual_seed(0)
    model = Olmo3(ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, mlp_hidden=128,
                              vocab_size=400, max_seq_len=256, sliding_window=32, rope_theta=10_000.0))
    save_checkpoint(root / "base", model, data / "tokenizer.json")
    return data, root / "base"


def smoke(*overrides: str) -> FlowConfig:
    preset = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data = {k: preset[k] for k in ("sft", "dpo", "rlvr")}
    for item in overrides:
        key, value = item.split("=")
        section, knob = key.split(".")
        data[section][knob] = yaml.safe_load(value)
    return from_dict(data)


def context(stage: str, cfg: FlowConfig, root: Path, data: Path, ckpt: Path) -> StageContext:
    ctx = make_test_context(stage, cfg, root, {"dataset": input_from_dir(data, "dataset"),
                                               "checkpoint": input_from_dir(ckpt, "checkpoint")})
    ctx.artifacts = []
    ctx.artifact_sink = lambda path, subdir: ctx.artifacts.append(path)
    return ctx


def _worker(rank: int, size: int, port: int, stage: str, root: str, data: str, ckpt: str, overrides: tuple,
            stop_after: int | None) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size), "OLMOFLOW_DEVICE": "cpu"})
    torch.set_num_threads(1)
    try:
        run_stage(stage, Path(root), Path(data), Path(ckpt), overrides, stop_after)
    except Stop:
        pass
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_stage(stage: str, root: Path, data: Path, ckpt: Path, overrides: tuple = (),
              stop_after: int | None = None) -> None:
    """Run `stage` here (one process, or a rank of a world), resuming from root's in-stage checkpoints; the lead
    saves {"metrics", "weights"} to root/result.pt."""
    ctx = context(stage, smoke(*overrides), root, data, ckpt)
    if stop_after is not None:
        def sink(metrics: dict, step: int | None) -> None:
            if step == stop_after:
                raise Stop
        ctx.metrics_sink = sink
    metrics = STAGES[stage].run(ctx)
    if ctx.lead:
        torch.save({"metrics": metrics, "weights": load_checkpoint(ctx.out)[0].state_dict()}, root / "result.pt")


def run_ranks(size: int, stage: str, root: Path, data: Path, ckpt: Path, overrides: tuple = (),
              stop_after: int | None = None) -> dict:
    """`run_stage` on `size` spawned ranks; rank 0's result."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(size, port, stage, str(root), str(data), str(ckpt), overrides, stop_after),
             nprocs=size, join=True)
    return torch.load(root / "result.pt", weights_only=True) if (root / "result.pt").exists() else {}
