"""Rank-0 side effects and their failures on 2 gloo ranks: `first` hands rank 0's result, or its exception, to
every rank, and `all_ok` makes every rank raise when one failed, so no rank waits on a rank that already gave up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from distkit import free_port

from olmoflow.artifacts import ArtifactError
from olmoflow.train.world import World


def _outcome(fn) -> str:
    try:
        return f"ok {fn()!r}"
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"})
    world = World.current()

    def fails_on_rank_0():
        raise ArtifactError("s3://b/flow/pretrain/abc: not a complete artifact (no manifest.json)")

    def fails_on_rank_1():
        if world.rank == 1:
            raise ValueError("disk full")
        return world.rank

    results = [_outcome(lambda: world.first(lambda: f"made by rank {world.rank}")),
               _outcome(lambda: world.first(fails_on_rank_0)),
               _outcome(lambda: world.all_ok(fails_on_rank_1)),
               _outcome(lambda: world.all_ok(lambda: world.rank * 10))]
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_rank_zero_results_and_errors_reach_every_rank(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    missing = "ArtifactError: s3://b/flow/pretrain/abc: not a complete artifact (no manifest.json)"
    assert r0 == ["ok 'made by rank 0'", missing, "RuntimeError: rank 1 failed: ValueError: disk full", "ok 0"]
    assert r1 == ["ok 'made by rank 0'", missing, "ValueError: disk full", "ok 10"]


def test_one_process_calls_through():
    world = World()
    assert world.first(lambda: 3) == 3 and world.all_ok(lambda: 4) == 4 and world.local_rank == 0


def test_one_process_computes_on_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.delenv("OLMOFLOW_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert World().device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert World().device == torch.device("cuda")
    monkeypatch.setenv("OLMOFLOW_DEVICE", "cpu")  # kept on the CPU on purpose
    assert World().device == torch.device("cpu")
    monkeypatch.setenv("OLMOFLOW_DEVICE", "tpu")
    with pytest.raises(ValueError, match="OLMOFLOW_DEVICE='tpu': expected cpu or cuda"):
        _ = World().device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("OLMOFLOW_DEVICE", "cuda")
    with pytest.raises(ValueError, match="OLMOFLOW_DEVICE=cuda, but torch sees no CUDA device"):
        _ = World().device


def test_mfu_peak_is_configured_or_the_gpus_datasheet_or_measured(monkeypatch):
    from olmoflow.train import mfu

    assert mfu.peak_flops(torch.device("cuda"), 500.0) == 500e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert mfu.peak_flops(torch.device("cuda")) == 989e12
    cpu = mfu.peak_flops()
    assert 1e8 < cpu < 1e13  # measured: a laptop core to a big socket
