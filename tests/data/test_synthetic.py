"""Synthetic arithmetic: right answers (checked by evaluating the question's own expression), wrong ones wrong,
and held-out eval problems never reachable from training or RL."""

import ast
import operator
import random
import re

import pytest

from olmoflow.data.synthetic import PARTITIONS, Item, Problem, assert_disjoint, document, items, make_item, wrong_answer

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def oracle(question: str) -> float:
    """Evaluate the 'a op b' in a bare question with Python's own parser."""
    expr = re.fullmatch(r"What is (.+)\?", question).group(1)
    node = ast.parse(expr, mode="eval").body
    return OPS[type(node.op)](node.left.value, node.right.value)


def test_bare_answers_match_python():
    for it in items("train", 300, seed=1, max_operand=99, salt="t", word=0.0):
        assert float(it.answer) == oracle(it.question)
        assert it.worked.endswith(f"The answer is {it.answer}.")


def test_word_problems_carry_their_operands():
    for it in items("train", 100, seed=2, max_operand=99, salt="w", word=1.0):
        numbers = [int(n) for n in re.findall(r"\d+", it.question)]
        assert numbers == [it.problem.a, it.problem.b]
        assert not it.question.startswith("What is")


def test_partitions_split_the_problem_space():
    assert [PARTITIONS[k] for k in ("eval", "rl", "train")] == [(0, 10), (10, 30), (30, 100)]
    shares = {"eval": 0, "rl": 0, "train": 0}
    rng = random.Random(0)
    for _ in range(5000):
        shares[Problem(rng.randint(0, 999), "+", rng.randint(0, 999)).partition] += 1
    assert 400 < shares["eval"] < 600 and 850 < shares["rl"] < 1150


def test_sets_are_disjoint_even_across_seeds_and_wording():
    held = items("eval", 300, seed=0, max_operand=99, salt="eval")
    used = {"rl": items("rl", 300, seed=7, max_operand=99, salt="rl"),
            "train": items("train", 2000, seed=9, max_operand=99, salt="sft", unique=False)}
    assert {it.problem.partition for it in held} == {"eval"}
    assert_disjoint(held, **used)
    assert not {it.problem.key for it in held} & {it.problem.key for g in used.values() for it in g}


def test_assert_disjoint_catches_a_planted_clash():
    held = items("eval", 5, seed=0, max_operand=99, salt="eval")
    reworded = make_item(held[0].problem, random.Random(3), word=True)  # same problem, other words
    with pytest.raises(AssertionError, match="also occurs in rl"):
        assert_disjoint(held, rl=[reworded])


def test_generation_is_deterministic():
    a = items("rl", 50, seed=5, max_operand=99, salt="rl")
    b = items("rl", 50, seed=5, max_operand=99, salt="rl")
    c = items("rl", 50, seed=6, max_operand=99, salt="rl")
    assert a == b and a != c


def test_wrong_answers_are_wrong_and_not_negative():
    rng = random.Random(0)
    for it in items("train", 500, seed=3, max_operand=99, salt="dpo", unique=False):
        bad = wrong_answer(it.problem, rng)
        assert bad != it.problem.answer and bad >= 0


def test_too_few_problems_is_a_clear_error():
    with pytest.raises(ValueError, match="raise curate.synthetic.max_operand"):
        items("eval", 100, seed=0, max_operand=10, salt="eval")


def test_document_uses_the_eval_prompt_format():
    its = [Item(Problem(2, "+", 3), "What is 2 + 3?", "2 + 3 = 5. The answer is 5.")] * 2
    assert document(its) == "Question: What is 2 + 3?\nAnswer: 2 + 3 = 5. The answer is 5.\n\n" \
                            "Question: What is 2 + 3?\nAnswer: 2 + 3 = 5. The answer is 5."
