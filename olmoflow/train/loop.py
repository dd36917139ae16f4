"""The training loop shared by pretrain, midtrain and long-context.

One optimizer step: read the step's micro-batches, count their scored targets (summed over ranks), backprop
each micro-batch's (cross-entropy + z_loss·logsumexp²) / targets, clip, and step AdamW at the scheduled LR
unless the step is a loss or grad-norm spike (skip-step). Every `checkpoint_every` steps and at the end, the
whole state goes to an in-stage checkpoint; a run resumed from one finishes with bitwise the same weights as a
run never interrupted (on CPU, same thread count), because the state holds everything the next step reads.

With several ranks (torchrun) the model is sharded by olmoflow/train/parallel.py (FSDP2 / HSDP); each rank
reads its own micro-batches, gradients are summed across ranks only on a step's last micro-batch, and the
global batch in tokens is the same for any world size, so the loss curve does not depend on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from olmoflow.contract.context import StageContext
from olmoflow.model import Olmo3
from olmoflow.model.flops import flops_per_token
from olmoflow.train import dist_checkpoint, parallel
from olmoflow.train.averaging import WeightSum
from olmoflow.train.config import TrainConfig
from olmoflow.train.loader import TokenLoader
from olmoflow.train.mfu import peak_flops
from olmoflow.train.optim import build_optimizer
from olmoflow.train.resume import ResumeError, Resumer, decode_rng, encode_rng, rng_state, set_rng_state
from olmoflow.train.schedule import lr_factor
from olmoflow.train.skip import SpikeDetector
from olmoflow.train.world import World, autocast


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    """Mean loss over the last `log_every` steps."""
    skipped_steps: int
    tokens: int
    """Window tokens seen by all ranks."""
    tokens_per_s: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, loss) of every step, for the loss plot."""


