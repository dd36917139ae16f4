"""The SFT objective: next-token cross-entropy on assistant tokens only, averaged over all of a step's assistant
tokens. Micro-batches (on every rank) backpropagate their token sums divided by the whole step's total, so their
gradients add up to exactly the full batch's mean, however the batch is cut or split over ranks."""

from __future__ import annotations

import torch
from torch import nn

from olmoflow.post.chat import Encoded
from olmoflow.post.data import micro_batches, pad_batch
from olmoflow.post.logprobs import masked_sums
from olmoflow.train.parallel import sync_grads


def sft_backward(model: nn.Module, batch: list[Encoded], micro_batch: int, pad_id: int,
                 n_tokens: int) -> torch.Tensor:
    """Accumulate the gradient of `batch`'s share of the step's mean assistant-token loss (`n_tokens`: the step's
    assistant tokens on all ranks); returns that share, detached (summed over ranks: the step's loss)."""
    chunks = micro_batches(batch, micro_batch)
    losses = []
    for k, mb in enumerate(chunks):
        sync_grads(model, k == len(chunks) - 1)  # FSDP: reduce-scatter once, after the last micro-batch
        logp, _ = masked_sums(model, *pad_batch([e.ids for e in mb], [e.mask for e in mb], pad_id))
        loss = -logp.sum() / n_tokens
        loss.backward()
        losses.append(loss.detach())
    return torch.stack(losses).sum()
