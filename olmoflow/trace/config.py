"""The trace-index stage's config: which parts of the curate artifact go into the index."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from olmoflow._base import Section

Part = Literal["pretrain", "midtrain", "long", "post"]


class TraceIndexConfig(Section):
    parts: list[Part] = Field(default_factory=lambda: ["pretrain", "midtrain", "long", "post"], min_length=1)
    """What the training stages consumed: the pretrain, midtrain and long-context token shards, and the SFT, DPO
    and RL text (post/, tokenized with the artifact's tokenizer). Held-out val/ never goes in."""
    mem_gib: int = Field(4, ge=1)
    """Memory the suffix-array builder may plan for (infini-gram's --mem); it splits larger corpora into batches."""
