"""Which of two runs of one stage computes it: the one that holds the artifact's lease (olmoflow/storage/lease.py).
The other waits for the artifact and reuses it, or takes the lease over when its holder dies.

    lease = claim(world, "pretrain", uri, lambda: store.is_complete(uri))
    if lease is None: ...                      # made by the other run meanwhile: reuse it
    with lease: ... GuardedWorkDir(work, "pretrain", lease) ... lease.check("pretrain"); commit
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from olmoflow.contract.workdir import WorkDir
from olmoflow.storage.lease import Holder, Lease, lease_config

log = logging.getLogger("olmoflow")


class Unleased:
    """What a rank other than 0 holds, and every rank with OLMOFLOW_LEASE_TTL=0: nothing to check or release."""

    took_over = None

    def check(self, what: str) -> None:
        pass

    def release(self) -> None:
        pass

    def __enter__(self) -> Unleased:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class GuardedWorkDir(WorkDir):
    """The stage's in-stage checkpoints, each save first checking that this run still holds the stage's lease: a
    run taken over (it stalled past the lease's ttl) stops there with one line (LeaseLost), and never writes into
    the `.work/` folder the run that took over now resumes from."""

    def __init__(self, work: WorkDir, step: str, lease: Lease | Unleased):
        super().__init__(work.local, work.keep, work.remote)
        self._check = lambda: lease.check(step)

    def begin(self, step: int) -> Path:
        self._check()
        return super().begin(step)

    def commit(self, step: int, folder: Path) -> None:
        self._check()
        super().commit(step, folder)


def claim(world, step: str, uri: str, is_complete: Callable[[], bool]) -> Lease | Unleased | None:
    """This run's right to compute the artifact at `uri`: the lease (rank 0 holds it; the other ranks get
    Unleased), or None once another run published the artifact while this one waited for it.

    While another live run holds the lease this one polls the store; a holder that stops renewing (killed, its
    node gone) is taken over after the lease's ttl (at once when it ran on this machine and its process is gone),
    and the stage resumes from its in-stage checkpoints. Every
    rank polls with rank 0, one short broadcast a poll, so a long wait never trips a collective's timeout."""
    ttl = lease_config().ttl
    if not ttl:
        return Unleased()
    lease = Lease(uri, ttl) if world.lead else None
    waiting = _Waiting(step, uri)

    def attempt() -> str:
        holder = lease.try_acquire()
        if holder is None:
            if is_complete():  # published, and the lease let go, just before this run took it
                lease.release()
                return "done"
            if lease.took_over is not None:
                log.warning("stage %s: %s; taking over %s", step, lease.took_over.why(), uri)
            return "held"
        if is_complete():
            return "done"
        waiting.report(holder)
        return "wait"

    while (state := world.first(attempt)) == "wait":
        time.sleep(min(ttl / 4, 5.0))
    if state == "done":
        return None
    return lease if world.lead else Unleased()


class _Waiting:
    """One line when this run starts waiting for a holder (or the holder changes), then one every REPORT_S."""

    REPORT_S = 30.0

    def __init__(self, step: str, uri: str):
        self.step, self.uri = step, uri
        self.holder, self.since, self.next = "", 0.0, 0.0

    def report(self, holder: Holder) -> None:
        now = time.monotonic()
        if holder.id != self.holder:
            self.holder, self.since, self.next = holder.id, self.since or now, now + self.REPORT_S
            log.info("stage %s: waiting for %s computing the same artifact at %s", self.step, holder.id, self.uri)
        elif now >= self.next:
            self.next = now + self.REPORT_S
            log.info("stage %s: still waiting for %s (%.0f s so far; its lease was renewed %.0f s ago and lapses "
                     "after %g s without renewal)", self.step, holder.id, now - self.since, holder.age(), holder.ttl)
