"""`olmoflow stage pretrain` under torchrun (2 CPU ranks, gloo), end to end: rank 0 alone publishes (one artifact,
one MLflow stage run nested under the flow's run, the URI printed once), the weights are the single-process
run's, and a run whose rank is SIGKILLed mid-training leaves nothing published and resumes from its DCP
checkpoint, here through an s3:// store (moto on 127.0.0.1), to the uninterrupted run's weights.

Tolerance as in tests/train/test_parallel.py: 2 ranks sum gradients in another order than one process does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import torch

from olmoflow.artifacts import ArtifactStore, open_artifact
from olmoflow.cli import main
from olmoflow.data.shards import ShardWriter
from olmoflow.data.tokenizer import EOS, encode_docs, train_bpe
from olmoflow.model.checkpoint import load_checkpoint
from olmoflow.storage import join, storage_for

WEIGHT_ATOL = 1e-4
FLOW_RUN = "kfp-run-7"
TRAIN = ["pretrain.steps=24", "pretrain.checkpoint_every=4", "pretrain.warmup_steps=2", "pretrain.log_every=4",
         "pretrain.val_tokens=2048"]


def texts() -> dict[str, list[str]]:
    from pydoc_data.topics import topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = [p.read_text(encoding="utf-8") for p in sorted((stdlib / "json").glob("*.py"))]
    return {"code": [c for c in code if len(c) > 200], "prose": [topics[k] for k in sorted(topics)[:60]]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, str]:
    """A dataset artifact as curate commits it (tokenizer, pretrain shards, held-out text) in a fresh store."""
    root = tmp_path_factory.mktemp("flow")
    store = ArtifactStore(str(root / "store"), "smoke")
    staging = store.staging_dir("curate", "d" * 16)
    by_domain = texts()
    tok = train_bpe((t for ts in by_domain.values() for t in ts), 512)
    tok.save(str(staging / "tokenizer.json"))
    for domain, ts in by_domain.items():
        train, val = ts[1:], ts[:1]
        with ShardWriter(staging / "pretrain" / domain) as w:
            for ids in encode_docs(tok, train, tok.token_to_id(EOS)):
                w.add(ids)
        (staging / "val").mkdir(exist_ok=True)
        (staging / "val" / f"{domain}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in val))
    uri = store.uri("curate", "d" * 16)
    store.commit(staging, uri, {"stage": "curate", "fingerprint": "d" * 16, "kind": "dataset"})
    return root, uri


def stage_args(root: Path, dataset_uri: str, store: str) -> list[str]:
    sets = [f"flow.store={root / store}", *TRAIN]
    return ["stage", "pretrain", "--config", "smoke", *[a for s in sets for a in ("--set", s)],
            "--input", f"dataset={dataset_uri}"]


def torchrun(root: Path, args: list[str], **popen) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "olmoflow.cli", *args], cwd=root, env=env, text=True, **popen)


def committed(root: Path, store: str) -> list[Path]:
    return sorted(p.parent for p in (root / store / "smoke" / "pretrain").glob("*/manifest.json"))


@pytest.fixture(scope="module")
def single(dataset) -> Path:
    """The single-process run (in this process) every torchrun run must reproduce: its payload folder."""
    root, data = dataset
    assert main(stage_args(root, data, "single")) == 0
    (payload,) = committed(root, "single")
    return payload


@pytest.fixture(scope="module")
def two_ranks(dataset) -> tuple[Path, subprocess.CompletedProcess]:
    root, data = dataset
    proc = torchrun(root, stage_args(root, data, "two") + ["--flow-run", FLOW_RUN],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return root, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_rank_zero_alone_publishes_and_the_weights_are_the_single_process_ones(dataset, single, two_ranks):
    from olmoflow.tracking import Tracker

    root, run = two_ranks
    (payload,) = committed(root, "two")
    assert run.stdout.splitlines() == [str(payload)]  # the URI, printed once
    stage_dir = root / "two" / "smoke" / "pretrain"
    assert sorted(p.name for p in stage_dir.iterdir()) == [payload.name]  # no staging or .work left behind

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
    try:
        tracker = Tracker("smoke", FLOW_RUN)
        (stage_run,) = tracker.stage_runs()
        parent = tracker.parent_run_id(create=False)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    assert stage_run.data.tags["mlflow.parentRunId"] == parent
    assert stage_run.data.tags["olmoflow.status"] == "ran" and stage_run.info.status == "FINISHED"
    assert stage_run.data.tags["olmoflow.artifact_uri"] == str(payload)
    manifest = json.loads((payload / "manifest.json").read_text())
    assert manifest["mlflow_run_id"] == stage_run.info.run_id
    assert stage_run.data.metrics["val_loss"] == manifest["metrics"]["val_loss"]

    got, want = load_checkpoint(payload)[0].state_dict(), load_checkpoint(single)[0].state_dict()
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert torch.allclose(v, got[k], rtol=0, atol=WEIGHT_ATOL), k
    ref = json.loads((single / "manifest.json").read_text())["metrics"]
    assert abs(manifest["metrics"]["val_loss"] - ref["val_loss"]) < 1e-4
    assert ref["train_loss"] < 6.0  # it trained (ln 512 = 6.2), so the agreement means something


def _rank_pid(agent: int, rank: int) -> int | None:
    for task in Path(f"/proc/{agent}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(child)
    return None


def test_a_killed_rank_publishes_nothing_and_the_rerun_resumes_through_s3(dataset, two_ranks, s3_uri, tmp_path):
    # The same stage with an s3:// store: both ranks read the dataset from one download, checkpoints go up step by
    # step (each rank its own shards), and rank 1 is SIGKILLed once one is complete.
    root, data = dataset
    (local_data,) = [p for p in (root / "store" / "smoke" / "curate").iterdir() if p.is_dir()]
    store = ArtifactStore(s3_uri, "smoke", cache_dir=tmp_path / "upload")
    staging = store.staging_dir("curate", local_data.name)
    shutil.copytree(local_data, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.json"))
    data_uri = store.uri("curate", local_data.name)
    store.commit(staging, data_uri, {"stage": "curate", "fingerprint": local_data.name, "kind": "dataset"})
    args = stage_args(root, data_uri, "unused")
    args[args.index(f"flow.store={root / 'unused'}")] = f"flow.store={s3_uri}"
    pretrain = join(s3_uri, "smoke", "pretrain")
    storage = storage_for(s3_uri)

    first = torchrun(tmp_path, args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not [k for k in storage.list(pretrain) if k.endswith("/.complete")]:
            assert first.poll() is None and time.time() < deadline, "no in-stage checkpoint before the run ended"
            time.sleep(0.02)
        os.kill(_rank_pid(first.pid, 1), signal.SIGKILL)
        first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode != 0
    assert not [k for k in storage.list(pretrain) if k.endswith("/manifest.json")]

    second = torchrun(tmp_path, args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-3000:]
    resumed = [line for line in err.splitlines() if "pretrain: resuming at step" in line]
    assert len(resumed) == 2 and 4 <= int(resumed[0].split()[-1]) < 24  # both ranks, from a checkpoint
    (uri,) = out.splitlines()
    assert storage.list(pretrain) and not [k for k in storage.list(pretrain) if ".work/" in k]  # work cleared
    payload = open_artifact(uri, kind="checkpoint", cache_dir=tmp_path / "reader").path
    (uninterrupted,) = committed(root, "two")
    got, want = load_checkpoint(payload)[0].state_dict(), load_checkpoint(uninterrupted)[0].state_dict()
    for k, v in want.items():
        assert torch.equal(v, got[k]), k


def test_a_one_node_task_runs_a_distributed_stage_with_a_rank_per_gpu(dataset, single, monkeypatch):
    """What a KFP task on one node with 2 GPUs does (here 2 CPU ranks): torchrun --standalone, rank 0 publishes,
    the task reads the manifest back; run again, the artifact is found and nothing is started."""
    from olmoflow.config import load_config
    from olmoflow.flow.task import run_on_local_gpus

    root, data = dataset
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = load_config("smoke", [f"flow.store={root / 'task'}", *TRAIN])
    first = run_on_local_gpus("pretrain", cfg, {"dataset": data}, 2)
    assert first.status == "ran" and committed(root, "task") == [Path(first.uri)]
    got, want = load_checkpoint(first.uri)[0].state_dict(), load_checkpoint(single)[0].state_dict()
    assert max((got[k] - want[k]).abs().max().item() for k in want) < WEIGHT_ATOL
    assert first.metrics["val_loss"] == pytest.approx(
        json.loads((single / "manifest.json").read_text())["metrics"]["val_loss"], abs=1e-3)

    started = []
    again = run_on_local_gpus("pretrain", cfg, {"dataset": data}, 2, execute=started.append)
    assert again.status == "cached" and again.uri == first.uri and started == []


def test_one_node_tasks_take_a_rank_per_visible_gpu_for_distributed_stages_only(monkeypatch):
    from olmoflow.flow.task import local_ranks, torchrun_argv

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert local_ranks("pretrain", 8) == 4 and local_ranks("long-context", 2) == 2
    assert local_ranks("sft", 8) == 4 and local_ranks("dpo", 8) == 4  # FSDP post-training too
    assert local_ranks("pretrain", 1) == 1 and local_ranks("rlvr", 8) == 1 and local_ranks("curate", 8) == 1
    assert local_ranks("eval", 8) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert local_ranks("pretrain", 8) == 1  # kfp.local on a laptop: the stage runs in the task's process
    assert torchrun_argv(4, ["olmoflow", "stage", "pretrain", "--config", "{}"])[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "olmoflow.cli",
        "stage", "pretrain", "--config", "{}"]
