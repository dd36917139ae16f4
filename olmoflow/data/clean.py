"""Step 1 of curate, the part that sees each document alone or each source in order: read every file of every source
on the executor (normalize, quality rules, decontamination, content hash: `clean_files`, a batch function that runs
on Ray workers or in-process), then settle each source here in order (max_docs choice, holdout, exact dedup across
sources), then fuzzy dedup over all of them (MinHash signatures per batch on the executor; LSH, exact Jaccard and
union-find on the driver). Every removal is kept as (source, rule, text) so curate can count it in tokens later.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from olmoflow.data.config import CurateConfig, FilterConfig, SourceConfig
from olmoflow.data.decon import DeconIndex, DeconTally
from olmoflow.data.dedup import content_hash, exact_dedup
from olmoflow.data.execute import Executor
from olmoflow.data.filters import first_failed, kind_of, rules
from olmoflow.data.minhash import FuzzyResult, Shingles, cluster, signatures_for
from olmoflow.data.normalize import decode, normalize
from olmoflow.data.sources import SourceFile, choose, holdout_files, plan_files, read_file


@dataclass
class Doc:
    source: str
    domain: str
    tier: int
    weight: float
    text: str
    hash: str


def _to_text(data: bytes | str) -> tuple[str, int]:
    return decode(data) if isinstance(data, bytes) else (data, 0)


@dataclass
class FileTask:
    source: SourceConfig
    file: SourceFile
    holdout: bool
    """A file of the source's holdout glob: only its documents' hashes are needed."""


@dataclass
class Record:
    """One document as a worker leaves it: normalized, hashed, and judged by the rules that need only itself."""
    id: str
    hash: str
    text: str
    undecodable: int
    chars_in: int
    rule: str | None
    """The first quality rule it fails, else 'decontam' when it holds an eval item, else None."""
    hits: list[tuple[str, str]]
    """(eval task, item id) of every eval item it holds, when its rule is 'decontam'."""


def clean_files(tasks: list[FileTask], filters: FilterConfig, banned: DeconIndex) -> list[list[Record]]:
    """Batch function: each file's documents, read, normalized, hashed and judged (runs on the executor)."""
    out = []
    for t in tasks:
        checks = rules(filters, kind_of(t.source))
        records = []
        for d in read_file(t.source, t.file):
            text, bad = _to_text(d.data)
            chars, text = len(text), normalize(text)
            if t.holdout:
                records.append(Record(d.id, content_hash(text), "", 0, 0, None, []))
                continue
            rule, hits = first_failed(text, checks), []
            if bad > filters.max_undecodable * len(d.data):
                rule = "undecodable"
            if rule is None:
                hits = banned.match(text)
                rule = "decontam" if hits else None
            records.append(Record(d.id, content_hash(text), text, bad, chars, rule, hits))
        out.append(records)
    return out


def read_sources(cfg: CurateConfig, root: str, banned: DeconIndex, tally: DeconTally, ex: Executor,
                 log: logging.Logger
                 ) -> tuple[list[Doc], list[tuple[str, str, str]], dict[str, dict[str, Any]]]:
    """(kept documents, dropped (source, rule, text), per-source stats): every file of every source cleaned on
    the executor at once, then each source settled here in order (max_docs choice, holdout, exact dedup)."""
    tasks = [FileTask(src, f, False) for src in cfg.sources for f in plan_files(src, root)]
    tasks += [FileTask(src, f, True) for src in cfg.sources if src.holdout for f in holdout_files(src, root)]
    cleaned = ex.map(functools.partial(clean_files, filters=cfg.filters, banned=banned), tasks,
                     desc="read and clean files")
    records: dict[tuple[str, bool], list[Record]] = defaultdict(list)
    for t, recs in zip(tasks, cleaned):
        records[t.source.name, t.holdout] += recs
    docs, dropped, source_stats = [], [], {}
    seen: set[str] = set()
    for src in cfg.sources:
        holdout = {r.hash for r in records[src.name, True]}
        kept, gone, counts = settle_source(src, records[src.name, False], holdout, cfg, seen, tally)
        docs += kept
        dropped += gone
        source_stats[src.name] = {"domain": src.domain, "tier": src.tier, "filters": kind_of(src), **counts}
        log.info("curate: %s: %d of %d documents kept", src.name, counts["docs_out"], counts["docs_in"])
    return docs, dropped, source_stats


