"""Held-out language modelling: loss per token and bits-per-byte of each `val/{domain}.jsonl`.

bits-per-byte = (sum of token NLL in nats) / (ln 2 × UTF-8 bytes of the text). It does not depend on the
tokenizer, so models with different vocabularies compare. Each document is scored as it was trained: preceded
by <|endoftext|> (every document ends with one, so that is what comes before a document in packed training data),
which lets the first token be scored too; the closing <|endoftext|> is not scored, so tokens and bytes cover
exactly the same text. Documents longer than seq_len are scored in sliding windows (see lm.windows).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from olmoflow.evals.lm import Progress, Request, document_requests, no_progress, score_groups

FORMULA = "bpb = sum(token NLL in nats) / (ln 2 * UTF-8 bytes); loss = sum(NLL) / tokens"


@dataclass
class DomainScore:
    docs: int
    tokens: int
    bytes: int
    nats: float

    @property
    def loss(self) -> float:
        return self.nats / max(self.tokens, 1)

    @property
    def bpb(self) -> float:
        return self.nats / (math.log(2) * max(self.bytes, 1))

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "loss_per_token": self.loss, "bpb": self.bpb,
                "bytes_per_token": self.bytes / max(self.tokens, 1)}


def read_docs(path: Path, max_docs: int = 0, max_bytes: int = 0) -> list[str]:
    """The `text` of each line of a val jsonl: at most max_docs documents and max_bytes UTF-8 bytes (the last
    document cut at a character boundary; 0 = no limit); a bad line names the file and line."""
    docs: list[str] = []
    budget = max_bytes or float("inf")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
                raw = text.encode("utf-8")
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{path}:{n}: expected a JSON object with a 'text' string") from None
            if len(raw) > budget:
                text = raw[:int(budget)].decode("utf-8", errors="ignore")
            if text:
                docs.append(text)
                budget -= len(text.encode("utf-8"))
            if (max_docs and len(docs) >= max_docs) or budget <= 0:
                break
    return docs


def score_domain(model: torch.nn.Module, tokenizer: Tokenizer, docs: list[str], *, seq_len: int, overlap: int,
                 batch_size: int, progress: Progress = no_progress, desc: str = "") -> DomainScore:
    start_id = tokenizer.token_to_id("<|endoftext|>")
    if start_id is None:
        raise ValueError("tokenizer has no <|endoftext|> token to start held-out documents with")
    requests: list[Request] = []
    n_tokens = n_bytes = 0
    for text in docs:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        requests += document_requests(ids, start_id, seq_len, overlap)
        n_tokens += len(ids)
        n_bytes += len(text.encode("utf-8"))
    # each window alone (nothing to share): short documents still share rows, and the LM head runs in chunks
    scored = score_groups(model, [[r] for r in requests], batch_size=batch_size, max_len=seq_len,
                          progress=progress, desc=desc)
    return DomainScore(docs=len(docs), tokens=n_tokens, bytes=n_bytes, nats=-sum(s[0].logprob for s in scored))


def pooled(scores: dict[str, DomainScore]) -> DomainScore:
    """All domains as one held-out set: a byte-weighted average of their bpb."""
    return DomainScore(docs=sum(s.docs for s in scores.values()), tokens=sum(s.tokens for s in scores.values()),
                       bytes=sum(s.bytes for s in scores.values()), nats=sum(s.nats for s in scores.values()))
