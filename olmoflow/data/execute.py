"""Where curate's per-file and per-document work runs: in the stage's own process, or as Ray Data tasks on a local
Ray (started for the stage with the configured CPUs, stopped after it) or on a cluster ($RAY_ADDRESS, as a KubeRay
cluster or RayJob sets it).

    with open_executor(cfg.ray, log) as ex:
        hashes = ex.map(hash_texts, texts, batch_size=256)     # one result per item, in input order

Both executors cut the items into batches, call the same function on each batch, and hand the results back in
input order, so a stage's output cannot depend on which one ran. Functions must be picklable: module-level
functions, or functools.partial over them with plain data (config, an eval index, a tokenizer's JSON); Ray ships
them to worker processes. Each batch travels pickled as one Ray Data row tagged with its position, and the driver
sorts on that tag (Ray Data does not keep order by default). A batch function's exception comes back as itself,
the first failing batch's as in the plain loop, never wrapped in Ray's task error.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import logging
import math
import os
import pickle
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from olmoflow.data.config import RayConfig

T = TypeVar("T")
R = TypeVar("R")

BATCHES_PER_CPU = 4
"""Without a batch size, items are cut into about this many batches per CPU: few enough that per-task overhead
stays small, enough that one slow batch (a big file) does not leave the other CPUs idle."""
PROBE_TIMEOUT_S = 5.0
"""A cluster address must accept a TCP connection within this long: Ray itself retries a dead address for minutes."""
WORKER_TIMEOUT_S = 300.0
"""A cluster's first task must finish within this long (time for an autoscaled worker pod to come up)."""


class ExecutorError(RuntimeError):
    """Ray could not be started or reached; the message is one line naming the address."""


class Executor(abc.ABC):
    kind: str
    """"in-process" or "ray"."""
    cpus: int
    """Batches that can run at once."""
    where: str
    """"this process", "local", or the cluster address."""

    def __init__(self, log: logging.Logger):
        self.log = log

    def map_batches(self, fn: Callable[[list[T]], R], items: Sequence[T], batch_size: int | None = None,
                    desc: str = "") -> list[R]:
        """fn over consecutive batches of `items`: one result per batch, in batch order. batch_size None = about
        BATCHES_PER_CPU batches per CPU (for few, uneven items such as files)."""
        start = time.time()
        size = batch_size or max(1, math.ceil(len(items) / (BATCHES_PER_CPU * self.cpus)))
        batches = [list(items[i:i + size]) for i in range(0, len(items), size)]
        out = self._run(fn, batches) if batches else []
        if desc:
            self.log.info("curate: %s: %d items in %d batches on %s (%d CPUs), %.1fs", desc, len(items),
                          len(batches), self.kind, self.cpus, time.time() - start)
        return out

    def map(self, fn: Callable[[list[T]], list[R]], items: Sequence[T], batch_size: int | None = None,
            desc: str = "") -> list[R]:
        """fn returns one result per item of its batch; the results of all items, in input order."""
        parts = self.map_batches(fn, items, batch_size, desc)
        out = [r for part in parts for r in part]
        if len(out) != len(items):
            raise ExecutorError(f"curate: {_name(fn)} returned {len(out)} results for {len(items)} items")
        return out

    def describe(self) -> dict[str, Any]:
        """What ran, for stats.json (never part of the artifact's content)."""
        return {"kind": self.kind, "cpus": self.cpus, "where": self.where}

    @abc.abstractmethod
    def _run(self, fn: Callable[[list[T]], R], batches: list[list[T]]) -> list[R]:
        """fn of each batch, in order."""


class InProcess(Executor):
    kind, cpus, where = "in-process", 1, "this process"

    def _run(self, fn: Callable[[list[T]], R], batches: list[list[T]]) -> list[R]:
        return [fn(b) for b in batches]


