"""Shared pieces for the eval tests: a small byte-level BPE with Olmo 3's special tokens, a bigram stand-in model
whose next-token distribution is a known table (so log-likelihoods can be computed by hand), and a tiny Olmo3."""

from __future__ import annotations

import kit
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from olmoflow.data.tokenizer import train_bpe
from olmoflow.model import Olmo3

TEXT = ("Question: Which gas do plants take in from the air?\nAnswer: carbon dioxide\n\n"
        "The quick brown fox jumps over the lazy dog. Plants need sunlight and water to grow. "
        "What is 12 plus 7? Answer: 19. The sum of 3 and 4 is 7. A magnet attracts iron nails. "
        "Ice melts into water when it is warm; water boils into steam when it is hot. ") * 20


class BigramLM(torch.nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: the next token depends only on the current one."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table.float())

    def forward(self, input_ids: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.table[input_ids]

    def hand_logprob(self, tokens: list[int]) -> float:
        """Sum of log p(tokens[i] | tokens[i-1]) for i >= 1, in float64 numpy: the oracle the tests compare with."""
        table = self.table.detach().numpy().astype(np.float64)
        total = 0.0
        for prev, nxt in zip(tokens[:-1], tokens[1:]):
            row = table[prev]
            total += row[nxt] - row.max() - np.log(np.exp(row - row.max()).sum())
        return float(total)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    # split_digits=False: the tokenizer these tests were written against (curate's default splits numbers).
    return train_bpe([TEXT], 400, split_digits=False)


@pytest.fixture
def bigram(tokenizer: Tokenizer) -> BigramLM:
    g = torch.Generator().manual_seed(0)
    v = tokenizer.get_vocab_size()
    return BigramLM(torch.randn(v, v, generator=g) * 2)


@pytest.fixture
def tiny_olmo(tokenizer: Tokenizer) -> Olmo3:
    """A 2-layer Olmo3 (sliding window 8, so windows and padding are exercised) with visibly non-uniform logits."""
    return kit.tiny_olmo(tokenizer.get_vocab_size(), sliding_window=8).eval()
