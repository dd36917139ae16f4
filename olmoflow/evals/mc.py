"""Multiple choice by log-likelihood ranking: score each choice's (context, continuation) strings and pick the
best one under OLMES's normalisations. mc_tasks.py builds each task's strings in the cloze ("rc") and lettered
("mc") formats; score_items here is ARC's cloze format, the eval stage's original entry point.

ARC rc: "Question: {question}\\nAnswer:" and continuation " {choice}"; the unconditioned prompt is "Answer:".
Per choice (as OLMES's MCAccuracy): sum_logits = log p(continuation | context) in nats; num_chars and num_bytes
count the continuation string, leading space included. Per item:
  acc_raw       argmax sum_logits
  acc_per_token argmax sum_logits / num_tokens
  acc_per_char  argmax sum_logits / num_chars                     (OLMES's primary metric for ARC-Easy rc)
  acc_per_byte  argmin bits_per_byte = -sum_logits / (ln 2 × num_bytes)
  acc_uncond    argmax sum_logits - sum_logits(choice | "Answer:")  (pointwise mutual information)
  bits_per_byte_corr  bits_per_byte of the gold choice            (Olmo 3's "Base Easy" metric; lower is better)
Ties go to the lowest index, as in OLMES. The task score is the mean over items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

from olmoflow.evals.lm import Progress, Request, no_progress, score_groups

UNCOND_CONTEXT = "Answer:"
ACCURACIES = ("acc_raw", "acc_per_token", "acc_per_char", "acc_per_byte", "acc_uncond")
FORMULAS = {
    "acc_raw": "mean over items of [argmax_i sum_logits_i == gold]",
    "acc_per_token": "mean of [argmax_i sum_logits_i / num_tokens_i == gold]",
    "acc_per_char": "mean of [argmax_i sum_logits_i / num_chars_i == gold] (chars of ' {choice}')",
    "acc_per_byte": "mean of [argmin_i -sum_logits_i / (ln2 * num_bytes_i) == gold]",
    "acc_uncond": "mean of [argmax_i (sum_logits_i - sum_logits_uncond_i) == gold], uncond context 'Answer:'",
    "bits_per_byte_corr": "mean of -sum_logits_gold / (ln2 * UTF-8 bytes of ' {gold choice}') (lower is better)",
    "logits_per_char_corr": "mean of sum_logits_gold / num_chars_gold",
}


@dataclass(frozen=True)
class ChoiceScore:
    sum_logits: float
    num_tokens: int
    num_chars: int
    num_bytes: int
    sum_logits_uncond: float | None = None
    """log p(continuation | "Answer:"), where the format scores acc_uncond."""


Pair = tuple[str, str]
"""(context, continuation) strings of one answer choice."""


def prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def shots_prefix(shots: list[dict[str, Any]]) -> str:
    """Worked examples in the same format, each answered with its gold choice, separated by blank lines."""
    return "".join(f"{prompt(s['question'])} {s['choices'][s['answer']]}\n\n" for s in shots)


def text_requests(item: dict[str, Any], prefix: str = "") -> list[tuple[int, str, str, str]]:
    """(choice index, "cond" | "uncond", context, continuation) of every string pair an item is scored on."""
    return [(j, kind, ctx, f" {choice}") for j, choice in enumerate(item["choices"])
            for kind, ctx in (("cond", prefix + prompt(item["question"])), ("uncond", UNCOND_CONTEXT))]


def _argbest(values: list[float], lower: bool = False) -> int:
    best = min(values) if lower else max(values)
    return values.index(best)


def item_metrics(choices: list[ChoiceScore], gold: int) -> dict[str, Any]:
    """OLMES's per-item multiple-choice metrics from the per-choice scores (acc_uncond only where every choice
    has its unconditioned score)."""
    raw = [c.sum_logits for c in choices]
    per_token = [c.sum_logits / max(c.num_tokens, 1) for c in choices]
    per_char = [c.sum_logits / max(c.num_chars, 1) for c in choices]
    bpb = [-c.sum_logits / (math.log(2) * max(c.num_bytes, 1)) for c in choices]
    preds = {"acc_raw": _argbest(raw), "acc_per_token": _argbest(per_token), "acc_per_char": _argbest(per_char),
             "acc_per_byte": _argbest(bpb, lower=True)}
    uncond = [c.sum_logits_uncond for c in choices]
    has_uncond = all(u is not None for u in uncond)
    if has_uncond:
        preds["acc_uncond"] = _argbest([c - u for c, u in zip(raw, uncond)])  # type: ignore[operator]
    out: dict[str, Any] = {name: float(pred == gold) for name, pred in preds.items()}
    out.update({f"pred_{name.removeprefix('acc_')}": pred for name, pred in preds.items()})
    out.update(bits_per_byte_corr=bpb[gold], logits_per_char_corr=per_char[gold], sum_logits=raw)
    if has_uncond:
        out["sum_logits_uncond"] = uncond
    return out


class _Encoder:
    """Context + continuation tokenized together and split after the context's tokens (as lm-eval does, trailing
    spaces of the context moved to the continuation), so the continuation gets the tokens it would have in running
    text; a context's own encoding is computed once however many choices share it."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.contexts: dict[str, int] = {}

    def __call__(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation, add_special_tokens=False).ids
        if context not in self.contexts:
            self.contexts[context] = len(self.tokenizer.encode(context, add_special_tokens=False).ids)
        n_ctx = self.contexts[context]
        return whole[:n_ctx], whole[n_ctx:]


