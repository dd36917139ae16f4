"""One GPU's training throughput and MFU for a ~1B Olmo 3: flex vs SDPA attention, and transformers beside it.

    python bench/gpu_step.py                     # CUDA: d_model 2048, 16 layers, seq 4096, bf16 autocast (minutes)
    python bench/gpu_step.py --runs sdpa,flex,flex-compiled   # a subset, in this order (default: see RUNS)
    python bench/gpu_step.py --peak-tflops 989   # MFU's denominator: H100 / H200 SXM bf16 dense
    python bench/gpu_step.py --smoke             # tiny config on CPU, end to end (tests/bench/test_gpu_step.py)
    python bench/gpu_step.py --profile prof/     # + where each run's GPU time goes (bench/kernel_profile.py)

Runs (RUNS), one after another on the same batches from the same initial weights, each `--warmup` steps (compiling
happens there) then `--steps` timed steps of forward + backward + fused AdamW under bf16 autocast, activation
checkpointing off:
- olmoflow with attn_backend "sdpa" and "flex", on whole rows (causal; sliding layers slide when --window < --seq)
  and on rows packed with documents (intra-document masking, doc_ids), as olmoflow/train/loop.py trains;
  "-compiled": the same with Olmo3.compile_blocks (pretrain.compile: true);
- transformers' Olmo3ForCausalLM (sdpa, whole rows, its own loss over float logits; OOM is caught and reported).
tokens/s comes from the wall time of the timed steps (synchronized); MFU = tokens/s * model FLOPs per token
(olmoflow/model/flops.py, PaLM's 6N + attention, the window counted on sliding layers) / the peak (the datasheet's
989 TFLOP/s, as OLMo-core reports MFU; on CUDA also against a bf16 8192^3 matmul measured first). flex vs SDPA:
the ratio of tokens/s and the largest |loss difference| over all steps (step 0 is the untrained weights, so it
checks the forward; later steps check that training follows the same path). Every matmul runs in bf16 on both
sides (olmoflow's fused LM head casts like autocast would); fp32 leftovers may use TF32.

Each run prints a JSON line as it ends (a run cut short by a time limit keeps the ones before it); then a compact
table and one JSON line with every figure (the last line of stdout), for a session to record. Nothing is
downloaded. On CPU (--smoke) flex runs only the untrained forward: torch has no CPU backward for flex_attention, and
the smoke run is fp32 (see train_run). Imports: torch (CUDA, Triton), transformers, pydantic and safetensors only, so
it runs from the repo root with PYTHONPATH=. on a machine that has not installed olmoflow.

Verified on CPU: --smoke runs the whole script (both backends, packed documents, transformers, the JSON line).
Measured on one H200 (torch 2.11, transformers 5.17; 2026-11-29, bench/gpu_checks.sh), tokens/s and MFU of 989:
  olmoflow sdpa 45.3k (42.5%), transformers 33.4k (31.4%): 1.36x; packed documents: sdpa 38.2k, flex 46.1k (1.20x);
  compiled blocks: flex-docs 61.2k (57.5%; 71% of the measured 798 TFLOP/s matmul), sdpa 59.4k, flex 57.2k;
  fastest on the same plain rows / transformers 1.71x. Seq 8192, window 4096: flex 1.19x SDPA eagerly.
  Losses: flex vs SDPA within 1e-3, olmoflow vs transformers within 5e-4 over 13 bf16 steps. Peak memory 45 GB
  compiled, 56 GB eager, 80 GB for transformers (its float logits).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import kernel_profile  # bench/kernel_profile.py, beside this script
import torch
from torch._dynamo.utils import counters

from olmoflow.model import ModelConfig, Olmo3, flex
from olmoflow.model.flops import flops_per_token, num_params
from olmoflow.model.hf import hf_name, to_hf_config
from olmoflow.train.mfu import cuda_matmul_flops
from olmoflow.train.optim import build_optimizer, param_groups

TOKENIZER_VOCAB = 100_278  # dolma2's tokenizer; the embedding has 100,352 rows (padded to a multiple of 128)
H100_BF16_TFLOPS = 989.0  # dense bf16 peak of an H100 / H200 SXM
# name -> (attn_backend, packed documents, compiled blocks); "transformers" is transformers' Olmo3ForCausalLM (sdpa)
RUNS = {"sdpa": ("sdpa", False, False), "flex": ("flex", False, False),
        "sdpa-docs": ("sdpa", True, False), "flex-docs": ("flex", True, False),
        "sdpa-compiled": ("sdpa", False, True), "flex-compiled": ("flex", False, True),
        "flex-docs-compiled": ("flex", True, True), "transformers": ("sdpa", False, False)}
DEFAULT_RUNS = "sdpa,flex,sdpa-docs,flex-docs,sdpa-compiled,flex-docs-compiled,transformers"
SMOKE_RUNS = "sdpa,flex,sdpa-docs,flex-docs,transformers"  # compiling on CPU costs more than the rest together


def preset(args: argparse.Namespace) -> ModelConfig:
    if args.smoke:
        return ModelConfig(d_model=64, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=16, mlp_hidden=128,
                           vocab_size=256, max_seq_len=64, sliding_window=32, rope_theta=10_000.0)
    # OLMo 2 1B's shape with Olmo 3's layer layout: 3 sliding layers of every 4.
    return ModelConfig(d_model=2048, n_layers=16, n_heads=16, n_kv_heads=args.kv_heads, head_dim=128,
                       mlp_hidden=8192, vocab_size=100_352, max_seq_len=max(args.seq, args.window),
                       sliding_window=args.window)


def make_batches(n: int, batch: int, seq: int, vocab: int, doc_len: int,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows [n, batch, seq + 1] and doc_ids [n, batch, seq]: documents of geometric lengths (mean doc_len)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, batch, seq + 1), generator=g)
    starts = torch.rand(n, batch, seq, generator=g) < 1.0 / doc_len
    starts[..., 0] = True
    return tokens, starts.cumsum(-1)


def olmoflow_step(model: Olmo3, opt: torch.optim.Optimizer, autocast: torch.autocast):
    def step(tokens: torch.Tensor, docs: torch.Tensor | None) -> torch.Tensor:
        x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
        with autocast:
            total, ce, _ = model(x, docs, labels=y)
        (total / y.numel()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return ce / y.numel()

    return step


def transformers_step(model: torch.nn.Module, opt: torch.optim.Optimizer, autocast: torch.autocast):
    def step(tokens: torch.Tensor, docs: torch.Tensor | None) -> torch.Tensor:
        x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
        with autocast:
            loss = model(input_ids=x, labels=x, shift_labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name() if device.type == "cuda" else "cpu"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step, tokens: torch.Tensor, docs: torch.Tensor | None, warmup: int,
          device: torch.device) -> tuple[list[float], float]:
    """Losses of every step and the wall seconds of the steps after `warmup`."""
    losses = []
    for i in range(len(tokens)):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        losses.append(step(tokens[i], None if docs is None else docs[i]))
    sync(device)
    return [float(x) for x in losses], time.perf_counter() - start


def build_olmoflow(cfg: ModelConfig, device: torch.device, seed: int) -> Olmo3:
    torch.manual_seed(seed)  # the same initial weights in every run
    with device:
        return Olmo3(cfg).train()


def train_run(name: str, args: argparse.Namespace, cfg: ModelConfig, device: torch.device,
              tokens: torch.Tensor, docs: torch.Tensor | None, compiled: bool) -> dict[str, Any]:
    """One run's figures. Everything it allocates is freed when it returns."""
    # bf16 autocast on CUDA only. CPU autocast leaves vector_norm in bf16, and fused.py's RMSNorm backward then
    # meets mixed dtypes (CUDA autocast runs vector_norm in fp32), so the CPU smoke run stays in fp32.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model = build_olmoflow(cfg, device, args.seed)
    if name == "transformers":
        from transformers import Olmo3ForCausalLM

        with device:
            theirs = Olmo3ForCausalLM._from_config(to_hf_config(cfg), attn_implementation="sdpa")
        theirs.load_state_dict({hf_name(k): v for k, v in model.state_dict().items()})
        model = theirs.train()
        opt = torch.optim.AdamW(param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.95), fused=True)
        step = transformers_step(model, opt, autocast)
    elif cfg.attn_backend == "flex" and device.type != "cuda":
        x, y = tokens[0][:, :-1], tokens[0][:, 1:]
        with torch.no_grad(), autocast:
            ce = model(x, None if docs is None else docs[0], labels=y).ce
        return {"losses": [float(ce) / y.numel()],
                "skipped": "training: torch's flex_attention has no CPU backward; untrained forward only"}
    else:
        if compiled:
            model.compile_blocks()
        opt = build_optimizer(model, lr=args.lr)
        step = olmoflow_step(model, opt, autocast)
    losses, seconds = timed(step, tokens, docs, args.warmup, device)
    profile = None
    if args.profile and device.type == "cuda":
        try:
            profile = kernel_profile.profile_steps(
                lambda i: step(tokens[i], None if docs is None else docs[i]), 2, args.profile, name)
        except Exception as e:  # noqa: BLE001 -- a profiler failure must not cost the run's figures
            profile = {"error": f"{type(e).__name__}: {e}"[:300]}
    rate = args.steps * args.batch * args.seq / seconds
    out = {"tokens_per_s": rate, "mfu": rate * flops_per_token(cfg, args.seq) / (args.peak_tflops * 1e12),
           "step_ms": 1e3 * seconds / args.steps, "losses": losses}
    if args.measured_tflops:
        out["mfu_measured_peak"] = rate * flops_per_token(cfg, args.seq) / (args.measured_tflops * 1e12)
    if profile is not None:
        out["profile"] = profile
    return out


