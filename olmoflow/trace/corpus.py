"""The training documents of a curate artifact, as the training stages consumed them.

pretrain/, midtrain/ and long/ hold token shards per domain (olmoflow/data/shards.py); beside each domain's shards
curate writes docs.jsonl, one {"source", "doc_id"} per document in shard order (olmoflow/data/mixing.py). An
artifact from before that table names each document by its domain and place instead. post/{sft,dpo,rl}.jsonl hold
text: every string a post-training stage trains on (olmoflow/data/postsets.py `texts`) is tokenized with the
artifact's tokenizer, one document per string. val/ is held out and never read here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from olmoflow.data.mixing import DOC_TABLE
from olmoflow.data.postsets import texts
from olmoflow.data.shards import ShardSet

SHARD_PARTS = ("pretrain", "midtrain", "long")
POST_SETS = ("sft", "dpo", "rl")


@dataclass
class Shard:
    """One shard file's documents: tokens (uint32), offsets (doc i is tokens[offsets[i]:offsets[i+1]]), and per
    document its source and id."""

    part: str
    path: str
    """Relative to the dataset, e.g. pretrain/web/00000.npy (for post text: post/sft.jsonl)."""
    tokens: np.ndarray
    offsets: np.ndarray
    sources: list[str]
    doc_ids: list[str]


def shards(dataset: Path, parts: list[str], tok: Tokenizer) -> Iterator[Shard]:
    """Every training shard of the parts asked for, in a fixed order; post text as one shard per set."""
    for part in parts:
        if part == "post":
            yield from _post(dataset, tok)
            continue
        root = dataset / part
        for dom in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            if not any(dom.glob("*.npy")):
                continue
            yield from _domain(dataset, part, dom)


def _domain(dataset: Path, part: str, dom: Path) -> Iterator[Shard]:
    ss = ShardSet(dom)
    table = _doc_table(dom / DOC_TABLE, ss.num_docs)
    first = 0
    for path, toks, offs in zip(ss.paths, ss.tokens, ss.offsets):
        n = offs.size - 1
        rel = path.relative_to(dataset).as_posix()
        if table is not None:
            rows = table[first:first + n]
            sources, ids = [r["source"] for r in rows], [r["doc_id"] for r in rows]
        else:  # an artifact from before the document table: name each document by its place
            sources, ids = [f"{part}/{dom.name}"] * n, [f"{rel}#{i}" for i in range(n)]
        first += n
        yield Shard(part, rel, np.asarray(toks), np.asarray(offs, dtype=np.int64), sources, ids)


def _doc_table(path: Path, num_docs: int) -> list[dict] | None:
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows if len(rows) == num_docs else None


def _post(dataset: Path, tok: Tokenizer) -> Iterator[Shard]:
    for name in POST_SETS:
        path = dataset / "post" / f"{name}.jsonl"
        if not path.is_file():
            continue
        docs, sources, ids = [], [], []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            row = json.loads(line)
            for j, text in enumerate(texts([row])):
                if text:
                    docs.append(text)
                    sources.append(str(row.get("source") or f"post/{name}"))
                    ids.append(f"{i}.{j}")
        if not docs:
            continue
        encoded = [np.asarray(e.ids, dtype=np.uint32) for e in tok.encode_batch(docs, add_special_tokens=False)]
        offsets = np.concatenate([[0], np.cumsum([e.size for e in encoded])]).astype(np.int64)
        tokens = np.concatenate(encoded) if encoded else np.zeros(0, np.uint32)
        yield Shard("post", f"post/{name}.jsonl", tokens, offsets, sources, ids)
