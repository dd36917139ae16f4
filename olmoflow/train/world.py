"""Who this process is among data-parallel ranks, and the one place that talks to torch.distributed.

Under `torchrun` (WORLD_SIZE set and > 1) the first `World.current()` joins the process group: gloo on CPU,
NCCL on CUDA. Without WORLD_SIZE it is one process and every call here is a no-op, so single-process runs are
exactly what they were. `sum` adds across ranks, so the trainer's token counts and losses are global.

Side effects that must happen once (a manifest, an MLflow run, a checkpoint's commit) go through `first`: rank 0
does them and every rank gets the result, or the same exception, so no rank waits forever on a rank 0 that
failed. `all_ok` is the same for work every rank does (each uploads its own files): if any rank failed, all raise.
A rank that fails inside a collective (a training step) just exits; torchrun then tears the group down.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def init_from_env() -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), once."""
    if not dist.is_available() or dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def autocast(device: torch.device):
    """bf16 autocast on a GPU (float32 weights, optimizer state and sums: Olmo 3's mixed precision); nothing on the
    CPU, whose float32 runs are the reference the tests compare against."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def shutdown() -> None:
    """Leave the process group (the end of a torchrun command), so torch does not warn about a leaked one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _sendable(e: BaseException) -> BaseException:
    # The exception travels to the other ranks by pickle; one that does not survive that becomes its message.
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        init_from_env()
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def lead(self) -> bool:
        """Rank 0: the one that writes what the run leaves behind."""
        return self.rank == 0

    @property
    def holds_weights(self) -> bool:
        """Whether this rank builds or loads real weights before sharding: rank 0 (or a lone process). The others
        build the model on the meta device and receive their shards from rank 0 (parallel.parallelize): a 32B
        model in float32 is 128 GB of host memory, held once in the run instead of once per rank."""
        return self.lead

    @property
    def weights_device(self) -> torch.device:
        """Where a stage builds its model before the trainer shards it (see `holds_weights`)."""
        return torch.device("cpu") if self.holds_weights else torch.device("meta")

    @property
    def local_rank(self) -> int:
        """Rank on this machine (torchrun's LOCAL_RANK): local rank 0 does a node's shared downloads."""
        return int(os.environ.get("LOCAL_RANK", "0")) if self.size > 1 else 0

    @property
    def device(self) -> torch.device:
        """Where this rank computes: its GPU under NCCL; one process: the GPU if there is one (OLMOFLOW_DEVICE=cpu
        keeps it on the CPU); else the CPU."""
        if self.size > 1:
            if dist.get_backend() == "nccl":
                return torch.device("cuda", torch.cuda.current_device())
            return torch.device("cpu")
        wanted = os.environ.get("OLMOFLOW_DEVICE", "").strip().lower()
        if wanted not in ("", "cpu", "cuda"):
            raise ValueError(f"OLMOFLOW_DEVICE={wanted!r}: expected cpu or cuda")
        if wanted == "cuda" and not torch.cuda.is_available():
            raise ValueError("OLMOFLOW_DEVICE=cuda, but torch sees no CUDA device")
        return torch.device("cuda") if wanted != "cpu" and torch.cuda.is_available() else torch.device("cpu")

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (a no-op for one process)."""
        if self.size > 1:
            dist.all_reduce(x)
        return x

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def first(self, fn: Callable[[], T]) -> T:
        """`fn()` on rank 0 alone; its result on every rank, or its exception raised on every rank."""
        if self.size == 1:
            return fn()
        result, error = None, None
        if self.lead:
            try:
                result = fn()
            except Exception as e:
                error = e
        sent_result, sent_error = self.broadcast((result, _sendable(error) if error is not None else None))
        if error is not None:
            raise error
        if sent_error is not None:
            raise sent_error
        return sent_result

    def all_ok(self, fn: Callable[[], T]) -> T:
        """`fn()` on every rank; when it failed anywhere, every rank raises (its own error, else the first one's)."""
        if self.size == 1:
            return fn()
        result, error = None, None
        try:
            result = fn()
        except Exception as e:
            error = e
        errors: list[Any] = [None] * self.size
        dist.all_gather_object(errors, f"{type(error).__name__}: {error}" if error is not None else None)
        if error is not None:
            raise error
        failed = [(r, msg) for r, msg in enumerate(errors) if msg is not None]
        if failed:
            r, msg = failed[0]
            raise RuntimeError(f"rank {r} failed: {msg}")
        return result
