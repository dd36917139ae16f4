"""RLVR: reinforcement learning from verifiable rewards, Olmo 3's OlmoRL (GRPO without KL or std).

    olmoflow stage rlvr --config tiny --input dataset=URI --input checkpoint=URI

Each step samples `group_size` completions for each of `prompts_per_step` prompts from post/rl.jsonl (chat
template, generation prompt, the sampler's log-probabilities kept), scores them with the prompt's verifier
(olmoflow/post/verifiers.py: 1 for the right final answer, else 0), drops groups whose rewards are all equal and
refills them with fresh prompts (active sampling, olmoflow/post/rollout.py), then takes the clipped,
importance-corrected, token-level policy-gradient step of olmoflow/post/grpo.py. LR is constant, as in Olmo 3's RL.
Here sampling and learning alternate on one model; Olmo 3 overlaps them (continuous batching, in-flight updates).

One process on the pod's first GPU (OLMOFLOW_DEVICE=cpu keeps the CPU), under bf16 autocast. It holds the policy,
its gradients and AdamW's moments in float32, 16 bytes per parameter: 112 GB at 7B, which leaves an H200 room for
a batch of rollouts only with activation checkpointing (on in the 7B preset); a 32B policy needs sharded RL with a
separate rollout engine, as Olmo 3's, not built yet.

Rows come in families, each named by its verifier (math: the final answer; code: the program against unit tests
in the sandbox; ifeval: the constraints' checkers). A verifier that raises scores 0 and is counted, never a crash:
`reward_errors` (and `reward_errors/{family}`) per step and in all. Per step the mean reward of every sampled
completion is logged in all (`mean_reward`) and per family (`reward/{family}`).

Held-out prompts (a content-hash split within each family, in proportion to its rows) are solved greedily before
and after: `val_accuracy` over all of them, `val_accuracy/{family}` per family.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import write_metrics
from olmoflow.model import generate
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.post import verifiers
from olmoflow.post.chat import ChatTemplate
from olmoflow.post.data import read_jsonl, split_heldout, stream_indices
from olmoflow.post.grpo import policy_update, to_samples
from olmoflow.post.plots import plot_curves
from olmoflow.post.rollout import Group, active_sample, sample_groups
from olmoflow.post.state import load_state, save_state
from olmoflow.post.verifiers import get_verifier, score
from olmoflow.train import parallel
from olmoflow.train.optim import build_optimizer
from olmoflow.train.world import World, autocast


def prepare(rows: list[dict], template: ChatTemplate, max_prompt_len: int) -> list[dict]:
    """Rows with their prompt tokens under "ids"; over-long prompts are skipped, an unknown verifier is an error."""
    out = []
    for r in rows:
        get_verifier(r["verifier"])
        ids = template.prompt([{"role": "user", "content": r["prompt"]}])
        if len(ids) <= max_prompt_len:
            out.append({**r, "ids": ids})
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


def make_reward(tokenizer: Any) -> Callable[[dict, list[int]], float]:
    def reward(row: dict, completion: list[int]) -> float:
        return score(row["verifier"], tokenizer.decode(completion, skip_special_tokens=True), row["answer"])
    return reward


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
def greedy_accuracy(model: nn.Module, items: list[dict], reward: Callable[[dict, list[int]], float],
                    max_new_tokens: int, eos_id: int, batch: int) -> dict[str, float]:
    """{"val_accuracy": mean reward of greedy completions, "val_accuracy/{family}": the same per verifier}."""
    model.eval()
    scored: list[tuple[str, float]] = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        with autocast(next(model.parameters()).device):
            tokens, _ = generate(model, [it["ids"] for it in chunk], max_new_tokens, temperature=0.0, eos_id=eos_id)
        scored += [(it["verifier"], reward(it, t)) for it, t in zip(chunk, tokens)]
    model.train()
    return {"val_accuracy": sum(r for _, r in scored) / len(scored), **family_means(scored, "val_accuracy")}


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.rlvr
    ckpt = ctx.input("checkpoint").path
    model, tokenizer = load_checkpoint(ckpt)
    world = World()  # one process: RL is not sharded (runner refuses torchrun for it)
    model = parallel.parallelize(model, world, cfg.activation_checkpointing)
    device = world.device
    model.train()
    template = ChatTemplate(tokenizer)
    reward = make_reward(tokenizer)

    # ---- prompts: a fixed held-out slice; the rest is an endless seeded stream, its position saved
    rows = read_jsonl(ctx.input("dataset").path / "post" / "rl.jsonl", ["prompt", "answer", "verifier"])
    train_rows, val_rows = split_families(rows, cfg.val_prompts)
    train = prepare(train_rows, template, cfg.max_prompt_len)
    val = prepare(val_rows, template, cfg.max_prompt_len)
    if not train or not val:
        raise ValueError(f"stage rlvr: no prompt in post/rl.jsonl fits rlvr.max_prompt_len={cfg.max_prompt_len}")
    ctx.log.info("rlvr: %d train / %d held-out prompts (%s), %d steps of %d x %d on %s", len(train), len(val),
                 ", ".join(f"{f}: {n}" for f, n in sorted(Counter(r["verifier"] for r in train + val).items())),
                 cfg.steps, cfg.prompts_per_step, cfg.group_size, device)
    errors_at_start = verifiers.reward_errors.copy()
    rollout_batch = cfg.prompts_per_step * cfg.group_size

    # ---- resume or start
    # No weight decay and no schedule: Olmo 3's RL runs a constant, small LR straight from the DPO model.
    optimizer = build_optimizer(model, cfg.lr, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(cfg.seed)  # sampling draws on the model's device
    latest = ctx.work.latest()
    if latest is not None:
        loop = load_state(latest, model, optimizer, generator)
        ctx.log.info("rlvr: resuming at step %d from %s", loop["step"], latest)
    else:
        before = greedy_accuracy(model, val, reward, cfg.max_new_tokens, template.im_end, rollout_batch)
        loop = {"step": 0, "cursor": 0, "reward": [], "val_before": before["val_accuracy"], "before": before,
                "errors": {}}
        ctx.log_metrics(before, step=0)

    def draw(k: int) -> list[dict]:
        picked = [train[i] for i in stream_indices(loop["cursor"], k, len(train), cfg.seed)]
        loop["cursor"] += k
        return picked

    scored: list[tuple[str, float]] = []  # (family, reward) of every completion sampled this step

    def sample(items: list[dict]) -> list[Group]:
        groups = sample_groups(model, items, lambda it: it["ids"], reward, cfg.group_size, cfg.max_new_tokens,
                               cfg.temperature, cfg.top_p, template.im_end, generator)
        scored.extend((g.item["verifier"], r) for g in groups for r in g.rewards)
        return groups

    # ---- train
    for step in ctx.progress(range(loop["step"], cfg.steps), total=cfg.steps - loop["step"], desc="steps"):
        scored.clear()
        errors_before = verifiers.reward_errors.copy()
        batch = active_sample(draw, sample, cfg.prompts_per_step, cfg.max_sample_rounds)
        errors = error_metrics(verifiers.reward_errors - errors_before)
        stats = policy_update(model, optimizer, to_samples(batch.groups), pad_id=template.pad,
                              micro_batch=cfg.micro_batch, epochs=cfg.ppo_epochs, clip_low=cfg.clip_low,
                              clip_high=cfg.clip_high, tis_cap=cfg.tis_cap, temperature=cfg.temperature,
                              grad_clip=cfg.grad_clip)
        if not batch.groups:
            ctx.log.warning("rlvr: step %d: no group with reward variance in %d rounds; no update", step + 1,
                            cfg.max_sample_rounds)

        done = step + 1
        mean_reward = sum(batch.rewards) / len(batch.rewards)
        loop["reward"].append([done, mean_reward])
        if errors["reward_errors"]:
            ctx.log.warning("rlvr: step %d: %d rewards raised and scored 0 (%s)", done, errors["reward_errors"],
                            "; ".join(f"{f}: {verifiers.last_errors.get(f, '')}" for f in
                                      sorted(verifiers.reward_errors - errors_before)))
        if done % cfg.log_every == 0 or done == cfg.steps:
            ctx.log_metrics({"mean_reward": mean_reward, **family_means(scored, "reward"), **errors,
                             "zero_variance_fraction": batch.zero_variance / batch.sampled,
                             "groups_trained": len(batch.groups),
                             "response_length": sum(batch.lengths) / len(batch.lengths), **stats}, step=done)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            loop["step"] = done
            loop["errors"] = dict(Counter(loop.get("errors", {})) + (verifiers.reward_errors - errors_at_start))
            errors_at_start = verifiers.reward_errors.copy()
            with ctx.work.saving(done) as d:
                save_state(d, model, optimizer, loop, generator)

    # ---- measure and save
    after = greedy_accuracy(model, val, reward, cfg.max_new_tokens, template.im_end, rollout_batch)
    ctx.log_metrics(after, step=cfg.steps)
    rewards = [r for _, r in loop["reward"]]
    # every reward that raised in this run, the held-out passes included (a resumed run adds the saved count)
    total_errors = Counter(loop.get("errors", {})) + (verifiers.reward_errors - errors_at_start)
    metrics = {**after, "val_accuracy_before": loop["val_before"],
               **{k.replace("val_accuracy", "val_accuracy_before"): v for k, v in loop.get("before", {}).items()
                  if "/" in k},
               "mean_reward": sum(rewards) / len(rewards), "mean_reward_first": rewards[0],
               "mean_reward_last": rewards[-1], "steps": float(cfg.steps),
               **error_metrics(total_errors)}
    save_checkpoint(ctx.out, model, ckpt / "tokenizer.json")
    write_metrics(ctx.out, metrics)
    plot_curves(ctx, "rlvr_reward.png",
                {"reward": {"sampled (mean)": loop["reward"],
                            "held-out (greedy)": [[0, loop["val_before"]], [cfg.steps, after["val_accuracy"]]]}},
                "RLVR")
    return metrics
