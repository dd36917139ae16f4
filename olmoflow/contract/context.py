"""What a stage's `run(ctx)` sees: its config, its input artifacts, a folder for its payload, a place for
in-stage checkpoints (workdir.py), and MLflow logging. The runner (olmoflow/flow/runner.py) builds it; tests can too
(tests/kit.py). It sits below the library, so train/, post/ and data/ take a context without importing a stage or
the flow; the flow's config is only its type here."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from olmoflow.contract.workdir import WorkDir

if TYPE_CHECKING:  # the config is built above the library; a stage's context only carries it
    from olmoflow.config import FlowConfig

T = TypeVar("T")


@dataclass
class InputArtifact:
    """A complete, verified artifact from an earlier stage, with its payload in a local folder."""

    uri: str
    kind: str
    fingerprint: str
    manifest: dict[str, Any]
    path: Path
    """Local folder holding the payload (the store itself when local; a verified download cache for s3://)."""


@dataclass
class StageContext:
    stage: str
    cfg: FlowConfig
    inputs: dict[str, InputArtifact]
    out: Path
    """Write the payload here; the runner checksums it, uploads it, and writes manifest.json last."""
    work: WorkDir
    lead: bool = field(default_factory=lambda: os.environ.get("RANK", "0") == "0")
    """Rank 0 (always, in one process). Under torchrun only the lead's payload and MLflow logs are kept: other
    ranks compute alongside it (collectives), their `out` is scratch and their log_metrics / log_artifact only
    record locally."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("olmoflow"))
    metrics_sink: Callable[[dict[str, float], int | None], None] | None = None
    artifact_sink: Callable[[Path, str], None] | None = None
    history: list[tuple[int | None, dict[str, float]]] = field(default_factory=list)
    step: str = ""
    """This run's name: the stage's, or for a per-checkpoint stage `{stage}-{of}` (eval-sft)."""
    tracker: Any = None
    """The flow's MLflow tracker (olmoflow.tracking.Tracker) on the lead rank under a flow run, else None: for a
    stage that records more than metrics and artifacts (model-flow registers the models)."""
    run_id: str | None = None
    """This stage's MLflow run, when `tracker` is set."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Step metrics: kept for plots and the manifest, and sent to MLflow."""
        clean = {k: float(v) for k, v in metrics.items()}
        self.history.append((step, clean))
        if self.metrics_sink is not None:
            self.metrics_sink(clean, step)

    def log_artifact(self, path: Path, subdir: str = "plots") -> None:
        """A file (a plot, a report) to attach to the stage's MLflow run."""
        if self.artifact_sink is not None:
            self.artifact_sink(Path(path), subdir)

    def progress(self, items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
        """Iterate with a progress line in the stage log about every 10% (rank 0's; the others keep step)."""
        total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
        start = time.time()
        every = max(1, (total or 10) // 10)
        for i, item in enumerate(items, 1):
            yield item
            if self.lead and total and (i % every == 0 or i == total):
                self.log.info("%s %s %d/%d (%.0f%%) %.1fs", self.stage, desc, i, total, 100 * i / total,
                              time.time() - start)

    def input(self, name: str) -> InputArtifact:
        if name not in self.inputs:
            raise KeyError(f"stage {self.stage}: missing input artifact {name!r}")
        return self.inputs[name]
