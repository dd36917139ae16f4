"""The curate stage: real text from `make data` becomes a dataset artifact (tokenizer, token shards per mix and
domain, long documents, held-out text, post-training and eval data, stats).

    olmoflow stage curate --config tiny

The idea, as in Olmo 3's data pipeline at toy scale: read every source, normalize the text (NFC, whitespace,
undecodable bytes dropped), drop documents by a few quality rules, drop any that hold an eval item (its
question's n-grams and its answer: olmoflow/data/decon.py), drop exact duplicates, then near-duplicates (MinHash
LSH), hold out a hash-chosen slice per domain as val text, train a byte-level BPE on the rest, tokenize, and write
token-constrained mixes: `pretrain/`, `midtrain/` (math, code and QA up-weighted, with TinyMATH-style synthetic
problems) and `long/`. Eval tasks (curate.eval.tasks) are written as eval/{task}.jsonl with their few-shot pools
(eval/{task}.train.jsonl), and eval/contamination.json says, per task, which items still share a word 13-gram with
the training data as kept (olmoflow/data/contamination.py). Sources are local folders or s3:// prefixes; an
optional source (`required: false`) that is absent is skipped, and a mix's domain left without sources is dropped
with the other shares re-normalised.

Where the work runs: everything per file or per document (read + normalize + filter + decontaminate + hash, one
task per few files; MinHash signatures and tokenization, per batch of documents) is a batch function handed to an
executor (olmoflow/data/execute.py): a plain loop in this process, or Ray Data on a local Ray
(`curate.ray.enabled`, `num_cpus`) or on the cluster at $RAY_ADDRESS. What needs every document at once stays
here, in source order: exact dedup, LSH clustering, the val split, BPE training, mixing and writing. Results come
back in input order, so the artifact is byte-for-byte the same whichever executor ran. Every bad input (a glob
matching nothing, an unreadable file, a source filtered down below min_docs) fails before anything is written.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from olmoflow.contract.context import StageContext
from olmoflow.data import synthetic
from olmoflow.data.clean import Doc, drop_near_duplicates, read_sources
from olmoflow.data.config import CurateConfig
from olmoflow.data.contamination import OverlapScan
from olmoflow.data.decon import DeconIndex, DeconTally, eval_items
from olmoflow.data.dedup import content_hash, unit_interval, val_mask
from olmoflow.data.evalsets import TASKS, arithmetic_items, read_items, read_shots, subset, without_scored
from olmoflow.data.execute import Executor, open_executor
from olmoflow.data.mixing import TokDoc, plan_mix, without_absent, write_domains
from olmoflow.data.postsets import (
    dpo_from_hhh,
    dpo_from_items,
    rl_from_items,
    rule_rows,
    sft_code_if,
    sft_from_items,
    sft_from_sharegpt,
    texts,
)
from olmoflow.data.report import flat_metrics, length_histogram, render_text, write_report
from olmoflow.data.sources import check_sources, local_files, sources_root
from olmoflow.data.tokenizer import EOS, encode_docs, load_tokenizer, train_bpe

SYNTHETIC_DOMAINS = {"math", "qa"}
"""Domains TinyMATH-style synthetic documents fill, whatever the sources."""


# ---- 1. read, normalize, filter, decontaminate, dedup: olmoflow/data/clean.py ---------------------------------

# ---- 2. post-training and eval data ----------------------------------------------------------------------

def build_synthetic(cfg: CurateConfig) -> dict[str, list[synthetic.Item]]:
    s = cfg.synthetic
    half = s.midtrain_docs * s.problems_per_doc // 2
    sets = {
        "eval": synthetic.items("eval", cfg.eval.arithmetic_items, s.seed, s.max_operand, "eval"),
        "rl": synthetic.items("rl", cfg.post.rl_prompts, s.seed, s.max_operand, "rl"),
        "sft": synthetic.items("train", cfg.post.sft_synthetic, s.seed, s.max_operand, "sft", unique=False),
        "dpo": synthetic.items("train", cfg.post.dpo_synthetic, s.seed, s.max_operand, "dpo", unique=False),
        "math": synthetic.items("train", half, s.seed, s.max_operand, "midtrain-math", word=0.0, unique=False),
        "qa": synthetic.items("train", half, s.seed, s.max_operand, "midtrain-qa", word=1.0, unique=False),
    }
    synthetic.assert_disjoint(sets["eval"], **{k: v for k, v in sets.items() if k != "eval"})
    return sets


def build_eval(cfg: CurateConfig, root: str, arith: list[synthetic.Item], tmp: Path
               ) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(scored items, few-shot pool) per task of curate.eval.tasks, each capped to its deterministic subset."""
    e = cfg.eval
    items: dict[str, list[dict]] = {}
    shots: dict[str, list[dict]] = {}
    for task in e.tasks:
        if task == "arithmetic":
            items[task] = arithmetic_items(arith)
            continue
        spec = TASKS[task]
        pattern = e.arc_easy if task == "arc_easy" else spec.path
        paths = local_files(root, pattern, f"eval task {task}", tmp)
        if not paths:
            raise ValueError(f"curate: eval task {task}: {pattern!r} matches no files under {root} (run `make data`?)")
        every = read_items(task, paths)
        items[task] = subset(task, every, e.max_items)
        if not spec.train:
            continue
        train = local_files(root, spec.train, f"eval task {task} few-shot pool", tmp)
        if not train and pattern == spec.path:  # (an ARC-Easy file of one's own may come without a pool)
            raise ValueError(f"curate: eval task {task}: few-shot pool {spec.train!r} matches no files under {root} "
                             "(run `make data`?)")
        if train:  # the pool never holds a scored item, whichever the cap chose
            shots[task] = subset(task, without_scored(read_shots(task, train), every), e.fewshot_pool)
    return items, shots


