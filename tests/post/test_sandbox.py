"""The sandbox: each hostile program really runs, and fails or is contained; the host is unchanged; a correct
program passes. Most cases run under both isolations ("namespaces" where unshare works, "rlimits" always)."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from olmoflow.cli import main
from olmoflow.post.sandbox import Limits, namespaces_available, run_tests

REPO = Path(__file__).resolve().parents[2]
ISOLATIONS = [pytest.param("namespaces", marks=pytest.mark.skipif(not namespaces_available(),
                                                                    reason="no unprivileged user namespaces")),
              "rlimits"]
GOOD = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
FAST = Limits(timeout=2.0)


def processes_with(marker: str) -> list[int]:
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            if marker.encode() in Path(d, "cmdline").read_bytes():
                out.append(int(d.rsplit("/", 1)[1]))
        except OSError:
            pass
    return out


@pytest.fixture(autouse=True)
def host_unchanged(tmp_path, monkeypatch):
    """No sandbox folder and no harness process is left behind by any test. Each test's sandboxes live under its own
    temp folder (in this process and in the CLI's), so a sandbox another pytest worker runs at the same time is
    neither counted nor waited for."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    yield
    assert glob.glob(os.path.join(scratch, "olmoflow-sandbox-*")) == []
    assert processes_with(f"{scratch}/olmoflow-sandbox-") == []


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_correct_program_passes(isolation: str) -> None:
    v = run_tests(GOOD, TESTS, limits=FAST, isolation=isolation)
    assert (v.passed, v.reason) == (True, "all tests passed")
    # tests may import the program as a module, and the program may use the standard library and its folder
    prog = GOOD + "import collections, json, math\nopen('out.txt', 'w').write('x')\n"
    v = run_tests(prog, "from program import add\nassert add(2, 2) == 4\nassert open('out.txt').read() == 'x'\n",
                  limits=FAST, isolation=isolation)
    assert v.passed, v.reason


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_wrong_answer_fails_with_the_line(isolation: str) -> None:
    v = run_tests("def add(a, b):\n    return a - b\n", TESTS, limits=FAST, isolation=isolation)
    assert not v.passed and v.reason == "tests.py line 1: AssertionError"
    v = run_tests("def add(a, b) return\n", TESTS, limits=FAST, isolation=isolation)
    assert not v.passed and v.reason.startswith("program.py does not compile")


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("program", [
    "print('passed')\nraise SystemExit(0)\n",
    "print('passed')\nimport os\nos._exit(0)\n",
    "import sys\nprint('all tests passed', file=sys.stderr)\nsys.exit(0)\n",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    # forge a verdict on every descriptor it may hold
    "import os\nfor fd in range(64):\n    try:\n        os.write(fd, b'passed\\n')\n    except OSError:\n        pass\n"
    "os._exit(0)\n",
])
def test_claiming_success_is_not_a_verdict(isolation: str, program: str) -> None:
    v = run_tests(program, TESTS, limits=FAST, isolation=isolation)
    assert not v.passed, v


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_infinite_loop_times_out(isolation: str) -> None:
    t = time.monotonic()
    v = run_tests(GOOD + "while True:\n    pass\n", TESTS, limits=Limits(timeout=1.0), isolation=isolation)
    assert not v.passed and v.reason.startswith("timeout")
    assert time.monotonic() - t < 6


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_cpu_limit(isolation: str) -> None:
    v = run_tests("while True:\n    pass\n", TESTS, limits=Limits(timeout=4.0, cpu=1), isolation=isolation)
    assert not v.passed and "CPU" in v.reason


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_memory_blowup_is_refused(isolation: str) -> None:
    for prog in ("x = bytearray(4 * 1024 ** 3)\n", "xs = []\nwhile True:\n    xs.append(bytearray(10 ** 7))\n"):
        v = run_tests(prog, TESTS, limits=Limits(timeout=5.0, memory_mb=256), isolation=isolation)
        assert not v.passed and "MemoryError" in v.reason, v


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_file_size_limit(isolation: str) -> None:
    v = run_tests("open('big', 'wb').write(b'x' * (3 << 20))\n", TESTS, limits=Limits(timeout=3.0, file_mb=2),
                  isolation=isolation)
    assert not v.passed and "File too large" in v.reason, v


def test_fork_bomb_is_contained() -> None:
    """At most `processes` at once, and none of them outlives the verdict."""
    if not namespaces_available() and os.getuid() == 0:
        pytest.skip("as root without user namespaces Linux does not enforce RLIMIT_NPROC")
    counted = ("import os, time\nn = 0\nwhile n < 1000:\n    try:\n        pid = os.fork()\n"
               "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
               "    n += 1\n")
    v = run_tests(counted, "assert n >= 1000, n\n", limits=Limits(timeout=5.0, processes=8))
    assert not v.passed and v.reason.startswith("tests.py line 1: AssertionError: "), v
    assert int(v.reason.rsplit(" ", 1)[1]) < 8
    v = run_tests("import os\nwhile True:\n    os.fork()\n", TESTS, limits=Limits(timeout=2.0, processes=8))
    assert not v.passed


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_no_daemon_survives(isolation: str) -> None:
    marker = f"olmoflow-daemon-{uuid.uuid4().hex}"
    prog = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\n"
            "    os._exit(0)\n"
            "time.sleep(0.5)\n")
    v = run_tests(prog, "assert False\n", limits=FAST, isolation=isolation)
    assert not v.passed and v.reason == "tests.py line 1: AssertionError"
    time.sleep(0.2)
    assert processes_with(marker) == []


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_writes_outside_the_box_do_not_reach_the_host(isolation: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    targets = [tmp_path / "escaped.txt", REPO / f"escaped-{uuid.uuid4().hex}.txt", Path.home() / "escaped.txt"]
    prog = "".join(f"try:\n    open({str(t)!r}, 'w').write('x')\nexcept OSError:\n    pass\n" for t in targets)
    v = run_tests(prog, "assert 1\n", limits=FAST, isolation=isolation)
    if isolation == "namespaces":
        assert v.passed  # it ran to the end; whatever it wrote went to its own /tmp or failed
    for t in targets:
        if isolation == "namespaces" or os.access(t.parent, os.W_OK) is False:
            assert not t.exists(), t
        t.unlink(missing_ok=True)  # rlimits as root: file permissions alone cannot stop it (documented)


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("how", ["python", "subprocess"])
def test_no_network(isolation: str, how: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.3)
        port = server.getsockname()[1]
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
        if how == "subprocess":  # a fresh interpreter has no audit hook: the kernel's filter still refuses
            connect = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {connect!r}], check=True)\n"
        v = run_tests(connect, "assert 1\n", limits=FAST, isolation=isolation)
        assert not v.passed, v
        with pytest.raises(TimeoutError):
            server.accept()


