"""OlmoTrace's two figures: the latency of tracing a 100-token model output, and index build throughput.

    python bench/trace.py                       # a synthetic curate artifact (~1M tokens), built in a temp dir
    python bench/trace.py --dataset DIR         # a curate artifact's payload folder (e.g. a smoke run's, in the store)
    python bench/trace.py --tokens 4000000 --outputs 50

Build: the whole trace-index work (the shards and post text read, remapped to 16-bit ids and written with the
document table, infini-gram's suffix array) over the index's training tokens, as tokens/s. Latency: find_spans
(tokenize, maximal self-contained spans, rank, up to 10 documents each with a snippet, merge) on 100-token outputs
that are half a training document's text and half made-up words, after one warm-up; median and p90, ms.
Target (issue 15): <= 100 ms per 100-token output on this machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from olmoflow.data.mixing import TokDoc, write_domains  # noqa: E402
from olmoflow.data.tokenizer import EOS, encode_docs, train_bpe  # noqa: E402
from olmoflow.trace.build import build_index  # noqa: E402
from olmoflow.trace.index import TraceIndex  # noqa: E402
from olmoflow.trace.spans import find_spans  # noqa: E402

WORDS = ("the a of and to in river stone market window garden letter morning village candle bridge shadow harbor "
         "lantern meadow orchard thunder quiet narrow golden heavy patient distant bright hollow gentle sudden "
         "ancient careful silver crossed watched mended counted carried painted followed answered gathered "
         "measured beside beyond toward behind under across slowly gladly early twice often").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
    name = "".join(rng.choice("bdfklmnprstv") + rng.choice("aeiou") for _ in range(3)).title()
    words.insert(rng.randrange(len(words)), name)
    return " ".join(words).capitalize() + "."


def synthetic_dataset(root: Path, tokens: int, seed: int = 0) -> Path:
    """A curate artifact's training parts: pretrain/web shards with their document table, and a tokenizer."""
    rng = random.Random(seed)
    docs, n = [], 0
    while n < tokens * 6:  # ~6 characters a token for this text and a 2k BPE
        text = " ".join(sentence(rng) for _ in range(rng.randint(5, 40)))
        docs.append(text)
        n += len(text)
    tok = train_bpe(docs[:2000], vocab_size=2048)
    out = root / "dataset"
    out.mkdir(parents=True)
    tok.save(str(out / "tokenizer.json"))
    ids = encode_docs(tok, docs, tok.token_to_id(EOS))
    write_domains(out / "pretrain", {"web": [TokDoc("web", "web", 0, 1.0, x, f"d{i}") for i, x in enumerate(ids)]},
                  1 << 24)
    return out


def outputs(index: TraceIndex, dataset: Path, n: int, seed: int = 1) -> list[str]:
    """100-token texts: 50 tokens of a training document, then made-up words, to 100 tokens."""
    import numpy as np

    from olmoflow.data.shards import ShardSet

    rng = random.Random(seed)
    ss = ShardSet(dataset / "pretrain")
    toks, offs = ss.tokens[0], ss.offsets[0]
    texts = []
    while len(texts) < n:
        d = rng.randrange(offs.size - 1)
        a, b = int(offs[d]), int(offs[d + 1]) - 1
        if b - a < 60:
            continue
        start = rng.randrange(a, b - 50)
        copied = index.tokenizer.decode(np.asarray(toks[start:start + 50]).tolist())
        made_up = " ".join("".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiouy") for _ in range(3))
                           for _ in range(60))
        ids = index.tokenizer.encode(copied + " " + made_up).ids[:100]
        texts.append(index.tokenizer.decode(ids))
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="", help="a curate artifact's payload folder (default: a synthetic one)")
    ap.add_argument("--tokens", type=int, default=1_000_000, help="training tokens of the synthetic artifact")
    ap.add_argument("--outputs", type=int, default=30, help="100-token outputs traced")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="olmoflow-bench-trace-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        dataset = Path(args.dataset) if args.dataset else synthetic_dataset(tmp, args.tokens)
        if not args.dataset:
            print(f"synthetic curate artifact: {time.perf_counter() - t:.1f}s")
        parts = ["pretrain", "midtrain", "long", "post"]
        t = time.perf_counter()
        meta = build_index(dataset, tmp / "index", parts)
        build = time.perf_counter() - t
        print(f"build: {meta['tokens']:,} tokens, {meta['docs']:,} documents, {meta['distinct_ids']} distinct ids in "
              f"{build:.2f}s = {meta['tokens'] / build:,.0f} tokens/s (writing {meta['seconds']['write']:.2f}s, "
              f"suffix array {meta['seconds']['suffix_array']:.2f}s)")
        index = TraceIndex.open(str(tmp / "index"))
        texts = outputs(index, dataset, args.outputs)
        find_spans(index, texts[0])  # warm-up: the engine's first pages
        times, found = [], []
        for text in texts:
            t = time.perf_counter()
            spans = find_spans(index, text)
            times.append(1000 * (time.perf_counter() - t))
            found.append(len(spans))
        times.sort()
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"trace a 100-token output: median {statistics.median(times):.1f} ms, p90 {p90:.1f} ms, max "
              f"{times[-1]:.1f} ms over {len(times)} outputs ({statistics.mean(found):.1f} spans each; "
              "target <= 100 ms)")
        index.close()


if __name__ == "__main__":
    main()