def build_post(cfg: CurateConfig, root: str, arith: dict[str, list[synthetic.Item]], banned: DeconIndex,
               tally: DeconTally, tmp: Path) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    p = cfg.post
    sft, sft_why = ([], Counter())
    if p.sft_conversations:
        sft, sft_why = sft_from_sharegpt(local_files(root, p.sharegpt, "post.sharegpt", tmp)[0],
                                         p.sft_conversations, p.sft_max_chars, p.min_alpha)
    dpo, dpo_why = (dpo_from_hhh(local_files(root, p.hhh, "post.hhh", tmp), p.dpo_hhh) if p.dpo_hhh != 0
                    else ([], Counter()))
    rows = {"sft": sft + sft_from_items(arith["sft"]),
            "dpo": dpo + dpo_from_items(arith["dpo"], cfg.synthetic.seed),
            "rl": rl_from_items(arith["rl"], p.rl_code, p.rl_ifeval, cfg.synthetic.seed)}
    rules = rule_rows(p.rules_sft, p.rules_dpo, p.rules_rl, p.rules_heldout, cfg.synthetic.seed, p.think,
                      tuple(p.rules_families), tuple(p.rules_rl_families) if p.rules_rl_families else None)
    rows["sft"] += sft_code_if(p.sft_code, p.sft_ifeval, cfg.synthetic.seed) + rules["sft"]
    rows["rl"] += rules["rl"]
    rows |= {name: rules[name] for name in ("dpo_prompts", "heldout") if rules[name]}  # written only when asked for
    families = Counter(r.get("verifier", "math") for r in rows["rl"])
    stats: dict[str, Any] = {"sft_sharegpt": len(sft), "sft_synthetic": len(arith["sft"]),
                             "dpo_hhh": len(dpo), "dpo_synthetic": len(arith["dpo"]), "rl": len(rows["rl"]),
                             **{f"rl_{family}": n for family, n in sorted(families.items())}}
    for name in rows:
        clean = []
        for r in rows[name]:
            # one text per row: a question in the user turn and its answer in the assistant turn (or an RL
            # prompt's answer field) only match as a pair
            hits = banned.match("\n".join(texts([r]) + [r.get("answer", "")]))
            tally.add(f"post/{name}", hits)
            if not hits:
                clean.append(r)
        stats[f"{name}_decontam"] = len(rows[name]) - len(clean)
        rows[name] = clean
    stats["sft"], stats["dpo"] = len(rows["sft"]), len(rows["dpo"])
    stats["dropped"] = {"sft": dict(sft_why), "dpo": dict(dpo_why)}
    return rows, stats


