"""What a post-training stage plots beside its weights: its curves, saved and attached to the stage's MLflow run
through the contract's report helper (olmoflow/contract/report.py)."""

from __future__ import annotations

from pathlib import Path

from olmoflow.contract.context import StageContext
from olmoflow.contract.report import pyplot, save_plot


def plot_curves(ctx: StageContext, name: str, panels: dict[str, dict[str, list[list[float]]]], title: str) -> Path:
    """plots/{name}: one panel per entry, each with its named series of [step, value] points; a series of one or two
    points (a before / after measurement) is drawn as markers."""
    fig, axes = pyplot().subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for label, points in series.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, "o--" if len(points) <= 2 else "-", label=label)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_plot(ctx, fig, name, dpi=100)
