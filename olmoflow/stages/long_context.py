"""Long-context extension: the midtrained checkpoint trained at long_context.seq_len with YaRN on its full-attention
layers, on long documents mixed with midtraining data, as Olmo 3 did.

    olmoflow stage long-context --config tiny --input dataset=URI --input checkpoint=URI

Data: `long_fraction` of the tokens from long/{domain}/ after the gzip-compressibility filter (drop the
`compress_drop` most and least compressible long documents), the rest from midtrain/ in curate's proportions;
best-fit packing (documents are not cut to fill windows) and intra-document masking. LR: warmup, then linear to
0; `average_last` averages the weights of the last N in-stage checkpoints (a running sum kept, like the weights,
sharded over the ranks and saved with each checkpoint). The held-out loss at each position of
long held-out documents, before and after, shows what the stage bought beyond the old context.
"""

from __future__ import annotations

import numpy as np
import torch

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import write_metrics
from olmoflow.model import ModelConfig, Olmo3
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.train.dataset import check_same_tokenizer, domain_docs, heldout_docs, long_heldout, special_ids
from olmoflow.train.evaluate import bucket_means, position_losses, val_losses
from olmoflow.train.loader import TokenLoader
from olmoflow.train.longdocs import filter_long
from olmoflow.train.loop import Trainer
from olmoflow.train.packing import Docs
from olmoflow.train.plots import loss_curve, position_curve
from olmoflow.train.resume import Resumer
from olmoflow.train.world import World

POSITION_DOCS = 8
"""Long documents scored position by position (more only costs time; the curve is a mean over them)."""


def data_mix(ctx: StageContext, decode) -> tuple[dict[str, Docs], dict[str, float]]:
    """Domains `long/{name}` (filtered) and `midtrain/{name}`, weighted so long ones get long_fraction of tokens."""
    cfg = ctx.cfg.long_context
    data = ctx.input("dataset").path
    pools = {"long": {}, "midtrain": {}}
    if cfg.long_fraction > 0:
        for name, docs in domain_docs(data / "long").items():
            kept = filter_long(docs, decode, cfg.compress_drop)
            ctx.log.info("long-context: long/%s keeps %d of %d documents after the compressibility filter",
                         name, len(kept), len(docs))
            pools["long"][f"long/{name}"] = kept
    if cfg.long_fraction < 1:
        pools["midtrain"] = {f"midtrain/{n}": d for n, d in domain_docs(data / "midtrain").items()}
    weights = {}
    for pool, share in (("long", cfg.long_fraction), ("midtrain", 1 - cfg.long_fraction)):
        total = sum(d.num_tokens for d in pools[pool].values())
        weights.update({n: share * d.num_tokens / total for n, d in pools[pool].items()})
    return {**pools["long"], **pools["midtrain"]}, weights


def position_docs(held_out: list[np.ndarray], domains: dict[str, Docs], seq_len: int) -> list[np.ndarray]:
    """The held-out long documents; when the held-out text has none, a few long training documents instead
    (taken out of their domain's training set, so still unseen by this stage)."""
    if held_out:
        return held_out
    for name, docs in domains.items():
        if not name.startswith("long/"):
            continue
        picks = np.flatnonzero(docs.length > seq_len)[:POSITION_DOCS]
        if picks.size and picks.size < len(docs):
            keep = np.setdiff1d(np.arange(len(docs)), picks)
            domains[name] = Docs(name, docs.arrays, docs.shard[keep], docs.start[keep], docs.length[keep])
            return [docs.doc(i) for i in picks]
    return []


