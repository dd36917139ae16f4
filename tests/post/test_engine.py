"""The rollout engine: continuous batching gives each request exactly what it would get alone, every token records
the version of the weights that produced it, and new weights swap in mid-decode without draining the batch."""

from __future__ import annotations

import pytest
import torch
from kit import tiny_model_config, tiny_olmo

from olmoflow.model import generate
from olmoflow.post.actors import make_engine
from olmoflow.post.engine import BuiltinEngine, Request, pick_rows

VOCAB = 40


def engine(slots: int, temperature: float = 0.0, eos: int | None = None, seed: int = 0) -> BuiltinEngine:
    e = BuiltinEngine(tiny_model_config(VOCAB), slots=slots, max_len=64, temperature=temperature, top_p=1.0,
                      eos_id=eos)
    e.load_weights(tiny_olmo(VOCAB, seed=seed).state_dict(), version=0)
    return e


PROMPTS = [[1 + (i * 7 + j) % (VOCAB - 1) for j in range(3 + i % 9)] for i in range(12)]


def test_continuous_batching_equals_one_at_a_time_greedy_generation() -> None:
    model = tiny_olmo(VOCAB, seed=0).eval()
    eos = 7  # some rows stop early, so slots free up and take queued prompts while others decode
    # uneven budgets: short requests finish first and their slots take the queued prompts mid-batch
    budgets = [4 + (i * 5) % 17 for i in range(len(PROMPTS))]
    want = [generate(model, [p], n, temperature=0.0, eos_id=eos) for p, n in zip(PROMPTS, budgets)]
    e = engine(slots=4, eos=eos)
    steps = 0
    for i, (p, n) in enumerate(zip(PROMPTS, budgets)):
        e.submit(Request(i, p, n))
    got = {}
    max_running = 0
    while e.busy:
        e.step()
        steps += 1
        max_running = max(max_running, sum(s is not None for s in e.slots))
        got.update({f.id: f for f in e.collect()})
    assert max_running == 4 and steps < sum(budgets) / 2  # batched, and never more slots than it has
    for i, (tokens, logprobs) in enumerate(want):
        assert got[i].tokens == tokens[0], i
        assert got[i].logprobs == pytest.approx(logprobs[0], abs=1e-4)
        assert got[i].versions == [0] * len(tokens[0])


def test_sampling_is_per_request_and_independent_of_the_batch() -> None:
    reqs = [Request(i, p, 10, seed=100 + i) for i, p in enumerate(PROMPTS)]
    alone = [engine(1, temperature=1.0).run([r])[0] for r in reqs[:4]]
    together = engine(5, temperature=1.0).run(reqs)
    for a, b in zip(alone, together):
        assert a.tokens == b.tokens and a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    assert len({tuple(f.tokens) for f in together}) > 1  # a sampler, not a constant


def test_weights_swap_mid_decode_and_tokens_carry_their_version() -> None:
    e = engine(slots=2)
    e.submit(Request(0, PROMPTS[0], 12))
    for _ in range(4):
        e.step()
    other = tiny_olmo(VOCAB, seed=1).state_dict()
    e.update_weights(other, version=1)
    assert e.version == 0  # not before the next step boundary
    e.submit(Request(1, PROMPTS[1], 5))  # admitted after the swap: wholly version 1
    while e.busy:
        e.step()
    done = {f.id: f for f in e.collect()}
    # not drained: the 5th token was drawn from logits the old weights had computed, the 6th on are the new ones'
    assert done[0].versions == [0] * 5 + [1] * 7
    assert done[1].versions == [1] * 5
    # the new weights produced request 1's tokens: the same as generating it with them alone
    fresh = tiny_olmo(VOCAB, seed=1).eval()
    assert done[1].tokens == generate(fresh, [PROMPTS[1]], 5, temperature=0.0)[0][0]


def test_bad_requests_and_engines_are_refused() -> None:
    e = engine(slots=1)
    with pytest.raises(ValueError, match="request 3 has an empty prompt"):
        e.submit(Request(3, [], 4))
    with pytest.raises(ValueError, match="request 4 needs 60 \\+ 10 positions, the engine holds 64"):
        e.submit(Request(4, [1] * 60, 10))
    with pytest.raises(ValueError, match="rlvr.engine: unknown engine 'tgi'"):
        make_engine("tgi", tiny_model_config(VOCAB))
    assert torch.equal(e.model.lm_head.weight, tiny_olmo(VOCAB, seed=0).lm_head.weight)


def test_per_request_draws_sample_the_distribution_and_respect_top_p() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).repeat(20000, 1)
    tokens, logp = pick_rows(logits, 1.0, 1.0, torch.arange(20000), torch.zeros(20000, dtype=torch.long))
    freq = torch.bincount(tokens, minlength=4) / 20000
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.015)
    assert torch.allclose(logp, torch.log_softmax(logits, -1).gather(1, tokens[:, None])[:, 0])
    # one request, successive tokens: the same distribution; top-p 0.5 keeps the 0.64 token alone
    tokens, _ = pick_rows(logits, 1.0, 1.0, torch.zeros(20000, dtype=torch.long), torch.arange(20000))
    assert torch.allclose(torch.bincount(tokens, minlength=4) / 20000, freq, atol=0.02)
    tokens, logp = pick_rows(logits, 1.0, 0.5, torch.arange(20000), torch.zeros(20000, dtype=torch.long))
    assert set(tokens.tolist()) == {2} and torch.allclose(logp, torch.zeros(20000))


def test_a_group_s_shared_prompt_is_prefilled_once_and_samples_as_if_alone() -> None:
    group = [Request(i, PROMPTS[3], 8, seed=50 + i) for i in range(4)] + [Request(9, PROMPTS[4], 8, seed=7)]
    alone = [engine(1, temperature=1.0).run([r])[0] for r in group]
    together = engine(8, temperature=1.0).run(group)
    for a, b in zip(alone, together):
        assert a.tokens == b.tokens and a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    assert len({tuple(f.tokens) for f in together[:4]}) > 1
