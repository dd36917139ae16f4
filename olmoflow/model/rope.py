"""Rotary position embeddings, plain (sliding layers) and YaRN-scaled (full layers in long-context).

The arithmetic follows transformers' Olmo3 rotary embedding (float32 inverse frequencies, "rotate half" pairing),
so our logits match HF's to float32 rounding; HF's cos/sin tables repeat the half-frequencies twice, ours keep one
half (olmoflow/model/fused.py rotates each half of x with it). Tables are computed per forward from the config
rather than held in buffers: a model built on the meta device then needs no re-initialization, and the state dict
stays exactly HF's.
"""

from __future__ import annotations

import math

import torch

from olmoflow.model import fused
from olmoflow.model.config import YarnConfig


def inv_freq(head_dim: int, theta: float, yarn: YarnConfig | None = None,
             device: torch.device | None = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [head_dim/2] and the factor cos/sin are multiplied by (YaRN's attention temperature)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float32) / head_dim
    freqs = theta ** exponents
    if yarn is None:
        return 1.0 / freqs, 1.0
    # YaRN: dimensions rotating fast (many turns within the original context) keep their frequency, slow ones are
    # interpolated by `factor`, with a linear ramp between the two, bounded by beta_fast / beta_slow rotations.
    def correction_dim(rotations: float) -> float:
        return head_dim * math.log(yarn.original_max_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(yarn.beta_fast)), 0)
    high = min(math.ceil(correction_dim(yarn.beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001  # a zero-width ramp would divide by zero
    ramp = torch.clamp((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1).to(device)
    keep = 1 - ramp
    inv = (1.0 / (yarn.factor * freqs)) * (1 - keep) + (1.0 / freqs) * keep
    return inv, 0.1 * math.log(yarn.factor) + 1.0


def cos_sin(inv: torch.Tensor, scale: float, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [B, T, 1, head_dim/2] for integer positions [B, T] (B may be 1; broadcast over heads).

    HF's tables are these twice over (cos of the concatenated half-frequencies); one half is all `apply` reads.
    """
    freqs = positions[..., None].float() * inv
    cos, sin = freqs.cos(), freqs.sin()
    if scale != 1.0:
        cos, sin = cos * scale, sin * scale
    return cos.unsqueeze(2), sin.unsqueeze(2)


def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, heads, head_dim] by the half tables ("rotate half": pairs dimension i with i + head_dim/2):
    x * cos + rotate_half(x) * sin with HF's full tables."""
    # The tables are float32; a bf16 model computes in float32 and keeps its dtype (as HF does).
    return fused.rope(x.float(), cos, sin).to(x.dtype)
