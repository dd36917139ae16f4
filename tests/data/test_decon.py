"""Decontamination: eval items planted in real text (a stdlib module's source) are found, verbatim, reformatted
and lightly edited; stock phrases, answerless short questions and same-words-other-answer arithmetic are not.
The oracle for the n-gram rule is a plain set-of-tuples overlap computed here."""

import pickle
import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from olmoflow.data.config import DecontamConfig
from olmoflow.data.decon import DeconIndex, DeconTally, EvalItem, eval_items, words

BACKGROUND = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
# ARC-Easy style: 12 and 19 words (short: need their answer near), 27 words (long: enough alone).
SHORT = EvalItem("arc_easy", "arc-1", "Which technology was developed most recently in the history of home "
                 "appliances?", ("cellular telephone",))
STOCK = EvalItem("arc_easy", "arc-2", "Which of the following is the most likely cause of the bubbles that form "
                 "when vinegar meets baking soda?", ("carbon dioxide gas",))
LONG = EvalItem("arc_easy", "arc-3", "Planets in the solar system are in constant motion around the Sun. Which "
                "factor has the greatest effect on the shape and the size of the orbits of the planets?",
                ("gravitational pull of the Sun",))
ARITH = EvalItem("arithmetic", "arith-0", "What is 48 + 37?", ("85",))
ITEMS = {"arc_easy": [SHORT, STOCK, LONG], "arithmetic": [ARITH]}


def plant(snippet: str, at: float = 0.5) -> str:
    cut = int(len(BACKGROUND) * at)
    cut = BACKGROUND.index("\n", cut)
    return BACKGROUND[:cut] + "\n" + snippet + "\n" + BACKGROUND[cut:]


def quiz(item: EvalItem, choices: list[str]) -> str:
    return f"Q: {item.question}\n" + "\n".join(f"({'ABCD'[i]}) {c}" for i, c in enumerate(choices))


@pytest.fixture(scope="module")
def index() -> DeconIndex:
    return DeconIndex(ITEMS, DecontamConfig())


def test_background_alone_is_clean(index):
    assert index.match(BACKGROUND) == [] and index.match("") == [] and index.match("what") == []


def test_quiz_copies_are_caught_reformatted(index):
    doc = plant(quiz(STOCK, ["oxygen", "carbon dioxide gas", "steam", "nitrogen"]))
    assert index.match(doc) == [("arc_easy", "arc-2")]
    shouted = plant(quiz(SHORT, ["television", "refrigerator", "cellular telephone"]).upper().replace(" ", " \t "))
    assert index.match(shouted) == [("arc_easy", "arc-1")]
    both = plant(quiz(SHORT, ["cellular telephone"]), 0.2) + plant(LONG.question, 0.8)
    assert index.match(both) == [("arc_easy", "arc-1"), ("arc_easy", "arc-3")]


def test_long_question_matches_alone_short_one_needs_its_answer(index):
    assert index.match(plant(LONG.question)) == [("arc_easy", "arc-3")]
    assert index.match(plant(STOCK.question)) == []  # 19 words: half stock phrase, no answer near
    far = STOCK.question + " " + " ".join(words(BACKGROUND)[:60]) + " carbon dioxide gas"
    assert index.match(far) == []  # the answer 60 words away is outside answer_window=50
    near = STOCK.question + " " + " ".join(words(BACKGROUND)[:40]) + " carbon dioxide gas"
    assert index.match(near) == [("arc_easy", "arc-2")]
    before = "Answer: carbon dioxide gas. " + STOCK.question
    assert index.match(before) == [("arc_easy", "arc-2")]


def test_stock_phrase_is_not_contamination(index):
    text = plant("Exam tip: which of the following is the most likely answer? Read every choice carefully. "
                 "Carbon dioxide gas is often the answer.")
    assert index.match(text) == []


def oracle_overlap(question: str, text: str, n: int = 8) -> float:
    q, t = words(question), words(text)
    grams = {tuple(q[i:i + n]) for i in range(len(q) - n + 1)}
    return len(grams & {tuple(t[i:i + n]) for i in range(len(t) - n + 1)}) / len(grams)


def test_edited_words_agree_with_the_set_oracle(index):
    q = LONG.question.split()  # 31 words, 24 8-grams: one edit leaves at least 16, two may leave fewer than 12
    rng = random.Random(0)
    outcomes = set()
    for _ in range(150):
        edited = q.copy()
        for pos in rng.sample(range(len(q)), 2):
            edited[pos] = rng.choice(["zebra", "quasar", "umbrella"])
        text = plant(" ".join(edited))
        expected = oracle_overlap(LONG.question, text) >= 0.5
        assert (index.match(text) == [("arc_easy", "arc-3")]) == expected, (edited, oracle_overlap(LONG.question, text))
        outcomes.add(expected)
    assert outcomes == {True, False}


