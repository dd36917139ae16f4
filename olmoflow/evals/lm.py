"""Log-likelihood of continuations, batched: the one primitive behind multiple-choice scoring and held-out
bits-per-byte.

A request is (context tokens, continuation tokens); its score is the sum over the continuation of
log p(token | everything before it), in nats. Requests are sorted by length and right-padded into batches:
attention is causal, so padding after a sequence never changes the logits of its real tokens. A batch holds a
fixed budget of padded tokens, so it takes a few long sequences or many short ones.

`score_groups` is the fast path for olmoflow's Olmo3 (a model with `.hidden` and `.lm_head`): the requests of a
group (an item's answer choices) go into one row as a prefix tree -- the tokens they share are run once, each
choice's own tokens follow as a branch that sees the shared trunk and itself only, at the positions it would have
alone -- several trees share a row, each seeing only itself (so rows are full, not padded), and the LM head runs
only at the scored positions, so no [tokens, vocab] logits exist beyond them.
Other models (HF, the tests' bigram) take `score_requests`, one padded sequence per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

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


@dataclass
class _Tree:
    """Requests as one prefix tree: a trunk they share, then one branch per request."""

    ids: list[int]
    pos: list[int]
    seg: list[int]  # 0 = trunk, k + 1 = branch of the tree's k-th request
    scored: list[tuple[int, int, int]]  # (request, index of the input predicting, target token)


def _tree(inputs: list[list[int]], targets: list[list[int]], starts: list[int], owners: list[int]) -> _Tree:
    """inputs[k] is request k's model input, targets[k][i] the token input i predicts, scored from starts[k] on."""
    trunk = 0
    shortest = min(len(x) for x in inputs)
    while trunk < shortest and all(x[trunk] == inputs[0][trunk] for x in inputs):
        trunk += 1
    tree = _Tree(ids=list(inputs[0][:trunk]), pos=list(range(trunk)), seg=[0] * trunk, scored=[])
    for k, (x, y, s, owner) in enumerate(zip(inputs, targets, starts, owners)):
        offset = len(tree.ids) - trunk  # input i >= trunk sits at offset + i
        tree.ids += x[trunk:]
        tree.pos += range(trunk, len(x))
        tree.seg += [k + 1] * (len(x) - trunk)
        tree.scored += [(owner, i if i < trunk else offset + i, y[i]) for i in range(s, len(x))]
    return tree


def _trees(groups: Sequence[Sequence[Request]], max_len: int) -> list[_Tree]:
    """Each group as one tree when it fits in max_len tokens, else split into trees that do; a request longer than
    max_len + 1 tokens loses tokens from the left of its context (as in score_requests)."""
    trees: list[_Tree] = []
    n = 0
    for group in groups:
        pending: list[tuple[list[int], list[int], int, int]] = []
        for r in group:
            if not r.context:
                raise ValueError("a request needs at least one context token")
            seq = (r.context + r.continuation)[-(max_len + 1):]
            n_cont = min(len(r.continuation), len(seq) - 1)
            pending.append((seq[:-1], seq[1:], len(seq) - 1 - n_cont, n))
            n += 1
        while pending:  # greedily the most requests whose tree still fits
            take = len(pending)
            while take > 1 and len(_tree(*map(list, zip(*pending[:take]))).ids) > max_len:
                take -= 1
            trees.append(_tree(*map(list, zip(*pending[:take]))))
            pending = pending[take:]
    return trees


def _pack_rows(trees: list[_Tree]) -> list[list[_Tree]]:
    """Trees first-fit, longest first, into rows as long as the longest tree: rows are full, so a batch holds
    almost no padding (short unconditioned trees fill the gaps the long few-shot ones leave), and no longer than
    they must be (masked-out attention in a longer row would still be computed)."""
    rows: list[list[_Tree]] = []
    room: list[int] = []
    width = max((len(t.ids) for t in trees), default=0)
    for t in sorted(trees, key=lambda t: -len(t.ids)):
        slot = next((r for r, free in enumerate(room) if free >= len(t.ids)), None)
        if slot is None:
            rows.append([])
            room.append(width)
            slot = len(rows) - 1
        rows[slot].append(t)
        room[slot] -= len(t.ids)
    return rows


def _batch(rows: list[list[_Tree]], window: int, device: torch.device):
    """ids, positions [B, T], masks and the (row, index, request, target) of each scored token of a batch of
    rows. A token sees, within its own tree, the trunk and its own branch: not other trees, not later tokens, not
    padding, and on sliding layers only positions less than `window` back."""
    width = max(sum(len(t.ids) for t in row) for row in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    seg = torch.zeros((len(rows), width), dtype=torch.long)
    tree = torch.full((len(rows), width), -1, dtype=torch.long)
    scored = []
    for b, row in enumerate(rows):
        at = 0
        for n, t in enumerate(row):
            span = slice(at, at + len(t.ids))
            ids[b, span], pos[b, span], seg[b, span] = torch.tensor(t.ids), torch.tensor(t.pos), torch.tensor(t.seg)
            tree[b, span] = n
            scored += [(b, at + i, owner, target) for owner, i, target in t.scored]
            at += len(t.ids)
    i = torch.arange(width)
    same_tree = (tree[:, :, None] == tree[:, None, :]) & (tree[:, None, :] >= 0)
    branch = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
    full = same_tree & branch & (i[:, None] >= i[None, :])
    full |= torch.eye(width, dtype=torch.bool)  # padding sees itself: no all-masked (NaN) rows
    sliding = full & ((pos[:, :, None] - pos[:, None, :]) < window)
    masks = Masks(full=full[:, None].to(device), sliding=sliding[:, None].to(device))
    return ids.to(device), pos.to(device), masks, scored


@torch.no_grad()
def score_groups(model: torch.nn.Module, groups: Sequence[Sequence[Request]], *, batch_size: int, max_len: int,
                 progress: Progress = no_progress, desc: str = "scoring") -> list[list[Scored]]:
    """Every request of every group scored, each group's shared token prefix run once (see the module doc), at
    most batch_size x max_len tokens per forward; the same numbers as score_requests on the requests one by one.
    Models without `.hidden` take score_requests."""
    if not (hasattr(model, "hidden") and hasattr(model, "lm_head")):
        flat = score_requests(model, [r for g in groups for r in g], batch_size=batch_size, max_len=max_len,
                              progress=progress, desc=desc)
        return _regroup(groups, flat)
    device = next(model.parameters()).device
    rows = _pack_rows(_trees(groups, max_len))
    n_requests = sum(len(g) for g in groups)
    logps: list[list[float]] = [[] for _ in range(n_requests)]
    greedy = [True] * n_requests
    per_batch = max(batch_size * max_len // max((sum(len(t.ids) for t in r) for r in rows), default=1), 1)
    batches = [rows[i:i + per_batch] for i in range(0, len(rows), per_batch)]
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
