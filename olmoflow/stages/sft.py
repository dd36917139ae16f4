"""SFT: teach the model to answer in the chat format, training only on what the assistant says.

    olmoflow stage sft --config tiny --input dataset=URI --input checkpoint=URI

Conversations from post/sft.jsonl go through Olmo 3's chat template (olmoflow/post/chat.py). The loss is next-token
cross-entropy on assistant tokens only (content and closing <|im_end|>), averaged over every assistant token of the
step's batch however it is cut into micro-batches (olmoflow/post/sft.py). Batches are padded, not packed
(olmoflow/post/data.py says why). LR: warmup, then linear to 0. A held-out slice of the conversations (a
content-hash split) measures the loss before and after.
"""

from __future__ import annotations

import torch
from torch import nn

from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.post.chat import ChatTemplate, Encoded, truncate
from olmoflow.post.data import micro_batches, pad_batch, read_jsonl, split_heldout, stream_indices
from olmoflow.post.device import place
from olmoflow.post.logprobs import masked_sums
from olmoflow.post.report import plot_curves, write_metrics
from olmoflow.post.sft import sft_backward
from olmoflow.post.state import load_state, save_state
from olmoflow.stages.context import StageContext
from olmoflow.train.optim import build_optimizer
from olmoflow.train.schedule import lr_factor

KIND = "checkpoint"
INPUTS = ("dataset", "checkpoint")
HEADLINE = "val_sft_loss"


def encode(rows: list[dict], template: ChatTemplate, seq_len: int) -> list[Encoded]:
    """Conversations that keep at least one assistant token within seq_len; the rest are dropped."""
    out = [truncate(template.encode(r["messages"]), seq_len) for r in rows]
    return [e for e in out if e is not None]


@torch.no_grad()
def heldout_loss(model: nn.Module, examples: list[Encoded], micro_batch: int, pad_id: int) -> float:
    """Mean cross-entropy per assistant token (nats) over `examples`."""
    total = count = 0.0
    for mb in micro_batches(examples, micro_batch):
        logp, n = masked_sums(model, *pad_batch([e.ids for e in mb], [e.mask for e in mb], pad_id))
        total -= float(logp.sum())
        count += float(n.sum())
    return total / count


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.sft
    ckpt = ctx.input("checkpoint").path
    model, tokenizer = load_checkpoint(ckpt)
    device = place(model, cfg.activation_checkpointing)
    model.train()
    template = ChatTemplate(tokenizer)

    # ---- data: a fixed held-out slice, the rest in a seeded order that is a function of the step
    rows = read_jsonl(ctx.input("dataset").path / "post" / "sft.jsonl", ["messages"])
    train_rows, val_rows = split_heldout(rows, cfg.val_examples, "sft.val_examples", key=lambda r: r["messages"])
    if cfg.max_examples:
        train_rows = train_rows[:cfg.max_examples]
    train, val = encode(train_rows, template, cfg.seq_len), encode(val_rows, template, cfg.seq_len)
    if not train or not val:
        raise ValueError(f"stage sft: no conversation in post/sft.jsonl keeps an assistant token within "
                         f"sft.seq_len={cfg.seq_len}")
    ctx.log.info("sft: %d train / %d held-out conversations, %d steps of %d on %s", len(train), len(val), cfg.steps,
                 cfg.batch_size, device)

    # ---- resume or start
    optimizer = build_optimizer(model, cfg.lr, weight_decay=cfg.weight_decay)
    latest = ctx.work.latest()
    if latest is not None:
        loop = load_state(latest, model, optimizer)
        ctx.log.info("sft: resuming at step %d from %s", loop["step"], latest)
    else:
        loop = {"step": 0, "curve": [], "val_before": heldout_loss(model, val, cfg.micro_batch, template.pad)}
        ctx.log_metrics({"val_sft_loss": loop["val_before"]}, step=0)

    # ---- train
    for step in ctx.progress(range(loop["step"], cfg.steps), total=cfg.steps - loop["step"], desc="steps"):
        lr = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup_steps, "linear")
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [train[i] for i in stream_indices(step * cfg.batch_size, cfg.batch_size, len(train), cfg.seed)]
        loss_value = sft_backward(model, batch, cfg.micro_batch, template.pad)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        loop["curve"].append([done, loss_value])
        if done % cfg.log_every == 0 or done == cfg.steps:
            ctx.log_metrics({"train_loss": loss_value, "lr": lr, "grad_norm": float(grad_norm),
                             "assistant_tokens": sum(e.n_targets for e in batch)}, step=done)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            loop["step"] = done
            with ctx.work.saving(done) as d:
                save_state(d, model, optimizer, loop)

    # ---- measure and save
    val_after = heldout_loss(model, val, cfg.micro_batch, template.pad)
    ctx.log_metrics({"val_sft_loss": val_after}, step=cfg.steps)
    tail = [v for _, v in loop["curve"][-max(1, cfg.steps // 10):]]
    metrics = {"val_sft_loss": val_after, "val_sft_loss_before": loop["val_before"],
               "train_loss": sum(tail) / len(tail), "train_examples": float(len(train)), "steps": float(cfg.steps)}
    save_checkpoint(ctx.out, model, ckpt / "tokenizer.json")
    write_metrics(ctx.out, metrics)
    ctx.log_artifact(plot_curves(ctx.out / "plots" / "sft_loss.png",
                                 {"loss (nats per assistant token)": {
                                     "train": loop["curve"],
                                     "held-out": [[0, loop["val_before"]], [cfg.steps, val_after]]}},
                                 "SFT"))
    return metrics
