"""Per-token log-probabilities with their backward, as DPO and GRPO take them: olmoflow's chunked head
(olmoflow/model/token_logprobs.py) against the usual lm_head -> float logits -> log_softmax -> gather (what
transformers-based trainers such as TRL compute), in one run.

    python bench/post_logprobs.py                   # 4096 tokens, d_model 512, vocab 50k, half of them scored
    python bench/post_logprobs.py --vocab 100352 --tokens 2048

Both get the same hidden states, head weight, targets and per-token upstream gradient (a DPO/GRPO-like weight);
one step = forward + backward into hidden and weight. Each variant runs in its own process so its peak resident
memory (ru_maxrss above the inputs') is its own. Printed: median step time, peak extra memory, and the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from olmoflow.model.lm_loss import IGNORE
from olmoflow.model.token_logprobs import token_logprobs


def full_logits(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    logp = F.log_softmax(logits, dim=-1).gather(1, labels.clamp(min=0)[:, None]).squeeze(1)
    return torch.where(labels != IGNORE, logp, 0.0)


VARIANTS = {"olmoflow": token_logprobs, "log_softmax": full_logits}


def measure(name: str, args: argparse.Namespace, out: mp.Queue) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(args.tokens, args.d_model, generator=g).requires_grad_()
    weight = (torch.randn(args.vocab, args.d_model, generator=g) * 0.02).requires_grad_()
    labels = torch.randint(0, args.vocab, (args.tokens,), generator=g)
    labels[torch.rand(args.tokens, generator=g) >= args.scored] = IGNORE  # prompt tokens: not scored
    upstream = torch.randn(args.tokens, generator=g)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, value = [], 0.0
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        logp = VARIANTS[name](hidden, weight, labels)
        (logp * upstream).sum().backward()
        if i:
            times.append(time.perf_counter() - t0)
        value = float(logp.detach().sum())
        hidden.grad = weight.grad = None
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    out.put((name, statistics.median(times), peak_mb, value))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=50_304)
    ap.add_argument("--scored", type=float, default=0.5, help="fraction of tokens with a target (the reply)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")  # a fresh process per variant: its own peak memory
    results = {}
    for name in VARIANTS:
        q = ctx.Queue()
        p = ctx.Process(target=measure, args=(name, args, q))
        p.start()
        results[name] = q.get()
        p.join()
    print(f"tokens {args.tokens} ({args.scored:.0%} scored), d_model {args.d_model}, vocab {args.vocab}")
    for name, t, mb, value in results.values():
        print(f"{name:>12}: {t * 1e3:8.0f} ms per forward + backward, peak memory +{mb:7.0f} MB, sum {value:.4f}")
    ours, peer = results["olmoflow"], results["log_softmax"]
    print(f"ratio olmoflow / log_softmax: {peer[1] / ours[1]:.2f}x faster, {peer[2] / max(ours[2], 1):.1f}x less "
          f"memory; sums agree to {abs(ours[3] - peer[3]) / abs(peer[3]):.1e}")


if __name__ == "__main__":
    main()
