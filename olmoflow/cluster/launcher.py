"""Run one TrainJob / PyTorchJob / RayJob to the end: create it, poll its status, stream its pods' logs, delete it.

    Launcher(custom_api, core_api).run(manifest, timeout_s)   # -> the job's final object, or raises JobFailed

Polling (with backoff) rather than a watch keeps the loop simple and survives API-server restarts in a days-long
run. Logs are re-read with timestamps each poll (only the recent tail after the first read) and only lines newer
than the last one printed are emitted, so output is never repeated, even across dropped connections. The job is
deleted in a `finally`: a failed, timed-out or interrupted launch never leaves GPU nodes held.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kubernetes.client import CoreV1Api, CustomObjectsApi, V1DeleteOptions
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError


class JobFailed(RuntimeError):
    """The job ended badly; `reason` is the job's own failure message (plus any failed containers)."""

    def __init__(self, kind: str, name: str, reason: str):
        super().__init__(f"{kind} {name} failed: {reason}")
        self.kind, self.name, self.reason = kind, name, reason


class JobTimeout(JobFailed):
    """The job did not finish in time; it has been deleted."""


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    container: str | None
    """Container whose log is the job's log; None = the pod's only container."""
    pod_label: str
    """Label whose value is the job's name on the pods whose logs we stream."""

    def pod_selector(self, name: str) -> str:
        return f"{self.pod_label}={name}"


KINDS: dict[str, Kind] = {
    # A TrainJob runs as a JobSet of the same name.
    "TrainJob": Kind("trainer.kubeflow.org", "v1alpha1", "trainjobs", "node", "jobset.sigs.k8s.io/jobset-name"),
    "PyTorchJob": Kind("kubeflow.org", "v1", "pytorchjobs", "pytorch", "training.kubeflow.org/job-name"),
    # The driver's output is tailed by `ray job submit` in the submitter Job, which KubeRay names after the RayJob.
    "RayJob": Kind("ray.io", "v1", "rayjobs", None, "batch.kubernetes.io/job-name"),
}

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def job_state(kind: str, obj: dict) -> tuple[str, str]:
    """(running | succeeded | failed, the job's own message) from a job object's status."""
    status = obj.get("status") or {}
    if kind == "RayJob":
        deployment, job = status.get("jobDeploymentStatus", ""), status.get("jobStatus", "")
        message = ": ".join(s for s in (status.get("reason", ""), status.get("message", "")) if s)
        # Older KubeRay marks a failed app as Complete + jobStatus FAILED; newer ones as Failed.
        if deployment == "Failed" or (deployment == "Complete" and job != "SUCCEEDED"):
            return FAILED, message or f"jobStatus {job or 'unknown'}"
        if deployment == "Complete":
            return SUCCEEDED, message
        return RUNNING, deployment or "New"
    done = {"TrainJob": "Complete", "PyTorchJob": "Succeeded"}[kind]
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    for c in conditions:
        text = ": ".join(s for s in (c.get("reason", ""), c.get("message", "")) if s)
        if c.get("type") == "Failed":
            return FAILED, text or "Failed"
        if c.get("type") == done:
            return SUCCEEDED, text
    return RUNNING, conditions[-1]["type"] if conditions else "Pending"


def _ts_key(stamp: str) -> str:
    """RFC3339Nano with the fraction padded to 9 digits, so string order is time order (the kubelet trims zeros)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{frac.ljust(9, '0')}"


class PodLogs:
    """Emits each new log line of the pods matching a selector once, prefixed with the pod name."""

    def __init__(self, core: CoreV1Api, namespace: str, container: str | None, emit: Callable[[str], None],
                 clock: Callable[[], float]):
        self.core, self.namespace, self.container, self.emit, self.clock = core, namespace, container, emit, clock
        self.last: dict[str, str] = {}  # pod -> timestamp key of the last line emitted
        self.read_at: dict[str, float] = {}

    def poll(self, selector: str) -> list:
        """Emit new lines; returns the pods, for failure reasons."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        for pod in pods:
            if pod.status and pod.status.phase in ("Running", "Succeeded", "Failed"):
                self._read(pod.metadata.name)
        return pods

    def _read(self, pod: str) -> None:
        kwargs = {"timestamps": True}
        if self.container:
            kwargs["container"] = self.container
        if pod in self.read_at:  # only re-read the recent tail (plus slack); timestamps drop what we already have
            kwargs["since_seconds"] = math.ceil(self.clock() - self.read_at[pod]) + 10
        try:
            text = self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except (ApiException, HTTPError):
            return  # container not started yet, gone, or the connection dropped: the next poll tries again
        self.read_at[pod] = self.clock()
        for line in text.splitlines():
            stamp, _, message = line.partition(" ")
            key = _ts_key(stamp)
            if key > self.last.get(pod, ""):
                self.last[pod] = key
                self.emit(f"[{pod}] {message}")


