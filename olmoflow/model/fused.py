"""RMSNorm and RoPE with hand-written backward passes: the same math in fewer passes over the activations.

At tiny widths a block's elementwise ops cost a good part of what its matmuls do. On CPU, aten's "fused" rms_norm
is a chain of pow/mean/rsqrt/mul kernels and autograd's backward of it ~20 broadcast multiplies, sums and copies;
here the forward is one vector_norm and two multiplies, the backward five passes. RoPE writes each half of its
output once (two multiply-adds on half-width views) instead of building rotate_half(x) and adding full tensors, and
its backward is the rotation by the opposite angle. Tested against autograd's gradients of the plain formulas.
Under torch.compile both fall back to the plain formulas, which inductor fuses better still.
"""

from __future__ import annotations

import torch


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        # vector_norm is one vectorized pass; on CPU it is 3x faster than aten's "fused" rms_norm (pow, mean, ...).
        rstd = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()
        xhat = x * rstd
        ctx.save_for_backward(xhat, weight, rstd)
        return xhat * weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xhat, weight, rstd = ctx.saved_tensors
        # y = xhat * w with xhat = x * rstd:  dx = rstd * (g w - xhat * mean(g w xhat)),  dw = sum over rows of g xhat
        # in x's dtype: under CPU bf16 autocast x (and so xhat) is bf16 while the weight stays float32
        gw = (grad * weight).to(xhat.dtype)
        mean = torch.linalg.vecdot(gw, xhat).unsqueeze(-1).div_(xhat.shape[-1])
        dx = torch.addcmul(gw, xhat, mean, value=-1).mul_(rstd)
        dw = (grad * xhat).reshape(-1, xhat.shape[-1]).sum(0).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return dx, dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) * weight."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad) and not torch.compiler.is_compiling():
        return _RMSNorm.apply(x, weight, eps)
    return torch.nn.functional.rms_norm(x, weight.shape, weight, eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = x * cos + rotate_half(x) * sin, with cos/sin the half tables (both halves of HF's tables are equal)."""
    x1, x2 = x.chunk(2, dim=-1)
    o1, o2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=o1).addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=o2).addcmul_(x1, sin)
    return out


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, torch.empty_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        cos, sin = ctx.saved_tensors
        # The rotation's transpose is the rotation by -angle.
        return _rotate(grad, cos, -sin, torch.empty_like(grad)), None, None


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate float32 x [..., head_dim] by half tables cos/sin [..., head_dim/2] (no gradient for the tables)."""
    if torch.compiler.is_compiling():
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    if torch.is_grad_enabled() and x.requires_grad:
        return _Rope.apply(x, cos, sin)
    return _rotate(x, cos, sin, torch.empty_like(x))
