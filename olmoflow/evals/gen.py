"""Greedy generation for the generative tasks (greedy, encode_prompt, cut_at_stops: gen_tasks.py scores every
generative task with them), chat_style, complete, and the synthetic arithmetic task's scoring below.

Two prompt styles (eval.chat_format):
  base  "Question: {question}\\nAnswer:" (few-shot examples as "Question: ...\\nAnswer: ...\\n\\n" before it,
        OLMES's GSM8K layout); the answer is the generated text up to a blank line or "Question:".
  chat  Olmo 3's chat template (olmoflow.post.chat, tokenized exactly as SFT trained on it), a user turn then
        "<|im_start|>assistant\\n"; generation stops at <|im_end|>.
auto (chat_style) takes chat for a checkpoint of sft / dpo / rlvr or one shipping a chat template, and base for an
RL-Zero one (rlvr.template plain: RLVR straight from the base model on "Question: ...\\nAnswer:" prompts).
Scoring: the last number in the answer (commas dropped; integers, decimals and a/b fractions) equals the
gold answer's number exactly (compared as fractions, so "0.50" == "1/2"); a gold answer without a number is
compared as stripped text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from olmoflow.evals.lm import Progress, no_progress, token_batches
from olmoflow.post.chat import ChatTemplate
from olmoflow.post.rl_template import TEMPLATE_FILE, template_of
from olmoflow.registry import REGISTRY

FORMULA = "mean over items of [last number in the answer == gold number] (greedy, exact as fractions)"
BASE_STOPS = ("\n\n", "Question:")
"""A base model's answer ends where it starts a new paragraph or question, as OLMES stops GSM8K generations."""
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?", re.ASCII)

GenerateFn = Callable[..., tuple[list[list[int]], list[list[float]]]]
CHAT_STAGES = tuple(s.name for s in REGISTRY if s.chat)
"""Checkpoints made by these stages were trained on the chat template: auto chat_format prompts them with it."""


def chat_style(setting: str, stage: str | None, checkpoint_dir: Path) -> tuple[bool, str]:
    """Whether to prompt a checkpoint (made by `stage`, its payload at `checkpoint_dir`) with the chat template,
    and why: `setting` is auto | base | chat (eval.chat_format)."""
    if setting != "auto":
        return setting == "chat", f"eval.chat_format={setting}"
    if (template := template_of(checkpoint_dir)) != "chat":  # RL-Zero: RLVR trained a base model on plain prompts
        return False, (f"auto: the checkpoint was made by stage {stage or 'unknown'} under rlvr.template={template} "
                       f"({TEMPLATE_FILE}): a base model, never trained on the chat template")
    if stage in CHAT_STAGES:
        return True, f"auto: the checkpoint was made by stage {stage}"
    model_dir = Path(checkpoint_dir) / "model"
    tok_cfg = model_dir / "tokenizer_config.json"
    if (model_dir / "chat_template.jinja").exists() or (
            tok_cfg.exists() and "chat_template" in json.loads(tok_cfg.read_text())):
        return True, "auto: the checkpoint ships a chat template"
    return False, f"auto: the checkpoint was made by stage {stage or 'unknown'}, not a post-training stage"


def base_prompt(question: str, shots: list[dict[str, Any]]) -> str:
    demos = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
    return f"{demos}Question: {question}\nAnswer:"