def measure_overlap(cfg: CurateConfig, eval_rows: dict[str, list[dict]], docs: list[Doc],
                    mixes: dict[str, tuple[dict[str, list[TokDoc]], dict]], long_docs: dict[str, list[TokDoc]],
                    post_rows: dict[str, list[dict]]) -> dict[str, dict]:
    """eval/contamination.json: per task, the items that share an n-gram with the training data as kept (the
    documents the mixes and long/ hold, once each, and the post-training rows; olmoflow/data/contamination.py)."""
    used = {d.doc_id for by_domain, _ in mixes.values() for group in by_domain.values() for d in group}
    used |= {d.doc_id for group in long_docs.values() for d in group}
    scan = OverlapScan(eval_rows, cfg.eval.overlap_ngram)
    scan.scan(d.text for d in docs if d.hash[:16] in used)
    scan.scan("\n".join(texts([r]) + [r.get("answer", "")]) for rows in post_rows.values() for r in rows)
    return scan.result()


# ---- 3. val split, tokenizer, tokens ---------------------------------------------------------------------

def split_val(docs: list[Doc], fraction: float) -> tuple[list[Doc], list[Doc]]:
    """(train, val), per domain by content hash."""
    by_domain: dict[str, list[Doc]] = defaultdict(list)
    for d in docs:
        by_domain[d.domain].append(d)
    train, val = [], []
    for group in by_domain.values():
        for d, is_val in zip(group, val_mask([d.hash for d in group], fraction)):
            (val if is_val else train).append(d)
    return train, val


def tokenizer_sample(texts_: list[str], max_chars: int) -> list[str]:
    """A hash-ordered sample of whole texts up to max_chars (always at least one)."""
    out, n = [], 0
    for t in sorted(texts_, key=lambda t: unit_interval(content_hash(t))):
        if out and n + len(t) > max_chars:
            continue
        out.append(t)
        n += len(t)
    return out


def build_tokenizer(cfg: CurateConfig, root: str, texts_: list[str], tmp: Path) -> tuple[Tokenizer, int]:
    """(tokenizer, characters it was trained on): the configured tokenizer.json, or a BPE trained on a sample."""
    if cfg.tokenizer.path:
        return load_tokenizer(local_files(root, cfg.tokenizer.path, "tokenizer.path", tmp)[0]), 0
    sample = tokenizer_sample(texts_, cfg.tokenizer.train_chars)
    tok = train_bpe(sample, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency, cfg.tokenizer.split_digits,
                    length=len(sample))
    return tok, sum(map(len, sample))


