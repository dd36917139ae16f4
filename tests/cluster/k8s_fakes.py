"""In-memory stand-ins for kubernetes.client's CustomObjectsApi and CoreV1Api: a scripted job, its pods and logs.

The pods are real kubernetes.client models, so the launcher reads them exactly as it reads a server's answer.
"""

from __future__ import annotations

from collections.abc import Callable

from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodList,
    V1PodStatus,
)
from kubernetes.client.exceptions import ApiException


def api_error(status: int, reason: str = "", body: str = "") -> ApiException:
    e = ApiException(status=status, reason=reason)
    e.body = body
    return e


class FakeClock:
    """time.monotonic and time.sleep in one: sleeping advances the clock, instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


class FakeCustom:
    """A job whose status walks through `statuses`, one per get; the last one repeats.

    An entry that is an exception is raised by that get instead.
    """

    def __init__(self, statuses: list, create_error: ApiException | None = None,
                 delete_error: ApiException | None = None):
        self.statuses, self.create_error, self.delete_error = list(statuses), create_error, delete_error
        self.created: list[dict] = []
        self.deleted: list[dict] = []
        self.gets = 0

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        if self.create_error:
            raise self.create_error
        self.created.append(dict(group=group, version=version, namespace=namespace, plural=plural, body=body))
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        status = self.statuses[min(self.gets, len(self.statuses) - 1)]
        self.gets += 1
        if isinstance(status, BaseException):
            raise status
        return {**self.created[-1]["body"], "status": status}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.deleted.append(dict(group=group, version=version, namespace=namespace, plural=plural, name=name,
                                 propagation=body.propagation_policy))
        if self.delete_error:
            raise self.delete_error


class FakeCore:
    """Pods matching one label selector; each pod's log is whatever `logs(pod, clock)` says at read time."""

    def __init__(self, selector: str, pods: dict[str, str], logs: Callable[[str], str],
                 failed: dict[str, tuple[str, int]] | None = None):
        self.selector, self.pods, self.logs = selector, pods, logs
        self.failed = failed or {}
        self.log_calls: list[dict] = []
        self.selectors: list[str] = []

    def list_namespaced_pod(self, namespace, label_selector):
        self.selectors.append(label_selector)
        if label_selector != self.selector:
            return V1PodList(items=[])
        return V1PodList(items=[self._pod(name, phase) for name, phase in self.pods.items()])

    def _pod(self, name: str, phase: str) -> V1Pod:
        statuses = None
        if name in self.failed:
            reason, code = self.failed[name]
            term = V1ContainerStateTerminated(exit_code=code, reason=reason)
            statuses = [V1ContainerStatus(name="main", image="i", image_id="", ready=False, restart_count=0,
                                          state=V1ContainerState(terminated=term))]
        return V1Pod(metadata=V1ObjectMeta(name=name), status=V1PodStatus(phase=phase, container_statuses=statuses))

    def read_namespaced_pod_log(self, name, namespace, **kwargs):
        self.log_calls.append({"pod": name, **kwargs})
        text = self.logs(name)
        if text is None:
            raise api_error(400, "Bad Request", "container is waiting to start")
        return text
