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


def both_ways(hidden, weight, labels, z_loss, upstream=1.0):
    """(reference sums, fused sums, autograd's (d hidden, d weight), the fused path's), each backward scaled by
    `upstream`, as the trainer's 1/targets scales it."""
    ref = reference(hidden, weight, labels, z_loss)
    (upstream * ref[0]).backward()
    want = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    fused = linear_cross_entropy(hidden, weight, labels, z_loss)
    (upstream * fused.total).backward()
    return ref, fused, want, (hidden.grad, weight.grad)


@pytest.mark.parametrize("chunk", [7, 37, 256], ids=["chunks-with-remainder", "one-exact-chunk", "one-short-chunk"])
def test_sums_and_gradients_equal_autograd_through_full_logits(monkeypatch, chunk):
    monkeypatch.setattr(lm_loss, "CHUNK_ROWS", chunk)
    hidden, weight, labels = problem()
    # z_loss large, so a wrong z-loss gradient shows
    (total, ce, z), fused, want, _ = both_ways(hidden, weight, labels, 0.3, upstream=2.5)
    assert torch.allclose(fused.ce, ce, rtol=1e-6) and torch.allclose(fused.z, z, rtol=1e-6)
    assert torch.allclose(fused.total, total, rtol=1e-6)
    assert not fused.ce.requires_grad and not fused.z.requires_grad
    assert torch.allclose(hidden.grad, want[0], rtol=1e-5, atol=1e-6)
    assert torch.allclose(weight.grad, want[1], rtol=1e-5, atol=1e-6)
    assert hidden.grad[::5].abs().max() == 0  # unscored positions get no gradient


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_the_cuda_chunk_math_equals_autograd_too(monkeypatch, compile_):
    """CUDA's chunk functions (one fused formula, compiled there), run here on CPU: chunks of two sizes (dynamo
    must go dynamic on the row count, not recompute wrong), with and without gradients."""
    funcs = (lm_loss.chunk_loss_grad, lm_loss.chunk_loss)
    monkeypatch.setattr(lm_loss, "chunk_functions", lambda device: tuple(map(lm_loss.compiled, funcs))
                        if compile_ else funcs)
    monkeypatch.setattr(lm_loss, "CHUNK_ROWS", 16)
    hidden, weight, labels = problem()
    ce = matches_autograd(hidden, weight, labels, atol=1e-6)
    with torch.no_grad():
        scored = linear_cross_entropy(hidden, weight, labels)
    assert torch.allclose(scored.ce, ce, rtol=1e-5)


def matches_autograd(hidden, weight, labels, atol):
    """Fused sums and gradients (z_loss 0.3) against autograd through full logits; the reference ce."""
    (_, ce, z), fused, want, _ = both_ways(hidden, weight, labels, 0.3)
    assert torch.allclose(fused.ce, ce, rtol=1e-5) and torch.allclose(fused.z, z, rtol=1e-5)
    assert torch.allclose(hidden.grad, want[0], rtol=1e-4, atol=atol)
    assert torch.allclose(weight.grad, want[1], rtol=1e-4, atol=atol)
    return ce


def test_chunks_are_cache_sized_on_cpu_and_memory_sized_on_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert lm_loss.chunk_rows(16384, 100_352, torch.bfloat16, cpu) == lm_loss.CHUNK_ROWS
    assert lm_loss.chunk_rows(100, 100_352, torch.bfloat16, cpu) == 100
    rows = lm_loss.chunk_rows(16384, 100_352, torch.bfloat16, cuda)
    # ~1 GiB of bf16 logits, a multiple of 128 rows: a 16k-token micro-batch in 4 chunks
    assert rows % 128 == 0 and rows * 100_352 * 2 <= lm_loss.CUDA_CHUNK_BYTES < (rows + 128) * 100_352 * 2
    assert -(-16384 // rows) == 4
    assert lm_loss.chunk_rows(16384, 8192, torch.float32, cuda) == 16384  # small vocabularies: one chunk


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
    (total, _, _), fused, want, got = both_ways(hidden, weight, labels, 0.01)
    assert fused.ce.dtype == torch.float32 and weight.grad.dtype == torch.bfloat16
    assert torch.allclose(fused.total, total, rtol=1e-3)
    for g, ref in zip(got, want):
        assert (g.float() - ref.float()).abs().max() <= 0.02 * ref.float().abs().max()


def test_a_second_backward_is_refused():
    hidden, weight, labels = problem()
    fused = linear_cross_entropy(hidden, weight, labels)
    fused.total.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward through the fused LM loss"):
        fused.total.backward()


def test_unscored_label_is_the_one_packing_writes():
    from olmoflow.train.packing import IGNORE as PACKING_IGNORE

    assert IGNORE == PACKING_IGNORE


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compiled_chunks_equal_autograd(monkeypatch):
    monkeypatch.setattr(lm_loss, "CUDA_CHUNK_BYTES", 128 * 1000 * 4)  # 256-row chunks (CHUNK_ROWS is the floor)
    hidden, weight, labels = (x.cuda() for x in problem(n=600, d=64, v=1000))
    hidden, weight = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
    ce = matches_autograd(hidden, weight, labels, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # the training step's dtype: bf16 chunks, float32 sums
        fused16 = linear_cross_entropy(hidden, weight, labels, 0.3)
    assert fused16.ce.dtype == torch.float32 and torch.allclose(fused16.ce, ce, rtol=1e-2)
