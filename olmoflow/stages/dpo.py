"""DPO: prefer the chosen reply over the rejected one, measured against the frozen input model.

    olmoflow stage dpo --config tiny --input dataset=URI --input checkpoint=URI

Pairs from post/dpo.jsonl ({"messages", "chosen", "rejected"}; Olmo 3's "delta learning": chosen from a stronger
model than rejected) are scored with length-normalized DPO (olmoflow/post/dpo.py) on reply tokens only. The
reference model is the input checkpoint; its log-probabilities never change, so they are computed once, before
training, and the reference model is never kept in memory beside the policy. LR: warmup, then linear to 0.

Held-out pairs (a content-hash split) measure, before and after:
- pref_accuracy: how often the policy gives the chosen reply a higher mean per-token log-probability than the
  rejected one (the model's own preference; meaningful before training too);
- reward_accuracy: how often DPO's implicit reward margin is positive (0 before training, where policy = reference).
"""

from __future__ import annotations

import torch
from torch import nn

from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.post.chat import ChatTemplate, Encoded, truncate
from olmoflow.post.data import micro_batches, read_jsonl, split_heldout, stream_indices
from olmoflow.post.device import place
from olmoflow.post.dpo import dpo_loss, pair_logprobs
from olmoflow.post.report import plot_curves, write_metrics
from olmoflow.post.state import load_state, save_state
from olmoflow.stages.context import StageContext
from olmoflow.train.optim import build_optimizer
from olmoflow.train.schedule import lr_factor

KIND = "checkpoint"
INPUTS = ("dataset", "checkpoint")
HEADLINE = "pref_accuracy"

Pair = tuple[Encoded, Encoded]


def encode(rows: list[dict], template: ChatTemplate, seq_len: int) -> list[Pair]:
    """(chosen, rejected) token pairs; a pair is dropped when either reply has no token left within seq_len."""
    out = []
    for r in rows:
        chosen = truncate(template.with_response(r["messages"], r["chosen"]), seq_len)
        rejected = truncate(template.with_response(r["messages"], r["rejected"]), seq_len)
        if chosen is not None and rejected is not None:
            out.append((chosen, rejected))
    return out


def _chunks(pairs: list[Pair], idx: list[int], micro_batch: int) -> list[list[int]]:
    return micro_batches(idx, micro_batch, length=lambda i: max(len(pairs[i][0]), len(pairs[i][1])))


@torch.no_grad()
def score(model: nn.Module, pairs: list[Pair], micro_batch: int, pad_id: int,
          which: list[int] | None = None) -> torch.Tensor:
    """[4, N]: logπ(c), logπ(r), |c|, |r| of the pairs listed in `which` (default all); other columns stay 0."""
    out = torch.zeros(4, len(pairs))
    for mb in _chunks(pairs, list(range(len(pairs))) if which is None else which, micro_batch):
        out[:, mb] = torch.stack(pair_logprobs(model, [pairs[i] for i in mb], pad_id)).cpu()
    return out


