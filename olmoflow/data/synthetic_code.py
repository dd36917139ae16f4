"""Small verifiable code tasks, generated from a seed: "Write a Python function `add_7(n)` that returns n plus 7."
with assert-based unit tests, scored by RLVR's code reward in the sandbox (olmoflow/post/code_reward.py).

Every task here is written for olmoflow (a handful of one-line rules a ~10M model might learn, each with a
parameter so held-out prompts differ from trained ones); none is taken from MBPP or HumanEval, which are eval sets
(tests/data/test_postsets_families.py checks the rows against them with curate's decontamination index). Expected
values come from a Python reference (`ref`), independent of the canonical solution's source (`solution`), and the
tests check that every solution passes its rows' tests in the sandbox.

As with the arithmetic, a hash of the prompt assigns it to one partition (rl 30%, train 70%), so a prompt RLVR
trains or holds out on never reaches SFT, whatever the seed.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PARTITIONS = {"rl": (0, 30), "train": (30, 100)}
# Short on purpose: the smoke model's prompts get 48 tokens of a 1k vocabulary, chat template included.
STEMS = ("Write a Python function `{sig}` that returns {what}.",
         "Define `{sig}` returning {what}.",
         "Python: `{sig}` returns {what}.")


def _ints(rng: random.Random, n: int, lo: int = -20, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _word(rng: random.Random, lo: int = 2, hi: int = 7) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(lo, hi)))


@dataclass(frozen=True)
class Task:
    names: tuple[str, ...]
    """Function names, each with "{k}" where the parameter goes."""
    args: str
    what: str
    """What the function returns, with {k} for the parameter."""
    params: tuple[Any, ...]
    body: str
    """The canonical solution's body (one expression, {k} for the parameter)."""
    ref: Callable[..., Any]
    """ref(k, *args): the expected value, independent of `body`."""
    inputs: Callable[[random.Random, Any], tuple]


