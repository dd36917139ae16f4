"""What the eval stage can score, as plain data: each task's family, formats, metric names, primary metric and
default few-shot count. Config validation reads it (an unknown task, format or metric fails at load, before any
compute) without importing the scorers (torch); tests/evals/test_catalog.py holds it to mc_tasks.py and
gen_tasks.py, which define the tasks.

A task is asked for as `name` or `name:format` (multiple choice: rc, the cloze format base models are judged on,
or mc, the lettered one; the default is rc).
"""

from __future__ import annotations

from dataclasses import dataclass

MC_RC = ("acc_raw", "acc_per_token", "acc_per_char", "acc_per_byte", "acc_uncond", "bits_per_byte_corr",
         "logits_per_char_corr")
MC_RC_NO_UNCOND = tuple(m for m in MC_RC if m != "acc_uncond")
MC_MC = ("acc_raw", "acc_per_char", "bits_per_byte_corr")
QA = ("exact_match", "f1")
IF = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc",
      "unverified_share")
LOWER_IS_BETTER = ("bits_per_byte_corr", "unverified_share")


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    """mc (log-likelihood ranking), gen (generation + answer check), code (pass@1 in the sandbox), ifeval."""
    metrics: dict[str, tuple[str, ...]]
    """Metric names per format ("" for a task with one format)."""
    primary: dict[str, str]
    """The metric the model-flow table leads with, per format (OLMES's primary_metric)."""
    shots: int
    """OLMES's few-shot count, drawn from the task's train split (eval/{task}.train.jsonl) when it has one."""


def _mc(name: str, rc_primary: str, uncond: bool = True, mc_primary: str = "acc_raw") -> Entry:
    return Entry(name, "mc", {"rc": MC_RC if uncond else MC_RC_NO_UNCOND, "mc": MC_MC},
                 {"rc": rc_primary, "mc": mc_primary}, 5)


def _gen(name: str, family: str, metrics: tuple[str, ...], primary: str, shots: int) -> Entry:
    return Entry(name, family, {"": metrics}, {"": primary}, shots)


CATALOG: dict[str, Entry] = {e.name: e for e in (
    _mc("arc_easy", "acc_per_char"), _mc("arc_challenge", "acc_per_char"),
    _mc("hellaswag", "acc_per_char", uncond=False), _mc("piqa", "acc_per_char"), _mc("mmlu", "acc_per_char"),
    _mc("boolq", "acc_raw"), _mc("sciq", "acc_per_char", mc_primary="acc_per_char"),
    _mc("openbookqa", "acc_uncond"), _mc("winogrande", "acc_raw", uncond=False), _mc("socialiqa", "acc_per_char"),
    _mc("csqa", "acc_uncond"),
    _gen("gsm8k", "gen", ("exact_match",), "exact_match", 8),
    _gen("minerva_math_500", "gen", ("exact_match", "exact_match_flex"), "exact_match_flex", 4),
    _gen("squad", "gen", QA, "f1", 5), _gen("drop", "gen", QA, "f1", 5), _gen("coqa", "gen", QA, "f1", 0),
    _gen("humaneval", "code", ("pass_at_1",), "pass_at_1", 0), _gen("mbpp", "code", ("pass_at_1",), "pass_at_1", 3),
    _gen("ifbench", "ifeval", IF, "prompt_level_strict_acc", 0),
    _gen("arithmetic", "gen", ("exact_match",), "exact_match", 0),
)}


@dataclass(frozen=True)
class TaskSpec:
    """One task as a suite asks for it: `arc_challenge:mc`, `gsm8k`."""
    task: str
    fmt: str

    @property
    def entry(self) -> Entry:
        return CATALOG[self.task]

    @property
    def key(self) -> str:
        """Its name in results and reports: the task's, with `:format` unless it is the default (rc)."""
        return self.task if self.fmt == next(iter(self.entry.metrics)) else f"{self.task}:{self.fmt}"

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.entry.metrics[self.fmt]


def parse(spec: str) -> TaskSpec:
    """`name[:format]` checked against the catalog; a ValueError naming the task or format otherwise."""
    name, _, fmt = spec.partition(":")
    if name not in CATALOG:
        raise ValueError(f"unknown eval task {name!r} (tasks: {', '.join(CATALOG)})")
    formats = tuple(CATALOG[name].metrics)
    fmt = fmt or formats[0]
    if fmt not in formats:
        raise ValueError(f"eval task {name}: unknown format {fmt!r} "
                         f"({'formats: ' + ', '.join(formats) if formats != ('',) else 'it has one format'})")
    return TaskSpec(name, fmt)


def check_metric(task: str, metric: str) -> None:
    """A ValueError naming the metric when no format of `task` reports it."""
    known = sorted({m for ms in parse(task).entry.metrics.values() for m in ms})
    if metric not in known:
        raise ValueError(f"eval task {task}: unknown metric {metric!r} (metrics: {', '.join(known)})")
