"""Rank-0 side effects and their failures on 2 gloo ranks: `first` hands rank 0's result, or its exception, to
every rank, and `all_ok` makes every rank raise when one failed, so no rank waits on a rank that already gave up."""

from __future__ import annotations

import os
from pathlib import Path

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