def heldout(scores: torch.Tensor, ref: torch.Tensor, beta: float, length_normalized: bool) -> dict[str, float]:
    """Held-out metrics from the policy's and the reference's `score` of the same pairs."""
    pi_c, pi_r, n_c, n_r = scores
    loss, reward_c, reward_r = dpo_loss(pi_c, pi_r, ref[0], ref[1], n_c, n_r, beta, length_normalized)
    return {"pref_accuracy": float((pi_c / n_c > pi_r / n_r).float().mean()),
            "reward_accuracy": float((reward_c > reward_r).float().mean()),
            "val_dpo_loss": float(loss.mean()), "val_reward_margin": float((reward_c - reward_r).mean())}


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.dpo
    ckpt = ctx.input("checkpoint").path
    model, tokenizer = load_checkpoint(ckpt)
    device = place(model, cfg.activation_checkpointing)
    template = ChatTemplate(tokenizer)
    pad = template.pad

    # ---- data
    rows = read_jsonl(ctx.input("dataset").path / "post" / "dpo.jsonl", ["messages", "chosen", "rejected"])
    train_rows, val_rows = split_heldout(rows, cfg.val_pairs, "dpo.val_pairs")
    if cfg.max_pairs:
        train_rows = train_rows[:cfg.max_pairs]
    train, val = encode(train_rows, template, cfg.seq_len), encode(val_rows, template, cfg.seq_len)
    if not train or not val:
        raise ValueError(f"stage dpo: no pair in post/dpo.jsonl keeps a reply token within dpo.seq_len={cfg.seq_len}")
    ctx.log.info("dpo: %d train / %d held-out pairs, %d steps of %d on %s", len(train), len(val), cfg.steps,
                 cfg.batch_size, device)

    # ---- the reference model, once: the input checkpoint's log-probabilities of the pairs this run will visit
    # (a resumed run recomputes them from the same input checkpoint before the policy's weights are restored)
    model.eval()
    visited = sorted(set(stream_indices(0, cfg.steps * cfg.batch_size, len(train), cfg.seed)))
    ref_train = score(model, train, cfg.micro_batch, pad, visited)
    ref_val = score(model, val, cfg.micro_batch, pad)
    model.train()

    # ---- resume or start
    # No weight decay: it would pull the policy toward zero, not toward the reference that DPO measures from.
    optimizer = build_optimizer(model, cfg.lr, weight_decay=0.0)
    latest = ctx.work.latest()
    if latest is not None:
        loop = load_state(latest, model, optimizer)
        ctx.log.info("dpo: resuming at step %d from %s", loop["step"], latest)
    else:
        # Before any step the policy is the reference, so its held-out scores are the reference's.
        before = heldout(ref_val, ref_val, cfg.beta, cfg.length_normalized)
        loop = {"step": 0, "curve": [], "margin": [], "before": before}
        ctx.log_metrics(before, step=0)

    # ---- train
    for step in ctx.progress(range(loop["step"], cfg.steps), total=cfg.steps - loop["step"], desc="steps"):
        lr = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup_steps, "linear")
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = stream_indices(step * cfg.batch_size, cfg.batch_size, len(train), cfg.seed)
        stats = torch.zeros(4, device=device)  # loss, margin, correct, chosen reward: sums over the batch
        for mb in _chunks(train, idx, cfg.micro_batch):
            pi_c, pi_r, n_c, n_r = pair_logprobs(model, [train[i] for i in mb], pad)
            ref_c, ref_r = ref_train[:2, mb].to(device)
            loss, reward_c, reward_r = dpo_loss(pi_c, pi_r, ref_c, ref_r, n_c, n_r, cfg.beta, cfg.length_normalized)
            (loss.sum() / len(idx)).backward()
            stats += torch.stack([loss.sum(), (reward_c - reward_r).sum(), (reward_c > reward_r).sum(),
                                  reward_c.sum()]).detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        loss_value, margin, accuracy, chosen = (stats / len(idx)).tolist()
        loop["curve"].append([done, loss_value])
        loop["margin"].append([done, margin])
        if done % cfg.log_every == 0 or done == cfg.steps:
            ctx.log_metrics({"train_loss": loss_value, "reward_margin": margin, "train_reward_accuracy": accuracy,
                             "chosen_reward": chosen, "rejected_reward": chosen - margin, "lr": lr,
                             "grad_norm": float(grad_norm)}, step=done)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            loop["step"] = done
            with ctx.work.saving(done) as d:
                save_state(d, model, optimizer, loop)

    # ---- measure and save
    after = heldout(score(model, val, cfg.micro_batch, pad), ref_val, cfg.beta, cfg.length_normalized)
    ctx.log_metrics(after, step=cfg.steps)
    metrics = {**after, **{f"{k}_before": v for k, v in loop["before"].items()},
               "train_pairs": float(len(train)), "steps": float(cfg.steps)}
    save_checkpoint(ctx.out, model, ckpt / "tokenizer.json")
    write_metrics(ctx.out, metrics)
    ctx.log_artifact(plot_curves(ctx.out / "plots" / "dpo.png",
                                 {"loss": {"train": loop["curve"],
                                           "held-out": [[0, loop["before"]["val_dpo_loss"]],
                                                        [cfg.steps, after["val_dpo_loss"]]]},
                                  "reward margin": {"train": loop["margin"]},
                                  "held-out accuracy": {
                                      "preference": [[0, loop["before"]["pref_accuracy"]],
                                                     [cfg.steps, after["pref_accuracy"]]],
                                      "reward": [[0, loop["before"]["reward_accuracy"]],
                                                 [cfg.steps, after["reward_accuracy"]]]}},
                                 "DPO"))
    return metrics
