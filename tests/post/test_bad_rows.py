"""Bad input to post-training is skipped, counted and said in one line, and the run goes on: a conversation without
an assistant turn or without a trained token within the context (SFT), a pair whose chosen reply equals the
rejected one or does not fit (DPO), a prompt longer than rlvr.max_prompt_len (RLVR). A program that never returns
scores 0 in the sandbox (tests/post/test_sandbox.py)."""

from __future__ import annotations

import logging
from collections import Counter

from tokenizers import Tokenizer

from olmoflow.post.chat import ChatTemplate
from olmoflow.post.rl_template import rl_template
from olmoflow.post.skipped import report
from olmoflow.stages import dpo, rlvr, sft

USER = {"role": "user", "content": "What is 2 plus 2?"}


def test_sft_skips_conversations_without_an_assistant_turn_or_trained_token(tokenizer: Tokenizer, caplog) -> None:
    rows = [{"messages": [USER, {"role": "assistant", "content": "4."}]},
            {"messages": [USER]},                                                      # no assistant turn
            {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}]
    skipped: Counter = Counter()
    kept = sft.encode(rows, ChatTemplate(tokenizer), 64, skipped)
    assert len(kept) == 1 and skipped == Counter(no_assistant_turn=1, past_seq_len=1)
    with caplog.at_level(logging.WARNING):
        metrics = report(skipped, "conversations", "sft", logging.getLogger("t"), seq_len="sft.seq_len=64")
    assert metrics == {"skipped/no_assistant_turn": 1.0, "skipped/past_seq_len": 1.0}
    assert caplog.messages == ["sft: skipped 2 conversations: 1 without an assistant turn, 1 with no trained token "
                               "within sft.seq_len=64"]


def test_dpo_skips_identical_and_overlong_pairs(tokenizer: Tokenizer) -> None:
    rows = [{"messages": [USER], "chosen": "4.", "rejected": "5."},
            {"messages": [USER], "chosen": "4.", "rejected": " 4. "},                    # the same reply
            {"messages": [{"role": "user", "content": "word " * 200}], "chosen": "4.", "rejected": "5."}]
    skipped: Counter = Counter()
    pairs = dpo.encode(rows, ChatTemplate(tokenizer), 64, skipped)
    assert len(pairs) == 1 and skipped == Counter(identical_pair=1, past_seq_len=1)


def test_rlvr_skips_prompts_longer_than_the_limit(tokenizer: Tokenizer) -> None:
    rows = [{"prompt": "What is 2 plus 2?", "answer": "4", "verifier": "math"},
            {"prompt": "word " * 200, "answer": "4", "verifier": "math"}]
    skipped: Counter = Counter()
    kept = rlvr.prepare(rows, rl_template(tokenizer, "chat"), 64, skipped)
    assert [r["prompt"] for r in kept] == [rows[0]["prompt"]] and skipped == Counter(prompt_too_long=1)
    assert report(Counter(), "prompts", "rlvr", logging.getLogger("t")) == {}
