"""Where a training step's GPU time goes: device kernels of a few profiled steps, summed per kind of work.

Kinds (by kernel name, the way cuBLAS, FlashAttention, inductor/Triton and torch's fused optimizers name them):
matmul, attention, optimizer, loss (the fused LM head's chunk kernels), copy/cast, and other (elementwise and
reductions: norms, RoPE, SwiGLU, residual adds). The kind that is larger than its FLOPs or bytes say is where a
step loses to its floor. Used by bench/gpu_step.py --profile; the classifier is tested on CPU
(tests/bench/test_kernel_profile.py), the profile itself only runs where there is CUDA.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

KINDS = {
    "attention": ("flash", "fmha", "attention", "flex", "_attn", "tem_fused"),
    "matmul": ("gemm", "cutlass", "nvjet", "xmma", "cublas", "sm90_", "splitk"),
    "optimizer": ("adam", "multi_tensor", "foreach"),
    "loss": ("logsumexp", "chunk_loss", "cross_entropy", "nll_loss", "log_softmax"),
    "copy/cast": ("copy", "memcpy", "memset", "fill"),
}
"""Kind -> name fragments; the first kind with a fragment in the (lowercased) kernel name wins."""


def classify(kernel: str) -> str:
    name = kernel.lower()
    for kind, fragments in KINDS.items():
        if any(f in name for f in fragments):
            return kind
    return "other"


def profile_steps(step: Callable[[int], Any], steps: int, trace_dir: Path | None, label: str) -> dict[str, Any]:
    """Run step(i) for i < steps under torch.profiler; device milliseconds per step by kind, and the 12 heaviest
    kernels. With trace_dir, a per-kernel table goes to trace_dir/{label}.txt."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(i)
        torch.cuda.synchronize()
    by_kind: Counter[str] = Counter()
    by_kernel: Counter[str] = Counter()
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = event.time_range.elapsed_us()
        by_kind[classify(event.name)] += us
        by_kernel[event.name] += us
    if trace_dir is not None:
        trace_dir.mkdir(parents=True, exist_ok=True)
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=60, max_name_column_width=90)
        (trace_dir / f"{label}.txt").write_text(table)
    per_step = {k: v / 1e3 / steps for k, v in by_kind.most_common()}
    return {"device_ms_per_step": per_step, "device_ms_total_per_step": sum(per_step.values()),
            "top_kernels_ms_per_step": {k[:120]: v / 1e3 / steps for k, v in by_kernel.most_common(12)}}
