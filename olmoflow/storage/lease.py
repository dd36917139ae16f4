"""A lease on an artifact's address, so that of two runs that would compute the same artifact one does and the other
waits for it (olmoflow/flow/runner.py), on local disk and on S3.

    lease = Lease(uri)              # uri: the artifact's address; the lease is the object `{uri}.lease`
    holder = lease.try_acquire()    # None: this process holds it now (a thread renews it); else who does
    lease.check("pretrain")         # LeaseLost once another run has taken it over
    lease.release()

The lease is a small JSON object: holder (host:pid:random), machine, pid, acquired_at, renewed_at, ttl. Acquiring is
one exclusive create: local disk, a hard link (or O_CREAT|O_EXCL) under the name (LocalStorage's overwrite=False);
S3, a PUT with If-None-Match: *. Of two contenders exactly one gets it. The holder renews it every ttl/4; on S3 a
renewal is a PUT with If-Match on the ETag it last wrote, so it never overwrites a takeover. A lease not renewed for
its ttl is stale, and taking it over replaces exactly the stale version: on S3 a PUT with If-Match on its ETag; on
local disk it is renamed aside (atomic: one contender gets it), checked to be those stale bytes (else put back), and
the exclusive create follows. Of several contenders one wins; the rest see a live lease. A holder on this same
machine (host, boot and pid namespace) whose process has ended (SIGKILLed, OOM-killed) is stale at once: a rerun on
the machine of a killed run does not wait out the ttl.

Not guaranteed: staleness is judged from the holder's renewed_at, so hosts' clocks must agree to well within
ttl (skew up to about 3/4 of it is tolerated). A holder that stalls for more than ttl (paused, cut off from the
store) is taken over while still running; it learns at its next renewal (LeaseLost) and the runner stops it at its
next in-stage checkpoint or before it commits. On local disk a renewal is check-then-replace: a takeover racing
that instant is caught by the next renewal of one of the two. OLMOFLOW_LEASE_TTL=0 turns leases off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from olmoflow.storage.base import ObjectExists, ObjectNotFound, StorageError, is_remote
from olmoflow.storage.config import LeaseConfig, from_env
from olmoflow.storage.local import TMP_PREFIX, LocalStorage, path_of

SUFFIX = ".lease"
ENV_PREFIX = "OLMOFLOW_LEASE_"
log = logging.getLogger("olmoflow")


class LeaseLost(StorageError):
    """Another run has taken over this run's lease: this one must stop without committing."""


