"""Eval task data: each task's row count and few-shot pool from the fetched sources, known items field by field
(HumanEval's and MBPP's canonical solutions pass their own tests), the capped subset, and bad source rows."""

import functools
import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from pydantic import ValidationError

from olmoflow.data.config import EvalDataConfig, EvalTask
from olmoflow.data.decon import eval_items
from olmoflow.data.evalsets import ALL_TASKS, TASKS, read_items, read_shots, subset, without_scored

SOURCES = Path(__file__).resolve().parents[2] / ".olmoflow" / "sources"

# task: (scored items, few-shot pool before dropping scored questions)
COUNTS = {
    "arc_easy": (570, 5), "arc_challenge": (299, 5), "hellaswag": (10042, 5), "piqa": (1838, 5),
    "mmlu": (14042, 285), "boolq": (3270, 5), "sciq": (1000, 5), "openbookqa": (500, 5), "winogrande": (1267, 5),
    "socialiqa": (1954, 5), "csqa": (1221, 5), "gsm8k": (1319, 8), "minerva_math_500": (500, 4),
    "humaneval": (164, 0), "mbpp": (500, 0), "squad": (1000, 0), "drop": (1000, 0), "coqa": (7983, 0),
    "ifbench": (294, 0)}


def files(pattern: str) -> list[Path]:
    return sorted(SOURCES.glob(pattern))


def load(task: str) -> list[dict]:
    paths = files(TASKS[task].path)
    if not paths:
        pytest.skip(f"{TASKS[task].path} is not under {SOURCES}: run `make data` (python -m olmoflow.data.fetch)")
    return _read(task, tuple(paths))


@functools.cache
def _read(task: str, paths: tuple[Path, ...]) -> list[dict]:
    return read_items(task, list(paths))


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


def test_every_task_is_registered_and_configurable():
    assert set(COUNTS) == set(TASKS) and set(ALL_TASKS) == set(EvalTask.__args__)
    with pytest.raises(ValidationError, match="tasks.0"):
        EvalDataConfig(tasks=["nope"])
    with pytest.raises(ValidationError, match="'mmlu' is listed twice"):
        EvalDataConfig(tasks=["mmlu", "mmlu"])


@pytest.mark.parametrize("task", sorted(COUNTS))
def test_row_counts_and_few_shot_pools(task):
    rows = load(task)
    n_items, n_shots = COUNTS[task]
    assert len(rows) == n_items
    shots = read_shots(task, files(TASKS[task].train)) if TASKS[task].train else []
    assert len(shots) == n_shots
    fields = {"mc": {"question", "choices", "answer"}, "gen": {"question", "answer"},
              "code": {"prompt", "test", "entry_point", "solution"},
              "ifeval": {"prompt", "instruction_id_list", "kwargs"}}[TASKS[task].family]
    assert all(fields <= set(r) and isinstance(r["id"], str) for r in rows + shots)
    # decontamination reads every family: each item has text to index
    assert all(it.question for it in eval_items(task, rows))


def test_pools_never_hold_a_scored_question():
    rows = load("mmlu")
    pool = without_scored(read_shots("mmlu", files(TASKS["mmlu"].train)), rows)
    assert len(pool) == 280  # 5 dev questions of MMLU also appear in its test split
    assert {(r["subject"], r["question"]) for r in pool}.isdisjoint({(r["subject"], r["question"]) for r in rows})


def test_known_multiple_choice_items():
    arc = by_id(load("arc_easy"))["MCAS_2000_4_6"]
    assert arc == {"id": "MCAS_2000_4_6", "question": "Which technology was developed most recently?",
                   "choices": ["cellular telephone", "television", "refrigerator", "airplane"], "answer": 0}
    hs = load("hellaswag")[0]
    assert hs["question"] == "Roof shingle removal: A man is sitting on a roof. He"  # ctx_b capitalised
    assert hs["choices"][3] == "starts pulling up roofing on a roof." and hs["answer"] == 3
    wino = load("winogrande")[0]
    assert wino == {"id": "winogrande-0", "choices": ["Sarah", "Maria"], "answer": 1,
                    "question": "Sarah was a much better surgeon than Maria so _ always got the easier cases."}
    boolq = load("boolq")[0]
    assert boolq["choices"] == ["yes", "no"] and boolq["answer"] == 1 and boolq["context"].startswith("All biomass")
    sciq = load("sciq")[0]
    assert sciq["choices"] == ["Linnaeus", "shaw", "Scopes", "darwin"] and sciq["answer"] == 3
    mmlu = load("mmlu")[0]
    assert mmlu["subject"] == "abstract_algebra" and mmlu["choices"] == ["0", "4", "2", "6"] and mmlu["answer"] == 1
    siqa = load("socialiqa")[0]
    assert siqa["question"] == ("Tracy didn't go home that evening and resisted Riley's attacks. "
                                "What does Tracy need to do before this?") and siqa["answer"] == 2


def test_known_few_shot_examples():
    wino = read_shots("winogrande", files(TASKS["winogrande"].train))[0]
    assert wino["question"] == "John moved the couch from the garage to the backyard to create space. The _ is small."
    assert (wino["choices"], wino["answer"]) == (["garage", "backyard"], 0)
    boolq = read_shots("boolq", files(TASKS["boolq"].train))[0]
    assert boolq["question"] == "do iran and afghanistan speak the same language"
    assert (boolq["choices"], boolq["answer"]) == (["yes", "no"], 0) and boolq["context"].startswith("Persian language")
    gsm = read_shots("gsm8k", files(TASKS["gsm8k"].train))
    assert gsm[0]["answer"] == "6" and gsm[0]["solution"].endswith("So the answer is 6.") and gsm[-1]["answer"] == "8"
    math = read_shots("minerva_math_500", files(TASKS["minerva_math_500"].train))
    assert math[0]["answer"] == "[2,5)" and "\\boxed{[2,5)}" in math[0]["solution"]


