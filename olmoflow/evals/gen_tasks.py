"""The generative tasks: registry, scoring and aggregation (the eval stage calls these).

    GEN_TASKS[name]                   GenTask: family gen | code | ifeval, primary metric, metrics, default
                                      max_new_tokens, base-style stop sequences, required item fields
    score(model, tokenizer, task, items, shots, chat=..., generate=..., ...) -> per-item dicts
    aggregate(task, per_item) -> {metric: mean over items}

Each item is generated greedily (gen.greedy) from its prompt (prompts.py: OLMES's base layouts with the caller's
shots, or Olmo 3's chat template), a base continuation is cut at the task's stop sequences (a chat reply ends at
<|im_end|>), and the answer is checked:
  gsm8k             exact_match: RLVR's math reward of the answer (answers.py)
  minerva_math_500  exact_match (Minerva's normalised string), exact_match_flex (+ math-verify equivalence)
  squad, coqa       exact_match, f1: SQuAD's normalisation, best over the aliases (qa.py)
  drop              exact_match, f1: DROP's number-aware normalisation and span alignment (qa.py)
  humaneval, mbpp   pass_at_1: the program and the item's tests in the sandbox (code_eval.py)
  ifbench           prompt_level_strict_acc, inst_level_strict_acc (+ loose), unverified_share (post/ifeval.py):
                    accuracies count only instructions we can check; a prompt counts when all of its checkable
                    instructions are (a prompt with none is left out); unverified_share is the share of all
                    instructions that no checker covers
  arithmetic        exact_match of the final number (gen.is_correct)
A per-item check never raises: a failing program, an unparsable answer or a checker error scores 0, its reason
kept in the item's "error".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from tokenizers import Tokenizer

from olmoflow.evals import answers, code_eval, gen, prompts, qa
from olmoflow.evals.lm import Progress, no_progress
from olmoflow.post import ifeval
from olmoflow.post.chat import ChatTemplate

GEN = {"question": (str,), "answer": (str, int, float)}
CODE = {"prompt": (str,), "test": (str,), "solution": (str,)}


@dataclass(frozen=True)
class GenTask:
    name: str
    family: Literal["gen", "code", "ifeval"]
    primary: str
    metrics: tuple[str, ...]
    max_new_tokens: int
    """OLMES's max_gen_toks for the task (the caller may pass fewer)."""
    stops: tuple[str, ...]
    """Where a base model's continuation is cut (OLMES's stop sequences)."""
    fields: dict[str, tuple[type, ...]]
    """Keys every item must have, and their types."""
    description: str
    formulas: dict[str, str] = field(default_factory=dict)


EM, F1 = "exact_match", "f1"
IF_METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc",
              "unverified_share")
_QA_FORMULAS = {EM: "max over aliases of [normalised answer == normalised alias]",
                F1: "max over aliases of token-bag F1 of the normalised answer and alias"}
