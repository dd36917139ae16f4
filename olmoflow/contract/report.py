"""What a stage leaves beside its main payload, written one way by every stage: metrics.json, and plots under
plots/ (each attached to the stage's MLflow run). matplotlib loads only when a figure is drawn, with the Agg backend:
pods and CI have no display."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olmoflow.contract.context import StageContext


def write_metrics(out: Path, metrics: dict[str, float], extra: dict[str, Any] | None = None) -> Path:
    """metrics.json: the final metrics (and any structured extras, e.g. per-position losses)."""
    path = Path(out) / "metrics.json"
    path.write_text(json.dumps({**metrics, **(extra or {})}, indent=2, sort_keys=True))
    return path


def pyplot():
    """matplotlib.pyplot on the Agg backend (the backend must be chosen before pyplot first loads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int) -> Path:
    """Lay out, write and close `fig` at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def save_plot(ctx: StageContext, fig, name: str, dpi: int) -> Path:
    """plots/{name} in the stage's payload, attached to its MLflow run."""
    path = save_figure(fig, ctx.out / "plots" / name, dpi)
    ctx.log_artifact(path)
    return path
