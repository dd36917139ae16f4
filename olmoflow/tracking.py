"""MLflow for the flow: one experiment per flow, one parent run per flow run, one nested run per stage.

A stage run holds params (the flattened resolved stage config), step metrics, and artifacts (manifest, resolved
config, the stage log, plots); tags say stage, fingerprint, artifact URI and status (ran / cached / skipped). A
cached stage gets its own nested run that points at the run that made the artifact. Only the client API is used,
so tasks in separate processes (kfp.local) or pods (a cluster) can all log into the same parent run: the parent is
found by its flow-run tag, which is how a multi-node job's rank 0 (`olmoflow stage ... --flow-run RUN_ID`) nests
its stage run under the flow that launched it.

Under `olmoflow run` a task that only records a stage (cached or skipped) does not import MLflow (two seconds of
its start-up): it writes the record to the flow's spool (SPOOL_ENV, a folder), and the driver, which has MLflow
loaded already, replays it with its original times when the pipeline ends (Tracker.replay).

MLflow 3's UI opens an experiment on its GenAI pages (overview, traces, sessions), where a flow's runs hide: every
flow experiment is tagged as model development (EXPERIMENT_KIND), and `make ui` prints the URL of each flow's runs
view under the UI's "Model training" switch (runs_view_urls). A stage that runs in this process gets MLflow's
system metrics (CPU, memory, disk, network, and GPU where nvidia-ml-py finds one) on its run, sampled while it
runs. The model-flow stage registers the flow's checkpoints in the Model Registry (register_model_versions).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///.olmoflow/mlflow.db"
TAG_FLOW_RUN = "olmoflow.flow_run"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""The experiment kind MLflow 3 records for a model-training experiment (its UI's experiment-kind selector: "Machine
learning"), as opposed to genai_development."""
RUNS_VIEW_QUERY = "workflowType=machine_learning"
"""MLflow 3.17's UI takes its GenAI / Model training switch from this query parameter, else from the browser's last
choice (GenAI on a first visit), and with the switch shown it derives the experiment's kind from it, not from the
tag: with it the runs view opens under "Model training" (runs, models, the model registry), not the GenAI pages."""
SYSTEM_METRICS_INTERVAL_S = 10.0
SYSTEM_METRICS_SAMPLES = 6
"""System metrics are sampled every 10 s and logged as the mean of 6 samples: one point a minute (MLflow's
MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL / _SAMPLES_BEFORE_LOGGING override both)."""
SYSTEM_METRICS_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
"""Set to false to log no system metrics."""
SPOOL_ENV = "OLMOFLOW_TRACKING_SPOOL"
"""A folder the flow's driver replays into MLflow; set by `olmoflow run` for its tasks (olmoflow/flow/local.py)."""
log = logging.getLogger("olmoflow")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict, type(None))) else str(v)
    return out


