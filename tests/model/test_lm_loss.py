"""The fused LM head + cross-entropy against torch's own logits -> F.cross_entropy / logsumexp, with autograd's
gradients as the oracle: values, gradients, z-loss, unscored positions, chunk edges, bf16, one-backward rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from olmoflow.model import lm_loss
from olmoflow.model.lm_loss import IGNORE, linear_cross_entropy


def problem(n: int = 37, d: int = 16, v: int = 53, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(v, d, generator=g) * 0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::5] = IGNORE
    return hidden, weight, labels


def reference(hidden, weight, labels, z_loss):
    """(total, ce, z) from full float32 logits, by torch's own ops."""
    logits = (hidden @ weight.t()).float()
    keep = labels != IGNORE
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
    z = (torch.logsumexp(logits[keep], -1) ** 2).sum()
    return ce + z_loss * z, ce, z


@pytest.mark.parametrize("chunk", [7, 37, 256], ids=["chunks-with-remainder", "one-exact-chunk", "one-short-chunk"])
def test_sums_and_gradients_equal_autograd_through_full_logits(monkeypatch, chunk):
    monkeypatch.setattr(lm_loss, "CHUNK_ROWS", chunk)
    hidden, weight, labels = problem()
    z_loss = 0.3  # large, so a wrong z-loss gradient shows
    total, ce, z = reference(hidden, weight, labels, z_loss)
    (2.5 * total).backward()  # an upstream factor, as the trainer's 1/targets is
    want = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    fused = linear_cross_entropy(hidden, weight, labels, z_loss)
    (2.5 * fused.total).backward()
    assert torch.allclose(fused.ce, ce, rtol=1e-6) and torch.allclose(fused.z, z, rtol=1e-6)
    assert torch.allclose(fused.total, total, rtol=1e-6)
    assert not fused.ce.requires_grad and not fused.z.requires_grad
    assert torch.allclose(hidden.grad, want[0], rtol=1e-5, atol=1e-6)
    assert torch.allclose(weight.grad, want[1], rtol=1e-5, atol=1e-6)
    assert hidden.grad[::5].abs().max() == 0  # unscored positions get no gradient


def test_batched_shapes_and_no_grad_scoring():
    hidden, weight, labels = problem(n=24)
    with torch.no_grad():
        fused = linear_cross_entropy(hidden.view(4, 6, -1), weight, labels.view(4, 6))
        _, ce, z = reference(hidden, weight, labels, 0.0)
    assert torch.allclose(fused.ce, ce, rtol=1e-6) and torch.allclose(fused.z, z, rtol=1e-6)
    assert torch.allclose(fused.total, ce, rtol=1e-6)  # z_loss 0: the total is the cross-entropy


def test_bf16_weights_get_float32_sums_and_close_gradients(monkeypatch):
    monkeypatch.setattr(lm_loss, "CHUNK_ROWS", 8)
    hidden, weight, labels = problem(dtype=torch.bfloat16)
    total, _, _ = reference(hidden, weight, labels, 0.01)
    total.backward()
    want = hidden.grad.float(), weight.grad.float()
    hidden.grad = weight.grad = None
    fused = linear_cross_entropy(hidden, weight, labels, 0.01)
    fused.total.backward()
    assert fused.ce.dtype == torch.float32 and weight.grad.dtype == torch.bfloat16
    assert torch.allclose(fused.total, total, rtol=1e-3)
    for got, ref in zip((hidden.grad.float(), weight.grad.float()), want):
        assert (got - ref).abs().max() <= 0.02 * ref.abs().max()


def test_a_second_backward_is_refused():
    hidden, weight, labels = problem()
    fused = linear_cross_entropy(hidden, weight, labels)
    fused.total.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward through the fused LM loss"):
        fused.total.backward()


def test_unscored_label_is_the_one_packing_writes():
    from olmoflow.train.packing import IGNORE as PACKING_IGNORE

    assert IGNORE == PACKING_IGNORE
