"""Multi-process training for the distributed tests: each spawned worker joins a gloo group on 127.0.0.1 the way
torchrun would set it up (env vars), trains the trainkit setup on its shard of the data, and rank 0 writes the
curve and the full weights to `{root}/result.pt`.

With `remote` (an s3:// `.work` prefix) every rank keeps its in-stage checkpoints in its own local folder
`{root}/{machine}rank{R}`, as ranks on separate machines would (set LOCAL_RANK=0 through `env` to match), so only
the store connects them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from kit import make_test_context
from trainkit import flow_config, markov_docs

from olmoflow.contract.context import StageContext
from olmoflow.contract.workdir import WorkDir
from olmoflow.model import Olmo3
from olmoflow.train.loader import TokenLoader
from olmoflow.train.loop import Trainer
from olmoflow.train.resume import Resumer
from olmoflow.train.world import World

# 8 windows of 16 tokens a step: 4 micro-batches on 1 rank, 2 on 2 ranks, 1 on 4 ranks.
DIST_TRAIN = {"steps": 8, "batch_tokens": 128, "micro_batch": 2, "checkpoint_every": 4, "lr": 1e-2}


class Stop(Exception):
    pass


def make_dist_trainer(root: Path, world: World, remote: str | None = None, machine: str = "",
                      average_last: int = 0, **train) -> tuple[StageContext, Trainer]:
    cfg = flow_config("pretrain", **{**DIST_TRAIN, **train})
    ctx = make_test_context("pretrain", cfg, root)
    if remote is not None:
        ctx.work = WorkDir(root / f"{machine}rank{world.rank}", remote=remote)
    torch.manual_seed(cfg.pretrain.seed)
    with world.weights_device:  # as the stages do: ranks > 0 hold no weights; parallelize broadcasts rank 0's
        model = Olmo3(cfg.model)
    loader = TokenLoader({"markov": markov_docs("markov", 200, 0)}, cfg.pretrain.seq_len, cfg.pretrain.micro_batch,
                         seed=cfg.pretrain.seed, rank=world.rank, world=world.size)
    return ctx, Trainer(ctx, model, loader, cfg.pretrain, Resumer(ctx, world), average_last=average_last,
                        world=world)


def train(root: Path, world: World, stop_after: int | None = None, remote: str | None = None, machine: str = "",
          average_last: int = 0, rng_seed: int = 1000, **train) -> Trainer:
    """Resume from the in-stage checkpoint if any, train to the end (or raise Stop after logging `stop_after`),
    and leave the curve and the full weights (averaged, with `average_last`) in root/result.pt (rank 0).

    Each rank seeds its RNG with rng_seed + rank before training and records the state then ("start") and right
    after a resume ("resumed") to root/rng-{machine}rank{R}.pt: tests tell whether every rank got its own back
    (the trainer draws no random numbers, so the state saved at a checkpoint is the "start" one)."""
    ctx, trainer = make_dist_trainer(root, world, remote, machine, average_last, **train)
    if stop_after is not None:
        def sink(metrics, step):
            if step == stop_after:
                _record_average(trainer, root, world)
                raise Stop
        ctx.metrics_sink = sink
    torch.manual_seed(rng_seed + world.rank)
    rng = {"start": torch.get_rng_state()}
    state = trainer.resumer.latest()
    if state is not None:
        trainer.load_state_dict(state)
        rng["resumed"] = torch.get_rng_state()
    torch.save(rng, root / f"rng-{machine}rank{world.rank}.pt")
    result = trainer.fit()
    if average_last:
        _record_average(trainer, root, world)
        trainer.average()
    model = trainer.export_model()
    if world.lead:
        torch.save({"curve": result.curve, "weights": model.state_dict()}, root / "result.pt")
    return trainer


def _record_average(trainer: Trainer, root: Path, world: World) -> None:
    """How many numbers of the running weight sum this rank holds (its local shards), to root/average-numel-rankR.pt."""
    tensors = trainer.sums["average"].tensors if "average" in trainer.sums else None
    if tensors:
        local = sum(t.to_local().numel() if hasattr(t, "to_local") else t.numel() for t in tensors.values())
        torch.save(local, root / f"average-numel-rank{world.rank}.pt")


def _worker(rank: int, size: int, port: int, root: str, env: dict[str, str], stop_after: int | None,
            train_cfg: dict) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size), **env})
    torch.set_num_threads(1)
    try:
        train(Path(root), World.current(), stop_after, **train_cfg)
    except Stop:
        pass
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(size: int, root: Path, env: dict[str, str] | None = None, stop_after: int | None = None,
              **train_cfg) -> None:
    """`train` on `size` spawned ranks (gloo, 127.0.0.1, a free port); `env` adds e.g. the HSDP mesh shape."""
    mp.spawn(_worker, args=(size, free_port(), str(root), env or {}, stop_after, train_cfg), nprocs=size, join=True)
