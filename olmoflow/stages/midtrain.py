"""Midtraining: the pretrained checkpoint trained on the midtrain/ mix (math, code and QA up-weighted), LR decayed
linearly to 0 with no warmup; with `soup_seeds`, one run per seed (each its own data order) and the weights
averaged ("souping", as Olmo 3 32B did with two seeds).

    olmoflow stage midtrain --config tiny --input dataset=URI --input checkpoint=URI

`mix` sets each midtrain/{domain}'s share of tokens (empty = curate's proportions as written). The runs of a
soup follow one another inside the stage; their steps are numbered one after the other, and every in-stage
checkpoint carries the sum of the finished runs' weights (each rank its shard of it), so a kill anywhere resumes
where it stopped.
"""

from __future__ import annotations

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import write_metrics
from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.train.averaging import WeightSum
from olmoflow.train.dataset import check_same_tokenizer, domain_docs, heldout_docs, open_tokenizer, special_ids
from olmoflow.train.evaluate import val_losses
from olmoflow.train.loader import TokenLoader
from olmoflow.train.loop import Trainer
from olmoflow.train.plots import loss_curve
from olmoflow.train.resume import Resumer
from olmoflow.train.world import World


def run(ctx: StageContext) -> dict[str, float]:
    cfg = ctx.cfg.midtrain
    data, ckpt = ctx.input("dataset").path, ctx.input("checkpoint").path
    check_same_tokenizer(data / "tokenizer.json", ckpt / "tokenizer.json")
    tokenizer = open_tokenizer(ckpt / "tokenizer.json")
    eos, pad = special_ids(tokenizer, ckpt / "tokenizer.json")
    domains = domain_docs(data / "midtrain")
    heldout = heldout_docs(data, tokenizer, eos, cfg.val_tokens)
    seeds = cfg.soup_seeds or [cfg.seed]
    world = World.current()
    resumer = Resumer(ctx)
    state = resumer.latest()
    # Finished runs live on as (their val losses, their curves) in every later checkpoint's extras, and as the
    # sum of their weights in its DCP part (sharded like the model: trainer.sums["soup"]).
    soup = state["extra"] if state is not None else {"run": 0, "val": [], "curves": [], "train_loss": []}
    soup_sum = WeightSum()

    for i, seed in enumerate(seeds):
        if i < soup["run"]:
            continue
        model, _ = load_checkpoint(ckpt, weights=world.holds_weights)
        if cfg.seq_len > model.cfg.max_seq_len:
            raise ValueError(f"midtrain.seq_len ({cfg.seq_len}) is longer than the checkpoint's max_seq_len "
                             f"({model.cfg.max_seq_len}) in {ckpt}")
        loader = TokenLoader(domains, cfg.seq_len, cfg.micro_batch, weights=cfg.mix or None, seed=seed,
                             pad_id=pad, intra_doc=cfg.intra_doc_mask, rank=world.rank, world=world.size)
        trainer = Trainer(ctx, model, loader, cfg, resumer, step_offset=i * cfg.steps, world=world)
        trainer.sums["soup"] = soup_sum
        if state is not None and state["extra"]["run"] == i:
            ctx.log.info("midtrain: resuming run %d (seed %d) at step %d", i, seed, state["step"])
            trainer.load_state_dict(state)
            soup_sum = trainer.sums["soup"]
        trainer.extra = soup
        result = trainer.fit()

        val = float("nan")
        if len(seeds) > 1:
            val = val_losses(trainer.model, heldout, cfg.seq_len, cfg.micro_batch, pad,
                             cfg.intra_doc_mask)["val_loss"]
            ctx.log_metrics({f"val_loss/seed{seed}": val}, step=(i + 1) * cfg.steps)
        soup_sum.add(trainer.model)
        soup = {"run": i + 1, "val": soup["val"] + [val], "curves": soup["curves"] + [result.curve],
                "train_loss": soup["train_loss"] + [result.train_loss]}

    # ---- the soup (of one run: its own weights) in the last run's sharded model, its held-out loss, payload
    soup_sum.mean_into(trainer.model)
    val = val_losses(trainer.model, heldout, cfg.seq_len, cfg.micro_batch, pad, cfg.intra_doc_mask)
    ctx.log_metrics(val, step=len(seeds) * cfg.steps)
    metrics = {**val, "train_loss": sum(soup["train_loss"]) / len(seeds)}
    if len(seeds) > 1:
        metrics.update({f"val_loss/seed{s}": v for s, v in zip(seeds, soup["val"])})
    model = trainer.export_model()
    if ctx.lead:
        save_checkpoint(ctx.out, model, ckpt / "tokenizer.json")
        loss_curve(ctx, {f"seed {s}" if len(seeds) > 1 else "": c for s, c in zip(seeds, soup["curves"])},
                   {"val (soup)" if len(seeds) > 1 else "val": val["val_loss"]})
        write_metrics(ctx.out, metrics)
    return metrics