GEN_TASKS: dict[str, GenTask] = {t.name: t for t in (
    GenTask("gsm8k", "gen", EM, (EM,), 512, ("Question:", "</s>", "<|im_end|>", "\n\n"), GEN,
            "GSM8K, 8-shot chain of thought, exact match of the final number",
            {EM: "mean of [final answer == gold, as exact rationals] (RLVR's math verifier)"}),
    GenTask("minerva_math_500", "gen", "exact_match_flex", (EM, "exact_match_flex"), 1024, ("Problem:", "\n\n"),
            GEN, "MATH-500 in Minerva's 4-shot format",
            {EM: "mean of [Minerva-normalised answer == normalised gold]",
             "exact_match_flex": "mean of [any extracted answer equals the gold: normalised string or math-verify]"}),
    GenTask("squad", "gen", F1, (EM, F1), 50, ("Title:", "\n\n"), {**GEN, "context": (str,)},
            "SQuAD v1.1, 5-shot, answer spans", _QA_FORMULAS),
    GenTask("drop", "gen", F1, (EM, F1), 50, ("Passage:", "Question:", "\n\n"), {**GEN, "context": (str,)},
            "DROP, 5-shot, spans, numbers and dates", _QA_FORMULAS),
    GenTask("coqa", "gen", F1, (EM, F1), 50, ("\n\n",), {**GEN, "context": (str,)},
            "CoQA, conversational questions about a passage, 0-shot", _QA_FORMULAS),
    GenTask("humaneval", "code", "pass_at_1", ("pass_at_1",), 512,
            ("\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```"), {**CODE, "entry_point": (str,)},
            "HumanEval, greedy pass@1", {"pass_at_1": "mean of [the item's tests pass in the sandbox]"}),
    GenTask("mbpp", "code", "pass_at_1", ("pass_at_1",), 512, ("\n```",), CODE,
            "MBPP, 3-shot, greedy pass@1", {"pass_at_1": "mean of [the item's asserts pass in the sandbox]"}),
    GenTask("ifbench", "ifeval", "prompt_level_strict_acc", IF_METRICS, 2048, (),
            {"prompt": (str,), "instruction_id_list": (list,), "kwargs": (list,)},
            "IFBench, out-of-distribution instruction constraints",
            {"prompt_level_strict_acc": "mean over prompts of [every checkable instruction followed]",
             "inst_level_strict_acc": "followed / checkable instructions",
             "unverified_share": "instructions no checker covers / all instructions"}),
    GenTask("arithmetic", "gen", EM, (EM,), 16, gen.BASE_STOPS, {"question": (str,), "answer": (str, int)},
            "arithmetic questions, exact match of the final number", {EM: gen.FORMULA}),
)}


def get_task(name: str) -> GenTask:
    if name not in GEN_TASKS:
        raise ValueError(f"unknown generative task {name!r} (tasks: {', '.join(GEN_TASKS)})")
    return GEN_TASKS[name]


def check_item(task: GenTask, item: dict[str, Any]) -> None:
    """A one-line error naming the task, item and key when an item lacks a field the task needs."""
    for key, types in task.fields.items():
        if not isinstance(item.get(key), types):
            raise ValueError(f"task {task.name}: item {item.get('id')!r} needs key {key!r} "
                             f"({' or '.join(t.__name__ for t in types)}), got {item.get(key)!r}")


def _gold(task: str, item: dict[str, Any]) -> Any:
    if task == "ifbench":
        return {"instruction_id_list": item["instruction_id_list"], "kwargs": item["kwargs"]}
    if task in ("humaneval", "mbpp"):
        return item["test"]
    if task in ("squad", "drop", "coqa"):
        return item.get("aliases") or [str(item["answer"])]
    return str(item["answer"])


def _qa_answer(text: str, chat: bool) -> str:
    text = text.strip()
    if chat:  # a chat reply may restate the cue or run on: its first line, without "Answer:"
        text = text.split("\n", 1)[0].strip()
        text = text[len("Answer:"):].strip() if text.lower().startswith("answer:") else text
    return text


def judge(task: str, item: dict[str, Any], answer: str, chat: bool) -> dict[str, Any]:
    """The extracted answer and per-metric values of one non-code item's answer text."""
    out: dict[str, Any] = {"extracted": None}
    try:
        if task == "gsm8k":
            out["extracted"] = answers.gsm8k_extract(answer)
            out[EM] = answers.gsm8k_exact_match(answer, str(item["answer"]))
        elif task == "minerva_math_500":
            out["extracted"], metrics, error = answers.math_scores(answer, item)
            out.update(metrics)
            if error:
                out["error"] = error
        elif task in ("squad", "drop", "coqa"):
            out["extracted"] = _qa_answer(answer, chat)
            fn = qa.drop_scores if task == "drop" else qa.squad_scores
            out.update(fn(out["extracted"], _gold(task, item)))
        elif task == "ifbench":
            spec = _gold(task, item)
            strict, loose = ifeval.check(answer, spec), ifeval.check(answer, spec, loose=True)
            out.update(instructions=strict, instructions_loose=loose)
        else:
            number = gen.extract_number(answer)
            out["extracted"] = None if number is None else str(number)
            out[EM] = float(gen.is_correct(answer, str(item["answer"])))
    except Exception as e:  # noqa: BLE001 - one malformed answer or gold scores 0, the task goes on
        out.update({m: 0.0 for m in GEN_TASKS[task].metrics if m not in out}, error=f"{type(e).__name__}: {e}"[:300])
    return out


