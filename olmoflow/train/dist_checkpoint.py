"""Model and optimizer state through torch.distributed.checkpoint (DCP), resharded on load.

Every rank writes its own shards into one `dcp/` folder (`__{rank}_{n}.distcp`; rank 0 writes `.metadata` once all
are written); the keys are the model's parameter names (the same for one process, FSDP or HSDP, with or without
activation checkpointing), so a checkpoint written by N ranks loads on M. One process uses the same format (DCP
needs no process group), which keeps 1 -> N resumes working. `extra` entries ride along: tensors sharded like the
model (a running sum of its weights) reshard with it; a per-rank key (`rng.rank3`) holding bytes is that rank's own.

Whoever can write a store's `.work/` folder must not run code in the pods that read it, and stock DCP unpickles
two things: `.metadata` and every non-tensor entry (the optimizer's hyperparameters, the RNG bytes). Here the
metadata is read by an unpickler that knows only DCP's own metadata classes, torch dtypes and sizes, and the
entries by torch's weights-only loader; anything else is an UnsafeCheckpoint, one line, never executed.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from olmoflow.artifacts import ArtifactError

FOLDER = "dcp"
METADATA = ".metadata"


class UnsafeCheckpoint(ArtifactError):
    """An in-stage checkpoint holding more than tensors and plain data: refused before any of it runs (an
    ArtifactError, so the CLI reports it in one line)."""


# What DCP's .metadata pickle names (torch 2.13): its own dataclasses, tensor sizes, dtypes and layouts.
_METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                                              "TensorStorageMetadata", "BytesStorageMetadata",
                                              "ChunkStorageMetadata", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _METADATA_GLOBALS.get(module, ()) or (
                module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which is not checkpoint metadata")


class _Reader(dcp.FileSystemReader):
    """DCP's file reader with `.metadata` read by the allow-list unpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = Path(self.path) / METADATA
        try:
            with open(path, "rb") as f:
                metadata = _MetadataUnpickler(f).load()
        except FileNotFoundError:
            raise
        except Exception as e:  # a foreign global, a truncated or garbled file: all the same refusal
            raise UnsafeCheckpoint(f"in-stage checkpoint {path.parent.parent}: {FOLDER}/{METADATA} refused "
                                   f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        if not isinstance(metadata, Metadata):
            raise UnsafeCheckpoint(f"in-stage checkpoint {path.parent.parent}: {FOLDER}/{METADATA} holds a "
                                   f"{type(metadata).__name__}, not DCP metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class _Planner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor entries read by torch's weights-only loader."""

    refused: str | None = None

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        try:
            obj = torch.load(value, weights_only=True)
        except Exception:
            self.refused = f"entry {read_item.dest_index.fqn} is not plain data (a pickled object); refused"
            raise UnsafeCheckpoint(self.refused) from None
        # Handed on re-serialized: what the stock planner unpickles is then our own plain data.
        clean = io.BytesIO()
        torch.save(obj, clean)
        clean.seek(0)
        super().load_bytes(read_item, clean)


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
    return set(_Reader(str(path)).read_metadata().state_dict_metadata)


def load(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Collective: fill `model` and `opt` (however sharded now) from the checkpoint in `folder`; `extra` gives the
    other entries to read, each a template of the right kind and shape, and comes back filled."""
    saved_keys(folder)
    states = {**_states(model, opt), **(extra or {})}
    planner = _Planner()
    try:
        with _quiet():
            dcp.load(states, storage_reader=_Reader(str(Path(folder) / FOLDER)), planner=planner,
                     no_dist=_one_process())
    except BaseException:  # DCP's CheckpointException is a BaseException
        if planner.refused:  # DCP wraps a rank's failure in a many-line report; the reason is one line
            raise UnsafeCheckpoint(f"in-stage checkpoint {folder}: {planner.refused}") from None
        raise
    set_state_dict(model, opt, model_state_dict=states["model"], optim_state_dict=states["optimizer"])
    return {k: states[k] for k in extra or {}}


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights on the CPU of rank 0 ({} on the other ranks): an all-gather under FSDP, one layer at a
    time into CPU memory, so no GPU and no other rank ever holds the whole model."""
    if _one_process():
        return {k: v.detach().cpu() for k, v in get_model_state_dict(model).items()}
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
