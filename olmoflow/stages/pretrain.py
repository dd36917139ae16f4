"""Pretraining: a fresh Olmo 3 (or a checkpoint to continue) trained on the dataset's pretrain/ mix.

    olmoflow stage pretrain --config tiny --input dataset=URI [--input checkpoint=URI]

The data is every pretrain/{domain}/ shard in its curated proportions, packed back to back into seq_len + 1
windows with intra-document masking. AdamW, cosine LR with warmup, z-loss, clipping and skip-step, all in
olmoflow/train/loop.py; a killed run resumes from its last in-stage checkpoint. val_loss is scored on the
dataset's held-out text (val/*.jsonl), never on training tokens.

    torchrun --nproc-per-node 8 -m olmoflow.cli stage pretrain --config olmo3-7b --input dataset=URI

Under torchrun every rank trains its share of each batch on the sharded model; rank 0 gathers the weights and
writes the payload.
"""

from __future__ import annotations

import torch

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import write_metrics
from olmoflow.model import ModelConfig, Olmo3
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.train.dataset import check_vocab, domain_docs, heldout_docs, open_tokenizer, special_ids
from olmoflow.train.evaluate import val_losses
from olmoflow.train.loader import TokenLoader
from olmoflow.train.loop import Trainer
from olmoflow.train.plots import loss_curve
from olmoflow.train.resume import Resumer
from olmoflow.train.world import World


def initial_model(ctx: StageContext, cfg: ModelConfig, world: World) -> Olmo3:
    """Olmo3(cfg) seeded from pretrain.seed, or the optional checkpoint input's weights (same architecture); real
    weights on rank 0 only (World.holds_weights)."""
    torch.manual_seed(ctx.cfg.pretrain.seed)
    if "checkpoint" not in ctx.inputs:
        with world.weights_device:
            return Olmo3(cfg)
    path = ctx.inputs["checkpoint"].path
    model, _ = load_checkpoint(path, weights=world.holds_weights)
    theirs, ours = model.cfg.model_dump(), cfg.model_dump()
    differ = [k for k in ours if theirs[k] != ours[k]]
    if differ:
        raise ValueError(f"pretrain: checkpoint {path} differs from the config's model at "
                         + ", ".join(f"{k} ({theirs[k]} vs {ours[k]})" for k in differ))
    return model


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.pretrain
    data = ctx.input("dataset").path
    tok_path = data / "tokenizer.json"
    tokenizer = open_tokenizer(tok_path)
    check_vocab(tokenizer, tok_path, ctx.cfg.model.vocab_size)
    eos, pad = special_ids(tokenizer, tok_path)
    world = World.current()
    model = initial_model(ctx, ctx.cfg.model, world)

    # ---- train (resuming from the newest in-stage checkpoint, if any)
    loader = TokenLoader(domain_docs(data / "pretrain"), cfg.seq_len, cfg.micro_batch, seed=cfg.seed,
                         pad_id=pad, intra_doc=cfg.intra_doc_mask, rank=world.rank, world=world.size)
    trainer = Trainer(ctx, model, loader, cfg, Resumer(ctx), world=world)
    state = trainer.resumer.latest()
    if state is not None:
        ctx.log.info("pretrain: resuming at step %d", state["step"])
        trainer.load_state_dict(state)
    result = trainer.fit()

    # ---- held-out loss (every rank, on the sharded model), payload (rank 0, from the gathered weights)
    heldout = heldout_docs(data, tokenizer, eos, cfg.val_tokens)
    val = val_losses(trainer.model, heldout, cfg.seq_len, cfg.micro_batch, pad, cfg.intra_doc_mask)
    metrics = {**val, "train_loss": result.train_loss, "skipped_steps": float(result.skipped_steps),
               "tokens": float(result.tokens), "tokens_per_s": result.tokens_per_s}
    ctx.log_metrics(val, step=result.steps)
    model = trainer.export_model()
    if ctx.lead:
        save_checkpoint(ctx.out, model, tok_path)
        loss_curve(ctx, {"": result.curve}, {"val": val["val_loss"]})
        write_metrics(ctx.out, metrics)
    return metrics
