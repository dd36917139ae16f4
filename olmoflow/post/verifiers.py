"""Verifiable rewards for RLVR and eval: one registry, so both score a completion the same way.

A row names its verifier ("verifier": math | code | ifeval) and carries the reference in "answer":

- `math` (here): the final answer is what follows the last "####" (GSM8K style), else the last \\boxed{...}
  (balanced braces), else what follows the last "answer is" / "answer:" (a $...$ or \\(...\\) span, else a
  number), else the last number in the text. When both answers are plain numbers ("1,234", "0.50", "$7",
  "\\frac{1}{2}", "3/4") they compare exactly as rationals, no tolerance. Otherwise both are parsed as LaTeX by
  `math-verify` (sympy underneath) and compared symbolically: "\\sqrt{3}/2" = "\\frac{\\sqrt{3}}{2}", intervals
  "(1,2]", sets, expressions. Its parse and compare time-outs use SIGALRM, so they apply on the main thread only.
- `code`: olmoflow/post/code_reward.py (the program against unit tests in the sandbox). Dispatch first compiles
  the extracted program here (compiling runs nothing): one that is not valid Python scores 0 without starting a
  sandbox (~0.15 s each), the verdict the sandbox would give, since its harness must import the program.
- `ifeval`: olmoflow/post/ifeval.py (IFBench constraint checkers).
- `exact` (here): the rule tasks of olmoflow/data/synthetic_rules.py: what follows the last "The answer is" up to
  its period equals the reference exactly (whitespace collapsed); no such sentence scores 0.
  Under RL-Zero's plain template (rlvr.template plain, olmoflow/post/rl_template.py) the completion is the answer:
  its first line, stripped, a trailing period dropped, equals the reference ignoring case; a first line stating
  "The answer is X." scores as above.

`score(name, completion, answer, template)` is what callers use (template: the prompt template the completion
answers, chat or plain): a verifier that raises scores 0.0 and is counted in
`reward_errors` (by verifier name) with its last message in `last_errors`, never a crash.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

from olmoflow.data.evalsets_gen import last_boxed as boxed  # one \boxed{} reader for curate, eval and RLVR
from olmoflow.data.synthetic_rules import rule_answer
from olmoflow.post.code_reward import code_reward, extract_program
from olmoflow.post.ifeval import ifeval_reward

# A leading minus only when it is not a binary minus ("5-3" holds 5 and 3); thousands need groups of three.
NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+|/\d+)?")
_FRAC = re.compile(r"\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)", re.IGNORECASE)
_LATEX_SPAN = re.compile(r"\s*(?:\$\$?(.+?)\$\$?|\\\((.+?)\\\)|\\\[(.+?)\\\])", re.DOTALL)
_WRAPPERS = ("\\left", "\\right", "\\!", "\\,", "\\;", "$", " ")


def _clean(text: str) -> str:
    return text.replace("\u2212", "-")


def to_number(text: str) -> Fraction | None:
    """The first number in the text, exactly (\\frac{a}{b} read as a/b)."""
    m = NUMBER.search(_FRAC.sub(r"\1/\2", _clean(text)).replace("$", ""))
    if m is None:
        return None
    try:
        return Fraction(m.group().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def as_rational(text: str) -> Fraction | None:
    """The text's value when the whole text is one plain number ("1,234", "-0.5", "\\frac{1}{2}", "$7"), else None."""
    s = _FRAC.sub(r"\1/\2", _clean(text))
    for w in _WRAPPERS:
        s = s.replace(w, "")
    s = s.rstrip(".")
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    if NUMBER.fullmatch(s) is None:
        return None
    try:
        return Fraction(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def final_answer(text: str) -> str | None:
    """The text of the final answer a completion commits to, or None when it states none."""
    text = _clean(text)
    if "####" in text:
        found = NUMBER.search(text.rsplit("####", 1)[1].replace("$", ""))
        if found:
            return found.group()
    found = boxed(text)
    if found is not None and found.strip():
        return found
    hits = list(_ANSWER_IS.finditer(text))
    if hits:
        after = text[hits[-1].end():]
        span = _LATEX_SPAN.match(after)
        if span:
            return next(g for g in span.groups() if g is not None)
        found = NUMBER.search(_FRAC.sub(r"\1/\2", after).replace("$", ""))
        if found:
            return found.group()
    numbers = NUMBER.findall(_FRAC.sub(r"\1/\2", text).replace("$", ""))
    return numbers[-1] if numbers else None


def extract_answer(text: str) -> Fraction | None:
    """The final answer as an exact number, or None when it states none or it is not a plain number."""
    found = final_answer(text)
    return None if found is None else as_rational(found)


def _math_verify(gold: str, pred: str) -> bool:
    from math_verify import parse, verify  # sympy and antlr: imported on first symbolic comparison
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    wanted = parse(f"${gold}$", parsing_timeout=timeout)
    if not wanted:
        raise ValueError(f"math verifier: reference answer {gold!r} is neither a number nor a LaTeX expression")
    got = parse(f"${pred}$", parsing_timeout=timeout)
    return bool(got) and verify(wanted, got, timeout_seconds=timeout)


def math_equal(got: str, answer: str) -> bool:
    """Whether an extracted final answer equals the reference: exactly as rationals when both are plain numbers,
    else symbolically with math-verify. Raises ValueError on a reference that is neither."""
    want = as_rational(answer)
    if want is None and not re.search(r"[\d\\]", answer):
        raise ValueError(f"math verifier: reference answer {answer!r} is not a number")
    mine = as_rational(got)
    if want is not None and mine is not None:
        return mine == want
    return _math_verify(answer.strip().strip("$"), got)


def math_reward(completion: str, answer: str) -> float:
    got = final_answer(completion)
    if got is None:
        if as_rational(answer) is None and not re.search(r"[\d\\]", answer):
            raise ValueError(f"math verifier: reference answer {answer!r} is not a number")
        return 0.0
    return float(math_equal(got, answer))


def code_dispatch(completion: str, answer: str) -> float:
    """code_reward, skipping the sandbox for a program that does not compile (an RL policy's early samples)."""
    try:
        compile(extract_program(completion), "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        return 0.0
    return code_reward(completion, answer)


def exact_reward(completion: str, answer: str) -> float:
    """1.0 when the stated answer ("The answer is X.") is the reference, whitespace collapsed."""
    return float(rule_answer(completion) == " ".join(answer.split()))


def first_line(text: str) -> str:
    """A plain-template completion's answer: its first line, stripped."""
    return text.split("\n", 1)[0].strip()


def exact_plain_reward(completion: str, answer: str) -> float:
    """1.0 when the completion's first line (stripped, a trailing period dropped) is the reference, ignoring case
    and collapsing whitespace; a line stating "The answer is X." is scored as exact_reward scores it."""
    line = first_line(completion)
    if rule_answer(line) is not None:
        return exact_reward(line, answer)
    return float(" ".join(line.removesuffix(".").split()).casefold() == " ".join(answer.split()).casefold())


VERIFIERS: dict[str, Callable[[str, str], float]] = {"math": math_reward, "code": code_dispatch,
                                                       "ifeval": ifeval_reward, "exact": exact_reward}
PLAIN_VERIFIERS: dict[str, Callable[[str, str], float]] = {**VERIFIERS, "exact": exact_plain_reward}
"""Under the plain template (RL-Zero); the others read a one-line completion as they read any."""
reward_errors: Counter[str] = Counter()
last_errors: dict[str, str] = {}


def get_verifier(name: str, template: str = "chat") -> Callable[[str, str], float]:
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r} (verifiers: {', '.join(VERIFIERS)})")
    return (PLAIN_VERIFIERS if template == "plain" else VERIFIERS)[name]


def score(name: str, completion: str, answer: str, template: str = "chat") -> float:
    """The verifier's reward for a completion answering a prompt of `template` (chat | plain); 0.0 (counted in
    reward_errors) when it raises."""
    verifier = get_verifier(name, template)
    try:
        return float(verifier(completion, answer))
    except Exception as e:  # noqa: BLE001 - a bad completion or reference must never end the run
        reward_errors[name] += 1
        last_errors[name] = f"{type(e).__name__}: {e}"[:500]
        return 0.0