def failed_containers(pods: list) -> list[str]:
    """`pod/container: reason (exit N)` for containers that terminated badly: OOMKilled, Error, ..."""
    out = []
    for pod in pods:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            term = (cs.state and cs.state.terminated) or (cs.last_state and cs.last_state.terminated)
            if term and term.exit_code:
                out.append(f"{pod.metadata.name}/{cs.name}: {term.reason or 'Error'} (exit {term.exit_code})")
    return out


class Launcher:
    def __init__(self, custom: CustomObjectsApi, core: CoreV1Api, emit: Callable[[str], None] = print,
                 poll_s: float = 5.0, poll_max_s: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.custom, self.core, self.emit = custom, core, emit
        self.poll_s, self.poll_max_s, self.sleep, self.clock = poll_s, poll_max_s, sleep, clock

    def run(self, manifest: dict, timeout_s: float) -> dict:
        """Create the job, wait for it, stream logs; delete it however this ends. Returns the final object."""
        kind_name, meta = manifest["kind"], manifest["metadata"]
        kind, name, ns = KINDS[kind_name], meta["name"], meta["namespace"]
        where = dict(group=kind.group, version=kind.version, namespace=ns, plural=kind.plural)
        try:
            self.custom.create_namespaced_custom_object(body=manifest, **where)
        except ApiException as e:
            if e.status == 404:
                raise JobFailed(kind_name, name, f"the {kind.plural}.{kind.group}/{kind.version} API is not served "
                                f"in this cluster (is its operator installed?)") from None
            raise JobFailed(kind_name, name, f"create was refused: {e.status} {e.reason}: {_body(e)}") from None
        self.emit(f"created {kind_name} {ns}/{name}")
        try:
            return self._wait(kind_name, kind, name, where, timeout_s)
        finally:
            self._delete(kind_name, name, where)

    def _wait(self, kind_name: str, kind: Kind, name: str, where: dict, timeout_s: float) -> dict:
        logs = PodLogs(self.core, where["namespace"], kind.container, self.emit, self.clock)
        deadline = self.clock() + timeout_s
        interval, last_phase = self.poll_s, None
        while True:
            try:
                obj = self.custom.get_namespaced_custom_object(name=name, **where)
            except ApiException as e:
                if e.status == 404:
                    raise JobFailed(kind_name, name, "the job was deleted by someone else") from None
                if e.status < 500:
                    raise
                obj = None  # API server hiccup: keep polling until the deadline
            except HTTPError:
                obj = None  # connection dropped (API server restart): same
            state, message = job_state(kind_name, obj) if obj else (RUNNING, "unknown")
            pods = self._logs(logs, kind, name)
            if state != RUNNING or message != last_phase:
                self.emit(f"{kind_name} {name}: {state} {message}".rstrip())
                last_phase = message
            if state == SUCCEEDED:
                return obj
            if state == FAILED:
                raise JobFailed(kind_name, name, "; ".join([message, *failed_containers(pods)]))
            if self.clock() >= deadline:
                raise JobTimeout(kind_name, name, f"did not finish within {timeout_s:g} s (last state: {message})")
            self.sleep(min(interval, max(deadline - self.clock(), 0)))
            interval = min(interval * 1.5, self.poll_max_s)

    def _logs(self, logs: PodLogs, kind: Kind, name: str) -> list:
        try:
            return logs.poll(kind.pod_selector(name))
        except (ApiException, HTTPError) as e:  # logs are a convenience: never fail a job over them
            self.emit(f"(could not list pods of {name}: {e})")
            return []

    def _delete(self, kind_name: str, name: str, where: dict) -> None:
        try:
            # Background propagation: return at once, the garbage collector removes pods and services.
            self.custom.delete_namespaced_custom_object(
                name=name, body=V1DeleteOptions(propagation_policy="Background"), **where)
            self.emit(f"deleted {kind_name} {where['namespace']}/{name}")
        except ApiException as e:
            if e.status != 404:
                self.emit(f"WARNING: could not delete {kind_name} {where['namespace']}/{name}: "
                          f"{e.status} {e.reason}; delete it by hand")
        except HTTPError as e:  # never let cleanup mask the error that ended the wait
            self.emit(f"WARNING: could not delete {kind_name} {where['namespace']}/{name}: {e}; delete it by hand")


def _body(e: ApiException) -> str:
    return (e.body or "").strip().replace("\n", " ")[:500]


@contextmanager
def terminate_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while inside, so `finally` blocks run.

    Terminating a KFP run deletes the launcher's pod, which sends SIGTERM; Python's default action would end the
    process on the spot and leave the job holding its GPU nodes until its activeDeadlineSeconds.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_job(manifest: dict, timeout_s: float, poll_s: float = 5.0, poll_max_s: float = 60.0) -> dict:
    """Launch with the pod's own service account (or the local kubeconfig outside a cluster)."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    with terminate_raises():
        return Launcher(CustomObjectsApi(), CoreV1Api(), poll_s=poll_s, poll_max_s=poll_max_s).run(manifest,
                                                                                                   timeout_s)
