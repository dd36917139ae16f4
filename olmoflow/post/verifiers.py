"""Verifiable rewards for RLVR: a completion earns 1.0 when its final answer equals the reference, else 0.0.

`math`: the final answer is the number after the last "####" (GSM8K style), else inside the last \\boxed{},
else after the last "answer is" / "answer:", else the last number in the text. Numbers compare exactly as
rationals, so "1,234" = "1234", "0.50" = "1/2" = "\\frac{1}{2}", "$7" = "7"; there is no tolerance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

# A leading minus only when it is not a binary minus ("5-3" holds 5 and 3); thousands need groups of three.
NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+|/\d+)?")
_FRAC = re.compile(r"\\d?frac\{(-?\d+)\}\{(\d+)\}")
# (where the final answer starts, what ends it), in order of precedence.
_MARKERS = ((re.compile(r"####"), None),
            (re.compile(r"\\boxed\{"), "}"),
            (re.compile(r"answer\s*(?:is|:)", re.IGNORECASE), None))


def to_number(text: str) -> Fraction | None:
    m = NUMBER.search(text.replace("\u2212", "-").replace("$", ""))
    if m is None:
        return None
    try:
        return Fraction(m.group().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(text: str) -> Fraction | None:
    """The final number a completion commits to, or None when it states none."""
    text = _FRAC.sub(r"\1/\2", text.replace("\u2212", "-").replace("$", ""))
    for marker, end in _MARKERS:
        hits = list(marker.finditer(text))
        if hits:
            after = text[hits[-1].end():]
            if end is not None:
                after = after.split(end, 1)[0]
            found = to_number(after)
            if found is not None:
                return found
    numbers = NUMBER.findall(text)
    return to_number(numbers[-1]) if numbers else None


def math_reward(completion: str, answer: str) -> float:
    got, want = extract_answer(completion), to_number(answer)
    if want is None:
        raise ValueError(f"math verifier: reference answer {answer!r} is not a number")
    return float(got is not None and got == want)


VERIFIERS: dict[str, Callable[[str, str], float]] = {"math": math_reward}


def get_verifier(name: str) -> Callable[[str, str], float]:
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r} (verifiers: {', '.join(VERIFIERS)})")
    return VERIFIERS[name]
