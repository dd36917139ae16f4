"""Run the flow on this machine: the pipeline of pipelines/model_flow.py, executed by kfp.local's
SubprocessRunner in the current environment (no second orchestrator), then a summary read back from MLflow.

Every task is a fresh Python process that starts KFP's executor, so a re-run's cost is mostly start-up: tasks that
only record a stage (cached, skipped) leave MLflow to this driver through the flow's spool (olmoflow.tracking), and
the driver builds the pipeline before it loads MLflow (kfp walks the call stack per pod setting, and MLflow's
thousands of modules make each walk slower).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from olmoflow.artifacts import home
from olmoflow.config import FlowConfig, to_json
from olmoflow.flow.pipeline import pipeline
from olmoflow.flow.plan import Plan
from olmoflow.registry import LAST


def _oneof_artifacts() -> None:
    """Teach kfp.local what the KFP backend already does: a `dsl.OneOf` of artifacts (the pipeline's one-node /
    multi-node branches of a stage) resolves to the output of whichever branch ran. kfp.local (2.17) handles OneOf
    for parameters only and rejects an artifact selector with more than one candidate."""
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    def get_dag_output_artifacts(cls, dag_outputs_spec, io_store):
        outputs = {}
        for key, spec in dag_outputs_spec.artifacts.items():
            found = []
            for sel in spec.artifact_selectors:
                try:
                    found.append(io_store.get_task_output(sel.producer_subtask, sel.output_artifact_key))
                except (KeyError, ValueError):  # that branch did not run
                    continue
            if len(found) != 1:
                raise ValueError(f"dsl.OneOf output {key!r}: {len(found)} branches produced it, expected 1")
            outputs[key] = found[0]
        return outputs

    OrchestratorUtils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)


def _caller_name_without_stack() -> None:
    """kfp (2.17) names the caller of a pod setting, for an error message, with `inspect.stack()[1][3]`: a walk of
    the whole stack that reads every frame's source file, each time a task is given a setting (~60 per build, 1 s
    of the driver's start-up). The caller's frame gives the same name directly; what compiles is unchanged."""
    from kfp.dsl.pipeline_task import PipelineTask

    def _ensure_container_spec_exists(self) -> None:
        if self.container_spec is None:
            raise ValueError(f"{sys._getframe(1).f_code.co_name} can only be used on single-step components, not "
                             "pipelines used as components, or special components like importers.")

    PipelineTask._ensure_container_spec_exists = _ensure_container_spec_exists


@contextlib.contextmanager
def _spool() -> Iterator[Path]:
    """A folder the flow's tasks write their cached and skipped stages' MLflow records to (SPOOL_ENV), so they
    need not load MLflow; the driver replays it (Tracker.replay)."""
    from olmoflow.tracking import SPOOL_ENV

    folder, before = Path(tempfile.mkdtemp(prefix="olmoflow-spool-")), os.environ.get(SPOOL_ENV)
    os.environ[SPOOL_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(SPOOL_ENV, None)
        else:
            os.environ[SPOOL_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


class _KfpNoise(io.TextIOBase):
    """Drops the KFP executor's own chatter (executor input JSON, module loading) from the streamed task logs,
    keeping the stages' progress lines and every error."""

    _drop = re.compile(r"\[KFP Executor [^\]]*INFO\]|Streamed logs:|^\s*$|Wrote executor output file|"
                       r"Cleaned up workspace| outputs:$|^\s*warnings.warn\(|^\s*return _dataset_source")

    def __init__(self, target):
        self.target, self.depth, self.buf = target, 0, ""

    def write(self, s: str) -> int:
        self.buf += s
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self._line(line)
        return len(s)

    def _line(self, line: str) -> None:
        stripped = line.strip()
        if "Got executor_input:" in line:
            self.depth = 0
            self.skipping = True
            return
        if getattr(self, "skipping", False):
            self.depth += stripped.count("{") - stripped.count("}")
            if self.depth <= 0 and stripped.startswith("}"):
                self.skipping = False
            return
        if self._drop.search(line) or stripped.startswith(("Output:", "dataset:", "checkpoint:", "metrics:",
                                                            "report:", "uri=", "metadata=", "name=")):
            return
        self.target.write(line + "\n")
        self.target.flush()

    def flush(self) -> None:
        self.target.flush()


