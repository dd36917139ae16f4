"""What a training stage plots beside its weights: the loss curve and the loss by position, saved and attached to the
stage's MLflow run through the contract's report helper (olmoflow/contract/report.py)."""

from __future__ import annotations

from pathlib import Path

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import pyplot, save_plot


def loss_curve(ctx: StageContext, curves: dict[str, list[tuple[int, float]]], val: dict[str, float]) -> Path:
    """plots/loss.png: train loss per step for each run (several for a soup), final val losses as lines."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    for label, curve in curves.items():
        steps, losses = zip(*curve) if curve else ((), ())
        ax.plot(steps, losses, lw=1, label=f"train {label}".strip())
    for i, (label, loss) in enumerate(val.items()):
        ax.axhline(loss, ls="--", lw=1, color=f"C{len(curves) + i}", label=f"{label} {loss:.3f}")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=f"{ctx.stage}")
    ax.legend(fontsize=8)
    return save_plot(ctx, fig, "loss.png", dpi=110)


def position_curve(ctx: StageContext, edges: list[int], curves: dict[str, list[float]], old_context: int) -> Path:
    """plots/loss_by_position.png: held-out loss per position bucket, the old context marked."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    for label, losses in curves.items():
        ax.plot(mids, losses, marker="o", label=label)
    ax.axvline(old_context, color="gray", ls=":", label=f"old context {old_context}")
    ax.set(xlabel="position", ylabel="loss (nats/token)", title=f"{ctx.stage}: loss by position")
    ax.legend(fontsize=8)
    return save_plot(ctx, fig, "loss_by_position.png", dpi=110)
