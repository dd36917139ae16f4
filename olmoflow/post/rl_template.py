"""The prompt template RLVR samples, scores and measures under (rlvr.template), picked in one place.

chat   Olmo 3's chat template (olmoflow/post/chat.py): a user turn, then an open assistant turn; generation ends at
       <|im_end|>. What RLVR after SFT and DPO uses.
plain  RL-Zero: RLVR straight from the base model, which never saw a chat token. The prompt is the text
       "Question: {prompt}\\nAnswer:" at a document's start (after <|endoftext|>, as the base model read its
       training documents and as eval prompts a base checkpoint); the answer is the first line, so generation ends
       at <|endoftext|> or at the first token holding a newline, and the verifier reads that line
       (olmoflow/post/verifiers.py, score(..., template="plain")).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from olmoflow.post.chat import EOS, PAD, ChatTemplate

TEMPLATES = ("chat", "plain")
PLAIN_PROMPT = "Question: {prompt}\nAnswer:"


@dataclass(frozen=True)
class RLTemplate:
    name: str
    encode: Callable[[str], list[int]]
    """A prompt's text -> the token ids to generate its answer from."""
    eos: int
    """The token generation ends at (generate's and the engines' eos_id)."""
    pad: int
    stops: tuple[int, ...] = ()
    """Further tokens that end an answer (plain: every token holding a newline; cut_at cuts there); chat: none."""


def cut_at(tokens: list[int], stops: set[int]) -> list[int]:
    """`tokens` up to and including the first one in `stops` (as an engine that stops there returns them)."""
    for i, t in enumerate(tokens):
        if t in stops:
            return tokens[:i + 1]
    return tokens


def newline_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    """Every token whose text holds a newline: with any of them the first line is over."""
    return tuple(sorted(i for i in tokenizer.get_vocab(with_added_tokens=False).values()
                        if "\n" in tokenizer.decode([i], skip_special_tokens=False)))


def plain_prompt(prompt: str) -> str:
    return PLAIN_PROMPT.format(prompt=prompt)


def rl_template(tokenizer: Tokenizer, name: str = "chat") -> RLTemplate:
    """The template `name` (rlvr.template) over this tokenizer."""
    if name == "chat":
        chat = ChatTemplate(tokenizer)
        return RLTemplate("chat", lambda text: chat.prompt([{"role": "user", "content": text}]), chat.im_end,
                          chat.pad)
    if name != "plain":
        raise ValueError(f"rlvr.template: unknown template {name!r} ({' or '.join(TEMPLATES)})")
    eos, pad = tokenizer.token_to_id(EOS), tokenizer.token_to_id(PAD)
    if eos is None or pad is None:
        raise ValueError(f"rlvr.template plain: the tokenizer has no {EOS if eos is None else PAD} token")
    return RLTemplate("plain", lambda text: [eos] + tokenizer.encode(plain_prompt(text),
                                                                     add_special_tokens=False).ids,
                      eos, pad, newline_ids(tokenizer))


TEMPLATE_FILE = "prompt_template.json"
"""In a plain-template RLVR checkpoint's payload: the policy answers "Question: ...\\nAnswer:" and is no chat model,
so eval prompts it, and model-flow exports it, as a base model (olmoflow/evals/gen.py's chat_style). The payload,
not the manifest, says it: a checkpoint downloaded from s3:// holds its payload files only."""


def mark_template(out_dir: Path, name: str) -> None:
    """Record a non-chat template in a checkpoint payload being written (chat writes nothing: the default)."""
    if name != "chat":
        (Path(out_dir) / TEMPLATE_FILE).write_text(json.dumps({"template": name, "prompt": PLAIN_PROMPT}) + "\n")


def template_of(checkpoint_dir: Path) -> str:
    """The RLVR template a checkpoint payload was trained under: "plain" when marked, else "chat"."""
    path = Path(checkpoint_dir) / TEMPLATE_FILE
    if not path.is_file():
        return "chat"
    return str(json.loads(path.read_text()).get("template", "chat"))
