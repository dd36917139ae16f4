"""RLVR's bookkeeping over verifier families (no model): the held-out split measures every family, per-family
means and error counts, and the code dispatch that skips the sandbox only where its verdict is certain."""

from __future__ import annotations

from collections import Counter

import pytest

from olmoflow.post import verifiers
from olmoflow.post.code_reward import run_program
from olmoflow.post.data import split_heldout
from olmoflow.stages.rlvr import error_metrics, family_means, split_families


def rows(family: str, n: int) -> list[dict]:
    return [{"prompt": f"{family} {i}", "answer": str(i), "verifier": family} for i in range(n)]


def test_one_family_splits_as_before() -> None:
    math = rows("math", 50)
    assert split_families(math, 8) == split_heldout(math, 8, "rlvr.val_prompts")


def test_held_out_prompts_follow_each_family_s_share() -> None:
    data = rows("math", 100) + rows("code", 12) + rows("ifeval", 12) + rows("tiny", 2)
    train, val = split_families(data, 8)
    got = Counter(r["verifier"] for r in val)
    assert sum(got.values()) == 8 and set(got) == {"math", "code", "ifeval", "tiny"}
    assert got["math"] >= 5 and got["tiny"] == 1
    assert sorted(map(str, train + val)) == sorted(map(str, data))  # a partition: nothing lost, nothing twice
    # the same split whatever the order of the rows
    assert sorted(map(str, split_families(data[::-1], 8)[1])) == sorted(map(str, val))
    with pytest.raises(ValueError, match=r"rlvr.val_prompts=126 leaves no training rows \(126 rows in all\)"):
        split_families(data, 126)


def test_family_means_and_error_metrics() -> None:
    assert family_means([("math", 1.0), ("code", 0.0), ("math", 0.0)], "reward") == {"reward/code": 0.0,
                                                                                      "reward/math": 0.5}
    assert error_metrics(Counter({"code": 2, "ifeval": 1})) == {"reward_errors": 3.0, "reward_errors/code": 2.0,
                                                                "reward_errors/ifeval": 1.0}
    assert error_metrics(Counter()) == {"reward_errors": 0.0}


def test_code_dispatch_skips_the_sandbox_only_for_a_program_that_cannot_compile(monkeypatch) -> None:
    started = []
    monkeypatch.setattr(verifiers, "code_reward", lambda c, a: started.append(c) or 1.0)
    assert verifiers.score("code", "```python\ndef f(:\n```", "assert True\n") == 0.0
    assert verifiers.score("code", "x = 1\x00", "assert True\n") == 0.0
    assert started == []
    assert not run_program("def f(:\n", "assert True\n").passed  # the sandbox's verdict too
    assert verifiers.score("code", "```python\ndef f():\n    return 1\n```", "assert f() == 1\n") == 1.0
    assert len(started) == 1
