"""Post-training data: SFT conversations from ShareGPT, DPO pairs from BIG-bench HHH, and synthetic arithmetic
in chat form (SFT answers, delta-learning-style DPO pairs, RLVR prompts with exact answers), plus RLVR's other two
verifiable families: small code tasks with unit tests (data/synthetic_code.py) and instruction-following prompts
with checkable constraints (data/synthetic_if.py).

Rows follow the payload contract: sft {"messages"}, dpo {"messages", "chosen", "rejected"},
rl {"prompt", "answer", "verifier"} where verifier (math | code | ifeval) names the function of
olmoflow/post/verifiers.py that scores a completion against the answer (a number; the unit tests; the JSON spec of
the constraints). Code rows also carry "entry_point" and a canonical "solution".
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from olmoflow.data import synthetic_rules
from olmoflow.data.normalize import normalize
from olmoflow.data.synthetic import Item, worked, wrong_answer
from olmoflow.data.synthetic_code import code_rows
from olmoflow.data.synthetic_if import if_rows, witness

ROLES = {"human": "user", "gpt": "assistant"}
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_SPACE = re.compile(r"\s")


def ascii_alpha(text: str) -> float:
    chars = len(text) - len(_SPACE.findall(text))
    return len(_ASCII_LETTER.findall(text)) / chars if chars else 0.0


def sharegpt_messages(conv: list[dict[str, Any]], max_chars: int) -> tuple[list[dict[str, str]] | None, str]:
    """(messages, "") for a usable conversation, else (None, why). Roles human/gpt map to user/assistant; empty
    turns are dropped, and so are leading assistant turns (ShareGPT splits long chats into parts, and a later
    part can open mid-exchange); turns must alternate from the user; the conversation is cut after the last
    assistant turn that fits in max_chars."""
    turns = []
    for t in conv:
        role = ROLES.get(t.get("from", ""))
        if role is None:
            return None, "other_role"
        content = normalize(t.get("value") or "")
        if content and (turns or role == "user"):
            turns.append({"role": role, "content": content})
    if len(turns) < 2:
        return None, "no_exchange"
    kept: list[dict[str, str]] = []
    size = 0
    for i, t in enumerate(turns):
        if t["role"] != ("user" if i % 2 == 0 else "assistant"):
            break
        size += len(t["content"])
        if size > max_chars:
            break
        kept.append(t)
    if kept and kept[-1]["role"] == "user":
        kept.pop()
    if not kept:
        return None, "too_long"
    return kept, ""


def sft_from_sharegpt(path: Path, n: int, max_chars: int, min_alpha: float) -> tuple[list[dict], Counter]:
    """The first n usable conversations of a ShareGPT jsonl, and the count of each reason for dropping one."""
    rows: list[dict] = []
    why: Counter = Counter()
    if n == 0:
        return rows, why
    with open(path, encoding="utf-8") as f:
        for n_line, line in enumerate(f, 1):
            try:
                conv = json.loads(line).get("conversations") or []
            except (json.JSONDecodeError, AttributeError):
                raise ValueError(f"curate: post.sharegpt {path}:{n_line}: not a JSON object") from None
            messages, reason = sharegpt_messages(conv, max_chars)
            if messages is not None and ascii_alpha("".join(m["content"] for m in messages)) < min_alpha:
                messages, reason = None, "not_english"
            if messages is None:
                why[reason] += 1
                continue
            rows.append({"messages": messages})
            if len(rows) == n:
                break
    return rows, why


_SPEAKER = re.compile(r"\n\n(Human|Assistant):")


def hhh_turns(text: str) -> list[dict[str, str]]:
    """An HHH input ('question\\n\\nAssistant: ...\\n\\nHuman: ...') as chat turns, starting with the user."""
    parts = _SPEAKER.split(re.sub(r"^\s*Human:", "", text))
    turns = [{"role": "user", "content": normalize(parts[0])}] if parts[0].strip() else []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": normalize(content)})
    return [t for t in turns if t["content"]]


def dpo_from_hhh(paths: list[Path], n: int | None) -> tuple[list[dict], Counter]:
    """Pairs from hhh_alignment: chosen = the higher-scored target, rejected = the lower; the prompt's last turn
    must be the user's. n = None keeps all (221)."""
    rows: list[dict] = []
    why: Counter = Counter()
    for path in paths:
        try:
            examples = [(ex["input"], ex["target_scores"])
                        for ex in json.loads(path.read_text(encoding="utf-8")).get("examples", [])]
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as e:
            raise ValueError(f"curate: post.hhh {path}: not a BIG-bench task file ({type(e).__name__}: {e})") from None
        for prompt, target_scores in examples:
            scored = sorted(target_scores.items(), key=lambda kv: kv[1])
            turns = hhh_turns(prompt)
            if len(scored) < 2 or scored[0][1] == scored[-1][1]:
                why["tie"] += 1
            elif not turns or turns[-1]["role"] != "user":
                why["prompt_not_from_user"] += 1
            else:
                rows.append({"messages": turns, "chosen": normalize(scored[-1][0]),
                             "rejected": normalize(scored[0][0]), "source": "hhh"})
    if n is not None:  # a hash-ordered choice, so a small n still spans all four HHH categories
        rows = sorted(rows, key=lambda r: hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest())[:n]
    return rows, why


