"""Code rewards: the completion's program against the row's unit tests, in the sandbox (olmoflow/post/sandbox.py).

The program is the last ```python fenced block of the completion (any fenced block if none says python), else the
whole completion. The row's answer is the tests: Python statements (MBPP's `assert f(x) == y` lines; for HumanEval,
its `check` function followed by `check(entry_point)`). 1.0 when the sandbox's harness saw every statement pass.
"""

from __future__ import annotations

import re

from olmoflow.post.sandbox import Limits, Verdict, run_tests

_FENCE = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
LIMITS = Limits(timeout=10.0)


def extract_program(completion: str) -> str:
    blocks = _FENCE.findall(completion)
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if python or blocks:
        return (python or [body for _, body in blocks])[-1]
    return completion


def run_program(program: str, tests: str, timeout: float | None = None) -> Verdict:
    """The sandbox's verdict on `program` against `tests`, as code_reward runs it (`timeout` overrides the wall
    time). Never raises: a sandbox that fails to start is a failed verdict with its reason (eval's pass@1)."""
    limits = LIMITS if timeout is None else Limits(timeout=timeout)
    try:
        return run_tests(program, tests, limits=limits)
    except Exception as e:  # noqa: BLE001 - a run that cannot start scores 0, it never ends the caller's loop
        return Verdict(False, f"sandbox error: {type(e).__name__}: {e}"[:500], 0.0)


def code_reward(completion: str, answer: str) -> float:
    """RLVR's reward; a sandbox that cannot start raises (verifiers.score counts it in reward_errors)."""
    return float(run_tests(extract_program(completion), answer, limits=LIMITS).passed)
