"""Olmo 3's gzip-compressibility filter for long documents: drop the most compressible (repetitive: boilerplate,
tables, generated lists) and the least compressible (noise, encoded blobs) fractions, keep the middle."""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable

import numpy as np

from olmoflow.train.packing import Docs


def gzip_ratio(text: str) -> float:
    """Compressed size over raw size of the UTF-8 text: small = repetitive, near 1 = incompressible."""
    raw = text.encode("utf-8")
    return len(gzip.compress(raw, compresslevel=6, mtime=0)) / max(1, len(raw))


def keep_middle(ratios: np.ndarray, drop_most: float, drop_least: float) -> np.ndarray:
    """Sorted indices kept after dropping floor(n·drop_most) lowest ratios and floor(n·drop_least) highest."""
    n = ratios.size
    order = np.argsort(ratios, kind="stable")
    lo, hi = math.floor(n * drop_most), n - math.floor(n * drop_least)
    return np.sort(order[lo:max(lo, hi)])


def filter_long(docs: Docs, decode: Callable[[list[int]], str], drop: tuple[float, float]) -> Docs:
    """The long documents left after the compressibility filter (ratios measured on the decoded text)."""
    ratios = np.array([gzip_ratio(decode(docs.doc(i).tolist())) for i in range(len(docs))])
    keep = keep_middle(ratios, *drop)
    if keep.size == 0:
        raise ValueError(f"long-context: the compressibility filter {drop} leaves none of {len(docs)} "
                         f"{docs.name!r} documents")
    return Docs(docs.name, docs.arrays, docs.shard[keep], docs.start[keep], docs.length[keep])