class Tracker:
    """MLflow runs of one flow run (identified by `flow_run`, e.g. the KFP run id)."""

    def __init__(self, flow: str, flow_run: str, uri: str | None = None):
        import mlflow
        from mlflow import MlflowClient

        self.uri = uri or tracking_uri()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # MLflow logs its schema migrations at INFO on a fresh database, and warns that a local folder could be
        # two kinds of dataset source; neither is the user's business.
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        self.flow, self.flow_run = flow, flow_run
        self._monitors: dict[str, Any] = {}
        exp = self.client.get_experiment_by_name(flow)
        self.experiment_id = exp.experiment_id if exp else self._create_experiment(flow)
        if exp and TAG_EXPERIMENT_KIND not in exp.tags:
            # made before flows were tagged: tag it now (a kind the user chose in the UI is left alone)
            self.client.set_experiment_tag(self.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)

    def _create_experiment(self, name: str) -> str:
        try:
            return self.client.create_experiment(name, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})
        except Exception:
            # Another task created it between our lookup and create.
            return self.client.get_experiment_by_name(name).experiment_id

    def parent_run_id(self, create: bool = True, tags: dict[str, str] | None = None) -> str | None:
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_FLOW_RUN}` = '{self.flow_run}' and tags.`olmoflow.kind` = 'flow'",
            max_results=1)
        if found:
            return found[0].info.run_id
        if not create:
            return None
        run = self.client.create_run(self.experiment_id, run_name=f"flow-{self.flow_run}",
                                     tags={TAG_FLOW_RUN: self.flow_run, "olmoflow.kind": "flow", **(tags or {})})
        return run.info.run_id

    def end_flow(self, status: str = "FINISHED") -> None:
        run_id = self.parent_run_id(create=False)
        if run_id:
            self.client.set_terminated(run_id, status)

    def start_stage(self, stage: str, fp: str, uri: str, params: dict[str, Any], status: str,
                    start_time: int | None = None) -> str:
        parent = self.parent_run_id()
        run = self.client.create_run(self.experiment_id, start_time=start_time, run_name=stage, tags={
            "mlflow.parentRunId": parent, TAG_FLOW_RUN: self.flow_run, "olmoflow.stage": stage,
            "olmoflow.fingerprint": fp, "olmoflow.artifact_uri": uri, "olmoflow.status": status})
        run_id = run.info.run_id
        items = list(flatten(params).items())
        from mlflow.entities import Param
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in items[i:i + 100]])
        if status == "running":  # it runs in this process: sample the machine until end_stage
            self._start_system_metrics(run_id)
        return run_id

    def _start_system_metrics(self, run_id: str) -> None:
        if os.environ.get(SYSTEM_METRICS_ENV, "").lower() in ("false", "0"):
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError as e:  # its CPU monitor needs psutil
            log.warning("no system metrics for this stage run: %s", e)
            return

        class Monitor(SystemMetricsMonitor):
            """Counts what it logged, so a stage shorter than one logging period still gets its one point."""

            published = 0

            def publish_metrics(self, metrics):
                super().publish_metrics(metrics)
                self.published += 1

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start/stop lines
        monitor = Monitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                          samples_before_logging=SYSTEM_METRICS_SAMPLES, tracking_uri=self.uri)
        monitor.start()
        self._monitors[run_id] = monitor

    def _stop_system_metrics(self, run_id: str) -> None:
        monitor = self._monitors.pop(run_id, None)
        if monitor is None:
            return
        monitor.finish()  # wakes the sampling thread and waits for it
        if not monitor.published:
            # a stage shorter than one logging period: one point, the samples so far and one now (CPU use is
            # measured since the previous sample, so this one covers the stage)
            try:
                monitor.collect_metrics()
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
            except Exception as e:
                log.warning("system metrics of run %s not logged: %s", run_id, e)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None,
                    timestamp: int | None = None) -> None:
        from mlflow.entities import Metric
        now = timestamp or int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # MLflow caps a batch at 1000 metrics (model-flow logs more)
            self.client.log_batch(run_id, metrics=batch[i:i + 1000])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

    def log_artifact(self, run_id: str, path: Path, subdir: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), subdir)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / name
            p.write_text(text)
            self.client.log_artifact(run_id, str(p))

    def log_dataset(self, run_id: str, uri: str, name: str, digest: str, context: str) -> None:
        """Record a dataset artifact as an MLflow input with its digest (the artifact's fingerprint)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        try:
            source = resolve_dataset_source(uri)
        except Exception:
            log.debug("no MLflow dataset source for %s", uri)
            return
        ds = MetaDataset(source=source, name=name, digest=digest)
        self.client.log_inputs(run_id, [DatasetInput(ds._to_mlflow_entity(),
                                                     [InputTag("mlflow.data.context", context)])])

    def end_stage(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        self._stop_system_metrics(run_id)
        self.client.set_terminated(run_id, status, end_time)

    def register_model_versions(self, name: str, exports: Iterable[tuple[str, Path]], run_id: str) -> dict[str, str]:
        """Register one model version per (stage, Hugging Face folder), in the order given (the flow's: the last is
        the newest version, the final model): each folder is logged on run `run_id` under models/{stage} and is
        that version's source; alias `{stage}` points at it (`models:/{name}@sft`). `exports` may be a generator
        that makes each folder when asked (one at a time on disk). Returns {stage: version}."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                name, tags={"olmoflow.flow": self.flow},
                description=f"Checkpoints of olmoflow's flow {self.flow}; alias = the stage that made it.")
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        versions = {}
        for stage, folder in exports:
            self.client.log_artifacts(run_id, str(folder), f"models/{stage}")
            mv = self.client.create_model_version(
                name, f"runs:/{run_id}/models/{stage}", run_id=run_id,
                tags={"olmoflow.stage": stage, TAG_FLOW_RUN: self.flow_run, "olmoflow.format": "huggingface"},
                description=f"The {stage} checkpoint of flow run {self.flow_run}, in Hugging Face format.")
            self.client.set_registered_model_alias(name, stage, mv.version)
            versions[stage] = str(mv.version)
        return versions

    def record_stage(self, stage: str, fp: str, uri: str, params: dict[str, Any], status: str,
                     metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
                     start_time: int | None = None, end_time: int | None = None) -> str:
        """A stage run recorded whole, for a stage that did not run in this process (cached, skipped, or run by a
        job): opened, given its metrics and tags, closed. Times (ms) are now's unless given (a spooled record)."""
        run_id = self.start_stage(stage, fp, uri, params, status=status, start_time=start_time)
        if metrics is not None:
            self.log_metrics(run_id, metrics, timestamp=start_time)
        if tags:
            self.set_tags(run_id, tags)
        self.end_stage(run_id, end_time=end_time)
        return run_id

    def replay(self, spool: Path) -> int:
        """Record the stages the flow's tasks spooled (Spool.record_stage) in the order they happened; returns
        how many. Each file is removed once recorded, so a second replay records nothing twice."""
        records = [(json.loads(p.read_text()), p) for p in Path(spool).glob("*.json")]
        for record, path in sorted(records, key=lambda r: (r[0]["start_time"], r[1].name)):
            if record.pop("flow_run") == self.flow_run and record.pop("flow") == self.flow:
                self.record_stage(**record)
            path.unlink()
        return len(records)

    def stage_runs(self) -> list[Any]:
        """Nested stage runs of this flow run, oldest first."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_FLOW_RUN}` = '{self.flow_run}'",
            order_by=["attributes.start_time ASC"])
        return [r for r in runs if r.data.tags.get("olmoflow.stage")]