def run_flow(cfg: FlowConfig, start: str = "curate", stop: str = LAST, init: str = "", verbose: bool = False,
             config_name: str = "") -> int:
    from kfp import local

    from olmoflow.flow.preflight import preflight
    from olmoflow.flow.task import setup_logging
    from olmoflow.tracking import Tracker

    plan = Plan(start, stop, init, cfg.flow.skip)
    setup_logging()
    # kfp.local's notes about settings that only matter on a cluster (images, display names) are expected here.
    warnings.filterwarnings("ignore", message=".*(base image|have no effect in the current local runner).*")
    preflight(cfg, plan)
    _oneof_artifacts()
    _caller_name_without_stack()
    # before MLflow (see the module's docstring); no retries: on a cluster a retry outlives a preempted pod, here a
    # failed task fails the same way again, minutes later (KFP's backoff)
    from olmoflow.cluster.settings import PipelineSettings
    model_flow = pipeline(PipelineSettings(local=True, retries=0))
    flow_run = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    tracker = Tracker(cfg.flow.name, flow_run)
    parent = tracker.parent_run_id(tags={"olmoflow.config": config_name, "olmoflow.plan": f"{start}..{stop}",
                                         "olmoflow.init": init})
    tracker.log_text(parent, to_json(cfg), "flow_config.json")
    print(f"olmoflow: flow run {flow_run} ({', '.join(plan.ordered())}) — store {cfg.flow.store}", flush=True)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(home() / "kfp"),
               raise_on_error=True)
    started = time.time()
    out = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(_KfpNoise(sys.stdout))
    error = None
    with _spool() as spool:
        try:
            with out:
                model_flow(config=to_json(cfg), overrides=[], start=start, stop=stop, init=init, flow_run=flow_run)
        except Exception as e:
            error = e
        tracker.replay(spool)
    _report_on_parent(tracker, parent)
    tracker.end_flow("FAILED" if error else "FINISHED")
    print_summary(tracker, time.time() - started)
    if error:
        print(f"olmoflow: the flow failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
              file=sys.stderr)
        return 1
    return 0


def _report_on_parent(tracker, parent: str) -> None:
    """A cached model-flow stage logs nothing: give this flow run's parent the stored report.html all the same, so
    every flow run opens on its model-flow report."""
    from olmoflow.storage import is_remote
    for run in tracker.stage_runs():
        tags = run.data.tags
        uri = tags.get("olmoflow.artifact_uri", "")
        if tags.get("olmoflow.stage") == LAST and tags.get("olmoflow.status") == "cached" and uri \
                and not is_remote(uri) and (report := Path(uri.removeprefix("file://")) / "report.html").is_file():
            tracker.log_artifact(parent, report, "model-flow")


def print_summary(tracker, wall: float) -> None:
    from olmoflow.tracking import summary_rows
    rows = [{**r, "wall": f"{r['wall']}s" if r["wall"] else ""} for r in summary_rows(tracker.stage_runs())]
    cols = ("stage", "status", "wall", "metric", "uri")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in cols}
    print()
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols))
    print(f"\nflow run {tracker.flow_run} finished in {wall:.0f}s")
    from olmoflow.tracking import runs_view_urls
    url = dict(runs_view_urls(uri=tracker.uri)).get(tracker.flow, "http://127.0.0.1:5000")
    print(f"MLflow: `make ui`, then open {url} (experiment {tracker.flow!r}; tracking URI {tracker.uri}); the "
          f"model-flow report (report.html) is on the flow's parent run")
