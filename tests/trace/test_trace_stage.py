"""The trace-index stage builds its index from the dataset input into the stage's folder and reports its size."""

from __future__ import annotations

import json
from types import SimpleNamespace

from kit import input_from_dir, make_test_context

from olmoflow.stages import trace_index
from olmoflow.trace.config import TraceIndexConfig
from olmoflow.trace.index import TraceIndex


def test_stage_builds_the_index(dataset, tmp_path):
    cfg = SimpleNamespace(trace_index=TraceIndexConfig(parts=["pretrain", "long"]))
    ctx = make_test_context("trace-index", cfg, tmp_path, {"dataset": input_from_dir(dataset, "dataset")})
    metrics = trace_index.run(ctx)
    assert metrics["docs"] == 18 and metrics["tokens"] == metrics["pretrain_tokens"] + metrics["long_tokens"]
    assert metrics["build_tokens_per_s"] > 0
    meta = json.loads((ctx.out / "index.json").read_text())
    assert meta["dataset"] == {"uri": str(dataset), "fingerprint": "test"}
    ix = TraceIndex.open(str(ctx.out))
    assert ix.meta["parts"] == ["pretrain", "long"]
    ix.close()
