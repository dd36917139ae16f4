"""Token shards: uint32 token ids of whole documents, back to back, with the document offsets beside them.

A shard is two files: `NNNNN.npy` (uint32 tokens) and `NNNNN.idx.npy` (int64 offsets: doc i is
tokens[idx[i]:idx[i+1]]). Readers memory-map them, so a 100 GB dataset costs no RAM.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


class ShardWriter:
    """Appends documents and cuts a new shard every `shard_tokens` tokens (never inside a document)."""

    def __init__(self, out_dir: str | Path, shard_tokens: int = 1 << 24):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_tokens = shard_tokens
        self._tokens: list[np.ndarray] = []
        self._n = 0
        self._index = 0
        self.num_docs = 0
        self.num_tokens = 0

    def add(self, ids: Iterable[int] | np.ndarray) -> None:
        arr = np.asarray(ids, dtype=np.uint32)
        if arr.size == 0:
            return
        self._tokens.append(arr)
        self._n += arr.size
        self.num_docs += 1
        self.num_tokens += arr.size
        if self._n >= self.shard_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._tokens:
            return
        lengths = np.array([t.size for t in self._tokens], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        np.save(self.out_dir / f"{self._index:05d}.npy", np.concatenate(self._tokens))
        np.save(self.out_dir / f"{self._index:05d}.idx.npy", offsets)
        self._index += 1
        self._tokens, self._n = [], 0

    def close(self) -> None:
        self._flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


class ShardSet:
    """All shards under one folder (searched recursively, in sorted order), memory-mapped."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        paths = sorted(p for p in self.root.rglob("*.npy") if not p.name.endswith(".idx.npy"))
        if not paths:
            raise FileNotFoundError(f"no token shards under {self.root}")
        self.paths = paths
        self.tokens = [np.load(p, mmap_mode="r") for p in paths]
        self.offsets = [np.load(p.with_name(p.name[:-4] + ".idx.npy")) for p in paths]

    @property
    def num_tokens(self) -> int:
        return int(sum(t.size for t in self.tokens))

    @property
    def num_docs(self) -> int:
        return int(sum(o.size - 1 for o in self.offsets))

    def documents(self) -> Iterator[np.ndarray]:
        for toks, offs in zip(self.tokens, self.offsets):
            for a, b in zip(offs[:-1], offs[1:]):
                yield toks[a:b]

    def doc_lengths(self) -> np.ndarray:
        return np.concatenate([np.diff(o) for o in self.offsets])
