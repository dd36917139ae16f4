"""In-stage checkpoints of a post-training run, so a killed stage resumes exactly: RLVR's (one process: weights,
optimizer, RNG, the sampler's stream, and a JSON of the loop's own state: step, data position, the curve so far,
metrics measured before training), and SFT's and DPO's on any number of ranks (`resume_sharded`). Nothing is
unpickled: tensors load weights-only, the loop's state is JSON."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from olmoflow.contract.context import StageContext
from olmoflow.train import dist_checkpoint
from olmoflow.train.resume import Resumer
from olmoflow.train.world import World


def save_state(d: Path, model: nn.Module, optimizer: torch.optim.Optimizer, loop: dict[str, Any],
               generator: torch.Generator | None = None) -> None:
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
                "generator": generator.get_state() if generator is not None else None,
                "generator_device": str(generator.device) if generator is not None else None}, d / "state.pt")
    (d / "loop.json").write_text(json.dumps(loop))


def load_state(d: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               generator: torch.Generator | None = None) -> dict[str, Any]:
    """Restore everything save_state wrote (onto the model's device, wherever it was saved); returns the loop
    state."""
    try:  # weights only: a store's .work/ may be written by someone else, and a pickle would run their code
        blob = torch.load(d / "state.pt", weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise ValueError(f"{d}/state.pt holds more than tensors and plain data (a pickled object); refusing to "
                         f"load it") from None
    if generator is not None:
        if blob["generator"] is None:
            raise ValueError(f"{d}: in-stage checkpoint has no sampler RNG state")
        saved_on = blob.get("generator_device") or "cpu"
        if saved_on.split(":")[0] != generator.device.type:
            # a CPU and a CUDA generator keep different states: the sampled stream cannot continue exactly
            raise ValueError(f"{d}: in-stage checkpoint was sampling on {saved_on}, this run samples on "
                             f"{generator.device}; resume on the same kind of device (OLMOFLOW_DEVICE)")
        generator.set_state(blob["generator"])
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])  # moves the moments to the parameters' device
    torch.set_rng_state(blob["torch_rng"])
    if blob.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(blob["cuda_rng"])
    return json.loads((d / "loop.json").read_text())


def resume_sharded(ctx: StageContext, world: World, model: nn.Module,
                   optimizer: torch.optim.Optimizer) -> tuple[Resumer, dict[str, Any] | None]:
    """SFT's and DPO's in-stage checkpoints, the pretraining trainer's kind (DCP through train/resume.py: resharded
    when the world size changes, refused when written by another stage or config): (the Resumer that saves the
    next ones, the loop state restored into model and optimizer, or None when the stage starts fresh)."""
    resumer = Resumer(ctx, world)
    state = resumer.latest()
    if state is None:
        return resumer, None
    dist_checkpoint.load(state["folder"], model, optimizer)
    ctx.log.info("%s: resuming at step %d from %s", ctx.stage, state["loop"]["step"], state["folder"])
    return resumer, state["loop"]
