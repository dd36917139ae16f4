"""RMSNorm and RoPE with hand-written backward passes: torch's gradcheck (float64 finite differences) and the plain
formulas (F.rms_norm; HF's x * cos + rotate_half(x) * sin with full tables) under autograd as the oracles."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from olmoflow.model import fused


def test_rms_norm_matches_torch_and_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fused.rms_norm(a, b, 1e-6), (x, w))
    x32, w32 = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    out = fused.rms_norm(x32, w32, 1e-6)
    ref = F.rms_norm(x32, (8,), w32, 1e-6)
    assert torch.allclose(out, ref, atol=1e-6)
    grad = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad(out, (x32, w32), grad)
    want = torch.autograd.grad(ref, (x32, w32), grad)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(got, want))


def rotate_half_reference(x, cos_half, sin_half):
    cos, sin = torch.cat((cos_half, cos_half), -1), torch.cat((sin_half, sin_half), -1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def test_rope_matches_hf_formula_and_passes_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 3, 8, generator=g, dtype=torch.float64, requires_grad=True)  # [B, T, heads, head_dim]
    angles = torch.randn(1, 7, 1, 4, generator=g, dtype=torch.float64)
    cos, sin = angles.cos(), angles.sin()
    assert torch.autograd.gradcheck(lambda a: fused.rope(a, cos, sin), (x,))
    out, ref = fused.rope(x, cos, sin), rotate_half_reference(x, cos, sin)
    assert torch.allclose(out, ref, atol=1e-12)
    grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got, = torch.autograd.grad(out, x, grad)
    want, = torch.autograd.grad(ref, x, grad)
    assert torch.allclose(got, want, atol=1e-12)
    with torch.no_grad():  # the inference path (no autograd node) computes the same
        assert torch.allclose(fused.rope(x, cos, sin), ref, atol=1e-12)
