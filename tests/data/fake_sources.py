"""A miniature sources folder in the layout `make data` writes, with planted cases: an exact duplicate, a
document that quotes an ARC-Easy question, a too-short file, invalid UTF-8, MATH problems with a MATH-500-style
holdout, and ShareGPT / HHH / ARC files for the post and eval data."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

ARC_QUESTIONS = [
    "Which of these is the best way to find out how long it takes a toy car to roll down a ramp?",
    "A student mixes baking soda and vinegar in a cup and sees bubbles form quickly. What is the best explanation?",
    "Which characteristic of a plant is inherited from its parents rather than learned from the environment?",
]
_WORDS = {
    "adj": "quiet narrow golden heavy patient distant crooked bright hollow gentle sudden ancient careful silver "
           "restless humble".split(),
    "verb": "crossed watched mended counted carried painted followed answered gathered measured".split(),
    "prep": "beside beyond toward behind under across".split(),
    "adv": "slowly gladly early twice quietly often".split(),
}


def _story(seed: int, sentences: int) -> str:
    """English-like sentences that hardly repeat a word 5-gram (every 5 words hold a made-up name), so they pass
    the Gopher rules as real prose does."""
    rng = random.Random(seed)

    def pick(kind: str) -> str:
        return rng.choice(_WORDS[kind])

    def name() -> str:
        return "".join(rng.choice("bdfklmnprstv") + rng.choice("aeiou") for _ in range(3)).title()

    return " ".join(f"The {pick('adj')} {name()} {pick('verb')} the {name()} {pick('prep')} the {pick('adj')} "
                    f"{name()} {pick('adv')}." for _ in range(sentences))


CONTAMINATED = "Here is a quiz from our class. " + ARC_QUESTIONS[1] + " " + _story(77, 8)


def _prose(i: int) -> str:
    return f"Chapter {i}. " + _story(i, 24)


def _code(i: int) -> str:
    body = "\n".join(f"    total_{k} = value * {k} + offset_{i}" for k in range(30))
    return f'"""Module {i}: helpers that compute running totals."""\n\n\ndef compute_{i}(value, offset_{i}):\n' \
           f"{body}\n    return total_0\n"


def write_arc(path: Path) -> None:
    table = pa.table({
        "id": [f"arc-{i}" for i in range(len(ARC_QUESTIONS))],
        "question": ARC_QUESTIONS,
        "choices": [{"text": ["a stopwatch", "a ruler", "a scale", "a magnet"], "label": ["A", "B", "C", "D"]}] * 3,
        "answerKey": ["A", "C", "B"],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    with ipc.new_stream(str(path), table.schema) as w:
        w.write_table(table)


def make_sources(root: Path) -> dict[str, Any]:
    """Write the folder; returns facts the tests check against."""
    code = root / "code"
    code.mkdir(parents=True)
    for i in range(12):
        (code / f"mod{i:02d}.py").write_text(_code(i))
    (code / "dup.py").write_text(_code(3))  # exact duplicate of mod03.py
    (code / "tiny.py").write_text("x = 1\n")  # too short
    prose = root / "prose"
    prose.mkdir()
    for i in range(10):
        (prose / f"p{i:02d}.rst").write_text(f".. _label-{i}:\n\n{_prose(i)}")
    (prose / "quiz.rst").write_text(CONTAMINATED)
    (prose / "latin1.rst").write_bytes(_prose(99).encode() + b" caf\xe9 \xff end.")  # 2 undecodable bytes
    lit = root / "lit"
    lit.mkdir()
    (lit / "long.txt").write_text("ACT I. " + _story(1000, 900))
    math = root / "math"
    math.mkdir()
    probs = [{"doc": {"problem": f"Compute ${k} \\cdot {k + 1}$ and explain each step in words.",
                      "solution": f"We multiply the numbers {k} and {k + 1} to get the product "
                                  f"$\\boxed{{{k * (k + 1)}}}$, which is the final answer to the problem."}}
             for k in range(40)]
    with gzip.open(math / "all.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(p) + "\n" for p in probs)
    with gzip.open(math / "held.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(p) + "\n" for p in probs[:5])
    write_arc(root / "arc" / "ARC-Easy.arrow")
    convs = [{"id": "a", "conversations": [{"from": "human", "value": "How do rivers form?"},
                                           {"from": "gpt", "value": "Rain collects into streams that join."}]},
             {"id": "b", "conversations": [{"from": "gpt", "value": "...continued answer"},
                                           {"from": "human", "value": "Thanks! What about lakes?"},
                                           {"from": "gpt", "value": "Lakes fill basins where water pools."}]},
             {"id": "c", "conversations": [{"from": "human", "value": ARC_QUESTIONS[0]},
                                           {"from": "gpt", "value": "Use a stopwatch."}]},
             {"id": "d", "conversations": [{"from": "system", "value": "be nice"},
                                           {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]
    (root / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    hhh = root / "hhh" / "helpful"
    hhh.mkdir(parents=True)
    (hhh / "task.json").write_text(json.dumps({"examples": [
        {"input": "Can you help me bake bread?", "target_scores": {"Sure: flour, water, yeast, salt.": 1, "No.": 0}},
        {"input": "My plant is dying.\n\nAssistant:  Is it getting light?\n\nHuman:  Yes, plenty. What else?",
         "target_scores": {"Check the watering.": 0, "Too much water rots roots; let the soil dry.": 1}}]}))
    return {"code_docs": 12, "prose_docs": 10, "duplicate": "dup.py", "arc": len(ARC_QUESTIONS),
            "math_docs": 40, "math_held": 5}


def curate_section(root: Path, **over: Any) -> dict[str, Any]:
    """A curate config section over the fake folder; keyword arguments override top-level keys."""
    section = {
        "sources_dir": str(root),
        "sources": [
            {"name": "code", "path": "code/*.py", "domain": "code"},
            {"name": "prose", "path": "prose/*.rst", "format": "rst", "domain": "prose"},
            {"name": "lit", "path": "lit/*.txt", "domain": "literature"},
            {"name": "math", "path": "math/all.jsonl.gz", "format": "minerva", "domain": "math", "tier": 0,
             "holdout": "math/held.jsonl.gz", "filters": "none"},
        ],
        "tokenizer": {"vocab_size": 400, "train_chars": 200_000},
        "filters": {"min_chars": 100},
        "val_fraction": 0.1,
        "shard_tokens": 4096,
        "long_min_tokens": 2000,
        "mixes": {"pretrain": {"domains": {"code": 0.4, "prose": 0.4, "literature": 0.2}, "max_repeat": 2},
                  "midtrain": {"domains": {"math": 0.4, "qa": 0.2, "code": 0.4}, "max_tier": 1}},
        "synthetic": {"midtrain_docs": 20, "problems_per_doc": 4},
        "post": {"sharegpt": "chat.jsonl", "hhh": "hhh/*/task.json", "sft_conversations": 10, "sft_synthetic": 20,
                 "dpo_synthetic": 10, "rl_prompts": 30, "rl_code": 6, "rl_ifeval": 6},
        "eval": {"arc_easy": "arc/*.arrow", "arithmetic_items": 40},
    }
    section.update(over)
    return section
