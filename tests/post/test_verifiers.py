"""The verifiers: which answer a math completion commits to, exact or symbolic comparison with the reference; code
against unit tests in the sandbox; IFBench constraints; a verifier that raises scores 0 and is counted."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from olmoflow.post import verifiers
from olmoflow.post.code_reward import extract_program
from olmoflow.post.ifeval import CHECKERS, followed
from olmoflow.post.verifiers import extract_answer, get_verifier, math_reward, score


@pytest.mark.parametrize("text, want", [
    ("12 plus 7 is 19.", 19),
    ("The answer is 42.", 42),
    ("the answer is 10. Check: 10 + 1 = 11", 10),           # "answer is" beats the last number
    ("Answer: 5, then 6", 5),
    ("Natalia sold 48 clips... 48 + 24 = 72\n#### 72", 72),  # GSM8K
    ("#### 1,234", 1234),                                    # thousands separators
    ("so x = \\boxed{7} and 8 later", 7),                      # \boxed beats the last number
    ("\\boxed{\\frac{3}{4}}", Fraction(3, 4)),
    ("It costs $1,000,000 in total", 1000000),
    ("x = -3.5", Fraction(-7, 2)),
    ("temperature fell to \u22124", -4),                       # unicode minus
    ("5-3 = 2", 2),                                          # binary minus is not a sign
    ("3/4 of the cake", Fraction(3, 4)),
    ("0.50", Fraction(1, 2)),
    ("1,2,3", 3),                                            # a list is not a thousands number
    ("I do not know.", None),
    ("", None),
])
def test_extract_answer(text: str, want: Fraction | int | None) -> None:
    assert extract_answer(text) == (None if want is None else Fraction(want))


@pytest.mark.parametrize("completion, answer, reward", [
    ("12 plus 7 is 19.", "19", 1.0),
    ("12 plus 7 is 19.", "20", 0.0),
    ("The answer is 1,234", "1234", 1.0),
    ("#### 0.5", "1/2", 1.0),
    ("The answer is 7.0", "7", 1.0),
    ("The answer is 7.01", "7", 0.0),                        # exact: no tolerance
    ("no number here", "3", 0.0),
    ("-4", "4", 0.0),
])
def test_math_reward(completion: str, answer: str, reward: float) -> None:
    assert math_reward(completion, answer) == reward
    assert get_verifier("math")(completion, answer) == reward


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        get_verifier("nope")
    with pytest.raises(ValueError, match="reference answer 'seven' is not a number"):
        math_reward("7", "seven")


@pytest.mark.parametrize("completion, answer, reward", [
    ("The answer is 1", "\\frac{1}{2}", 0.0),                    # the reference was read as 1 before
    ("So $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", 1.0),
    ("#### 0.5", "\\frac{1}{2}", 1.0),
    ("\\boxed{\\dfrac{2}{4}}", "$\\frac{1}{2}$", 1.0),
    ("so $\\boxed{\\sqrt{3}/2}$", "\\frac{\\sqrt{3}}{2}", 1.0),
    ("so $\\boxed{\\frac{\\sqrt{3}}{3}}$", "\\frac{\\sqrt{3}}{2}", 0.0),
    ("The answer is $\\frac{\\sqrt{3}}{2}$.", "\\frac{\\sqrt{3}}{2}", 1.0),
    ("x lies in \\boxed{(1, 2]}", "(1,2]", 1.0),
    ("x lies in \\boxed{[1, 2]}", "(1,2]", 0.0),
    ("\\boxed{\\{1, 2, 3\\}}", "\\{3, 2, 1\\}", 1.0),
    ("\\boxed{2x + 2}", "2(x+1)", 1.0),
])
def test_math_latex(completion: str, answer: str, reward: float) -> None:
    assert math_reward(completion, answer) == reward


def test_score_counts_errors_and_scores_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verifiers, "reward_errors", type(verifiers.reward_errors)())
    assert score("math", "7", "seven") == 0.0
    assert score("ifeval", "hi", "not json") == 0.0
    assert score("ifeval", "hi", json.dumps({"instruction_id_list": ["made:up"], "kwargs": [{}]})) == 0.0
    assert verifiers.reward_errors == {"math": 1, "ifeval": 2}
    assert "not in the supported subset" in verifiers.last_errors["ifeval"]
    assert score("math", "The answer is 7", "7") == 1.0
    with pytest.raises(ValueError, match="unknown verifier"):  # a row naming no verifier is a data error
        score("nope", "", "")


def test_code_reward_through_the_sandbox() -> None:
    tests = "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"
    good = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert extract_program(good) == "def add(a, b):\n    return a + b\n"
    assert extract_program("def f(): pass") == "def f(): pass"
    assert score("code", good, tests) == 1.0
    assert score("code", good.replace("a + b", "a * b"), tests) == 0.0
    assert score("code", "```python\nprint('passed')\nraise SystemExit(0)\n```", tests) == 0.0
    humaneval = "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"
    assert score("code", good, humaneval) == 1.0


def spec(iid: str, **kw) -> dict:
    return {"instruction_id_list": [iid], "kwargs": [kw]}


@pytest.mark.parametrize("iid, kw, yes, no", [
    ("count:word_count_range", {"min_words": 3, "max_words": 4}, "one two, three!", "one two"),
    ("count:unique_word_count", {"N": 3}, "a b c a", "a a b"),
    ("count:numbers", {"N": 2}, "I have 3 cats and 1,000 fish", "I have 3 cats"),
    ("count:keywords_multiple", {"keyword1": "sun", "keyword2": "moon", "keyword3": "star", "keyword4": "sky",
                                 "keyword5": "sea"},
     "sun " + "moon " * 2 + "star " * 3 + "sky " * 5 + "sea " * 7, "sun moon star sky sea"),
    ("count:punctuation", {}, "Yes. No, maybe! Why? Because; here: what?!", "Yes. No, maybe!"),
    ("words:palindrome", {}, "level radar civic kayak refer rotor stats tenet madam racecar", "level radar"),
    ("words:prime_lengths", {}, "we are all so", "hello world this"),
    ("words:alphabet", {}, "Apples bake crisply", "Apples cake"),
    ("format:newline", {}, "one\ntwo\nthree", "one two\nthree"),
    ("format:no_whitespace", {}, "no_spaces_here", "a space"),
])
def test_ifeval_checkers(iid: str, kw: dict, yes: str, no: str) -> None:
    assert followed(yes, spec(iid, **kw)) == [True]
    assert followed(no, spec(iid, **kw)) == [False]
    assert score("ifeval", yes, json.dumps(spec(iid, **kw))) == 1.0


def test_ifeval_ifbench_rows() -> None:
    """IFBench rows as the data file writes them: every kwarg present, unused ones null; all must be followed."""
    null = {k: None for k in ("N", "min_words", "max_words", "keyword1", "keyword2", "keyword3", "keyword4",
                              "keyword5")}
    row = {"instruction_id_list": ["count:word_count_range", "format:no_whitespace"],
           "kwargs": [{**null, "min_words": 1, "max_words": 2}, null]}
    assert score("ifeval", "hello_world", json.dumps(row)) == 1.0
    assert score("ifeval", "hello world", json.dumps(row)) == 0.0
    assert len(CHECKERS) == 55  # all 58 ids of IFBench's registry but the three ifeval_checks.UNVERIFIABLE