class Trainer:
    def __init__(self, ctx: StageContext, model: nn.Module, loader: TokenLoader, cfg: TrainConfig,
                 resumer: Resumer, *, step_offset: int = 0, average_last: int = 0,
                 world: World = World()):
        """`step_offset` numbers this run's checkpoints and metrics after earlier runs of the same stage (the
        seeds of a soup); `average_last` > 0 keeps a running sum of the weights at the last N checkpoints."""
        per_step = cfg.seq_len * cfg.micro_batch * world.size
        if cfg.batch_tokens % per_step:
            raise ValueError(f"batch_tokens ({cfg.batch_tokens}) must be a multiple of seq_len * micro_batch * "
                             f"ranks ({cfg.seq_len} * {cfg.micro_batch} * {world.size})")
        self.ctx, self.loader, self.cfg, self.resumer = ctx, loader, cfg, resumer
        self.step_offset, self.world = step_offset, world
        self.accum = cfg.batch_tokens // per_step
        self.wrapped = world.size > 1 or cfg.activation_checkpointing
        compile_ = cfg.compile is True or (cfg.compile == "auto" and world.device.type == "cuda")
        self.model = parallel.parallelize(model, world, cfg.activation_checkpointing, compile_)
        self.opt = build_optimizer(self.model, cfg.lr, cfg.betas, cfg.weight_decay)
        self.skip = SpikeDetector(cfg.skip_sigma, cfg.skip_window)
        self.step = 0
        self.curve: list[tuple[int, float]] = []
        self.extra: dict[str, Any] = {}
        """Stage state that must survive a kill (a soup's finished runs); saved with every checkpoint."""
        self.sums: dict[str, WeightSum] = {}
        """Running sums of the weights, sharded like them, saved with every checkpoint (DCP): "average" for
        `average_last`, and whatever a stage adds (a soup of earlier runs)."""
        saves = [s for s in range(1, cfg.steps + 1) if s % cfg.checkpoint_every == 0 or s == cfg.steps]
        self.average_at = set(saves[-average_last:]) if average_last else set()
        if average_last:
            self.sums["average"] = WeightSum()

    # ---- state ------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything but the DCP part (model, optimizer, RNG, weight sums); the same on every rank."""
        return {"step": self.step, "loader": self.loader.state_dict(), "skip": self.skip.state_dict(),
                "curve": list(self.curve), "sums": {n: s.count for n, s in self.sums.items()}, "extra": self.extra}

    def dcp_extra(self) -> dict[str, Any]:
        """What goes into the DCP checkpoint besides model and optimizer: this rank's RNG states under its own
        key (ranks draw different numbers) as JSON bytes, and the running weight sums (sharded like the model)."""
        extra: dict[str, Any] = {f"rng.rank{self.world.rank}": encode_rng(rng_state())}
        extra.update({f"sum.{n}": s.tensors for n, s in self.sums.items() if s.count})
        return extra

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """`state` as `Resumer.latest()` returns it; collective (every rank calls it)."""
        folder = state["folder"]
        saved = dist_checkpoint.saved_keys(folder)
        # A world larger than the one that saved: the new ranks start from rank 0's RNG states.
        rng_key = f"rng.rank{self.world.rank}" if f"rng.rank{self.world.rank}" in saved else "rng.rank0"
        if rng_key not in saved:
            raise ResumeError(f"in-stage checkpoint {folder} holds no RNG states (written by an older olmoflow); "
                              f"delete it to start the stage over")
        counts = {n: int(c) for n, c in state["sums"].items() if c}
        for name in counts:
            self.sums.setdefault(name, WeightSum())
        template = {rng_key: b"", **{f"sum.{n}": self.sums[n].template(self.model) for n in counts}}
        loaded = dist_checkpoint.load(folder, self.model, self.opt, template)
        set_rng_state(decode_rng(loaded[rng_key], f"{folder} ({rng_key})"))
        for name, count in counts.items():
            self.sums[name].restore(loaded[f"sum.{name}"], count)
        self.step = int(state["step"])
        self.loader.load_state_dict(state["loader"])
        self.skip.load_state_dict(state["skip"])
        self.curve = [(int(s), float(loss)) for s, loss in state["curve"]]  # JSON gave back lists
        self.extra = state["extra"]

    def export_model(self) -> Olmo3 | None:
        """The trained model as a plain, unsharded Olmo3 on the CPU of rank 0, to write as the payload; None on
        the other ranks. Collective under FSDP. One process without activation checkpointing returns the model
        itself, moved to the CPU."""
        return parallel.export(self.model, self.world, self.wrapped)

    def average(self) -> None:
        """Set the (sharded) model to the mean of its weights at the last `average_last` checkpoints (Olmo 3 32B's
        long-context average)."""
        self.sums["average"].mean_into(self.model)

    # ---- one step ---------------------------------------------------------------------------------------------

    def _train_step(self) -> dict[str, float]:
        cfg = self.cfg
        batches = [self.loader.next_batch() for _ in range(self.accum)]
        device = self.world.device
        targets = self.world.sum(torch.tensor(float(sum(b.num_targets for b in batches)), device=device))
        lr = cfg.lr * lr_factor(self.step, cfg.steps, cfg.warmup_steps, cfg.schedule, cfg.final_lr_ratio)
        for group in self.opt.param_groups:
            group["lr"] = lr
        ce_total, z_total = torch.zeros((), device=device), torch.zeros((), device=device)
        for i, b in enumerate(batches):
            parallel.sync_grads(self.model, i == len(batches) - 1)
            ids, docs, labels = (t.to(device) for t in (b.input_ids, b.doc_ids, b.labels))
            # the model's fused head + loss: chunks of tokens, never the [tokens, vocab] logits (model/lm_loss.py);
            # bf16 autocast on GPUs (float32 weights, optimizer and sums), plain float32 on CPU
            with autocast(device):
                total, ce, z = self.model(ids, docs if cfg.intra_doc_mask else None, labels=labels,
                                          z_loss=cfg.z_loss)
            (total / targets.clamp(min=1)).backward()
            ce_total += ce.detach()
            z_total += z.detach()
        sums = self.world.sum(torch.stack([ce_total, z_total])) / targets.clamp(min=1)
        grad_norm = parallel.clip_grads(self.model, cfg.grad_clip)
        loss = float(sums[0])
        skipped = self.skip.check(loss, grad_norm)
        if not skipped:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": loss, "z_loss": cfg.z_loss * float(sums[1]), "lr": lr, "grad_norm": grad_norm,
                "skipped_steps": float(self.skip.skipped)}

    # ---- the loop ---------------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        cfg = self.cfg
        tokens_per_step = self.accum * cfg.micro_batch * cfg.seq_len * self.world.size
        fpt = flops_per_token(self.model.cfg, cfg.seq_len)
        self.model.train()
        interval_start, interval_steps, busy = time.perf_counter(), 0, 0.0
        train_start, train_steps, train_time = time.perf_counter(), 0, 0.0
        for _ in self.ctx.progress(range(self.step, cfg.steps), total=cfg.steps - self.step, desc="steps"):
            metrics = self._train_step()
            self.curve.append((self.step, metrics["loss"]))
            interval_steps += 1
            train_steps += 1
            if self.step in self.average_at:
                self.sums["average"].add(self.model)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - interval_start - busy
                train_time += elapsed
                metrics["tokens_per_s"] = interval_steps * tokens_per_step / max(elapsed, 1e-9)
                metrics["mfu"] = metrics["tokens_per_s"] * fpt / (peak_flops(self.world.device, cfg.peak_tflops)
                                                                  * self.world.size)
                self.ctx.log_metrics(metrics, step=self.step_offset + self.step)
                interval_start, interval_steps, busy = time.perf_counter(), 0, 0.0
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                saving = time.perf_counter()
                self.resumer.save(self.step_offset + self.step, self.state_dict(), self.model, self.opt,
                                  self.dcp_extra())
                busy += time.perf_counter() - saving
        recent = [loss for _, loss in self.curve[-cfg.log_every:]]
        wall = train_time or (time.perf_counter() - train_start)
        return TrainResult(
            steps=self.step, train_loss=sum(recent) / max(1, len(recent)), skipped_steps=self.skip.skipped,
            tokens=self.step * tokens_per_step, tokens_per_s=train_steps * tokens_per_step / max(wall, 1e-9),
            curve=list(self.curve))