class Spool:
    """Tracker.record_stage for a task of `olmoflow run`, without MLflow: the record goes to a JSON file in the
    flow's spool folder, and the driver's Tracker.replay writes it to MLflow with these times."""

    def __init__(self, folder: str | Path, flow: str, flow_run: str):
        self.folder, self.flow, self.flow_run = Path(folder), flow, flow_run

    def record_stage(self, stage: str, fp: str, uri: str, params: dict[str, Any], status: str,
                     metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> str:
        now = int(time.time() * 1000)
        record = {"flow": self.flow, "flow_run": self.flow_run, "stage": stage, "fp": fp, "uri": uri,
                  "params": params, "status": status, "metrics": metrics, "tags": tags, "start_time": now,
                  "end_time": now}
        name = f"{now}-{stage}-{os.getpid()}"
        # Written whole, then renamed: the driver never reads half a record.
        (self.folder / f"{name}.tmp").write_text(json.dumps(record))
        (self.folder / f"{name}.tmp").rename(self.folder / f"{name}.json")
        return ""


def recorder(flow: str, flow_run: str) -> Tracker | Spool:
    """What records a stage that did not run in this process: the flow's spool when the driver of `olmoflow run`
    set one (SPOOL_ENV), else MLflow itself."""
    spool = os.environ.get(SPOOL_ENV)
    return Spool(spool, flow, flow_run) if spool else Tracker(flow, flow_run)


def summary_rows(runs: Iterable[Any]) -> list[dict[str, str]]:
    rows = []
    for r in runs:
        t = r.data.tags
        headline = t.get("olmoflow.headline", "")
        value = r.data.metrics.get(headline) if headline else None
        rows.append({"stage": t["olmoflow.stage"], "status": t.get("olmoflow.status", "?"),
                     "wall": t.get("olmoflow.wall_s", ""),
                     "metric": f"{headline}={value:.4g}" if value is not None else "",
                     "uri": t.get("olmoflow.artifact_uri", "")})
    return rows


def runs_view_urls(base: str = "http://127.0.0.1:5000", uri: str | None = None) -> list[tuple[str, str]]:
    """(flow, URL of its training-runs view in MLflow 3's UI at `base`) for each flow in the tracking database,
    tagging as model development any flow experiment made before flows were tagged. A local database that does
    not exist yet lists none (and is not created)."""
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = []
    for exp in client.search_experiments():
        flow_runs = client.search_runs([exp.experiment_id], "tags.`olmoflow.kind` = 'flow'", max_results=1)
        if not flow_runs and exp.tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND:
            continue  # not a flow's experiment (MLflow's Default, a user's own)
        if TAG_EXPERIMENT_KIND not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        found.append((exp.name, f"{base.rstrip('/')}/#/experiments/{exp.experiment_id}/runs?{RUNS_VIEW_QUERY}"))
    return found


def print_runs_view_urls(base: str = "http://127.0.0.1:5000", uri: str | None = None) -> None:
    """What `make ui` says before the server starts: where each flow's runs are."""
    urls = runs_view_urls(base, uri)
    if not urls:
        print(f"MLflow UI at {base}: no flow tracked yet; after `make run`, `make ui` prints its runs' URL.")
    for flow, url in urls:
        print(f"flow {flow}: training runs at {url}")
