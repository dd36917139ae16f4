"""DPO: prefer the chosen reply over the rejected one, measured against the frozen input model.

    olmoflow stage dpo --config tiny --input dataset=URI --input checkpoint=URI

Pairs from post/dpo.jsonl ({"messages", "chosen", "rejected"}; Olmo 3's "delta learning": chosen from a stronger
model than rejected) are scored with length-normalized DPO (olmoflow/post/dpo.py) on reply tokens only. The
reference model is the input checkpoint; its log-probabilities never change, so they are computed once, before
training, and the reference model is never kept in memory beside the policy. LR: warmup, then linear to 0.

With dpo.delta_prompts, delta-learning pairs are sampled on verifiable prompts (post/dpo_prompts.jsonl;
olmoflow/post/delta.py): chosen = a sample of the input model that the verifier accepts, rejected = an incorrect
sample of a weaker model (dpo.delta_weak: the input's parent checkpoint, the model SFT started from, read through
the input's manifest, so the pipeline wires nothing more). Held-out prompts (post/heldout.jsonl, never trained on)
become pairs the same way: heldout_pref_accuracy, before and after. The curated pairs (post/dpo.jsonl) still
train; their HHH human pairs are reported apart (heldout_pref_accuracy_hhh).

Held-out pairs (a content-hash split) measure, before and after:
- pref_accuracy: how often the policy gives the chosen reply a higher mean per-token log-probability than the
  rejected one (the model's own preference; meaningful before training too; a tie counts 0.5);
- reward_accuracy: how often DPO's implicit reward margin is positive (0 before training, where policy = reference).

Under torchrun the model is sharded as in pretraining (olmoflow/train/parallel.py): each rank scores and trains
its share of the pairs (olmoflow/post/ranks.py), in-stage checkpoints are DCP and rank 0 writes the payload.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from olmoflow.artifacts import ArtifactStore
from olmoflow.contract.context import StageContext
from olmoflow.contract.report import write_metrics
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.post.chat import ChatTemplate, Encoded, truncate
from olmoflow.post.data import micro_batches, read_jsonl, split_heldout, stream_indices
from olmoflow.post.delta import delta_pairs
from olmoflow.post.dpo import dpo_loss, pair_logprobs
from olmoflow.post.heldout import heldout_rows, log_samples, rates, replies
from olmoflow.post.plots import plot_curves
from olmoflow.post.ranks import check_batch, padded_share, share
from olmoflow.post.skipped import report
from olmoflow.post.state import resume_sharded
from olmoflow.train import parallel
from olmoflow.train.optim import build_optimizer
from olmoflow.train.schedule import lr_factor
from olmoflow.train.world import World

Pair = tuple[Encoded, Encoded]


def encode(rows: list[dict], template: ChatTemplate, seq_len: int, skipped: Counter | None = None) -> list[Pair]:
    """(chosen, rejected) token pairs; a pair whose replies are the same text (it teaches nothing and would score a
    tie) or whose either reply has no token left within seq_len is skipped, and counted in `skipped` by reason."""
    out = []
    skipped = Counter() if skipped is None else skipped
    for r in rows:
        if r["chosen"].strip() == r["rejected"].strip():
            skipped["identical_pair"] += 1
            continue
        chosen = truncate(template.with_response(r["messages"], r["chosen"]), seq_len)
        rejected = truncate(template.with_response(r["messages"], r["rejected"]), seq_len)
        if chosen is None or rejected is None:
            skipped["past_seq_len"] += 1
            continue
        out.append((chosen, rejected))
    return out


def _chunks(pairs: list[Pair], idx: list[int], micro_batch: int) -> list[list[int]]:
    return micro_batches(idx, micro_batch, length=lambda i: max(len(pairs[i][0]), len(pairs[i][1])))


@torch.no_grad()
def score(model: nn.Module, pairs: list[Pair], micro_batch: int, pad_id: int, world: World,
          which: list[int] | None = None) -> torch.Tensor:
    """[4, N] on the CPU: logπ(c), logπ(r), |c|, |r| of the pairs listed in `which` (default all), each rank
    scoring its share; other columns stay 0. Collective."""
    out = torch.zeros(4, len(pairs), device=world.device)
    mine = padded_share(list(range(len(pairs))) if which is None else which, world)
    for mb in micro_batches(mine, micro_batch, length=lambda x: max(map(len, pairs[x[0]]))):
        values = torch.stack(pair_logprobs(model, [pairs[i] for i, _ in mb], pad_id))
        real = [k for k, (_, r) in enumerate(mb) if r]  # a padding repeat's column is another rank's
        out[:, [mb[k][0] for k in real]] = values[:, real].to(out.device)
    parallel.reshard(model)
    return world.sum(out).cpu()


def preference(scores: torch.Tensor) -> float:
    """The share of pairs whose chosen reply has the higher mean per-token log-probability; a tie counts 0.5."""
    c, r = scores[0] / scores[2], scores[1] / scores[3]
    return float(((c > r).float() + 0.5 * (c == r).float()).mean())


def parent_checkpoint(ctx: StageContext) -> tuple[nn.Module | None, str]:
    """The checkpoint the input checkpoint was trained from (its manifest's checkpoint input), and its URI;
    (None, "") when it names none (an imported or pretrained-from-scratch checkpoint)."""
    uri = ctx.input("checkpoint").manifest.get("inputs", {}).get("checkpoint", {}).get("uri", "")
    if not uri:
        return None, ""
    path = ArtifactStore(ctx.cfg.flow.store, ctx.cfg.flow.name).open(uri, kind="checkpoint").path
    return load_checkpoint(path)[0].to(World.current().device), uri


def weaker_model(ctx: StageContext, which: str) -> tuple[nn.Module | None, str]:
    """DPO's weaker model for dpo.delta_weak: the input's early/ model (early), else its parent checkpoint
    (early, parent); (None, "") for self or when there is none."""
    early = ctx.input("checkpoint").path / "early"
    if which == "early" and (early / "model").is_dir():
        return load_checkpoint(early)[0].to(World.current().device), f"{ctx.input('checkpoint').uri}/early"
    if which == "early":
        ctx.log.warning("dpo: dpo.delta_weak=early but %s has no early/ model (sft.early_checkpoint): its parent "
                        "checkpoint instead", ctx.input("checkpoint").uri)
    return parent_checkpoint(ctx) if which in ("early", "parent") else (None, "")


def verifiable_pairs(ctx: StageContext, model: nn.Module, template: ChatTemplate
                     ) -> tuple[list[dict], list[dict], dict[str, float]]:
    """(train pairs, held-out pairs, counts) sampled on post/dpo_prompts.jsonl and post/heldout.jsonl."""
    cfg = ctx.cfg.dpo
    data = ctx.input("dataset").path
    prompts = read_jsonl(data / "post" / "dpo_prompts.jsonl", ["prompt", "answer", "verifier"])
    prompts = prompts[:cfg.delta_prompts]
    # held-out pairs of the families DPO trains on: a family the SFT model always gets right (tiny's parity) has
    # no wrong reply in the answer format, so its pairs would be format-versus-no-format and say nothing
    families = {r["family"] for r in prompts if "family" in r} or None
    held = heldout_rows(data, cfg.delta_heldout, "dpo.delta_heldout", families)
    weak, uri = weaker_model(ctx, cfg.delta_weak)
    if weak is None:
        ctx.log.info("dpo: rejected replies are the input model's own incorrect samples%s",
                     "" if cfg.delta_weak == "self" else " (its manifest names no parent checkpoint)")
        weak = model
    else:
        ctx.log.info("dpo: rejected replies are samples of %s", uri)
    weak.eval()
    model.eval()
    out, counts = [], {}
    for name, rows, seed in (("train", prompts, cfg.seed), ("heldout", held, cfg.seed + 1000)):
        pairs, stats = delta_pairs(model, weak, template, rows, cfg.delta_samples, cfg.delta_max_new_tokens,
                                   cfg.delta_temperature, seed)
        out.append(pairs)
        n = max(1, len(rows) * cfg.delta_samples)
        counts |= {f"delta_{name}_pairs": float(len(pairs)), f"delta_{name}_prompts": float(len(rows)),
                   f"delta_{name}_strong_correct": stats["strong_correct"] / n,
                   f"delta_{name}_weak_correct": stats["weak_correct"] / n,
                   f"delta_{name}_chosen_reference": float(stats["chosen_reference"]),
                   f"delta_{name}_rejected_in_format": float(stats["rejected_in_format"])}
    del weak
    return out[0], out[1], counts


def heldout(scores: torch.Tensor, ref: torch.Tensor, beta: float, length_normalized: bool) -> dict[str, float]:
    """Held-out metrics from the policy's and the reference's `score` of the same pairs."""
    pi_c, pi_r, n_c, n_r = scores
    loss, reward_c, reward_r = dpo_loss(pi_c, pi_r, ref[0], ref[1], n_c, n_r, beta, length_normalized)
    return {"pref_accuracy": preference(scores),
            "reward_accuracy": float((reward_c > reward_r).float().mean()),
            "val_dpo_loss": float(loss.mean()), "val_reward_margin": float((reward_c - reward_r).mean())}


def by_source(scores: torch.Tensor, groups: dict[str, list[int]]) -> dict[str, float]:
    """heldout_pref_accuracy (the verifiable pairs) and heldout_pref_accuracy_hhh, for the groups that have pairs."""
    names = {"verifiable": "heldout_pref_accuracy", "hhh": "heldout_pref_accuracy_hhh"}
    return {names[g]: preference(scores[:, idx]) for g, idx in groups.items() if idx}


def answer(model: nn.Module, tag: str, probe: list[dict], template: ChatTemplate, cfg) -> tuple[list[str], dict]:
    """Greedy replies to the held-out prompts and their heldout_reward / format_rate (no probe: nothing)."""
    if not probe:
        return [], {}
    texts = replies(model, template, [r["prompt"] for r in probe], cfg.delta_max_new_tokens)
    got = rates(probe, texts)
    return texts, {"heldout_reward": got.pop("reward"), "format_rate": got.pop("format_rate"),
                   **{f"heldout_{k}": v for k, v in got.items()}}


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.dpo
    ckpt = ctx.input("checkpoint").path
    world = World.current()
    check_batch(cfg.batch_size, "dpo.batch_size", world)
    model, tokenizer = load_checkpoint(ckpt, weights=world.holds_weights)  # rank 0 reads, parallelize shares
    model = parallel.parallelize(model, world, cfg.activation_checkpointing)
    device = world.device
    template = ChatTemplate(tokenizer)
    pad = template.pad

    # ---- data: the curated pairs (HHH's apart when dpo.val_pairs_hhh), then the verifiable pairs sampled here
    rows = read_jsonl(ctx.input("dataset").path / "post" / "dpo.jsonl", ["messages", "chosen", "rejected"])
    hhh = [r for r in rows if r.get("source") == "hhh"] if cfg.val_pairs_hhh else []
    train_rows, val_rows = split_heldout([r for r in rows if not hhh or r.get("source") != "hhh"], cfg.val_pairs,
                                         "dpo.val_pairs")
    if hhh:
        hhh_train, hhh_val = split_heldout(hhh, cfg.val_pairs_hhh, "dpo.val_pairs_hhh")
        train_rows, val_rows = train_rows + hhh_train, val_rows + hhh_val
    if cfg.max_pairs:
        train_rows = train_rows[:cfg.max_pairs]
    counts: dict[str, float] = {}
    probe: list[dict] = []
    if cfg.delta_prompts and world.size == 1:  # sampling from a sharded model is not done yet (post/heldout.py)
        delta_train, delta_val, counts = verifiable_pairs(ctx, model, template)
        train_rows, val_rows = train_rows + delta_train, val_rows + delta_val
        probe = heldout_rows(ctx.input("dataset").path, cfg.delta_heldout, "dpo.delta_heldout")
    elif cfg.delta_prompts and ctx.lead:
        ctx.log.warning("dpo: dpo.delta_prompts=%d ignored on %d ranks (sampling pairs runs in one process): the "
                        "curated pairs alone", cfg.delta_prompts, world.size)
    skipped: Counter = Counter()
    train, val = encode(train_rows, template, cfg.seq_len, skipped), encode(val_rows, template, cfg.seq_len, skipped)
    if ctx.lead:
        counts |= report(skipped, "preference pairs", "dpo", ctx.log, seq_len=f"dpo.seq_len={cfg.seq_len}")
    # which held-out pairs are which (encode drops pairs left without a reply token: keep the rows aligned)
    kept = [r for r in val_rows if encode([r], template, cfg.seq_len)]
    groups = {"hhh": [i for i, r in enumerate(kept) if r.get("source") == "hhh"],
              "verifiable": [i for i, r in enumerate(kept) if r.get("source") == "delta"]}
    if not train or not val:
        raise ValueError(f"stage dpo: no pair in post/dpo.jsonl keeps a reply token within dpo.seq_len={cfg.seq_len}")
    if ctx.lead:
        ctx.log.info("dpo: %d train / %d held-out pairs, %d steps of %d on %d x %s", len(train), len(val),
                     cfg.steps, cfg.batch_size, world.size, device)

    # ---- the reference model, once: the input checkpoint's log-probabilities of the pairs this run will visit
    # (a resumed run recomputes them from the same input checkpoint before the policy's weights are restored)
    model.eval()
    visited = sorted(set(stream_indices(0, cfg.steps * cfg.batch_size, len(train), cfg.seed)))
    ref_train = score(model, train, cfg.micro_batch, pad, world, visited)
    ref_val = score(model, val, cfg.micro_batch, pad, world)
    model.train()

    # ---- resume or start
    # No weight decay: it would pull the policy toward zero, not toward the reference that DPO measures from.
    optimizer = build_optimizer(model, cfg.lr, weight_decay=0.0)
    resumer, loop = resume_sharded(ctx, world, model, optimizer)
    if loop is None:
        # Before any step the policy is the reference, so its held-out scores are the reference's.
        before = heldout(ref_val, ref_val, cfg.beta, cfg.length_normalized) | by_source(ref_val, groups)
        answered = answer(model, "before", probe, template, cfg)
        loop = {"step": 0, "curve": [], "margin": [], "before": before | answered[1], "probe": answered[0]}
        ctx.log_metrics(before, step=0)

    # ---- train
    for step in ctx.progress(range(loop["step"], cfg.steps), total=cfg.steps - loop["step"], desc="steps"):
        lr = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup_steps, "linear")
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = stream_indices(step * cfg.batch_size, cfg.batch_size, len(train), cfg.seed)
        stats = torch.zeros(4, device=device)  # loss, margin, correct, chosen reward: sums over the batch
        chunks = _chunks(train, share(idx, world), cfg.micro_batch)
        for k, mb in enumerate(chunks):
            parallel.sync_grads(model, k == len(chunks) - 1)  # FSDP: reduce-scatter after the last micro-batch
            pi_c, pi_r, n_c, n_r = pair_logprobs(model, [train[i] for i in mb], pad)
            ref_c, ref_r = ref_train[:2, mb].to(device)
            loss, reward_c, reward_r = dpo_loss(pi_c, pi_r, ref_c, ref_r, n_c, n_r, cfg.beta, cfg.length_normalized)
            (loss.sum() / len(idx)).backward()
            stats += torch.stack([loss.sum(), (reward_c - reward_r).sum(), (reward_c > reward_r).sum(),
                                  reward_c.sum()]).detach()
        grad_norm = parallel.clip_grads(model, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        loss_value, margin, accuracy, chosen = (world.sum(stats) / len(idx)).tolist()
        loop["curve"].append([done, loss_value])
        loop["margin"].append([done, margin])
        if done % cfg.log_every == 0 or done == cfg.steps:
            ctx.log_metrics({"train_loss": loss_value, "reward_margin": margin, "train_reward_accuracy": accuracy,
                             "chosen_reward": chosen, "rejected_reward": chosen - margin, "lr": lr,
                             "grad_norm": grad_norm}, step=done)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            loop["step"] = done
            resumer.save(done, {"loop": loop}, model, optimizer)

    # ---- measure and save
    scores = score(model, val, cfg.micro_batch, pad, world)
    after = heldout(scores, ref_val, cfg.beta, cfg.length_normalized) | by_source(scores, groups)
    texts, answered = answer(model, "after", probe, template, cfg)
    after |= answered
    ctx.log_metrics(after, step=cfg.steps)
    metrics = {**after, **{f"{k}_before": v for k, v in loop["before"].items()},
               "train_pairs": float(len(train)), "steps": float(cfg.steps), **counts}
    if probe and ctx.lead:
        log_samples(ctx, "dpo_samples", probe, {"before": loop["probe"], "after": texts})
    plain = parallel.export(model, world, wrapped=world.size > 1 or cfg.activation_checkpointing)
    if ctx.lead:
        save_checkpoint(ctx.out, plain, ckpt / "tokenizer.json")
        write_metrics(ctx.out, metrics)
        plot_curves(ctx, "dpo.png",
                    {"loss": {"train": loop["curve"],
                              "held-out": [[0, loop["before"]["val_dpo_loss"]],
                                           [cfg.steps, after["val_dpo_loss"]]]},
                     "reward margin": {"train": loop["margin"]},
                     "held-out accuracy": {
                         "preference": [[0, loop["before"]["pref_accuracy"]],
                                        [cfg.steps, after["pref_accuracy"]]],
                         "reward": [[0, loop["before"]["reward_accuracy"]],
                                    [cfg.steps, after["reward_accuracy"]]]}},
                    "DPO")
    return metrics
