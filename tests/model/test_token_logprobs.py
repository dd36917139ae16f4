"""Chunked per-token log-probabilities (model/token_logprobs.py) against torch's log_softmax over full logits, with
autograd's gradients as the oracle: any upstream gradient per token, temperature, unscored tokens, chunk edges, the
CUDA chunk formulas, and the model's per_token path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from olmoflow.model import lm_loss
from olmoflow.model import token_logprobs as tl
from olmoflow.model.lm_loss import IGNORE
from olmoflow.model.token_logprobs import token_logprobs


def problem(n: int = 37, d: int = 16, v: int = 53, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).requires_grad_()
    weight = (torch.randn(v, d, generator=g) * 0.5).requires_grad_()
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::5] = IGNORE
    upstream = torch.randn(n, generator=g)  # DPO's / GRPO's per-token weights: anything, signs included
    return hidden, weight, labels, upstream


def reference(hidden, weight, labels, temperature):
    logp = F.log_softmax((hidden @ weight.t()).float() / temperature, dim=-1)
    return torch.where(labels != IGNORE, logp.gather(1, labels.clamp(min=0)[:, None]).squeeze(1), 0.0)


def check_against_autograd(hidden, weight, labels, upstream, temperature, atol=1e-5):
    want = reference(hidden, weight, labels, temperature)
    (want * upstream).sum().backward()
    want_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    got = token_logprobs(hidden, weight, labels, temperature)
    (got * upstream).sum().backward()
    assert got.dtype == torch.float32 and torch.allclose(got, want.detach(), rtol=1e-6, atol=1e-6)
    assert got[::5].abs().max() == 0
    assert torch.allclose(hidden.grad, want_grads[0], rtol=1e-5, atol=atol)
    assert torch.allclose(weight.grad, want_grads[1], rtol=1e-5, atol=atol)
    assert hidden.grad[::5].abs().max() == 0  # unscored tokens never reach the head


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk", [7, 256], ids=["chunks-with-remainder", "one-short-chunk"])
def test_values_and_gradients_equal_autograd_through_full_logits(monkeypatch, chunk, temperature):
    monkeypatch.setattr(lm_loss, "CHUNK_ROWS", chunk)
    check_against_autograd(*problem(), temperature)


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_the_cuda_chunk_functions_equal_autograd_too(monkeypatch, compile_):
    """What runs on CUDA (the same formulas through torch.compile), here on CPU, with chunks of two sizes."""
    funcs = (tl.chunk_logprobs, tl.chunk_logprob_grad)
    monkeypatch.setattr(tl, "_chunk_functions", lambda device: tuple(map(lm_loss.compiled, funcs))
                        if compile_ else funcs)
    monkeypatch.setattr(lm_loss, "CHUNK_ROWS", 16)
    check_against_autograd(*problem(), 0.7)


def test_shapes_no_grad_and_all_unscored():
    hidden, weight, labels, _ = problem(n=24)
    with torch.no_grad():
        got = token_logprobs(hidden.view(4, 6, -1), weight, labels.view(4, 6))
    assert got.shape == (4, 6) and not got.requires_grad
    assert torch.allclose(got.view(-1), reference(hidden, weight, labels, 1.0), atol=1e-6)
    none = token_logprobs(hidden, weight, torch.full((24,), IGNORE))
    assert none.shape == (24,) and none.abs().max() == 0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        token_logprobs(hidden, weight, labels, 0.0)


def test_the_model_serves_log_probabilities_with_gradients():
    from modelkit import tiny_cfg, tiny_model

    model = tiny_model(tiny_cfg())
    x = torch.randint(0, 101, (2, 33), generator=torch.Generator().manual_seed(3))
    labels = x[:, 1:].clone()
    labels[:, :10] = IGNORE  # a prompt: not scored
    upstream = torch.randn(2, 32, generator=torch.Generator().manual_seed(4))

    got = model(x[:, :-1], labels=labels, per_token=True, temperature=0.8)
    (got * upstream).sum().backward()
    got_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logp = F.log_softmax(model(x[:, :-1]) / 0.8, dim=-1).gather(-1, x[:, 1:, None]).squeeze(-1)
    want = torch.where(labels != IGNORE, logp, 0.0)
    (want * upstream).sum().backward()
    assert torch.allclose(got, want.detach(), rtol=1e-5, atol=1e-5)
    for (name, p), g in zip(model.named_parameters(), got_grads):
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-4), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_autocast_is_close_to_float32():
    hidden, weight, labels, upstream = (t.cuda() for t in problem(n=600, d=64, v=1000))
    hidden, weight = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
    check_against_autograd(hidden, weight, labels, upstream, 0.7, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = token_logprobs(hidden, weight, labels, 0.7)
    assert got.dtype == torch.float32
    assert torch.allclose(got, reference(hidden, weight, labels, 0.7).detach(), atol=0.05)
