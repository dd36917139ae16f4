"""Eval stage: OLMES-style scores of a checkpoint on the dataset's held-out text and eval tasks.

    olmoflow stage eval --config tiny

1. Held-out language modelling: loss per token and bits-per-byte of every `val/{domain}.jsonl` (heldout.py);
   the headline `val_bpb` pools all domains (total nats / (ln 2 × total bytes)). It is the number that moves at
   every scale, tokenizer-independent, while task accuracies of a tiny model sit near chance.
2. Tasks from `eval/{task}.jsonl` (tasks.py): ARC-Easy as OLMES's cloze multiple choice (mc.py) and arithmetic
   by greedy generation and exact match of the final number (gen.py).
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
from olmoflow.evals import gen, mc
from olmoflow.evals.heldout import FORMULA as BPB_FORMULA
from olmoflow.evals.heldout import DomainScore, pooled, read_docs, score_domain
from olmoflow.evals.report import plot_bpb, plot_tasks, write_markdown, write_results
from olmoflow.evals.tasks import TASKS, chance, load_items
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
        ctx.log.info("eval: resuming with %d of %d parts done", len(done), len(val_files) + len(cfg.tasks))

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

    # ---- tasks
    for name in cfg.tasks:
        key = f"task/{name}"
        if key in done:
            continue
        t0, task = time.time(), TASKS[name]
        items = load_items(data / "eval" / f"{name}.jsonl", task)
        shots, items = items[:cfg.num_shots], items[cfg.num_shots:]
        items = items[:cfg.max_items] if cfg.max_items else items
        if not items:
            raise ValueError(f"eval task {name}: no items left to score after {cfg.num_shots} few-shot examples")
        if task.kind == "mc":
            per_item = mc.score_items(model, tokenizer, items, shots, start_id=start_id, seq_len=seq_len,
                                      batch_size=cfg.batch_size, progress=ctx.progress, desc=key)
            metrics, style = mc.aggregate(per_item), "cloze (rc)"
        else:
            per_item = gen.score_items(model, tokenizer, items, shots, chat=chat, generate=generate,
                                       start_id=start_id, seq_len=seq_len, max_new_tokens=cfg.max_new_tokens,
                                       batch_size=cfg.batch_size, progress=ctx.progress, desc=key)
            metrics, style = gen.aggregate(per_item), ("chat" if chat else "base")
        metrics = {task.primary: metrics[task.primary], **metrics}  # the primary metric first
        done[key] = {"n": len(items), "num_shots": len(shots), "chance": chance(task, items), "primary": task.primary,
                     "metrics": metrics, "prompt_format": style, "per_item": per_item, "wall_s": time.time() - t0}
        ctx.log.info("eval %s: %d items, %s %.4f (chance %.4f)", key, len(items), task.primary,
                     metrics[task.primary], done[key]["chance"])
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
    tasks: dict[str, Any] = {}
    for name in cfg.tasks:
        entry, task = done[f"task/{name}"], TASKS[name]
        _write_jsonl(ctx.out / "predictions" / f"{name}.jsonl", entry["per_item"])
        tasks[name] = {k: v for k, v in entry.items() if k != "per_item"} | {
            "kind": task.kind, "description": task.description, "formulas": task.formulas,
            "lower_is_better": list(task.lower_is_better)}
    flat = {"val_bpb": all_domains.bpb, "val_loss": all_domains.loss, "val_bpb_macro": macro}
    flat |= {f"val_bpb/{d}": v["bpb"] for d, v in domains.items()}
    flat |= {f"val_loss/{d}": v["loss_per_token"] for d, v in domains.items()}
    flat |= {f"{name}/{m}": v for name, t in tasks.items() for m, v in t["metrics"].items()}
    trace = {k: v for k, v in done["trace"].items() if k != "wall_s"}
    for entry in trace["checkpoints"]:  # one today: the checkpoint evaluated
        flat |= {"trace/spans": float(entry["spans"]), "trace/covered": entry["covered"]}
    headline = stage_entry("eval").headline
    results = {
        "headline": {"metric": headline, "value": flat[headline]},
        "metrics": flat,
        "heldout": {"domains": domains, "all": all_domains.to_dict(), "macro_bpb": macro, "formula": BPB_FORMULA,
                    "method": method, "seq_len": seq_len, "overlap": overlap},
        "tasks": tasks,
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
