"""Whole-object retries for S3: which failures are worth another try, and how long to wait before it.

botocore retries each HTTP request (its "standard" mode: throttling, 5xx, a connection refused or reset) a few
times within seconds. An object-store outage (a restarted MinIO, a moto server behind a proxy going down, a
network blip of several seconds) outlasts that, and a few failures botocore never sees: a GET body cut after the
response began, an upload whose connection dropped mid-body once botocore's attempts are spent. So each whole
operation (put this object, download that one, list this prefix) is retried here with exponential backoff.

An endpoint this process has never had an answer from gets no such patience: that is a wrong URL or a firewall,
not an outage, and it should fail in seconds (botocore's attempts only), with one line.
"""

from __future__ import annotations

import random
import threading

from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError
from urllib3.exceptions import HTTPError as URLLib3Error

from olmoflow.storage.base import StorageError
from olmoflow.storage.config import StorageConfig, from_env

ENV_PREFIX = "OLMOFLOW_S3_"

_RETRYABLE_CODES = {"ConditionalRequestConflict", "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException",
                    "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed"}
_REACHED: set[str] = set()
"""Endpoints that have answered this process at least once (any HTTP response, an error included)."""
_LOCK = threading.Lock()


class StreamCut(Exception):
    """The body of a GET broke off mid-read: botocore has already returned, so only we can retry it."""


class GaveUp(Exception):
    """A transient failure that outlasted the configured retries; the SDK error is its __cause__."""

    def __init__(self, retries: int, seconds: float):
        super().__init__(f"gave up after {retries} retries over {seconds:.0f} s")
        self.retries, self.seconds = retries, seconds


def from_environment() -> StorageConfig:
    """StorageConfig with each knob set in the environment as OLMOFLOW_S3_{KNOB} (the rest its default); a bad
    value is one line naming the variable."""
    return from_env(StorageConfig, ENV_PREFIX, StorageError)


def reached(endpoint: str) -> None:
    with _LOCK:
        _REACHED.add(endpoint)


def has_reached(endpoint: str) -> bool:
    with _LOCK:
        return endpoint in _REACHED


def answered(e: BaseException) -> bool:
    """True when the failure carries the endpoint's answer (so the endpoint is up and reachable)."""
    return isinstance(e, (ClientError, StreamCut))


def transient(e: BaseException, endpoint: str) -> bool:
    """Whether another try of the whole operation may succeed: the endpoint went away or broke off (and it has
    answered this process before), or it answered with a server-side or throttling error."""
    while e is not None:
        if isinstance(e, ClientError):
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            # 501 Not Implemented is an answer, not an outage (a server without conditional writes says it).
            return (status >= 500 and status != 501) or str(e.response.get("Error", {}).get("Code", "")) \
                in _RETRYABLE_CODES
        if isinstance(e, StreamCut):
            return True
        if isinstance(e, (BotoConnectionError, HTTPClientError, IncompleteReadError, ChecksumError,
                          RetriesExceededError, URLLib3Error)):
            return has_reached(endpoint)
        if isinstance(e, BotoCoreError):
            return False  # credentials, parameters, ...: another try gets the same answer
        e = e.__cause__ or e.__context__
    return False


def delay(cfg: StorageConfig, attempt: int) -> float:
    """Seconds before retry `attempt` (0-based): exponential, capped, with "equal jitter" (a uniform draw in the
    upper half), so writers that failed together spread out, yet the total wait that the retries cover is known:
    at least half of sum(min(backoff_max, backoff_base * 2**n)) over the retries."""
    ceiling = min(cfg.backoff_max, cfg.backoff_base * 2 ** attempt)
    return random.uniform(ceiling / 2, ceiling)
