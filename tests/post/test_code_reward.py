"""code_reward.run_program, the engine eval's pass@1 shares with RLVR: a verdict for every program, never an
exception, and the per-program timeout."""

from __future__ import annotations

from olmoflow.post import code_reward


def test_run_program_passes_fails_and_times_out() -> None:
    assert code_reward.run_program("def f(x):\n    return x + 1\n", "assert f(1) == 2\n").passed
    wrong = code_reward.run_program("def f(x):\n    return x\n", "assert f(1) == 2\n")
    assert not wrong.passed and "assert" in wrong.reason.lower()
    slow = code_reward.run_program("while True:\n    pass\n", "assert True\n", timeout=1.0)
    assert not slow.passed and slow.reason.startswith("timeout") and slow.seconds < 10


def test_run_program_turns_a_sandbox_that_cannot_start_into_a_failed_verdict(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("no interpreter")

    monkeypatch.setattr(code_reward, "run_tests", broken)
    verdict = code_reward.run_program("x = 1\n", "assert x == 1\n")
    assert not verdict.passed and verdict.reason == "sandbox error: OSError: no interpreter"
