"""Fuzzy dedup throughput and quality: olmoflow's MinHash LSH vs datatrove's MinHash dedup, in one run.

    python bench/dedup.py                         # 6000 documents (bench/planted.py), 1 CPU each
    python bench/dedup.py --docs 3000 --threads 2 --seed 1

Both systems get the same texts and the same MinHash setup: word 5-grams of the lowercased, whitespace-split text,
26 bands × 11 rows, 32-bit signature values. datatrove is given a whitespace word tokenizer and a text
normalization of only lowercase + whitespace (its defaults also drop punctuation and rewrite digits, and its
English tokenizer needs spaCy), so both hash the same shingles. The one design difference stays: olmoflow confirms
each LSH candidate with the exact Jaccard (>= 0.8) before removing it, datatrove removes every candidate.

Each is timed from texts in memory to the set of removed document indices. datatrove runs its own four-step
pipeline (MinhashDedupSignature → MinhashDedupBuckets → MinhashDedupCluster → MinhashDedupFilter, each a
LocalPipelineExecutor) in a temp dir, reading its input JSONL (written before its clock starts) and writing its
intermediate files, as it is designed to; its filter writes the removed documents, whose ids are read back.
olmoflow runs fuzzy_dedup in-process, or with --threads N its signatures in N worker processes and the clustering in
this one. Both get N worker processes and OMP/MKL/OpenBLAS threads = N. Runs alternate (--repeats, median time
reported), so load from other processes hits both alike.

Two truths score the removals (bench/planted.py): the planted families (edit rates 1-10%: most copies past ~2%
edits fall below Jaccard 0.8), and the families cut to what this configuration is meant to find, the connected
components of same-family pairs whose exact 5-gram Jaccard is >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import planted  # noqa: E402  (bench/ is not a package)

BANDS, ROWS, NGRAM, THRESHOLD = 26, 11, 5, 0.8


def olmoflow_dedup(texts: list[str], threads: int, threshold: float = THRESHOLD) -> set[int]:
    """Indices olmoflow's fuzzy dedup removes; threads > 1 computes signatures in that many processes."""
    import numpy as np

    from olmoflow.data.config import FuzzyDedupConfig
    from olmoflow.data.minhash import Shingles, cluster, fuzzy_dedup, signatures_for

    cfg = FuzzyDedupConfig(ngram=NGRAM, bands=BANDS, rows=ROWS, threshold=threshold)
    if threads == 1:
        result = fuzzy_dedup(texts, cfg)
    else:
        cuts = [len(texts) * k // threads for k in range(threads + 1)]
        with ProcessPoolExecutor(threads, mp_context=get_context("fork")) as pool:
            parts = list(pool.map(signatures_for, [texts[lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:])],
                                  [cfg] * threads))
        result = cluster(np.concatenate([p[0] for p in parts]), Shingles.concat([p[1] for p in parts]), cfg)
    return {i for i, keep in enumerate(result.keep) if not keep}


@contextmanager
def quiet(log: Path):
    """Send file descriptor 2 (datatrove's loguru and tqdm output, its worker processes' too) to `log`."""
    saved = os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def write_datatrove_input(texts: list[str], folder: Path, threads: int) -> None:
    """One JSONL file per worker (contiguous slices), each line {"text", "id": its index}."""
    folder.mkdir(parents=True)
    cuts = [len(texts) * k // threads for k in range(threads + 1)]
    for k in range(threads):
        with open(folder / f"{k:05d}.jsonl", "w") as f:
            for i in range(cuts[k], cuts[k + 1]):
                f.write(json.dumps({"text": texts[i], "id": str(i)}) + "\n")


def datatrove_dedup(folder: Path, threads: int) -> set[int]:
    """Indices datatrove's four MinHash steps remove from the JSONL corpus in folder/input."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        """str.split() words, as olmoflow's shingles use."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS,
                           hash_config=HashConfig(precision=32),
                           norm_config=TextNormConfig(remove_punctuation=False, norm_unicode_diacritics=False,
                                                      norm_numbers=False))

    def reader() -> JsonlReader:
        return JsonlReader(str(folder / "input"), glob_pattern="*.jsonl", add_file_path=False)

    def run(name: str, pipeline: list, tasks: int) -> None:
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(threads, tasks),
                              logging_dir=str(folder / "logs" / name)).run()

    with quiet(folder / "datatrove.log"):
        run("signature", [reader(), MinhashDedupSignature(str(folder / "sigs"), config=config,
                                                          language=Whitespace())], threads)
        run("buckets", [MinhashDedupBuckets(str(folder / "sigs"), str(folder / "buckets"), config=config)], BANDS)
        run("cluster", [MinhashDedupCluster(str(folder / "buckets"), str(folder / "remove"), config=config)], 1)
        run("filter", [reader(), MinhashDedupFilter(str(folder / "remove"), exclusion_writer=JsonlWriter(
            str(folder / "removed"), compression=None))], threads)
    removed = set()
    for path in sorted((folder / "removed").glob("*.jsonl")):
        with open(path) as f:
            removed.update(int(json.loads(line)["id"]) for line in f)
    return removed


