"""In-stage checkpoints: everything a killed stage needs to continue bit for bit, in `ctx.work` step folders.

A step folder holds `dcp/` (model, optimizer, each rank's RNG states as JSON bytes and any running weight sums,
through torch.distributed.checkpoint: olmoflow/train/dist_checkpoint.py), `state.json` (loader position, skip-step
history, stage extras: the same on every rank) and `meta.json` (stage name, a hash of the stage's resolved config
and input fingerprints, step). A folder written by another stage or config is refused, naming both sides, rather
than silently mixing runs. Nothing in it is unpickled (a store's `.work/` may be written by someone else): tensors
load weights-only, the rest is JSON; a folder that is not so is refused in one line.

With several ranks, rank 0 drives `WorkDir`: it opens the step's folder and tells the others its path, every rank
writes its DCP shards into it, each uploads its own shards when the store is remote (nodes then share no disk),
and rank 0 writes the rest and commits the step after all have. On resume rank 0 picks the newest complete step
and each machine's local rank 0 brings it to that machine's disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from olmoflow.artifacts import ArtifactError
from olmoflow.contract.context import StageContext
from olmoflow.contract.workdir import COMPLETE
from olmoflow.train import dist_checkpoint
from olmoflow.train.world import World

STATE = "state.json"


class ResumeError(ArtifactError):
    """An in-stage checkpoint that does not belong to this run, or is not one olmoflow wrote (an ArtifactError,
    so the CLI reports it in one line)."""


def read_json(path: Path) -> dict[str, Any]:
    """A step folder's JSON object; a missing, garbled or non-object file is a one-line ResumeError (a step
    written before the state was JSON has a state.pt instead, which is never read)."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResumeError(f"in-stage checkpoint {path.parent} has no {path.name} (written by an older olmoflow or "
                          f"not by olmoflow); delete it to start the stage over") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ResumeError(f"in-stage checkpoint {path}: not JSON ({str(e).splitlines()[0]}); delete it to start "
                          f"the stage over") from None
    if not isinstance(value, dict):
        raise ResumeError(f"in-stage checkpoint {path}: not a JSON object; delete it to start the stage over")
    return value


def config_hash(ctx: StageContext) -> str:
    blob = {"stage": ctx.stage, "config": ctx.cfg.stage_config(ctx.stage),
            "inputs": {n: a.fingerprint for n, a in sorted(ctx.inputs.items())}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """This process's RNG states: CPU torch, numpy, Python, and every visible GPU's when there is CUDA."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s, validate=True)), dtype=torch.uint8)


def encode_rng(state: dict[str, Any]) -> bytes:
    """`rng_state()` as JSON bytes (what a checkpoint stores: data, never a pickle)."""
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    version, internal, gauss_next = state["python"]
    out = {"torch": _b64(state["torch"]),
           "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
           "python": [version, list(internal), gauss_next]}
    if "cuda" in state:
        out["cuda"] = [_b64(t) for t in state["cuda"]]
    return json.dumps(out).encode()


def decode_rng(blob: bytes, where: str) -> dict[str, Any]:
    """The `rng_state()` dict that `encode_rng` wrote; anything else is a ResumeError naming `where`."""
    try:
        d = json.loads(blob)
        kind, keys, pos, has_gauss, gauss = d["numpy"]
        version, internal, gauss_next = d["python"]
        state = {"torch": _unb64(d["torch"]),
                 "numpy": (str(kind), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(gauss)),
                 "python": (int(version), tuple(int(i) for i in internal),
                            None if gauss_next is None else float(gauss_next))}
        if "cuda" in d:
            state["cuda"] = [_unb64(s) for s in d["cuda"]]
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise ResumeError(f"in-stage checkpoint {where}: RNG state is not the JSON olmoflow writes ({e}); delete "
                          f"it to start the stage over") from None
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        # A machine with fewer GPUs than the one that saved takes the states of the GPUs it has.
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])


class Resumer:
    def __init__(self, ctx: StageContext, world: World | None = None):
        self.work = ctx.work
        self.stage = ctx.stage
        self.hash = config_hash(ctx)
        self.world = world or World.current()

    def latest(self) -> dict[str, Any] | None:
        """The newest in-stage state of this very run (its `folder` holds the DCP checkpoint for
        `dist_checkpoint.load`), or None when the stage starts fresh. Collective."""
        world = self.world
        name = world.first(self.work.latest_name)
        if name is None:
            return None
        # Rank 0 brings the step to its disk first; then the local rank 0 of every other machine, which finds it
        # already there when the machines share a disk.
        folder = world.first(lambda: self.work.fetch(name))
        world.all_ok(lambda: self.work.fetch(name) if world.local_rank == 0 and not world.lead else None)
        world.all_ok(lambda: _check_complete(folder))
        meta = read_json(folder / "meta.json")
        if (meta.get("stage"), meta.get("config_hash")) != (self.stage, self.hash):
            raise ResumeError(
                f"resume folder {folder} was written by stage {meta.get('stage')!r} with config hash "
                f"{meta.get('config_hash')}, but this run is stage {self.stage!r} with config hash {self.hash}; "
                f"delete {self.work.remote or folder.parent} or run with the config that wrote it")
        return {**read_json(folder / STATE), "folder": folder}

    def save(self, step: int, state: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
             extra: dict[str, Any] | None = None) -> None:
        """Collective: every rank calls it; `state` is the rank-independent rest of the trainer's state, `extra`
        goes into the DCP checkpoint (sharded tensors, this rank's own keys)."""
        world = self.world
        folder: Path = world.first(lambda: self.work.begin(step))
        folder.mkdir(parents=True, exist_ok=True)  # on a machine that does not share rank 0's disk
        for stale in dist_checkpoint.own_files(folder, world.rank):  # a killed save's, which share would upload
            stale.unlink()
        dist_checkpoint.save(folder, model, opt, extra)
        world.all_ok(lambda: self.work.share(step, folder, dist_checkpoint.own_files(folder, world.rank)))

        def commit() -> None:
            # allow_nan: a soup's held-out loss may be NaN; Python's JSON reads it back as it wrote it
            (folder / STATE).write_text(json.dumps(state, allow_nan=True))
            (folder / "meta.json").write_text(json.dumps(
                {"stage": self.stage, "config_hash": self.hash, "step": step}, indent=2))
            self.work.commit(step, folder)

        world.first(commit)
        if not world.lead:
            # What another machine staged for this step is in the store now (rank 0 already moved or removed
            # its own copy, so on a shared disk this finds nothing).
            shutil.rmtree(folder, ignore_errors=True)


def _check_complete(folder: Path) -> None:
    if not (folder / COMPLETE).exists():
        raise FileNotFoundError(f"in-stage checkpoint {folder} is not on this machine")
