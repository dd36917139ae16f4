"""The flex backend of attention (ModelConfig.attn_backend): block masks and a compiled flex_attention.

The rule is attention.py's SDPA mask, written as `mask_mod`s: query q of row b may see key k when k <= q (causal),
q - k < window (sliding layers), and doc_ids[b, q] == doc_ids[b, k] (packed documents). From a mask_mod,
`create_block_mask` records which 128 x 128 tiles of the score matrix are empty, full or partial, and the compiled
kernel skips the empty ones: a sliding window or short packed documents become less work instead of a -inf in a
T x T tensor, and no T x T mask is ever read.

Masks without documents depend only on (seq_len, window, device) and are cached for the process, broadcast over
batch and heads. With doc_ids the layout changes every batch, so each forward builds one BlockMask per layer kind
with B = batch size. Measured on CPU (1 thread) at B=4, T=4096: 1.5 s and ~1 GB peak memory eagerly, 27 ms compiled
after a ~5 s first compile (later batches, new doc_ids, no recompile); so on CUDA, where the same shapes repeat
every step, the construction is compiled (3.4 ms per batch on an H200).

flex_attention runs as `torch.compile(flex_attention, dynamic=False)` on CUDA, compiled once per process (inside
compiled blocks, dynamo fuses it with them instead). On CPU it runs uncompiled (it then materializes the scores, as
SDPA's math path does) and forward only: torch 2.13 has no CPU backward for it, so `attention` refuses
gradients on CPU in one line naming the config key. Compiling works on CPU too (~6 s) but buys nothing there.

Verified on CPU (tests/model/test_flex.py): every mask_mod equals the SDPA path's boolean mask over all (q, k)
pairs; forward outputs equal SDPA's within 1e-5 (causal, sliding with seq > window, several documents per row, GQA,
both layer kinds, the CPU-compiled kernel too); an Olmo3 forward equals the SDPA one within 1e-4. On an H200
(torch 2.11; tests/model/test_flex.py's CUDA tests, bench/gpu_step.py): the compiled kernel's forward and backward
equal SDPA's in fp32 (1e-4) and are no worse than SDPA's in bf16, an Olmo3 training step's gradients agree; in a
~1.5B bf16 training step flex is 0.97x SDPA's (flash) speed on plain causal rows at seq 4096, 1.17x on packed
documents and 1.19x at seq 8192 with the 4096 window, losses within 2e-3 over 13 steps.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask, and_masks, create_block_mask, flex_attention

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def causal(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q >= k


def within_window(window: int) -> MaskMod:
    def in_window(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return q - k < window

    return in_window


def same_document(doc_ids: torch.Tensor) -> MaskMod:
    def same_doc(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return doc_ids[b, q] == doc_ids[b, k]

    return same_doc


def mask_mod(window: int | None, doc_ids: torch.Tensor | None) -> MaskMod:
    """The rule of one layer kind: causal, AND within `window` (None: a full layer), AND within one document."""
    mods = [causal]
    if window is not None:
        mods.append(within_window(window))
    if doc_ids is not None:
        mods.append(same_document(doc_ids))
    return and_masks(*mods)


@functools.lru_cache(maxsize=16)
def _static_block_mask(t: int, window: int | None, device: torch.device) -> BlockMask:
    # Built once per (length, window, device), so the cheap eager construction is fine.
    return create_block_mask(mask_mod(window, None), None, None, t, t, device=device)


def block_masks(t: int, window: int, doc_ids: torch.Tensor | None,
                device: torch.device) -> tuple[BlockMask, BlockMask]:
    """(full, sliding) BlockMasks for a forward over whole sequences [B, T] (training, scoring)."""
    # A window at least as long as the sequence excludes nothing: the sliding layers share the full layers' mask.
    slides = t > window
    if doc_ids is None:
        full = _static_block_mask(t, None, device)
        return full, _static_block_mask(t, window, device) if slides else full
    b = doc_ids.shape[0]
    build = compiled_create_block_mask() if device.type == "cuda" else create_block_mask
    full = build(mask_mod(None, doc_ids), b, None, t, t, device=device)
    if not slides:
        return full, full
    return full, build(mask_mod(window, doc_ids), b, None, t, t, device=device)


@functools.cache
def compiled_create_block_mask() -> Callable[..., BlockMask]:
    """create_block_mask compiled once per process: a new mask_mod over new doc_ids each batch reuses the graph
    (measured on an H200 at B=4, T=4096: 3.4 ms per batch for both layer kinds)."""
    _allow_recompiles()
    return torch.compile(create_block_mask)


@functools.cache
def compiled_flex_attention() -> Callable[..., torch.Tensor]:
    """flex_attention compiled once per process: uncompiled it materializes the [B, H, T, T] scores."""
    _allow_recompiles()
    return torch.compile(flex_attention, dynamic=False)


RECOMPILE_LIMIT = 64


def _allow_recompiles() -> None:
    """Each mask rule (causal, window, documents), dtype, shape and grad mode is one compiled variant of the same
    function; past dynamo's default of 8 it silently falls back to the eager flex_attention, which materializes
    the scores (seen on an H200 when one process ran several configs). A stage has a handful; keep them all."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask,
              gqa: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v for q [B, H, T, d], k / v [B, H_kv, T, d] (GQA when H_kv < H)."""
    device = q.device.type
    if device != "cuda" and (q.requires_grad or k.requires_grad or v.requires_grad):
        raise NotImplementedError(
            f"model.attn_backend='flex': torch's flex_attention has no backward on {device}; "
            "train there with attn_backend 'sdpa' (or 'auto'), or run the flex forward under torch.no_grad()")
    if torch.is_autocast_enabled(device):
        # SDPA casts its inputs under autocast; flex_attention needs q, k, v in one dtype (q and k leave the fp32
        # QK-norm and RoPE in float32 while v comes out of a bf16 matmul).
        dtype = torch.get_autocast_dtype(device)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    if torch.compiler.is_compiling():  # inside a compiled block: dynamo fuses flex_attention with the block
        return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=gqa)
    if device == "cuda":
        return compiled_flex_attention()(q, k, v, block_mask=block_mask, enable_gqa=gqa)
    with warnings.catch_warnings():
        # Uncompiled on purpose (a CPU forward: compiling costs seconds and buys nothing); no warning about it.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=gqa)
