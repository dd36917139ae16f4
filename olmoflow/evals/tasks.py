"""One entry point over every eval task: read its items and few-shot pool, score them with the task's family
(multiple choice: mc_tasks.py; generation, code, instruction following: gen_tasks.py), aggregate, and say what
chance would score. Which tasks exist, their formats and metrics: catalog.py.

Items come from the dataset artifact (written by curate): `eval/{task}.jsonl` is what is scored, and
`eval/{task}.train.jsonl`, where the task has a train split, is the only place few-shot examples come from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olmoflow.evals import gen_tasks, mc_tasks
from olmoflow.evals.catalog import TaskSpec


def read_jsonl(path: Path, task: str) -> list[dict[str, Any]]:
    """The rows of a task file; a missing file or a bad line is one line naming the task, file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"eval task {task}: {path} does not exist (curate.eval.tasks writes it)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"eval task {task}: {path}:{n}: not valid JSON") from None
            if not isinstance(row, dict):
                raise ValueError(f"eval task {task}: {path}:{n}: expected a JSON object")
            row["id"] = str(row.get("id", f"{task}-{n}"))
            rows.append(row)
    return rows


def load(data: Path, spec: TaskSpec, limit: int, num_shots: int | None) -> tuple[list[dict], list[dict], str]:
    """(items to score, few-shot examples, a note on where the shots came from) of one task in dataset `data`:
    the first `limit` items (0 = all) and the first `num_shots` of the train split (None = OLMES's count)."""
    items = read_jsonl(data / "eval" / f"{spec.task}.jsonl", spec.task)
    items = items[:limit] if limit else items
    if not items:
        raise ValueError(f"eval task {spec.task}: eval/{spec.task}.jsonl has no items")
    want = spec.entry.shots if num_shots is None else num_shots
    pool = data / "eval" / f"{spec.task}.train.jsonl"
    if want == 0:
        return items, [], "0-shot"
    if not pool.is_file():
        return items, [], f"0-shot (asked {want}: the task has no train split to draw examples from)"
    shots = read_jsonl(pool, spec.task)[:want]
    return items, shots, f"{len(shots)}-shot from its train split"


def score(spec: TaskSpec, model, tokenizer, items: list[dict], shots: list[dict], *, chat: bool, generate,
          start_id: int, seq_len: int, batch_size: int, max_new_tokens: int | None, code_timeout: float,
          progress, desc: str) -> list[dict[str, Any]]:
    """Per-item results of one task (see mc_tasks.score / gen_tasks.score)."""
    if spec.entry.family == "mc":
        return mc_tasks.score(model, tokenizer, spec.task, items, shots, fmt=spec.fmt, start_id=start_id,
                              seq_len=seq_len, batch_size=batch_size, progress=progress, desc=desc)
    own = gen_tasks.get_task(spec.task).max_new_tokens
    return gen_tasks.score(model, tokenizer, spec.task, items, shots, chat=chat, generate=generate,
                           start_id=start_id, seq_len=seq_len,
                           max_new_tokens=min(own, max_new_tokens) if max_new_tokens else own,
                           batch_size=batch_size, progress=progress, desc=desc, code_timeout=code_timeout)


def aggregate(spec: TaskSpec, per_item: list[dict[str, Any]]) -> dict[str, float]:
    if spec.entry.family == "mc":
        return mc_tasks.aggregate(spec.task, per_item, spec.fmt)
    return gen_tasks.aggregate(spec.task, per_item)


def chance(spec: TaskSpec, items: list[dict[str, Any]]) -> float:
    """The primary metric for random guessing: 1 / choices on average for multiple choice; 0 where an answer is
    generated (a guessed number, program or span essentially never scores)."""
    return mc_tasks.chance(items) if spec.entry.family == "mc" else 0.0


def describe(spec: TaskSpec) -> tuple[str, dict[str, str]]:
    """(a line on how the task is asked, the formula of each metric)."""
    if spec.entry.family == "mc":
        from olmoflow.evals.mc import FORMULAS
        how = "cloze (rc): each choice scored as a continuation" if spec.fmt == "rc" else \
            "lettered (mc): ' A' / ' B' ... scored after the listed choices"
        return f"multiple choice, {how}", {m: FORMULAS[m] for m in spec.metrics if m in FORMULAS}
    task = gen_tasks.get_task(spec.task)
    return task.description, dict(task.formulas)
