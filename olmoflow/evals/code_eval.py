"""pass@1 of HumanEval and MBPP completions: the program a completion makes, run with the item's tests in the
sandbox through post/code_reward.run_program (the engine of `olmoflow verify-code` and RLVR's code reward).

Programs: a base HumanEval completion continues the prompt, so the program is prompt + completion; a chat reply's
program is code_reward.extract_program's (the last ```python block, else the whole reply), with the prompt's
imports put first and, when the reply holds only the body, the prompt's signature too. MBPP's program is the
completion (base: up to the closing fence) or the reply's code block. Tests: the item's "test" (HumanEval: the
check(candidate) harness, called on entry_point when the file does not call it). A program that fails, raises,
hangs past the timeout or cannot be started scores 0 with the sandbox's reason.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from olmoflow.post.code_reward import extract_program, run_program

TIMEOUT = 10.0
"""Seconds of wall time per program and its tests (OLMES's code_eval default)."""


def program(task: str, item: dict[str, Any], completion: str, chat: bool) -> str:
    if not chat:
        return item["prompt"] + completion if task == "humaneval" else completion
    code = extract_program(completion)
    if task != "humaneval":
        return code
    entry = item.get("entry_point") or ""
    if entry and not re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        return item["prompt"] + code  # the reply is the function's body only
    imports = "".join(ln + "\n" for ln in item["prompt"].splitlines() if ln.startswith(("import ", "from ")))
    return imports + code


def tests(item: dict[str, Any]) -> str:
    test, entry = item["test"], item.get("entry_point")
    if entry and "def check(" in test and not re.search(r"^check\(", test, re.MULTILINE):
        test += f"\n\ncheck({entry})\n"
    return test


def pass_at_1(runs: list[tuple[str, str]], timeout: float = TIMEOUT, workers: int = 4) -> list[tuple[float, str]]:
    """(1.0 or 0.0, the sandbox's reason) per (program, tests); sandboxed runs wait on their child processes, so a
    few threads run them side by side."""
    def one(run: tuple[str, str]) -> tuple[float, str]:
        verdict = run_program(run[0], run[1], timeout=timeout)
        return float(verdict.passed), verdict.reason

    if len(runs) <= 1:
        return [one(r) for r in runs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, runs))