def test_short_arithmetic_item_needs_its_answer(index):
    assert index.match("Question: What is 48 + 37?\nAnswer: 48 + 37 = 85.") == [("arithmetic", "arith-0")]
    assert index.match("Quiz: what is 48 + 37? Think it over.") == []
    assert index.match("Question: What is 48 - 37?\nAnswer: 48 - 37 = 11.") == []  # same words, another item
    assert index.match("What is 48 and what is 37? 85") == []  # not the whole sequence in a row
    bare = DeconIndex({"t": [EvalItem("t", "q", "Name the largest planet!")]})
    assert bare.match("Quiz. NAME THE LARGEST PLANET") == [("t", "q")]  # no answer: the sequence is enough
    assert bare.match("name the largest moon") == []


def test_a_templated_problem_with_other_numbers_is_another_problem():
    # pairs curate's own synthetic sets produced: train and eval differ in their operands only
    idx = DeconIndex({"arithmetic": [
        EvalItem("arithmetic", "a125", "108 stamps are packed into 3 equal boxes. How many stamps go in each box?",
                 ("36",)),
        EvalItem("arithmetic", "a445", "There are 14 rows of pencils with 2 pencils in every row. How many pencils "
                 "are there?", ("28",))]})
    assert idx.match("36 stamps are packed into 3 equal boxes. How many stamps go in each box?\n"
                     "36 / 3 = 12. The answer is 12.") == []  # 8 of 9 8-grams, and 36 right there
    assert idx.match("There are 28 rows of pencils with 2 pencils in every row. How many pencils are there?\n56") == []
    assert idx.match("Q: 108 stamps are packed into 3 equal boxes. How many stamps go in each box?\nA: 36") == \
        [("arithmetic", "a125")]
    assert idx.match("THERE ARE 14 ROWS OF PENCILS WITH 2 PENCILS IN EVERY ROW. How many pencils are in them? 28"
                     ) == [("arithmetic", "a445")]  # edited, but its numbers and its answer are there


def test_long_answers_are_found_by_their_ngrams():
    worked = "subtract five from both sides to get two x equals ten then divide both sides by two"  # 10 8-grams
    item = EvalItem("math", "m1", "Solve for x: 2x + 5 = 15.", (worked,))  # 6 words: matched whole
    idx = DeconIndex({"math": [item]})
    q = "Solve for x: 2x + 5 = 15. Solution: "
    assert idx.match(q + worked.replace("by two", "by 2")) == [("math", "m1")]  # 9 of 10 8-grams remain
    assert idx.match(q + worked.replace("equals", "is")) == []  # 2 of 10 remain
    assert idx.match(q + "subtract five from both sides first.") == []


def test_ngram_13_leaves_a_12_word_question_to_the_exact_sequence():
    idx = DeconIndex({"arc_easy": [SHORT]}, DecontamConfig(ngram=13))
    answer = " (A) cellular telephone"
    assert idx.match(SHORT.question + answer) == [("arc_easy", "arc-1")]
    one_edit = SHORT.question.replace("home", "kitchen")
    assert idx.match(one_edit + answer) == []
    assert DeconIndex({"arc_easy": [SHORT]}).match(one_edit + answer) == [("arc_easy", "arc-1")]  # 8-grams: 3/5


def test_tally_counts_documents_per_task_and_source(index):
    docs = [("web", plant(quiz(STOCK, ["carbon dioxide gas"]))),
            ("web", plant(quiz(STOCK, ["carbon dioxide gas"])) + "\nWhat is 48 + 37? 85"),
            ("web", BACKGROUND),
            ("math", "What is 48 + 37? The answer is 85."),
            ("math", LONG.question + "\n" + LONG.question)]
    whole, halves = index.tally(), [index.tally(), index.tally()]
    for i, (src, text) in enumerate(docs):
        hits = index.match(text)
        whole.add(src, hits)
        halves[i % 2].add(src, hits)
    stats = whole.as_stats()
    assert stats == {
        "enabled": True, "ngram": 8, "threshold": 0.5,
        "items": {"arc_easy": 3, "arithmetic": 1},
        "hits": {"arc_easy": 3, "arithmetic": 2},
        "items_hit": {"arc_easy": 2, "arithmetic": 1},
        "by_source": {"math": {"arc_easy": 1, "arithmetic": 1}, "web": {"arc_easy": 2, "arithmetic": 1}},
        "examples": {"arc_easy": ["arc-2", "arc-3"], "arithmetic": ["arith-0"]}}
    assert halves[0].merge(halves[1]).as_stats() == stats


