"""Run untrusted model output (a program and the unit tests that judge it) and return a verdict from the harness.

    verdict = run_tests(program_source, tests_source, timeout=5.0)   # Verdict(passed, reason, seconds)

The program and tests.py (asserts against the program's functions, MBPP / HumanEval style; `from program import f`
works too) run in olmoflow/post/sandbox_harness.py, started as `python -I -S` (no site, no PYTHONPATH, no user
site-packages: the standard library only, never olmoflow) with an empty environment (HOME alone is set), in a fresh
temp folder that is both cwd and HOME, in a new session and process group. Verdict: the harness writes a random
per-run token to a pipe only after every statement of tests.py passed; stdout and the exit code are never read.

What enforces what, with `isolation="namespaces"` (the default wherever unprivileged `unshare` works, as here):

kernel
  - new user, pid, net, mount, IPC and UTS namespaces (`unshare`). No network: the net namespace has only a down
    loopback, and a seccomp filter (x86_64, aarch64) refuses socket(), io_uring, ptrace, process_vm_readv/writev,
    unshare, setns, bpf, perf_event_open and the key syscalls.
  - file system: the harness pivots into a new root holding only /usr (with the /bin, /lib, /lib64, /sbin links),
    /etc/ld.so.cache, the interpreter's prefix (all read-only), /dev/{null,zero,random,urandom}, a fresh /proc
    (the sandbox's processes only), a small fresh /tmp and the box (read-write). The repo, the store, the sources,
    homes and the rest of /etc are not in it; the old root is detached, so there is no path back.
  - no capabilities (empty bounding set, no-new-privs): the program cannot mount, unmount, chroot, raise a limit
    or gain privileges through an exec.
  - limits (setrlimit, soft = hard): RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC (counted inside the sandbox's user
    namespace: only its own processes), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE = 0; wall time by the reaper.
  - after the verdict no process survives: the reaper is pid 1 of the pid namespace; it SIGKILLs every other
    process in it (kill(-1)), and when it exits the kernel kills whatever is left, double-forked daemons included.

interpreter (an audit hook in the judge; a program that execs another binary leaves it, the kernel limits stay)
  - socket creation, ctypes, sys.settrace/setprofile, gc.get_objects/referrers/referents, restricted attributes
    (object.__getattr__) and opening /proc files are refused.

Not enforced: memory is limited per process (RLIMIT_AS), not in total (that needs a cgroup), so the worst case is
`memory_mb` times `processes`; CPU likewise. The token lives in the judge's memory while the program runs in the
same interpreter: a program written against this harness that walks frames (sys._getframe stays allowed, the
standard library needs it) could find it; every way a policy ends or lies about its run (printing "passed",
exit(0), os._exit, raising SystemExit, killing itself, writing to stray fds) leaves no token.

With `isolation="rlimits"` (where user namespaces are unavailable) the kernel still enforces the rlimits, seccomp
(so no sockets) and the dropped capabilities, and the reaper is a subreaper (prctl(PR_SET_CHILD_SUBREAPER)) that
kills every descendant it is left; but the file system is the host's (only cwd, HOME, `-I -S` and file
permissions keep the program from the repo and the store: an absolute path it may read, it reads), a process can
signal the host's processes of the same user, and the reaper can be killed by the program (its descendants would
then escape). As root, Linux does not enforce RLIMIT_NPROC at all there. Use it where nothing else is possible.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HARNESS = Path(__file__).with_name("sandbox_harness.py")
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/etc/ld.so.cache")
NOBODY = 65534
SIGNALS = {9: "killed (SIGKILL: a limit, or the program killed itself)", 24: "CPU time limit (SIGXCPU)",
           25: "file size limit (SIGXFSZ)", 11: "segmentation fault"}


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    timeout: float = 10.0
    """Wall-clock seconds for the program and its tests."""
    cpu: int | None = None
    """CPU seconds per process (RLIMIT_CPU); default: the wall time, rounded up, plus one."""
    memory_mb: int = 512
    """Address space per process (RLIMIT_AS)."""
    processes: int = 16
    """Processes and threads the sandbox may hold at once (RLIMIT_NPROC)."""
    file_mb: int = 16
    """Largest file it may write (RLIMIT_FSIZE); also the size of its /tmp."""


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    seconds: float

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "reason": self.reason, "seconds": round(self.seconds, 3)})


@functools.cache
def namespaces_available() -> bool:
    """Whether the namespaced sandbox works here (probed once, by running a passing test in it)."""
    return run_tests("x = 1\n", "assert x == 1\n", limits=Limits(timeout=10.0), isolation="namespaces").passed


def _interpreter() -> tuple[str, list[str]]:
    """The base interpreter (not a venv's wrapper) and the folders it needs read-only inside the sandbox."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    if not any(exe.startswith(d + os.sep) for d in dirs):
        dirs.add(os.path.dirname(exe))
    return exe, sorted(dirs)


def _rmtree(path: str) -> None:
    def retry(func, p, _exc):  # a folder the program made unreadable
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=retry)