def test_known_generative_items():
    gsm = load("gsm8k")[0]
    assert gsm["answer"] == "18" and gsm["question"].startswith("Janet’s ducks")
    assert gsm["solution"].endswith("So the answer is 18.")
    math = load("minerva_math_500")[0]
    assert math["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"  # the solution's \boxed{}, not the lossy field
    squad = by_id(load("squad"))["squad-5727dd2e4b864d1900163eba"]
    assert squad["question"] == 'Harvard - Yale Regatta predates "The Game" by how many years?'
    assert squad["answer"] == "23 years" and squad["aliases"] == ["23 years", "23"]
    assert squad["context"].startswith("Older than The Game by 23 years") and squad["title"] == "Harvard_University"
    drops = load("drop")
    assert drops[0]["answer"] == "swedish" and drops[0]["context"].startswith("As of the census of 2000")
    # a multi-span answer keeps its spans (DROP's metric matches them one by one); the answer text joins the first
    multi = by_id(drops)["drop-69f93831-4081-44ea-b212-31e475092207"]
    assert multi["aliases"][0] == ["Spain", "Italy", "the Netherlands"] and len(multi["aliases"]) == 3
    assert multi["answer"] == "Spain, Italy, the Netherlands"
    assert sum(any(len(a) > 1 for a in r["aliases"]) for r in drops) == 54
    coqa = by_id(load("coqa"))["coqa-3dr23u6we5exclen4th8uq9rb42tel_turn2"]
    assert coqa["question"] == "Did she live alone?" and coqa["aliases"] == ["no", "No"]
    assert coqa["history"] == [["What color was Cotton?", "white"], ["Where did she live?", "in a barn"]]
    ifb = load("ifbench")[1]
    assert ifb["instruction_id_list"] == ["count:keywords_multiple"]
    assert ifb["kwargs"] == [{"keyword1": "meridian", "keyword2": "gossamer", "keyword3": "eclipse",
                              "keyword4": "threshold", "keyword5": "cascade"}]  # IFBench's nulls dropped


@pytest.mark.parametrize("task,ids", [("humaneval", ["HumanEval/0", "HumanEval/32", "HumanEval/163"]),
                                      ("mbpp", ["mbpp-11", "mbpp-100", "mbpp-510"])])
def test_canonical_code_passes_its_tests_and_a_wrong_one_fails(task, ids):
    rows = by_id(load(task))
    for i in ids:
        r = rows[i]
        program = (r["prompt"] if task == "humaneval" else "") + r["solution"]
        exec(compile(program + "\n" + r["test"], i, "exec"), {})  # raises on a failed assert
        name = r["entry_point"] or re.search(r"assert\W*(\w+)\(", r["test"])[1]
        broken = program + f"\n\ndef {name}(*args):\n    return None\n"  # the tested function, answering None
        with pytest.raises((AssertionError, TypeError)):  # a failed assert, or None where a number goes
            exec(compile(broken + "\n" + r["test"], i, "exec"), {})


def test_subset_is_a_stable_hash_order_kept_in_source_order():
    rows = [{"id": f"q{i}"} for i in range(200)]
    ten, twenty = subset("t", rows, 10), subset("t", rows, 20)
    assert len(ten) == 10 and {r["id"] for r in ten} < {r["id"] for r in twenty}
    assert ten == sorted(ten, key=lambda r: int(r["id"][1:]))
    assert subset("t", rows[::-1], 10) == ten[::-1]  # the same items whatever the input order
    assert subset("other", rows, 10) != ten and subset("t", rows, 0) == rows and subset("t", rows, 500) == rows


def _arrow(path: Path, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows)
    with ipc.new_stream(str(path), table.schema) as w:
        w.write_table(table)


def test_a_bad_row_is_one_line_naming_file_task_and_row(tmp_path):
    good = {"id": "a", "question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}
    _arrow(tmp_path / "arc.arrow", [good, {**good, "id": "b", "answerKey": "E"}])
    with pytest.raises(ValueError) as e:
        read_items("arc_challenge", [tmp_path / "arc.arrow"])
    assert str(e.value) == (f"curate: eval task arc_challenge: {tmp_path / 'arc.arrow'} row 1: answer 'E' is not "
                            "one of ['A', 'B']")
    req = tmp_path / "requests.jsonl.gz"
    with gzip.open(req, "wt") as f:
        f.write(json.dumps({"doc": {"id": 1, "question": "How many?", "short_answer": "3", "choices": ["3."]}}) + "\n")
        f.write(json.dumps({"doc": {"id": 2, "question": "How many more?"}}) + "\n")
    with pytest.raises(ValueError, match=r"^curate: eval task gsm8k: .*requests.jsonl.gz row 2: missing field "
                                         r"'short_answer'$"):
        read_items("gsm8k", [req])
    (tmp_path / "if.jsonl").write_text(json.dumps({"key": 1, "prompt": " ", "instruction_id_list": [],
                                                   "kwargs": []}) + "\n")
    with pytest.raises(ValueError, match=r"ifbench: .*if.jsonl row 1: 0 instruction ids"):
        read_items("ifbench", [tmp_path / "if.jsonl"])
    _arrow(tmp_path / "dup.arrow", [good, good])
    with pytest.raises(ValueError, match="eval task arc_easy: item id 'a' occurs twice"):
        read_items("arc_easy", [tmp_path / "dup.arrow"])
    with pytest.raises(ValueError, match="unknown eval task 'nope'"):
        read_items("nope", [])
