"""The tokenizer: a byte-level BPE trained with HF `tokenizers` on the curated training text (CPU presets), or a
given tokenizer.json (cluster presets: dolma2). Both must hold the four special tokens of the payload contract.

Byte-level means every string round-trips exactly (no unknown token). Numbers are split into single digits
before BPE by default, so "1234" is four tokens and a small model sees arithmetic digit by digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS, PAD, IM_START, IM_END = "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [EOS, PAD, IM_START, IM_END]


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, split_digits: bool = True,
              length: int | None = None) -> Tokenizer:
    """A byte-level BPE of exactly vocab_size ids (specials first: <|endoftext|> is id 0), unless the text is
    too small to learn that many merges."""
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return tok


def load_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise ValueError(f"curate: tokenizer.path {path}: not a file")
    tok = Tokenizer.from_file(str(path))
    check_specials(tok, str(path))
    return tok


def check_specials(tok: Tokenizer, where: str) -> None:
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"curate: tokenizer {where}: lacks the special token {missing[0]}")


def encode_docs(tok: Tokenizer, texts: Sequence[str], eos_id: int, batch: int = 256) -> list[np.ndarray]:
    """Token ids (uint32) of each text with eos appended; encode_batch runs on all cores in Rust."""
    out: list[np.ndarray] = []
    for i in range(0, len(texts), batch):
        for enc in tok.encode_batch(list(texts[i:i + batch]), add_special_tokens=False):
            ids = np.empty(len(enc.ids) + 1, dtype=np.uint32)
            ids[:-1] = enc.ids
            ids[-1] = eos_id
            out.append(ids)
    return out