def test_pickled_index_matches_the_same_in_another_process(index, tmp_path):
    texts = [plant(quiz(STOCK, ["carbon dioxide gas"])), plant(LONG.question), BACKGROUND, "What is 48 + 37? 85"]
    (tmp_path / "index.pkl").write_bytes(pickle.dumps(index))
    assert [pickle.loads(pickle.dumps(index)).match(t) for t in texts] == [index.match(t) for t in texts]
    code = ("import pickle, sys; idx = pickle.load(open(sys.argv[1], 'rb')); "
            "print([idx.match(t) for t in pickle.load(open(sys.argv[2], 'rb'))])")
    (tmp_path / "texts.pkl").write_bytes(pickle.dumps(texts))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "index.pkl"), str(tmp_path / "texts.pkl")],
                         capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == str([index.match(t) for t in texts])
    assert out.stdout.count("arc-") == 2 and "arith-0" in out.stdout


def test_eval_rows_disabled_and_empty():
    rows = [{"id": "a", "question": "Which is a gas at room temperature on Earth today?", "choices": ["rock", "air"],
             "answer": 1}]
    assert eval_items("arc_easy", rows) == [EvalItem("arc_easy", "a", rows[0]["question"], ("air",))]
    assert eval_items("arithmetic", [{"id": 3, "question": "What is 2 + 2?", "answer": "4"}])[0].answers == ("4",)
    doc = rows[0]["question"] + " air"
    assert DeconIndex({"arc_easy": eval_items("arc_easy", rows)}).contaminated(doc)
    assert not DeconIndex({"arc_easy": eval_items("arc_easy", rows)}, DecontamConfig(enabled=False)).contaminated(doc)
    assert DeconIndex({}).match(doc) == [] and DeconIndex({"x": []}).tally().as_stats()["items"] == {"x": 0}
    with pytest.raises(ValueError, match="item 'a' of task 'arc_easy' is listed under task 'other'"):
        DeconIndex({"other": eval_items("arc_easy", rows)})
    with pytest.raises(ValueError, match="ngram"):
        DecontamConfig(ngram=5)
    assert isinstance(DeconTally({"t": 1}).merge(DeconTally({"t": 1})), DeconTally)


def test_every_eval_family_becomes_an_item_and_a_planted_prompt_is_found():
    code = {"id": "HumanEval/0", "prompt": "def has_close_elements(numbers, threshold):\n    \"\"\" Check if in given "
            "list of numbers, are any two numbers closer to each other than given threshold.\n    \"\"\"\n",
            "test": "check(has_close_elements)", "entry_point": "has_close_elements",
            "solution": "    return any(abs(a - b) < threshold for a in numbers for b in numbers)\n"}
    squad = {"id": "s", "question": "How old is the regatta?", "context": "...", "answer": "23 years",
             "aliases": ["23 years", "23"]}
    ifb = {"id": "i", "prompt": "Write a limerick about a cat who learns to fly, and use the word nebula exactly "
           "three times in your answer.", "instruction_id_list": ["count:keywords_multiple"], "kwargs": [{}]}
    items = {t: eval_items(t, [r]) for t, r in (("humaneval", code), ("squad", squad), ("ifbench", ifb))}
    assert items["humaneval"][0].question == code["prompt"] and items["humaneval"][0].answers == (code["solution"],)
    assert items["squad"][0].answers == ("23 years", "23") and items["ifbench"][0].answers == ()
    idx = DeconIndex(items)
    assert idx.match(plant(code["prompt"] + code["solution"])) == [("humaneval", "HumanEval/0")]
    assert idx.match(plant("User: " + ifb["prompt"])) == [("ifbench", "i")]
    assert idx.match(plant("How old is the regatta? Nobody knows.")) == []  # short question, no answer near
    assert idx.match(plant("How old is the regatta? About 23 years.")) == [("squad", "s")]


def test_questions_under_four_words_are_not_indexed():
    # CoQA follow-ups: with their answer near, "Is she? ... No" is in every play
    coqa = [EvalItem("coqa", "c1", "Is she?", ("No",)), EvalItem("coqa", "c2", "How many?", ("Four",))]
    idx = DeconIndex({"coqa": coqa, "arithmetic": [ARITH]})
    assert len(idx) == 1
    assert idx.match("HAMLET. Is she? OPHELIA. No, my lord. How many? Four.") == []
    assert idx.match("What is 48 + 37? 85") == [("arithmetic", "arith-0")]
