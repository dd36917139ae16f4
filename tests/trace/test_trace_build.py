"""The index holds exactly the training parts of a curate artifact, with a document table that names each
document's source and id; any vocabulary fits the 16-bit engine through the dense remap."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tracekit import PLANTED

from olmoflow.data.mixing import DOC_TABLE
from olmoflow.trace.build import build_index
from olmoflow.trace.index import TraceIndex
from olmoflow.trace.vocab import MAX_IDS, DenseVocab


def rows(index_dir):
    return [json.loads(line) for line in (index_dir / "docs.jsonl").read_text().splitlines()]


def test_document_table_names_every_training_document(index_dir, dataset):
    meta = json.loads((index_dir / "index.json").read_text())
    table = rows(index_dir)
    assert len(table) == meta["docs"] == 6 * 4 + 2 + 1  # 4 domains of 6 documents; the SFT row's 2 texts; 1 prompt
    assert {r["part"] for r in table} == {"pretrain", "midtrain", "long", "post"}  # never val
    for (part, _, src, doc_id) in PLANTED:
        assert {"part": part, "source": src, "doc_id": doc_id} in [
            {k: r[k] for k in ("part", "source", "doc_id")} for r in table]
    # each row's offset is its document's first token in its shard
    r = next(r for r in table if r["doc_id"] == "w3")
    offs = np.load(dataset / r["shard"].replace(".npy", ".idx.npy"))
    assert r["offset"] in offs.tolist()
    assert meta["tokens"] == sum(v["tokens"] for v in meta["by_part"].values())


def test_a_hit_maps_back_to_its_row(index):
    table_row = index.row(0)
    assert set(table_row) == {"part", "source", "doc_id", "shard", "offset"}


def test_dataset_without_document_tables_names_documents_by_place(dataset, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(dataset, old)
    for p in old.rglob(DOC_TABLE):
        p.unlink()
    build_index(old, tmp_path / "ix", ["pretrain"], cpus=1)
    table = rows(tmp_path / "ix")
    assert table[0]["source"] in ("pretrain/code", "pretrain/web")
    assert table[0]["doc_id"].startswith(f"{table[0]['shard']}#")


def test_parts_select_what_is_indexed(dataset, tmp_path):
    meta = build_index(dataset, tmp_path / "ix", ["post"], cpus=1)
    assert set(meta["by_part"]) == {"post"} and meta["docs"] == 3
    ix = TraceIndex.open(str(tmp_path / "ix"))
    assert ix.count(ix.dense(ix.tokenizer.encode("What is 2 + 3?").ids)) == 1
    ix.close()


def test_dense_vocab_fits_any_vocabulary_in_16_bits():
    ids = np.array([3, 70_000, 151_000, 9], dtype=np.uint32)
    counts = np.bincount(ids)
    v = DenseVocab.from_counts(counts)
    assert v.dense(np.array([3, 9, 70_000, 151_000])).tolist() == [0, 1, 2, 3]
    assert v.dense(np.array([4, 200_000])).tolist() == [v.unseen, v.unseen]  # never in the corpus: matches nothing
    assert v.original(np.array([2, 3, v.unseen])).tolist() == [70_000, 151_000]
    with pytest.raises(ValueError, match="holds at most 65534"):
        DenseVocab(np.arange(MAX_IDS + 1))
