"""Data parallelism for the trainer: FSDP2 (`fully_shard`) over every transformer block and the root, HSDP when
the cluster asks for replicas, and activation checkpointing of the blocks.

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


def to_local_scalar(x: torch.Tensor) -> float:
    """A grad norm that may be a DTensor (sharded params) as a plain float, the same on every rank."""
    return float(x.full_tensor() if hasattr(x, "full_tensor") else x)