class RayData(Executor):
    kind = "ray"

    def __init__(self, log: logging.Logger, cpus: int, where: str):
        super().__init__(log)
        self.cpus, self.where = cpus, where

    def _run(self, fn: Callable[[list[T]], R], batches: list[list[T]]) -> list[R]:
        import ray
        import ray.data

        # The function goes into the object store once (a tokenizer or an eval index can be megabytes) rather
        # than into every task's arguments.
        fn_ref = ray.put(fn)
        rows = [{"pos": k, "blob": pickle.dumps(b, protocol=5)} for k, b in enumerate(batches)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # a block per batch: all can run at once
        done = ds.map_batches(functools.partial(_apply, fn_ref), batch_size=None, batch_format="pyarrow",
                              zero_copy_batch=True).take_all()
        results: list[Any] = [None] * len(batches)
        for row in done:
            results[row["pos"]] = pickle.loads(row["blob"])
        for ok, value in results:
            if not ok:
                raise value
        return [value for _, value in results]


_FUNCTIONS: dict[Any, Callable] = {}
"""Functions a Ray worker has fetched from the object store, by reference: one fetch per worker and map."""


def _apply(fn_ref: Any, table: Any) -> Any:
    """Ray Data batch function: run fn on each pickled batch; an exception is returned as data, so the driver can
    raise it as itself."""
    import pyarrow as pa
    import ray

    key = fn_ref.hex()
    out = []
    try:
        if key not in _FUNCTIONS:
            _FUNCTIONS.clear()  # the previous map's function is done with
            _FUNCTIONS[key] = ray.get(fn_ref)  # fails here when the function's module is not on this worker
        fn = _FUNCTIONS[key]
    except Exception as e:  # noqa: BLE001 - re-raised on the driver
        failed = pickle.dumps((False, _portable(e)), protocol=5)
        return pa.table({"pos": table.column("pos"), "blob": pa.array([failed] * table.num_rows, pa.large_binary())})
    for blob in table.column("blob").to_pylist():
        try:
            out.append(pickle.dumps((True, fn(pickle.loads(blob))), protocol=5))
        except Exception as e:  # noqa: BLE001 - re-raised on the driver
            out.append(pickle.dumps((False, _portable(e)), protocol=5))
    return pa.table({"pos": table.column("pos"), "blob": pa.array(out, pa.large_binary())})


def _portable(e: Exception) -> Exception:
    """The exception as it can travel to the driver, with the worker's traceback attached as a note."""
    import ray.exceptions

    if isinstance(e, ray.exceptions.RaySystemError) and isinstance(e.client_exc, Exception):
        e = e.client_exc  # ray.get's wrapper around e.g. the ModuleNotFoundError of a function it cannot load
    e.add_note("raised in a Ray worker:\n" + "".join(traceback.format_tb(e.__traceback__)).rstrip())
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - an exception type that cannot be pickled: keep its text
        return RuntimeError(f"{type(e).__name__}: {e}")


def _name(fn: Callable) -> str:
    inner = fn.func if isinstance(fn, functools.partial) else fn
    return getattr(inner, "__qualname__", type(inner).__name__)


# ---- starting and stopping Ray ---------------------------------------------------------------------------

@contextlib.contextmanager
def open_executor(cfg: RayConfig, log: logging.Logger) -> Iterator[Executor]:
    """The executor cfg asks for; a Ray this opens (a local instance, or a connection) is closed on exit."""
    if not cfg.enabled:
        yield InProcess(log)
        return
    import ray

    _quiet_ray()
    started = not ray.is_initialized()  # a Ray someone else opened in this process stays theirs
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    t0 = time.time()
    if started:
        _start(cfg, address)
    try:
        if address:
            _check_workers(address)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        where = address or ("local" if started else "this process's Ray")
        log.info("curate: Ray %s with %d CPUs (%s, %.1fs)", "started" if started and not address else "connected",
                 cpus, where, time.time() - t0)
        yield RayData(log, cpus, where)
    finally:
        if started:
            ray.shutdown()


def _start(cfg: RayConfig, address: str | None) -> None:
    import ray

    logs = {"logging_level": logging.WARNING, "log_to_driver": False}  # workers' output stays in Ray's log files
    if address:
        _probe(address)
        env = {"py_modules": [str(Path(__file__).resolve().parents[1])]} if cfg.ship_code else None
        try:
            ray.init(address=address, runtime_env=env, **logs)
        except Exception as e:  # noqa: BLE001 - any failure to connect is one line naming the address
            raise ExecutorError(f"curate.ray: cannot connect to the Ray cluster at {address} "
                                f"({type(e).__name__}: {_first_line(e)})") from None
        return
    # A local Ray is ours alone: its token-auth warning is noise (a user's own setting still wins).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(address="local", num_cpus=cfg.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=cfg.object_store_mb << 20, **logs)
    except Exception as e:  # noqa: BLE001
        raise ExecutorError(f"curate.ray: cannot start a local Ray with {cfg.num_cpus or 'all'} CPUs "
                            f"({type(e).__name__}: {_first_line(e)})") from None


def code_digest() -> str:
    """A digest of olmoflow's Python files: the driver's and the workers' must agree, or the artifact could
    depend on where it was made."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _check_workers(address: str) -> None:
    """One task on the cluster: its workers can load olmoflow, and it is this driver's olmoflow. (Ray Data
    retries a task whose function cannot be loaded forever, so a missing package would hang the stage.)"""
    import ray

    fix = "set curate.ray.ship_code: true, or run the curate image of this version"
    try:
        theirs = ray.get(ray.remote(num_cpus=0, max_retries=0)(code_digest).remote(), timeout=WORKER_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ExecutorError(f"curate.ray: no worker of the Ray cluster at {address} ran a task within "
                            f"{WORKER_TIMEOUT_S:g} s") from None
    except ray.exceptions.RayError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise ExecutorError(f"curate.ray: the workers of the Ray cluster at {address} cannot load olmoflow "
                            f"({lines[-1] if lines else type(e).__name__}); {fix}") from None
    ours = code_digest()
    if theirs != ours:
        raise ExecutorError(f"curate.ray: the workers of the Ray cluster at {address} run other olmoflow code "
                            f"(digest {theirs}, this driver {ours}); {fix}")


def _probe(address: str) -> None:
    """Fail in seconds, naming the address, when nothing listens there."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise ExecutorError(f"curate.ray: cannot reach the Ray cluster at {address} "
                            f"({e.strerror or type(e).__name__}; is RAY_ADDRESS / curate.ray.address right?)") from None


def _quiet_ray() -> None:
    """Ray and Ray Data talk through Python logging: keep warnings, drop the per-dataset INFO lines and progress
    bars (kfp.local's output stays readable; the executor logs one line per map instead)."""
    import ray.data

    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Disabling the bars warns once that they are disabled.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
