"""Log-likelihood of continuations, batched: the one primitive behind multiple-choice scoring and held-out
bits-per-byte.

A request is (context tokens, continuation tokens); its score is the sum over the continuation of
log p(token | everything before it), in nats. Requests are sorted by length and right-padded into batches:
attention is causal, so padding after a sequence never changes the logits of its real tokens. A batch holds a
fixed budget of padded tokens, so it takes a few long sequences or many short ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

Progress = Callable[[Iterable, int, str], Iterator]


@dataclass(frozen=True)
class Request:
    context: list[int]
    """At least one token: the first scored token needs something to be predicted from."""
    continuation: list[int]


@dataclass(frozen=True)
class Scored:
    logprob: float
    """Sum of log p over the scored continuation tokens, in nats (<= 0)."""
    n_tokens: int
    """Continuation tokens scored (fewer than asked only when context + continuation exceed max_len + 1)."""
    is_greedy: bool
    """Every scored token was the model's argmax: greedy decoding would have produced the continuation."""


def no_progress(items: Iterable, total: int, desc: str) -> Iterator:
    return iter(items)


def token_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped longest first into batches of at most `budget` padded tokens (at least one per batch):
    many short sequences (answer choices) share a forward pass that holds only a few long ones."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def score_requests(model: torch.nn.Module, requests: Sequence[Request], *, batch_size: int, max_len: int,
                   progress: Progress = no_progress, desc: str = "scoring") -> list[Scored]:
    """Score every request, batch_size × max_len padded tokens per forward pass; a sequence longer than
    max_len + 1 tokens loses tokens from the left of its context."""
    device = next(model.parameters()).device
    seqs, n_cont = [], []
    for r in requests:
        if not r.context:
            raise ValueError("a request needs at least one context token")
        seq = (r.context + r.continuation)[-(max_len + 1):]
        seqs.append(seq)
        n_cont.append(min(len(r.continuation), len(seq) - 1))
    batches = token_batches([len(s) - 1 for s in seqs], batch_size * max_len)
    out: list[Scored | None] = [None] * len(seqs)
    for batch in progress(batches, len(batches), desc):
        width = len(seqs[batch[0]]) - 1
        ids = torch.zeros((len(batch), width + 1), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, :len(seqs[i])] = torch.tensor(seqs[i])
        ids = ids.to(device)
        logits = model(ids[:, :-1]).float()
        # log p = logit - logsumexp: avoids a second [B, T, vocab] tensor (log_softmax would allocate one)
        target_logp = logits.gather(-1, ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        greedy = logits.argmax(-1) == ids[:, 1:]
        for row, i in enumerate(batch):
            end = len(seqs[i]) - 1
            span = slice(end - n_cont[i], end)
            out[i] = Scored(logprob=float(target_logp[row, span].double().sum()), n_tokens=n_cont[i],
                            is_greedy=bool(greedy[row, span].all()))
    return out  # type: ignore[return-value]


def windows(n_targets: int, seq_len: int, overlap: int) -> list[tuple[int, int, int]]:
    """Split a document of tokens t_0..t_n (t_0 a start token, t_1..t_n scored) into model windows.

    Each (a, b, k): feed t_a..t_{b-1} (b - a <= seq_len), predicting t_{a+1}..t_b, and score only the last k.
    Every target is scored exactly once; after the first window each target sees at least `overlap` earlier
    tokens plus the one it is predicted from (a sliding window), or just that one when overlap is 0.
    """
    if n_targets <= 0:
        return []
    stride = seq_len - overlap
    end = min(seq_len, n_targets)
    spans = [(0, end, end)]
    while end < n_targets:
        new_end = min(end + stride, n_targets)
        spans.append((max(0, new_end - seq_len), new_end, new_end - end))
        end = new_end
    return spans


def document_requests(tokens: list[int], start_id: int, seq_len: int, overlap: int) -> list[Request]:
    """A whole document as requests whose continuations cover every one of its tokens exactly once."""
    seq = [start_id] + tokens
    return [Request(context=seq[a:b + 1 - k], continuation=seq[b + 1 - k:b + 1])
            for a, b, k in windows(len(tokens), seq_len, overlap)]
