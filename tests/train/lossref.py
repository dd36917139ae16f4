"""The oracle of the fused training loss: cross-entropy plus Olmo 3's z-loss from materialized logits, both as sums
over scored targets so that micro-batches and ranks add up to an exact token mean over the global batch.

A training step gets the same sums without materializing the logits, from `model(ids, doc_ids, labels=labels,
z_loss=z)` -> (ce + z·z_loss, ce, z), the LM head fused with the loss (olmoflow/model/lm_loss.py);
test_train_losses.py holds the two equal, test_loop.py holds this one to torch's cross-entropy."""

from __future__ import annotations

import torch

from olmoflow.train.packing import IGNORE


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position (cross-entropy, logsumexp², mask) for logits [B, T, V] and labels [B, T]."""
    mask = labels != IGNORE
    lse = torch.logsumexp(logits, dim=-1)
    target = logits.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    zero = torch.zeros((), dtype=logits.dtype)
    return torch.where(mask, lse - target, zero), torch.where(mask, lse.square(), zero), mask


def loss_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of cross-entropy, sum of logsumexp²) over the scored targets."""
    ce, z, _ = token_losses(logits, labels)
    return ce.sum(), z.sum()
