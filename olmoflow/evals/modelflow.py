"""The model-flow report: every checkpoint stage's eval gathered into one table of how each stage moved each task
(Olmo 3's model-flow figure, for this run).

`gather` turns {stage: that stage's eval results.json} into results.json's shape:

    {"stages": {STAGE: {TASK: {METRIC: value, ..., "n": items}}},      # scored tasks only; "heldout" is val_bpb
     "order": [STAGE, ...],                                            # flow order, the stages evaluated
     "tasks": [TASK, ...], "primary": {TASK: METRIC}, "lower_is_better": {TASK: [METRIC]},
     "chance": {TASK: {METRIC: value}},                                # accuracy-like metrics only
     "suites": {SUITE: {"stages": [...], "tasks": [...]}},             # base / chat
     "failed": {STAGE: {TASK: reason}},
     "contamination": {STAGE: {TASK: {"share", "contaminated", "items", "flagged", "clean"?}}},
     "checkpoints": {STAGE: checkpoint URI}}

A failed task is not in "stages" (it has no score) but in "failed" with its reason; a stage that did not run is in
none of them. modelflow_html.py draws the page and plots from this dict alone.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

HELDOUT = "heldout"
"""The task name held-out language modelling goes by in the table: its metrics are bits-per-byte and loss."""
HELDOUT_PRIMARY = "val_bpb"
SUITES = ("base", "chat")


class ModelFlowError(ValueError):
    """An eval result that cannot be gathered; the message names the stage and task."""


def finite(x: Any) -> float | None:
    """A finite float, or None for what is not a score (a string, None, NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _count(x: Any) -> int | None:
    """Contaminated items as a count: eval may give the number or the list of item ids."""
    if isinstance(x, (list, tuple)):
        return len(x)
    n = finite(x)
    return None if n is None else int(n)


def _contamination(c: Any) -> dict[str, Any] | None:
    """Eval's contamination of a task's items, or None where it was not checked (no curate record of it). The
    score on the clean items alone, when eval gives it, is kept beside."""
    if not isinstance(c, dict) or c.get("checked") is False:
        return None
    share, hit, items = finite(c.get("share")), _count(c.get("contaminated")), _count(c.get("items"))
    if share is None and hit is not None and items:
        share = hit / items
    flagged = c.get("flagged")
    flagged = bool(flagged) if isinstance(flagged, bool) else bool((hit or 0) > 0 or (share or 0) > 0)
    out = {"share": share, "contaminated": hit, "items": items, "flagged": flagged}
    return out | ({"clean": c["clean"]} if isinstance(c.get("clean"), dict) else {})


RATE = re.compile(r"^(acc|exact_match|pass_at|f1|em)(_|$)|_acc$")
"""Metrics that are a share of items right (acc_*, exact_match*, pass_at_1, f1, *_level_*_acc): the ones a
guessing model has a chance level of; not bits-per-byte, a log-likelihood, or a share of unverified items."""


def _chance(task: dict[str, Any], metrics: dict[str, float], lower: list[str]) -> dict[str, float]:
    """Chance per metric: eval gives one number for the task (uniform guessing's accuracy), or a dict per metric.
    One number applies to the rate metrics (RATE) where higher is better."""
    given = task.get("chance")
    if isinstance(given, dict):
        return {m: v for m, v in ((m, finite(given.get(m))) for m in metrics) if v is not None}
    value = finite(given)
    return {} if value is None else {m: value for m in metrics if m not in lower and RATE.search(m)}


def _heldout(results: dict[str, Any]) -> dict[str, float] | None:
    lm = results.get("heldout")
    if not isinstance(lm, dict) or not isinstance(lm.get("all"), dict):
        return None
    pooled = lm["all"]
    row = {"val_bpb": finite(pooled.get("bpb")), "val_loss": finite(pooled.get("loss_per_token")),
           "val_bpb_macro": finite(lm.get("macro_bpb"))}
    row = {k: v for k, v in row.items() if v is not None}
    if "val_bpb" not in row:
        return None
    return row | {"n": int(pooled.get("docs") or 0)}


def _failure(task: dict[str, Any], metrics: dict[str, float]) -> str | None:
    """Why a task has no score (its status, eval's error), or None when it scored."""
    status = task.get("status", "ok")
    if status == "ok" and metrics:
        return None
    return str(task.get("error") or ("no metrics recorded" if status == "ok" else f"status {status}"))


def _add_task(out: dict[str, Any], stage: str, name: str, task: Any, suite: str) -> dict[str, float] | None:
    """Record one task of one stage's eval in `out` (its suite, else the stage's; primary metric, chance, failure,
    contamination); its scores with "n", or None when it failed."""
    if not isinstance(task, dict):
        raise ModelFlowError(f"model-flow: stage {stage}: task {name}: entry is not a JSON object")
    suite = out["suites"].setdefault(task.get("suite") or suite, {"stages": [], "tasks": []})
    for key, value in ((suite["stages"], stage), (suite["tasks"], name), (out["tasks"], name)):
        if value not in key:
            key.append(value)
    c = _contamination(task.get("contamination"))
    if c is not None:
        out["contamination"].setdefault(stage, {})[name] = c
    metrics = {m: v for m, v in ((m, finite(v)) for m, v in (task.get("metrics") or {}).items()) if v is not None}
    reason = _failure(task, metrics)
    if reason is not None:
        out["failed"].setdefault(stage, {})[name] = reason
        if isinstance(task.get("primary"), str):  # the table's metric column, even if it never scored
            out["primary"].setdefault(name, task["primary"])
        return None
    lower = [m for m in task.get("lower_is_better") or [] if m in metrics]
    if out["primary"].get(name) not in metrics:  # a failed stage's guess gives way to a scored one
        out["primary"][name] = task.get("primary") if task.get("primary") in metrics else next(iter(metrics))
    out["lower_is_better"].setdefault(name, lower)
    for m, v in _chance(task, metrics, lower).items():
        out["chance"].setdefault(name, {}).setdefault(m, v)
    return metrics | {"n": int(task.get("n") or 0)}


def gather(per_stage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{stage: eval results.json} (in flow order) → the model-flow results (see the module's docstring)."""
    out: dict[str, Any] = {"stages": {}, "order": [], "tasks": [], "primary": {}, "lower_is_better": {},
                           "chance": {}, "suites": {}, "failed": {}, "contamination": {}, "checkpoints": {},
                           "traces": {}}
    for stage, results in per_stage.items():
        if not isinstance(results, dict):
            raise ModelFlowError(f"model-flow: stage {stage}: eval results are not a JSON object")
        suite = results.get("suite") or ("chat" if (results.get("chat_format") or {}).get("chat") else "base")
        scores = {}
        for name, task in (results.get("tasks") or {}).items():
            score = _add_task(out, stage, name, task, suite)
            if score is not None:
                scores[name] = score
        heldout = _heldout(results)
        if heldout is not None:
            scores[HELDOUT] = heldout
            out["primary"][HELDOUT] = HELDOUT_PRIMARY
            out["lower_is_better"][HELDOUT] = [m for m in heldout if m != "n"]
        out["order"].append(stage)
        out["stages"][stage] = scores
        checkpoint = (results.get("model") or {}).get("checkpoint")
        if checkpoint:
            out["checkpoints"][stage] = checkpoint
        trace = results.get("trace") or {}
        if trace.get("checkpoints") or trace.get("note"):  # OlmoTrace of the stage's sample generations
            out["traces"][stage] = {"status": trace.get("status", ""), "note": trace.get("note", ""),
                                    "checkpoints": trace.get("checkpoints", [])}
    if any(HELDOUT in s for s in out["stages"].values()):
        out["tasks"].append(HELDOUT)
    # base before chat, as the flow goes; a suite eval may add later after them
    out["suites"] = {k: out["suites"][k] for k in sorted(out["suites"], key=lambda s: (SUITES + (s,)).index(s))}
    return out


def flat_metrics(gathered: dict[str, Any]) -> dict[str, float]:
    """The numbers as MLflow metrics: `{stage}/{task}/{metric}`, `final/{task}/{metric}` for the last stage
    evaluated, `{stage}/{task}/contamination_share`, and `stages_evaluated` (the stage's headline)."""
    flat: dict[str, float] = {"stages_evaluated": float(len(gathered["order"]))}
    for stage in gathered["order"]:
        for task, scores in gathered["stages"][stage].items():
            flat |= {f"{stage}/{task}/{m}": float(v) for m, v in scores.items() if m != "n"}
        for task, c in gathered["contamination"].get(stage, {}).items():
            if c["share"] is not None:
                flat[f"{stage}/{task}/contamination_share"] = float(c["share"])
    if gathered["order"]:
        last = gathered["order"][-1]
        flat |= {f"final/{task}/{m}": float(v) for task, scores in gathered["stages"][last].items()
                 for m, v in scores.items() if m != "n"}
    return flat


def copy_predictions(eval_payload: Path, out: Path, stage: str) -> list[str]:
    """An eval's per-item predictions/{task}.jsonl → out/predictions/{stage}/{task}.jsonl; the tasks copied."""
    src = Path(eval_payload) / "predictions"
    files = sorted(src.glob("*.jsonl")) if src.is_dir() else []
    if files:
        (out / "predictions" / stage).mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, out / "predictions" / stage / f.name)
    return [f.stem for f in files]
