"""A tokenizer's identity (what an index and a checkpoint must share), and a text's token ids with the character
range each token covers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tokenizers import Tokenizer


def tokenizer_id(path: Path) -> str:
    """A short hash of the tokenizer's content (its JSON, keys sorted), the same for byte-different copies."""
    canon = json.dumps(json.loads(Path(path).read_text(encoding="utf-8")), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def encode(tok: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(token ids, each token's [start, end) in `text`), no special tokens added."""
    enc = tok.encode(text, add_special_tokens=False)
    return list(enc.ids), [tuple(o) for o in enc.offsets]