def test_secrets_stay_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLMOFLOW_TEST_SECRET", "hunter2")
    for check in ("import os\nassert os.environ.get('OLMOFLOW_TEST_SECRET') == 'hunter2'\n",
                  f"assert open({str(REPO / 'pyproject.toml')!r}).read()\n",
                  f"assert open('/proc/{os.getpid()}/environ', 'rb').read()\n",
                  f"import subprocess\nassert b'hunter2' in subprocess.run(['cat', '/proc/{os.getpid()}/environ'],"
                  " capture_output=True).stdout\n",
                  "import olmoflow\n"):
        v = run_tests("", check, limits=FAST)
        assert not v.passed, (check, v)
    home = run_tests("import os\n", "assert os.environ['HOME'] == os.getcwd()\n"
                     "assert set(os.environ) <= {'HOME', 'LC_CTYPE'}, dict(os.environ)\n"  # LC_CTYPE: PEP 538
                     "assert os.getcwd().endswith('/box')\n", limits=FAST)
    assert home.passed, home.reason


def test_cli_prints_one_json_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "P.py").write_text(GOOD)
    (tmp_path / "T.py").write_text(TESTS)
    (tmp_path / "bad.py").write_text("print('passed')\nimport os\nos._exit(0)\n")
    assert main(["verify-code", "--program", str(tmp_path / "P.py"), "--tests", str(tmp_path / "T.py"),
                 "--timeout", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["passed"] is True
    assert set(json.loads(out[0])) == {"passed", "reason", "seconds"}
    proc = subprocess.run([sys.executable, "-m", "olmoflow.cli", "verify-code", "--program", str(tmp_path / "bad.py"),
                           "--tests", str(tmp_path / "T.py"), "--timeout", "3"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"] is False
