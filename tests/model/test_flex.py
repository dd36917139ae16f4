"""The flex attention backend computes what the SDPA backend computes.

Oracles: the SDPA path's own boolean masks (compared with the flex mask_mods over every (q, k) pair) and
F.scaled_dot_product_attention's outputs. On CPU, flex_attention runs forward only (torch has no CPU backward for
it), uncompiled; the compiled CPU kernel is checked in a slow test; forward + backward of the compiled CUDA kernel
only where a GPU is present.
"""

from __future__ import annotations

import json

import pytest
import torch
from modelkit import YARN, tiny_cfg, tiny_model
from torch.nn.attention.flex_attention import BlockMask, create_mask

from olmoflow.model import ModelConfig, flex
from olmoflow.model.attention import attend, forward_masks, resolve_backend, training_masks
from olmoflow.model.hf import config_from_hf, export_hf

CPU = torch.device("cpu")


def with_backend(cfg: ModelConfig, backend: str) -> ModelConfig:
    return cfg.model_copy(update={"attn_backend": backend})


def packed(lengths_per_row: list[list[int]]) -> torch.Tensor:
    """doc_ids [B, T] of rows packed with documents of the given lengths (ids keep counting across rows)."""
    rows, next_id = [], 0
    for lengths in lengths_per_row:
        row = []
        for n in lengths:
            row += [next_id] * n
            next_id += 1
        rows.append(row)
    return torch.tensor(rows)


# (t, window, doc_ids): plain causal with the window longer than the sequence, sliding (t > window), several
# documents per row, and t = 300 > one 128-token tile with a window of 64, so BlockMasks hold empty, full and
# partial tiles and a last tile cut short.
CASES = {
    "causal": (40, 64, None),
    "sliding": (40, 8, None),
    "docs": (40, 8, packed([[5, 9, 6, 20], [40]])),
    "docs-window-over-seq": (40, 64, packed([[17, 23], [1, 39]])),
    "tiles": (300, 64, packed([[100, 150, 50], [30, 270]])),
    "tiles-no-docs": (300, 64, None),
}


def dense(mask: torch.Tensor | None, t: int) -> torch.Tensor:
    """An SDPA mask as [B or 1, T, T] booleans; None is SDPA's is_causal (top-left aligned for T_q == T_k)."""
    if mask is None:
        return torch.ones(t, t, dtype=torch.bool).tril()[None]
    return mask[:, 0]


@pytest.mark.parametrize("case", CASES)
def test_mask_mods_equal_the_sdpa_masks_on_every_pair(case):
    t, window, doc_ids = CASES[case]
    sdpa = training_masks(t, window, doc_ids, CPU)
    b = None if doc_ids is None else doc_ids.shape[0]
    for is_full in (True, False):
        rule = flex.mask_mod(None if is_full else window, doc_ids)
        ours, theirs = torch.broadcast_tensors(create_mask(rule, b, 1, t, t, device=CPU)[:, 0],
                                               dense(sdpa.get(is_full), t))
        assert torch.equal(ours, theirs), is_full
    # The BlockMasks the forward uses carry the same rule, per row when documents are packed.
    full, sliding = flex.block_masks(t, window, doc_ids, CPU)
    for block_mask, is_full in ((full, True), (sliding, False)):
        assert block_mask.shape == (b or 1, 1, t, t)
        got = create_mask(block_mask.mask_mod, b, 1, t, t, device=CPU)[:, 0]
        assert torch.equal(got, dense(sdpa.get(is_full), t).expand_as(got))


def test_masks_without_documents_are_cached_and_shared_when_the_window_covers_the_sequence():
    full, sliding = flex.block_masks(40, 64, None, CPU)
    assert full is sliding and flex.block_masks(40, 64, None, CPU)[0] is full
    full8, sliding8 = flex.block_masks(40, 8, None, CPU)
    assert full8 is full and sliding8 is not full
    docs = packed([[17, 23]])
    assert flex.block_masks(40, 8, docs, CPU)[0] is not flex.block_masks(40, 8, docs, CPU)[0]


