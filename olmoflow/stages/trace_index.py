"""The trace-index stage: an infini-gram index over exactly the tokens the training stages consume from the curate
artifact (pretrain/, midtrain/ and long/ token shards, post-training text), with the document table that maps a hit
back to its source and document, so `olmoflow trace` and `olmoflow trace-ui` can say where the model saw a text.

    olmoflow stage trace-index --input dataset=URI

It runs in one process on a CPU pod (the suffix array is built by infini-gram's indexer, a subprocess); the index
is an artifact like any other, so an unchanged dataset and config reuse it.
"""

from __future__ import annotations

import json

from olmoflow.contract.context import StageContext
from olmoflow.trace.build import build_index
from olmoflow.trace.config import TraceIndexConfig


def run(ctx: StageContext) -> dict[str, float]:
    cfg: TraceIndexConfig = ctx.cfg.trace_index
    data = ctx.inputs["dataset"]
    meta = build_index(data.path, ctx.out, list(cfg.parts), cfg.mem_gib, log=ctx.log)
    meta["dataset"] = {"uri": data.uri, "fingerprint": data.fingerprint}
    (ctx.out / "index.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    rate = meta["tokens"] / max(meta["seconds"]["total"], 1e-9)
    metrics = {"tokens": float(meta["tokens"]), "docs": float(meta["docs"]),
               "distinct_ids": float(meta["distinct_ids"]), "build_tokens_per_s": round(rate, 1),
               **{f"{part}_tokens": float(v["tokens"]) for part, v in meta["by_part"].items()}}
    ctx.log_metrics(metrics)
    ctx.log.info("trace-index: %d documents, %d tokens (%s), %d distinct ids, %.2fs", meta["docs"], meta["tokens"],
                 ", ".join(f"{p} {v['tokens']}" for p, v in meta["by_part"].items()), meta["distinct_ids"],
                 meta["seconds"]["total"])
    return metrics