def run_one(name: str, args: argparse.Namespace, cfg: ModelConfig, device: torch.device,
            tokens: torch.Tensor, docs: torch.Tensor | None, compiled: bool = False) -> dict[str, Any]:
    """`train_run`, with an OOM or any other error reported in the result instead of ending the benchmark."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    graphs = counters["stats"]["unique_graphs"]
    try:
        result = train_run(name, args, cfg, device, tokens, docs, compiled)
    except Exception as e:  # noqa: BLE001 -- one failed run (OOM, a kernel that fails to compile) must not end the rest
        kind = "OOM" if isinstance(e, torch.OutOfMemoryError) else type(e).__name__
        result = {"error": f"{kind}: {(str(e).splitlines() or [''])[0]}"[:300]}
        traceback.print_exc(limit=4, file=sys.stderr)
    gc.collect()
    if device.type == "cuda":
        result["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.empty_cache()
    result["dynamo_graphs"] = counters["stats"]["unique_graphs"] - graphs
    return result


def block_mask_ms(cfg: ModelConfig, docs: torch.Tensor, device: torch.device, reps: int = 5) -> float:
    """Milliseconds to build one forward's BlockMasks for a new batch of doc_ids (after the warmup compiled it)."""
    flex.block_masks(docs.shape[-1], cfg.sliding_window, docs[0], device)
    sync(device)
    start = time.perf_counter()
    for i in range(reps):
        flex.block_masks(docs.shape[-1], cfg.sliding_window, docs[i % len(docs)], device)
    sync(device)
    return 1e3 * (time.perf_counter() - start) / reps


