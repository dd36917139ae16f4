"""Rule tasks a ~10M model can learn: compare two numbers, the smallest of three, the successor, copy and reverse a
few letters. Each is answered in one fixed format, "The answer is X." (or, in the Think variant, a one-line
`<think>...</think>` first), checked exactly by the `exact` verifier (olmoflow/post/verifiers.py).

They are what lets the tiny flow show each post-training stage's effect on items it never trained on: SFT teaches
the format (the base model never writes it), DPO's verifiable pairs and RLVR's rewards need answers that are
sometimes right and sometimes wrong at the tiny scale. Every item is its family and operands; a hash of that key
puts it in exactly one partition (held-out 15%, rl 25%, dpo 15%, sft 45%), whatever the seed or wording, so a
held-out item never reaches SFT, DPO or RLVR training.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass

PARTITIONS = {"heldout": (0, 15), "rl": (15, 40), "dpo": (40, 55), "sft": (55, 100)}
"""Percent ranges of hash(key) % 100 owned by each use."""
FAMILIES = ("compare", "min3", "successor", "copy", "reverse")
ANSWER = re.compile(r"The answer is ([^\n.]+)\.")
PLAIN = re.compile(r"\s*The answer is [^\n.]+\.\s*")
THINK = re.compile(r"\s*<think>[^\n]*?</think>\s*The answer is [^\n.]+\.\s*")

_ASK = {
    "compare": ["Which is larger, {0} or {1}?", "Which number is bigger: {0} or {1}?"],
    "min3": ["What is the smallest of {0}, {1} and {2}?", "Which is least: {0}, {1}, {2}?"],
    "successor": ["What number comes after {0}?", "What is the next number after {0}?"],
    "copy": ["Copy these letters: {0}", "Repeat the letters: {0}"],
    "reverse": ["Reverse these letters: {0}", "Write the letters backwards: {0}"],
}


@dataclass(frozen=True)
class RuleItem:
    family: str
    operands: tuple
    question: str

    @property
    def key(self) -> str:
        return f"{self.family}:{self.operands}"

    @property
    def answer(self) -> str:
        o = self.operands
        if self.family == "compare":
            return str(max(o))
        if self.family == "min3":
            return str(min(o))
        if self.family == "successor":
            return str(o[0] + 1)
        return " ".join(o if self.family == "copy" else reversed(o))

    @property
    def thought(self) -> str:
        """A one-line reasoning that leads to the answer (the Think variant)."""
        o, a = self.operands, self.answer
        if self.family == "compare":
            small = min(o)
            return f"{small} is less than {a}, so {a} is larger."
        if self.family == "min3":
            return f"min({o[0]}, {o[1]}) = {min(o[:2])}; min({min(o[:2])}, {o[2]}) = {a}."
        if self.family == "successor":
            return f"{o[0]} + 1 = {a}."
        if self.family == "copy":
            return f"The letters are {a}."
        return f"From the last letter to the first: {a}."

    def reply(self, think: bool = False) -> str:
        plain = f"The answer is {self.answer}."
        return f"<think>{self.thought}</think> {plain}" if think else plain


def partition(key: str) -> str:
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in PARTITIONS.items() if lo <= bucket < hi)


def _operands(family: str, rng: random.Random) -> tuple:
    if family == "compare":
        a = rng.randint(0, 999)
        b = rng.choice([x for x in (rng.randint(0, 999), a + rng.randint(1, 9)) if x != a] or [a + 1])
        return (a, b) if rng.random() < 0.5 else (b, a)
    if family == "min3":
        return tuple(rng.sample(range(100), 3))
    if family == "successor":
        return (rng.randint(0, 9999),)
    return tuple(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 5)))


def rule_items(part: str, n: int, seed: int, salt: str, families: tuple[str, ...] = FAMILIES) -> list[RuleItem]:
    """n distinct items of `part`, the families in turn; `salt` names the use so each draws its own sequence."""
    if part not in PARTITIONS:
        raise ValueError(f"rule tasks: unknown partition {part!r} (partitions: {', '.join(PARTITIONS)})")
    rng = random.Random(f"{seed}/rules/{salt}")
    out: list[RuleItem] = []
    seen: set[str] = set()
    misses = 0
    while len(out) < n:
        family = families[len(out) % len(families)]
        ops = _operands(family, rng)
        shown = (" ".join(ops),) if family in ("copy", "reverse") else ops
        item = RuleItem(family, ops, rng.choice(_ASK[family]).format(*shown))
        if partition(item.key) != part or item.key in seen:
            misses += 1
            if misses > 50_000:
                raise ValueError(f"rule tasks: only {len(out)} distinct {part} items of the {n} asked for")
            continue
        misses = 0
        seen.add(item.key)
        out.append(item)
    return out


def rule_answer(text: str) -> str | None:
    """What follows the last "The answer is" up to its period, whitespace collapsed; None when there is none."""
    hits = ANSWER.findall(text)
    return " ".join(hits[-1].split()) if hits else None


def follows_format(text: str, think: bool = False) -> bool:
    """The reply is exactly the expected format: "The answer is X." (after a one-line <think>...</think> when
    `think`), nothing else."""
    return (THINK if think else PLAIN).fullmatch(text) is not None


def sft_rows(items: list[RuleItem], think: bool = False) -> list[dict]:
    return [{"messages": [{"role": "user", "content": it.question},
                          {"role": "assistant", "content": it.reply(think)}]} for it in items]


def prompt_rows(items: list[RuleItem], think: bool = False) -> list[dict]:
    """Verifiable prompts (RLVR's post/rl.jsonl, DPO's post/dpo_prompts.jsonl, post/heldout.jsonl): the `exact`
    verifier; `format` says which reply format counts (plain | think)."""
    return [{"prompt": it.question, "answer": it.answer, "verifier": "exact", "family": it.family,
             "format": "think" if think else "plain"} for it in items]
