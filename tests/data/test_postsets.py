"""Post-training rows: ShareGPT turns, HHH pairs, synthetic chat rows, all in the payload contract's shape."""

import json

import pytest

from olmoflow.data.postsets import (
    dpo_from_hhh,
    dpo_from_items,
    hhh_turns,
    rl_from_items,
    sft_from_items,
    sft_from_sharegpt,
    sharegpt_messages,
)
from olmoflow.data.synthetic import items


def turn(who, text):
    return {"from": who, "value": text}


def test_sharegpt_roles_empty_turns_and_leading_assistant():
    conv = [turn("gpt", "tail of an earlier part"), turn("human", "Hi  there \r\n"), turn("gpt", ""),
            turn("gpt", "Hello!"), turn("human", "Bye"), turn("gpt", "See you.")]
    msgs, why = sharegpt_messages(conv, max_chars=1000)
    assert why == "" and msgs == [{"role": "user", "content": "Hi  there"}, {"role": "assistant", "content": "Hello!"},
                                  {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you."}]


def test_sharegpt_cut_to_max_chars_ends_on_assistant_and_rejects():
    conv = [turn("human", "q" * 10), turn("gpt", "a" * 10), turn("human", "q" * 10), turn("gpt", "a" * 100)]
    msgs, _ = sharegpt_messages(conv, max_chars=50)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert sharegpt_messages(conv, max_chars=15) == (None, "too_long")
    assert sharegpt_messages([turn("system", "x"), turn("human", "y"), turn("gpt", "z")], 100) == (None, "other_role")
    assert sharegpt_messages([turn("human", "alone")], 100) == (None, "no_exchange")


def test_sft_from_sharegpt_counts_reasons(tmp_path):
    rows = [{"conversations": [turn("human", "Γεια σου, τι κάνεις;"), turn("gpt", "Καλά, ευχαριστώ.")]},
            {"conversations": [turn("human", "Hello there"), turn("gpt", "Hi, how can I help?")]},
            {"conversations": [turn("human", "x")]},
            {"conversations": [turn("human", "Name a color"), turn("gpt", "Blue.")]}]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got, why = sft_from_sharegpt(path, n=5, max_chars=1000, min_alpha=0.6)
    assert [r["messages"][0]["content"] for r in got] == ["Hello there", "Name a color"]
    assert why == {"not_english": 1, "no_exchange": 1}
    assert len(sft_from_sharegpt(path, n=1, max_chars=1000, min_alpha=0.0)[0]) == 1


def test_hhh_pairs_choose_the_higher_score(tmp_path):
    task = {"examples": [
        {"input": "Help me?\n\nAssistant:  Sure, with what?\n\nHuman:  My homework.",
         "target_scores": {"Let's look at it together.": 1, "Do it yourself.": 0}},
        {"input": "Tie?", "target_scores": {"a": 1, "b": 1}},
        {"input": "Q\n\nAssistant: answered already", "target_scores": {"x": 1, "y": 0}}]}
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "task.json").write_text(json.dumps(task))
    rows, why = dpo_from_hhh([tmp_path / "h" / "task.json"], n=None)
    assert rows == [{"messages": [{"role": "user", "content": "Help me?"},
                                  {"role": "assistant", "content": "Sure, with what?"},
                                  {"role": "user", "content": "My homework."}],
                     "chosen": "Let's look at it together.", "rejected": "Do it yourself.", "source": "hhh"}]
    assert why == {"tie": 1, "prompt_not_from_user": 1}
    assert hhh_turns("Human: hi") == [{"role": "user", "content": "hi"}]


def test_synthetic_rows_match_the_contract():
    its = items("train", 20, seed=0, max_operand=99, salt="x", unique=False)
    sft = sft_from_items(its)
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in sft)
    dpo = dpo_from_items(its, seed=0)
    assert all(r["chosen"] != r["rejected"] and r["chosen"].endswith(f"is {it.answer}.") for r, it in zip(dpo, its))
    rl = rl_from_items(items("rl", 5, seed=0, max_operand=99, salt="rl"))
    assert all(set(r) == {"prompt", "answer", "verifier"} and r["verifier"] == "math" for r in rl)
    assert dpo_from_items(its, seed=0) == dpo and dpo_from_items(its, seed=1) != dpo
    assert json.loads(json.dumps(sft + dpo + rl)) == sft + dpo + rl  # plain JSON rows


def test_bad_post_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text(json.dumps({"conversations": []}) + "\n[1, 2\n")
    with pytest.raises(ValueError, match=r"^curate: post.sharegpt .*s\.jsonl:2: not a JSON object$"):
        sft_from_sharegpt(bad, n=5, max_chars=100, min_alpha=0.0)
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"examples": [{"input": "no scores"}]}))
    with pytest.raises(ValueError, match=r"^curate: post.hhh .*task\.json: not a BIG-bench task file \(KeyError"):
        dpo_from_hhh([task], n=None)
