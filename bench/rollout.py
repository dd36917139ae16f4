"""OlmoRL's rollout side, two measurements (issue 13), each printed with its ratio:

    python bench/rollout.py                    # both
    python bench/rollout.py --part gen         # (a) generation tokens/s: built-in engine vs transformers generate
    python bench/rollout.py --part rl --steps 8

(a) The rollout actors' engine (olmoflow/post/engine.py: continuous batching, per-slot KV caches) against
transformers' `generate` on the same model: a random-init Olmo3 (d_model 256, 4 layers, vocab 4096) exported with
olmoflow/model/hf.py and loaded by transformers as Olmo3ForCausalLM (sdpa, its default dynamic KV cache), and by the
engine from the same directory (olmoflow's load_hf). The workload is an RL step's: --prompts prompts (random
tokens, 16 to 64 long), each sampled --samples times (a GRPO group), at temperature 1, top-p 1, up to --new-tokens
new tokens, stopping at eos. The eos row of the LM head is raised so sampled lengths spread from 1 token to the cap
(about 60% of it on average), as RL completions end at different lengths. transformers gets the same sequences,
`--batch` rows at a time (a group's rows together, as num_return_sequences would lay them out), each batch decoding
until its longest row is done; the engine keeps `--batch` slots busy, a finished sequence's slot taking the next
one, and prefills a group's shared prompt once. tokens/s counts generated tokens up to and with eos, on both
sides; both run with --threads torch threads (1: what a rollout actor gets on this 2-core machine, half the cores);
the sides alternate, best of --repeats each.

(b) RL steps per minute with one rollout actor (a local Ray actor) and one learner (this process), the stage's own
loop (olmoflow/post/learner.py) on a toy verifiable task: in-flight updates (max_lag 1: the actor generates step
t+1 while the learner trains step t and swaps weights mid-decode) against synchronous (max_lag 0: the actor waits
for each step's weights). On a CPU the learner and the actor each get half the cores (learner.make_pool), in both
modes. Steps/min is measured between the first and the last step's end (Ray start and actor spawn excluded). Also
printed, for reference: the in-process synchronous path (rlvr.actors 0: one process, all cores for both phases).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import torch

from olmoflow.model import ModelConfig, Olmo3
from olmoflow.model.hf import export_hf, load_hf
from olmoflow.post.engine import BuiltinEngine, Request

EOS = 2


def model_dir(tmp: str, vocab: int) -> str:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=vocab, d_model=256, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64,
                      mlp_hidden=768, max_seq_len=512, sliding_window=128, init_std=0.02)
    model = Olmo3(cfg)
    with torch.no_grad():  # eos likely enough that sequences end at different lengths (1 token to the cap)
        model.lm_head.weight[EOS] = model.norm.weight.sign() * 0.25
    export_hf(model, tmp, eos_token_id=EOS, pad_token_id=0)
    return tmp


def ours(path: str, prompts: list[list[int]], new: int, batch: int) -> tuple[int, float]:
    model = load_hf(path)
    engine = BuiltinEngine(model.cfg, slots=batch, max_len=max(map(len, prompts)) + new, temperature=1.0, top_p=1.0,
                           eos_id=EOS)
    engine.load_weights(model.state_dict(), 0)
    t0 = time.perf_counter()
    done = engine.run([Request(i, p, new, seed=i) for i, p in enumerate(prompts)])
    return sum(len(f.tokens) for f in done), time.perf_counter() - t0


def theirs(path: str, prompts: list[list[int]], new: int, batch: int) -> tuple[int, float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch.manual_seed(0)
    tokens, t0 = 0, time.perf_counter()
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        width = max(map(len, chunk))
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, p in enumerate(chunk):  # left padding, as decoder-only generation wants
            ids[j, width - len(p):] = torch.tensor(p)
            mask[j, width - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=True,
                                 temperature=1.0, top_p=1.0, top_k=0, eos_token_id=EOS, pad_token_id=0)
        for row in out[:, width:].tolist():
            tokens += row.index(EOS) + 1 if EOS in row else len(row)
    return tokens, time.perf_counter() - t0


def generation(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    distinct = [torch.randint(3, args.vocab, (int(torch.randint(16, 65, (1,), generator=g)),), generator=g).tolist()
                for _ in range(args.prompts)]
    prompts = [p for p in distinct for _ in range(args.samples)]
    with tempfile.TemporaryDirectory() as tmp:
        path = model_dir(tmp, args.vocab)
        best = {"olmoflow": 0.0, "transformers": 0.0}
        counts = {}
        for _ in range(args.repeats):  # alternate the sides: load on the shared cores hits both
            for name, fn in (("olmoflow", ours), ("transformers", theirs)):
                n, s = fn(path, prompts, args.new_tokens, args.batch)
                counts[name] = n
                best[name] = max(best[name], n / s)
    print(f"generation: {args.prompts} prompts x {args.samples} samples, up to {args.new_tokens} new tokens, "
          f"batch {args.batch}, {torch.get_num_threads()} threads")
    for name, tps in best.items():
        print(f"  {name:>12}: {tps:8.0f} tokens/s ({counts[name]} tokens)")
    print(f"generation ratio engine / transformers: {best['olmoflow'] / best['transformers']:.2f}x tokens/s")


def rl_steps_per_min(steps: int, **knobs) -> float:
    from olmoflow.post.config import RLVRConfig
    from olmoflow.post.learner import learn

    vocab, target = 512, 5
    items = [{"ids": [1 + (i * 13 + j) % 500 for j in range(12)], "prompt": str(i), "verifier": "toy"}
             for i in range(256)]
    cfg = RLVRConfig(steps=steps, prompts_per_step=8, group_size=8, max_new_tokens=32, lr=1e-3, micro_batch=64,
                     max_sample_rounds=1, max_prompt_len=12, val_prompts=1, engine_slots=64, **knobs)
    torch.manual_seed(0)
    model = Olmo3(ModelConfig(vocab_size=vocab, d_model=192, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=48,
                              mlp_hidden=512, max_seq_len=64, sliding_window=64, init_std=0.02))
    ends: list[float] = []

    def log(m: dict, step: int | None) -> None:
        if "loss" in m:
            ends.append(time.perf_counter())

    learn(model, str, cfg, items[1:], items[:1], lambda it, c: float(target in c), eos_id=-1, pad_id=0,
          device=torch.device("cpu"), log_metrics=log, log=logging.getLogger("bench"))
    return 60 * (len(ends) - 1) / (ends[-1] - ends[0])


def rl(args: argparse.Namespace) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # the learner's half, as in the stage
    best = {"in-flight": 0.0, "synchronous": 0.0}
    for _ in range(args.repeats):
        best["in-flight"] = max(best["in-flight"], rl_steps_per_min(args.steps, actors=1, max_lag=1))
        best["synchronous"] = max(best["synchronous"], rl_steps_per_min(args.steps, actors=1, max_lag=0))
    torch.set_num_threads(threads)
    local = rl_steps_per_min(args.steps, actors=0)
    print(f"rl: {args.steps} steps of 8 prompts x 8 completions, 32 new tokens, one actor + one learner")
    print(f"  in-flight (max_lag 1): {best['in-flight']:8.1f} steps/min")
    print(f"  synchronous (max_lag 0): {best['synchronous']:8.1f} steps/min")
    print(f"  in-process synchronous (actors 0, {threads} threads): {local:8.1f} steps/min")
    print(f"rl ratio in-flight / synchronous: {best['in-flight'] / best['synchronous']:.2f}x steps/min "
          f"({best['in-flight'] / local:.2f}x the in-process path)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["gen", "rl", "all"], default="all")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=8, help="samples per prompt (the GRPO group)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for generation (a rollout actor on this 2-core machine gets 1: half the cores)")
    args = ap.parse_args()
    if args.part in ("gen", "all"):
        generation(args)
    if args.part in ("rl", "all"):
        rl(args)


if __name__ == "__main__":
    main()
