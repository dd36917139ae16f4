"""Model FLOPs utilisation: achieved model FLOPs per second over the device's peak.

Model FLOPs per token come from `olmoflow.model.flops` (PaLM's 6N + attention). The peak is the configured one
(train.peak_tflops), else a GPU's datasheet dense bf16 rate (as OLMo-core reports MFU), else measured: on CPU the
best fp32 matmul rate over many short samples (once per process and thread count), on an unknown GPU the mean bf16
rate of large products.
"""

from __future__ import annotations

import functools
import time

import torch


@functools.cache
def _cpu_peak(threads: int) -> float:
    n = 512
    # A private generator: measuring must not move the global RNG that checkpoints save and restore.
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    torch.mm(a, b)
    # Many short samples, the fastest kept: on shared cores some sample gets the core to itself, and that is
    # the peak (a long average would measure the neighbours' load instead).
    best = float("inf")
    for _ in range(40):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best


GPU_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0,
                   "A800": 312.0, "L40S": 362.0}
"""Dense bf16 tensor-core peaks (SXM parts) by a fragment of torch.cuda.get_device_name()."""


@functools.cache
def _gpu_peak(name: str) -> float:
    for fragment, tflops in GPU_BF16_TFLOPS.items():
        if fragment in name:
            return tflops * 1e12
    return cuda_matmul_flops()


def cuda_matmul_flops(n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 dense rate on the current GPU: the mean of `reps` [n, n] x [n, n] products of random data
    (zeros run faster than real data), after 3 warmups."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(2))
    for _ in range(3):
        torch.mm(a, b)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    torch.cuda.synchronize()
    return 2.0 * n ** 3 * reps / (time.perf_counter() - start)


def peak_flops(device: torch.device = torch.device("cpu"), tflops: float | None = None) -> float:
    """Peak FLOP/s of one rank on `device`: `tflops` if given, else a GPU's bf16 peak, else the CPU's measured."""
    if tflops:
        return tflops * 1e12
    if device.type == "cuda":
        return _gpu_peak(torch.cuda.get_device_name(device))
    return _cpu_peak(torch.get_num_threads())
