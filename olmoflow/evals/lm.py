"""Log-likelihood of continuations, batched: the one primitive behind multiple-choice scoring and held-out
bits-per-byte.

A request is (context tokens, continuation tokens); its score is the sum over the continuation of
log p(token | everything before it), in nats. Requests are sorted by length and right-padded into batches:
attention is causal, so padding after a sequence never changes the logits of its real tokens. A batch holds a
fixed budget of padded tokens, so it takes a few long sequences or many short ones.

`score_groups` is the fast path for olmoflow's Olmo3 (a model with `.hidden` and `.lm_head`): requests are laid
into rows as a token trie -- a prefix shared by several requests (the few-shot examples every item repeats, an
item's question under each of its choices) is run once per row, and each token attends only to the tokens before
it in its own requests, at the positions it would have alone -- so rows are full rather than padded, and the LM
head runs only at the scored positions, so no [tokens, vocab] logits exist beyond them.
Other models (HF, the tests' bigram) take `score_requests`, one padded sequence per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from olmoflow.model.attention import Masks

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


HEAD_CHUNK = 1024
"""Scored positions per LM-head matmul: bounds the transient logits at HEAD_CHUNK x vocab floats."""


class _Trie:
    """One row: the requests' inputs as a token trie, each node laid out after its parent. A node's hidden state
    is the same for every request whose input passes through it (same tokens before it, same positions), so a
    prefix shared by requests -- the few-shot examples every item repeats, an item's question under each choice --
    is run once per row."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.parent: list[int] = []
        self.children: dict[tuple[int, int], int] = {}  # (parent node or -1, token) -> node
        self.scored: list[tuple[int, int, int]] = []  # (request, node predicting, target token)

    def _walk(self, x: list[int]) -> tuple[int, int]:
        """(tokens of x already in the trie, the node they end at or -1)."""
        node = -1
        for i, token in enumerate(x):
            nxt = self.children.get((node, token))
            if nxt is None:
                return i, node
            node = nxt
        return len(x), node

    def new_nodes(self, x: list[int]) -> int:
        return len(x) - self._walk(x)[0]

    def add(self, owner: int, x: list[int], y: list[int], start: int) -> None:
        """Request `owner`: input tokens x, y[i] the token x[i] predicts, scored from input start on."""
        matched = self._walk(x)[0]
        path = []
        node = -1
        for i, token in enumerate(x):
            if i >= matched:
                self.children[node, token] = len(self.ids)
                self.ids.append(token)
                self.parent.append(node)
            node = self.children[node, token]
            path.append(node)
        self.scored += [(owner, path[i], y[i]) for i in range(start, len(x))]


def _tries(groups: Sequence[Sequence[Request]], max_len: int) -> list[_Trie]:
    """The requests in order, each row a trie of at most max_len tokens; a request longer than max_len + 1 tokens
    loses tokens from the left of its context (as in score_requests)."""
    rows = [_Trie()]
    owner = 0
    for group in groups:
        for r in group:
            if not r.context:
                raise ValueError("a request needs at least one context token")
            seq = (r.context + r.continuation)[-(max_len + 1):]
            x, n_cont = seq[:-1], min(len(r.continuation), len(seq) - 1)
            if len(rows[-1].ids) + rows[-1].new_nodes(x) > max_len:
                rows.append(_Trie())
            rows[-1].add(owner, x, seq[1:], len(x) - n_cont)
            owner += 1
    return [row for row in rows if row.ids]


def _batch(rows: list[_Trie], window: int, device: torch.device):
    """ids and positions [B, T], masks, and the (row, node, request, target) of each scored token of a batch of
    rows. A node sees itself and its ancestors (the tokens before it in its own requests), and on sliding layers
    only those less than `window` positions back; padding sees only itself (no all-masked, NaN rows)."""
    width = max(len(row.ids) for row in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    full = np.zeros((len(rows), width, width), dtype=bool)
    scored = []
    for b, row in enumerate(rows):
        ids[b, :len(row.ids)] = row.ids
        for node, parent in enumerate(row.parent):
            if parent >= 0:
                full[b, node] = full[b, parent]
                pos[b, node] = pos[b, parent] + 1
            full[b, node, node] = True
        full[b, np.arange(len(row.ids), width), np.arange(len(row.ids), width)] = True
        scored += [(b, node, owner, target) for owner, node, target in row.scored]
    sliding = full & ((pos[:, :, None] - pos[:, None, :]) < window)
    masks = Masks(full=torch.from_numpy(full)[:, None].to(device),
                  sliding=torch.from_numpy(sliding)[:, None].to(device))
    return torch.from_numpy(ids).to(device), torch.from_numpy(pos).to(device), masks, scored


@torch.no_grad()
def score_groups(model: torch.nn.Module, groups: Sequence[Sequence[Request]], *, batch_size: int, max_len: int,
                 progress: Progress = no_progress, desc: str = "scoring") -> list[list[Scored]]:
    """Every request of every group scored (a group: an item's choices), shared token prefixes run once per row
    (see the module doc), rows of at most max_len tokens, batch_size rows per forward; the same numbers as
    score_requests on the requests one by one. Models without `.hidden` take score_requests."""
    if not (hasattr(model, "hidden") and hasattr(model, "lm_head")):
        flat = score_requests(model, [r for g in groups for r in g], batch_size=batch_size, max_len=max_len,
                              progress=progress, desc=desc)
        return _regroup(groups, flat)
    device = next(model.parameters()).device
    rows = _tries(groups, max_len)
    n_requests = sum(len(g) for g in groups)
    logps: list[list[float]] = [[] for _ in range(n_requests)]
    greedy = [True] * n_requests
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    for batch in progress(batches, len(batches), desc):
        ids, pos, masks, scored = _batch(batch, model.cfg.sliding_window, device)
        hidden = model.hidden(ids, pos, masks)
        picked = hidden[torch.tensor([s[0] for s in scored], device=device),
                        torch.tensor([s[1] for s in scored], device=device)]
        target = torch.tensor([s[3] for s in scored], device=device)
        for lo in range(0, len(scored), HEAD_CHUNK):
            logits = F.linear(picked[lo:lo + HEAD_CHUNK], model.lm_head.weight).float()
            tgt = target[lo:lo + HEAD_CHUNK]
            lp = (logits.gather(-1, tgt[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)).double().tolist()
            hit = (logits.argmax(-1) == tgt).tolist()
            for (_, _, owner, _), v, h in zip(scored[lo:lo + HEAD_CHUNK], lp, hit):
                logps[owner].append(v)
                greedy[owner] &= h
    return _regroup(groups, [Scored(logprob=float(sum(v)), n_tokens=len(v), is_greedy=g)
                             for v, g in zip(logps, greedy)])


def _regroup(groups: Sequence[Sequence[Request]], flat: list[Scored]) -> list[list[Scored]]:
    it = iter(flat)
    return [[next(it) for _ in g] for g in groups]
