"""Exact deduplication and the held-out split, both by content hash: a document's fate depends only on its
text, never on file order or a seed, so adding a source cannot move another source's documents between splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unit_interval(digest: str) -> float:
    """A content hash mapped to [0, 1), uniformly."""
    return int(digest[:15], 16) / 16 ** 15


def exact_dedup(hashes: Sequence[str], seen: set[str] | None = None) -> list[bool]:
    """keep[i] is True for the first occurrence of each hash (and False for any hash already in `seen`, which
    is updated); across sources, the earlier source keeps the copy."""
    seen = set() if seen is None else seen
    keep = []
    for h in hashes:
        keep.append(h not in seen)
        seen.add(h)
    return keep


def val_mask(hashes: Sequence[str], fraction: float) -> list[bool]:
    """is_val[i]: the documents whose hash falls below `fraction`, and at least the lowest one when there are
    two or more documents and fraction > 0 (so even a small domain has a held-out document)."""
    points = [unit_interval(h) for h in hashes]
    mask = [p < fraction for p in points]
    if fraction > 0 and len(points) >= 2 and not any(mask):
        mask[min(range(len(points)), key=points.__getitem__)] = True
    return mask
