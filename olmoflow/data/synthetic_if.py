"""Instruction-following prompts with one verifiable constraint, generated from a seed: "Describe the sea. Use
between 5 and 9 words." Scored by RLVR's IF reward (olmoflow/post/ifeval.py): the row's answer is the JSON
{"instruction_id_list", "kwargs"} its checkers read, and every id used here is one they check.

The task sentences and the constraint wordings are olmoflow's own, short and plain; none is an IFBench prompt
(IFBench is an eval set: tests/data/test_postsets_families.py checks the rows against it with curate's
decontamination index). `witness(kind, kwargs)` writes a response that follows the constraint, so the tests
prove each row satisfiable under the checker that scores it.

A hash of the prompt assigns it to one partition (rl 30%, train 70%), as for the code tasks.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from olmoflow.data.synthetic_code import partition

TOPICS = ("the sea", "autumn", "a city at night", "trains", "gardening", "a rainy day", "the moon", "coffee",
          "a library", "mountains", "winter mornings", "a busy market", "bicycles", "the desert", "rivers",
          "old clocks", "a small village", "thunderstorms", "bread baking", "the night sky", "a quiet park",
          "snow", "lighthouses", "bees", "a kitchen", "maps", "the forest", "kites", "a harbor", "tea")
TASKS = ("Describe {t}.", "Write about {t}.", "Tell me about {t}.", "Write a note on {t}.")
KEYWORDS = ("light", "water", "green", "stone", "wind", "warm", "blue", "quiet", "small", "bright")
SEPARATORS = (";", "|", " / ", " - ")
CONJ = ("and", "but", "or", "so", "yet", "for", "nor")


@dataclass(frozen=True)
class Constraint:
    iid: str
    """The checker's instruction id (olmoflow/post/ifeval_checks.py)."""
    text: str
    """The instruction, with {kwarg} fields."""
    kwargs: Callable[[random.Random], dict[str, Any]]


CONSTRAINTS: tuple[Constraint, ...] = (
    Constraint("count:word_count_range", "Use between {min_words} and {max_words} words.",
               lambda r: (lambda lo: {"min_words": lo, "max_words": lo + r.randint(2, 8)})(r.randint(3, 20))),
    Constraint("format:title_case", "Start every word with a capital letter.", lambda r: {}),
    Constraint("format:no_whitespace", "Use no spaces or line breaks.", lambda r: {}),
    Constraint("count:numbers", "Include exactly {N} numbers.", lambda r: {"N": r.randint(1, 5)}),
    Constraint("sentence:keyword", "Sentence {N} must contain '{word}'.",
               lambda r: {"word": r.choice(KEYWORDS), "N": r.randint(1, 3)}),
    Constraint("words:keywords_specific_position", "Word {m} of sentence {n} must be '{keyword}'.",
               lambda r: {"keyword": r.choice(KEYWORDS), "n": r.randint(1, 2), "m": r.randint(1, 5)}),
    Constraint("format:list", "List items separated by '{sep}'.",
               lambda r: {"sep": r.choice(SEPARATORS)}),
    Constraint("words:repeats", "No word may appear more than {small_n} times.",
               lambda r: {"small_n": r.randint(1, 3)}),
    Constraint("count:unique_word_count", "Use at least {N} different words.", lambda r: {"N": r.randint(5, 30)}),
    Constraint("count:conjunctions", "Use at least {small_n} different words like and, but, or.",
               lambda r: {"small_n": r.randint(2, 4)}),
    Constraint("count:pronouns", "Use at least {N} pronouns.", lambda r: {"N": r.randint(2, 8)}),
)
BY_ID = {c.iid: c for c in CONSTRAINTS}


@dataclass(frozen=True)
class IFRow:
    prompt: str
    iid: str
    kwargs: dict[str, Any]

    def row(self) -> dict:
        """The row of post/rl.jsonl (the answer is the spec ifeval_reward reads)."""
        return {"prompt": self.prompt, "verifier": "ifeval",
                "answer": json.dumps({"instruction_id_list": [self.iid], "kwargs": [self.kwargs]}, sort_keys=True)}


def if_rows(part: str, n: int, seed: int, salt: str) -> list[IFRow]:
    """n distinct prompts of `part`, each a task sentence and one constraint drawn from the seed."""
    rng = random.Random(f"{seed}/if/{salt}")
    out: list[IFRow] = []
    seen: set[str] = set()
    misses = 0
    while len(out) < n:
        c = rng.choice(CONSTRAINTS)
        kw = c.kwargs(rng)
        prompt = f"{rng.choice(TASKS).format(t=rng.choice(TOPICS))} {c.text.format(**kw)}"
        if prompt in seen or partition(prompt) != part:
            misses += 1
            if misses > 20_000:
                raise ValueError(f"curate: synthetic instruction-following {salt}: only {len(out)} distinct {part} "
                                 f"prompts of the {n} asked for")
            continue
        misses = 0
        seen.add(prompt)
        out.append(IFRow(prompt, c.iid, kw))
    return out


def witness(iid: str, kw: dict[str, Any]) -> str:
    """A response that follows the constraint (for the tests: every row can earn reward 1)."""
    filler = ("Green hills rise above a river while a warm light falls on every stone and the wind moves through "
              "tall grass near an old house").split()
    if iid == "count:word_count_range":
        return " ".join(filler[:kw["min_words"]])
    if iid == "format:title_case":
        return "The Sea Is Calm Today."
    if iid == "format:no_whitespace":
        return "Calm,blue,quiet."
    if iid == "count:numbers":
        return "I saw " + ", ".join(str(10 + i) for i in range(kw["N"])) + " birds."
    if iid == "sentence:keyword":
        return " ".join(["It is here."] * (kw["N"] - 1) + [f"The {kw['word']} stays."])
    if iid == "words:keywords_specific_position":
        first = ["It is here."] * (kw["n"] - 1)
        return " ".join(first + [" ".join(["one"] * (kw["m"] - 1) + [kw["keyword"], "stays."])])
    if iid == "format:list":
        return kw["sep"].join(["rain", "wind", "snow"])
    if iid == "words:repeats":
        return "Calm blue water under a quiet sky."
    if iid == "count:unique_word_count":
        return " ".join(f"w{i}" for i in range(kw["N"]))
    if iid == "count:conjunctions":
        return " ".join(f"rain {c}" for c in CONJ[:kw["small_n"]]) + " snow."
    if iid == "count:pronouns":
        return " ".join(["we"] * kw["N"]) + "."
    raise ValueError(f"synthetic_if: no witness for instruction {iid!r}")