def qkv(b: int, t: int, heads: int, kv_heads: int, seed: int = 0, head_dim: int = 16,
        device: torch.device = CPU, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, head_dim, generator=g).to(device=device, dtype=dtype)
            for h in (heads, kv_heads, kv_heads)]


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("case", CASES)
def test_flex_forward_equals_sdpa_for_both_layer_kinds(case, kv_heads):
    t, window, doc_ids = CASES[case]
    cfg = tiny_cfg(n_kv_heads=kv_heads).model_copy(update={"sliding_window": window, "max_seq_len": max(t, window)})
    b = 2 if doc_ids is None else doc_ids.shape[0]
    q, k, v = qkv(b, t, cfg.n_heads, kv_heads)
    sdpa = forward_masks(with_backend(cfg, "sdpa"), t, doc_ids, CPU)
    fx = forward_masks(with_backend(cfg, "flex"), t, doc_ids, CPU)
    assert isinstance(fx.full, BlockMask) and not isinstance(sdpa.full, BlockMask)
    for is_full in (True, False):
        want = attend(q, k, v, sdpa.get(is_full), kv_heads != cfg.n_heads)
        got = attend(q, k, v, fx.get(is_full), kv_heads != cfg.n_heads)
        assert (got - want).abs().max() < 1e-5, is_full


