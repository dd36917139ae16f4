"""The executors: the same results in input order from the plain loop and from Ray Data, a batch function's own
exception back on the driver, a local Ray that leaves no process behind, a running cluster reached through
$RAY_ADDRESS (with its code checked against the driver's), and a dead address named in one line within seconds."""

import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest

from olmoflow.data import execute
from olmoflow.data.config import RayConfig
from olmoflow.data.dedup import content_hash
from olmoflow.data.execute import ExecutorError, open_executor

LOG = logging.getLogger("test")
TEXTS = [f"document {i} " * (i % 7 + 1) for i in range(200)]


def hashes(texts: list[str]) -> list[str]:
    return [content_hash(t) for t in texts]


def fail_on(texts: list[str], bad: str) -> list[str]:
    if bad in texts:
        raise ValueError(f"curate: source 'x': cannot read s3://bucket/{bad} (no such object)")
    return texts


def processes() -> dict[int, str]:
    """pid -> command line of every live process (zombies excluded)."""
    out = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return out


def descendants(root: int) -> set[int]:
    """The live processes below `root` (its children, theirs, ...): Ray's, not whatever else the machine starts
    meanwhile (another job's shell was once taken for a process Ray left behind)."""
    parent = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found


def test_in_process_keeps_order_and_raises_the_first_failing_batch():
    with open_executor(RayConfig(), LOG) as ex:
        assert ex.describe() == {"kind": "in-process", "cpus": 1, "where": "this process"}
        assert ex.map(hashes, TEXTS, 7) == [content_hash(t) for t in TEXTS]
        assert ex.map_batches(len, TEXTS, 64) == [64, 64, 64, 8]
        assert ex.map_batches(len, TEXTS) == [50, 50, 50, 50]  # no batch size: about 4 batches per CPU
        with pytest.raises(ValueError, match=r"^curate: source 'x': cannot read s3://bucket/document 3 "):
            ex.map(functools.partial(fail_on, bad=TEXTS[3]), TEXTS, 2)


def test_local_ray_matches_the_loop_and_leaves_no_process(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import ray
    import ray.cloudpickle

    # Ray workers cannot import this test module: its functions travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    elsewhere = types.ModuleType("only_on_the_driver")
    exec("def nothing(batch):\n    return batch\n", elsewhere.__dict__)
    monkeypatch.setitem(sys.modules, elsewhere.__name__, elsewhere)
    before = processes()
    with pytest.raises(ValueError, match=r"^curate: source 'x': cannot read s3://bucket/document 150 "):
        with open_executor(RayConfig(enabled=True, num_cpus=2, object_store_mb=128), LOG) as ex:
            assert ex.describe() == {"kind": "ray", "cpus": 2, "where": "local"}
            session = Path(ray._private.worker._global_node.get_session_dir_path()).name
            assert ex.map(hashes, TEXTS, 7) == [content_hash(t) for t in TEXTS]  # 29 batches, in input order
            assert ex.map_batches(len, TEXTS) == [25] * 8  # 2 CPUs: about 4 batches each
            ours = {pid for pid in processes() if pid not in before} & descendants(os.getpid())
            assert any("raylet" in processes()[p] for p in ours)
            # A function the workers cannot load is an error on the driver, not a task Ray retries forever.
            with pytest.raises(ModuleNotFoundError, match="only_on_the_driver"):
                ex.map(elsewhere.nothing, TEXTS, 50)
            # The first failing batch's own exception, as the loop raises it (not Ray's task error); the
            # exception also leaves the block, so Ray must still be shut down.
            ex.map(functools.partial(fail_on, bad=TEXTS[150]), TEXTS, 10)
    assert not ray.is_initialized()
    deadline = time.time() + 10
    while time.time() < deadline:
        left = {pid: cmd for pid, cmd in processes().items() if pid in ours or session in cmd}
        if not left:
            break
        time.sleep(0.2)
    assert not left, f"Ray left processes behind: {left}"


def test_a_dead_cluster_address_fails_in_seconds_naming_it(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    start = time.time()
    with pytest.raises(ExecutorError) as e:
        with open_executor(RayConfig(enabled=True), LOG):
            pass
    assert time.time() - start < 10
    assert str(e.value) == (f"curate.ray: cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused; "
                            "is RAY_ADDRESS / curate.ray.address right?)")
    import ray

    assert not ray.is_initialized()
    # curate.ray.address wins over $RAY_ADDRESS: the error names the configured one.
    with pytest.raises(ExecutorError, match=rf"^curate.ray: cannot reach the Ray cluster at ray://127.0.0.1:{port} "):
        with open_executor(RayConfig(enabled=True, address=f"ray://127.0.0.1:{port}"), LOG):
            pass


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` with one CPU in its own session and temp dir (so no one else's plain
    ray.init() finds it); killed by its process group at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")  # short: Ray's socket paths live under it
    log = open(Path(temp) / "head.log", "wb")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    ray_cli = str(Path(sys.executable).parent / "ray")
    proc = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 90
        while b"Ray runtime started" not in (Path(temp) / "head.log").read_bytes():
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"ray start --head failed: {(Path(temp) / 'head.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the head's processes share its session: ours, and only ours
        proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_address_connects_to_the_cluster_and_checks_its_code(ray_head, monkeypatch):
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_ADDRESS", ray_head)
    # num_cpus and object_store_mb are a local Ray's: the cluster has what it has.
    with open_executor(RayConfig(enabled=True, num_cpus=2), LOG) as ex:
        assert ex.describe() == {"kind": "ray", "cpus": 1, "where": ray_head}
        assert ex.map(hashes, TEXTS, 50) == [content_hash(t) for t in TEXTS]
    assert not ray.is_initialized()  # disconnected; the cluster itself goes on
    with open_executor(RayConfig(enabled=True, address=ray_head, ship_code=True), LOG) as ex:
        assert ex.map(hashes, TEXTS[:10], 5) == [content_hash(t) for t in TEXTS[:10]]
    # Workers whose olmoflow differs from the driver's (here: a digest that differs per process).
    monkeypatch.setattr(execute, "code_digest", lambda: f"pid-{os.getpid()}")
    with pytest.raises(ExecutorError, match=rf"^curate.ray: the workers of the Ray cluster at {ray_head} run "
                                            r"other olmoflow code \(digest pid-\d+, this driver pid-\d+\); set "
                                            r"curate.ray.ship_code: true"):
        with open_executor(RayConfig(enabled=True), LOG):
            pass
    assert not ray.is_initialized()
