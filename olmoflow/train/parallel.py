"""Data parallelism for the trainers (pretraining's loop, SFT, DPO): FSDP2 (`fully_shard`) over every transformer
block and the root, HSDP when the cluster asks for replicas, and activation checkpointing of the blocks.

    torchrun --nproc-per-node 4 -m olmoflow.cli stage pretrain ...   # OLMOFLOW_REPLICATE=2 OLMOFLOW_SHARD=2

The mesh is 2-D ("replicate", "shard"): parameters are sharded over the "shard" ranks and replicated over the
"replicate" ranks (HSDP, as Olmo 3 trains: shard within a node, replicate across nodes). Sizes come from
OLMOFLOW_REPLICATE / OLMOFLOW_SHARD (set by the cluster launcher), else 1 x world (plain FSDP). Gradients are
SUMMED across ranks, not averaged: the loop already divides each micro-batch's loss by the global number of
scored targets, so the sum is the exact token mean over the global batch whatever the world size.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

from olmoflow.model import Olmo3
from olmoflow.train import dist_checkpoint
from olmoflow.train.world import World


def mesh_shape(world: World) -> tuple[int, int]:
    """(replicate, shard) from OLMOFLOW_REPLICATE / OLMOFLOW_SHARD; either one alone implies the other."""
    rep, shard = os.environ.get("OLMOFLOW_REPLICATE"), os.environ.get("OLMOFLOW_SHARD")
    r = int(rep) if rep else (world.size // int(shard) if shard else 1)
    s = int(shard) if shard else world.size // r
    if r < 1 or s < 1 or r * s != world.size:
        raise ValueError(f"OLMOFLOW_REPLICATE={rep} x OLMOFLOW_SHARD={shard} does not tile the world of "
                         f"{world.size} ranks")
    return r, s


def build_mesh(world: World) -> DeviceMesh:
    r, s = mesh_shape(world)
    if r == 1:
        return init_device_mesh(world.device.type, (s,), mesh_dim_names=("shard",))
    return init_device_mesh(world.device.type, (r, s), mesh_dim_names=("replicate", "shard"))


def checkpoint_blocks(model: nn.Module) -> None:
    """Recompute each block's activations in backward (non-reentrant) instead of keeping them: memory for FLOPs.
    The wrapper strips its own name from state-dict keys, so checkpoints do not depend on this switch."""
    for i, block in enumerate(model.layers):
        model.layers[i] = checkpoint_wrapper(block, checkpoint_impl=CheckpointImpl.NO_REENTRANT)


def parallelize(model: nn.Module, world: World, activation_checkpointing: bool,
                compile_blocks: bool = False) -> nn.Module:
    """`model` ready to train on `world`: blocks compiled and/or checkpointed as asked, sharded over several ranks.

    One process gets `model` itself back. Several ranks get a new, sharded model with rank 0's weights: only rank 0
    reads `model`'s values (World.holds_weights), the others may pass it on the meta device. Every rank builds the
    same empty shell on the meta device, shards it, and rank 0 broadcasts each tensor's shards straight to the
    ranks that own them, so no rank but 0 ever holds the whole model.
    """
    if world.size == 1:
        prepare(model.to(world.device), activation_checkpointing, compile_blocks)
        return model
    full = model.state_dict() if world.holds_weights else {}
    with torch.device("meta"):
        shell = type(model)(model.cfg)
    prepare(shell, activation_checkpointing, compile_blocks)
    mesh = build_mesh(world)
    # Blocks first, then the root (embeddings, final norm, lm_head): each block's parameters are gathered only
    # while that block runs.
    for block in shell.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(shell, mesh=mesh)
    for module in shell.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            # Plain SUM collectives: gloo has no PREMUL_SUM, and a factor of 1 needs no scaling anyway.
            module.set_force_sum_reduction_for_comms(True)
    # The shards land on the process group's device (the rank's GPU under NCCL, the CPU under gloo).
    set_model_state_dict(shell, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    return shell


def prepare(model: nn.Module, activation_checkpointing: bool, compile_blocks: bool) -> None:
    """Compile, then checkpoint, the blocks in place (before sharding: FSDP wraps what they became)."""
    if compile_blocks:
        model.compile_blocks()
    if activation_checkpointing:
        checkpoint_blocks(model)


def sync_grads(model: nn.Module, sync: bool) -> None:
    """Skip the gradient reduce-scatter on all but the last micro-batch of a step (grads accumulate locally)."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)


def reshard(model: nn.Module) -> None:
    """Free the gathered weights a forward without backward (scoring) left behind. FSDP keeps the root's weights
    gathered after a forward, for the backward that would follow, and until then the root module's registered
    parameters are other objects than the ones backward and the optimizer use: an optimizer built then holds
    tensors that never get a gradient (measured: torch's get_state_dict then fails on their ids)."""
    if isinstance(model, FSDPModule):
        model.reshard()


def to_local_scalar(x: torch.Tensor) -> float:
    """A grad norm that may be a DTensor (sharded params) as a plain float, the same on every rank."""
    return float(x.full_tensor() if hasattr(x, "full_tensor") else x)


def clip_grads(model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm (over every rank's shards) to max_norm; returns the norm before clipping."""
    # foreach=False: the foreach kernels do not take a mix of DTensor shards on gloo
    return to_local_scalar(nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=False))


def export(model: nn.Module, world: World, wrapped: bool) -> Olmo3 | None:
    """`model` as a plain, unsharded Olmo3 on rank 0's CPU, to write as a payload; None on the other ranks.
    Collective under FSDP. A model that is neither sharded nor checkpoint-wrapped (`wrapped` False) is itself
    returned, moved to the CPU."""
    if not wrapped:
        return model.cpu()
    weights = dist_checkpoint.full_model_state(model)
    if not world.lead:
        return None
    with torch.device("meta"):
        plain = Olmo3(model.cfg)
    plain.load_state_dict(weights, assign=True)
    return plain
