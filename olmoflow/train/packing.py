"""Packing documents into fixed windows of `seq_len + 1` tokens (inputs are the first seq_len, labels the last).

Two plans over one domain's documents for one epoch:
- concat: documents back to back in a shuffled order, cut every L tokens (pretrain, midtrain). Nothing is padded;
  a document may be split across windows.
- best-fit (Ding et al. 2024, used by Olmo 3 for long-context): documents longer than L are cut into L-sized
  chunks, then every piece goes, longest first, into the open window with the least room that still fits it.
  Documents are never split otherwise; the rest of a window is padding.

A plan only lists (doc, start, end) pieces per window; `make_window` reads the tokens.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from olmoflow.data.shards import ShardSet

IGNORE = -100
"""Label value the loss skips (padding, and cross-document targets under intra-document masking)."""


class Docs:
    """The documents of one domain: doc i is arrays[shard[i]][start[i]:start[i] + length[i]]."""

    def __init__(self, name: str, arrays: list[np.ndarray], shard: np.ndarray, start: np.ndarray,
                 length: np.ndarray):
        self.name = name
        self.arrays = arrays
        self.shard, self.start, self.length = shard, start, length

    @classmethod
    def from_shards(cls, name: str, shards: ShardSet, keep: np.ndarray | None = None) -> Docs:
        """All documents of a ShardSet, or only those whose global index is in `keep`."""
        shard = np.concatenate([np.full(o.size - 1, i, dtype=np.int32) for i, o in enumerate(shards.offsets)])
        start = np.concatenate([o[:-1] for o in shards.offsets]).astype(np.int64)
        length = np.concatenate([np.diff(o) for o in shards.offsets]).astype(np.int64)
        if keep is not None:
            shard, start, length = shard[keep], start[keep], length[keep]
        return cls(name, list(shards.tokens), shard, start, length)

    @classmethod
    def from_list(cls, name: str, docs: list[np.ndarray]) -> Docs:
        """In-memory documents (held-out text tokenized at run time)."""
        length = np.array([d.size for d in docs], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
        flat = np.concatenate(docs).astype(np.uint32) if docs else np.zeros(0, np.uint32)
        return cls(name, [flat], np.zeros(len(docs), np.int32), start, length)

    def __len__(self) -> int:
        return int(self.length.size)

    @property
    def num_tokens(self) -> int:
        return int(self.length.sum())

    def doc(self, i: int) -> np.ndarray:
        a = int(self.start[i])
        return self.arrays[int(self.shard[i])][a:a + int(self.length[i])]


Piece = tuple[int, int, int]
"""(doc index, start, end) of a slice of one document."""


class ConcatPlan:
    """One epoch of concat packing: shuffled documents back to back, cut every L tokens, windows shuffled.

    Windows are shuffled too, so consecutive windows (one long document) do not land in the same batch. The
    partial window at the end of an epoch is dropped (fewer than L tokens per domain and epoch).
    """

    def __init__(self, docs: Docs, window: int, rng: np.random.Generator | None):
        self.docs, self.window = docs, window
        self.order = rng.permutation(len(docs)) if rng is not None else np.arange(len(docs))
        self.ends = np.cumsum(docs.length[self.order])
        n = int(self.ends[-1]) // window if len(docs) else 0
        self.perm = rng.permutation(n) if rng is not None else np.arange(n)

    @property
    def num_windows(self) -> int:
        return int(self.perm.size)

    def pieces(self, k: int) -> list[Piece]:
        lo = int(self.perm[k]) * self.window
        hi = lo + self.window
        out: list[Piece] = []
        j = int(np.searchsorted(self.ends, lo, side="right"))
        while lo < hi:
            doc_end = int(self.ends[j])
            doc_start = doc_end - int(self.docs.length[self.order[j]])
            take_end = min(hi, doc_end)
            out.append((int(self.order[j]), lo - doc_start, take_end - doc_start))
            lo, j = take_end, j + 1
        return out


class BestFitPlan:
    """One epoch of best-fit-decreasing packing; windows in a shuffled order (or as packed when rng is None)."""

    def __init__(self, docs: Docs, window: int, rng: np.random.Generator | None):
        self.window = window
        order = rng.permutation(len(docs)) if rng is not None else np.arange(len(docs))
        pieces: list[Piece] = []
        for d in order:
            n = int(docs.length[d])
            pieces.extend((int(d), a, min(a + window, n)) for a in range(0, n, window))
        # Longest first; the stable sort keeps the (shuffled) document order among equal lengths.
        lengths = np.array([p[2] - p[1] for p in pieces], dtype=np.int64)
        bins: list[list[Piece]] = []
        room: list[tuple[int, int]] = []  # sorted (free tokens, bin index) of bins that still have room
        for i in np.argsort(-lengths, kind="stable"):
            need = int(lengths[i])
            at = bisect.bisect_left(room, (need, -1))
            if at < len(room):
                free, b = room.pop(at)
            else:
                free, b = window, len(bins)
                bins.append([])
            bins[b].append(pieces[i])
            if free - need > 0:
                bisect.insort(room, (free - need, b))
        self.bins = bins
        self.perm = rng.permutation(len(bins)) if rng is not None else np.arange(len(bins))

    @property
    def num_windows(self) -> int:
        return len(self.bins)

    def pieces(self, k: int) -> list[Piece]:
        return self.bins[int(self.perm[k])]


@dataclass
class Window:
    input_ids: np.ndarray
    """[seq_len] int64"""
    labels: np.ndarray
    """[seq_len] int64; IGNORE where no loss is taken"""
    doc_ids: np.ndarray
    """[seq_len] int64: the piece (document) each input token belongs to; padding is its own id"""


def make_window(docs: Docs, pieces: list[Piece], window: int, pad_id: int, intra_doc: bool) -> Window:
    tokens = np.full(window, pad_id, dtype=np.int64)
    seg = np.full(window, len(pieces), dtype=np.int64)
    at = 0
    for i, (d, a, b) in enumerate(pieces):
        tokens[at:at + b - a] = docs.doc(d)[a:b]
        seg[at:at + b - a] = i
        at += b - a
    labels = tokens[1:].copy()
    labels[seg[1:] == len(pieces)] = IGNORE
    if intra_doc:
        # Under intra-document masking the position holding a document's last token (its eos) sees only that
        # document, so the next document's first token is unpredictable from it: scoring it would only add the
        # entropy of "how documents start" as noise. We drop those targets; every document still learns to emit
        # its own eos (the target one position earlier), and a window never predicts across documents.
        labels[seg[1:] != seg[:-1]] = IGNORE
    return Window(tokens[:-1], labels, seg[:-1])
