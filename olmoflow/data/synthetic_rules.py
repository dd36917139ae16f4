"""Rule tasks a ~10M model can learn: parity, compare two numbers, the successor, the smallest and the largest of
three digits, the last letter of a short word. Each is answered in one fixed format, "The answer is X." (or, in
the Think variant, a one-line `<think>...</think>` first), checked exactly by the `exact` verifier
(olmoflow/post/verifiers.py).

They are what lets the tiny flow show each post-training stage's effect on items it never trained on: SFT teaches
the format (the base model never writes it), DPO's verifiable pairs and RLVR's rewards need answers that are
sometimes right and sometimes wrong at the tiny scale. Every answer sits at a fixed distance from the prompt's end
or comes from a small set (yes / no, even / odd, a digit): a 4-layer model pretrained on half a million tokens has
no induction heads to copy a string from anywhere in its context, so copying and reversing stay at 0 there. Even
these rules need steps: after 60 SFT steps the tiny model gives one answer per family whatever the operands
(parity at chance), after 200 it reads the last digit (parity 1.0 held out) and answers min- / max-of-three
right ~1 in 3, which RLVR then raises. Every item is its family and operands; a hash of that key puts it in
exactly one partition (held-out 15%, rl 25%, dpo 15%, sft 45%), whatever the seed or wording, so a held-out item
never reaches SFT, DPO or RLVR training.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass

PARTITIONS = {"heldout": (0, 15), "rl": (15, 40), "dpo": (40, 55), "sft": (55, 100)}
"""Percent ranges of hash(key) % 100 owned by each use."""
FAMILIES = ("parity", "compare", "successor", "min3", "max3", "last_letter")
ANSWER = re.compile(r"The answer is ([^\n.]+)\.")
PLAIN = re.compile(r"\s*The answer is [^\n.]+\.\s*")
THINK = re.compile(r"\s*<think>[^\n]*?</think>\s*The answer is [^\n.]+\.\s*")

_ASK = {
    "parity": ["Is {0} even or odd?", "Is the number {0} odd or even?"],
    "compare": ["Is {0} larger than {1}?", "Is {0} bigger than {1}?"],
    "successor": ["What number comes after {0}?", "What is the next number after {0}?"],
    "min3": ["Which is smallest: {0}, {1}, {2}?", "What is the least of {0}, {1}, {2}?"],
    "max3": ["Which is largest: {0}, {1}, {2}?", "What is the greatest of {0}, {1}, {2}?"],
    "last_letter": ["What is the last letter of {0}?", "Name the last letter of {0}."],
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
        if self.family == "parity":
            return "odd" if o[0] % 2 else "even"
        if self.family == "compare":
            return "yes" if o[0] > o[1] else "no"
        if self.family == "successor":
            return str(o[0] + 1)
        if self.family == "min3":
            return str(min(o))
        if self.family == "max3":
            return str(max(o))
        return o[-1]

    @property
    def thought(self) -> str:
        """A one-line reasoning that leads to the answer (the Think variant)."""
        o, a = self.operands, self.answer
        if self.family == "parity":
            return f"{o[0]} ends in {o[0] % 10}, which is {a}."
        if self.family == "compare":
            return f"{o[0]} {'>' if a == 'yes' else '<'} {o[1]}."
        if self.family == "successor":
            return f"{o[0]} + 1 = {a}."
        if self.family in ("min3", "max3"):
            f = min if self.family == "min3" else max
            return f"{f.__name__}({o[0]}, {o[1]}) = {f(o[:2])}; {f.__name__}({f(o[:2])}, {o[2]}) = {a}."
        return f"The letters are {' '.join(o)}; the last is {a}."

    def reply(self, think: bool = False) -> str:
        plain = f"The answer is {self.answer}."
        return f"<think>{self.thought}</think> {plain}" if think else plain


def partition(key: str) -> str:
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in PARTITIONS.items() if lo <= bucket < hi)


def _operands(family: str, rng: random.Random) -> tuple:
    if family == "parity":
        return (rng.randint(0, 9999),)
    if family == "compare":
        return tuple(rng.sample(range(100), 2))
    if family == "successor":
        return (rng.randint(0, 999),)
    if family in ("min3", "max3"):  # digits may repeat: 1,000 items, 150 of them held out
        return tuple(rng.randrange(10) for _ in range(3))
    return tuple(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 5)))


def rule_items(part: str, n: int, seed: int, salt: str, families: tuple[str, ...] = FAMILIES) -> list[RuleItem]:
    """n distinct items of `part`, the families in turn (one whose partition runs out of new items leaves the
    turn: min3 has 1,000 in all); `salt` names the use so each draws its own sequence."""
    if part not in PARTITIONS:
        raise ValueError(f"rule tasks: unknown partition {part!r} (partitions: {', '.join(PARTITIONS)})")
    rng = random.Random(f"{seed}/rules/{salt}")
    out: list[RuleItem] = []
    seen: set[str] = set()
    turn = list(families)
    misses = 0
    while len(out) < n:
        family = turn[len(out) % len(turn)]
        ops = _operands(family, rng)
        shown = (" ".join(ops),) if family == "last_letter" else ops
        item = RuleItem(family, ops, rng.choice(_ASK[family]).format(*shown))
        if partition(item.key) != part or item.key in seen:
            misses += 1
            if misses > 5_000:  # this family has no new item left here
                turn.remove(family)
                misses = 0
                if not turn:
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
