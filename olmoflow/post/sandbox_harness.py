"""The sandbox's inside: copied next to the program and run as `python -I -S harness.py OPTS` (standard library only;
it never imports olmoflow, and the program cannot either). olmoflow/post/sandbox.py starts it and reads the verdict.

Two processes. The *reaper* (pid 1 of fresh user, pid, net, mount, IPC and UTS namespaces when `unshare` works;
else a child subreaper, prctl(PR_SET_CHILD_SUBREAPER)) builds the file system the program sees, forks the *judge*,
enforces the wall time, then kills every process left (kill(-1) inside the pid namespace; else every descendant,
orphans included, until none is left) and reports how the judge ended on a pipe the judge never holds.
The *judge* reads the run's random token, closes that pipe, limits itself, runs program.py then tests.py's
statements one by one in one namespace, and writes the token to the verdict pipe only after the last statement
passed. The program's stdout and exit code mean nothing: exiting early, in any way, leaves no token.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import json
import os
import platform
import resource
import signal
import sys
import time

PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 4, 24, 22, 38
PR_SET_CHILD_SUBREAPER, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_PDEATHSIG = 36, 47, 4, 1
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_PRIVATE = 1 << 18
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (
    0x20000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
NOBODY = 65534
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
ST_FLAGS = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC}  # statvfs f_flag bit -> mount flag
MNT_DETACH = 2
# Syscalls the judge may not make (EPERM): sockets (no network, no unix sockets either), io_uring (which opens
# sockets without socket()), reading or tracing other processes' memory, new namespaces, BPF, perf, keyrings.
# clone3 answers ENOSYS so libc falls back to clone.
SYSCALLS = {
    "x86_64": (0xC000003E, {41: 1, 425: 1, 426: 1, 427: 1, 101: 1, 310: 1, 311: 1, 272: 1, 308: 1, 321: 1, 298: 1,
                            248: 1, 249: 1, 250: 1, 435: 38}),
    "aarch64": (0xC00000B7, {198: 1, 425: 1, 426: 1, 427: 1, 117: 1, 270: 1, 271: 1, 97: 1, 268: 1, 280: 1, 241: 1,
                             217: 1, 218: 1, 219: 1, 435: 38}),
}
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# Interpreter-level denials (the audit hook): sockets, frame and object introspection that could reach the
# judge's token, tracing, ctypes, and this process's /proc files.
DENIED_EVENTS = ("socket.", "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
                 "gc.get_objects", "gc.get_referrers", "gc.get_referents", "object.__getattr__", "ctypes.")

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def prctl(option: int, arg: int = 0) -> int:
    return libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0))


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    check(libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {dst}")


def bind(path: str, root: str, links: dict[str, str | None], writable: bool = False) -> None:
    """`path` at the same place under `root`, read-only unless `writable` (keeping the flags the kernel locks);
    `links` holds the target of each path that is a symbolic link."""
    dst = root + path
    if links.get(path) is not None:  # a link (/bin -> usr/bin): the same link
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.symlink(links[path], dst)
        return
    src = path
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "w").close()
    mount(src, dst, None, MS_BIND | MS_REC)
    kept = sum(flag for bit, flag in ST_FLAGS.items() if os.statvfs(src).f_flag & bit)
    mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_NOSUID | kept | (0 if writable else MS_RDONLY))


def enter_namespaces(opts: dict) -> dict[str, str | None]:
    """Become pid 1 of new user, pid, net, mount, IPC and UTS namespaces. The calling process forks a child that
    unshares them; the caller writes the child's uid and gid maps (as root: uid 0 -> 0 and 1 -> nobody, so the
    judge can leave uid 0, which Linux never limits by RLIMIT_NPROC; else only its own uid -> 0), and each parent
    waits for its child and exits with its status. Returns what to bind: a folder or file's path, a link's target."""
    fds: dict[str, str | None] = {}
    for p in [*opts["ro_binds"], *DEVICES]:
        if os.path.islink(p):
            fds[p] = os.readlink(p)
        elif os.path.exists(p):
            fds[p] = None
    ready_r, ready_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    child = os.fork()
    if child:
        os.close(ready_w)
        os.close(mapped_r)
        if os.read(ready_r, 1) == b"1":
            uid, gid = os.getuid(), os.getgid()
            maps = ("0 0 1\n1 65534 1", "0 0 1\n1 65534 1") if uid == 0 else (f"0 {uid} 1", f"0 {gid} 1")
            if uid != 0:
                with open(f"/proc/{child}/setgroups", "w") as f:
                    f.write("deny")
            for name, text in zip(("uid_map", "gid_map"), maps):
                with open(f"/proc/{child}/{name}", "w") as f:
                    f.write(text)
            os.write(mapped_w, b"1")
        wait_and_exit(child, opts)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.close(ready_r)
    os.close(mapped_w)
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID
    if libc.unshare(flags) < 0:
        err = ctypes.get_errno()
        os.write(ready_w, b"0")
        raise OSError(err, f"unshare: {os.strerror(err)}")
    os.write(ready_w, b"1")
    if os.read(mapped_r, 1) != b"1":
        raise OSError("no uid map")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    pid = os.fork()
    if pid:
        wait_and_exit(pid, opts)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    return fds


def wait_and_exit(pid: int, opts: dict) -> None:
    for fd in (opts["token_fd"], opts["verdict_fd"], opts["status_fd"]):
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def build_root(opts: dict, fds: dict[str, str | None]) -> None:
    """Pivot into a new root holding only the system's programs and libraries, the interpreter, a few devices, a
    fresh /proc and /tmp, and the box; the host's other files (the repo, the store, homes) are not in it."""
    root = opts["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    for path in opts["ro_binds"]:
        if path in fds and not os.path.lexists(root + path):
            bind(path, root, fds)
    for dev in DEVICES:
        if dev in fds:
            bind(dev, root, fds, writable=True)
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + "/tmp", exist_ok=True)
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={opts['fsize']}m,mode=1777")
    bind(opts["box"], root, fds, writable=True)
    os.chdir(root)
    check(libc.syscall(PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(opts["box"])


def leave_root(opts: dict) -> None:
    """Inside the namespaces of a root host, become uid 1 there (nobody outside), as reaper and judge both."""
    if opts["namespaces"] and opts["host_root"]:
        os.setgroups([])
        os.setresgid(1, 1, 1)
        os.setresuid(1, 1, 1)


def drop_privileges() -> None:
    """No capabilities, now or after any exec (empty bounding set), and no new privileges through setuid files."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    for cap in range(64):
        if prctl(PR_CAPBSET_DROP, cap) < 0 and ctypes.get_errno() == 22:  # EINVAL: past the last capability
            break
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    libc.capset(header, (ctypes.c_uint32 * 6)())


def seccomp() -> bool:
    """Install the syscall filter; False on an architecture it does not know."""
    if platform.machine() not in SYSCALLS:
        return False
    arch, denied = SYSCALLS[platform.machine()]

    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, errno = 0x7FFF0000, 0x00050000
    n = len(denied)
    eperm = 4 + 2 * n + 1  # the last instruction: another architecture, or x32 calls, get EPERM

    def jump(pos: int, target: int) -> int:
        return target - pos - 1

    prog_ = [(ld, 0, 0, 4), (jeq, 0, jump(1, eperm), arch), (ld, 0, 0, 0), (jge, jump(3, eperm), 0, 0x40000000)]
    prog_ += [(jeq, jump(4 + i, 4 + n + 1 + i), 0, nr) for i, nr in enumerate(denied)]
    prog_ += [(ret, 0, 0, allow)] + [(ret, 0, 0, errno | err) for err in denied.values()] + [(ret, 0, 0, errno | 1)]
    fixed = [Insn(*insn) for insn in prog_]
    insns = (Insn * len(fixed))(*fixed)
    prog = Prog(len(fixed), insns)
    check(libc.prctl(PR_SET_SECCOMP, 2, ctypes.byref(prog), 0, 0), "seccomp")
    return True


def audit(event: str, args: tuple) -> None:
    if event.startswith(DENIED_EVENTS):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and args and isinstance(args[0], str | bytes):
        path = os.fsdecode(args[0])
        if path.startswith("/proc/") and not path.startswith(("/proc/cpuinfo", "/proc/meminfo")):
            raise PermissionError(f"sandbox: opening {path} is not allowed")


def set_limits(opts: dict) -> None:
    mb = 1 << 20
    for lim, value in ((resource.RLIMIT_CPU, (opts["cpu"], opts["cpu"] + 1)),
                       (resource.RLIMIT_AS, (opts["memory"] * mb,) * 2),
                       (resource.RLIMIT_NPROC, (opts["nproc"],) * 2),
                       (resource.RLIMIT_FSIZE, (opts["fsize"] * mb,) * 2),
                       (resource.RLIMIT_NOFILE, (64, 64)),
                       (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(lim, value)


def describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - the program's exception may fail to print
        text = "?"
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def judge(opts: dict) -> None:
    """Run program.py, then tests.py; the token reaches the verdict pipe only when every statement passed."""
    _exit, _write = os._exit, os.write
    verdict = opts["verdict_fd"]
    token = os.read(opts["token_fd"], 256)
    os.close(opts["token_fd"])
    passed = token + b" passed\n"
    del token

    def fail(why: str) -> None:
        _write(verdict, b"fail " + why.encode("utf-8", "replace")[:1000] + b"\n")
        _exit(1)

    with open("program.py", encoding="utf-8", errors="replace") as f:
        program = f.read()
    with open("tests.py", encoding="utf-8", errors="replace") as f:
        tests = f.read()
    try:
        code = compile(program, "program.py", "exec")
    except SyntaxError as e:
        fail(f"program.py does not compile: {describe(e)}")
    try:
        stmts = [(s.lineno, compile(ast.Module([s], []), "tests.py", "exec")) for s in ast.parse(tests).body]
    except SyntaxError as e:
        fail(f"tests.py does not compile: {describe(e)}")
    if not stmts:
        fail("tests.py holds no statement")
    os.setpgid(0, 0)
    leave_root(opts)
    set_limits(opts)
    prctl(PR_SET_DUMPABLE, 0)
    drop_privileges()
    seccomp()
    sys.addaudithook(audit)
    module = type(sys)("program")
    module.__dict__["__builtins__"] = builtins
    sys.modules["program"] = module
    try:
        exec(code, module.__dict__)
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are the program's too
        fail(f"program.py raised {describe(e)}")
    for lineno, stmt in stmts:
        try:
            exec(stmt, module.__dict__)
        except BaseException as e:  # noqa: BLE001
            fail(f"tests.py line {lineno}: {describe(e)}")
    _write(verdict, passed)
    _exit(0)


def children() -> list[int]:
    """This process's children, from /proc (orphans of its descendants are re-parented here)."""
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == me:
                out.append(int(name))
    return out


def reap() -> list[tuple[int, int]]:
    done = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))


