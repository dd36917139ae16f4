"""OlmoRL's learner loop: the training process's side of RLVR, wherever it runs (the stage's own process, or a GPU
actor of the cluster's Ray under a RayJob, olmoflow/stages/rlvr.py).

Each step takes its batch of groups from `Rollouts` (olmoflow/post/olmorl.py: the rollout actors' samples, refilled
by active sampling, at most max_lag versions stale), takes the GRPO step of olmoflow/post/grpo.py against the
actors' behaviour log-probabilities, and pushes the new weights (version = steps done) to the actors, which swap
them in between decode steps; then it opens the step max_lag ahead. Held-out prompts are solved greedily before
and after (`heldout_reward_*`, kept as `val_accuracy*` too), and a few of those generations are kept for the
stage's before/after table.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from olmoflow.model import generate
from olmoflow.post import verifiers
from olmoflow.post.actors import LocalPool, RayPool, cpu_state
from olmoflow.post.config import RLVRConfig
from olmoflow.post.data import stream_indices
from olmoflow.post.grpo import policy_update, to_samples
from olmoflow.post.olmorl import Rollouts
from olmoflow.post.rl_template import cut_at
from olmoflow.post.state import load_state, save_state
from olmoflow.train.optim import build_optimizer
from olmoflow.train.world import autocast

Reward = Callable[[dict, list[int]], float]


def family_means(scored: list[tuple[str, float]], prefix: str) -> dict[str, float]:
    """{prefix/family: mean reward} over (family, reward) pairs."""
    total: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for family, r in scored:
        total[family] += r
        count[family] += 1
    return {f"{prefix}/{f}": total[f] / count[f] for f in sorted(count)}


def error_metrics(errors: Counter[str]) -> dict[str, float]:
    """{"reward_errors": rewards that raised (verifiers.score scored them 0), "reward_errors/{family}": per family}."""
    return {"reward_errors": float(sum(errors.values())),
            **{f"reward_errors/{f}": float(n) for f, n in sorted(errors.items())}}


@torch.no_grad()
def greedy_accuracy(model: nn.Module, items: list[dict], reward: Reward, max_new_tokens: int, eos_id: int,
                    batch: int, decode: Callable[[list[int]], str] | None = None, keep: int = 0,
                    stop_ids: tuple[int, ...] = ()) -> dict[str, Any]:
    """{"val_accuracy": mean reward of greedy completions, "val_accuracy/{family}": the same per verifier}; with
    `keep`, also "samples": the first `keep` items' [family, prompt, completion, reward] (decoded). A completion
    ends at its first token in `stop_ids` too (the plain template's newline), as the rollout engines end it."""
    model.eval()
    scored: list[tuple[str, float]] = []
    samples: list[list[Any]] = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        with autocast(next(model.parameters()).device):
            tokens, _ = generate(model, [it["ids"] for it in chunk], max_new_tokens, temperature=0.0, eos_id=eos_id)
        for it, t in zip(chunk, tokens):
            t = cut_at(t, set(stop_ids)) if stop_ids else t
            r = reward(it, t)
            scored.append((it["verifier"], r))
            if decode is not None and len(samples) < keep:
                samples.append([it["verifier"], it["prompt"], decode(t), r])
    model.train()
    out: dict[str, Any] = {"val_accuracy": sum(r for _, r in scored) / len(scored),
                           **family_means(scored, "val_accuracy")}
    if keep:
        out["samples"] = samples
    return out


def make_pool(cfg: RLVRConfig, model: nn.Module, eos_id: int, device: torch.device, on_cluster: bool,
              stop_ids: tuple[int, ...] = ()) -> Any:
    """The rollout actors (Ray) or, with rlvr.actors 0, an engine in this process."""
    engine_kw = {"slots": cfg.engine_slots, "max_len": cfg.max_prompt_len + cfg.max_new_tokens,
                 "temperature": cfg.temperature, "top_p": cfg.top_p, "eos_id": eos_id,
                 "device": str(device), **({"stop_ids": tuple(stop_ids)} if stop_ids else {})}
    if cfg.actors == 0:
        return LocalPool(cfg.engine, model.cfg, engine_kw)
    # On a CPU, learner and actors split the cores rather than each taking them all.
    threads = 0 if device.type == "cuda" or on_cluster else max(1, (os.cpu_count() or 1) // (cfg.actors + 1))
    # A cluster's actor holds a GPU of its own; a local one shares the learner's (Ray hides the GPUs from an actor
    # that asks for none, so each asks for a share).
    gpus = 1.0 if on_cluster else 1.0 / cfg.actors if device.type == "cuda" else 0.0
    return RayPool(cfg.actors, cfg.engine, model.cfg, engine_kw, gpus=gpus, threads=threads)


def learn(model: nn.Module, decode: Callable[[list[int]], str], cfg: RLVRConfig, train: list[dict],
          val: list[dict], reward: Reward, *, eos_id: int, pad_id: int, device: torch.device,
          stop_ids: tuple[int, ...] = (),
          log_metrics: Callable[[dict[str, float], int | None], None], log: Any, work: Any = None,
          progress: Callable[..., Any] = lambda it, **_: it, on_cluster: bool = False,
          table_rows: int = 16) -> dict[str, Any]:
    """Train `model` in place for cfg.steps; returns the loop state (curves, before/after measurements, samples).
    `work` (the stage's WorkDir) keeps in-stage checkpoints; None keeps none. `stop_ids`: tokens besides eos_id
    that end a completion (olmoflow/post/rl_template.py: the plain template's newlines), sampled or greedy."""
    errors_at_start = verifiers.reward_errors.copy()
    optimizer = build_optimizer(model, cfg.lr, weight_decay=0.0)
    latest = work.latest() if work is not None else None
    if latest is not None:
        loop = load_state(latest, model, optimizer)
        log.info("rlvr: resuming at step %d from %s", loop["step"], latest)
    else:
        before = greedy_accuracy(model, val, reward, cfg.max_new_tokens, eos_id,
                                 cfg.prompts_per_step * cfg.group_size, decode, table_rows, stop_ids)
        loop = {"step": 0, "cursor": 0, "next_id": 0, "reward": [], "val_before": before["val_accuracy"],
                "before": {k: v for k, v in before.items() if k != "samples"}, "samples_before": before["samples"],
                "errors": {}, "sampled": {}, "zero_variance": {}}
        log_metrics(loop["before"], 0)

    def draw(k: int) -> list[dict]:
        picked = [train[i] for i in stream_indices(loop["cursor"], k, len(train), cfg.seed)]
        loop["cursor"] += k
        return picked

    pool = make_pool(cfg, model, eos_id, device, on_cluster, stop_ids)
    rollouts = Rollouts(pool, draw, lambda it: it["ids"], reward, lambda it: it["verifier"],
                        group_size=cfg.group_size, max_new_tokens=cfg.max_new_tokens, n_groups=cfg.prompts_per_step,
                        max_rounds=cfg.max_sample_rounds, max_lag=cfg.max_lag, seed=cfg.seed,
                        next_id=loop["next_id"])
    sampled: Counter[str] = Counter(loop["sampled"])
    zero_var: Counter[str] = Counter(loop["zero_variance"])
    try:
        pool.push(cpu_state(model), loop["step"])
        for t in range(loop["step"], min(loop["step"] + cfg.max_lag, cfg.steps - 1) + 1):
            rollouts.open(t)
        for step in progress(range(loop["step"], cfg.steps), total=cfg.steps - loop["step"], desc="steps"):
            errors_before = verifiers.reward_errors.copy()
            got = rollouts.take(step)
            batch, scored = got.batch, got.scored
            errors = error_metrics(verifiers.reward_errors - errors_before)
            stats = policy_update(model, optimizer, to_samples(batch.groups), pad_id=pad_id,
                                  micro_batch=cfg.micro_batch, epochs=cfg.ppo_epochs, clip_low=cfg.clip_low,
                                  clip_high=cfg.clip_high, tis_cap=cfg.tis_cap, temperature=cfg.temperature,
                                  grad_clip=cfg.grad_clip, version=step)
            done = step + 1
            pool.push(cpu_state(model), done)  # in flight: the actors swap at their next step boundary
            if not batch.groups:
                log.warning("rlvr: step %d: no group with reward variance in %d rounds; no update", done,
                            cfg.max_sample_rounds)
            sampled.update(got.sampled_by_family)
            zero_var.update(got.zero_by_family)
            mean_reward = sum(batch.rewards) / len(batch.rewards)
            loop["reward"].append([done, mean_reward])
            if errors["reward_errors"]:
                log.warning("rlvr: step %d: %d rewards raised and scored 0 (%s)", done, errors["reward_errors"],
                            "; ".join(f"{f}: {verifiers.last_errors.get(f, '')}" for f in
                                      sorted(verifiers.reward_errors - errors_before)))
            if done % cfg.log_every == 0 or done == cfg.steps:
                log_metrics({"mean_reward": mean_reward, **family_means(scored, "reward"), **errors,
                             "zero_variance_fraction": batch.zero_variance / batch.sampled,
                             "groups_trained": len(batch.groups),
                             "response_length": sum(batch.lengths) / len(batch.lengths),
                             "stale_groups": float(got.stale),
                             "actors_replaced": float(pool.replaced), **stats}, done)
            loop["sampled"], loop["zero_variance"] = dict(sampled), dict(zero_var)
            if work is not None and done % cfg.checkpoint_every == 0 and done < cfg.steps:
                loop["step"], loop["next_id"] = done, rollouts.next_id
                loop["errors"] = dict(Counter(loop["errors"]) + (verifiers.reward_errors - errors_at_start))
                errors_at_start = verifiers.reward_errors.copy()
                with work.saving(done) as d:
                    save_state(Path(d), model, optimizer, loop)
            if done + cfg.max_lag < cfg.steps:
                rollouts.open(done + cfg.max_lag)
    finally:
        rollouts.close()
        pool.close()

    after = greedy_accuracy(model, val, reward, cfg.max_new_tokens, eos_id, cfg.prompts_per_step * cfg.group_size,
                            decode, table_rows, stop_ids)
    loop["samples_after"] = after.pop("samples")
    loop["after"] = after
    loop["errors"] = dict(Counter(loop["errors"]) + (verifiers.reward_errors - errors_at_start))
    loop["actors_replaced"] = pool.replaced
    log_metrics(after, cfg.steps)
    return loop

