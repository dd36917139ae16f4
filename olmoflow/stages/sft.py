"""SFT: teach the model to answer in the chat format, training only on what the assistant says.

    olmoflow stage sft --config tiny --input dataset=URI --input checkpoint=URI
    torchrun --nproc-per-node 8 -m olmoflow.cli stage sft --config olmo3-7b ...   # FSDP over 8 GPUs

Conversations from post/sft.jsonl go through Olmo 3's chat template (olmoflow/post/chat.py). The loss is next-token
cross-entropy on assistant tokens only (content and closing <|im_end|>), averaged over every assistant token of the
step's batch however it is cut into micro-batches or split over ranks (olmoflow/post/sft.py, post/ranks.py).
With sft.pack, a step's conversations are packed into seq_len rows with intra-document masking
(olmoflow/post/data.py). LR: warmup, then linear to 0. A held-out slice of the conversations (a content-hash split)
measures the loss before and after; held-out rule prompts (post/heldout.jsonl, never trained on) are answered
greedily before and after (olmoflow/post/heldout.py): format_rate_before / _after (the share of replies in the
expected "The answer is X." format) and heldout_reward_before / _after, with a table of sample replies in MLflow.

Under torchrun the model is sharded as in pretraining (olmoflow/train/parallel.py), each rank trains its share of
every step, in-stage checkpoints are DCP (resharded when the world size changes) and rank 0 writes the payload.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import write_metrics
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.post.chat import ChatTemplate, Encoded, truncate
from olmoflow.post.data import micro_batches, pad_batch, read_jsonl, split_heldout, stream_indices
from olmoflow.post.heldout import heldout_rows, log_samples, rates, replies
from olmoflow.post.logprobs import masked_sums
from olmoflow.post.plots import plot_curves
from olmoflow.post.ranks import check_batch, padded_share, share
from olmoflow.post.sft import sft_backward
from olmoflow.post.skipped import report
from olmoflow.post.state import resume_sharded
from olmoflow.train import parallel
from olmoflow.train.optim import build_optimizer
from olmoflow.train.schedule import lr_factor
from olmoflow.train.world import World


def encode(rows: list[dict], template: ChatTemplate, seq_len: int,
           skipped: Counter | None = None) -> list[Encoded]:
    """Conversations that keep at least one assistant token within seq_len; the rest are skipped, and counted in
    `skipped` by reason (no_assistant_turn, past_seq_len)."""
    out = []
    skipped = Counter() if skipped is None else skipped
    for r in rows:
        if not any(m.get("role") == "assistant" for m in r["messages"]):
            skipped["no_assistant_turn"] += 1
        elif (e := truncate(template.encode(r["messages"]), seq_len)) is None:
            skipped["past_seq_len"] += 1
        else:
            out.append(e)
    return out


@torch.no_grad()
def heldout_loss(model: nn.Module, examples: list[Encoded], micro_batch: int, pad_id: int, world: World) -> float:
    """Mean cross-entropy per assistant token (nats) over `examples`, each rank scoring its share. Collective."""
    sums = torch.zeros(2, dtype=torch.float64, device=world.device)  # -log p, tokens
    for mb in micro_batches(padded_share(examples, world), micro_batch, length=lambda x: len(x[0])):
        logp, n = masked_sums(model, *pad_batch([e.ids for e, _ in mb], [e.mask for e, _ in mb], pad_id))
        real = torch.tensor([r for _, r in mb], dtype=torch.float64, device=logp.device)
        sums += torch.stack([-(logp.double() * real).sum(), (n.double() * real).sum()])
    parallel.reshard(model)
    world.sum(sums)
    return float(sums[0] / sums[1])


def save_early(ctx: StageContext, model: nn.Module, world: World, cfg, ckpt) -> None:
    """The model part-way into SFT, into the artifact's early/ folder (a weaker model for DPO's delta pairs).
    Collective under FSDP (export gathers the shards)."""
    plain = parallel.export(model, world, wrapped=world.size > 1 or cfg.activation_checkpointing)
    if ctx.lead:
        save_checkpoint(ctx.out / "early", plain, ckpt / "tokenizer.json")
        ctx.log.info("sft: the model after %d of %d steps -> early/ (DPO's weaker model)",
                     round(cfg.early_checkpoint * cfg.steps), cfg.steps)


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.sft
    world = World.current()
    check_batch(cfg.batch_size, "sft.batch_size", world)
    ckpt = ctx.input("checkpoint").path
    model, tokenizer = load_checkpoint(ckpt, weights=world.holds_weights)  # rank 0 reads, parallelize shares
    model = parallel.parallelize(model, world, cfg.activation_checkpointing)
    model.train()
    template = ChatTemplate(tokenizer)

    # ---- data: a fixed held-out slice, the rest in a seeded order that is a function of the step
    rows = read_jsonl(ctx.input("dataset").path / "post" / "sft.jsonl", ["messages"])
    train_rows, val_rows = split_heldout(rows, cfg.val_examples, "sft.val_examples", key=lambda r: r["messages"])
    if cfg.max_examples:
        train_rows = train_rows[:cfg.max_examples]
    skipped: Counter = Counter()
    train, val = encode(train_rows, template, cfg.seq_len, skipped), encode(val_rows, template, cfg.seq_len, skipped)
    skip_metrics = report(skipped, "conversations", "sft", ctx.log, seq_len=f"sft.seq_len={cfg.seq_len}") \
        if ctx.lead else {}
    if not train or not val:
        raise ValueError(f"stage sft: no conversation in post/sft.jsonl keeps an assistant token within "
                         f"sft.seq_len={cfg.seq_len}")
    if ctx.lead:
        ctx.log.info("sft: %d train / %d held-out conversations, %d steps of %d on %d x %s", len(train), len(val),
                     cfg.steps, cfg.batch_size, world.size, world.device)

    # ---- held-out rule prompts (a partition no stage trains on), answered greedily before and after
    probe = heldout_rows(ctx.input("dataset").path, cfg.heldout_items, "sft.heldout_items") if world.size == 1 else []

    def answer(tag: str) -> tuple[list[str], dict[str, float]]:
        texts = replies(model, template, [r["prompt"] for r in probe], cfg.heldout_max_new_tokens)
        got = rates(probe, texts)
        return texts, {f"format_rate_{tag}": got.pop("format_rate"), f"heldout_reward_{tag}": got.pop("reward"),
                       **{f"heldout_{k}_{tag}": v for k, v in got.items()}}

    # ---- resume or start
    optimizer = build_optimizer(model, cfg.lr, weight_decay=cfg.weight_decay)
    resumer, loop = resume_sharded(ctx, world, model, optimizer)
    if loop is None:
        loop = {"step": 0, "curve": [], "val_before": heldout_loss(model, val, cfg.micro_batch, template.pad, world),
                "probe": answer("before") if probe else ([], {})}
        ctx.log_metrics({"val_sft_loss": loop["val_before"], **loop["probe"][1]}, step=0)

    # ---- train
    early_step = round(cfg.early_checkpoint * cfg.steps)
    if 0 < early_step <= loop["step"] and ctx.lead:
        ctx.log.warning("sft: resumed after step %d, so the artifact has no early/ model (sft.early_checkpoint): DPO "
                        "falls back on the parent checkpoint", early_step)
    for step in ctx.progress(range(loop["step"], cfg.steps), total=cfg.steps - loop["step"], desc="steps"):
        lr = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup_steps, "linear")
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [train[i] for i in stream_indices(step * cfg.batch_size, cfg.batch_size, len(train), cfg.seed)]
        n_tokens = sum(e.n_targets for e in batch)
        loss_value = float(world.sum(sft_backward(model, share(batch, world), cfg.micro_batch, template.pad,
                                                  n_tokens, pack_len=cfg.seq_len if cfg.pack else 0)))
        grad_norm = parallel.clip_grads(model, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        loop["curve"].append([done, loss_value])
        if done % cfg.log_every == 0 or done == cfg.steps:
            ctx.log_metrics({"train_loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                             "assistant_tokens": n_tokens}, step=done)
        if done == early_step:
            save_early(ctx, model, world, cfg, ckpt)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            loop["step"] = done
            resumer.save(done, {"loop": loop}, model, optimizer)

    # ---- measure and save
    val_after = heldout_loss(model, val, cfg.micro_batch, template.pad, world)
    ctx.log_metrics({"val_sft_loss": val_after}, step=cfg.steps)
    tail = [v for _, v in loop["curve"][-max(1, cfg.steps // 10):]]
    metrics = {"val_sft_loss": val_after, "val_sft_loss_before": loop["val_before"],
               "train_loss": sum(tail) / len(tail), "train_examples": float(len(train)), "steps": float(cfg.steps),
               **skip_metrics}
    if probe:
        after_texts, after = answer("after")
        ctx.log_metrics(after, step=cfg.steps)
        metrics |= {**loop["probe"][1], **after, "heldout_items": float(len(probe))}
        if ctx.lead:
            log_samples(ctx, "sft_samples", probe, {"before": loop["probe"][0], "after": after_texts})
    plain = parallel.export(model, world, wrapped=world.size > 1 or cfg.activation_checkpointing)
    if ctx.lead:
        save_checkpoint(ctx.out, plain, ckpt / "tokenizer.json")
        write_metrics(ctx.out, metrics)
        plot_curves(ctx, "sft_loss.png",
                    {"loss (nats per assistant token)": {
                        "train": loop["curve"],
                        "held-out": [[0, loop["val_before"]], [cfg.steps, val_after]]}},
                    "SFT")
    return metrics
