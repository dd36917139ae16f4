"""Code rewards: the completion's program against the row's unit tests, in the sandbox (olmoflow/post/sandbox.py).

The program is the last ```python fenced block of the completion (any fenced block if none says python), else the
whole completion. The row's answer is the tests: Python statements (MBPP's `assert f(x) == y` lines; for HumanEval,
its `check` function followed by `check(entry_point)`). 1.0 when the sandbox's harness saw every statement pass.
"""

from __future__ import annotations

import re

from olmoflow.post.sandbox import Limits, run_tests

_FENCE = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
LIMITS = Limits(timeout=10.0)


def extract_program(completion: str) -> str:
    blocks = _FENCE.findall(completion)
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if python or blocks:
        return (python or [body for _, body in blocks])[-1]
    return completion


def code_reward(completion: str, answer: str) -> float:
    return float(run_tests(extract_program(completion), answer, limits=LIMITS).passed)
