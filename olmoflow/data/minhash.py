"""Fuzzy deduplication by MinHash LSH: documents that share most of their word 5-grams (Jaccard similarity of
the shingle sets at or above a threshold) are clustered, and each cluster keeps its first document.

The idea: every document becomes a set of 64-bit shingle hashes (lowercased word n-grams, hashed in bulk by
minhash_shingles.py). bands×rows hash functions h(x) = (a·x + b) mod 2^32 (a odd, x the shingle's top 32 bits)
turn the set into a MinHash signature, whose entries agree between two documents with probability ≈ their Jaccard
similarity (tests/data/test_minhash.py checks that rate, and the bands' S-curve, on pairs of known Jaccard).
Documents whose signatures agree on all rows of any band land in the same bucket: those are the candidate pairs,
and each candidate is confirmed with the exact Jaccard of the two shingle sets (LSH only finds pairs, it never
decides them). Confirmed pairs are joined with union-find; the cluster's earliest document (input
order) is kept. Everything is a function of the texts and the seed, so runs and machines agree.

Two halves, so the heavy one can run in parallel workers (e.g. Ray Data map_batches over consecutive slices):

    parts = [signatures_for(piece, cfg) for piece in slices]   # workers: (uint32 [n, bands*rows], Shingles)
    result = cluster(np.concatenate([p[0] for p in parts]), Shingles.concat([p[1] for p in parts]), cfg)
    result = fuzzy_dedup(texts, cfg)                          # the same, all in this process

Speed comes from doing everything per batch of ~256k characters in a few large numpy operations: no Python loop
touches a word or a shingle, and the signature is one multiply, add and segment-min per (shingle, hash function)
in 32-bit lanes. cluster() only reads the shingles of documents that are in candidate pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from olmoflow.data.config import FuzzyDedupConfig
from olmoflow.data.minhash_shingles import MIX, Shingles, batches, finalize, shingles

_CHUNK = 8192  # shingles per (hash functions × shingles) block: 9 MB of uint32 at 286 functions (measured best)
EMPTY = np.uint32(0xFFFFFFFF)
"""Signature entries of a document without shingles (it is never a candidate: cluster() leaves it out)."""

__all__ = ["FuzzyResult", "Shingles", "candidate_pairs", "cluster", "fuzzy_dedup", "jaccard", "permutations",
           "shingle_hashes", "signatures", "signatures_for"]


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """Sorted unique uint64 hashes of the word n-grams of one lowercased text."""
    return shingles([text], ngram).of(0)


def permutations(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of `num` hash functions (a·x + b) mod 2^32: a odd (so each is a permutation of the 32-bit values)."""
    rng = np.random.default_rng([seed, 0x6D696E68])  # PCG64: the same numbers on every machine
    a = rng.integers(0, 1 << 32, size=num, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.integers(0, 1 << 32, size=num, dtype=np.uint64).astype(np.uint32)
    return a, b


def signatures(sh: Shingles, num_perm: int, seed: int) -> np.ndarray:
    """[docs, num_perm] uint32 MinHash signatures; a document without shingles gets all EMPTY."""
    a, b = permutations(num_perm, seed)
    a, b = a[:, None], b[:, None]
    sig = np.full((num_perm, len(sh)), EMPTY, np.uint32)  # transposed: each function's minima are contiguous
    x = (sh.values >> np.uint64(32)).astype(np.uint32)
    owner = np.repeat(np.arange(len(sh)), sh.counts())
    buf = np.empty((num_perm, _CHUNK), np.uint32)
    for lo in range(0, x.size, _CHUNK):
        xs, docs = x[lo:lo + _CHUNK], owner[lo:lo + _CHUNK]
        vals = buf[:, :xs.size]
        np.multiply(a, xs, out=vals)
        vals += b  # wraps mod 2^32
        starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        ids = docs[starts]  # each document once per chunk, so the fancy assignment below cannot collide
        sig[:, ids] = np.minimum(sig[:, ids], np.minimum.reduceat(vals, starts, axis=1))
    return np.ascontiguousarray(sig.T)


def signatures_for(texts: list[str], cfg: FuzzyDedupConfig) -> tuple[np.ndarray, Shingles]:
    """(uint32 [len(texts), bands*rows] signatures, the texts' Shingles): the parallel half of fuzzy_dedup."""
    sigs, parts = [], []
    for lo, hi in batches(texts):
        sh = shingles(texts[lo:hi], cfg.ngram)
        sigs.append(signatures(sh, cfg.bands * cfg.rows, cfg.seed))
        parts.append(sh)
    sig = np.concatenate(sigs) if sigs else np.zeros((0, cfg.bands * cfg.rows), np.uint32)
    return sig, Shingles.concat(parts)


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, active: np.ndarray | None = None) -> np.ndarray:
    """[pairs, 2] int64 (i < j, sorted, unique): documents whose signatures agree on every row of some band,
    among the `active` ones (bool mask; default all). Rows are folded into one 64-bit bucket key per band; a rare
    key collision only adds a candidate, which the exact Jaccard check then rejects."""
    n = sig.shape[0]
    idx = np.arange(n) if active is None else np.flatnonzero(active)
    sig = sig if active is None else sig[idx]
    found = []
    for band in range(bands):
        key = np.zeros(idx.size, np.uint64)
        for col in sig[:, band * rows:(band + 1) * rows].T:
            key = finalize(key * MIX + col)
        order = np.argsort(key, kind="stable")
        k = key[order]
        same = k[1:] == k[:-1]
        if not same.any():
            continue
        shared = np.r_[same, False] | np.r_[False, same]  # members of buckets of two or more
        members, bucket = idx[order[shared]], np.cumsum(np.r_[True, ~same])[shared]
        for d in range(1, members.size):  # pair each member with the one d places on in its bucket
            hit = bucket[d:] == bucket[:-d]
            if not hit.any():
                break
            i, j = members[:-d][hit], members[d:][hit]
            found.append(np.minimum(i, j) * n + np.maximum(i, j))
    if not found:
        return np.zeros((0, 2), np.int64)
    codes = np.unique(np.concatenate(found))
    return np.stack([codes // n, codes % n], axis=1)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if not a.size and not b.size:
        return 1.0
    if not a.size or not b.size:
        return 0.0
    at = np.minimum(np.searchsorted(b, a), b.size - 1)
    inter = int(np.count_nonzero(b[at] == a))
    return inter / (a.size + b.size - inter)


@dataclass
class FuzzyResult:
    keep: list[bool]
    """keep[i]: document i is the first of its cluster (or in none)."""
    cluster: list[int]
    """cluster[i]: index of the document that represents i's cluster (itself when kept)."""
    candidates: int = 0
    """Candidate pairs from the LSH buckets."""
    confirmed: int = 0
    """Candidates whose exact Jaccard reached the threshold."""
    sizes: list[int] = field(default_factory=list)
    """Sizes of the clusters of two or more documents, largest first."""

    def summary(self) -> dict[str, float]:
        s = self.sizes
        return {"candidates": self.candidates, "confirmed": self.confirmed, "clusters": len(s),
                "removed": len(self.keep) - sum(self.keep), "max_cluster": max(s, default=0),
                "mean_cluster": round(sum(s) / len(s), 3) if s else 0.0}


def cluster(sig: np.ndarray, sh: Shingles, cfg: FuzzyDedupConfig) -> FuzzyResult:
    """LSH candidates → exact Jaccard check → union-find; the earliest document of each cluster is kept."""
    n = len(sh)
    pairs = candidate_pairs(sig, cfg.bands, cfg.rows, active=sh.counts() > 0)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sets: dict[int, np.ndarray] = {}
    confirmed = 0
    for i, j in pairs.tolist():
        for d in (i, j):
            if d not in sets:
                sets[d] = sh.of(d)
        if jaccard(sets[i], sets[j]) >= cfg.threshold:
            confirmed += 1
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)  # the root is always the cluster's earliest document
    roots = [find(i) for i in range(n)]
    counts = np.bincount(np.array(roots, np.int64), minlength=n) if n else np.zeros(0, np.int64)
    sizes = sorted((int(c) for c in counts if c > 1), reverse=True)
    return FuzzyResult([r == i for i, r in enumerate(roots)], roots, len(pairs), confirmed, sizes)


def fuzzy_dedup(texts: list[str], cfg: FuzzyDedupConfig) -> FuzzyResult:
    """Cluster near-duplicates among `texts` and keep the first of each cluster (see the module docstring)."""
    sig, sh = signatures_for(texts, cfg)
    return cluster(sig, sh, cfg)