def lease_config() -> LeaseConfig:
    """LeaseConfig with each knob set in the environment as OLMOFLOW_LEASE_{KNOB}; a bad value is one line naming
    the variable."""
    return from_env(LeaseConfig, ENV_PREFIX, StorageError)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def machine() -> str:
    """This process's host, boot and pid namespace: two processes with the same can see each other's pids."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    boot = _read("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot}/{pidns}" if boot and pidns else ""


def _ended(pid: int) -> bool:
    """True only when this process can tell that `pid` is not running (never ran, or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # EPERM: it runs, as another user
    stat = _read(f"/proc/{pid}/stat")
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as its object says."""

    id: str
    renewed_at: float
    ttl: float
    machine: str = ""
    pid: int = 0

    @classmethod
    def parse(cls, raw: bytes) -> Holder:
        """The holder in a lease object. The store may be written by others: a lease that does not parse, or whose
        times are not finite, reads as long expired, so it can be taken over rather than block forever."""
        try:
            d = json.loads(raw)
            holder, renewed, ttl = str(d["holder"]), float(d["renewed_at"]), float(d["ttl"])
            where, pid = str(d.get("machine", "")), int(d.get("pid", 0))
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
            return cls("an unreadable lease", 0.0, 0.0)
        if not (math.isfinite(renewed) and math.isfinite(ttl) and ttl > 0):
            return cls("an unreadable lease", 0.0, 0.0)
        return cls("".join(c for c in holder[:120] if c.isprintable()), renewed, ttl, where, pid)

    def age(self) -> float:
        """Seconds since the holder last renewed it, by this host's clock."""
        return time.time() - self.renewed_at

    def gone(self) -> bool:
        """The holder ran on this machine (same host, boot and pid namespace) and its process has ended: killed,
        its lease not yet lapsed. No need to wait out the ttl for it."""
        return bool(self.machine) and self.machine == machine() and self.pid > 0 and _ended(self.pid)

    def stale(self) -> bool:
        return self.age() > self.ttl or self.gone()

    def why(self) -> str:
        """Why it is stale, for the log."""
        if self.age() <= self.ttl:
            return f"{self.id} has ended (its process is gone from this machine)"
        return f"{self.id} stopped renewing its lease {self.age():.0f} s ago (ttl {self.ttl:g} s)"


class Lease:
    """This process's claim on `{artifact_uri}.lease`; see the module's docstring."""

    def __init__(self, artifact_uri: str, ttl: float | None = None):
        self.uri = artifact_uri.rstrip("/") + SUFFIX
        self.ttl = lease_config().ttl if ttl is None else ttl
        if not self.ttl > 0:
            raise StorageError(f"{self.uri}: a lease needs a positive ttl, got {self.ttl:g}")
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._machine = machine()
        self.took_over: Holder | None = None
        """The stale holder this process took the lease from, if it did."""
        self._object = _S3Lease(self.uri) if is_remote(self.uri) else _LocalLease(self.uri)
        self._version: bytes | str | None = None
        self._acquired_at = 0.0
        self._renewed = 0.0
        self._lost_to: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._version is not None and self._lost_to is None

    def try_acquire(self) -> Holder | None:
        """None when this process now holds the lease (it was free, or stale and taken over), with a thread renewing
        it; else the live holder."""
        if self.held:
            return None
        holder = stale = None
        for _ in range(8):  # each pass loses only to another contender making progress
            self._acquired_at = time.time()
            version = self._object.create(self._body())
            if version is not None:  # free, or a stale lease another contender removed in this race
                return self._hold(version, stale)
            found = self._object.read()
            if found is None:
                continue  # released in between
            holder = Holder.parse(found[0])
            if not holder.stale():
                return holder
            stale = holder
            version = self._object.take_over(found[1], self._body())
            if version is not None:
                return self._hold(version, stale)
        return holder or Holder("another run", time.time(), self.ttl)

    def check(self, what: str) -> None:
        """LeaseLost, one line naming `what` (the stage), once another run has taken the lease over. When the
        heartbeat is overdue (this process was stopped or starved) the lease is renewed here first, so a run that
        stalled past its ttl learns it now rather than after its next step."""
        if self.held and time.monotonic() - self._renewed > self.ttl / 2:
            self._renew()
        if self._lost_to is not None:
            raise LeaseLost(f"{what}: lost its lease {self.uri} to {self._lost_to} (this run did not renew it "
                            f"within {self.ttl:g} s: it stalled or lost the store); stopping without committing, "
                            f"the other run makes the artifact")

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still this process's (a waiter then takes it at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._version is not None and self._lost_to is None:
                try:
                    self._object.release(self._version)
                except StorageError as e:
                    log.warning("%s; the lease lapses by itself after %g s", e, self.ttl)
            self._version = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _body(self) -> bytes:
        return json.dumps({"holder": self.id, "machine": self._machine, "pid": os.getpid(), "ttl": self.ttl,
                           "acquired_at": self._acquired_at, "renewed_at": time.time()}, sort_keys=True).encode()

    def _hold(self, version: bytes | str, previous: Holder | None) -> None:
        self._version, self.took_over, self._lost_to = version, previous, None
        self._renewed = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.id}", daemon=True)
        self._thread.start()
        return None

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4) and self._renew():
            pass

    def _renew(self) -> bool:
        """Renew the lease; False once it is lost (or released), so the heartbeat ends."""
        with self._lock:
            if self._version is None or self._lost_to is not None:
                return False
            try:
                version = self._object.renew(self._version, self._body())
            except Exception as e:  # an outage: keep trying; the lease lapses only after ttl
                log.warning("lease %s: cannot renew it (%s); trying again in %.1f s", self.uri,
                            " ".join(str(e).split()), self.ttl / 4)
                return True
            if version is None:
                self._lost_to = self._current_holder()
                log.error("lease %s: taken over by %s; this run stops before it commits", self.uri, self._lost_to)
                return False
            self._version, self._renewed = version, time.monotonic()
            return True

    def _current_holder(self) -> str:
        try:
            found = self._object.read()
        except StorageError:
            return "another run"
        return Holder.parse(found[0]).id if found else "another run (the lease was removed)"


