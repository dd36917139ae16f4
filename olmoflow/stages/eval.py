"""Eval stage: OLMES-style scores of a checkpoint on the dataset's held-out text and eval tasks.

    olmoflow stage eval --config tiny

1. Held-out language modelling: loss per token and bits-per-byte of every `val/{domain}.jsonl` (heldout.py);
   the headline `val_bpb` pools all domains (total nats / (ln 2 × total bytes)). It is the number that moves at
   every scale, tokenizer-independent, while task accuracies of a tiny model sit near chance.
2. Tasks from `eval/{task}.jsonl` (tasks.py): ARC-Easy as OLMES's cloze multiple choice (mc.py) and arithmetic
   by greedy generation and exact match of the final number (gen.py).
The payload: results.json (every metric, item counts, formulas, wall times), report.md, predictions/{task}.jsonl
(per item), plots/. Each finished domain or task is saved in-stage, so a killed run resumes where it stopped.
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
from olmoflow.registry import REGISTRY
from olmoflow.registry import stage as stage_entry
from olmoflow.train.world import World

CHAT_STAGES = tuple(s.name for s in REGISTRY if s.chat)
"""Checkpoints made by these stages were trained on the chat template: auto chat_format prompts them with it."""
PARTIAL = "partial.json"


def chat_style(setting: str, checkpoint: InputArtifact) -> tuple[bool, str]:
    """Whether generative tasks use the chat template, and why (the reason goes into the report)."""
    if setting != "auto":
        return setting == "chat", f"eval.chat_format={setting}"
    stage = checkpoint.manifest.get("stage")
    if stage in CHAT_STAGES:
        return True, f"auto: the checkpoint was made by stage {stage}"
    model_dir = checkpoint.path / "model"
    tok_cfg = model_dir / "tokenizer_config.json"
    if (model_dir / "chat_template.jinja").exists() or (
            tok_cfg.exists() and "chat_template" in json.loads(tok_cfg.read_text())):
        return True, "auto: the checkpoint ships a chat template"
    return False, f"auto: the checkpoint was made by stage {stage or 'unknown'}, not a post-training stage"


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
    chat, chat_reason = chat_style(cfg.chat_format, checkpoint)
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
    headline = stage_entry("eval").headline
    results = {
        "headline": {"metric": headline, "value": flat[headline]},
        "metrics": flat,
        "heldout": {"domains": domains, "all": all_domains.to_dict(), "macro_bpb": macro, "formula": BPB_FORMULA,
                    "method": method, "seq_len": seq_len, "overlap": overlap},
        "tasks": tasks,
        "chat_format": {"chat": chat, "reason": chat_reason},
        "model": {"checkpoint": checkpoint.uri, "parameters": sum(p.numel() for p in model.parameters()),
                  "max_seq_len": model.cfg.max_seq_len},
        "config": cfg.model_dump(mode="json"),
        "wall_s": {"total": time.time() - started} | {k: v["wall_s"] for k, v in done.items()},
    }
    write_results(ctx.out, results)
    write_markdown(ctx.out, results)
    plots = ctx.out / "plots"
    plots.mkdir(exist_ok=True)
    for png in (plot_tasks(plots / "task_scores.png", results), plot_bpb(plots / "val_bpb.png", results)):
        ctx.log_artifact(png)
    return flat
