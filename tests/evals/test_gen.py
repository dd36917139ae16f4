"""Generative scoring: number extraction, answer cut-off, prompts in both styles, and the real greedy generate."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from olmoflow.evals import gen
from olmoflow.model import generate
from olmoflow.post.chat import ChatTemplate

ITEMS = [{"id": "a1", "question": "What is 12 plus 7?", "answer": "19"},
         {"id": "a2", "question": "What is 1 divided by 2?", "answer": "0.5"},
         {"id": "a3", "question": "What is 2000 minus 766?", "answer": "1234"}]


@pytest.mark.parametrize("text,want", [("19", Fraction(19)), ("The answer is 1,234.", Fraction(1234)),
                                       ("3 + 4 = 7", Fraction(7)), ("-3", Fraction(-3)), ("1/2", Fraction(1, 2)),
                                       ("0.50", Fraction(1, 2)), ("no number here", None)])
def test_extract_number_takes_the_last_number(text, want):
    assert gen.extract_number(text) == want


def test_is_correct_compares_numbers_exactly():
    assert gen.is_correct("so it is 0.50", "1/2")
    assert not gen.is_correct("19.5", "19")
    assert gen.is_correct(" Paris ", "Paris") and not gen.is_correct("Rome", "Paris")


def test_base_answers_stop_like_olmes_gsm8k_chat_answers_do_not():
    assert gen.answer_text(" 19\n\nQuestion: What is 3 plus 4?\nAnswer: 7", chat=False) == "19"
    assert gen.answer_text(" 12 + 7 = 19.\nSo 19. Question: What is 3 plus 4?", chat=False) == "12 + 7 = 19.\nSo 19."
    assert gen.answer_text("12 plus 7\n\nis 19", chat=True) == "12 plus 7\n\nis 19"


class FakeGenerate:
    """Records what it was asked; answers each prompt with the reply for the (last) item question in it."""

    def __init__(self, tokenizer, replies):
        self.tok, self.calls = tokenizer, []
        self.replies = {it["question"]: r for it, r in zip(ITEMS, replies)}

    def reply(self, prompt):
        text = self.tok.decode(prompt, skip_special_tokens=False)
        return max(self.replies.items(), key=lambda qr: text.rfind(qr[0]))[1]

    def __call__(self, model, prompts, max_new_tokens, temperature=1.0, eos_id=None):
        self.calls.append({"prompts": prompts, "temperature": temperature, "eos_id": eos_id, "max": max_new_tokens})
        out = [self.tok.encode(self.reply(p), add_special_tokens=False).ids for p in prompts]
        return out, [[0.0] * len(o) for o in out]


def test_base_prompts_and_scoring(tokenizer):
    eos = tokenizer.token_to_id("<|endoftext|>")
    fake = FakeGenerate(tokenizer, [" 19\n\nQuestion: 5", " 1/2", " 1,234<|endoftext|>"])
    res = gen.score_items(None, tokenizer, ITEMS, [], chat=False, generate=fake, start_id=eos, seq_len=32,
                          max_new_tokens=8, batch_size=1)
    assert [r["id"] for r in res] == ["a1", "a2", "a3"]
    assert [r["exact_match"] for r in res] == [1.0, 1.0, 1.0]
    assert [r["answer"] for r in res] == ["19", "1/2", "1,234"]
    prompts = [p for c in fake.calls for p in c["prompts"]]
    assert all(len(c["prompts"]) * (max(map(len, c["prompts"])) + 8) <= 32 for c in fake.calls)  # token budget
    first = next(p for p in prompts if "12 plus 7" in tokenizer.decode(p))
    assert first[0] == eos and tokenizer.decode(first[1:]) == "Question: What is 12 plus 7?\nAnswer:"
    assert all(c["temperature"] == 0.0 and c["eos_id"] == eos for c in fake.calls)


def test_chat_prompts_use_the_sft_template_and_stop_at_im_end(tokenizer):
    eos = tokenizer.token_to_id("<|endoftext|>")
    shots = [{"id": "s", "question": "What is 3 plus 4?", "answer": "7"}]
    fake = FakeGenerate(tokenizer, ["It is 20.", "0.5", "1234"])
    res = gen.score_items(None, tokenizer, ITEMS, shots, chat=True, generate=fake, start_id=eos, seq_len=64,
                          max_new_tokens=8, batch_size=8)
    assert [r["exact_match"] for r in res] == [0.0, 1.0, 1.0]
    template = ChatTemplate(tokenizer)
    want = template.prompt([{"role": "user", "content": "What is 3 plus 4?"}, {"role": "assistant", "content": "7"},
                            {"role": "user", "content": "What is 12 plus 7?"}])
    assert want[-56:] in fake.calls[0]["prompts"]  # cut to seq_len - max_new_tokens tokens of room
    assert fake.calls[0]["eos_id"] == template.im_end


def test_real_greedy_generation_equals_repeated_argmax(tokenizer, tiny_olmo):
    """The batched, KV-cached generate gives what re-running the full forward and taking the argmax gives."""
    eos = tokenizer.token_to_id("<|endoftext|>")
    res = gen.score_items(tiny_olmo, tokenizer, ITEMS[:2], [], chat=False, generate=generate, start_id=eos,
                          seq_len=64, max_new_tokens=6, batch_size=2)
    for item, got in zip(ITEMS[:2], res):
        seq = [eos] + tokenizer.encode(gen.base_prompt(item["question"], []), add_special_tokens=False).ids
        new = []
        with torch.no_grad():
            while len(new) < 6 and (not new or new[-1] != eos):
                new.append(int(tiny_olmo(torch.tensor([seq + new]))[0, -1].argmax()))
        assert got["generated"] == tokenizer.decode(new, skip_special_tokens=True)
        assert got["exact_match"] == float(gen.is_correct(got["answer"], item["answer"]))


def test_generation_in_chunks_until_a_stop_equals_one_long_call(tokenizer, tiny_olmo, monkeypatch):
    """With stop sequences greedy() generates a few tokens at a time and drops the rows that wrote a stop; the
    text up to the stop is what one call of max_new_tokens gives."""
    eos = tokenizer.token_to_id("<|endoftext|>")
    prompts = [[eos] + tokenizer.encode(gen.base_prompt(it["question"], []), add_special_tokens=False).ids
               for it in ITEMS]
    kw = dict(generate=generate, eos_id=eos, seq_len=64, max_new_tokens=10, batch_size=3)
    whole = gen.greedy(tiny_olmo, tokenizer, prompts, **kw)
    monkeypatch.setattr(gen, "STOP_CHUNK", 3)
    calls = []

    def counting(*args, **kwargs):
        calls.append(len(args[1]))
        return generate(*args, **kwargs)

    chunked = gen.greedy(tiny_olmo, tokenizer, prompts, **{**kw, "generate": counting}, stops=("never-written",))
    assert chunked == whole and calls == [3, 3, 3, 3]  # 3 + 3 + 3 + 1 tokens, every row to the end
    stop = whole[0][3:5]  # a piece the first row writes early
    cut = gen.greedy(tiny_olmo, tokenizer, prompts, **kw, stops=(stop,))
    assert [gen.cut_at_stops(t, (stop,)) for t in cut] == [gen.cut_at_stops(t, (stop,)) for t in whole]
