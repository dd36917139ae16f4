"""Knobs of the eval stage (OLMES-style): which tasks, how many items, how long a context, how prompts look."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from olmoflow._base import Section
from olmoflow.evals.catalog import check_metric, parse

BASE_SUITE = ["arc_easy", "arc_challenge", "hellaswag", "piqa", "mmlu", "boolq", "sciq", "openbookqa", "winogrande",
              "socialiqa", "csqa", "gsm8k", "minerva_math_500", "humaneval", "mbpp", "squad", "drop", "coqa",
              "arithmetic"]
"""What a base model (pretrain, midtrain, long-context) is scored on: multiple choice in the cloze format with the
gold continuation's bits-per-byte (Olmo 3's base-easy suite), then the generative tasks few-shot."""
CHAT_SUITE = ["arc_challenge:mc", "mmlu:mc", "gsm8k", "minerva_math_500", "humaneval", "mbpp", "ifbench",
              "arithmetic"]
"""What a post-trained model (sft, dpo, rlvr) is scored on through the chat template: lettered multiple choice,
math, code and instruction following, as Olmo 3's instruct evaluations."""


class EvalConfig(Section):
    base_tasks: list[str] = BASE_SUITE
    """Tasks for base checkpoints, each `name` or `name:format` (olmoflow/evals/catalog.py lists them)."""
    chat_tasks: list[str] = CHAT_SUITE
    """Tasks for checkpoints prompted with the chat template (see chat_format)."""
    limit: int = Field(0, ge=0)
    """Items per task (the first N of eval/{task}.jsonl); 0 = all. For quick runs."""
    num_shots: int | None = Field(None, ge=0)
    """Few-shot examples per prompt, from the task's train split (eval/{task}.train.jsonl, never the scored
    items); None = each task's OLMES count (catalog.py); a task without a train split gets none."""
    metrics: dict[str, str] = {}
    """A task's headline metric in the reports when not its OLMES primary: {"gsm8k": "exact_match"}."""
    code_timeout: float = Field(10.0, gt=0)
    """Seconds a generated program may run against its tests in the sandbox (HumanEval, MBPP)."""
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
    max_new_tokens: int | None = Field(None, gt=0)
    """Most tokens generated per answer (greedy); None = each task's own (512 for GSM8K's chains of thought)."""
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
        for key in ("base_tasks", "chat_tasks"):
            specs = getattr(self, key)
            for i, spec in enumerate(specs):
                try:
                    parse(spec)
                except ValueError as e:
                    raise ValueError(f"{key}.{i}: {e}") from None
            if len({parse(s).task for s in specs}) < len(specs):
                raise ValueError(f"{key}: a task is listed twice")
        for task, metric in self.metrics.items():
            check_metric(task, metric)
        if self.bpb_overlap >= self.seq_len:
            raise ValueError(f"bpb_overlap ({self.bpb_overlap}) must be shorter than seq_len ({self.seq_len})")
        return self