def score_choices(model: torch.nn.Module, tokenizer: Tokenizer, pairs: list[list[Pair]],
                  uncond: list[list[Pair]] | None = None, *, start_id: int, seq_len: int, batch_size: int,
                  progress: Progress = no_progress, desc: str = "mc") -> list[list[ChoiceScore]]:
    """Per item, the score of each choice's (context, continuation) pair, each context preceded by start_id; with
    `uncond`, each choice's unconditioned pair too. An item's choices are scored together, their shared prefix once
    (lm.score_groups)."""
    encode = _Encoder(tokenizer)

    def group(item_pairs: list[Pair]) -> list[Request]:
        return [Request([start_id] + c, k) for c, k in (encode(ctx, cont) for ctx, cont in item_pairs)]

    groups = [group(p) for p in pairs] + [group(p) for p in (uncond or [])]
    scored = score_groups(model, groups, batch_size=batch_size, max_len=seq_len, progress=progress, desc=desc)
    out = []
    for i, item_pairs in enumerate(pairs):
        out.append([ChoiceScore(sum_logits=s.logprob, num_tokens=s.n_tokens, num_chars=len(cont),
                                num_bytes=len(cont.encode("utf-8")),
                                sum_logits_uncond=None if uncond is None else scored[len(pairs) + i][j].logprob)
                    for j, (s, (_, cont)) in enumerate(zip(scored[i], item_pairs))])
    return out


def score_items(model: torch.nn.Module, tokenizer: Tokenizer, items: list[dict[str, Any]],
                shots: list[dict[str, Any]], *, start_id: int, seq_len: int, batch_size: int,
                progress: Progress = no_progress, desc: str = "mc") -> list[dict[str, Any]]:
    """Per-item metrics for every item ({"id", "question", "choices", "answer"}) in ARC's cloze format."""
    prefix = shots_prefix(shots)
    reqs = [text_requests(item, prefix) for item in items]
    pairs = [[(ctx, cont) for _, kind, ctx, cont in r if kind == "cond"] for r in reqs]
    uncond = [[(ctx, cont) for _, kind, ctx, cont in r if kind == "uncond"] for r in reqs]
    scores = score_choices(model, tokenizer, pairs, uncond, start_id=start_id, seq_len=seq_len,
                           batch_size=batch_size, progress=progress, desc=desc)
    return [{"id": item["id"], "gold": item["answer"], "n_choices": len(choices),
             **item_metrics(choices, item["answer"])} for item, choices in zip(items, scores)]


def aggregate(per_item: list[dict[str, Any]],
              names: tuple[str, ...] = (*ACCURACIES, "bits_per_byte_corr", "logits_per_char_corr")) -> dict[str, float]:
    """Mean over items of each named metric."""
    n = max(len(per_item), 1)
    return {name: sum(r[name] for r in per_item) / n for name in names}


def chance(items: list[dict[str, Any]]) -> float:
    """Expected accuracy of a uniform random pick: the mean of 1 / n_choices."""
    return sum(1 / len(it["choices"]) for it in items) / max(len(items), 1)