def kill_all(judge_pid: int) -> None:
    """SIGKILL every process the judge started, until this process has no child left."""
    for _ in range(10000):
        if os.getpid() == 1:  # pid 1 of the sandbox's pid namespace: -1 is everyone in it but us
            try:
                os.kill(-1, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        else:
            for target in [judge_pid, *children()]:
                try:
                    os.killpg(target, signal.SIGKILL) if target == judge_pid else os.kill(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        reap()
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.001)
        except ChildProcessError:
            return


def main() -> None:
    opts = json.loads(sys.argv[1])
    status_fd = opts["status_fd"]
    if opts["namespaces"]:
        build_root(opts, enter_namespaces(opts))
    else:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        os.chdir(opts["box"])
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(status_fd)
            judge(opts)
        finally:
            os._exit(70)
    os.close(opts["token_fd"])
    os.close(opts["verdict_fd"])
    leave_root(opts)
    prctl(PR_SET_DUMPABLE, 0)
    drop_privileges()
    deadline, status, timed_out = start + opts["timeout"], None, False
    while status is None:
        for p, s in reap():
            if p == pid:
                status = s
        if status is None:
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.002)
    kill_all(pid)
    report = {"timeout": timed_out, "seconds": round(time.monotonic() - start, 3)}
    if status is not None:
        report.update(exit=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                      signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
    os.write(status_fd, json.dumps(report).encode())
    os._exit(0)


if __name__ == "__main__":
    main()