def _read_all(fd: int) -> bytes:
    chunks = []
    os.set_blocking(fd, False)
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            if sum(map(len, chunks)) > 1 << 20:
                break
    except BlockingIOError:
        pass
    os.close(fd)
    return b"".join(chunks)


def run_tests(program: str, tests: str, timeout: float | None = None, limits: Limits | None = None,
              isolation: str | None = None) -> Verdict:
    """Run `tests` (Python statements) against `program` in the sandbox; never raises for what they do.

    isolation: "namespaces", "rlimits", or None for the best available here."""
    limits = limits or Limits()
    timeout = limits.timeout if timeout is None else timeout
    isolation = isolation or ("namespaces" if namespaces_available() else "rlimits")
    if isolation not in ("namespaces", "rlimits"):
        raise ValueError(f"sandbox isolation {isolation!r}: namespaces | rlimits")
    start = time.monotonic()
    base = tempfile.mkdtemp(prefix="olmoflow-sandbox-")
    fds: list[int] = []
    try:
        box, root = os.path.join(base, "box"), os.path.join(base, "root")
        os.mkdir(box)
        os.mkdir(root)
        Path(box, "program.py").write_text(program, encoding="utf-8")
        Path(box, "tests.py").write_text(tests, encoding="utf-8")
        if isolation == "namespaces" and os.geteuid() == 0:  # the sandbox runs as nobody: let it reach the box
            os.chmod(base, 0o711)
            for path in (box, os.path.join(box, "program.py"), os.path.join(box, "tests.py")):
                os.chown(path, NOBODY, NOBODY)
        shutil.copyfile(HARNESS, os.path.join(base, "harness.py"))
        token = secrets.token_hex(16)
        token_r, token_w = os.pipe()
        verdict_r, verdict_w = os.pipe()
        status_r, status_w = os.pipe()
        fds += [token_r, token_w, verdict_r, verdict_w, status_r, status_w]
        os.write(token_w, token.encode())
        exe, prefixes = _interpreter()
        opts = {"token_fd": token_r, "verdict_fd": verdict_w, "status_fd": status_w, "box": box, "root": root,
                "namespaces": isolation == "namespaces", "ro_binds": [*SYSTEM_DIRS, *prefixes],
                "timeout": timeout, "cpu": limits.cpu or int(timeout) + 1, "memory": limits.memory_mb,
                "nproc": limits.processes, "fsize": limits.file_mb, "host_root": os.geteuid() == 0}
        cmd = [exe, "-I", "-S", "-B", os.path.join(base, "harness.py"), json.dumps(opts)]
        with open(os.path.join(base, "stderr.log"), "wb") as err:
            proc = subprocess.Popen(cmd, env={"HOME": box}, cwd=box, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, pass_fds=(token_r, verdict_w, status_w),
                                    start_new_session=True)
        for fd in (token_r, token_w, verdict_w, status_w):
            os.close(fd)
            fds.remove(fd)
        try:
            proc.wait(timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the sandbox's pid 1 is in this group; its namespace dies with it
            proc.wait()
        verdict, status = _read_all(verdict_r), _read_all(status_r)
        fds.clear()
        seconds = time.monotonic() - start
        stderr = Path(base, "stderr.log").read_bytes()[-2000:].decode("utf-8", "replace")
        return _decide(token, verdict, status, proc.returncode, stderr, timeout, seconds)
    finally:
        for fd in fds:
            os.close(fd)
        _rmtree(base)


def _decide(token: str, verdict: bytes, status: bytes, returncode: int, stderr: str, timeout: float,
            seconds: float) -> Verdict:
    lines = verdict.decode("utf-8", "replace").splitlines()
    if lines == [f"{token} passed"]:
        return Verdict(True, "all tests passed", seconds)
    try:
        report = json.loads(status)
    except ValueError:
        tail = stderr.strip().splitlines()[-1:] or [f"exit code {returncode}"]
        return Verdict(False, f"sandbox error: the harness gave no report ({tail[0]})", seconds)
    if f"{token} passed" in lines:
        return Verdict(False, "verdict channel tampered with: the program wrote to it", seconds)
    if report["timeout"]:
        return Verdict(False, f"timeout: no verdict within {timeout:g} s of wall time", seconds)
    fails = [ln[5:] for ln in lines if ln.startswith("fail ")]
    if fails:
        return Verdict(False, fails[-1], seconds)
    if report.get("signal"):
        return Verdict(False, SIGNALS.get(report["signal"], f"killed by signal {report['signal']}"), seconds)
    return Verdict(False, f"no verdict: the program ended the run before the tests finished (exit code "
                          f"{report.get('exit')})", seconds)
