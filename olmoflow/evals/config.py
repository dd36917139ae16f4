"""Knobs of the eval stage (OLMES-style): which tasks, how many items, how long a context, how prompts look."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from olmoflow._base import Section

TASK_NAMES = ("arc_easy", "arithmetic")
"""The task registry's names (olmoflow.evals.tasks.TASKS); listed here so a typo fails at config load."""


class EvalConfig(Section):
    tasks: list[Literal["arc_easy", "arithmetic"]] = ["arc_easy", "arithmetic"]
    """Benchmarks to score; see olmoflow.evals.tasks for the registry."""
    max_items: int = Field(0, ge=0)
    """Items per task (the first N of eval/{task}.jsonl, after the few-shot examples); 0 = all."""
    num_shots: int = Field(0, ge=0)
    """Worked examples put before each question, taken from the start of the task file and then not scored
    (OLMES uses 5 fixed training examples for ARC; our eval files carry no training split)."""
    bpb_max_docs: int = Field(0, ge=0)
    """Held-out documents per domain for loss / bits-per-byte (the first N of val/{domain}.jsonl); 0 = all."""
    bpb_max_bytes: int = Field(0, ge=0)
    """Held-out text per domain in UTF-8 bytes: documents in file order, the last one cut to fit (a document
    can be a whole play); 0 = no limit."""
    seq_len: int = Field(2048, gt=1)
    """Longest token sequence per forward pass; capped at the model's max_seq_len."""
    bpb_overlap: int = Field(512, ge=0)
    """Tokens of context carried into each next window of a document longer than seq_len (a sliding window);
    0 = plain consecutive chunks, each starting with only the previous chunk's last token as context."""
    batch_size: int = Field(8, gt=0)
    """Sequences of seq_len tokens per forward pass: each batch holds batch_size × seq_len padded tokens, so
    many more short sequences (answer choices, prompts plus their new tokens) share one."""
    max_new_tokens: int = Field(32, gt=0)
    """For generative tasks (greedy)."""
    chat_format: Literal["auto", "base", "chat"] = "auto"
    """Prompt style of generative tasks. base: 'Question: ...\\nAnswer:' and the answer ends at a newline;
    chat: Olmo 3's chat template, the answer ends at <|im_end|>; auto: chat when the checkpoint came out of
    sft, dpo or rlvr (its manifest says which stage made it) or ships a chat template, else base."""
    trace_samples: int = Field(4, ge=0)
    """Sample generations traced against the training data (OlmoTrace) when the stage is given a trace index (its
    `index` input, from stage trace-index): the openings of the first held-out documents, the domains in turn,
    continued greedily (a user turn of the chat template when the prompts are chat). 0 = none."""
    trace_prompt_tokens: int = Field(16, gt=0)
    """Tokens of a held-out document's opening that make a trace sample's prompt."""
    trace_new_tokens: int = Field(48, gt=0)
    """Tokens generated per trace sample."""
    trace_docs: int = Field(3, gt=0)
    """Training documents listed per traced span."""

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.bpb_overlap >= self.seq_len:
            raise ValueError(f"bpb_overlap ({self.bpb_overlap}) must be shorter than seq_len ({self.seq_len})")
        return self