def chat_messages(question: str, shots: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The question as a user turn, shots as earlier user / assistant turns."""
    turns = [m for s in shots for m in ({"role": "user", "content": s["question"]},
                                        {"role": "assistant", "content": str(s["answer"])})]
    return turns + [{"role": "user", "content": question}]


def extract_number(text: str) -> Fraction | None:
    """The last number in the text, or None."""
    found = NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1].replace(",", "")
    try:
        return Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None


def is_correct(answer_text: str, gold: str) -> bool:
    gold_num = extract_number(gold)
    if gold_num is None:
        return answer_text.strip() == gold.strip()
    return extract_number(answer_text) == gold_num


def answer_text(generated: str, chat: bool) -> str:
    """The part of the generation that is the answer: everything for chat (generation stopped at <|im_end|>);
    for base, everything before the first BASE_STOPS (OLMES's stop sequences for GSM8K)."""
    text = generated.strip()
    return (text if chat else cut_at_stops(text, BASE_STOPS)).strip()


def cut_at_stops(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """The text before the first of the stop sequences (a generation runs past them; they are applied here)."""
    for stop in filter(None, stops):
        text = text.split(stop, 1)[0]
    return text


STOP_CHUNK = 64
"""With stop sequences, tokens generated per call before the texts are checked for a stop."""


def greedy(model: torch.nn.Module, tokenizer: Tokenizer, prompts: list[list[int]], *, generate: GenerateFn,
           eos_id: int, seq_len: int, max_new_tokens: int, batch_size: int, progress: Progress = no_progress,
           desc: str = "gen", stops: tuple[str, ...] = ()) -> list[str]:
    """Greedy completions (decoded, special tokens dropped) of token prompts, each cut from the left to
    seq_len - max_new_tokens tokens, batched to batch_size * seq_len tokens of prompt and answer.

    With `stops`, a batch is generated STOP_CHUNK tokens at a time and a row leaves it once its text holds a stop
    sequence (OLMES's stop, which generate() cannot see): a base model that answers GSM8K in 100 tokens does not
    run on to 512. The rows that go on are re-fed prompt + tokens so far; greedy decoding makes that the same
    text as one long call (up to float rounding between the cached and the re-fed forward), up to the stop."""
    room = max(seq_len - max_new_tokens, 1)
    prompts = [p[-room:] for p in prompts]
    out: dict[int, list[int]] = {}
    batches = token_batches([len(p) + max_new_tokens for p in prompts], batch_size * seq_len)
    for batch in progress(batches, len(batches), desc):
        made: dict[int, list[int]] = {i: [] for i in batch}
        active = list(batch)
        while active:
            budget = max_new_tokens - len(made[active[0]])
            step = min(budget, STOP_CHUNK) if stops else budget
            new_tokens, _ = generate(model, [prompts[i] + made[i] for i in active], step, temperature=0.0,
                                     eos_id=eos_id)
            going = []
            for i, toks in zip(active, new_tokens):
                made[i] += toks
                ended = len(toks) < step or (toks and toks[-1] == eos_id) or len(made[i]) >= max_new_tokens
                if not ended and not any(s in tokenizer.decode(made[i], skip_special_tokens=True) for s in stops):
                    going.append(i)
            active = going
        out.update(made)
    return [tokenizer.decode(out[i], skip_special_tokens=True) for i in range(len(prompts))]


def encode_prompt(tokenizer: Tokenizer, template: ChatTemplate | None, start_id: int, text: str | None = None,
                  messages: list[dict[str, str]] | None = None) -> list[int]:
    """A chat prompt (messages, then an open assistant turn) or a base one (text starting a document, after
    <|endoftext|>, as held-out text does)."""
    if template is not None:
        return template.prompt(messages or [{"role": "user", "content": text or ""}])
    return [start_id] + tokenizer.encode(text or "", add_special_tokens=False).ids


def score_items(model: torch.nn.Module, tokenizer: Tokenizer, items: list[dict[str, Any]],
                shots: list[dict[str, Any]], *, chat: bool, generate: GenerateFn, start_id: int, seq_len: int,
                max_new_tokens: int, batch_size: int, progress: Progress = no_progress,
                desc: str = "gen") -> list[dict[str, Any]]:
    """Greedy answers and their exact-match scores for items ({"id", "question", "answer"})."""
    template = ChatTemplate(tokenizer) if chat else None
    eos_id = template.im_end if template is not None else start_id
    prompts = [encode_prompt(tokenizer, template, start_id, base_prompt(item["question"], shots),
                             chat_messages(item["question"], shots)) for item in items]
    texts = greedy(model, tokenizer, prompts, generate=generate, eos_id=eos_id, seq_len=seq_len,
                   max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, desc=desc)
    results = []
    for item, generated in zip(items, texts):
        answer = answer_text(generated, chat)
        gold = str(item["answer"])
        number = extract_number(answer)
        results.append({"id": item["id"], "gold": gold, "generated": generated, "answer": answer,
                        "extracted": None if number is None else str(number),
                        "exact_match": float(is_correct(answer, gold))})
    return results


def complete(model: torch.nn.Module, tokenizer: Tokenizer, prompts: list[str], *, chat: bool, generate: GenerateFn,
             start_id: int, seq_len: int, max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy completions of plain-text prompts: with `chat` each prompt is a user turn of the chat template and
    the reply stops at <|im_end|>; else the prompt starts a document (after <|endoftext|>) and is continued."""
    template = ChatTemplate(tokenizer) if chat else None
    eos_id = template.im_end if template is not None else start_id
    ids = [encode_prompt(tokenizer, template, start_id, p) for p in prompts]
    return greedy(model, tokenizer, ids, generate=generate, eos_id=eos_id, seq_len=seq_len,
                  max_new_tokens=max_new_tokens, batch_size=batch_size)


def aggregate(per_item: list[dict[str, Any]]) -> dict[str, float]:
    return {"exact_match": sum(r["exact_match"] for r in per_item) / max(len(per_item), 1)}
