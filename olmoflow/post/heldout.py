"""Held-out verifiable prompts (post/heldout.jsonl: rule tasks in a partition no stage trains on) answered greedily,
so a stage can show its effect on items it never saw: the share of replies in the expected format and the share
the row's verifier accepts, before and after; a few replies side by side go to MLflow as a table.

Generation runs in one process (a torchrun world of one, the CPU demo); under FSDP a stage skips it (generating
from a sharded model needs every rank in each forward, which the stages' sharded loops do not do yet).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from olmoflow.contract.context import StageContext
from olmoflow.data.synthetic_rules import follows_format
from olmoflow.model import generate
from olmoflow.post.chat import ChatTemplate
from olmoflow.post.data import read_jsonl, split_heldout
from olmoflow.post.verifiers import score
from olmoflow.train.world import autocast


def heldout_rows(dataset: Path, n: int, knob: str, families: set[str] | None = None) -> list[dict]:
    """The first n rows of post/heldout.jsonl in content-hash order (all when fewer), only those of `families`
    when given (rows without a family are kept); [] when the dataset has none."""
    path = dataset / "post" / "heldout.jsonl"
    if n == 0 or not path.exists():
        return []
    rows = read_jsonl(path, ["prompt", "answer", "verifier"])
    if families is not None:
        rows = [r for r in rows if "family" not in r or r["family"] in families]
    return rows if n >= len(rows) else split_heldout(rows, n, knob)[1]


@torch.no_grad()
def replies(model: nn.Module, template: ChatTemplate, prompts: list[str], max_new_tokens: int, batch: int = 128,
            temperature: float = 0.0, generator: torch.Generator | None = None) -> list[str]:
    """One reply per prompt (greedy unless `temperature`), cut at <|im_end|>, decoded."""
    was_training = model.training
    model.eval()
    out: list[str] = []
    device = next(model.parameters()).device
    for i in range(0, len(prompts), batch):
        ids = [template.prompt([{"role": "user", "content": p}]) for p in prompts[i:i + batch]]
        with autocast(device):
            tokens, _ = generate(model, ids, max_new_tokens, temperature=temperature, eos_id=template.im_end,
                                 generator=generator)
        out += [template.tok.decode([t for t in seq if t != template.im_end], skip_special_tokens=True)
                for seq in tokens]
    model.train(was_training)
    return out


def rates(rows: list[dict], texts: list[str]) -> dict[str, float]:
    """{"format_rate", "reward", "reward/{family}"}: the share of replies in the row's expected format, their mean
    reward, and that per task family (rows that name one)."""
    fmt = [follows_format(t, r.get("format") == "think") for r, t in zip(rows, texts)]
    rewards = [score(r["verifier"], t, r["answer"]) for r, t in zip(rows, texts)]
    families: dict[str, list[float]] = {}
    for r, x in zip(rows, rewards):
        families.setdefault(r.get("family", r["verifier"]), []).append(x)
    return {"format_rate": sum(fmt) / len(rows), "reward": sum(rewards) / len(rows),
            **{f"reward/{f}": sum(xs) / len(xs) for f, xs in sorted(families.items())}}


def log_samples(ctx: StageContext, name: str, rows: list[dict], columns: dict[str, list[str]], n: int = 12) -> Path:
    """samples/{name}.json in MLflow's table layout ({"columns", "data"}): prompt, answer and each named column of
    replies for the first n rows; in the payload and attached to the stage's MLflow run."""
    path = ctx.out / "samples" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [[r["prompt"], r["answer"], *(col[i] for col in columns.values())] for i, r in enumerate(rows[:n])]
    path.write_text(json.dumps({"columns": ["prompt", "answer", *columns], "data": data}, indent=1))
    ctx.log_artifact(path, "tables")
    return path