def test_flex_under_bf16_autocast_matches_sdpa_under_it():
    # The model hands attention fp32 q, k (QK-norm, RoPE) and a bf16 v under autocast; SDPA casts them, flex must too.
    t, window, doc_ids = CASES["docs"]
    cfg = tiny_cfg(n_kv_heads=2)
    q, k, v = qkv(2, t, 4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = attend(q, k, v.bfloat16(), training_masks(t, window, doc_ids, CPU).sliding, True)
        got = attend(q, k, v.bfloat16(), forward_masks(with_backend(cfg, "flex"), t, doc_ids, CPU).sliding, True)
    assert got.dtype == want.dtype == torch.bfloat16
    assert (got.float() - want.float()).abs().max() < 2e-2


def test_flex_refuses_gradients_on_cpu_in_one_line():
    t, window, doc_ids = CASES["docs"]
    q, k, v = qkv(2, t, 4, 4)
    q.requires_grad_()
    mask = flex.block_masks(t, window, doc_ids, CPU)[0]
    with pytest.raises(NotImplementedError, match="model.attn_backend='flex'.*no backward on cpu"):
        flex.attention(q, k, v, mask, False)
    assert flex.attention(q.detach(), k, v, mask, False).shape == q.shape


def test_auto_is_flex_on_cuda_only_and_the_field_is_checked():
    cfg = tiny_cfg()
    assert cfg.attn_backend == "auto"
    gpu, w = torch.device("cuda"), cfg.sliding_window
    assert resolve_backend(cfg, CPU, 2 * w, True) == "sdpa"
    # on CUDA: flex for packed documents or past the window; SDPA's fused causal kernel for plain causal rows
    assert resolve_backend(cfg, gpu, w, True) == "flex" and resolve_backend(cfg, gpu, w + 1, False) == "flex"
    assert resolve_backend(cfg, gpu, w, False) == "sdpa"
    assert resolve_backend(cfg.model_copy(update={"head_dim": 8}), gpu, w, True) == "sdpa"  # narrower than checked
    assert resolve_backend(with_backend(cfg, "sdpa"), gpu, 2 * w, True) == "sdpa"
    assert resolve_backend(with_backend(cfg, "flex"), CPU, w, False) == "flex"
    with pytest.raises(ValueError, match="attn_backend"):
        ModelConfig(attn_backend="flash")


def test_backend_is_not_architecture_hf_config_leaves_it_out(tmp_path):
    cfg = with_backend(tiny_cfg(2, YARN), "sdpa")
    export_hf(tiny_model(cfg), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert not any("attn_backend" in key for key in saved)
    assert config_from_hf(saved) == with_backend(cfg, "auto")


def test_olmo3_forward_with_flex_equals_sdpa(monkeypatch):
    cfg = tiny_cfg(n_kv_heads=2, yarn=YARN)
    model = tiny_model(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(3))
    doc_ids = packed([[5, 9, 26], [40]])
    calls = []
    real = flex.attention
    monkeypatch.setattr(flex, "attention", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        for docs in (None, doc_ids):
            model.cfg = with_backend(cfg, "sdpa")
            want = model(x, docs)
            model.cfg = with_backend(cfg, "flex")
            got = model(x, docs)
            assert (got - want).abs().max() < 1e-4
    assert len(calls) == 2 * cfg.n_layers  # every layer of both flex forwards went through flex_attention


def test_olmo3_training_with_flex_on_cpu_fails_in_one_line():
    cfg = with_backend(tiny_cfg(), "flex")
    x = torch.randint(0, cfg.vocab_size, (1, 40))
    with pytest.raises(NotImplementedError, match="model.attn_backend='flex'"):
        tiny_model(cfg).train()(x, labels=x)


@pytest.mark.slow
def test_compiled_flex_on_cpu_equals_sdpa():
    # ~6-15 s of inductor compiling on busy cores. The model runs flex uncompiled on CPU; this shows the compiled
    # kernel reads the same masks the same way (the CUDA kernel comes from the same template family).
    t, window, doc_ids = CASES["tiles"]
    q, k, v = qkv(2, t, 4, 2)
    want = attend(q, k, v, training_masks(t, window, doc_ids, CPU).sliding, True)
    mask = flex.block_masks(t, window, doc_ids, CPU)[1]
    got = flex.compiled_flex_attention()(q, k, v, block_mask=mask, enable_gqa=True)
    assert (got - want).abs().max() < 1e-5


# ---- CUDA: the compiled kernel, forward and backward -----------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# Past dynamo's recompile limit the compiled flex_attention silently runs eagerly (seen on an H200 before
# flex.RECOMPILE_LIMIT): these tests compile many variants in one process, so that would show here.
no_eager_fallback = pytest.mark.filterwarnings("error:flex_attention called without torch.compile")


def fwd_bwd(q, k, v, mask, gqa):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = attend(q, k, v, mask, gqa)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out))
    return [out.detach().float(), *(x.grad.float() for x in (q, k, v))]


@pytest.mark.gpu
@cuda
@no_eager_fallback
def test_cuda_flex_forward_and_backward_equal_sdpa():
    dev = torch.device("cuda")
    t, window = 1000, 256  # several 128-token tiles, the last one cut short
    doc_ids = packed([[300, 450, 250], [1000]]).to(dev)
    cfg = tiny_cfg(n_kv_heads=2).model_copy(update={"sliding_window": window, "max_seq_len": t})
    for docs in (None, doc_ids):
        sdpa = forward_masks(with_backend(cfg, "sdpa"), t, docs, dev)
        fx = forward_masks(with_backend(cfg, "flex"), t, docs, dev)
        for is_full in (True, False):
            q, k, v = qkv(2, t, 8, 2, head_dim=64, device=dev)
            ref = fwd_bwd(q, k, v, sdpa.get(is_full), True)
            got = fwd_bwd(q, k, v, fx.get(is_full), True)
            for name, a, b in zip("out dq dk dv".split(), got, ref):
                assert (a - b).abs().max() <= 1e-4 * max(1.0, b.abs().max().item()), (name, is_full, docs is None)
            # bf16: flex may not be worse than SDPA, both measured against the fp32 reference.
            q16, k16, v16 = (x.bfloat16() for x in (q, k, v))
            err_flex = [(a - b).abs().max().item() for a, b in zip(fwd_bwd(q16, k16, v16, fx.get(is_full), True), ref)]
            err_sdpa = [(a - b).abs().max().item()
                        for a, b in zip(fwd_bwd(q16, k16, v16, sdpa.get(is_full), True), ref)]
            for name, ef, es, b in zip("out dq dk dv".split(), err_flex, err_sdpa, ref):
                assert ef <= 2 * es + 1e-3 * b.abs().max().item(), (name, is_full, docs is None, ef, es)


@pytest.mark.gpu
@cuda
@no_eager_fallback
def test_cuda_olmo3_training_step_with_flex_equals_sdpa():
    dev = torch.device("cuda")
    cfg = tiny_cfg(n_kv_heads=2, yarn=YARN)
    x, y = torch.randint(0, cfg.vocab_size, (2, 2, 40), generator=torch.Generator().manual_seed(5)).to(dev)
    docs = packed([[15, 25], [40]]).to(dev)
    grads = {}
    for backend in ("sdpa", "flex"):
        model = tiny_model(with_backend(cfg, backend)).to(dev).train()
        total, _, _ = model(x, docs, labels=y, z_loss=0.01)
        total.backward()
        grads[backend] = (total.item(), [p.grad for p in model.parameters()])
    assert abs(grads["flex"][0] - grads["sdpa"][0]) < 1e-4 * abs(grads["sdpa"][0])
    for a, b in zip(grads["flex"][1], grads["sdpa"][1]):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()