def tokenize(tok: Tokenizer, groups: list[list[str]], cfg: CurateConfig, ex: Executor) -> list[list[np.ndarray]]:
    """Token ids (with eos) of each group of texts, in one pass over the executor (the tokenizer travels as its
    JSON, which is how a `tokenizers.Tokenizer` pickles)."""
    ids = ex.map(functools.partial(encode_docs, tok, eos_id=tok.token_to_id(EOS)), [t for g in groups for t in g],
                 cfg.ray.batch_size, desc="tokenize")
    bounds = np.cumsum([0] + [len(g) for g in groups])
    return [ids[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def count_tokens(dropped: list[tuple[str, str, str]], dropped_tokens: list[int], train: list[Doc],
                 train_tokens: list[int], val: list[Doc], val_tokens: list[int], source_stats: dict[str, dict]
                 ) -> dict[str, dict[str, int]]:
    """Per-rule drop counts; fills in each source's dropped-per-rule, tokens_in, tokens_out and val_docs."""
    per_rule: dict[str, dict[str, int]] = defaultdict(lambda: {"docs": 0, "tokens": 0, "chars": 0})
    for s in source_stats.values():
        s.update(dropped={}, dropped_tokens={}, tokens_in=0, tokens_out=0, val_docs=0)
    for (src, rule, text), n in zip(dropped, dropped_tokens):
        per_rule[rule]["docs"] += 1
        per_rule[rule]["tokens"] += n
        per_rule[rule]["chars"] += len(text)
        source_stats[src]["dropped"][rule] = source_stats[src]["dropped"].get(rule, 0) + 1
        source_stats[src]["dropped_tokens"][rule] = source_stats[src]["dropped_tokens"].get(rule, 0) + n
        source_stats[src]["tokens_in"] += n
    for docs, counts, is_val in ((train, train_tokens, False), (val, val_tokens, True)):
        for d, n in zip(docs, counts):
            s = source_stats[d.source]
            s["tokens_in"] += n
            s["tokens_out"] += n
            s["val_docs"] += is_val
    return dict(per_rule)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def run(ctx: StageContext) -> dict[str, float]:
    cfg: CurateConfig = ctx.cfg.curate
    out, log = ctx.out, ctx.log
    clock: dict[str, float] = {}
    start = tick = time.time()

    def lap(step: str) -> None:
        nonlocal tick
        clock[step] = round(time.time() - tick, 2)
        tick = time.time()

    root = sources_root(cfg)
    present, absent = check_sources(cfg)
    mixes_cfg, dropped_domains = without_absent(cfg.mixes, present, absent, SYNTHETIC_DOMAINS)
    for src in absent:
        log.warning("curate: optional source %r is absent (%s matches no files under %s): skipped", src.name,
                    src.path, root)
    for name, doms in dropped_domains.items():
        log.warning("curate: mix %r: domain(s) %s have no source left; the other shares are re-normalised", name,
                    ", ".join(doms))
    cfg = cfg.model_copy(update={"sources": present, "mixes": mixes_cfg})
    with tempfile.TemporaryDirectory(prefix="olmoflow-curate-") as tmp, open_executor(cfg.ray, log) as ex:
        executor = ex.describe()
        lap("executor_start")
        arith = build_synthetic(cfg)
        # every eval task's items (questions and answers): what no training text may hold; the index travels to
        # the workers with clean_files
        eval_rows, eval_shots = build_eval(cfg, root, arith["eval"], Path(tmp))
        banned = DeconIndex({task: eval_items(task, rows) for task, rows in eval_rows.items()}, cfg.decontam)
        tally = banned.tally()
        lap("eval_sets")

        docs, dropped, source_stats = read_sources(cfg, root, banned, tally, ex, log)
        if not docs:
            raise ValueError("curate: no documents: curate.sources is empty")
        lap("read_clean")
        fuzzy: dict[str, float] = {}
        if cfg.fuzzy_dedup.enabled:
            docs, fuzzy = drop_near_duplicates(docs, cfg, source_stats, dropped, ex)
            log.info("curate: fuzzy dedup removed %d documents in %d clusters (largest %d, mean size %.2f; %d of "
                     "%d LSH candidates confirmed)", fuzzy["removed"], fuzzy["clusters"], fuzzy["max_cluster"],
                     fuzzy["mean_cluster"], fuzzy["confirmed"], fuzzy["candidates"])
            lap("fuzzy_dedup")

        post_rows, post_stats = build_post(cfg, root, arith, banned, tally, Path(tmp))
        train, val = split_val(docs, cfg.val_fraction)
        per_doc = cfg.synthetic.problems_per_doc
        synth = [Doc(f"synthetic-{dom}", dom, 0, 1.0, text, content_hash(text))
                 for dom in sorted(SYNTHETIC_DOMAINS) for text in
                 (synthetic.document(arith[dom][i:i + per_doc]) for i in range(0, len(arith[dom]), per_doc))]
        lap("post_split")

        tok, sample_chars = build_tokenizer(cfg, root, [d.text for d in train + synth], Path(tmp))
        lap("tokenizer")

        train_ids, val_ids, dropped_ids = tokenize(
            tok, [[d.text for d in train + synth], [d.text for d in val], [t for _, _, t in dropped]], cfg, ex)
        lap("tokenize")
    lap("executor_stop")
    pool = [TokDoc(d.source, d.domain, d.tier, d.weight, ids, d.hash[:16])
            for d, ids in zip(train + synth, train_ids)]
    train_tok = pool[:len(train)]  # the real documents; synthetic ones go only where a mix asks for them
    val_tokens = [ids.size for ids in val_ids]
    dropped_tokens = [ids.size for ids in dropped_ids]

    mixes = {name: plan_mix(name, mix, pool, cfg.seed) for name, mix in cfg.mixes.items()}
    long_docs: dict[str, list[TokDoc]] = defaultdict(list)
    for d in train_tok:
        if d.ids.size >= cfg.long_min_tokens:
            long_docs[d.domain].append(d)
    if not long_docs:
        log.warning("curate: no document reaches long_min_tokens=%d; long/ is empty", cfg.long_min_tokens)
    contamination = measure_overlap(cfg, eval_rows, train + synth, mixes, long_docs, post_rows)
    lap("contamination")

    # ---- everything checked: write the payload --------------------------------------------------------
    tok.save(str(out / "tokenizer.json"))
    for name, (by_domain, _) in mixes.items():
        write_domains(out / name, by_domain, cfg.shard_tokens)
    write_domains(out / "long", long_docs, cfg.shard_tokens)
    val_tok: dict[str, list[TokDoc]] = defaultdict(list)
    for d, ids in zip(val, val_ids):
        val_tok[d.domain].append(TokDoc(d.source, d.domain, d.tier, d.weight, ids, d.hash[:16]))
    # held-out text (bits per byte are tokenizer-independent) and the same documents as token shards
    write_domains(out / "val", val_tok, cfg.shard_tokens)
    for dom in sorted(val_tok):
        _write_jsonl(out / "val" / f"{dom}.jsonl", [{"text": d.text} for d in val if d.domain == dom])
    for name, rows in post_rows.items():
        _write_jsonl(out / "post" / f"{name}.jsonl", rows)
    for task, rows in eval_rows.items():
        _write_jsonl(out / "eval" / f"{task}.jsonl", rows)
    for task, rows in eval_shots.items():
        _write_jsonl(out / "eval" / f"{task}.train.jsonl", rows)
    (out / "eval" / "contamination.json").write_text(json.dumps(contamination, indent=1, sort_keys=True))
    lap("write")

    # ---- stats -----------------------------------------------------------------------------------------
    stats = {
        "sources": source_stats,
        "rules": count_tokens(dropped, dropped_tokens, train, [d.ids.size for d in train_tok], val, val_tokens,
                              source_stats),
        "mixes": {name: st for name, (_, st) in mixes.items()},
        "long": {dom: {"docs": len(v), "tokens": int(sum(d.ids.size for d in v))} for dom, v in long_docs.items()},
        "val": {dom: sum(d.domain == dom for d in val) for dom in sorted({d.domain for d in val})},
        "synthetic": {dom: {"docs": sum(d.domain == dom for d in synth), "problems": len(arith[dom])}
                      for dom in sorted(SYNTHETIC_DOMAINS)},
        "absent": {"sources": {s.name: {"path": s.path, "domain": s.domain} for s in absent},
                   "mix_domains": dropped_domains},
        "post": {k: v for k, v in post_stats.items() if k != "dropped"},
        "post_dropped": post_stats["dropped"],
        "eval": {task: len(rows) for task, rows in eval_rows.items()},
        "eval_fewshot": {task: len(rows) for task, rows in eval_shots.items()},
        "contamination": {t: {k: v for k, v in c.items() if k != "ids"} for t, c in contamination.items()},
        "fuzzy_dedup": fuzzy,
        "decontam": tally.as_stats(),
        "tokenizer": {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "trained_on_chars": sample_chars,
                      "path": cfg.tokenizer.path},
        "train_tokens": int(sum(d["tokens"] for d in mixes["pretrain"][1].values())) if "pretrain" in mixes else 0,
        "executor": executor,  # how it ran, like "seconds": the same artifact comes from either executor
    }
    lengths = defaultdict(list)
    for d in train_tok:
        lengths[d.domain].append(int(d.ids.size))
    ctx.log_artifact(length_histogram(lengths, out / "plots" / "doc_lengths.png"))
    lap("stats")
    stats["seconds"] = {**clock, "total": round(time.time() - start, 2)}
    (out / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True))
    report, *plots = write_report(stats, out)
    ctx.log_artifact(report, "report")
    for p in plots:
        ctx.log_artifact(p)
    ctx.log_metrics(flat_metrics(stats))
    # what share of each eval set the kept training data still overlaps (eval/contamination.json has the ids)
    ctx.log_metrics({f"contamination/{t}/{k}": float(c[k]) for t, c in contamination.items()
                     for k in ("contaminated", "share")})
    log.info("curate: eval items with a %d-gram in the training data: %s", cfg.eval.overlap_ngram,
             ", ".join(f"{t} {c['contaminated']}/{c['items']}" for t, c in contamination.items()))
    log.info("curate: %d documents, %d pretrain tokens, vocab %d, %.1fs\n%s", len(train) + len(val),
             stats["train_tokens"], stats["tokenizer"]["vocab_size"], stats["seconds"]["total"], render_text(stats))
    return {
        "train_tokens": float(stats["train_tokens"]),
        "midtrain_tokens": float(sum(d["tokens"] for d in stats["mixes"].get("midtrain", {}).values())),
        "long_tokens": float(sum(d["tokens"] for d in stats["long"].values())),
        "docs": float(len(train) + len(val)),
        "val_docs": float(len(val)),
        "vocab_size": float(stats["tokenizer"]["vocab_size"]),
        "sft_conversations": float(len(post_rows["sft"])),
        "dpo_pairs": float(len(post_rows["dpo"])),
        "rl_prompts": float(len(post_rows["rl"])),
    }
