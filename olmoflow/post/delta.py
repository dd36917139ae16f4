"""Delta-learning preference pairs (Olmo 3's DPO data) sampled on verifiable prompts: the chosen reply is a sample
of the stronger model (the policy DPO starts from) that the prompt's verifier accepts, the rejected one a sample of
a weaker model (the policy's own parent checkpoint: the model SFT started from) that it rejects. What DPO learns is
the delta between the two, not the chosen reply's absolute quality.

When no stronger sample is correct, a plain-format prompt falls back on the reference reply ("The answer is X.",
counted as `chosen_reference`); a prompt left without a chosen or a rejected reply is skipped and counted.

The rejected reply is a wrong one in the answer format where there is one (the weaker model's first, then the
stronger model's own wrong samples; `rejected_in_format`): a weaker model that never writes the format would
otherwise make every pair a format-versus-no-format pair, which the policy ranks right from the start (held-out
preference accuracy 1.0 before and after) and which teaches nothing about the answer itself.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from olmoflow.data.synthetic_rules import follows_format
from olmoflow.post.chat import ChatTemplate
from olmoflow.post.heldout import replies
from olmoflow.post.verifiers import score


def _samples(model: nn.Module, template: ChatTemplate, prompts: list[str], k: int, max_new_tokens: int,
             temperature: float, seed: int) -> list[list[str]]:
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    flat = replies(model, template, [p for p in prompts for _ in range(k)], max_new_tokens,
                   temperature=temperature, generator=gen)
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def delta_pairs(strong: nn.Module, weak: nn.Module, template: ChatTemplate, rows: list[dict], k: int,
                max_new_tokens: int, temperature: float, seed: int) -> tuple[list[dict], Counter]:
    """Pairs {"messages", "chosen", "rejected", "source": "delta"} for the rows ({"prompt", "answer", "verifier"}),
    and counts: pairs, chosen_sampled, chosen_reference, no_chosen, no_rejected, strong_correct, weak_correct
    (samples the verifier accepted, of k per prompt)."""
    prompts = [r["prompt"] for r in rows]
    good = _samples(strong, template, prompts, k, max_new_tokens, temperature, seed)
    bad = good if weak is strong else _samples(weak, template, prompts, k, max_new_tokens, temperature, seed + 1)
    stats: Counter = Counter()
    pairs = []
    for r, mine, theirs in zip(rows, good, bad):
        # each sample verified once (a code verifier runs the sandbox)
        mine_scored = [(t, score(r["verifier"], t, r["answer"])) for t in mine]
        right = [t for t, x in mine_scored if x == 1.0]
        mine_wrong = [t for t, x in mine_scored if x < 1.0]
        wrong = mine_wrong if theirs is mine else [t for t in theirs if score(r["verifier"], t, r["answer"]) < 1.0]
        stats["strong_correct"] += len(right)
        stats["weak_correct"] += k - len(wrong)
        chosen = right[0] if right else None
        if chosen is None and r.get("format", "plain") == "plain" and r["verifier"] == "exact":
            chosen = f"The answer is {r['answer']}."
            stats["chosen_reference"] += 1
        elif chosen is not None:
            stats["chosen_sampled"] += 1
        think = r.get("format") == "think"
        rejected = next((t for t in wrong + mine_wrong if t != chosen and follows_format(t, think)), None)
        if rejected is not None:
            stats["rejected_in_format"] += 1
        else:
            rejected = next((t for t in wrong if t != chosen), None)
        if chosen is None:
            stats["no_chosen"] += 1
        elif rejected is None:
            stats["no_rejected"] += 1
        else:
            pairs.append({"messages": [{"role": "user", "content": r["prompt"]}], "chosen": chosen,
                          "rejected": rejected, "source": "delta"})
    stats["pairs"] = len(pairs)
    return pairs, stats
