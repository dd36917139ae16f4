"""SFT, DPO and GRPO objectives against hand computations and unpadded per-sequence oracles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kit import tiny_olmo
from tokenizers import Tokenizer

from olmoflow.post.chat import ChatTemplate, Encoded
from olmoflow.post.dpo import dpo_loss, pair_logprobs
from olmoflow.post.grpo import group_advantages, grpo_loss
from olmoflow.post.ranks import share
from olmoflow.post.sft import sft_backward
from olmoflow.train.world import World

QUESTIONS = ["What is 12 plus 7?", "Hello there!", "How are you today?", "What is 7 plus 12?", "Hello!"]
REPLIES = ["12 plus 7 is 19.", "Hello! I am fine, thank you.", "I am fine.", "The answer is 19.",
           "You are a helpful assistant. How are you today?"]


def conversations(tokenizer: Tokenizer) -> list[Encoded]:
    t = ChatTemplate(tokenizer)
    return [t.encode([{"role": "user", "content": q}, {"role": "assistant", "content": r}])
            for q, r in zip(QUESTIONS, REPLIES)]


def unpadded_logprobs(model: torch.nn.Module, e: Encoded) -> torch.Tensor:
    """Sum of masked target log-probabilities of one sequence, alone in its batch: the padding-free oracle."""
    ids = torch.tensor([e.ids])
    logp = F.log_softmax(model(ids[:, :-1]), dim=-1)[0].gather(-1, ids[0, 1:, None])[:, 0]
    return (logp * torch.tensor(e.mask[1:], dtype=torch.float32)).sum()


def test_sft_gradient_is_the_global_token_mean_for_any_micro_batch(tokenizer: Tokenizer) -> None:
    batch = conversations(tokenizer)
    pad = tokenizer.token_to_id("<|pad|>")
    model = tiny_olmo(tokenizer.get_vocab_size())
    oracle = -sum(unpadded_logprobs(model, e) for e in batch) / sum(sum(e.mask[1:]) for e in batch)
    oracle.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    n_tokens = sum(e.n_targets for e in batch)
    for micro_batch in (1, 2, 5):
        model.zero_grad()
        loss = sft_backward(model, batch, micro_batch, pad, n_tokens)
        assert float(loss) == pytest.approx(oracle.item(), rel=1e-5)
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.grad, want[n], rtol=1e-4, atol=1e-6, msg=f"{n} micro_batch={micro_batch}")
    # Two ranks' shares, each divided by the whole step's tokens: their gradients (summed across ranks by FSDP,
    # here by accumulating) and losses add up to the step's mean.
    model.zero_grad()
    shares = [sft_backward(model, share(batch, World(r, 2)), 2, pad, n_tokens) for r in range(2)]
    assert float(sum(shares)) == pytest.approx(oracle.item(), rel=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], rtol=1e-4, atol=1e-6, msg=f"{n} in two shares")


def test_dpo_loss_by_hand() -> None:
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    loss, rc, rr = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(5.0), t(4.0), beta=5.0)
    # chosen gained 1 nat over 5 tokens, rejected lost 1 nat over 4 tokens: z = 5 * (0.2 + 0.25) = 2.25
    assert loss.item() == pytest.approx(math.log1p(math.exp(-2.25)), abs=1e-12)
    assert (rc.item(), rr.item()) == pytest.approx((1.0, -1.25))
    loss, _, _ = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(5.0), t(4.0), beta=0.1,
                          length_normalized=False)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.1 * 2.0)), abs=1e-12)
    # policy == reference: every pair is a coin flip
    loss, rc, rr = dpo_loss(t(-3.0), t(-9.0), t(-3.0), t(-9.0), t(2.0), t(7.0), beta=5.0)
    assert loss.item() == pytest.approx(math.log(2)) and rc.item() == rr.item() == 0.0


def test_pair_logprobs_match_unpadded_sequences(tokenizer: Tokenizer) -> None:
    t = ChatTemplate(tokenizer)
    prompt = [{"role": "user", "content": QUESTIONS[0]}]
    pairs = [(t.with_response(prompt, REPLIES[0]), t.with_response(prompt, REPLIES[4])),
             (t.with_response(prompt, REPLIES[2]), t.with_response(prompt, REPLIES[3]))]
    model = tiny_olmo(tokenizer.get_vocab_size())
    with torch.no_grad():
        pi_c, pi_r, n_c, n_r = pair_logprobs(model, pairs, t.pad)
        for k, (c, r) in enumerate(pairs):
            assert pi_c[k].item() == pytest.approx(unpadded_logprobs(model, c).item(), rel=1e-5)
            assert pi_r[k].item() == pytest.approx(unpadded_logprobs(model, r).item(), rel=1e-5)
            assert (n_c[k].item(), n_r[k].item()) == (sum(c.mask), sum(r.mask))


def test_group_advantages_are_centered_not_scaled() -> None:
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
    torch.testing.assert_close(adv, torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.5, 0.5, -0.5, -0.5],
                                                  [0.0, 0.0, 0.0, 0.0]]))


def test_grpo_loss_by_hand() -> None:
    # Two completions: A = +1 with 2 tokens, A = -0.5 with 1 token (then padding); clip 0.2 / 0.3, TIS cap 2.
    ratio = torch.tensor([[1.5, 0.9, 1.0], [0.5, 1.0, 1.0]])
    old = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    sampler = old - torch.log(torch.tensor([[1.0, 3.0, 1.0], [0.5, 1.0, 1.0]]))  # π_old/π_sampler: 1, 3 (capped), .5
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -0.5])
    logp = old + torch.log(ratio)
    loss, n_clipped = grpo_loss(logp, old, sampler, adv, mask, clip_low=0.2, clip_high=0.3, tis_cap=2.0, n_tokens=3)
    # token 1: A>0, ratio 1.5 clipped to 1.3 -> -1.3 * tis 1;   token 2: ratio 0.9 inside -> -0.9 * tis min(3, 2)
    # token 3: A<0, ratio 0.5: max(0.25, 0.4) = 0.4 (clipped at 0.8) -> 0.4 * tis 0.5
    want = (-1.3 * 1.0 + -0.9 * 2.0 + 0.4 * 0.5) / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert n_clipped.item() == 2
    # The gradient flows only through unclipped tokens: d loss / d logp = -A * ratio * tis / n there, 0 elsewhere.
    logp.requires_grad_(True)
    grpo_loss(logp, old, sampler, adv, mask, 0.2, 0.3, 2.0, 3)[0].backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.9 * 2.0 / 3, 0.0], [0.0, 0.0, 0.0]]))
