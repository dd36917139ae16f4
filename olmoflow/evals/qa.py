"""Reading-comprehension answers (SQuAD, CoQA, DROP): exact match and token F1, the best over the gold aliases.

SQuAD / CoQA  the official SQuAD v1.1 normalisation (lower case, punctuation and the articles a/an/the removed,
              whitespace collapsed); F1 over the bags of tokens.
DROP          the official DROP normalisation: split on spaces and hyphens, each token lower-cased, stripped of
              punctuation unless it is a number, numbers rewritten as floats ("1,000" -> "1000.0"), articles
              dropped; F1 per span with the rule that a gold span holding numbers matches only a prediction
              sharing one of them; a gold answer of several spans is aligned to the predicted spans one to one
              (maximum-weight matching) and its F1 averaged over the larger count. EM: the sets of normalised spans
              are equal.
A gold alias is a string, or for DROP a list of strings (the spans of one answer).
"""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_squad(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(pred: str, golds: list[str]) -> dict[str, float]:
    """{exact_match, f1}: the best over the gold aliases."""
    p = normalize_squad(pred)
    return {"exact_match": max(float(p == normalize_squad(g)) for g in golds),
            "f1": max(_f1(p.split(), normalize_squad(g).split()) for g in golds)}


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _drop_token(token: str) -> str:
    if not _is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCT)
    token = token.lower()
    if _is_number(token.replace(",", "")):
        token = str(float(token.replace(",", "")))
    return token


def normalize_drop(span: str) -> str:
    tokens = [_drop_token(t) for t in re.split(r" |-", span)]
    tokens = [_ARTICLES.sub(" ", t).strip() for t in tokens]
    return " ".join(t for t in tokens if t)


def _numbers(tokens: set[str]) -> set[str]:
    return {t for t in tokens if _is_number(t)}


def _drop_span_f1(pred: set[str], gold: set[str]) -> float:
    if _numbers(gold) and not _numbers(gold) & _numbers(pred):
        return 0.0  # a number in the gold span must be matched, not just its words
    if not pred and not gold:
        return 1.0
    common = len(pred & gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _drop_one(pred: list[str], gold: list[str]) -> tuple[float, float]:
    pred_norm, gold_norm = [normalize_drop(s) for s in pred], [normalize_drop(s) for s in gold]
    em = float(set(pred_norm) == set(gold_norm) and len(pred_norm) == len(gold_norm))
    pred_bags, gold_bags = [set(s.split()) for s in pred_norm], [set(s.split()) for s in gold_norm]
    scores = np.array([[_drop_span_f1(p, g) for p in pred_bags] for g in gold_bags])
    if scores.shape == (1, 1):
        best = float(scores[0, 0])
    else:
        from scipy.optimize import linear_sum_assignment  # the one-to-one alignment of spans, as DROP's script
        rows, cols = linear_sum_assignment(-scores)
        best = float(scores[rows, cols].sum())
    f1 = best / max(len(pred_bags), len(gold_bags))
    return em, round(f1, 2)


def drop_scores(pred: str | list[str], golds: list[str | list[str]]) -> dict[str, float]:
    """{exact_match, f1}: the best over the gold answers (DROP's answer-level F1 is rounded to 2 places)."""
    spans = [pred] if isinstance(pred, str) else list(pred)
    best_em, best_f1 = 0.0, 0.0
    for gold in golds:
        em, f1 = _drop_one(spans, [gold] if isinstance(gold, str) else list(gold))
        best_em, best_f1 = max(best_em, em), max(best_f1, f1)
    return {"exact_match": best_em, "f1": best_f1}
