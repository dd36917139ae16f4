"""Tracking faults, really injected (issue 17, requirement 3): a real MLflow server (`mlflow server`, sqlite, on
127.0.0.1) is killed in the middle of a stage and started again.

- killed and back before the stage ends: the stage runs through (no logging call raises or waits on the server),
  what it logged meanwhile is kept on disk and sent once the server answers, and every metric point is in MLflow
  exactly once;
- killed and still down when the stage ends, in a stage process of its own: the stage succeeds and commits, its
  records stay on disk, and the next Tracker started there sends them once the server is back, each once.

The stages are olmoflow's runner around a small stage module (flow/runner.py's run_stage: its MLflow run, its
stage.log and manifest artifacts, its tags and final metrics), so every Tracker call a stage makes is exercised.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from olmoflow.config import load_config
from olmoflow.flow import runner
from olmoflow.flow.runner import run_stage
from olmoflow.tracking import Tracker

START_TIMEOUT_S = 120.0
STEPS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on a free port over one sqlite database, in its own process group (it starts uvicorn as a
    child), so kill() takes the whole server down at once, as a crashed pod would go."""

    def __init__(self, root: Path):
        self.root, self.port = root, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner processes: a plain tracking server
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.root)
        log.close()
        started = time.monotonic()
        while not self._healthy():
            if self.proc.poll() is not None:
                tail = (self.root / "server.log").read_text(errors="replace").strip().splitlines()[-1:]
                pytest.fail(f"mlflow server exited with {self.proc.returncode}: {tail}")
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(f"mlflow server did not answer on {self.url} within {START_TIMEOUT_S:g} s")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        while self._listening():  # uvicorn, its child, may take a moment to die
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def env(server, tmp_path, monkeypatch):
    """The tracking URI, a journal folder, and short waits (MLflow's own HTTP retries off, our backoff short)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("OLMOFLOW_TRACKING_JOURNAL", str(tmp_path / "journal"))
    monkeypatch.setenv("OLMOFLOW_TRACKING_BACKOFF_MAX_S", "0.5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    for name in [n for n in os.environ if n.upper().endswith("_PROXY")]:
        monkeypatch.delenv(name)
    return tmp_path


def _stage(steps: int, fault_at: int, fault, back_at: int | None = None, back=None) -> types.SimpleNamespace:
    """A stage module that logs `loss` at each step, runs `fault()` before step fault_at and `back()` before
    back_at, and times each logging call."""
    slowest, kept = [], []

    def run(ctx):
        for step in range(steps):
            if step == fault_at:
                fault()
            if step == back_at:
                # what the outage left unsent, and where: on disk, in the journal
                kept.append((ctx.tracker.journal.pending(), sum(
                    len(p.read_text().splitlines()) for p in Path(os.environ["OLMOFLOW_TRACKING_JOURNAL"]).glob(
                        "*.jsonl"))))
                back()
            started = time.monotonic()
            ctx.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            slowest.append(time.monotonic() - started)
        (ctx.out / "payload.txt").write_text("weights")
        return {"final_loss": 1.0 / steps}

    return types.SimpleNamespace(run=run, slowest=slowest, kept=kept)


def _points(tracker: Tracker, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key))


def _check_run(tracker: Tracker, run_id: str) -> None:
    """Every step's point exactly once, the final metrics, the tags, the artifacts and the end all in MLflow."""
    assert _points(tracker, run_id, "loss") == [(s, 1.0 / (s + 1)) for s in range(STEPS)]
    assert _points(tracker, run_id, "final_loss") == [(STEPS - 1, 1.0 / STEPS)]
    run = tracker.client.get_run(run_id)
    assert run.data.tags["olmoflow.status"] == "ran" and run.info.status == "FINISHED"
    assert {"stage.log", "manifest.json", "config.json"} <= {a.path for a in tracker.client.list_artifacts(run_id)}


