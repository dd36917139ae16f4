"""Where RLVR computes: its pod's first GPU when it has one (OLMOFLOW_DEVICE=cpu keeps the CPU), in one process,
with bf16 autocast there (olmoflow/train/world.py). SFT and DPO shard over every GPU instead (train/parallel.py).

One device holds the policy, its gradients and AdamW's two moments in float32 (16 bytes per parameter): a 7B model
is 112 GB, which leaves one 141 GB H200 room for a batch of rollouts only with activation checkpointing (the 7B
preset turns it on); a 32B policy needs sharded RL (a separate rollout engine, as Olmo 3's), not built yet.
"""

from __future__ import annotations

import torch
from torch import nn

from olmoflow.train import parallel
from olmoflow.train.world import World


def place(model: nn.Module, activation_checkpointing: bool = False) -> torch.device:
    """Move `model` to this process's compute device, its blocks checkpointed if asked; return that device."""
    device = World().device
    model.to(device)
    if activation_checkpointing:
        parallel.checkpoint_blocks(model)
    return device
