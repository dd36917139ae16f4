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

A tracking server that goes away mid-stage never fails the stage nor slows its steps: what a stage logs after its
run is open (metrics, tags, artifacts, its end) goes through a write-behind journal (_Journal), a file on local disk
that a thread sends to MLflow in order, retrying with backoff while the server is down. end_stage waits for it up
to DRAIN_ENV seconds; what is still unsent then stays on disk, and the next Tracker for the same tracking URI that
starts in the same journal folder (JOURNAL_ENV; the next stage on this machine, the flow's driver) sends it. Each
record is sent once: a journal counts what the server acknowledged, and a record resent because its
acknowledgement was lost is one MLflow's store already drops (the same key, value, step and time). Opening a stage's
run, finding the flow's parent run and the Model Registry still need the server at that moment (MLflow's own HTTP
retries apply).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
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
JOURNAL_ENV = "OLMOFLOW_TRACKING_JOURNAL"
"""The folder of the write-behind journals (default .olmoflow/tracking-journal under the working directory)."""
DRAIN_ENV = "OLMOFLOW_TRACKING_DRAIN_S"
"""Seconds end_stage waits for the journal to reach MLflow before leaving the rest on disk (default 60)."""
ROTATE = 10_000
"""Records in one journal file before a caught-up sender starts the next (end_stage always closes it)."""
BACKOFF_ENV = "OLMOFLOW_TRACKING_BACKOFF_MAX_S"
"""The longest wait between two tries while MLflow does not answer (default 15 s; the first waits 0.5 s)."""
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
        self.journal = _Journal(Path(os.environ.get(JOURNAL_ENV) or ".olmoflow/tracking-journal"), self.uri,
                                self.client)
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
        try:
            monitor.finish()  # wakes the sampling thread and waits for it
        except Exception as e:  # its last point could not be sent: the stage is done all the same
            log.warning("system metrics of run %s not logged: %s", run_id, _one_line(e))
            return
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
        """Step metrics, through the journal: returns at once, even with the server down."""
        now = timestamp or int(time.time() * 1000)
        self.journal.add({"op": "metrics", "run": run_id,
                          "metrics": [[k, float(v), now, step or 0] for k, v in metrics.items()]})

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.journal.add({"op": "tags", "run": run_id, "tags": {k: str(v) for k, v in tags.items()}})

    def log_artifact(self, run_id: str, path: Path, subdir: str | None = None) -> None:
        """A copy of the file goes into the journal (the stage may delete its own before it is sent)."""
        self.journal.add({"op": "artifact", "run": run_id, "subdir": subdir}, Path(path))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.journal.add({"op": "text", "run": run_id, "name": name, "text": text})

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
        try:
            self.client.log_inputs(run_id, [DatasetInput(ds._to_mlflow_entity(),
                                                         [InputTag("mlflow.data.context", context)])])
        except Exception as e:  # a lineage nicety: never worth failing the stage for
            log.warning("MLflow at %s: input %s not recorded on run %s (%s)", self.uri, name, run_id, _one_line(e))

    def end_stage(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        """Close the run, then wait (up to DRAIN_ENV seconds) for the journal to reach MLflow; never raises for
        a server that is away: what is unsent stays on disk for the next Tracker here."""
        self._stop_system_metrics(run_id)
        self.journal.add({"op": "end", "run": run_id, "status": status,
                          "end_time": end_time or int(time.time() * 1000)})
        self.drain()

    def drain(self) -> None:
        """Wait (up to DRAIN_ENV seconds) for what the journal holds to reach MLflow; what is unsent stays on disk."""
        self.journal.flush(float(os.environ.get(DRAIN_ENV) or 60))

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


class _Journal:
    """A Tracker's write-behind log: records appended to a JSONL file (one per Tracker and process, flock-ed while
    in use) and sent to MLflow in order by one thread, which backs off while the server does not answer.

    Beside each `{name}.jsonl`: `{name}.sent` (how many of its records MLflow acknowledged, rewritten after each
    send) and `{name}.files/` (copies of the artifacts). A journal fully sent is deleted; one left by a process
    that ended (its lock free) and for the same tracking URI is taken over by the next Tracker made here.
    """

    def __init__(self, folder: Path, uri: str, client: Any):
        self.folder, self.uri, self.client = folder, uri, client
        self._cond = threading.Condition()
        self._segments: list[dict[str, Any]] = []  # oldest first; each {path, fd, records, sent}
        self._own: dict[str, Any] | None = None  # the segment this Tracker appends to
        self._thread: threading.Thread | None = None
        self._hurry = False  # end_stage wants a try now, not after the current backoff
        self._down_since: float | None = None
        self._unflushed = False  # records added since the last flush
        self._adopt()
        # Records added after the last end_stage (the driver's report on the parent run) are sent before exit.
        atexit.register(lambda: self._unflushed and self.flush(float(os.environ.get(DRAIN_ENV) or 60)))

    # --- the stage's side: append, never block on the server -------------------------------------------------

    def add(self, record: dict[str, Any], file: Path | None = None) -> None:
        with self._cond:
            if self._own is None:
                self._own = self._open(self.folder / f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
                self._segments.append(self._own)
            seg = self._own
            try:
                if file is not None:
                    files = seg["path"].with_suffix(".files") if seg["path"] else Path(tempfile.mkdtemp())
                    copy = files / str(len(seg["records"])) / file.name
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, copy)
                    record = {**record, "path": str(copy)}
                if seg["fh"] is not None:
                    seg["fh"].write(json.dumps(record) + "\n")
                    seg["fh"].flush()
            except OSError as e:  # a full disk: the record is still sent from memory, only not kept across exits
                log.warning("tracking journal %s not written (%s): this record is kept in memory only",
                            seg["path"], _one_line(e))
                if file is not None and "path" not in record:
                    record = {**record, "path": str(file)}
            seg["records"].append(record)
            self._unflushed = True
            self._cond.notify_all()
            self._start_sender()

    def _start_sender(self) -> None:
        # under self._cond; the sender clears self._thread under it too, when it stops for lack of work
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_loop, name="olmoflow-tracking", daemon=True)
            self._thread.start()

    def pending(self) -> int:
        with self._cond:
            return sum(len(s["records"]) - s["sent"] for s in self._segments)

    def flush(self, timeout: float) -> bool:
        """Wait until everything is sent (True) or `timeout` seconds pass (False, with one warning line)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry, self._unflushed = True, False
            self._cond.notify_all()
            if self._segments:
                self._start_sender()
            while self._unsent() and time.monotonic() < deadline:
                self._cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            left = sum(len(s["records"]) - s["sent"] for s in self._segments)
            if not left:
                for seg in list(self._segments):  # all sent: the files go; the next add starts a new one
                    self._retire(seg)
        if left:
            log.warning("MLflow at %s did not take %d tracking records within %g s: they are kept in %s and sent "
                        "by the next stage run here once it answers", self.uri, left, timeout, self.folder)
        return not left

    # --- the sender ------------------------------------------------------------------------------------------

    def _unsent(self) -> dict[str, Any] | None:
        """The oldest segment with records not yet sent (under self._cond)."""
        return next((s for s in self._segments if s["sent"] < len(s["records"])), None)

    def _send_loop(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                while (seg := self._unsent()) is None:
                    # Caught up: adopted segments go now, this Tracker's own once it is long (not after every
                    # step, which would make a file per step) or when end_stage flushes.
                    for done in [s for s in self._segments if s is not self._own or len(s["records"]) >= ROTATE]:
                        self._retire(done)
                    if not self._cond.wait(5.0) and not self._segments:
                        self._thread = None  # idle: the next add starts a new sender
                        return
                batch = self._next_batch(seg)
            try:
                self._send(batch)
            except Exception as e:
                if not _transient(e):
                    log.warning("MLflow at %s refused a tracking record (%s): dropped", self.uri, _one_line(e))
                    self._acknowledge(seg, len(batch))
                    continue
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("MLflow at %s does not answer (%s): tracking records are kept in %s and sent when "
                                "it is back; the stage goes on", self.uri, _one_line(e), self.folder)
                wait = min(float(os.environ.get(BACKOFF_ENV) or 15.0), 0.5 * 2 ** attempt)
                attempt += 1
                with self._cond:
                    self._cond.wait_for(lambda: self._hurry, timeout=wait)
                    self._hurry = False
                continue
            if self._down_since is not None:
                log.warning("MLflow at %s answers again after %.0f s: sending the kept tracking records", self.uri,
                            time.monotonic() - self._down_since)
                self._down_since = None
            attempt = 0
            self._acknowledge(seg, len(batch))

    def _next_batch(self, seg: dict[str, Any]) -> list[dict[str, Any]]:
        """The next records to send as one request: a run of consecutive metric records of one run (up to
        MLflow's 1000 metrics a batch), or one other record."""
        records = seg["records"][seg["sent"]:]
        if not records or records[0]["op"] != "metrics":
            return records[:1]
        batch, n = [], 0
        for r in records:
            if r["op"] != "metrics" or r["run"] != records[0]["run"] or (batch and n + len(r["metrics"]) > 1000):
                break
            batch.append(r)
            n += len(r["metrics"])
        return batch

    def _send(self, batch: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric, RunTag

        first = batch[0]
        run, op = first["run"], first["op"]
        if op == "metrics":
            metrics = [Metric(k, v, ts, step) for r in batch for k, v, ts, step in r["metrics"]]
            for i in range(0, len(metrics), 1000):
                self.client.log_batch(run, metrics=metrics[i:i + 1000])
        elif op == "tags":
            self.client.log_batch(run, tags=[RunTag(k, v) for k, v in first["tags"].items()])
        elif op == "artifact":
            self.client.log_artifact(run, first["path"], first["subdir"])
        elif op == "text":
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / first["name"]
                p.write_text(first["text"])
                self.client.log_artifact(run, str(p))
        elif op == "end":
            self.client.set_terminated(run, first["status"], first["end_time"])

    def _acknowledge(self, seg: dict[str, Any], n: int) -> None:
        """Count n more records of seg as sent, on disk too (so no later process sends them again)."""
        with self._cond:
            seg["sent"] += n
            if seg["path"] is not None:
                try:
                    tmp = seg["path"].with_suffix(".sent.tmp")
                    tmp.write_text(str(seg["sent"]))
                    tmp.replace(seg["path"].with_suffix(".sent"))
                except OSError as e:  # a later process may resend these; MLflow drops identical records
                    log.warning("tracking journal %s: progress not saved (%s)", seg["path"], _one_line(e))
            self._cond.notify_all()

    def _retire(self, seg: dict[str, Any]) -> None:
        """A fully sent segment (under self._cond): its files go; for this Tracker's own, the next add starts a new
        one."""
        if seg["sent"] < len(seg["records"]):
            return
        self._segments.remove(seg)
        if seg is self._own:
            self._own = None
        if seg["path"] is not None:
            seg["fh"].close()
            for suffix in (".sent", ".jsonl"):
                seg["path"].with_suffix(suffix).unlink(missing_ok=True)
            shutil.rmtree(seg["path"].with_suffix(".files"), ignore_errors=True)
            os.close(seg["lock"])
        self._cond.notify_all()

    # --- files -----------------------------------------------------------------------------------------------

    def _open(self, path: Path) -> dict[str, Any]:
        """A new segment: its file in the journal folder, else (a read-only working directory) in the temp dir,
        else in memory only (path None)."""
        for folder in (self.folder, Path(tempfile.gettempdir()) / "olmoflow-tracking-journal"):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                file = folder / path.with_suffix(".jsonl").name
                lock = os.open(file, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(lock, fcntl.LOCK_EX)
                fh = open(file, "a")
                fh.write(json.dumps({"op": "journal", "uri": self.uri}) + "\n")
                fh.flush()
            except OSError as e:
                log.warning("tracking journal not writable in %s (%s)", folder, _one_line(e))
                continue
            self.folder = folder
            return {"path": file.with_suffix(""), "lock": lock, "fh": fh, "records": [], "sent": 0}
        return {"path": None, "lock": None, "fh": None, "records": [], "sent": 0}

    def _adopt(self) -> None:
        """Take over the journals of processes that ended before MLflow took all of theirs (same tracking URI)."""
        if not self.folder.is_dir():
            return
        for file in sorted(self.folder.glob("*.jsonl")):
            try:
                lock = os.open(file, os.O_RDWR)
            except OSError:  # sent and removed meanwhile
                continue
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # in use by a live process
                os.close(lock)
                continue
            lines = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
            if not lines or lines[0].get("uri") != self.uri:
                os.close(lock)
                continue
            sent_file = file.with_suffix(".sent")
            sent = int(sent_file.read_text() or 0) if sent_file.exists() else 0
            # The segment's records are the lines after the header; what was sent is skipped, never resent.
            self._segments.append({"path": file.with_suffix(""), "lock": lock, "fh": open(file, "a"),
                                   "records": lines[1:], "sent": sent})
            log.info("tracking: %d unsent records from an earlier process, in %s", len(lines) - 1 - sent, file)
        if self._segments:
            with self._cond:
                self._start_sender()


def _transient(e: BaseException) -> bool:
    """Whether a failed send is worth another try: the server away or overloaded, not a record it refuses."""
    from mlflow.exceptions import MlflowException
    if isinstance(e, MlflowException):
        return e.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
    return True  # requests / urllib3 / OS errors: the connection, not the record


def _one_line(e: object) -> str:
    return " ".join(str(e).split())[:300]


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
