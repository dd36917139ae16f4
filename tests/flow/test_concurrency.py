"""Two runs of one stage at once on one store (issue 17, requirement 4), as real processes through the real CLI and
runner (`olmoflow stage model-flow`), each fault really injected:

- same config, started together (local store and moto S3): exactly one computes, the other waits, reports the
  artifact cached, and both print the same URI; a third run with another config, started with them, gets
  another path and neither waits for nor is waited on;
- the holder SIGKILLed mid-stage: the waiter takes over (at once: the holder ran on this machine and its process
  is gone) and resumes from the killed run's in-stage checkpoint;
- the holder SIGSTOPped: it stops renewing, as a holder on another machine that died does; the waiter takes over
  once the lease lapses (a 2 s ttl) and commits; the stalled run, continued, stops with one line and commits
  nothing.

The stage's compute is a fake (olmoflow.flow.runner.stage_module patched in the child): it counts its runs in a
file, sleeps, and saves an in-stage checkpoint per step, so a test can stop or kill it mid-stage; and a
one-process World stands in for torch's. The rest (the address, the cache check, the lease, the in-stage
checkpoints, the commit, the CLI's output and exit status) is the real code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olmoflow.artifacts import open_artifact
from olmoflow.storage import storage_for

TTL_S = "2"
WAIT_S = 60.0  # a generous bound for the loaded test machine; no test asserts a duration

DRIVER = '''
import os, sys, time, types

# One process outside torchrun: olmoflow.train.world's World is rank 0 of 1 there, and this stand-in is that,
# without importing torch (seconds per process on the shared test machine; the fake stage needs no torch).
class World:
    rank, size, local_rank, lead = 0, 1, 0, True
    current = classmethod(lambda cls: cls())
    first = all_ok = staticmethod(lambda fn: fn())
    barrier = staticmethod(lambda: None)

sys.modules["olmoflow.train.world"] = types.SimpleNamespace(World=World, shutdown=lambda: None)
from olmoflow.flow import runner

def run(ctx):
    with open(os.environ["FAKE_COUNTER"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    latest = ctx.work.latest_name()
    first = int(latest.removeprefix("step-")) + 1 if latest else 0
    for step in range(first, int(os.environ["FAKE_STEPS"])):
        time.sleep(0 if first else float(os.environ["FAKE_STEP_S"]))  # a resumed run just finishes
        with ctx.work.saving(step) as d:
            (d / "step.txt").write_text(str(step))
        ctx.log.info("fake step %d saved", step)
    (ctx.out / "payload.txt").write_text(f"first step {first}")
    return {"first_step": first}

runner.stage_module = lambda stage: types.SimpleNamespace(run=run)
from olmoflow.cli import main
if os.environ.get("FAKE_GATE"):  # imports done: start the stage when the test says, together with the other run
    open(os.environ["FAKE_GATE"] + "." + str(os.getpid()), "w").close()
    while not os.path.exists(os.environ["FAKE_GATE"]):
        time.sleep(0.01)
sys.exit(main(sys.argv[1:]))
'''


class Run:
    """One `olmoflow stage model-flow` process, its stdout and stderr in files."""

    def __init__(self, tmp: Path, name: str, store: str, steps: int, step_s: float, *sets: str, gate: str = ""):
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        driver = tmp / "driver.py"
        if not driver.exists():
            driver.write_text(DRIVER)
        env = {**os.environ, "OLMOFLOW_LEASE_TTL": TTL_S, "FAKE_COUNTER": str(tmp / "computed"),
               "FAKE_STEPS": str(steps), "FAKE_STEP_S": str(step_s), "FAKE_GATE": gate}
        argv = [sys.executable, str(driver), "stage", "model-flow", "--config", "smoke", "--set",
                f"flow.store={store}", "--set", "flow.threads=0", *(a for s in sets for a in ("--set", s))]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=out, stderr=err)

    def log(self) -> str:
        return self.err.read_text()

    def uri(self) -> str:
        return self.out.read_text().strip()

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while text not in self.log():
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {text!r}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log()}"
            time.sleep(0.05)

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture
def runs(tmp_path):
    started: list[Run] = []

    def start(name: str, store: str, steps: int, step_s: float, *sets: str, gate: str = "") -> Run:
        started.append(Run(tmp_path, name, store, steps, step_s, *sets, gate=gate))
        return started[-1]

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def together(tmp: Path, *started: Run) -> None:
    """Let gated runs (gate=tmp/"go") into the stage at the same moment, once each has imported everything: so
    "at once" does not depend on how fast each process starts on a loaded machine."""
    deadline = time.monotonic() + WAIT_S
    while not all((tmp / f"go.{r.proc.pid}").exists() for r in started):
        assert all(r.proc.poll() is None for r in started), "".join(r.log() for r in started)
        assert time.monotonic() < deadline, "the runs did not start"
        time.sleep(0.02)
    (tmp / "go").touch()


def roles(a: Run, b: Run, text: str) -> tuple[Run, Run]:
    """(the run whose log shows `text` first: the lease's holder, the other: its waiter)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        for holder, waiter in ((a, b), (b, a)):
            if text in holder.log():
                return holder, waiter
        assert a.proc.poll() is None and b.proc.poll() is None, a.log() + b.log()
        assert time.monotonic() < deadline, f"no {text!r} in:\n{a.log()}{b.log()}"
        time.sleep(0.05)


def computed(tmp: Path) -> list[str]:
    """The pids of the processes that ran the stage's compute."""
    path = tmp / "computed"
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_same_config_at_once_computes_once(backend, runs, tmp_path, request):
    store = str(tmp_path / "store") if backend == "local" else request.getfixturevalue("s3_uri")
    gate = str(tmp_path / "go")
    a, b = runs("a", store, 6, 0.4, gate=gate), runs("b", store, 6, 0.4, gate=gate)
    other = runs("other", store, 6, 0.4, "model_flow.model_name=another", gate=gate)  # another config
    together(tmp_path, a, b, other)
    assert a.finish() == 0 and b.finish() == 0 and other.finish() == 0, a.log() + b.log() + other.log()
    assert a.uri() == b.uri() and a.uri().startswith(store)
    maker, waiter = (a, b) if "model-flow: running ->" in a.log() else (b, a)
    assert sorted(computed(tmp_path)) == sorted([str(maker.proc.pid), str(other.proc.pid)])
    assert "model-flow: running ->" not in waiter.log()
    assert "stage model-flow: waiting for " in waiter.log() and "computing the same artifact at" in waiter.log()
    assert f"model-flow: cached at {a.uri()}" in waiter.log()
    assert (open_artifact(a.uri()).path / "payload.txt").read_text() == "first step 0"
    # Two configs never share a path, nor wait on each other's lease.
    assert other.uri() != a.uri() and "waiting for" not in other.log()
    for uri in (a.uri(), other.uri()):
        assert not storage_for(store).exists(uri + ".lease")  # released


def test_killed_holder_is_taken_over(runs, tmp_path):
    store, gate = str(tmp_path / "store"), str(tmp_path / "go")
    a, b = runs("a", store, 40, 0.25, gate=gate), runs("b", store, 40, 0.25, gate=gate)
    together(tmp_path, a, b)
    holder, waiter = roles(a, b, "fake step 1 saved")
    waiter.wait_for("waiting for")
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait()
    assert waiter.finish() == 0, waiter.log()
    assert "has ended (its process is gone from this machine); taking over" in waiter.log()
    assert "resuming from" in waiter.log()
    assert computed(tmp_path) == [str(holder.proc.pid), str(waiter.proc.pid)]
    payload = (open_artifact(waiter.uri()).path / "payload.txt").read_text()
    assert payload.startswith("first step ") and int(payload.split()[-1]) >= 2  # from the killed run's checkpoints
    assert holder.uri() == ""


def test_stalled_holder_stops_without_committing(runs, tmp_path):
    store, gate = str(tmp_path / "store"), str(tmp_path / "go")
    a, b = runs("a", store, 20, 0.25, gate=gate), runs("b", store, 20, 0.25, gate=gate)
    together(tmp_path, a, b)
    holder, waiter = roles(a, b, "fake step 0 saved")
    holder.proc.send_signal(signal.SIGSTOP)  # a stall past the ttl: a paused pod, a node cut off from the store
    try:
        assert waiter.finish() == 0, waiter.log()
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    assert "stopped renewing its lease" in waiter.log() and "(ttl 2 s); taking over" in waiter.log()
    assert holder.finish() == 1
    last = holder.log().strip().splitlines()[-1]
    assert last.startswith("olmoflow: model-flow: lost its lease ") and "stopping without committing" in last
    assert "Traceback" not in holder.log()
    assert holder.uri() == "" and waiter.uri()
    assert open_artifact(waiter.uri()).manifest["metrics"]["first_step"] >= 1  # resumed from the stalled run's
