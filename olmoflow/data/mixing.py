"""Token-budget mixing: each mix asks for a share of its tokens per domain; a domain's sources are repeated (up
to max_repeat passes) or subsampled to meet its target, and written as token shards per domain, shuffled.

With `tokens: N` a domain's target is share x N tokens; with `tokens: 0` the mix is as large as the data allows
with every source at most max_repeat passes and every weight kept. Within a domain each source gets tokens in
proportion to (its tokens x its weight), so `weight` upsamples a high-quality source; a source the cap stops
passes what it cannot take to the domain's other sources, and only a domain whose sources are all at the cap
falls short of its target (stats say by how much, and a warning is logged). Targets are met to the token:
whole passes over a source, then whole documents in a seeded random order, the last one cut to fit (keeping
its eos; a cut never leaves fewer than 2 tokens, so a source may get one token more than asked).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from olmoflow.data.config import MixConfig, SourceConfig
from olmoflow.data.shards import ShardWriter

log = logging.getLogger(__name__)


@dataclass
class TokDoc:
    """A tokenized training document (eos included)."""

    source: str
    domain: str
    tier: int
    weight: float
    ids: np.ndarray
    doc_id: str = ""
    """Which document it is within its source (curate: the start of its content hash); empty when unknown."""


def without_absent(mixes: dict[str, MixConfig], present: list[SourceConfig], absent: list[SourceConfig],
                   other_domains: set[str]) -> tuple[dict[str, MixConfig], dict[str, list[str]]]:
    """(mixes, the domains dropped from each): a domain whose configured sources are all absent optional ones
    (and that no other input such as synthetic data fills) leaves every mix; the others' shares re-normalise,
    as plan_mix normalises whatever shares it gets. A mix left with no domain is an error naming the sources."""
    have = {s.domain for s in present} | other_domains
    gone = {s.domain for s in absent} - have
    out, dropped = {}, {}
    for name, mix in mixes.items():
        lost = sorted(set(mix.domains) & gone)
        if len(lost) == len(mix.domains):
            raise ValueError(f"curate: mix {name!r}: every domain's sources are absent "
                             f"({', '.join(s.name for s in absent)}); fetch them (`make data`) or mark another "
                             "source for these domains")
        if lost:
            dropped[name] = lost
            mix = mix.model_copy(update={"domains": {d: v for d, v in mix.domains.items() if d not in lost}})
        out[name] = mix
    return out, dropped


def plan_mix(name: str, mix: MixConfig, pool: list[TokDoc], seed: int
             ) -> tuple[dict[str, list[TokDoc]], dict[str, dict]]:
    """(docs per domain, with repeats and shuffled; stats per domain: target_share, share, target_tokens, tokens,
    short_by, docs, available_tokens, repeat, and per source repeat, docs, tokens, available_tokens, capped)."""
    eligible = [d for d in pool if mix.max_tier is None or d.tier <= mix.max_tier]
    by_source: dict[str, dict[str, list[TokDoc]]] = defaultdict(lambda: defaultdict(list))
    for d in eligible:
        by_source[d.domain][d.source].append(d)
    total_share = sum(mix.domains.values())
    shares = {dom: s / total_share for dom, s in mix.domains.items()}
    for dom in shares:
        if dom not in by_source:
            have = ", ".join(sorted(by_source)) or "none"
            raise ValueError(f"curate: mix {name!r}: domain {dom!r} has no training documents"
                             f"{'' if mix.max_tier is None else f' of tier <= {mix.max_tier}'} (domains: {have})")
    avail = {dom: {s: int(sum(d.ids.size for d in docs)) for s, docs in sorted(by_source[dom].items())}
             for dom in shares}
    weight = {dom: {s: by_source[dom][s][0].weight for s in avail[dom]} for dom in shares}
    cap = {dom: {s: int(mix.max_repeat * n) for s, n in avail[dom].items()} for dom in shares}
    if mix.tokens:
        targets = _apportion(mix.tokens, shares)
    else:
        # the largest total at which the heaviest-weighted source of every domain stays within max_repeat
        total = min(mix.max_repeat * sum(avail[dom][s] * weight[dom][s] for s in avail[dom])
                    / max(weight[dom].values()) / shares[dom] for dom in shares)
        # rounding the split up must not turn into a shortfall: the mix was sized to fit
        targets = {dom: min(t, sum(cap[dom].values())) for dom, t in _apportion(int(total), shares).items()}

    out: dict[str, list[TokDoc]] = {}
    stats: dict[str, dict] = {}
    for dom, target in targets.items():
        budget, capped = _fill(target, {s: avail[dom][s] * weight[dom][s] for s in avail[dom]}, cap[dom])
        chosen: list[TokDoc] = []
        sources = {}
        for src, tokens in budget.items():
            picked = _take(by_source[dom][src], tokens, random.Random(f"{seed}/{name}/{src}"))
            chosen += picked
            sources[src] = {"repeat": round(tokens / avail[dom][src], 3), "docs": len(picked),
                            "tokens": int(sum(d.ids.size for d in picked)), "available_tokens": avail[dom][src],
                            "capped": src in capped}
        random.Random(f"{seed}/{name}/{dom}").shuffle(chosen)
        out[dom] = chosen
        got = int(sum(d.ids.size for d in chosen))
        have = sum(avail[dom].values())
        stats[dom] = {"target_share": round(shares[dom], 4), "target_tokens": target, "tokens": got,
                      "short_by": max(0, target - got), "docs": len(chosen), "available_tokens": have,
                      "repeat": round(got / have, 3), "sources": sources}
        if stats[dom]["short_by"]:
            log.warning("curate: mix %r: domain %r gets %d of its %d target tokens: all its sources are at "
                        "max_repeat=%g passes (raise max_repeat or lower its share)", name, dom, got, target,
                        mix.max_repeat)
    mixed = sum(s["tokens"] for s in stats.values())
    for s in stats.values():
        s["share"] = round(s["tokens"] / mixed, 4) if mixed else 0.0
    return out, stats


def _apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """`total` split in proportion to `weights` as integers that add up to it exactly (largest remainder)."""
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:total - sum(out.values())]:
        out[k] += 1
    return out


def _fill(target: int, weights: dict[str, float], caps: dict[str, int]) -> tuple[dict[str, int], set[str]]:
    """(tokens per source, the capped sources): `target` split by weight with no source above its cap; what a
    capped source cannot take is split among the others, so the sum is short of target only if all are capped."""
    out: dict[str, int] = {}
    free = dict(weights)
    left = target
    while free:
        split = _apportion(left, free)
        over = [s for s in free if split[s] > caps[s]]
        if not over:
            out.update(split)
            break
        for s in over:
            out[s] = caps[s]
            left -= caps[s]
            del free[s]
    return {s: out[s] for s in weights}, {s for s in weights if s not in free}


def _take(docs: list[TokDoc], tokens: int, rng: random.Random) -> list[TokDoc]:
    """`tokens` tokens of `docs`: whole passes, then documents in a random order, the last one cut to fit."""
    size = sum(d.ids.size for d in docs)
    passes, rest = divmod(tokens, size)
    out = docs * passes
    order = list(range(len(docs)))
    rng.shuffle(order)
    for i in order:
        if rest <= 0:
            break
        d = docs[i]
        if d.ids.size > rest:
            keep = max(rest, 2)
            d = dataclasses.replace(d, ids=np.concatenate([d.ids[:keep - 1], d.ids[-1:]]))  # eos stays last
        out.append(d)
        rest -= d.ids.size
    return out


DOC_TABLE = "docs.jsonl"
"""Beside each domain's shards: one line per document, in shard order, {"source", "doc_id"}, so a token offset maps
back to the document it came from (olmoflow/trace/ reads it; trainers ignore it: it is not a .npy)."""


def write_domains(root: Path, docs_by_domain: dict[str, list[TokDoc]], shard_tokens: int) -> None:
    for dom, docs in docs_by_domain.items():
        kept = [d for d in docs if d.ids.size]  # ShardWriter skips empty documents; the table must line up
        with ShardWriter(root / dom, shard_tokens) as w:
            for d in kept:
                w.add(d.ids)
        with open(root / dom / DOC_TABLE, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"source": d.source, "doc_id": d.doc_id}) + "\n" for d in kept)
