"""The LM head and its cross-entropy in one pass over chunks of tokens, never holding [tokens, vocab] logits.

Scoring N tokens over a vocabulary of V through `lm_head` + a loss materializes N x V float32 logits, then their
log-softmax, then a gradient as large again for each (64 MB apiece at 2048 tokens x 8192): fresh pages and full
passes over memory that cost as much as the head's matmuls. Here each chunk of rows gets its logits, its loss and
at once its gradient, softmax * (1 + 2 z lse) - onehot, which goes straight into d(hidden) and d(weight) before the
next chunk reuses the buffer; backward only scales the two by the incoming gradient. The math is that of
`lm_head(hidden).float()` followed by `token_losses` of tests/train/lossref.py (tested to fp32 rounding).

The gradient is taken of ce + z_loss * z, so the z-loss coefficient is an input and that total is the one
differentiable output; the two sums come back detached, for logging.

Per device: on CPU chunks of CHUNK_ROWS stay in cache and the softmax runs in place, eagerly. On CUDA the eager
chain is a dozen float32 passes over each chunk's logits, so the chunk's loss and gradient are one compiled function
(`chunk_loss_grad`: one reduction and one pointwise kernel), and chunks are as large as CUDA_CHUNK_BYTES allows:
with CPU-sized chunks at vocab 100k, d(weight) (V x d per chunk) would be written and added back in float32 once
per 256 tokens, more memory traffic than the head's matmuls.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

IGNORE = -100
"""Label of a position that is not scored (F.cross_entropy's default ignore_index; packing writes it)."""

CHUNK_ROWS = 256
"""Tokens per chunk: big enough that the three matmuls per chunk run at full speed, small enough that a chunk's
logits (CHUNK_ROWS x vocab) stay in cache between the passes over them (measured best at 256-512 for vocab 8192)."""

CUDA_CHUNK_BYTES = 1 << 30
"""On CUDA, a chunk's logits (rows x vocab in the model's dtype) take up to this much: at vocab 100,352 in bf16
~5,000 tokens, so a 16k-token micro-batch is 4 chunks (4 d(weight) sums) instead of 64."""

LOG2E = 1 / math.log(2)


def chunk_rows(n: int, vocab: int, dtype: torch.dtype, device: torch.device) -> int:
    """Rows per chunk for n tokens (see the module docstring)."""
    if device.type != "cuda":
        return min(n, CHUNK_ROWS)
    per_row = vocab * torch.finfo(dtype).bits // 8
    return max(1, min(n, max(CHUNK_ROWS, CUDA_CHUNK_BYTES // per_row // 128 * 128)))


def chunk_loss_grad(logits: torch.Tensor, y: torch.Tensor, scored: torch.Tensor,
                    z_loss: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ce sum, z sum, d(ce + z_loss z)/d(logits) in logits' dtype) of one chunk: logits [n, V], y [n] (clamped
    to >= 0), scored [n] (1.0 where the label counts). Plain ops that inductor fuses into a logsumexp reduction
    and one pointwise pass; the same math as the CPU path in `_LinearCrossEntropy.forward`."""
    x = logits.float()
    rows_ce, lse = row_cross_entropy(x, y)
    ce, z = (rows_ce * scored).sum(), (lse.square() * scored).sum()
    onehot = torch.arange(x.shape[1], device=x.device)[None, :] == y[:, None]
    grad = torch.exp(x - lse[:, None]) * (scored * (1 + 2 * z_loss * lse))[:, None] - onehot * scored[:, None]
    return ce, z, grad.to(logits.dtype)


def row_cross_entropy(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, logsumexp) of each row of float logits x [n, V] against targets y [n] (>= 0)."""
    lse = torch.logsumexp(x, dim=1)
    return lse - x.gather(1, y[:, None]).squeeze(1), lse


def chunk_loss(logits: torch.Tensor, y: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ce sum, z sum) of one chunk, for scoring without gradients."""
    rows_ce, lse = row_cross_entropy(logits.float(), y)
    return (rows_ce * scored).sum(), (lse.square() * scored).sum()


@functools.cache
def compiled(fn):
    """fn through torch.compile, once per process (row counts may vary: dynamo goes dynamic after one change)."""
    return torch.compile(fn)


def cpu_chunk_loss_grad(logits: torch.Tensor, y: torch.Tensor, scored: torch.Tensor,
                        z_loss: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`chunk_loss_grad` eagerly, in place in the logits buffer (d(logits) in float32)."""
    logits = logits.float()
    target = logits.gather(1, y[:, None]).squeeze(1)
    top = logits.amax(1, keepdim=True)
    # exp(x) as exp2(x log2 e): torch's CPU exp2 is 3x faster than exp.
    probs = logits.sub_(top).mul_(LOG2E).exp2_()
    total = probs.sum(1)
    lse = top.squeeze(1) + total.log()
    # d(ce + z_loss * lse²)/d(logits) = softmax * (1 + 2 z_loss lse) - onehot(target), on scored rows
    grad = probs.mul_((scored * (1 + 2 * z_loss * lse) / total)[:, None])
    grad.scatter_add_(1, y[:, None], -scored[:, None])
    return ((lse - target) * scored).sum(), (lse.square() * scored).sum(), grad


def chunk_functions(device: torch.device):
    """(loss_grad, loss) for one chunk on `device`: compiled on CUDA, eager (in place) elsewhere."""
    if device.type == "cuda":
        return compiled(chunk_loss_grad), compiled(chunk_loss)
    return cpu_chunk_loss_grad, chunk_loss


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
        rows = chunk_rows(n, weight.shape[0], hidden.dtype, hidden.device)
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        # float32 accumulation across chunks, whatever the model's dtype; the first chunk overwrites
        grad_w = torch.empty(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] \
            else None
        # One logits buffer for all chunks: a fresh one per chunk is a fresh mapping, and its page faults were
        # measured at a third of that chunk's matmul.
        buf = hidden.new_empty(rows, weight.shape[0])
        ce = torch.zeros((), dtype=torch.float32, device=hidden.device)
        z = torch.zeros_like(ce)
        loss_grad, loss = chunk_functions(hidden.device)
        for start in range(0, n, rows):
            h, y = hidden[start:start + rows], labels[start:start + rows]
            logits = torch.mm(h, weight.t(), out=buf[:len(h)])
            scored, y = (y != IGNORE).float(), y.clamp(min=0)
            if grad_h is None and grad_w is None:
                ce_part, z_part = loss(logits, y, scored)
            else:
                ce_part, z_part, grad = loss_grad(logits, y, scored, z_loss)
                _backprop_chunk(grad.to(weight.dtype), h, weight, start, grad_h, grad_w)
            ce += ce_part
            z += z_part
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


def _backprop_chunk(grad: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, start: int,
                    grad_h: torch.Tensor | None, grad_w: torch.Tensor | None) -> None:
    """A chunk's d(logits) into d(hidden) rows [start, start + len) and the float32 sum d(weight)."""
    if grad_h is not None:
        torch.mm(grad, weight, out=grad_h[start:start + len(h)])
    if grad_w is None:
        return
    if grad.dtype == grad_w.dtype:
        grad_w.addmm_(grad.t(), h, beta=float(start > 0))
    else:  # a bf16 model: each chunk's product in its dtype, the sum in float32
        part = (grad.t() @ h).float()
        grad_w.copy_(part) if start == 0 else grad_w.add_(part)


def _as_autocast_would(hidden: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden flattened to [tokens, d], both in the autocast dtype when autocast is on: autocast does not reach
    inside a custom Function (and mm with out= is never cast), so the head is cast here as autocast would cast
    lm_head's matmul, and runs in bf16 like every other matmul of the step."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        flat, weight = flat.to(dtype), weight.to(dtype)
    return flat, weight


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         z_loss: float = 0.0) -> LossSums:
    """Loss sums of logits = hidden @ weight.T against labels (IGNORE = not scored): hidden [..., d], weight
    [V, d], labels [...]."""
    flat, weight = _as_autocast_would(hidden, weight)
    return LossSums(*_LinearCrossEntropy.apply(flat, weight, labels.reshape(-1), z_loss))
