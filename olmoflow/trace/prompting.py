"""A checkpoint that answers prompts for the trace page (`olmoflow trace-ui --index URI --checkpoint URI`): greedy
completions, through the chat template when the checkpoint speaks it (evals/gen.py's chat_style: made by a
post-training stage, or shipping a template), on the first GPU or the CPU (OLMOFLOW_DEVICE=cpu), as the eval stage
prompts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmoflow.evals.gen import chat_style, complete


class Completer:
    def __init__(self, model, tokenizer, chat: bool, reason: str, uri: str, max_new_tokens: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.chat, self.reason, self.uri = chat, reason, uri
        self.max_new_tokens = max_new_tokens
        self.start_id = tokenizer.token_to_id("<|endoftext|>")
        if self.start_id is None:
            raise ValueError(f"checkpoint {uri}: its tokenizer has no <|endoftext|> token")

    @classmethod
    def load(cls, path: Path, stage: str | None, uri: str, chat_format: str = "auto",
             max_new_tokens: int = 64) -> Completer:
        """The checkpoint payload at `path` (made by `stage`, None when not known), ready to complete prompts."""
        from olmoflow.model.checkpoint import load_checkpoint
        from olmoflow.train.world import World

        model, tokenizer = load_checkpoint(path)
        model.eval()
        model.to(World().device)
        chat, reason = chat_style(chat_format, stage, path)
        return cls(model, tokenizer, chat, reason, uri, max_new_tokens)

    def __call__(self, prompt: str) -> str:
        from olmoflow.model import generate

        return complete(self.model, self.tokenizer, [prompt], chat=self.chat, generate=generate,
                        start_id=self.start_id, seq_len=self.model.cfg.max_seq_len,
                        max_new_tokens=self.max_new_tokens, batch_size=1)[0]

    def info(self) -> dict[str, Any]:
        return {"uri": self.uri, "chat": self.chat, "reason": self.reason, "max_new_tokens": self.max_new_tokens}
