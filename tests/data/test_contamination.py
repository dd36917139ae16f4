"""eval/contamination.json's overlap: items planted in training text are flagged, untouched ones are not; the
n-gram rule against a plain set-of-tuples oracle; speed on a few MB of text."""

import random
import sysconfig
import time
from pathlib import Path

from olmoflow.data.contamination import OverlapScan, overlap_words

STDLIB = Path(sysconfig.get_paths()["stdlib"])
BACKGROUND = (STDLIB / "textwrap.py").read_text()
LONG = {"id": "q1", "question": "Planets in the solar system are in constant motion around the Sun. Which factor has "
        "the greatest effect on the shape and the size of the orbits of the planets?",
        "choices": ["gravity", "light"], "answer": 0}
OTHER = {"id": "q2", "question": "A student mixes baking soda and vinegar in a cup and sees bubbles form quickly. "
         "What is the best explanation for what the student observes?", "choices": ["gas", "heat"], "answer": 0}
SHORT = {"id": "s1", "question": "Which planet of the solar system is the largest one?", "answer": "Jupiter"}
CODE = {"id": "HumanEval/0", "prompt": "def has_close_elements(numbers, threshold):\n    \"\"\" Check if in given list "
        "of numbers, are any two numbers closer to each other than given threshold.\n    \"\"\"\n",
        "test": "", "entry_point": "has_close_elements", "solution": "    return False\n"}
TASKS = {"arc_easy": [LONG, OTHER], "gen": [SHORT], "humaneval": [CODE]}


def plant(snippet: str) -> str:
    cut = BACKGROUND.index("\n", len(BACKGROUND) // 2)
    return BACKGROUND[:cut] + "\n" + snippet + "\n" + BACKGROUND[cut:]


def scanned(texts: list[str], ngram: int = 13) -> dict:
    scan = OverlapScan(TASKS, ngram)
    scan.scan(texts)
    return scan.result()


def test_a_planted_item_is_flagged_and_an_untouched_one_is_not():
    q = LONG["question"].split()
    # 13 words of the question in a row, inside other text, reformatted
    res = scanned([plant("Quiz: " + " ".join(q[5:18]).upper() + " ...")])
    assert res["arc_easy"] == {"items": 2, "contaminated": 1, "share": 0.5, "ids": ["q1"], "ngram": 13,
                               "unmeasured": 0}
    assert res["gen"]["contaminated"] == 0 and res["humaneval"]["contaminated"] == 0
    assert scanned([plant(" ".join(q[5:17]))])["arc_easy"]["contaminated"] == 0  # 12 words are not enough
    clean = scanned([BACKGROUND, "The sun is a star; planets move around it."])
    assert all(r["contaminated"] == 0 and r["ids"] == [] for r in clean.values())


def test_short_items_need_their_whole_sequence_and_code_prompts_count():
    assert scanned(["Trivia night. WHICH PLANET OF THE SOLAR SYSTEM IS THE LARGEST ONE"])["gen"]["ids"] == ["s1"]
    assert scanned(["which planet of the solar system is the largest"])["gen"]["ids"] == []  # 9 of its 10 words
    res = scanned([plant("# copied\n" + CODE["prompt"])])
    assert res["humaneval"]["ids"] == ["HumanEval/0"] and res["arc_easy"]["ids"] == []


def test_numbers_and_operators_are_content_and_short_items_without_numbers_are_not_measured():
    tasks = {"arithmetic": [{"id": "a", "question": "What is 48 + 37?", "answer": "85"},
                            {"id": "b", "question": "There are 45 rows of coins with 7 coins in every row. How many "
                             "coins are there?", "answer": "315"}],
             "coqa": [{"id": "c", "question": "State?", "answer": "Ohio"},
                      {"id": "d", "question": "What is it called?", "answer": "a lathe"}]}

    def hits(text: str) -> dict:
        scan = OverlapScan(tasks)
        scan.scan([text])
        return {t: r["ids"] for t, r in scan.result().items()}

    assert hits("Q: what is 48 - 37? A: 11") == {"arithmetic": [], "coqa": []}  # another operator
    assert hits("Q: What is 48 + 37? A: 85") == {"arithmetic": ["a"], "coqa": []}
    # the template with other operands shares 13-grams ("rows of coins with 7 coins in every row how many coins are
    # there") but is another problem
    assert hits("There are 12 rows of coins with 7 coins in every row. How many coins are there?")["arithmetic"] == []
    assert hits("there are 45 rows of coins with 7 coins in every row, how many coins?")["arithmetic"] == ["b"]
    scan = OverlapScan(tasks)
    scan.scan(["The state of the union. What is it called? Nobody knows."])
    assert scan.result()["coqa"] == {"items": 2, "contaminated": 0, "share": 0.0, "ids": [], "ngram": 13,
                                     "unmeasured": 2}


def test_no_window_crosses_from_one_text_into_the_next():
    q = overlap_words(LONG["question"])
    assert scanned([" ".join(q[:7]), " ".join(q[7:14])])["arc_easy"]["contaminated"] == 0
    assert scanned([" ".join(q[:7]) + " " + " ".join(q[7:14])])["arc_easy"]["contaminated"] == 1


def oracle(item: str, text: str, n: int) -> bool:
    q, t = overlap_words(item), overlap_words(text)
    k = min(n, len(q))
    return bool({tuple(q[i:i + k]) for i in range(len(q) - k + 1)}
                & {tuple(t[i:i + k]) for i in range(len(t) - k + 1)})


def test_agrees_with_the_set_oracle_on_random_excerpts():
    rng = random.Random(0)
    q = LONG["question"].split()
    for _ in range(60):
        lo = rng.randrange(len(q))
        hi = min(len(q), lo + rng.randrange(8, 16))
        text = plant(" ".join(q[lo:hi]))
        n = rng.choice([8, 10, 13])
        assert (scanned([text], n)["arc_easy"]["ids"] == ["q1"]) == oracle(LONG["question"], text, n)


def test_scan_of_a_few_megabytes_is_fast():
    texts = [p.read_text(errors="replace") for p in sorted(STDLIB.glob("*.py"))[:150]]
    start = time.time()
    scan = OverlapScan(TASKS)
    scan.scan(texts)
    took = time.time() - start
    assert scan.texts == len(texts) and sum(map(len, texts)) > 2_000_000
    assert took < 10, f"{took:.1f}s for {sum(map(len, texts)) / 1e6:.1f} MB"


def test_an_ngram_two_items_share_flags_both():
    shared = "the quick brown fox jumps over the lazy dog near the river bank today"
    tasks = {"a": [{"id": "1", "question": "Why? " + shared}], "b": [{"id": "2", "question": shared + " and then?"}]}
    scan = OverlapScan(tasks)
    scan.scan(["Story: " + shared.upper()])
    assert {t: r["ids"] for t, r in scan.result().items()} == {"a": ["1"], "b": ["2"]}
