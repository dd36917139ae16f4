"""Rule tasks: each use draws from its own partition (a held-out item never reaches training), the replies follow
the format the checks read, and the exact verifier scores them."""

from __future__ import annotations

from typing import get_args

import pytest

from olmoflow.data import synthetic_rules as rules
from olmoflow.data.config import PostDataConfig, RuleFamily
from olmoflow.data.postsets import rule_rows, sft_code_if
from olmoflow.post.verifiers import score


def test_uses_are_disjoint_and_every_family_is_drawn() -> None:
    keys = {}
    for use in rules.PARTITIONS:
        items = rules.rule_items(use, 200, seed=3, salt=use)
        assert len({it.key for it in items}) == 200
        assert {it.family for it in items} == set(rules.FAMILIES)
        assert all(rules.partition(it.key) == use for it in items)
        keys[use] = {it.key for it in items}
    for a in keys:
        for b in keys:
            assert a == b or not keys[a] & keys[b]


@pytest.mark.parametrize("think", [False, True])
def test_replies_follow_their_format_and_score_one(think: bool) -> None:
    for it in rules.rule_items("sft", 50, seed=0, salt="t"):
        reply = it.reply(think)
        assert rules.follows_format(reply, think) and not rules.follows_format(reply, not think)
        assert score("exact", reply, it.answer) == 1.0
        assert rules.rule_answer(reply) == it.answer


def test_answers_are_the_rule() -> None:
    assert rules.RuleItem("parity", (47,), "").answer == "odd"
    assert rules.RuleItem("compare", (37, 52), "").answer == "no"
    assert rules.RuleItem("successor", (199,), "").answer == "200"
    assert rules.RuleItem("min3", (4, 1, 7), "").answer == "1"
    assert rules.RuleItem("max3", (4, 7, 7), "").answer == "7"
    assert rules.RuleItem("max3", (4, 1, 7), "").thought == "max(4, 1) = 4; max(4, 7) = 7."
    assert rules.RuleItem("last_letter", ("k", "e", "l"), "").answer == "l"


def test_exact_verifier_and_format_checks() -> None:
    assert score("exact", "The answer is 52.", "52") == 1.0
    assert score("exact", "The answer is 5 2.", "52") == 0.0
    assert score("exact", "52", "52") == 0.0  # no answer sentence, no reward
    assert score("exact", "The answer is  p  l e k.", "p l e k") == 1.0
    assert not rules.follows_format("The answer is 52. And more.")
    assert not rules.follows_format("Sure! The answer is 52.")
    assert rules.follows_format("<think>52 > 37.</think> The answer is 52.", think=True)
    assert not rules.follows_format("<think>52 > 37.</think>", think=True)


def test_rule_rows_by_use() -> None:
    rows = rule_rows(30, 20, 25, 40, seed=0, think=True)
    assert [len(rows[k]) for k in ("sft", "dpo_prompts", "rl", "heldout")] == [30, 20, 25, 40]
    assert all(r["messages"][1]["content"].startswith("<think>") for r in rows["sft"])
    assert all(r["verifier"] == "exact" and r["format"] == "think" for r in rows["heldout"] + rows["rl"])
    held = {r["prompt"] for r in rows["heldout"]}
    trained = {r["messages"][0]["content"] for r in rows["sft"]}
    trained |= {r["prompt"] for r in rows["rl"] + rows["dpo_prompts"]}
    assert not held & trained


def test_families_by_use() -> None:
    """SFT and held-out rows draw every listed family; DPO and RL prompts only the RL families; the config's
    family names are the generator's."""
    rows = rule_rows(60, 20, 20, 60, seed=0, think=False, families=("parity", "min3", "max3"),
                     rl_families=("min3", "max3"))
    assert {r["family"] for r in rows["heldout"]} == {"parity", "min3", "max3"}
    assert {r["family"] for r in rows["rl"] + rows["dpo_prompts"]} == {"min3", "max3"}
    assert get_args(RuleFamily) == rules.FAMILIES
    with pytest.raises(ValueError, match="rules_rl_families: compare not in rules_families"):
        PostDataConfig(rules_families=["min3"], rules_rl_families=["compare"])
    with pytest.raises(ValueError, match="rules_families"):
        PostDataConfig(rules_families=["min4"])


def test_sft_code_and_instruction_rows() -> None:
    rows = sft_code_if(5, 4, seed=0)
    assert len(rows) == 9
    assert all(r["messages"][1]["content"].startswith("```python\ndef ") for r in rows[:5])
    assert all(r["messages"][0]["role"] == "user" and r["messages"][1]["content"] for r in rows[5:])
