"""RLVR: reinforcement learning from verifiable rewards, Olmo 3's OlmoRL (GRPO without KL or std).

    olmoflow stage rlvr --config tiny --input dataset=URI --input checkpoint=URI

A learner and `rlvr.actors` rollout actors (Ray actors, olmoflow/post/actors.py: a local Ray in this process, or
the cluster's under a RayJob). The actors generate with continuous batching (olmoflow/post/engine.py: a finished
sequence's slot takes the next prompt, the batch is never drained) while the learner trains; after every step the
learner pushes its weights through Ray's object store and each actor swaps them in at its next decode step
(in-flight updates). Every sampled token carries the policy version that produced it and its behaviour
log-probability; `rlvr.max_lag` bounds staleness (olmoflow/post/olmorl.py), and `max_lag: 0` is the synchronous
algorithm (sample with the current weights, then learn). `rlvr.actors: 0` generates in this process instead.

Each step takes `group_size` completions for each of `prompts_per_step` prompts from post/rl.jsonl (chat template,
generation prompt; with `rlvr.template: plain`, RL-Zero's "Question: {prompt}\nAnswer:" for a base model, its answer
the first line: olmoflow/post/rl_template.py), scores them with the prompt's verifier (olmoflow/post/verifiers.py),
drops groups whose rewards are all equal and refills them with fresh prompts (active sampling), then takes the
clipped (clip-higher), truncated-importance-sampled, token-level policy-gradient step of olmoflow/post/grpo.py
against the actors' behaviour log-probabilities (olmoflow/post/learner.py). LR is constant, as in Olmo 3's RL. Per
step it logs `clip_fraction`, `tis_weight`, `lag_mean` / `lag_max` (versions between learner and samples) and
`actors_replaced` (an actor that dies is replaced and its requests resubmitted; the step completes).

The learner holds the policy, its gradients and AdamW's moments in float32, 16 bytes per parameter: 112 GB at 7B,
which leaves an H200 room for a batch of rollouts only with activation checkpointing (on in the 7B preset); a 32B
policy needs sharded RL, not built yet. On one machine the learner is this process (its first GPU, or the CPU with
OLMOFLOW_DEVICE=cpu); under a RayJob (RAY_ADDRESS set) this process is the driver on the GPU-less head, and the
learner runs as a Ray actor holding a GPU of a worker, beside the rollout actors (one GPU each). In-stage
checkpoints (resume) are kept by a learner in this process; a killed RayJob restarts the stage from its inputs.

Rows come in families, each named by its verifier (math: the final answer; code: the program against unit tests
in the sandbox; ifeval: the constraints' checkers). A verifier that raises scores 0 and is counted, never a crash:
`reward_errors` (and `reward_errors/{family}`) per step and in all. Per step the mean reward of every sampled
completion is logged in all (`mean_reward`) and per family (`reward/{family}`).

Held-out prompts (a content-hash split within each family, in proportion to its rows) are solved greedily before
and after: `heldout_reward_before` / `heldout_reward_after` over all of them (also under their older names,
`val_accuracy_before` / `val_accuracy`), and per family (`heldout_reward_after/{family}`, ...);
`zero_variance_fraction` is the share of all groups sampled in the run whose rewards were all equal (and per
family). The first held-out prompts' greedy generations before and after go to MLflow as a table
(samples/rlvr_generations.json, MLflow's table format).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import write_metrics
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.post.data import read_jsonl, split_heldout
from olmoflow.post.learner import error_metrics, family_means, greedy_accuracy, learn
from olmoflow.post.plots import plot_curves
from olmoflow.post.rl_template import RLTemplate, mark_template, rl_template
from olmoflow.post.skipped import report
from olmoflow.post.verifiers import get_verifier, score
from olmoflow.train import parallel
from olmoflow.train.world import World

__all__ = ["error_metrics", "family_means", "greedy_accuracy", "prepare", "run", "split_families"]

TABLE_ROWS = 16
"""Held-out prompts whose greedy generations before and after go to MLflow as a table."""


def prepare(rows: list[dict], template: RLTemplate, max_prompt_len: int,
            skipped: Counter | None = None) -> list[dict]:
    """Rows with their prompt tokens under "ids"; over-long prompts are skipped (counted in `skipped` as
    prompt_too_long), an unknown verifier is an error."""
    out = []
    for r in rows:
        get_verifier(r["verifier"])
        ids = template.encode(r["prompt"])
        if len(ids) <= max_prompt_len:
            out.append({**r, "ids": ids})
        elif skipped is not None:
            skipped["prompt_too_long"] += 1
    return out


def split_families(rows: list[dict], n_val: int) -> tuple[list[dict], list[dict]]:
    """(train, val): split_heldout within each verifier's rows, val sized in proportion to the family's rows
    (largest remainders; a family of two rows or more holds at least one out), so every family is measured.
    One family alone is split exactly as split_heldout splits it."""
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(r["verifier"], []).append(r)
    if n_val >= len(rows):
        raise ValueError(f"rlvr.val_prompts={n_val} leaves no training rows ({len(rows)} rows in all)")
    share = {f: n_val * len(rs) / len(rows) for f, rs in families.items()}
    sizes = {f: int(v) for f, v in share.items()}
    for f in sorted(share, key=lambda f: sizes[f] - share[f])[:n_val - sum(sizes.values())]:
        sizes[f] += 1
    for f, rs in families.items():  # a family with no held-out prompt would go unmeasured
        if sizes[f] == 0 and len(rs) >= 2:
            donor = max(sizes, key=lambda g: sizes[g])
            if sizes[donor] > 1:
                sizes[donor] -= 1
                sizes[f] = 1
    train: list[dict] = []
    val: list[dict] = []
    for f, rs in families.items():
        t, v = split_heldout(rs, min(sizes[f], len(rs) - 1), "rlvr.val_prompts") if len(rs) > 1 else (rs, [])
        train += t
        val += v
    return train, val


def make_reward(tokenizer: Any, template: str = "chat") -> Callable[[dict, list[int]], float]:
    def reward(row: dict, completion: list[int]) -> float:
        return score(row["verifier"], tokenizer.decode(completion, skip_special_tokens=True), row["answer"],
                     template)
    return reward


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.rlvr
    ckpt = ctx.input("checkpoint").path
    model, tokenizer = load_checkpoint(ckpt)
    template = rl_template(tokenizer, cfg.template)
    reward = make_reward(tokenizer, template.name)

    # ---- prompts: a fixed held-out slice; the rest is an endless seeded stream, its position saved
    rows = read_jsonl(ctx.input("dataset").path / "post" / "rl.jsonl", ["prompt", "answer", "verifier"])
    train_rows, val_rows = split_families(rows, cfg.val_prompts)
    skipped: Counter = Counter()
    train = prepare(train_rows, template, cfg.max_prompt_len, skipped)
    val = prepare(val_rows, template, cfg.max_prompt_len, skipped)
    skip_metrics = report(skipped, "prompts", "rlvr", ctx.log, max_prompt_len=f"rlvr.max_prompt_len="
                          f"{cfg.max_prompt_len} tokens")
    if not train or not val:
        raise ValueError(f"stage rlvr: no prompt in post/rl.jsonl fits rlvr.max_prompt_len={cfg.max_prompt_len}")
    on_cluster = bool(os.environ.get("RAY_ADDRESS"))
    ctx.log.info("rlvr: %d train / %d held-out prompts (%s), %s template, %d steps of %d x %d, %d rollout actor(s) "
                 "(%s engine), max_lag %d%s", len(train), len(val),
                 ", ".join(f"{f}: {n}" for f, n in sorted(Counter(r["verifier"] for r in train + val).items())),
                 template.name, cfg.steps, cfg.prompts_per_step, cfg.group_size, cfg.actors, cfg.engine, cfg.max_lag,
                 ", learner on a GPU actor of the cluster's Ray" if on_cluster else "")
    decode = lambda t: tokenizer.decode(t, skip_special_tokens=True)  # noqa: E731
    args = (cfg, train, val, reward)
    kw = {"eos_id": template.eos, "pad_id": template.pad, "table_rows": TABLE_ROWS,
          **({"stop_ids": template.stops} if template.stops else {})}
    if on_cluster:
        loop, state = learn_on_cluster(ctx, model, decode, args, kw)
        model.load_state_dict(state)
    else:
        world = World()  # one process: RL is not sharded (runner refuses torchrun for it)
        model = parallel.parallelize(model, world, cfg.activation_checkpointing)
        model.train()
        loop = learn(model, decode, *args, device=world.device, log_metrics=ctx.log_metrics, log=ctx.log,
                     work=ctx.work, progress=ctx.progress, **kw)
    return finish(ctx, model, ckpt, loop, skip_metrics)


def learn_on_cluster(ctx: StageContext, model: Any, decode: Callable, args: tuple, kw: dict
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The learner as a Ray actor holding a GPU (this process is a RayJob's driver on the GPU-less head): it gets
    the weights through the object store and returns the loop state, its logged metrics and the trained weights."""
    from olmoflow.post.actors import cpu_state, ensure_ray

    ray = ensure_ray()
    cfg = args[0]
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus < cfg.actors + 1:  # an actor waiting for a GPU that never comes would hang the job
        raise ValueError(f"stage rlvr: the Ray cluster has {gpus:g} GPUs; the learner and rlvr.actors={cfg.actors} "
                         f"rollout actors need {cfg.actors + 1} (one each): give the job more nodes or fewer actors")
    learner = ray.remote(num_gpus=1, num_cpus=1)(ClusterLearner).remote()
    loop, history, state = ray.get(learner.run.remote(cpu_state(model), model.cfg.model_dump(), decode, args, kw))
    ray.kill(learner)
    for step, metrics in history:
        ctx.log_metrics(metrics, step)
    return loop, state