def settle_source(src: SourceConfig, records: list[Record], holdout: set[str], cfg: CurateConfig, seen: set[str],
                  tally: DeconTally) -> tuple[list[Doc], list[tuple[str, str, str]], dict[str, int]]:
    """(kept documents, dropped (source, rule, text), source counts) of one source's records in file order.
    `seen` carries hashes across sources; `tally` counts the eval items each decontaminated document held."""
    records = [r for r, keep in zip(records, choose([r.id for r in records], src.max_docs)) if keep]
    counts = Counter(docs_in=len(records), undecodable_bytes=sum(r.undecodable for r in records),
                     chars_in=sum(r.chars_in for r in records))
    kept, dropped, hashes = [], [], []
    for r in records:
        rule = "holdout" if r.hash in holdout else r.rule
        if rule is not None:
            dropped.append((src.name, rule, r.text))
            if rule == "decontam":
                tally.add(src.name, r.hits)
            continue
        kept.append(Doc(src.name, src.domain, src.tier, src.weight, r.text, r.hash))
        hashes.append(r.hash)
    unique = exact_dedup(hashes, seen)
    dropped += [(src.name, "duplicate", d.text) for d, keep in zip(kept, unique) if not keep]
    kept = [d for d, keep in zip(kept, unique) if keep]
    counts["docs_out"] = len(kept)
    counts["chars_out"] = sum(len(d.text) for d in kept)
    if len(kept) < cfg.min_docs:
        why = Counter(rule for _, rule, _ in dropped)
        raise ValueError(f"curate: source {src.name!r}: {len(kept)} documents left of {len(records)} read, fewer "
                         f"than min_docs={cfg.min_docs} (dropped: {dict(why) or 'none'})")
    return kept, dropped, dict(counts)


def near_duplicates(texts_: list[str], cfg: CurateConfig, ex: Executor) -> FuzzyResult:
    """MinHash signatures per batch on the executor; LSH candidates, the exact-Jaccard check and union-find here."""
    parts = ex.map_batches(functools.partial(signatures_for, cfg=cfg.fuzzy_dedup), texts_, cfg.ray.batch_size,
                           desc="minhash signatures")
    perms = cfg.fuzzy_dedup.bands * cfg.fuzzy_dedup.rows
    sig = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, perms), np.uint32)
    return cluster(sig, Shingles.concat([p[1] for p in parts]), cfg.fuzzy_dedup)


def drop_near_duplicates(docs: list[Doc], cfg: CurateConfig, source_stats: dict[str, dict[str, Any]],
                         dropped: list[tuple[str, str, str]], ex: Executor) -> tuple[list[Doc], dict[str, float]]:
    """(kept documents, cluster stats): fuzzy dedup over all sources at once, in source order, so as with exact
    dedup the earlier source keeps the copy. Removals go into `dropped` under the rule 'fuzzy_dedup' and out of
    each source's docs_out/chars_out; a source left below min_docs fails the stage."""
    result = near_duplicates([d.text for d in docs], cfg, ex)
    kept = []
    for d, keep in zip(docs, result.keep):
        if keep:
            kept.append(d)
            continue
        dropped.append((d.source, "fuzzy_dedup", d.text))
        source_stats[d.source]["docs_out"] -= 1
        source_stats[d.source]["chars_out"] -= len(d.text)
    for name, s in source_stats.items():
        if s["docs_out"] < cfg.min_docs:
            why = Counter(rule for src, rule, _ in dropped if src == name)
            raise ValueError(f"curate: source {name!r}: {s['docs_out']} documents left of {s['docs_in']} read, "
                             f"fewer than min_docs={cfg.min_docs} (dropped: {dict(why)})")
    summary = {**result.summary(), "sizes": {str(k): v for k, v in sorted(Counter(result.sizes).items())}}
    return kept, summary
