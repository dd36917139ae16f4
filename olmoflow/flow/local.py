"""Run the flow on this machine: the pipeline of pipelines/model_flow.py, executed by kfp.local's
SubprocessRunner in the current environment (no second orchestrator), then a summary read back from MLflow."""

from __future__ import annotations

import contextlib
import io
import re
import secrets
import sys
import time
import warnings

from olmoflow.config import FlowConfig, to_json
from olmoflow.flow.pipeline import load_pipeline
from olmoflow.flow.plan import Plan


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


def run_flow(cfg: FlowConfig, start: str = "curate", stop: str = "eval", init: str = "", verbose: bool = False,
             config_name: str = "") -> int:
    from kfp import local

    from olmoflow.flow.preflight import preflight
    from olmoflow.flow.task import setup_logging
    from olmoflow.tracking import Tracker

    plan = Plan(start, stop, init)
    setup_logging()
    # kfp.local's notes about settings that only matter on a cluster (images, display names) are expected here.
    warnings.filterwarnings("ignore", message=".*(base image|have no effect in the current local runner).*")
    preflight(cfg, plan)
    flow_run = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    tracker = Tracker(cfg.flow.name, flow_run)
    parent = tracker.parent_run_id(tags={"olmoflow.config": config_name, "olmoflow.plan": f"{start}..{stop}",
                                         "olmoflow.init": init})
    tracker.log_text(parent, to_json(cfg), "flow_config.json")
    print(f"olmoflow: flow run {flow_run} ({', '.join(plan.ordered())}) — store {cfg.flow.store}", flush=True)

    _oneof_artifacts()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=".olmoflow/kfp",
               raise_on_error=True)
    model_flow = load_pipeline()
    started = time.time()
    out = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(_KfpNoise(sys.stdout))
    try:
        with out:
            model_flow(config=to_json(cfg), overrides=[], start=start, stop=stop, init=init, flow_run=flow_run)
    except Exception as e:
        tracker.end_flow("FAILED")
        print_summary(tracker, time.time() - started)
        print(f"olmoflow: the flow failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    tracker.end_flow("FINISHED")
    print_summary(tracker, time.time() - started)
    return 0


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
    print(f"MLflow: `make ui`, then open http://127.0.0.1:5000 (experiment {tracker.flow!r}; tracking URI "
          f"{tracker.uri})")