def threshold_families(corpus: planted.Planted) -> list[int]:
    """Each document's component (smallest member) in the graph of same-family pairs with 5-gram Jaccard >= 0.8."""
    members: dict[int, list[int]] = {}
    for i, f in enumerate(corpus.family):
        members.setdefault(f, []).append(i)
    sets = [planted.grams(t.lower().split()) for t in corpus.texts]
    root = list(range(len(corpus.texts)))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for group in members.values():
        for a, i in enumerate(group):
            for j in group[a + 1:]:
                if len(sets[i] & sets[j]) >= THRESHOLD * len(sets[i] | sets[j]):
                    ri, rj = find(i), find(j)
                    root[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(len(root))]


def clock(fn: Callable[[], set[int]]) -> tuple[float, set[int]]:
    t0 = time.perf_counter()
    removed = fn()
    return time.perf_counter() - t0, removed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=6000, help="documents in the planted corpus")
    ap.add_argument("--threads", type=int, default=1, help="worker processes (and BLAS threads) for each system")
    ap.add_argument("--seed", type=int, default=0, help="seeds the planted corpus")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each system (alternating); median time")
    ap.add_argument("--threshold", type=float, nargs="+", default=[THRESHOLD, 0.5],
                    help="olmoflow's exact-Jaccard bars, one row each (curate's default 0.8, Olmo 3's rule; 0.5 "
                         "confirms nearly every LSH candidate, which is datatrove's rule)")
    ap.add_argument("--sources", type=Path, default=Path(".olmoflow/sources"), help="where `make data` put sources")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    t0 = time.perf_counter()
    corpus = planted.build(args.docs, args.seed, args.sources if args.sources.is_dir() else None)
    copies = [j for j, r in zip(corpus.jaccard, corpus.rate) if r]
    print(f"corpus: {len(corpus.texts)} documents ({len(corpus.texts) - len(copies)} originals, {len(copies)} "
          f"copies at 1-10% word edits; {sum(j >= THRESHOLD for j in copies) / len(copies):.0%} of copies at "
          f"5-gram Jaccard >= {THRESHOLD} with their original), built in {time.perf_counter() - t0:.1f} s")
    components = threshold_families(corpus)

    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        folders = [Path(tmp) / f"run{k}" for k in range(args.repeats)]
        for folder in folders:  # datatrove reads its corpus from disk: written before any clock starts
            write_datatrove_input(corpus.texts, folder / "input", args.threads)
        # warm-up (imports, olmoflow's power tables, datatrove's first pool) on a slice, outside the clocks
        olmoflow_dedup(corpus.texts[:200], args.threads)
        write_datatrove_input(corpus.texts[:200], Path(tmp) / "warmup" / "input", args.threads)
        datatrove_dedup(Path(tmp) / "warmup", args.threads)
        ours = {f"olmoflow@{t:g}": t for t in args.threshold}
        got: dict[str, list[tuple[float, set[int]]]] = {**{name: [] for name in ours}, "datatrove": []}
        for folder in folders:
            for name, t in ours.items():
                got[name].append(clock(lambda t=t: olmoflow_dedup(corpus.texts, args.threads, t)))
            got["datatrove"].append(clock(lambda folder=folder: datatrove_dedup(folder, args.threads)))
    runs = []
    for name, results in got.items():
        assert all(r == results[0][1] for _, r in results), f"{name}: removals differ between repeats"
        runs.append((name, statistics.median(t for t, _ in results), results[0][1]))

    n = len(corpus.texts)
    print(f"\n{'system':<13} {'docs':>6} {'seconds':>8} {'docs/s':>8} {'removed':>8} {'precision':>9} {'recall':>7} "
          f"{'F1':>6}   {'P@0.8':>6} {'R@0.8':>6} {'F1@0.8':>6}")
    for name, seconds, removed in runs:
        fam, thr = planted.score(removed, corpus.family), planted.score(removed, components)
        print(f"{name:<13} {n:>6} {seconds:>8.2f} {n / seconds:>8.0f} {len(removed):>8} {fam.precision:>9.3f} "
              f"{fam.recall:>7.3f} {fam.f1:>6.3f}   {thr.precision:>6.3f} {thr.recall:>6.3f} {thr.f1:>6.3f}")
    theirs = runs[-1][1]
    print()
    for name, seconds, _ in runs[:-1]:
        print(f"{name} / datatrove: {theirs / seconds:.2f}x docs/s")
    print(f"({args.threads} worker(s) each; precision/recall/F1 against the planted families, @0.8 against their "
          f"Jaccard >= 0.8 components)")


if __name__ == "__main__":
    main()