def score(model: torch.nn.Module, tokenizer: Tokenizer, task: str, items: list[dict[str, Any]],
          shots: list[dict[str, Any]], *, chat: bool, generate: gen.GenerateFn, start_id: int, seq_len: int,
          max_new_tokens: int | None = None, batch_size: int = 8, progress: Progress = no_progress,
          desc: str | None = None, code_timeout: float = code_eval.TIMEOUT) -> list[dict[str, Any]]:
    """Per item: id, prompt (as the model saw it, special tokens spelled out), generated (the raw greedy text),
    answer (what was scored: the text cut at the stops), extracted, gold and the task's per-item metrics."""
    spec = get_task(task)
    for item in [*items, *shots]:
        check_item(spec, item)
    template = ChatTemplate(tokenizer) if chat else None
    eos_id = template.im_end if template is not None else start_id
    new_tokens = max_new_tokens or spec.max_new_tokens
    room = max(seq_len - new_tokens, 1)  # as greedy() cuts it: the report shows what the model saw
    ids = [gen.encode_prompt(tokenizer, template, start_id, prompts.base_prompt(task, it, shots),
                             prompts.chat_messages(task, it, shots) if chat else None)[-room:] for it in items]
    texts = gen.greedy(model, tokenizer, ids, generate=generate, eos_id=eos_id, seq_len=seq_len,
                       max_new_tokens=new_tokens, batch_size=batch_size,
                       progress=progress, desc=desc or task, stops=() if chat else spec.stops)
    cut = [t if chat else gen.cut_at_stops(t, spec.stops) for t in texts]
    rows = [{"id": it["id"], "prompt": tokenizer.decode(p, skip_special_tokens=False), "generated": t,
             "answer": a, "gold": _gold(task, it)} for it, p, t, a in zip(items, ids, texts, cut)]
    if spec.family == "code":
        programs = [code_eval.program(task, it, a, chat) for it, a in zip(items, cut)]
        verdicts = code_eval.pass_at_1([(p, code_eval.tests(it)) for p, it in zip(programs, items)], code_timeout)
        for row, prog, (passed, reason) in zip(rows, programs, verdicts):
            row.update(extracted=prog, pass_at_1=passed, reason=reason)
    else:
        for row, it, a in zip(rows, items, cut):
            row.update(judge(task, it, a, chat))
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _ifeval_metrics(per_item: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, key in (("strict", "instructions"), ("loose", "instructions_loose")):
        lists = [[x for x in r.get(key) or [] if x is not None] for r in per_item]
        out[f"prompt_level_{kind}_acc"] = _mean([float(all(xs)) for xs in lists if xs])
        out[f"inst_level_{kind}_acc"] = _mean([float(x) for xs in lists for x in xs])
    every = [x for r in per_item for x in r.get("instructions") or []]
    out["unverified_share"] = _mean([float(x is None) for x in every])
    return out


def aggregate(task: str, per_item: list[dict[str, Any]]) -> dict[str, float]:
    """The task's metrics as means over items (IFBench: over prompts and instructions as GenTask says)."""
    spec = get_task(task)
    if spec.family == "ifeval":
        return _ifeval_metrics(per_item)
    return {m: _mean([float(r.get(m, 0.0)) for r in per_item]) for m in spec.metrics}