def sft_from_items(items: list[Item]) -> list[dict]:
    return [{"messages": [{"role": "user", "content": it.question}, {"role": "assistant", "content": it.worked}]}
            for it in items]


def dpo_from_items(items: list[Item], seed: int) -> list[dict]:
    """Delta-learning-style pairs we can build honestly: the correct worked answer against the same working
    with a plausible arithmetic slip."""
    rng = random.Random(f"{seed}/dpo-wrong")
    return [{"messages": [{"role": "user", "content": it.question}], "chosen": it.worked,
             "rejected": worked(it.problem, wrong_answer(it.problem, rng))} for it in items]


def rl_from_items(items: list[Item], code: int = 0, ifeval: int = 0, seed: int = 0) -> list[dict]:
    """RLVR's prompts: the arithmetic items (math verifier), then `code` code tasks and `ifeval` instruction
    prompts from the rl partition of their generators (curate.post.rl_code / rl_ifeval)."""
    return ([{"prompt": it.question, "answer": it.answer, "verifier": "math"} for it in items]
            + [r.row() for r in code_rows("rl", code, seed, "rl")]
            + [r.row() for r in if_rows("rl", ifeval, seed, "rl")])


def sft_code_if(code: int, ifeval: int, seed: int) -> list[dict]:
    """SFT conversations from the train partitions of the code and instruction generators (never an RL prompt):
    the canonical solution in a fenced block; a reply that follows the prompt's constraint."""
    rows = [{"messages": [{"role": "user", "content": r.prompt},
                          {"role": "assistant", "content": f"```python\n{r.solution}```"}]}
            for r in code_rows("train", code, seed, "sft")]
    return rows + [{"messages": [{"role": "user", "content": r.prompt},
                                 {"role": "assistant", "content": witness(r.iid, r.kwargs)}]}
                   for r in if_rows("train", ifeval, seed, "sft")]


def rule_rows(sft: int, dpo: int, rl: int, heldout: int, seed: int, think: bool,
              families: tuple[str, ...] = synthetic_rules.FAMILIES,
              rl_families: tuple[str, ...] | None = None) -> dict[str, list[dict]]:
    """The rule tasks' rows by use, each from its own partition: sft conversations, dpo_prompts (DPO samples pairs
    on them), rl prompts and heldout prompts (no stage trains on them); dpo and rl prompts from `rl_families`
    (default: `families`)."""
    drawn = {"sft": families, "heldout": families, "dpo": rl_families or families, "rl": rl_families or families}
    items = {use: synthetic_rules.rule_items(use, n, seed, use, tuple(drawn[use]))
             for use, n in (("sft", sft), ("dpo", dpo), ("rl", rl), ("heldout", heldout))}
    return {"sft": synthetic_rules.sft_rows(items["sft"], think),
            "dpo_prompts": synthetic_rules.prompt_rows(items["dpo"], think),
            "rl": synthetic_rules.prompt_rows(items["rl"], think),
            "heldout": synthetic_rules.prompt_rows(items["heldout"], think)}


def texts(rows: list[dict]) -> list[str]:
    """Every string a model trains on in post rows (for the eval-overlap check)."""
    out = []
    for r in rows:
        out += [m["content"] for m in r.get("messages", [])]
        out += [r[k] for k in ("chosen", "rejected", "prompt") if k in r]
    return out
