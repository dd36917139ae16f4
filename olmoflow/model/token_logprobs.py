"""Per-token log-probabilities through the LM head, in chunks of tokens, with a gradient: what SFT, DPO and GRPO
train on, and what per-position scoring reads.

lm_head + log-softmax + gather holds [tokens, vocab] float32 logits and a tensor as large again for the softmax
(13 GB apiece for a 32k-token micro-batch at vocab 100k), and keeps them for backward. Here a chunk's logits live
only while that chunk is processed; forward keeps each token's logsumexp, and backward computes each chunk's
logits again. That costs one more head matmul per token (4 instead of 3), which the training loss in lm_loss.py
avoids by taking the gradient in forward; it cannot here, because the gradient of each token's log-probability
(DPO's per-pair weight, GRPO's clipped advantage) is only known once the loss above it is.

Only the scored tokens (label != IGNORE) go through the head: a chat's system and user turns, and padding, cost
nothing there.
"""

from __future__ import annotations

import torch

from olmoflow.model.lm_loss import (
    IGNORE,
    LOG2E,
    _as_autocast_would,
    _backprop_chunk,
    chunk_rows,
    compiled,
    row_cross_entropy,
)


def chunk_logprobs(logits: torch.Tensor, y: torch.Tensor, inv_temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(y), logsumexp) of each row of one chunk's logits [n, V] divided by the temperature."""
    ce, lse = row_cross_entropy(logits.float() * inv_temp, y)
    return -ce, lse


def chunk_logprob_grad(logits: torch.Tensor, y: torch.Tensor, lse: torch.Tensor, grad: torch.Tensor,
                       inv_temp: float) -> torch.Tensor:
    """d(sum of grad * log p(y)) / d(logits) for one chunk: grad * (onehot(y) - softmax(logits / T)) / T."""
    x = logits.float() * inv_temp
    onehot = torch.arange(x.shape[1], device=x.device)[None, :] == y[:, None]
    g = (grad * inv_temp)[:, None]
    return ((onehot.float() - torch.exp(x - lse[:, None])) * g).to(logits.dtype)


def cpu_chunk_logprobs(logits: torch.Tensor, y: torch.Tensor, inv_temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`chunk_logprobs` in place in the (float32) logits buffer."""
    x = logits.float()
    if inv_temp != 1.0:
        x.mul_(inv_temp)
    lse = torch.logsumexp(x, dim=1)
    return x.gather(1, y[:, None]).squeeze(1).sub_(lse), lse


def cpu_chunk_logprob_grad(logits: torch.Tensor, y: torch.Tensor, lse: torch.Tensor, grad: torch.Tensor,
                           inv_temp: float) -> torch.Tensor:
    """`chunk_logprob_grad` in place in the (float32) logits buffer: three passes over it instead of seven."""
    x = logits.float()
    g = (grad * inv_temp)[:, None]
    if inv_temp != 1.0:
        x.mul_(inv_temp)
    # exp(x) as exp2(x log2 e): torch's CPU exp2 is 3x faster than exp (as in lm_loss).
    probs = x.sub_(lse[:, None]).mul_(LOG2E).exp2_()
    return probs.mul_(-g).scatter_add_(1, y[:, None], g)


def _chunk_functions(device: torch.device):
    # compiled on CUDA (one reduction and one pointwise kernel per chunk, as lm_loss does), in place on the CPU
    if device.type == "cuda":
        return compiled(chunk_logprobs), compiled(chunk_logprob_grad)
    return cpu_chunk_logprobs, cpu_chunk_logprob_grad


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                inv_temp: float) -> torch.Tensor:
        n = hidden.shape[0]
        rows = chunk_rows(n, weight.shape[0], hidden.dtype, hidden.device)
        logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logp)
        buf = hidden.new_empty(rows, weight.shape[0])  # one logits buffer for all chunks (see lm_loss)
        forward_chunk, _ = _chunk_functions(hidden.device)
        for start in range(0, n, rows):
            h = hidden[start:start + rows]
            logits = torch.mm(h, weight.t(), out=buf[:len(h)])
            logp[start:start + rows], lse[start:start + rows] = forward_chunk(logits, labels[start:start + rows],
                                                                              inv_temp)
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.inv_temp = inv_temp
        return logp

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden, weight, labels, lse = ctx.saved_tensors
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] \
            else None
        rows = chunk_rows(len(hidden), weight.shape[0], hidden.dtype, hidden.device)
        buf = hidden.new_empty(rows, weight.shape[0])
        _, grad_chunk = _chunk_functions(hidden.device)
        for start in range(0, len(hidden), rows):
            part = slice(start, start + rows)
            h = hidden[part]
            logits = torch.mm(h, weight.t(), out=buf[:len(h)])
            d_logits = grad_chunk(logits, labels[part], lse[part], grad[part].float(), ctx.inv_temp)
            _backprop_chunk(d_logits.to(weight.dtype), h, weight, start, grad_h, grad_w)
        return grad_h, None if grad_w is None else grad_w.to(weight.dtype), None, None


def token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """log p(labels) under softmax(hidden @ weight.T / temperature) as float32 shaped like labels, 0 where a label
    is IGNORE; differentiable in hidden and weight. hidden [..., d], weight [V, d], labels [...]."""
    if temperature <= 0:
        raise ValueError(f"token_logprobs: temperature must be > 0, got {temperature}")
    flat, weight = _as_autocast_would(hidden, weight)
    labels_flat = labels.reshape(-1)
    scored = (labels_flat != IGNORE).nonzero().squeeze(1)
    out = torch.zeros(labels_flat.shape, dtype=torch.float32, device=hidden.device)
    if len(scored):
        out = out.index_put((scored,), _TokenLogprobs.apply(flat[scored], weight, labels_flat[scored],
                                                            1.0 / temperature))
    return out.view(labels.shape)