TASKS: tuple[Task, ...] = (
    Task(("add_{k}", "plus_{k}"), "n", "n plus {k}", tuple(range(1, 51)), "n + {k}",
         lambda k, n: n + k, lambda r, k: (r.randint(-50, 50),)),
    Task(("times_{k}", "mul_{k}"), "n", "n times {k}", tuple(range(2, 13)), "n * {k}",
         lambda k, n: n * k, lambda r, k: (r.randint(-30, 30),)),
    Task(("scale_all", "multiply_each"), "xs", "each element of xs times {k}, as a list",
         tuple(range(2, 13)), "[x * {k} for x in xs]", lambda k, xs: [x * k for x in xs],
         lambda r, k: (_ints(r, r.randint(0, 5)),)),
    Task(("shift_all", "add_to_each"), "xs", "each element of xs plus {k}, as a list",
         tuple(range(1, 31)), "[x + {k} for x in xs]", lambda k, xs: [x + k for x in xs],
         lambda r, k: (_ints(r, r.randint(0, 5)),)),
    Task(("count_above", "how_many_over"), "xs", "how many elements of xs exceed {k}",
         tuple(range(0, 21)), "sum(1 for x in xs if x > {k})", lambda k, xs: len([x for x in xs if x > k]),
         lambda r, k: (_ints(r, r.randint(0, 7), 0, 25),)),
    Task(("count_letter", "occurrences"), "s", "the number of '{k}' letters in s",
         tuple(string.ascii_lowercase), "s.count({k!r})", lambda k, s: len([c for c in s if c == k]),
         lambda r, k: (_word(r, 0, 6) + k * r.randint(0, 2) + _word(r, 0, 4),)),
    Task(("repeat_text", "echo"), "s", "s repeated {k} times", tuple(range(2, 7)), "s * {k}",
         lambda k, s: "".join([s] * k), lambda r, k: (_word(r, 0, 4),)),
    Task(("item_{k}", "element_at_{k}"), "xs", "the element at index {k} of xs", tuple(range(0, 4)),
         "xs[{k}]", lambda k, xs: list(xs)[k], lambda r, k: (_ints(r, k + r.randint(1, 3)),)),
    Task(("mod_{k}", "remainder_{k}"), "n", "n modulo {k}", tuple(range(2, 13)), "n % {k}",
         lambda k, n: n - k * (n // k), lambda r, k: (r.randint(0, 100),)),
    Task(("divisible_by_{k}", "is_multiple_of_{k}"), "n", "whether n is divisible by {k}",
         tuple(range(2, 13)), "n % {k} == 0", lambda k, n: (n // k) * k == n,
         lambda r, k: (r.choice([k * r.randint(0, 9), r.randint(0, 100)]),)),
    Task(("first_{k}", "take_{k}"), "xs", "the first {k} elements of xs", tuple(range(1, 5)),
         "xs[:{k}]", lambda k, xs: [x for i, x in enumerate(xs) if i < k], lambda r, k: (_ints(r, r.randint(k, 6)),)),
    Task(("largest_of_three", "max3"), "a, b, c", "the largest of a, b and c", (None,),
         "max(a, b, c)", lambda k, a, b, c: sorted([a, b, c])[-1], lambda r, k: tuple(_ints(r, 3))),
    Task(("smallest_of_three", "min3"), "a, b, c", "the smallest of a, b and c", (None,),
         "min(a, b, c)", lambda k, a, b, c: sorted([a, b, c])[0], lambda r, k: tuple(_ints(r, 3))),
    Task(("reversed_list", "backwards"), "xs", "xs reversed", (None,), "xs[::-1]",
         lambda k, xs: [xs[len(xs) - 1 - i] for i in range(len(xs))], lambda r, k: (_ints(r, r.randint(0, 5)),)),
    Task(("count_vowels", "vowel_count"), "s", "the number of vowels in s",
         (None,), "sum(1 for c in s if c in 'aeiou')", lambda k, s: len([c for c in s if c in "aeiou"]),
         lambda r, k: (_word(r, 0, 9),)),
    Task(("count_even", "evens"), "xs", "the number of even values in xs", (None,),
         "sum(1 for x in xs if x % 2 == 0)", lambda k, xs: len([x for x in xs if x % 2 == 0]),
         lambda r, k: (_ints(r, r.randint(0, 6)),)),
    Task(("mirror_word", "same_both_ways"), "s", "whether s is the same reversed",
         (None,), "s == s[::-1]", lambda k, s: all(s[i] == s[-1 - i] for i in range(len(s))),
         lambda r, k: ((lambda w: r.choice([w, w + w[::-1], w + w[-2::-1]]))(_word(r, 1, 4)),)),
    Task(("successor", "next_number"), "n", "the number after n", (None,), "n + 1",
         lambda k, n: n + 1, lambda r, k: (r.randint(-100, 100),)),
)


@dataclass(frozen=True)
class CodeRow:
    prompt: str
    tests: str
    entry_point: str
    solution: str

    def row(self) -> dict:
        """The row of post/rl.jsonl (the answer is the tests, as code_reward reads it)."""
        return {"prompt": self.prompt, "answer": self.tests, "verifier": "code", "entry_point": self.entry_point,
                "solution": self.solution}


def partition(prompt: str) -> str:
    bucket = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in PARTITIONS.items() if lo <= bucket < hi)


def pool() -> list[tuple[Task, Any, str, str]]:
    """Every (task, parameter, name, prompt), in a fixed order; prompts are distinct."""
    out = []
    for task in TASKS:
        for k in task.params:
            for name in task.names:
                fn = name.format(k=k)
                for stem in STEMS:
                    out.append((task, k, fn, stem.format(sig=f"{fn}({task.args})", what=task.what.format(k=k))))
    return out


def make(task: Task, k: Any, fn: str, prompt: str, rng: random.Random, n_tests: int = 3) -> CodeRow:
    asserts = []
    for _ in range(n_tests):
        args = task.inputs(rng, k)
        asserts.append(f"assert {fn}({', '.join(map(repr, args))}) == {task.ref(k, *args)!r}")
    solution = f"def {fn}({task.args}):\n    return {task.body.format(k=k)}\n"
    return CodeRow(prompt, "\n".join(asserts) + "\n", fn, solution)


def code_rows(part: str, n: int, seed: int, salt: str) -> list[CodeRow]:
    """n distinct prompts of `part`, in a seeded order, each with its tests drawn from the seed."""
    choices = [p for p in pool() if partition(p[3]) == part]
    if n > len(choices):
        raise ValueError(f"curate: synthetic code {salt}: {n} prompts asked for, the {part} partition holds "
                         f"{len(choices)}")
    rng = random.Random(f"{seed}/code/{salt}")
    return [make(*p, rng) for p in rng.sample(choices, n)]
