"""What a training stage leaves behind besides its weights: metrics.json and plots (loss curve, loss by
position), each also attached to the stage's MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from olmoflow.contract.context import StageContext  # noqa: E402


def loss_curve(ctx: StageContext, curves: dict[str, list[tuple[int, float]]], val: dict[str, float]) -> Path:
    """plots/loss.png: train loss per step for each run (several for a soup), final val losses as lines."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, curve in curves.items():
        steps, losses = zip(*curve) if curve else ((), ())
        ax.plot(steps, losses, lw=1, label=f"train {label}".strip())
    for i, (label, loss) in enumerate(val.items()):
        ax.axhline(loss, ls="--", lw=1, color=f"C{len(curves) + i}", label=f"{label} {loss:.3f}")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=f"{ctx.stage}")
    ax.legend(fontsize=8)
    return _save(ctx, fig, "loss.png")


def position_curve(ctx: StageContext, edges: list[int], curves: dict[str, list[float]], old_context: int) -> Path:
    """plots/loss_by_position.png: held-out loss per position bucket, the old context marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    for label, losses in curves.items():
        ax.plot(mids, losses, marker="o", label=label)
    ax.axvline(old_context, color="gray", ls=":", label=f"old context {old_context}")
    ax.set(xlabel="position", ylabel="loss (nats/token)", title=f"{ctx.stage}: loss by position")
    ax.legend(fontsize=8)
    return _save(ctx, fig, "loss_by_position.png")


def _save(ctx: StageContext, fig, name: str) -> Path:
    path = ctx.out / "plots" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    ctx.log_artifact(path)
    return path


def write_metrics(ctx: StageContext, metrics: dict[str, float], extra: dict | None = None) -> None:
    """metrics.json: the final metrics (and any structured extras, e.g. per-position losses)."""
    (ctx.out / "metrics.json").write_text(json.dumps({**metrics, **(extra or {})}, indent=2, sort_keys=True))
