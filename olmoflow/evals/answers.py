"""Final answers of math completions (GSM8K, MATH) and their checks, on RLVR's math verifier (post/verifiers.py).

GSM8K  the answer is verifiers.final_answer's ("#### N", a \\boxed{}, "The answer is N", else the last number);
       exact_match = verifiers.math_reward (the numbers compared exactly as rationals), RLVR's reward.
MATH   Minerva's extraction: the text after "Final Answer: The final answer is" up to ". I hope it is correct", else
       the last \\boxed{}, else verifiers.final_answer. exact_match compares Minerva's normalize_final_answer of
       it with the gold's (string equality, as Lewkowycz et al. 2022, appendix D.1, and OLMES's minerva_math);
       exact_match_flex also counts an answer that any of those extractions gives and that equals the gold
       symbolically through verifiers.math_equal (math-verify), the equivalence RLVR rewards.
"""

from __future__ import annotations

import re

from olmoflow.post import verifiers

GSM8K_CALC = re.compile(r"<<[^>]*>>")
GSM8K_OPERATOR = re.compile(r"([+\-*/=])")
MINERVA_FINAL = re.compile(r"final answer is\s*(.+?)\s*\.?\s*I hope it is correct", re.IGNORECASE | re.DOTALL)

# Minerva's answer normalisation (Lewkowycz et al. 2022, appendix D.1).
SUBSTITUTIONS = [("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), (r"\ ", ""), (" ", ""), ("mbox", "text"),
                 (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}")]
REMOVED_EXPRESSIONS = ["square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units",
                       "\\ldots", "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm",
                       "pounds", "meters", "meals", "edges", "students", "childrentickets", "multiples", "\\text{s}",
                       "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}",
                       r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;", r",\!", "{,}", '"', "\\dots"]


def gsm8k_demo(solution: str) -> str:
    """A GSM8K train solution as OLMES's CoT demonstration: calculator annotations dropped, arithmetic operators
    spaced, one line ending in a full stop, then "So the answer is N." (equal to OLMES's text for 1,317 of the
    1,319 GSM8K test solutions; the other two: OLMES writes a negative final answer as "- 10")."""
    text = GSM8K_OPERATOR.sub(r" \1 ", GSM8K_CALC.sub("", solution))
    work, final = text.rsplit("####", 1) if "####" in text else (text, "")
    work = " ".join(work.split())
    work = work[:1].upper() + work[1:]
    if work and work[-1] not in ".!?":
        work += "."
    final = "".join(final.split())
    return f"{work} So the answer is {final}." if final else work


def gsm8k_extract(text: str) -> str | None:
    return verifiers.final_answer(text)


def gsm8k_exact_match(text: str, gold: str) -> float:
    """RLVR's math reward of the answer text against the gold number (raises on a gold that is no number)."""
    return verifiers.math_reward(text, gold)


def normalize_final_answer(answer: str) -> str:
    """Minerva's normalisation: the right side of an equation, units and spacing removed, \\text and \\boxed
    unwrapped, shorthand fractions and roots braced ("frac12" -> "frac{1}{2}")."""
    answer = answer.split("=")[-1]
    for before, after in SUBSTITUTIONS:
        answer = answer.replace(before, after)
    for expr in REMOVED_EXPRESSIONS:
        answer = answer.replace(expr, "")
    answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", answer)
    answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", answer)
    answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", answer)
    answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", answer)
    answer = answer.replace("$", "")
    if answer.replace(",", "").isdigit():
        answer = answer.replace(",", "")
    return answer


def math_candidates(text: str) -> list[str]:
    """The answers a MATH completion may state, most specific first: Minerva's sentence, the last \\boxed{},
    verifiers.final_answer's pick (distinct, non-empty)."""
    found = []
    m = MINERVA_FINAL.search(text)
    if m:
        found.append(m.group(1).strip().strip("$").strip())
    for extra in (verifiers.boxed(text), verifiers.final_answer(text)):
        if extra is not None and extra.strip():
            found.append(extra.strip())
    return list(dict.fromkeys(a for a in found if a))


def math_gold(item: dict) -> str:
    """The gold answer for symbolic comparison: the solution's last \\boxed{} when there is one (MATH's own
    answer), else the item's "answer"."""
    solution = item.get("solution")
    found = verifiers.boxed(solution) if isinstance(solution, str) else None
    return found if found and found.strip() else str(item["answer"])


def math_scores(text: str, item: dict) -> tuple[str | None, dict[str, float], str | None]:
    """(extracted answer, {exact_match, exact_match_flex}, error or None) of a MATH completion."""
    candidates = math_candidates(text)
    if not candidates:
        return None, {"exact_match": 0.0, "exact_match_flex": 0.0}, None
    gold_norm = normalize_final_answer(str(item["answer"]))
    exact = float(normalize_final_answer(candidates[0]) == gold_norm)
    flex, error = exact, None
    if not flex:
        flex = float(any(normalize_final_answer(c) == gold_norm for c in candidates))
    if not flex:
        gold = math_gold(item)
        for c in candidates:
            try:
                if verifiers.math_equal(c, gold):
                    flex = 1.0
                    break
            except Exception as e:  # noqa: BLE001 - an unparsable answer or gold scores 0, named in the item
                error = f"{type(e).__name__}: {e}"[:300]
    return candidates[0], {"exact_match": exact, "exact_match_flex": flex}, error