class ClusterLearner:
    """The body of the cluster's learner actor (see learn_on_cluster)."""

    def run(self, state: dict, model_cfg: dict, decode: Callable, args: tuple, kw: dict) -> tuple:
        import logging

        import torch

        from olmoflow.model import ModelConfig, Olmo3
        from olmoflow.post.actors import cpu_state

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # cpu: a CPU-only Ray (tests)
        model = Olmo3(ModelConfig(**model_cfg))
        model.load_state_dict(state)
        model = parallel.parallelize(model.to(device), World(), args[0].activation_checkpointing)
        model.train()
        history: list[tuple[int | None, dict[str, float]]] = []
        loop = learn(model, decode, *args, device=device, log_metrics=lambda m, s: history.append((s, m)),
                     log=logging.getLogger("olmoflow"), on_cluster=True, **kw)
        return loop, history, cpu_state(model)


def finish(ctx: StageContext, model: Any, ckpt: Path, loop: dict[str, Any],
           extra: dict[str, float] | None = None) -> dict[str, float]:
    """Save the policy and write metrics (with `extra`), the reward plot and the before/after generations table."""
    cfg = ctx.cfg.rlvr
    before, after = loop["before"], loop["after"]
    rewards = [r for _, r in loop["reward"]]
    sampled, zero = Counter(loop["sampled"]), Counter(loop["zero_variance"])
    metrics = {**after, "val_accuracy_before": loop["val_before"],
               **{k.replace("val_accuracy", "val_accuracy_before"): v for k, v in before.items() if "/" in k},
               "heldout_reward_before": before["val_accuracy"], "heldout_reward_after": after["val_accuracy"],
               **{k.replace("val_accuracy", "heldout_reward_before"): v for k, v in before.items() if "/" in k},
               **{k.replace("val_accuracy", "heldout_reward_after"): v for k, v in after.items() if "/" in k},
               "zero_variance_fraction": sum(zero.values()) / max(1, sum(sampled.values())),
               **{f"zero_variance_fraction/{f}": zero[f] / n for f, n in sorted(sampled.items())},
               "mean_reward": sum(rewards) / len(rewards), "mean_reward_first": rewards[0],
               "mean_reward_last": rewards[-1], "steps": float(cfg.steps),
               **error_metrics(Counter(loop["errors"])), **(extra or {})}
    save_checkpoint(ctx.out, model, ckpt / "tokenizer.json")
    mark_template(ctx.out, cfg.template)  # a plain-template policy is a base model: eval must not chat with it
    write_metrics(ctx.out, metrics)
    plot_curves(ctx, "rlvr_reward.png",
                {"reward": {"sampled (mean)": loop["reward"],
                            "held-out (greedy)": [[0, loop["val_before"]], [cfg.steps, after["val_accuracy"]]]}},
                "RLVR")
    log_generations(ctx, loop["samples_before"], loop["samples_after"])
    return metrics


def log_generations(ctx: StageContext, before: list[list[Any]], after: list[list[Any]]) -> Path:
    """samples/rlvr_generations.json in MLflow's table format ({"columns", "data"}, what mlflow.log_table writes),
    attached to the stage's run and tagged as a table so MLflow's UI shows it as one."""
    path = ctx.out / "samples" / "rlvr_generations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [[b[0], b[1], b[2], a[2], b[3], a[3]] for b, a in zip(before, after)]
    path.write_text(json.dumps({"columns": ["family", "prompt", "before", "after", "reward_before", "reward_after"],
                                "data": data}, indent=1))
    ctx.log_artifact(path, "tables")
    if ctx.run_id and hasattr(ctx.tracker, "set_tags"):
        ctx.tracker.set_tags(ctx.run_id, {"mlflow.loggedArtifacts": json.dumps(
            [{"path": f"tables/{path.name}", "type": "table"}])})
    return path
