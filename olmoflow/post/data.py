"""Post-training data plumbing: read post/*.jsonl, split off a held-out set, order examples, pad batches.

Batches are padded, not packed. A conversation (or a DPO reply, or a rollout) stays one row: SFT, DPO and GRPO
share one batching path, `batch_size` means exactly the conversations (pairs) per step, and no per-row document
mask is needed (right padding is invisible under causal attention). The price is padding: sorting a step's
examples by length before cutting micro-batches (which leaves the gradient unchanged, since the loss is
normalized over the whole step) brings it from 32% to 22% of the tokens on curate's tiny SFT mix, where half of
the conversations are cut at seq_len anyway. Packing with doc_ids would recover that 22%."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def read_jsonl(path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of a jsonl file; a missing file, bad JSON or a missing key is one error naming file and line."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (does the dataset artifact have post-training data?)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing key {missing[0]!r}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def split_heldout(rows: list[Any], n_val: int, knob: str, key=lambda r: r) -> tuple[list[Any], list[Any]]:
    """(train, val): val is the n_val rows with the smallest content hash, so the split does not depend on row
    order or on the seed, and stays put when rows are added elsewhere. `knob` names n_val in errors."""
    if n_val >= len(rows):
        raise ValueError(f"{knob}={n_val} leaves no training rows ({len(rows)} rows in all)")
    digest = [hashlib.sha256(json.dumps(key(r), sort_keys=True).encode()).hexdigest() for r in rows]
    order = sorted(range(len(rows)), key=lambda i: digest[i])
    val = set(order[:n_val])
    return [r for i, r in enumerate(rows) if i not in val], [rows[i] for i in sorted(val)]


def stream_indices(start: int, count: int, n: int, seed: int) -> list[int]:
    """Items at positions [start, start + count) of an endless stream over n items: a fresh seeded permutation
    each epoch. The data position is then one integer, so resuming replays nothing and skips nothing."""
    perms: dict[int, np.ndarray] = {}
    out = []
    for pos in range(start, start + count):
        epoch, i = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perms[epoch][i]))
    return out


def micro_batches(items: list[Any], size: int, length=len) -> list[list[Any]]:
    """Sort by length (longest first), then cut into chunks of `size`."""
    items = sorted(items, key=length, reverse=True)
    return [items[i:i + size] for i in range(0, len(items), size)]


def pad_batch(seqs: list[list[int]], masks: list[list[int]], pad_id: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs [B,T], targets [B,T], loss mask [B,T] float) with T = longest sequence - 1, right-padded."""
    T = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T))
    for b, (s, m) in enumerate(zip(seqs, masks)):
        n = len(s) - 1
        inputs[b, :n] = torch.tensor(s[:-1])
        targets[b, :n] = torch.tensor(s[1:])
        mask[b, :n] = torch.tensor(m[1:], dtype=torch.float32)
    return inputs, targets, mask
