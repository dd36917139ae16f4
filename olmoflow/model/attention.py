"""Attention and its masks: causal, AND within the sliding window (sliding layers), AND within one document (packing).

Two backends compute the same numbers (`ModelConfig.attn_backend`):
- sdpa: boolean masks, True = may attend, shaped [B or 1, 1, T_q, T_k] for `F.scaled_dot_product_attention`;
  `None` stands for the plain causal mask, so SDPA takes its `is_causal` fast path instead of reading a T x T tensor.
- flex: the same rule as flex_attention BlockMasks and a compiled kernel that skips masked-out tiles (flex.py).
  "auto" picks it on CUDA for forwards over whole sequences (training, scoring) whose mask is more than plain
  causal: packed documents, or a window shorter than the sequence. On plain causal rows SDPA's fused kernel (cuDNN
  flash) was faster (H200, ~1.5B at seq 4096, compiled blocks: 59.4k vs 57.2k tokens/s; flex's backward 38 vs
  26 ms per step); with documents flex was 1.20x SDPA eagerly. torch has no CPU backward for flex.
A forward builds one mask per layer type and every layer of that type reuses it; `attend` dispatches on the mask's
type, so the KV-cache path of generation, which always builds boolean masks (`position_mask`), stays on SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from olmoflow.model import flex
from olmoflow.model.config import ModelConfig

Mask = torch.Tensor | flex.BlockMask | None
"""One layer's mask: a boolean SDPA mask, a flex BlockMask, or None for SDPA's plain causal mask."""


@dataclass
class Masks:
    """The mask of each layer type for one forward; None = plain causal (only valid when T_q == T_k)."""

    full: Mask
    sliding: Mask

    def get(self, is_full: bool) -> Mask:
        return self.full if is_full else self.sliding


def resolve_backend(cfg: ModelConfig, device: torch.device, t: int, packed: bool) -> str:
    """"sdpa" or "flex" for a forward over whole sequences of length t on `device`, with packed documents or not
    ("auto": flex on CUDA unless the mask is plain causal, or heads narrower than 16, the narrowest the compiled
    kernel was checked at)."""
    if cfg.attn_backend == "auto":
        plain_causal = not packed and t <= cfg.sliding_window
        return "flex" if device.type == "cuda" and not plain_causal and cfg.head_dim >= 16 else "sdpa"
    return cfg.attn_backend


def forward_masks(cfg: ModelConfig, t: int, doc_ids: torch.Tensor | None, device: torch.device) -> Masks:
    """Masks of cfg's backend for a forward over whole sequences [B, T] (training, scoring; no KV cache)."""
    if resolve_backend(cfg, device, t, doc_ids is not None) == "flex":
        return Masks(*flex.block_masks(t, cfg.sliding_window, doc_ids, device))
    return training_masks(t, cfg.sliding_window, doc_ids, device)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, gqa: bool) -> torch.Tensor:
    """Attention of q [B, H, T_q, d] over k / v [B, H_kv, T_k, d] under `mask`, by the backend its type names."""
    if isinstance(mask, flex.BlockMask):
        return flex.attention(q, k, v, mask, gqa)
    # enable_gqa lets SDPA broadcast the shared K/V heads instead of materializing repeat_interleave copies.
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=gqa)


def document_positions(doc_ids: torch.Tensor) -> torch.Tensor:
    """Position of each token within its document [B, T]: packed documents each start again at 0, as if alone."""
    t = doc_ids.shape[1]
    index = torch.arange(t, device=doc_ids.device).expand_as(doc_ids)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return index - torch.where(starts, index, 0).cummax(dim=1).values


def training_masks(t: int, window: int, doc_ids: torch.Tensor | None, device: torch.device) -> Masks:
    """Masks for a forward over whole sequences [B, T] (training, scoring)."""
    if doc_ids is None and t <= window:
        return Masks(full=None, sliding=None)
    i = torch.arange(t, device=device)
    causal = i[:, None] >= i[None, :]
    in_window = causal & (i[:, None] - i[None, :] < window)
    if doc_ids is None:
        return Masks(full=None, sliding=in_window[None, None])
    same_doc = (doc_ids[:, :, None] == doc_ids[:, None, :])[:, None]
    full = same_doc & causal
    return Masks(full=full, sliding=full if t <= window else same_doc & in_window)


def position_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, k_valid: torch.Tensor,
                  window: int | None) -> torch.Tensor:
    """Mask from explicit positions, for a KV cache: q_pos [B, T_q], k_pos / k_valid [B, T_k] -> [B, 1, T_q, T_k].

    A key is visible when it is a real token (not padding), not in the query's future, and, for a sliding layer,
    fewer than `window` positions back.
    """
    delta = q_pos[:, :, None] - k_pos[:, None, :]
    mask = k_valid[:, None, :] & (delta >= 0)
    if window is not None:
        mask &= delta < window
    return mask[:, None]
