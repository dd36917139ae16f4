"""A miniature curate artifact for the trace tests: a byte-level BPE trained on its text, pretrain / midtrain / long
token shards per domain with their document tables (written by the curate code: mixing.write_domains), held-out
val/ documents, and post/ rows, with sentences planted in known documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

from olmoflow.data.mixing import TokDoc, write_domains
from olmoflow.data.tokenizer import EOS, encode_docs, train_bpe

PLANTED = {  # (part, domain, source, doc_id): a sentence only that document holds
    ("pretrain", "web", "web-crawl", "w3"): "The lighthouse keeper counted forty seven gulls before the storm.",
    ("midtrain", "math", "synthetic-math", "m1"): "Seven plus eight equals fifteen in every base above nine.",
    ("long", "books", "gutenberg", "b0"): "Captain Orrin folded the brittle chart along its faded meridian.",
}
SFT_ANSWER = "Photosynthesis turns sunlight, water and carbon dioxide into sugar."
HELD_OUT = "The cartographer Velmira sketched seventeen islands beneath a copper moon."
ABSENT = "Quantum marmalade negotiates with purple bicycles during zebra elections."


def _filler(seed: int, n: int) -> str:
    rng = random.Random(seed)
    words = ("river stone market window garden letter morning village candle bridge shadow harbor lantern meadow "
             "orchard thunder").split()
    return " ".join(f"{rng.choice(words).title()} {rng.choice(words)} {rng.choice(words)} {rng.choice(words)}."
                    for _ in range(n))


def make_dataset(root: Path, shard_tokens: int = 256) -> Path:
    """The payload folder of a tiny curate artifact; returns it."""
    out = root / "dataset"
    docs: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for i, (part, dom) in enumerate([("pretrain", "web"), ("pretrain", "code"), ("midtrain", "math"),
                                     ("long", "books")]):
        src = {"web": "web-crawl", "code": "github", "math": "synthetic-math", "books": "gutenberg"}[dom]
        prefix = dom[0]
        rows = []
        for j in range(6):
            text = _filler(100 * i + j, 6 if part != "long" else 30)
            planted = PLANTED.get((part, dom, src, f"{prefix}{j}"))
            if planted:
                text = f"{text} {planted} {_filler(7 * j + i, 3)}"
            rows.append((src, f"{prefix}{j}", text))
        docs[(part, dom)] = rows
    val_text = f"{_filler(999, 4)} {HELD_OUT}"
    sft = [{"messages": [{"role": "user", "content": "What does photosynthesis do?"},
                         {"role": "assistant", "content": SFT_ANSWER}]}]
    corpus = [t for rows in docs.values() for _, _, t in rows] + [val_text, SFT_ANSWER]
    tok = train_bpe(corpus * 3, vocab_size=400, min_frequency=2)
    eos = tok.token_to_id(EOS)
    out.mkdir(parents=True)
    tok.save(str(out / "tokenizer.json"))
    for (part, dom), rows in docs.items():
        ids = encode_docs(tok, [t for _, _, t in rows], eos)
        write_domains(out / part, {dom: [TokDoc(s, dom, 0, 1.0, x, d) for (s, d, _), x in zip(rows, ids)]},
                      shard_tokens)
    val_ids = encode_docs(tok, [val_text], eos)
    write_domains(out / "val", {"web": [TokDoc("web-crawl", "web", 0, 1.0, val_ids[0], "v0")]}, shard_tokens)
    (out / "val" / "web.jsonl").write_text(json.dumps({"text": val_text}) + "\n")
    (out / "post").mkdir()
    (out / "post" / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    (out / "post" / "rl.jsonl").write_text(json.dumps({"prompt": "What is 2 + 3?", "answer": "5"}) + "\n")
    return out
