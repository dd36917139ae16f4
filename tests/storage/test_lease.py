"""The stage lease (olmoflow/storage/lease.py) on local disk and on S3 (a moto server, whose conditional writes
If-None-Match, If-Match on PUT and If-Match on DELETE are the ones the lease uses):

- acquire, see the holder, release (a waiter then gets it at once);
- of many contenders at once exactly one acquires, and of many taking over one stale lease exactly one wins;
- a lease whose holder stopped renewing lapses after its ttl and is taken over; one that is renewed never lapses;
- a holder SIGKILLed on this machine is taken over at once, its ttl not waited out;
- a holder that stalled past its ttl (its heartbeat held up) learns it was taken over: LeaseLost, one line;
- an unreadable lease left in the store is taken over rather than blocking forever; the ttl knob.

Times are short ttls (a fraction of a second to a second); nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from olmoflow.storage import StorageError, join, storage_for
from olmoflow.storage.lease import Lease, LeaseLost, lease_config

TTL = 0.8


@pytest.fixture(params=["local", "s3"])
def artifact(request, tmp_path) -> str:
    """The address of an artifact not yet made, in a local store or on the moto server."""
    root = str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_uri")
    return join(root, "flow", "pretrain", "0123456789abcdef")


def _stall(lease: Lease) -> None:
    """The holder stops renewing, as a killed one does, without releasing."""
    lease._stop.set()
    lease._thread.join()


def _contend(leases: list[Lease], act) -> list:
    """act(lease) for every lease at once (threads released together)."""
    gate, results = threading.Barrier(len(leases)), [None] * len(leases)

    def one(i: int) -> None:
        gate.wait()
        results[i] = act(leases[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(leases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_acquire_then_release(artifact):
    a, b = Lease(artifact, TTL), Lease(artifact, TTL)
    assert a.try_acquire() is None and a.held
    body = json.loads(storage_for(a.uri).read_bytes(a.uri))
    assert a.uri == artifact + ".lease" and body["holder"] == a.id and body["ttl"] == TTL
    holder = b.try_acquire()
    assert holder is not None and holder.id == a.id and not holder.stale()
    a.release()
    assert not storage_for(a.uri).exists(a.uri)
    assert b.try_acquire() is None and b.took_over is None  # free, not taken over
    b.release()


def test_exactly_one_of_many_contenders(artifact):
    leases = [Lease(artifact, TTL) for _ in range(6)]
    got = _contend(leases, lambda lease: lease.try_acquire())
    winners = [lease for lease, holder in zip(leases, got) if holder is None]
    assert len(winners) == 1
    assert {h.id for h in got if h is not None} == {winners[0].id}
    winners[0].release()


def test_heartbeat_keeps_it_alive(artifact):
    a, b = Lease(artifact, TTL), Lease(artifact, TTL)
    assert a.try_acquire() is None
    time.sleep(2.5 * TTL)  # without renewals it would have lapsed
    holder = b.try_acquire()
    assert holder is not None and holder.id == a.id
    a.check("pretrain")  # still a's
    a.release()


def test_stale_lease_is_taken_over_by_exactly_one(artifact):
    dead = Lease(artifact, TTL)
    assert dead.try_acquire() is None
    _stall(dead)
    early = Lease(artifact, TTL).try_acquire()
    assert early is not None and early.id == dead.id  # not before its ttl
    time.sleep(TTL * 1.5)
    leases = [Lease(artifact, TTL) for _ in range(5)]
    got = _contend(leases, lambda lease: lease.try_acquire())
    winners = [lease for lease, holder in zip(leases, got) if holder is None]
    assert len(winners) == 1
    assert {h.id for h in got if h is not None} == {winners[0].id}
    # On S3 the winner's If-Match PUT replaced the stale version itself. On local disk the winner may instead be
    # a contender that found the name free while another set the stale lease aside (whose own create then lost).
    if winners[0].uri.startswith("s3://"):
        assert winners[0].took_over.id == dead.id
    winners[0].release()


HOLDER = """
import sys, time
from olmoflow.storage.lease import Lease
assert Lease(sys.argv[1], 60).try_acquire() is None
print("held", flush=True)
time.sleep(600)
"""


def test_killed_holder_on_this_machine_is_stale_at_once(artifact):
    # A real process holds it (ttl 60 s) and is SIGKILLed: no need to wait out the ttl on the machine it ran on.
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, artifact], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        alive = Lease(artifact, 60).try_acquire()
        assert alive is not None and alive.pid == holder.pid and not alive.stale()
    finally:
        holder.kill()
        holder.wait()
    a = Lease(artifact, 60)
    assert a.try_acquire() is None and a.took_over.pid == holder.pid
    assert a.took_over.why().endswith("has ended (its process is gone from this machine)")
    a.release()


def test_stalled_holder_learns_it_lost(artifact):
    a, b = Lease(artifact, TTL), Lease(artifact, TTL)
    assert a.try_acquire() is None
    with a._lock:  # a's heartbeat is held up past the ttl (a paused process, a store it cannot reach)
        time.sleep(TTL * 1.5)
        assert b.try_acquire() is None and b.took_over.id == a.id
    with pytest.raises(LeaseLost) as lost:
        a.check("pretrain")
    msg = str(lost.value)
    assert msg.startswith("pretrain: lost its lease") and b.id in msg and "\n" not in msg
    a.release()  # releases nothing: the lease is b's
    holder = Lease(artifact, TTL).try_acquire()
    assert holder is not None and holder.id == b.id
    b.release()


def test_unreadable_lease_is_taken_over(artifact):
    uri = artifact + ".lease"
    storage_for(uri).write_bytes(uri, b'{"holder": "x", "renewed_at": Infinity, "ttl": 60}')
    a = Lease(artifact, TTL)
    assert a.try_acquire() is None and a.took_over.id == "an unreadable lease"
    a.release()


def test_ttl_knob(monkeypatch):
    assert lease_config().ttl == 60
    monkeypatch.setenv("OLMOFLOW_LEASE_TTL", "7.5")
    assert lease_config().ttl == 7.5 and Lease("/tmp/x/y").ttl == 7.5
    monkeypatch.setenv("OLMOFLOW_LEASE_TTL", "soon")
    with pytest.raises(StorageError, match=r"^OLMOFLOW_LEASE_TTL='soon': input should be a valid number"):
        lease_config()
