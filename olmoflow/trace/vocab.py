"""The corpus's distinct token ids as a dense range 0..n-1, so any vocabulary fits infini-gram's 16-bit engine as
long as the corpus uses fewer than 65,535 distinct ids (0xFFFF is the engine's document separator). An id the
corpus never holds maps to n, which no document contains, so a query holding it matches nothing."""

from __future__ import annotations

import numpy as np

SEPARATOR = 0xFFFF
MAX_IDS = SEPARATOR - 1
"""Distinct ids the engine can hold: 0..65533 for tokens, 65534 for 'never seen', 65535 separates documents."""


class DenseVocab:
    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.uint32)
        """The corpus's distinct original ids, ascending: dense id i is original id ids[i]."""
        if self.ids.size > MAX_IDS:
            raise ValueError(f"trace: the corpus uses {self.ids.size} distinct token ids; infini-gram's 16-bit "
                             f"engine holds at most {MAX_IDS}")
        self.unseen = int(self.ids.size)
        self._lookup = np.full(int(self.ids.max(initial=0)) + 2, self.unseen, dtype=np.uint16)
        self._lookup[self.ids] = np.arange(self.ids.size, dtype=np.uint16)

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> DenseVocab:
        """From per-original-id counts (np.bincount over the corpus)."""
        return cls(np.flatnonzero(counts))

    def dense(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(ids.shape, self.unseen, dtype=np.uint16)
        known = ids < self._lookup.size - 1
        out[known] = self._lookup[ids[known]]
        return out

    def original(self, dense: np.ndarray) -> np.ndarray:
        dense = np.asarray(dense, dtype=np.int64)
        return self.ids[dense[dense < self.unseen]]
