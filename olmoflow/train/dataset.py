"""Reading a dataset artifact for training: its tokenizer, its token shards per domain, its held-out text.

The held-out set is the dataset's `val/{domain}.jsonl` text (curate keeps it out of every shard), tokenized here
with the tokenizer the model is trained with and ended with eos like a training document. So val_loss never
scores a training token, and it compares stages that share a tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from olmoflow.data.shards import ShardSet
from olmoflow.model.checkpoint import EOS, PAD
from olmoflow.train.packing import Docs


def open_tokenizer(path: Path) -> Tokenizer:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; a dataset or checkpoint artifact holds tokenizer.json")
    return Tokenizer.from_file(str(path))


def special_ids(tok: Tokenizer, where: Path) -> tuple[int, int]:
    """(eos, pad) ids; both special tokens are part of the payload contract."""
    eos, pad = tok.token_to_id(EOS), tok.token_to_id(PAD)
    if eos is None or pad is None:
        raise ValueError(f"{where}: the tokenizer lacks {EOS if eos is None else PAD}")
    return eos, pad


def check_vocab(tok: Tokenizer, where: Path, vocab_size: int) -> None:
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise ValueError(f"{where}: the tokenizer has {size} tokens but model.vocab_size is {vocab_size}; "
                         f"raise model.vocab_size to at least {size}")


def check_same_tokenizer(a: Path, b: Path) -> None:
    """Training a checkpoint on tokens of another tokenizer would be silent garbage: refuse it."""
    va, vb = open_tokenizer(a).get_vocab(with_added_tokens=True), open_tokenizer(b).get_vocab(with_added_tokens=True)
    if va != vb:
        raise ValueError(f"the dataset's tokenizer {a} differs from the checkpoint's tokenizer {b}")


def domain_docs(root: Path) -> dict[str, Docs]:
    """One Docs per domain folder `root/{domain}/` holding shards."""
    found = {p.name: Docs.from_shards(p.name, ShardSet(p))
             for p in sorted(root.iterdir()) if p.is_dir() and any(p.rglob("*.npy"))} if root.is_dir() else {}
    if not found:
        raise FileNotFoundError(f"{root}: no domain folders with token shards")
    return found


def _val_texts(dataset: Path) -> dict[str, list[str]]:
    files = sorted((dataset / "val").glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{dataset / 'val'}: no held-out documents (val/*.jsonl); "
                                f"curate.val_fraction must be above 0 for a val_loss")
    return {f.stem: [json.loads(line)["text"] for line in f.read_text().splitlines() if line.strip()]
            for f in files}


def _encoded(texts: list[str], tok: Tokenizer, eos: int) -> Iterator[np.ndarray]:
    """Token ids (eos appended) of the texts in a fixed random order, encoded lazily in small batches."""
    order = np.random.default_rng(0).permutation(len(texts))
    for lo in range(0, len(order), 64):
        for enc in tok.encode_batch([texts[i] for i in order[lo:lo + 64]], add_special_tokens=False):
            yield np.array(enc.ids + [eos], dtype=np.uint32)


def heldout_docs(dataset: Path, tok: Tokenizer, eos: int, max_tokens: int = 0) -> dict[str, Docs]:
    """Held-out documents per domain from `val/*.jsonl`: a fixed random order of each domain's documents, taken
    until the domain's even share of `max_tokens` is used (0 = all); the document that crosses the budget keeps
    only its beginning, so one long book cannot make the val pass cost more than asked."""
    texts = _val_texts(dataset)
    budget = max_tokens // len(texts) if max_tokens else 0
    out = {}
    for name, domain_texts in texts.items():
        docs, total = [], 0
        for ids in _encoded(domain_texts, tok, eos):
            docs.append(ids[:budget - total] if budget else ids)
            total += docs[-1].size
            if budget and total >= budget:
                break
        docs = [d for d in docs if d.size > 1]
        if docs:
            out[name] = Docs.from_list(name, docs)
    return out


def long_heldout(dataset: Path, tok: Tokenizer, eos: int, min_tokens: int, count: int) -> list[np.ndarray]:
    """Up to `count` held-out documents longer than `min_tokens`, cut to min_tokens + 1 (for loss by position)."""
    found = []
    for domain_texts in _val_texts(dataset).values():
        for ids in _encoded(domain_texts, tok, eos):
            if ids.size > min_tokens:
                found.append(ids[:min_tokens + 1])
                if len(found) == count:
                    return found
    return found
