"""Build an index over a curate artifact's training documents.

The index folder:
    engine/          infini-gram's files: tokenized.0 (u16 dense ids, each document after a 0xFFFF separator),
                     offset.0 (u64 byte offset of each document), table.0 (the suffix array, by its indexer)
    docs.jsonl       the document table, one line per engine document, in order: part, source, doc_id, shard (the
                     file it came from) and offset (its first token there)
    docs.idx.npy     byte offset of each line of docs.jsonl (a hit's document is one seek away)
    vocab.npy        the dense ids' original ids (vocab.py); unigram.npy: each dense id's count
    tokenizer.json   the tokenizer the corpus was tokenized with; index.json: what was built, from what

The tokens are written here (infini-gram's own tokenizing step downloads a tokenizer from a hub); its indexer
only sorts. It runs as a subprocess with at most 20,000 open files.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from olmoflow.data.tokenizer import EOS
from olmoflow.trace.corpus import shards
from olmoflow.trace.tokens import tokenizer_id
from olmoflow.trace.vocab import SEPARATOR, DenseVocab

ENGINE = "engine"
ULIMIT = 20000


def build_index(dataset: Path, out: Path, parts: list[str], mem_gib: int = 4, cpus: int | None = None,
                log=None) -> dict[str, Any]:
    """Index `parts` of the curate artifact at `dataset` into `out`; returns what index.json says."""
    start = time.time()
    dataset, out = Path(dataset), Path(out)
    tok_path = dataset / "tokenizer.json"
    tok = Tokenizer.from_file(str(tok_path))
    engine = out / ENGINE
    engine.mkdir(parents=True, exist_ok=True)

    # pass 1: which ids the corpus holds (post text is tokenized once and kept: it is small)
    counts = np.zeros(tok.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    token_parts = [p for p in parts if p != "post"]
    post = list(shards(dataset, ["post"], tok)) if "post" in parts else []
    for sh in [*shards(dataset, token_parts, tok), *post]:
        if sh.tokens.size:
            c = np.bincount(sh.tokens, minlength=counts.size)
            if c.size > counts.size:
                counts = np.pad(counts, (0, c.size - counts.size))
            counts += c
    if not counts.any():
        raise ValueError(f"trace: {dataset} holds no training tokens in {', '.join(parts)}")
    vocab = DenseVocab.from_counts(counts)

    # pass 2: the engine's corpus and the document table
    n_docs = n_tokens = 0
    by_part: dict[str, dict[str, int]] = {}
    line_offsets = []
    with open(engine / "tokenized.0", "wb") as ds, open(engine / "offset.0", "wb") as od, \
            open(out / "docs.jsonl", "wb") as table:
        pos = 0
        for sh in [*shards(dataset, token_parts, tok), *post]:
            nd = sh.offsets.size - 1
            seps = sh.offsets[:-1] + np.arange(nd)
            body = np.empty(sh.tokens.size + nd, dtype=np.uint16)
            mask = np.ones(body.size, dtype=bool)
            mask[seps] = False
            body[seps] = SEPARATOR
            body[mask] = vocab.dense(sh.tokens)
            ds.write(body.tobytes())
            od.write((pos + 2 * seps).astype(np.uint64).tobytes())
            pos += 2 * body.size
            for i in range(nd):
                line_offsets.append(table.tell())
                table.write(json.dumps({"part": sh.part, "source": sh.sources[i], "doc_id": sh.doc_ids[i],
                                        "shard": sh.path, "offset": int(sh.offsets[i])}).encode() + b"\n")
            n_docs += nd
            n_tokens += sh.tokens.size
            p = by_part.setdefault(sh.part, {"docs": 0, "tokens": 0})
            p["docs"] += nd
            p["tokens"] += int(sh.tokens.size)
    np.save(out / "docs.idx.npy", np.asarray(line_offsets, dtype=np.int64))
    np.save(out / "vocab.npy", vocab.ids)
    np.save(out / "unigram.npy", counts[vocab.ids])
    shutil.copyfile(tok_path, out / "tokenizer.json")
    written = time.time()

    _run_indexer(engine, mem_gib, cpus or os.cpu_count() or 1, log)
    done = time.time()
    meta = {"tokenizer": tokenizer_id(tok_path), "eos": int(vocab.dense([tok.token_to_id(EOS)])[0]),
            "parts": list(parts), "docs": n_docs, "tokens": int(n_tokens), "distinct_ids": int(vocab.ids.size),
            "by_part": by_part,
            "seconds": {"write": round(written - start, 3), "suffix_array": round(done - written, 3),
                        "total": round(done - start, 3)}}
    (out / "index.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return meta


def _run_indexer(engine: Path, mem_gib: int, cpus: int, log) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = ULIMIT if hard == resource.RLIM_INFINITY else min(ULIMIT, hard)
    where = str(engine.resolve())
    cmd = [sys.executable, "-m", "infini_gram.indexing", "--data_dir", where, "--save_dir", where,
           "--token_dtype", "u16", "--cpus", str(cpus), "--mem", str(mem_gib), "--ulimit", str(ulimit)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not (engine / "table.0").is_file():
        tail = (r.stdout + r.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"trace: infini-gram's indexer failed (exit {r.returncode}): {' | '.join(tail)}")
    if log is not None:
        log.info("trace: suffix array built (%s)", engine)
