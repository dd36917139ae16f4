"""KV-cache generation against the full forward (no cache) as the oracle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from modelkit import YARN, tiny_cfg, tiny_model

from olmoflow.model import generate

# Different lengths (left padding), and 3 + 14 > window 8 so sliding caches must drop old keys.
PROMPTS = [[5, 17, 3], [9, 2, 44, 61, 7, 7, 30, 12, 90, 4, 1], [33, 8, 8, 71, 2, 56]]
MODEL = tiny_model(tiny_cfg(n_kv_heads=2, yarn=YARN))


def full_logprobs(prompt: list[int], new: list[int]) -> torch.Tensor:
    """log p(new[i] | prompt + new[:i]) from one full forward, temperature 1."""
    with torch.no_grad():
        logp = F.log_softmax(MODEL(torch.tensor([prompt + new])), dim=-1)[0]
    return logp[len(prompt) - 1:-1].gather(-1, torch.tensor(new)[:, None])[:, 0]


def test_greedy_equals_step_by_step_argmax_of_the_full_forward():
    new, logprobs = generate(MODEL, PROMPTS, 14, temperature=0.0)
    for prompt, tokens, lps in zip(PROMPTS, new, logprobs):
        assert len(tokens) == 14
        seq = list(prompt)
        with torch.no_grad():
            for _ in range(14):
                seq.append(int(MODEL(torch.tensor([seq]))[0, -1].argmax()))
        assert tokens == seq[len(prompt):]
        assert (torch.tensor(lps) - full_logprobs(prompt, tokens)).abs().max() < 1e-4


def test_sampled_logprobs_equal_the_full_forward_at_temperature_1():
    new, logprobs = generate(MODEL, PROMPTS, 12, temperature=1.0, generator=torch.Generator().manual_seed(0))
    again, _ = generate(MODEL, PROMPTS, 12, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert again == new
    greedy, _ = generate(MODEL, PROMPTS, 12, temperature=0.0)
    assert new != greedy
    for prompt, tokens, lps in zip(PROMPTS, new, logprobs):
        assert (torch.tensor(lps) - full_logprobs(prompt, tokens)).abs().max() < 1e-4


def test_top_p_samples_from_the_renormalized_nucleus():
    new, logprobs = generate(MODEL, PROMPTS, 10, temperature=0.7, top_p=0.6,
                             generator=torch.Generator().manual_seed(1))
    for prompt, tokens, lps in zip(PROMPTS, new, logprobs):
        with torch.no_grad():
            logits = MODEL(torch.tensor([prompt + tokens]))[0, len(prompt) - 1:-1] / 0.7
        for row, tok, lp in zip(F.log_softmax(logits, dim=-1), tokens, lps):
            order = row.argsort(descending=True)
            mass = row[order].exp().cumsum(0)
            nucleus = order[: int((mass < 0.6).sum()) + 1]
            assert tok in nucleus.tolist()
            assert abs(lp - (row[tok] - row[nucleus].logsumexp(0)).item()) < 1e-4


def test_rows_stop_at_eos():
    free, _ = generate(MODEL, PROMPTS, 14, temperature=0.0)
    eos = free[0][4]
    new, logprobs = generate(MODEL, PROMPTS, 14, temperature=0.0, eos_id=eos)
    for tokens, lps, unstopped in zip(new, logprobs, free):
        expected = unstopped[: unstopped.index(eos) + 1] if eos in unstopped else unstopped
        assert tokens == expected and len(lps) == len(tokens)
    assert len(new[0]) <= 5