def max_delta(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Largest |loss difference| over the steps both runs have."""
    if "losses" not in a or "losses" not in b:
        return None
    return max(abs(x - y) for x, y in zip(a["losses"], b["losses"]))


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if "tokens_per_s" not in a or "tokens_per_s" not in b:
        return None
    return a["tokens_per_s"] / b["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a tiny config on CPU: checks the script, not the GPU")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--window", type=int, default=4096, help="sliding window (Olmo 3: 4096)")
    ap.add_argument("--kv-heads", type=int, default=16, help="16 = MHA like OLMo 2 1B; fewer = GQA")
    ap.add_argument("--batch", type=int, default=4, help="rows per step (4 x 4096 = 16k tokens)")
    ap.add_argument("--doc-len", type=int, default=1024, help="mean document length of the packed runs")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiling happens here)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS, help="bf16 dense peak, TFLOP/s")
    ap.add_argument("--profile", type=Path, default=None,
                    help="CUDA: profile 2 more steps per run; device ms per kind of kernel in the JSON, a kernel "
                         "table per run in this folder")
    ap.add_argument("--runs", default=None, help=f"comma-separated, in order, of: {', '.join(RUNS)} "
                    f"(default {DEFAULT_RUNS}; --smoke: {SMOKE_RUNS})")
    args = ap.parse_args()
    runs = args.runs or (SMOKE_RUNS if args.smoke else DEFAULT_RUNS)
    names = [n.strip() for n in runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        sys.exit(f"bench/gpu_step.py: --runs: unknown run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}")
    if args.smoke:
        args.seq, args.window, args.batch, args.doc_len, args.warmup, args.steps = 64, 32, 2, 16, 1, 2
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        sys.exit("bench/gpu_step.py: needs a CUDA device (torch.cuda.is_available() is False); "
                 "--smoke runs a tiny config on CPU")
    else:
        device = torch.device("cuda")
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in fp32 (see the docstring)
    args.measured_tflops = cuda_matmul_flops() / 1e12 if device.type == "cuda" else None

    cfg = preset(args)
    with torch.device("meta"):
        params = sum(p.numel() for p in Olmo3(cfg).parameters())
    assert params == num_params(cfg), (params, num_params(cfg))
    fpt = flops_per_token(cfg, args.seq)
    vocab = min(TOKENIZER_VOCAB, cfg.vocab_size)
    tokens, docs = make_batches(args.warmup + args.steps, args.batch, args.seq, vocab, args.doc_len, args.seed)
    tokens, docs = tokens.to(device), docs.to(device)
    print(f"device {device_name(device)}, torch {torch.__version__}; "
          f"d_model {cfg.d_model}, layers {cfg.n_layers}, heads {cfg.n_heads}/{cfg.n_kv_heads}, seq {args.seq}, "
          f"window {cfg.sliding_window}, vocab {cfg.vocab_size}, batch {args.batch}; params {params / 1e6:,.1f}M "
          f"({num_params(cfg, embedding=False) / 1e6:,.1f}M without the input embedding); "
          f"{fpt / 1e9:.3f} GFLOP/token; peak {args.peak_tflops:.0f} TFLOP/s"
          + (f" (measured bf16 matmul: {args.measured_tflops:.0f})" if args.measured_tflops else ""), flush=True)

    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        backend, packed, compiled = RUNS[name]
        print(f"... {name}", flush=True)
        start = time.perf_counter()
        runs[name] = run_one(name, args, cfg.model_copy(update={"attn_backend": backend}), device, tokens,
                             docs if packed else None, compiled)
        runs[name]["wall_s"] = time.perf_counter() - start  # compiling included
        print(json.dumps({"run": name, **runs[name]}), flush=True)

    print(f"{'run':<20} {'tokens/s':>10} {'MFU':>6} {'step ms':>8} {'peak GB':>8} {'loss 0':>8} {'loss end':>9} "
          f"{'wall s':>7}")
    for name, r in runs.items():
        if "tokens_per_s" not in r:
            print(f"{name:<20} {r.get('error') or r.get('skipped')}")
            continue
        print(f"{name:<20} {r['tokens_per_s']:>10.0f} {r['mfu']:>6.1%} {r['step_ms']:>8.1f} "
              f"{r.get('peak_mem_gb', 0):>8.1f} {r['losses'][0]:>8.4f} {r['losses'][-1]:>9.4f} {r['wall_s']:>7.1f}")
    for name, r in runs.items():
        kinds = r.get("profile", {}).get("device_ms_per_step")
        if kinds:
            print(f"device ms/step {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in kinds.items()))
    compare: dict[str, float | None] = {}
    pairs = [("flex", "sdpa", "flex_{}_sdpa"), ("flex-docs", "sdpa-docs", "flex_{}_sdpa_docs"),
             ("sdpa-compiled", "sdpa", "compiled_{}_eager_sdpa"), ("flex-compiled", "flex", "compiled_{}_eager_flex"),
             ("flex-docs-compiled", "flex-docs", "compiled_{}_eager_flex_docs"),
             ("sdpa", "transformers", "olmoflow_{}_transformers")]
    for a, b, key in pairs:
        if a in runs and b in runs:
            compare[key.format("over") + "_tokens_per_s"] = ratio(runs[a], runs[b])
            compare[key.format("vs") + "_max_abs_loss_delta"] = max_delta(runs[a], runs[b])
    ours = {n: r["tokens_per_s"] for n, r in runs.items() if n != "transformers" and "tokens_per_s" in r}
    if ours and "transformers" in runs:
        compare["fastest"] = max(ours, key=ours.get)
        compare["fastest_over_transformers_tokens_per_s"] = ratio(runs[compare["fastest"]], runs["transformers"])
    if any(RUNS[n][1] and RUNS[n][0] == "flex" for n in names):
        compare["block_mask_ms_docs"] = block_mask_ms(cfg, docs, device)
    for key, value in compare.items():
        print(f"{key}: {'n/a' if value is None else value if isinstance(value, str) else f'{value:.4g}'}")
    print(json.dumps({
        "bench": "gpu_step", "smoke": args.smoke, "device": device_name(device), "torch": torch.__version__,
        "config": cfg.model_dump(mode="json"), "seq": args.seq, "batch": args.batch, "doc_len": args.doc_len,
        "warmup": args.warmup, "steps": args.steps, "params": params, "flops_per_token": fpt,
        "peak_tflops": args.peak_tflops, "measured_tflops": args.measured_tflops, "runs": runs,
        "compare": compare}))


if __name__ == "__main__":
    main()
