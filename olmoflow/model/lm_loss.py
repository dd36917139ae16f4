"""The LM head and its cross-entropy in one pass over chunks of tokens, never holding [tokens, vocab] logits.

Scoring N tokens over a vocabulary of V through `lm_head` + a loss materializes N x V float32 logits, then their
log-softmax, then a gradient as large again for each (64 MB apiece at 2048 tokens x 8192): fresh pages and full
passes over memory that cost as much as the head's matmuls. Here each chunk of rows gets its logits, its loss and
at once its gradient, softmax * (1 + 2 z lse) - onehot, which goes straight into d(hidden) and d(weight) before the
next chunk reuses the buffer; backward only scales the two by the incoming gradient. The math is that of
`lm_head(hidden).float()` followed by `olmoflow.train.losses.token_losses` (tested to fp32 rounding).

The gradient is taken of ce + z_loss * z, so the z-loss coefficient is an input and that total is the one
differentiable output; the two sums come back detached, for logging.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

IGNORE = -100
"""Label of a position that is not scored (F.cross_entropy's default ignore_index; packing writes it)."""

CHUNK_ROWS = 256
"""Tokens per chunk: big enough that the three matmuls per chunk run at full speed, small enough that a chunk's
logits (CHUNK_ROWS x vocab) stay in cache between the passes over them (measured best at 256-512 for vocab 8192)."""

LOG2E = 1 / math.log(2)


class LossSums(NamedTuple):
    total: torch.Tensor
    """ce + z_loss * z, differentiable."""
    ce: torch.Tensor
    """Sum of cross-entropy over the scored targets (detached)."""
    z: torch.Tensor
    """Sum of logsumexp² over the scored targets (detached)."""


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                z_loss: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = hidden.shape[0]
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        # float32 accumulation across chunks, whatever the model's dtype; the first chunk overwrites
        grad_w = torch.empty(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] \
            else None
        # One logits buffer for all chunks: a fresh one per chunk is a fresh mapping, and its page faults were
        # measured at a third of that chunk's matmul.
        buf = hidden.new_empty(min(n, CHUNK_ROWS), weight.shape[0])
        ce = torch.zeros((), dtype=torch.float32, device=hidden.device)
        z = torch.zeros_like(ce)
        for start in range(0, n, CHUNK_ROWS):
            h, y = hidden[start:start + CHUNK_ROWS], labels[start:start + CHUNK_ROWS]
            logits = torch.mm(h, weight.t(), out=buf[:len(h)]).float()
            scored = (y != IGNORE).float()
            y = y.clamp(min=0)[:, None]
            target = logits.gather(1, y).squeeze(1)
            top = logits.amax(1, keepdim=True)
            # In place in the chunk's one buffer; exp(x) as exp2(x log2 e): torch's CPU exp2 is 3x faster than exp.
            probs = logits.sub_(top).mul_(LOG2E).exp2_()
            total = probs.sum(1)
            lse = top.squeeze(1) + total.log()
            ce += ((lse - target) * scored).sum()
            z += (lse.square() * scored).sum()
            if grad_h is None and grad_w is None:
                continue
            # d(ce + z_loss * lse²)/d(logits) = softmax * (1 + 2 z_loss lse) - onehot(target), on scored rows
            grad = probs.mul_((scored * (1 + 2 * z_loss * lse) / total)[:, None])
            grad.scatter_add_(1, y, -scored[:, None])
            grad = grad.to(weight.dtype)
            if grad_h is not None:
                torch.mm(grad, weight, out=grad_h[start:start + CHUNK_ROWS])
            if grad_w is None:
                continue
            if grad.dtype == grad_w.dtype:
                grad_w.addmm_(grad.t(), h, beta=float(start > 0))
            else:  # a bf16 model: each chunk's product in its dtype, the sum in float32
                part = (grad.t() @ h).float()
                grad_w.copy_(part) if start == 0 else grad_w.add_(part)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.spent = False
        ctx.mark_non_differentiable(ce, z)
        return ce + z_loss * z, ce, z

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor, *_: torch.Tensor):
        # The gradients are scaled in place (no second 8 MB allocation), so they can serve one backward only.
        if ctx.spent:
            raise RuntimeError("olmoflow.model.lm_loss: a second backward through the fused LM loss "
                               "(retain_graph) is not supported; run the forward again")
        ctx.spent = True
        grad_h, grad_w = ctx.saved_tensors
        return (None if grad_h is None else grad_h.mul_(grad_total),
                None if grad_w is None else grad_w.mul_(grad_total).to(ctx.weight_dtype), None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         z_loss: float = 0.0) -> LossSums:
    """Loss sums of logits = hidden @ weight.T against labels (IGNORE = not scored): hidden [..., d], weight
    [V, d], labels [...]."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        # autocast does not reach inside a custom Function (and mm with out= is never cast): cast here, as it
        # would cast lm_head's matmul, so the head runs in bf16 like every other matmul of the step
        dtype = torch.get_autocast_dtype(device)
        flat, weight = flat.to(dtype), weight.to(dtype)
    return LossSums(*_LinearCrossEntropy.apply(flat, weight, labels.reshape(-1), z_loss))
