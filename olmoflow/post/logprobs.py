"""Per-token log-probabilities of given targets: the quantity SFT, DPO and GRPO all train on.

They come from the model's chunked head (olmoflow/model/token_logprobs.py), never [B, T, vocab] logits, and only
for the tokens a loss reads (`mask`); inputs go to the model's device, under bf16 autocast there on a GPU.
"""

from __future__ import annotations

import torch
from torch import nn

from olmoflow.model.lm_loss import IGNORE
from olmoflow.train.world import autocast


def token_logprobs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None,
                   temperature: float = 1.0) -> torch.Tensor:
    """log p(targets[b, t] | inputs[b, :t+1]) as float32 [B, T] on the model's device, 0 where mask is 0;
    `temperature` matches a sampler that divided logits by it."""
    device = next(model.parameters()).device
    if mask is not None:
        targets = targets.masked_fill(mask == 0, IGNORE)
    with autocast(device):
        return model(inputs.to(device), labels=targets.to(device), per_token=True, temperature=temperature)


def masked_sums(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of target logprobs under `mask`, number of masked tokens), per row, on the model's device."""
    lp = token_logprobs(model, inputs, targets, mask)
    return lp.sum(-1), mask.to(lp.device).sum(-1)