class _LocalLease:
    """The lease as a file; versions are its bytes (each body is unique: it holds a random id and a time)."""

    def __init__(self, uri: str):
        self.uri, self.path, self.storage = uri, path_of(uri), LocalStorage()

    def create(self, body: bytes) -> bytes | None:
        try:
            self.storage.write_bytes(self.uri, body, overwrite=False)
        except ObjectExists:
            return None
        return body

    def read(self) -> tuple[bytes, bytes] | None:
        try:
            raw = self.storage.read_bytes(self.uri)
        except ObjectNotFound:
            return None
        return raw, raw

    def renew(self, version: bytes, body: bytes) -> bytes | None:
        found = self.read()
        for _ in range(5):
            # Missing for an instant: a contender has set it aside to check it (_remove_if) and puts it back.
            # Missing for longer: taken over, and released since; not this process's to create again.
            if found is not None:
                break
            time.sleep(0.02)
            found = self.read()
        if found is None or found[1] != version:
            return None
        self.storage.write_bytes(self.uri, body)  # temp file + rename: atomic
        return body

    def take_over(self, version: bytes, body: bytes) -> bytes | None:
        return self.create(body) if self._remove_if(version) else None

    def release(self, version: bytes) -> None:
        self._remove_if(version)

    def _remove_if(self, version: bytes) -> bool:
        """Remove the lease only if it still holds `version`. A rename is atomic, so of several contenders only one
        moves each version aside; one that moved another version (renewed meanwhile) puts it back."""
        aside = self.path.with_name(f"{TMP_PREFIX}{self.path.name}-{secrets.token_hex(4)}")
        with self._errors():
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                return False
            try:
                if aside.read_bytes() == version:
                    return True
                with contextlib.suppress(FileExistsError):  # a newer lease is there: the one set aside lost
                    os.link(aside, self.path)
                return False
            finally:
                aside.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise StorageError(f"{self.uri}: cannot update the lease ({e.strerror or e})") from None


class _S3Lease:
    """The lease as an S3 object; versions are ETags, and every write is conditional on one."""

    def __init__(self, uri: str):
        from olmoflow.storage.s3 import S3Storage, split
        self.uri, self.storage = uri, S3Storage()
        self.bucket, self.key = split(uri)

    def create(self, body: bytes) -> str | None:
        return self._put(body, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        from olmoflow.storage.s3 import _status

        def get() -> tuple[bytes, str] | None:
            try:
                obj = self.storage.client.get_object(Bucket=self.bucket, Key=self.key)
            except ClientError as e:
                if _status(e) == 404:
                    return None
                raise
            with contextlib.closing(obj["Body"]) as body:
                return body.read(), obj["ETag"]

        return self.storage._call(self.uri, get)

    def renew(self, version: str, body: bytes) -> str | None:
        return self._put(body, IfMatch=version)

    take_over = renew

    def release(self, version: str) -> None:
        from botocore.exceptions import ClientError

        from olmoflow.storage.s3 import _precondition_failed, _status

        def delete() -> None:
            try:
                self.storage.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
            except ClientError as e:
                if _precondition_failed(e) or _status(e) == 404:
                    return  # not ours any more, or gone
                if _status(e) != 501:
                    raise
                # A server without conditional deletes: check, then delete (a takeover in between is lost).
                found = self.read()
                if found and found[1] == version:
                    self.storage.client.delete_object(Bucket=self.bucket, Key=self.key)

        self.storage._call(self.uri, delete)

    def _put(self, body: bytes, **condition: str) -> str | None:
        """The new ETag, or None when the condition failed (the object exists, or is another version)."""
        from botocore.exceptions import ClientError

        from olmoflow.storage.s3 import _precondition_failed, _status

        tries = [0]

        def put() -> str | None:
            tries[0] += 1
            try:
                return self.storage.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                                      ContentType="application/json", **condition)["ETag"]
            except ClientError as e:
                if _status(e) == 501:
                    raise StorageError(f"{self.uri}: S3 endpoint {self.storage.endpoint} does not support "
                                       f"conditional writes (If-None-Match / If-Match), which the stage lease "
                                       f"needs; OLMOFLOW_LEASE_TTL=0 runs without leases") from None
                if not (_precondition_failed(e) or _status(e) == 404):
                    raise
            # Refused on a retry: our earlier try may have landed with its answer lost. Our bytes there say so.
            found = self.read() if tries[0] > 1 else None
            return found[1] if found and found[0] == body else None

        return self.storage._call(self.uri, put)