def test_a_server_killed_mid_stage_and_back_loses_nothing(server, env, monkeypatch, caplog):
    mod = _stage(STEPS, fault_at=10, fault=server.kill, back_at=20, back=server.start)
    monkeypatch.setattr(runner, "stage_module", lambda s: mod)
    cfg = load_config("smoke", [f"flow.store={env / 'store'}"])

    with caplog.at_level(logging.WARNING, logger="olmoflow"):
        result = run_stage("curate", cfg, {}, flow_run="killed-and-back")

    assert result.status == "ran"
    assert max(mod.slowest[10:20]) < 1.0, "a logging call waited on the dead server"
    (pending, on_disk), = mod.kept
    assert pending >= 10 and on_disk >= pending, "steps 10-19 were kept on disk while the server was down"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("MLflow at")]
    assert len([m for m in said if "does not answer" in m]) == 1, said  # one line, not one per step
    assert any("answers again" in m for m in said), said
    tracker = Tracker(cfg.flow.name, "killed-and-back")
    (run,) = tracker.stage_runs()
    _check_run(tracker, run.info.run_id)
    assert list((env / "journal").glob("*.jsonl")) == [], "all sent: the journal is gone"


STAGE_SCRIPT = """
import os, signal, sys, time, types
from olmoflow.config import load_config
from olmoflow.flow import runner

def kill_server():
    os.killpg(int(os.environ["SERVER_PGID"]), signal.SIGKILL)
    time.sleep(0.5)

def run(ctx):
    for step in range({steps}):
        if step == 10:
            kill_server()
        ctx.log_metrics({{"loss": 1.0 / (step + 1)}}, step=step)
    (ctx.out / "payload.txt").write_text("weights")
    return {{"final_loss": 1.0 / {steps}}}

runner.stage_module = lambda s: types.SimpleNamespace(run=run)
cfg = load_config("smoke", ["flow.store={store}"])
result = runner.run_stage("curate", cfg, {{}}, flow_run="down-at-the-end")
print("STAGE", result.status, result.uri)
"""


def test_records_left_by_a_stage_whose_server_stayed_down_are_sent_later(server, env, monkeypatch):
    script = env / "stage.py"
    script.write_text(textwrap.dedent(STAGE_SCRIPT.format(steps=STEPS, store=env / "store")))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=env,
                          env={**os.environ, "SERVER_PGID": str(server.proc.pid), "OLMOFLOW_TRACKING_DRAIN_S": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "STAGE ran" in proc.stdout, "the stage finished and committed its artifact with the server down"
    assert "Traceback" not in proc.stderr
    kept = [line for line in proc.stderr.splitlines() if "did not take" in line]
    assert len(kept) == 1 and "kept in" in kept[0], proc.stderr[-2000:]
    assert list((env / "journal").glob("*.jsonl")), "the unsent records are on disk"
    assert (Path(proc.stdout.split()[-1]) / "manifest.json").is_file()

    server.kill()  # make sure of it: the script killed the group, whose children may linger
    server.start()
    tracker = Tracker("smoke", "down-at-the-end")  # takes over the journal the stage's process left
    assert tracker.journal.flush(60), "the kept records reached MLflow"
    (run,) = tracker.stage_runs()
    _check_run(tracker, run.info.run_id)
    assert list((env / "journal").glob("*.jsonl")) == []
    # a second Tracker finds nothing left to send: nothing is logged twice
    assert Tracker("smoke", "down-at-the-end").journal.pending() == 0
    assert len(tracker.client.get_metric_history(run.info.run_id, "loss")) == STEPS


def test_an_unwritable_journal_folder_never_fails_the_stage(tmp_path, monkeypatch):
    """A working directory the pod cannot write: the journal goes to the temp dir, the records still arrive."""
    monkeypatch.chdir(tmp_path)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("OLMOFLOW_TRACKING_JOURNAL", str(blocked / "journal"))
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    tracker = Tracker("unwritable", "r1", f"sqlite:///{tmp_path}/mlflow.db")
    run_id = tracker.start_stage("sft", "fp", "/store/sft/fp", {}, status="running")
    for step in range(5):
        tracker.log_metrics(run_id, {"loss": float(step)}, step)
    (tmp_path / "plot.txt").write_text("plot")
    tracker.log_artifact(run_id, tmp_path / "plot.txt", "plots")
    tracker.end_stage(run_id)
    assert tracker.journal.folder != blocked / "journal"
    assert _points(tracker, run_id, "loss") == [(s, float(s)) for s in range(5)]
    assert [a.path for a in tracker.client.list_artifacts(run_id, "plots")] == ["plots/plot.txt"]
