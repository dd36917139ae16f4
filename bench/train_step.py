"""Training-step throughput: olmoflow's Olmo3 vs transformers' Olmo3ForCausalLM (sdpa), in one run.

    python bench/train_step.py                      # d_model 256, 4 layers, seq 256, vocab 8192, CPU
    python bench/train_step.py --threads 1 --steps 20
    python bench/train_step.py --compile            # olmoflow's blocks through torch.compile (opt-in)

Both models get the same config, the same weights, the same batches and the same loss (mean token cross-entropy
over float32 logits, no document masking, no z-loss); one step = forward + backward + AdamW step. Each side runs
its own normal training step:
- olmoflow's training path: `model(ids, labels=...)`, the LM head fused with the loss (olmoflow/model/lm_loss.py;
  a z-loss would cost nothing more), RMSNorm/RoPE with hand-written backward (olmoflow/model/fused.py), AdamW from
  `build_optimizer` (fused), as olmoflow/train/loop.py runs them;
- transformers as its `Trainer` does: `model(input_ids, labels=..., shift_labels=...).loss` (ForCausalLMLoss: float
  logits + F.cross_entropy, which is also what logits + F.cross_entropy by hand costs; shift_labels gives it our
  targets), and the fused AdamW (`adamw_torch_fused` is Trainer's default with torch >= 2.8), same parameter groups.
The first step's two losses are printed: they agree to float32 rounding.

Steps alternate between the two models so load from other processes hits both alike; the median wall time per step
gives tokens/s, and the ratio is also shown by CPU time per step (steadier on shared cores). MFU is model FLOPs
(olmoflow/model/flops.py) per second over the peak measured here with a large fp32 matmul (best of the samples
taken before and after the steps). The last line is the bound on any ratio: a step whose every model FLOP ran at
that peak, against transformers' measured step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from olmoflow.model import ModelConfig, Olmo3
from olmoflow.model.flops import flops_per_token, num_params
from olmoflow.model.hf import hf_name, to_hf_config
from olmoflow.train.optim import build_optimizer, param_groups


class Step(NamedTuple):
    """Wall and CPU seconds of one training step, and its loss."""

    wall: float
    cpu: float
    loss: float


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Best fp32 matmul FLOP/s of this machine at the current thread count (best of reps: load only slows it)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def step_fn(model: nn.Module, optimizer: torch.optim.Optimizer,
            loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], Step]:
    def step(batch: torch.Tensor) -> Step:
        t0, c0 = time.perf_counter(), time.process_time()
        loss = loss_of(batch[:, :-1].contiguous(), batch[:, 1:].contiguous())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return Step(time.perf_counter() - t0, time.process_time() - c0, loss.item())

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--window", type=int, default=128, help="sliding window (< seq, so sliding layers slide)")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model, after 2 warmup steps")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    ap.add_argument("--compile", action="store_true",
                    help="olmoflow compiles its blocks (Olmo3.compile_blocks; compiling happens in the warmup steps)")
    args = ap.parse_args()

    from transformers import Olmo3ForCausalLM

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, n_kv_heads=args.kv_heads,
                      head_dim=args.d_model // args.heads, mlp_hidden=int(args.d_model * 2.6875),
                      vocab_size=args.vocab, max_seq_len=args.seq, sliding_window=args.window)
    ours = Olmo3(cfg)
    theirs = Olmo3ForCausalLM._from_config(to_hf_config(cfg), attn_implementation="sdpa")
    theirs.load_state_dict({hf_name(k): v.clone() for k, v in ours.state_dict().items()})
    ours.train()
    if args.compile:
        ours.compile_blocks()
    theirs.train()
    steps = {
        "olmoflow": step_fn(ours, build_optimizer(ours, lr=1e-4),
                            lambda x, y: ours(x, labels=y).total / y.numel()),
        "transformers": step_fn(theirs, torch.optim.AdamW(param_groups(theirs, 0.1), lr=1e-4, betas=(0.9, 0.95),
                                                          fused=True),
                                lambda x, y: theirs(input_ids=x, labels=x, shift_labels=y).loss),
    }

    peak = matmul_peak()
    batches = torch.randint(0, cfg.vocab_size, (args.steps + 2, args.batch, args.seq + 1))
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    first_loss: dict[str, float] = {}
    for i, batch in enumerate(batches):
        order = list(steps) if i % 2 == 0 else list(reversed(steps))
        for name in order:
            s = steps[name](batch)
            first_loss.setdefault(name, s.loss)
            if i >= 2:
                wall[name].append(s.wall)
                cpu[name].append(s.cpu)

    tokens = args.batch * args.seq
    peak = max(peak, matmul_peak())
    fpt = flops_per_token(cfg, args.seq)
    print(f"config: d_model {cfg.d_model}, layers {cfg.n_layers}, heads {cfg.n_heads}/{cfg.n_kv_heads}, "
          f"seq {args.seq}, window {cfg.sliding_window}, vocab {cfg.vocab_size}, batch {args.batch}, "
          f"params {num_params(cfg) / 1e6:.2f}M, threads {torch.get_num_threads()}")
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s; model FLOPs/token: {fpt / 1e6:.1f} M")
    print(f"first-step loss: olmoflow {first_loss['olmoflow']:.6f}, transformers {first_loss['transformers']:.6f}")
    rate = {}
    for name, ts in wall.items():
        rate[name] = tokens / statistics.median(ts)
        print(f"{name:>12}: {rate[name]:8.0f} tokens/s  (median step {statistics.median(ts) * 1e3:.0f} ms wall, "
              f"{statistics.median(cpu[name]) * 1e3:.0f} ms CPU; MFU {rate[name] * fpt / peak:.1%})")
    cpu_ratio = statistics.median(cpu["transformers"]) / statistics.median(cpu["olmoflow"])
    # CPU time barely moves when other processes share the cores; wall time does. Two different readings = noise.
    print(f"ratio olmoflow / transformers: {rate['olmoflow'] / rate['transformers']:.2f}x tokens/s "
          f"({cpu_ratio:.2f}x by CPU time per step)")
    # The fastest any implementation of this model could be: every model FLOP at the measured matmul peak.
    print(f"ceiling (100% MFU) / transformers: {peak / fpt / rate['transformers']:.2f}x")


if __name__ == "__main__":
    main()
