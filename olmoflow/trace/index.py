"""An index opened for queries: occurrences of a token sequence, a document's row and the text around a hit, and the
check that a model's tokenizer is the one the index was built with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from olmoflow.trace.build import ENGINE
from olmoflow.trace.tokens import tokenizer_id
from olmoflow.trace.vocab import DenseVocab


class TraceError(ValueError):
    """An index that cannot answer as asked; the message is one line."""


@dataclass
class Hit:
    """One occurrence of a sequence in one training document, with the text around it."""

    doc_ix: int
    """The document's place in the index (TraceIndex.row, TraceIndex.document)."""
    row: dict[str, Any]
    """The document's row in the table: part, source, doc_id, shard, offset."""
    before: str
    match: str
    after: str


FILES = ("index.json", "tokenizer.json", "vocab.npy", "unigram.npy", "docs.idx.npy", "docs.jsonl")
"""What an index folder holds besides the engine's folder; nothing else (no path named in a file) is opened."""


def confine(root: Path, uri: str) -> None:
    """Refuse an index folder in which a file the index reads is a link leading out of it (an index may be a
    plain folder anyone could have filled, and the engine opens every file in its folder)."""
    inside = root.resolve()
    for p in [root / f for f in FILES] + sorted((root / ENGINE).rglob("*")):
        if (p.exists() or p.is_symlink()) and not p.resolve().is_relative_to(inside):
            raise TraceError(f"trace: {uri}: {p.relative_to(root)} leads outside the index (to {p.resolve()}); "
                             f"refusing it")


def _meta(path: Path, uri: str) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise TraceError(f"trace: {uri}: index.json is not JSON ({str(e).splitlines()[0]})") from None
    if not (isinstance(meta, dict) and type(meta.get("eos")) is int and isinstance(meta.get("tokenizer"), str)):
        raise TraceError(f"trace: {uri}: index.json lacks an integer eos and a tokenizer id")
    return meta


def _array(path: Path, uri: str) -> np.ndarray:
    """A numeric .npy (never a pickled object array: np.load refuses those without allow_pickle)."""
    try:
        arr = np.load(path)
    except (ValueError, OSError, EOFError) as e:
        raise TraceError(f"trace: {uri}: {path.name} is not a numeric array ({str(e).splitlines()[0]})") from None
    if not (isinstance(arr, np.ndarray) and arr.dtype.kind in "iuf"):
        raise TraceError(f"trace: {uri}: {path.name} is not a numeric array")
    return arr


class TraceIndex:
    def __init__(self, path: Path, uri: str | None = None):
        from infini_gram.engine import InfiniGramEngine

        self.path = Path(path)
        self.uri = uri or str(path)
        meta_path = self.path / "index.json"
        if not meta_path.is_file():
            raise TraceError(f"trace: {self.uri} is not a trace index (no index.json)")
        confine(self.path, self.uri)
        self.meta = _meta(meta_path, self.uri)
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.vocab = DenseVocab(_array(self.path / "vocab.npy", self.uri))
        counts = _array(self.path / "unigram.npy", self.uri).astype(np.float64)
        # log p of each dense id; the never-seen id gets that of a count of one half
        self.logp = np.log(np.append(counts, 0.5) / counts.sum())
        self._rows = _array(self.path / "docs.idx.npy", self.uri)
        self._table = open(self.path / "docs.jsonl", "rb")  # noqa: SIM115 -- held for the index's life
        self.engine = InfiniGramEngine(index_dir=str(self.path / ENGINE), eos_token_id=int(self.meta["eos"]),
                                       ds_prefetch_depth=0, sa_prefetch_depth=0, od_prefetch_depth=0)

    @classmethod
    def open(cls, uri: str) -> TraceIndex:
        """A folder holding an index, or an index artifact (local or s3://, verified and cached)."""
        local = Path(uri.removeprefix("file://"))
        if (local / "index.json").is_file() and not (local / "manifest.json").is_file():
            return cls(local)
        from olmoflow.artifacts import open_artifact

        art = open_artifact(uri, kind="index")
        return cls(art.path, uri)

    @property
    def tokenizer_id(self) -> str:
        return self.meta["tokenizer"]

    def check_tokenizer(self, tokenizer_json: Path, what: str) -> None:
        """Refuse a model whose tokenizer is not the index's: one line naming both."""
        theirs = tokenizer_id(tokenizer_json)
        if theirs != self.tokenizer_id:
            raise TraceError(f"trace: {what} uses tokenizer {theirs} but index {self.uri} was built with tokenizer "
                             f"{self.tokenizer_id}: rebuild the index from that model's dataset (trace-index)")

    def dense(self, ids: list[int]) -> list[int]:
        return [int(i) for i in self.vocab.dense(np.asarray(ids, dtype=np.int64))]

    def find(self, dense: list[int]) -> tuple[int, list[tuple[int, int]]]:
        """(occurrences, the suffix-array rank range of each engine shard)."""
        r = self.engine.find(input_ids=dense)
        return int(r["cnt"]), [tuple(seg) for seg in r["segment_by_shard"]]

    def count(self, dense: list[int]) -> int:
        return int(self.engine.count(input_ids=dense)["count"])

    def row(self, doc_ix: int) -> dict[str, Any]:
        self._table.seek(int(self._rows[doc_ix]))
        return json.loads(self._table.readline())

    def hits(self, dense: list[int], segments: list[tuple[int, int]], k: int, context: int = 24) -> list[Hit]:
        """Up to `k` occurrences in distinct documents (a document a mix repeated, or another with the same text
        around the hit, counts once), each with `context` tokens of text either side."""
        out, seen = [], set()
        for s, (lo, hi) in enumerate(segments):
            ranks = range(lo, min(hi, lo + 4 * k))
            if not ranks:
                continue
            docs = self.engine.get_docs_by_ranks_2(requests=[(s, r, len(dense), context) for r in ranks])
            for d in docs:
                row = self.row(d["doc_ix"])
                ids, at = d["token_ids"], d["needle_offset"]
                before, match, after = (self.decode(ids[:at]), self.decode(ids[at:at + len(dense)]),
                                        self.decode(ids[at + len(dense):]))
                keys = {(row["source"], row["doc_id"]), before + match + after}  # a repeat, or the same text twice
                if keys & seen:
                    continue
                seen |= keys
                core = match.strip()  # the mark goes around the words, not the space a token carries
                lead = len(match) - len(match.lstrip())
                out.append(Hit(d["doc_ix"], row, before + match[:lead], core, match[lead + len(core):] + after))
                if len(out) == k:
                    return out
        return out

    def document(self, doc_ix: int, max_tokens: int = 8192) -> dict[str, Any]:
        """A document's row and its text (its first `max_tokens` tokens)."""
        if not 0 <= doc_ix < len(self._rows):
            raise TraceError(f"trace: no document {doc_ix} in {self.uri} ({len(self._rows)} documents)")
        d = self.engine.get_doc_by_ix_2(doc_ix=doc_ix, max_ctx_len=max_tokens)
        return {**self.row(doc_ix), "doc_ix": doc_ix, "text": self.decode(d["token_ids"])}

    def decode(self, dense: list[int]) -> str:
        return self.tokenizer.decode([int(i) for i in self.vocab.original(np.asarray(dense))],
                                     skip_special_tokens=True)

    def close(self) -> None:
        self._table.close()
