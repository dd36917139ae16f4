"""Sample generations of a checkpoint traced against an index: what the eval report shows under "Where the model saw
it". The prompts are the openings of held-out documents (never in the index), so a span in a completion is text the
model reproduces from its training data, not text it was shown.

The eval stage builds the section (olmoflow/stages/eval.py): `prompts` picks the openings, the stage generates, and
`trace_checkpoint` traces one checkpoint's completions; a section holds a list of checkpoints, so evaluating several
stages' checkpoints is one call per checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmoflow.evals.heldout import read_docs
from olmoflow.trace.index import TraceIndex
from olmoflow.trace.spans import find_spans


def prompts(val_files: list[Path], tokenizer, n: int, prompt_tokens: int) -> list[dict[str, str]]:
    """Up to `n` prompts {"id", "prompt"}: the first `prompt_tokens` tokens (as text, cut at a token's end) of the
    held-out documents, taking the domains in turn (the first document of each, then the second, ...)."""
    per_domain = {f.stem: read_docs(f, n, 0) for f in val_files}
    out: list[dict[str, str]] = []
    for i in range(n):
        for dom, docs in per_domain.items():
            if i < len(docs) and len(out) < n:
                enc = tokenizer.encode(docs[i], add_special_tokens=False)
                if enc.offsets:
                    end = enc.offsets[min(prompt_tokens, len(enc.offsets)) - 1][1]
                    out.append({"id": f"val/{dom}#{i}", "prompt": docs[i][:end]})
    return out


def index_info(index: TraceIndex) -> dict[str, Any]:
    return {"uri": index.uri, "docs": index.meta["docs"], "tokens": index.meta["tokens"],
            "tokenizer": index.tokenizer_id, "parts": index.meta["parts"]}


def trace_texts(index: TraceIndex, samples: list[dict[str, Any]], max_docs: int = 3, min_words: int = 3,
                density: float = 0.05) -> list[dict[str, Any]]:
    """Each sample ({"generated", ...}) with its spans (as `olmoflow trace --json`, character offsets into the
    generation) and the share of its characters inside a span."""
    out = []
    for s in samples:
        text = s["generated"]
        spans = find_spans(index, text, min_words=min_words, density=density, max_docs=max_docs)
        out.append({**s, "spans": [sp.as_json() for sp in spans],
                    "covered": sum(sp.end - sp.start for sp in spans) / max(len(text), 1)})
    return out


def trace_checkpoint(index: TraceIndex, checkpoint: dict[str, Any], samples: list[dict[str, Any]],
                     **trace_kw: Any) -> dict[str, Any]:
    """One checkpoint's entry of the section: {stage, uri, chat, samples (traced), spans, covered}."""
    traced = trace_texts(index, samples, **trace_kw)
    chars = sum(len(s["generated"]) for s in traced)
    return {**checkpoint, "samples": traced, "spans": sum(len(s["spans"]) for s in traced),
            "covered": sum(s["covered"] * len(s["generated"]) for s in traced) / max(chars, 1)}