def position_losses_as(model: Olmo3, cfg: ModelConfig, docs: list[np.ndarray], seq_len: int) -> np.ndarray:
    """position_losses of the model's weights under another config (RoPE tables come from model.cfg per forward,
    so this is the checkpoint's own function when cfg is the checkpoint's)."""
    own = model.cfg
    model.cfg = cfg
    try:
        return position_losses(model, docs, seq_len)
    finally:
        model.cfg = own


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.long_context
    data, ckpt = ctx.input("dataset").path, ctx.input("checkpoint").path
    check_same_tokenizer(data / "tokenizer.json", ckpt / "tokenizer.json")
    world = World.current()
    base, tokenizer = load_checkpoint(ckpt, weights=world.holds_weights)
    eos, pad = special_ids(tokenizer, ckpt / "tokenizer.json")
    old_context = base.cfg.max_seq_len
    if cfg.yarn is not None and cfg.yarn.original_max_seq_len != old_context:
        ctx.log.warning("long-context: yarn.original_max_seq_len is %d but the checkpoint was trained at %d",
                        cfg.yarn.original_max_seq_len, old_context)
    # The same weights under a longer context: RoPE tables are computed per forward from the config, so only
    # the config changes (and travels into the saved HF config.json).
    with torch.device("meta"):
        model = Olmo3(base.cfg.model_copy(update={"max_seq_len": max(cfg.seq_len, old_context), "yarn": cfg.yarn}))
    model.load_state_dict(base.state_dict(), assign=True)

    domains, weights = data_mix(ctx, tokenizer.decode)
    heldout = heldout_docs(data, tokenizer, eos, cfg.val_tokens)
    long_docs = position_docs(long_heldout(data, tokenizer, eos, cfg.seq_len, POSITION_DOCS), domains, cfg.seq_len)
    edges = sorted({*range(0, cfg.seq_len, max(1, min(old_context, cfg.seq_len) // 2)), cfg.seq_len})
    as_it_was = base.cfg.model_copy(update={"max_seq_len": model.cfg.max_seq_len})  # no YaRN, the new length
    del base

    # ---- train
    loader = TokenLoader(domains, cfg.seq_len, cfg.micro_batch, weights=weights, seed=cfg.seed, packing="bestfit",
                         pad_id=pad, intra_doc=cfg.intra_doc_mask, rank=world.rank, world=world.size)
    trainer = Trainer(ctx, model, loader, cfg, Resumer(ctx), average_last=cfg.average_last, world=world)
    state = trainer.resumer.latest()
    if state is not None:
        ctx.log.info("long-context: resuming at step %d", state["step"])
        trainer.load_state_dict(state)
    if long_docs and "before" not in trainer.extra:
        # The checkpoint's curve, scored on every rank by the sharded model before its first step (the same
        # weights, the checkpoint's RoPE); kept with every in-stage checkpoint, so a resumed run reports it too.
        trainer.extra["before"] = position_losses_as(trainer.model, as_it_was, long_docs, cfg.seq_len).tolist()
    before = np.array(trainer.extra["before"]) if long_docs else None
    result = trainer.fit()
    if cfg.average_last:
        trainer.average()

    # ---- held-out loss overall and by position (every rank, on the sharded model), payload (rank 0)
    val = val_losses(trainer.model, heldout, cfg.seq_len, cfg.micro_batch, pad, cfg.intra_doc_mask)
    after = position_losses(trainer.model, long_docs, cfg.seq_len) if long_docs else None
    model = trainer.export_model()
    if not ctx.lead:
        return val
    metrics = {**val, "train_loss": result.train_loss, "skipped_steps": float(result.skipped_steps),
               "tokens": float(result.tokens), "tokens_per_s": result.tokens_per_s}
    extra = {}
    if long_docs:
        curves = {"before": bucket_means(before, edges), "after": bucket_means(after, edges)}
        for label, losses in curves.items():
            for end, loss in zip(edges[1:], losses):
                ctx.log_metrics({f"val_loss_by_position/{label}": loss}, step=end)
        if cfg.seq_len > old_context:
            metrics["val_loss_beyond_context_before"] = float(before[old_context:].mean())
            metrics["val_loss_beyond_context"] = float(after[old_context:].mean())
        metrics["val_loss_within_context_before"] = float(before[:old_context].mean())
        metrics["val_loss_within_context"] = float(after[:old_context].mean())
        position_curve(ctx, edges, curves, old_context)
        extra = {"loss_by_position": {"edges": edges, **curves, "documents": len(long_docs)}}
    else:
        ctx.log.warning("long-context: no document longer than %d tokens; loss by position not measured",
                        cfg.seq_len)
    ctx.log_metrics(val, step=result.steps)
    save_checkpoint(ctx.out, model, ckpt / "tokenizer.json")
    loss_curve(ctx, {"": result.curve}, {"val": val["val_loss"]})
    write_metrics(ctx.out, metrics, extra)
    return metrics
