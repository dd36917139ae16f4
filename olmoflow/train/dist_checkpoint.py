"""Model and optimizer state through torch.distributed.checkpoint (DCP), resharded on load.

Every rank writes its own shards into one `dcp/` folder (`__{rank}_{n}.distcp`; rank 0 writes `.metadata` once all
are written); the keys are the model's parameter names (the same for one process, FSDP or HSDP, with or without
activation checkpointing), so a checkpoint written by N ranks loads on M. One process uses the same format (DCP
needs no process group), which keeps 1 -> N resumes working. `extra` entries ride along: tensors sharded like the
model (a running sum of its weights) reshard with it; a per-rank key (`rng.rank3`) holding bytes is that rank's own.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

FOLDER = "dcp"


@contextlib.contextmanager
def _quiet():
    # With no_dist=True DCP still warns that it "assumes" one process; we chose that, so the note is noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _one_process() -> bool:
    return not (dist.is_available() and dist.is_initialized())


def _states(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    model_sd, optim_sd = get_state_dict(model, opt)
    return {"model": model_sd, "optimizer": optim_sd}


def save(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, extra: dict[str, Any] | None = None) -> None:
    """Collective: every rank calls it with the same folder; it returns once all shards and metadata are written."""
    with _quiet():
        dcp.save({**_states(model, opt), **(extra or {})}, checkpoint_id=Path(folder) / FOLDER,
                 no_dist=_one_process())


def own_files(folder: Path, rank: int) -> list[Path]:
    """The shard files this rank wrote into `folder` (what it uploads itself to a remote store)."""
    return sorted((Path(folder) / FOLDER).glob(f"__{rank}_*.distcp"))


def saved_keys(folder: Path) -> set[str]:
    """Flattened keys in the checkpoint (`model.lm_head.weight`, `rng.rank0`, ...)."""
    path = Path(folder) / FOLDER
    if not (path / ".metadata").exists():
        raise FileNotFoundError(f"in-stage checkpoint {folder} has no {FOLDER}/.metadata (model and optimizer)")
    return set(dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata)


def load(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Collective: fill `model` and `opt` (however sharded now) from the checkpoint in `folder`; `extra` gives the
    other entries to read, each a template of the right kind and shape, and comes back filled."""
    saved_keys(folder)
    states = {**_states(model, opt), **(extra or {})}
    with _quiet():
        dcp.load(states, checkpoint_id=Path(folder) / FOLDER, no_dist=_one_process())
    set_state_dict(model, opt, model_state_dict=states["model"], optim_state_dict=states["optimizer"])
    return {k: states[k] for k in extra or {}}


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights on the CPU of rank 0 ({} on the other ranks): an all-gather under FSDP, one layer at a
    time into CPU memory, so no GPU and no other rank ever holds the whole model."""
    if _one_process():
        return {k: v.detach().cpu() for k, v in get_model_state_dict(model).items()}
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
