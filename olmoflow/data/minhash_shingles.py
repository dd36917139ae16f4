"""Word n-gram shingles of many documents at once, in numpy: the hashing half of MinHash dedup (minhash.py).

A batch of texts is lowercased, joined and decoded to code points (UTF-32) in one go; words are the maximal runs of
non-whitespace, exactly as `str.split()` finds them. Each word is hashed with a polynomial over its code points
(mod 2^64, from one prefix sum over the whole batch, so no Python loop touches a word), then spread with splitmix64;
n-grams chain their words' hashes (h·M + w, position-dependent) and are spread again. A text shorter than n words
is one shingle of all its words; an empty one has none. Every step is integer arithmetic on explicit little-endian
types, so any machine and any run gives the same 64-bit shingles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIX = np.uint64(0x9E3779B97F4A7C15)
"""Multiplier that chains word hashes into an n-gram hash (position-dependent: "a b" and "b a" differ)."""
_POLY = np.uint64(0xD6E8FEB86659FD93)
"""Odd, so it has an inverse mod 2^64: a word's hash is its prefix-sum difference times P^-start."""
_POLY_INV = np.uint64(pow(int(_POLY), -1, 1 << 64))
BATCH_CHARS = 1 << 18
"""Characters hashed per numpy pass (~10 MB of temporaries, measured best); the power tables are at least this long."""
WHITESPACE = (0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
              0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
"""The code points `str.isspace()` is true for (and so `str.split()` splits on)."""
_SPACE = np.zeros(0x3002, bool)
_SPACE[list(WHITESPACE)] = True  # index 0x3001 stands for every code point above the last space: False
_powers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class Shingles:
    """The shingles of n documents, flat: document i's are values[offsets[i]:offsets[i + 1]] (in text order, with
    repeats; `of(i)` gives the set)."""

    values: np.ndarray
    """uint64 shingle hashes of all documents, concatenated."""
    offsets: np.ndarray
    """int64 [n + 1]: where each document's shingles start, and the end."""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, i: int) -> np.ndarray:
        """Document i's shingles as a sorted unique array (the set exact Jaccard is computed on)."""
        return np.unique(self.values[self.offsets[i]:self.offsets[i + 1]])

    @staticmethod
    def concat(parts: list[Shingles]) -> Shingles:
        """The shingles of the documents of `parts`, in order (e.g. batches computed by parallel workers)."""
        if not parts:
            return Shingles(np.zeros(0, np.uint64), np.zeros(1, np.int64))
        starts = np.cumsum([0] + [p.values.size for p in parts[:-1]])
        offsets = [parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts)]
        return Shingles(np.concatenate([p.values for p in parts]), np.concatenate(offsets))


def finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads a uint64 value over all 64 bits."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P^j, P^-j, prefix sums of P^j) for j < n, cached and grown on demand (uint64 products wrap mod 2^64)."""
    global _powers
    if _powers is None or _powers[0].size < n:
        size = max(n, BATCH_CHARS + 1)
        up, down = np.full(size, _POLY, np.uint64), np.full(size, _POLY_INV, np.uint64)
        up[0] = down[0] = 1
        up, down = np.cumprod(up), np.cumprod(down)
        _powers = up, down, np.concatenate([[np.uint64(0)], np.cumsum(up)])
    return _powers


def word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 hash of every word of every text, in order; int64 words per text); words are `t.lower().split()`."""
    lowered = [t.lower() for t in texts]
    # one space between texts, so no word spans two; the space also keeps lower()'s word-final rules per text
    cp = np.frombuffer(" ".join(lowered).encode("utf-32-le", "surrogatepass"), "<u4")
    text = cp > 32  # then fix the few below (control characters) and above (Unicode spaces) ASCII's space
    for odd in (np.flatnonzero(cp < 32), np.flatnonzero(cp >= 0x85)):
        text[odd] = ~_SPACE[np.minimum(cp[odd], 0x3001)]
    edge = np.diff(text.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    up, down, up_sum = _power_tables(cp.size + 1)
    prefix = np.zeros(cp.size + 1, np.uint64)
    np.cumsum(cp * up[:cp.size], out=prefix[1:])
    # sum over the word of (c + 1)·P^(j - start): the + 1 keeps trailing NULs ("a\0" vs "a") apart
    poly = (prefix[ends] - prefix[starts] + up_sum[ends] - up_sum[starts]) * down[starts]
    text_starts = np.cumsum([0] + [len(t) + 1 for t in lowered[:-1]])[:len(texts)]
    counts = np.diff(np.searchsorted(starts, text_starts), append=starts.size)
    return finalize(poly), counts


def _batch_shingles(texts: list[str], ngram: int) -> Shingles:
    w, counts = word_hashes(texts)
    n_docs = len(texts)
    word_start = np.cumsum(counts) - counts
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    offsets = np.zeros(n_docs + 1, np.int64)
    np.cumsum(per_doc, out=offsets[1:])
    out = np.zeros(offsets[-1], np.uint64)
    h = w
    for k in range(1, ngram + 1):
        short = np.flatnonzero(counts == k)  # texts of exactly k < n words: one shingle of all k words
        if k < ngram:
            out[offsets[short]] = h[word_start[short]]
            h = h[:-1] * MIX + w[k:]  # h[p] now chains words p..p+k: "a b" and "b a" differ
        else:
            owner = np.repeat(np.arange(n_docs), counts)[:h.size]
            pos = np.arange(h.size) - word_start[owner]
            full = pos + ngram <= counts[owner]  # the n-gram ends inside its own text
            out[offsets[owner[full]] + pos[full]] = h[full]
        if not h.size:
            break
    return Shingles(finalize(out), offsets)


def batches(texts: list[str]) -> list[tuple[int, int]]:
    """[lo, hi) ranges of consecutive texts of about BATCH_CHARS characters (a longer text is a batch alone)."""
    out, lo, size = [], 0, 0
    for i, t in enumerate(texts):
        if size and size + len(t) > BATCH_CHARS:
            out.append((lo, i))
            lo, size = i, 0
        size += len(t) + 1
    if lo < len(texts):
        out.append((lo, len(texts)))
    return out


def shingles(texts: list[str], ngram: int) -> Shingles:
    """The word n-gram shingles of every text (see the module docstring)."""
    return Shingles.concat([_batch_shingles(texts[lo:hi], ngram) for lo, hi in batches(texts)])
