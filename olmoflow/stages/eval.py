"""Eval stage: OLMES-style scores of a checkpoint on the dataset's held-out text and eval tasks.

    olmoflow stage eval --config tiny

1. Held-out language modelling: loss per token and bits-per-byte of every `val/{domain}.jsonl` (heldout.py);
   the headline `val_bpb` pools all domains (total nats / (ln 2 × total bytes)). It is the number that moves at
   every scale, tokenizer-independent, while task accuracies of a tiny model sit near chance.
2. Tasks (evals/tasks.py, catalog.py): the base suite (eval.base_tasks: multiple choice in OLMES's cloze format
   with the gold continuation's bits-per-byte, math, code, reading comprehension) for a base checkpoint, the chat
   suite (eval.chat_tasks: lettered multiple choice, math, code, IFBench, through the chat template) for one from
   sft, dpo or rlvr (eval.chat_format). Few-shot examples come from the task's train split only. A task that
   fails (a missing file, a bad item) is reported as failed with its reason and the others go on. Each task's
   contamination (curate's eval/contamination.json) is counted over the items scored, with the score on the
   clean items beside it.
3. Given a trace index (its optional `index` input, from stage trace-index), a few sample generations of the
   checkpoint traced against the training data (olmoflow/trace/samples.py): the spans it reproduces verbatim and
   their documents; without one the report says so.
The payload: results.json (every metric, item counts, formulas, wall times), report.md, predictions/{task}.jsonl
(per item), traces.json (the traced samples), plots/. Each finished domain or task is saved in-stage, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from olmoflow.contract.context import InputArtifact, StageContext
from olmoflow.evals import gen, tasks
from olmoflow.evals.catalog import LOWER_IS_BETTER, TaskSpec, parse
from olmoflow.evals.heldout import FORMULA as BPB_FORMULA
from olmoflow.evals.heldout import DomainScore, pooled, read_docs, score_domain
from olmoflow.evals.report import plot_bpb, plot_tasks, write_markdown, write_results
from olmoflow.model import generate
from olmoflow.model.checkpoint import load_checkpoint
from olmoflow.registry import stage as stage_entry
from olmoflow.train.world import World

PARTIAL = "partial.json"
TRACES = "traces.json"


def trace_section(ctx: StageContext, model, tokenizer, checkpoint: InputArtifact, chat: bool, val_files: list[Path],
                  start_id: int, seq_len: int) -> dict[str, Any]:
    """The report's trace section: {status, note, index, checkpoints: [one per checkpoint traced]}. Without an
    index, with eval.trace_samples 0, or with an index of another tokenizer, it says why and traces nothing."""
    cfg = ctx.cfg.eval
    given = ctx.inputs.get("index")
    if given is None:
        return {"status": "no index", "index": None, "checkpoints": [],
                "note": "no trace index was given to the eval stage (its `index` input, from stage trace-index)"}
    if cfg.trace_samples == 0:
        return {"status": "off", "index": {"uri": given.uri}, "checkpoints": [], "note": "eval.trace_samples is 0"}
    from olmoflow.trace.index import TraceError, TraceIndex
    from olmoflow.trace.samples import index_info, prompts, trace_checkpoint

    index = TraceIndex(given.path, given.uri)
    try:
        try:
            index.check_tokenizer(checkpoint.path / "tokenizer.json", f"checkpoint {checkpoint.uri}")
        except TraceError as e:
            return {"status": "refused", "index": index_info(index), "checkpoints": [], "note": str(e)}
        asked = prompts(val_files, tokenizer, cfg.trace_samples, cfg.trace_prompt_tokens)
        texts = gen.complete(model, tokenizer, [p["prompt"] for p in asked], chat=chat, generate=generate,
                             start_id=start_id, seq_len=seq_len, max_new_tokens=cfg.trace_new_tokens,
                             batch_size=cfg.batch_size)
        # one entry per checkpoint: evaluating every stage's checkpoint appends one each
        entry = trace_checkpoint(index, {"stage": checkpoint.manifest.get("stage"), "uri": checkpoint.uri,
                                         "chat": chat},
                                 [{**p, "generated": t} for p, t in zip(asked, texts)], max_docs=cfg.trace_docs)
        ctx.log.info("eval trace: %d samples, %d spans, %.1f%% of the generated text found in the training data",
                     len(entry["samples"]), entry["spans"], 100 * entry["covered"])
        return {"status": "traced", "index": index_info(index), "checkpoints": [entry], "note": ""}
    finally:
        index.close()


def _save_partial(ctx: StageContext, done: dict[str, Any]) -> None:
    with ctx.work.saving(len(done)) as d:
        (d / PARTIAL).write_text(json.dumps(done))


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def score_task(ctx: StageContext, spec: TaskSpec, data: Path, model, tokenizer, *, chat: bool, start_id: int,
               seq_len: int) -> dict[str, Any]:
    """One task's entry in results.json: its metrics (the primary first), item and shot counts, chance, how it
    was asked, and its per-item results (written to predictions/)."""
    cfg = ctx.cfg.eval
    items, shots, shots_note = tasks.load(data, spec, cfg.limit, cfg.num_shots)
    per_item = tasks.score(spec, model, tokenizer, items, shots, chat=chat, generate=generate, start_id=start_id,
                           seq_len=seq_len, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                           code_timeout=cfg.code_timeout, progress=ctx.progress, desc=f"task/{spec.key}")
    metrics = tasks.aggregate(spec, per_item)
    primary = cfg.metrics.get(spec.task) or spec.entry.primary[spec.fmt]
    description, formulas = tasks.describe(spec)
    entry = {"status": "ok", "n": len(items), "num_shots": len(shots), "shots": shots_note,
             "chance": tasks.chance(spec, items), "primary": primary,
             "metrics": {primary: metrics[primary], **metrics}, "description": description, "formulas": formulas,
             "prompt_format": "chat" if chat and spec.entry.family != "mc" else "base", "per_item": per_item}
    ctx.log.info("eval task/%s: %d items, %s, %s %.4f (chance %.4f)", spec.key, len(items), shots_note, primary,
                 metrics[primary], entry["chance"])
    return entry


def _contamination(data: Path) -> dict[str, Any]:
    """curate's eval/contamination.json: per task, the items that share an n-gram with the training data used."""
    path = data / "eval" / "contamination.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _flag(entry: dict[str, Any], found: dict[str, Any] | None, spec: TaskSpec) -> dict[str, Any]:
    """How many of the items scored are contaminated, and the primary metric on the clean ones alone: a score
    measured partly on contaminated items is flagged in the reports."""
    if found is None:
        return {"checked": False}
    if entry.get("status") != "ok":
        return {"checked": True, "share": found.get("share", 0.0)}
    bad = set(found.get("ids", []))
    scored = entry["per_item"]
    hit = [r for r in scored if str(r["id"]) in bad]
    out = {"checked": True, "ngram": found.get("ngram"), "items": len(scored), "contaminated": len(hit),
           "share": len(hit) / max(len(scored), 1), "flagged": bool(hit)}
    clean = [r for r in scored if str(r["id"]) not in bad]
    if hit and clean:
        out["clean"] = {"n": len(clean), entry["primary"]: tasks.aggregate(spec, clean).get(entry["primary"])}
    return out


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.eval
    started = time.time()
    data, checkpoint = ctx.input("dataset").path, ctx.input("checkpoint")
    model, tokenizer = load_checkpoint(checkpoint.path)
    model.eval()
    model.to(World().device)  # the pod's first GPU when it has one; OLMOFLOW_DEVICE=cpu keeps the CPU
    seq_len = min(cfg.seq_len, model.cfg.max_seq_len)
    overlap = min(cfg.bpb_overlap, seq_len - 1)
    start_id = tokenizer.token_to_id("<|endoftext|>")
    if start_id is None:
        raise ValueError(f"{checkpoint.path / 'tokenizer.json'}: no <|endoftext|> token")
    chat, chat_reason = gen.chat_style(cfg.chat_format, checkpoint.manifest.get("stage"), checkpoint.path)
    val_files = sorted((data / "val").glob("*.jsonl"))
    if not val_files:
        raise FileNotFoundError(f"eval: dataset {data}: no val/*.jsonl held-out files (curate.val_fraction is 0?)")
    latest = ctx.work.latest()
    done: dict[str, Any] = json.loads((latest / PARTIAL).read_text()) if latest else {}
    if done:
        ctx.log.info("eval: resuming with %d parts done", len(done))

    # ---- held-out bits-per-byte, one domain at a time
    for path in val_files:
        key = f"val/{path.stem}"
        if key in done:
            continue
        t0 = time.time()
        docs = read_docs(path, cfg.bpb_max_docs, cfg.bpb_max_bytes)
        score = score_domain(model, tokenizer, docs, seq_len=seq_len, overlap=overlap, batch_size=cfg.batch_size,
                             progress=ctx.progress, desc=key)
        done[key] = {**score.to_dict(), "wall_s": time.time() - t0}
        ctx.log.info("eval %s: %d docs, %d tokens, bpb %.4f", key, score.docs, score.tokens, score.bpb)
        _save_partial(ctx, done)

    # ---- tasks: the base suite, or the chat suite for a checkpoint prompted with the chat template
    suite = "chat" if chat else "base"
    specs = [parse(t) for t in (cfg.chat_tasks if chat else cfg.base_tasks)]
    contamination = _contamination(data)
    for spec in specs:
        key = f"task/{spec.key}"
        if key in done:
            continue
        t0 = time.time()
        try:
            done[key] = score_task(ctx, spec, data, model, tokenizer, chat=chat, start_id=start_id, seq_len=seq_len)
        except Exception as e:  # noqa: BLE001 - one failing task is reported as failed; the others go on
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
            ctx.log.warning("eval %s: failed: %s", key, reason)
            done[key] = {"status": "failed", "error": reason}
        done[key] |= {"suite": suite, "wall_s": time.time() - t0,
                      "contamination": _flag(done[key], contamination.get(spec.task), spec)}
        _save_partial(ctx, done)

    # ---- sample generations traced against the training data
    if "trace" not in done:
        t0 = time.time()
        done["trace"] = {**trace_section(ctx, model, tokenizer, checkpoint, chat, val_files, start_id, seq_len),
                         "wall_s": time.time() - t0}
        _save_partial(ctx, done)

    # ---- results, report, plots
    domains = {k.removeprefix("val/"): v for k, v in done.items() if k.startswith("val/")}
    all_domains = pooled({d: DomainScore(v["docs"], v["tokens"], v["bytes"], v["nats"]) for d, v in domains.items()})
    macro = sum(v["bpb"] for v in domains.values()) / len(domains)
    method = (f"Documents are scored after an <|endoftext|> token, in windows of {seq_len} tokens; a longer "
              + (f"document slides on with {overlap} tokens of carried context per window." if overlap else
                 "document is cut into plain consecutive chunks (each sees only the previous chunk's last token)."))
    tasks_out: dict[str, Any] = {}
    for spec in specs:
        entry = done[f"task/{spec.key}"]
        if entry.get("per_item") is not None:
            _write_jsonl(ctx.out / "predictions" / f"{spec.key.replace(':', '_')}.jsonl", entry["per_item"])
        tasks_out[spec.key] = {k: v for k, v in entry.items() if k != "per_item"} | {
            "task": spec.task, "format": spec.fmt, "kind": spec.entry.family,
            "lower_is_better": [m for m in spec.metrics if m in LOWER_IS_BETTER]}
    flat = {"val_bpb": all_domains.bpb, "val_loss": all_domains.loss, "val_bpb_macro": macro}
    flat |= {f"val_bpb/{d}": v["bpb"] for d, v in domains.items()}
    flat |= {f"val_loss/{d}": v["loss_per_token"] for d, v in domains.items()}
    flat |= {f"{name}/{m}": v for name, t in tasks_out.items() for m, v in t.get("metrics", {}).items()}
    flat["tasks_failed"] = float(sum(t["status"] == "failed" for t in tasks_out.values()))
    trace = {k: v for k, v in done["trace"].items() if k != "wall_s"}
    for entry in trace["checkpoints"]:  # one today: the checkpoint evaluated
        flat |= {"trace/spans": float(entry["spans"]), "trace/covered": entry["covered"]}
    headline = stage_entry("eval").headline
    results = {
        "headline": {"metric": headline, "value": flat[headline]},
        "metrics": flat,
        "heldout": {"domains": domains, "all": all_domains.to_dict(), "macro_bpb": macro, "formula": BPB_FORMULA,
                    "method": method, "seq_len": seq_len, "overlap": overlap},
        "tasks": tasks_out,
        "suite": suite,
        "chat_format": {"chat": chat, "reason": chat_reason},
        "trace": trace,
        "model": {"checkpoint": checkpoint.uri, "parameters": sum(p.numel() for p in model.parameters()),
                  "max_seq_len": model.cfg.max_seq_len},
        "config": cfg.model_dump(mode="json"),
        "wall_s": {"total": time.time() - started} | {k: v["wall_s"] for k, v in done.items()},
    }
    write_results(ctx.out, results)
    (ctx.out / TRACES).write_text(json.dumps(trace, indent=1, ensure_ascii=False) + "\n")
    ctx.log_artifact(ctx.out / TRACES, "trace")
    write_markdown(ctx.out, results)
    plots = ctx.out / "plots"
    plots.mkdir(exist_ok=True)
    for png in (plot_tasks(plots / "task_scores.png", results), plot_bpb(plots / "val_bpb.png", results)):
        ctx.log_artifact(png)
    return flat
