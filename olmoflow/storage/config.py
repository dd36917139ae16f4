"""Knobs of the artifact store's I/O: S3 retries and timeouts, multipart sizes, parallelism, list page size.

An S3 store opened without a StorageConfig (from a URI alone, as the runner, the stages and lineage do) takes each
knob from the environment when set there, OLMOFLOW_S3_{KNOB} (OLMOFLOW_S3_TRANSIENT_RETRIES=10,
OLMOFLOW_S3_BACKOFF_MAX=30; storage/retry.py's from_environment): that is how a pod or a test tunes them all.
The stage lease's knobs (LeaseConfig) come the same way, as OLMOFLOW_LEASE_{KNOB}.
"""

from __future__ import annotations

import os
from typing import Annotated, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from olmoflow._base import Section

S = TypeVar("S", bound=Section)

MiB = 1024 * 1024


class StorageConfig(Section):
    max_attempts: int = Field(3, ge=1)
    """Attempts per S3 request, the first included (botocore "standard" mode: throttling, 5xx, dropped connections)."""
    connect_timeout: float = Field(3.0, gt=0)
    """Seconds to open a connection; with max_attempts it bounds how long a never-reached endpoint takes to fail."""
    read_timeout: float = Field(60.0, gt=0)
    """Seconds to wait for the next bytes of a response."""
    transient_retries: int = Field(6, ge=0)
    """Extra tries of a whole operation (an object put or fetched, a prefix listed) after botocore's attempts fail
    on an outage: the endpoint gone or broken off mid-transfer (once it has answered this process), a 5xx, a
    throttle, a download stream cut mid-body, a write conflict. With the backoff defaults they wait 12-24 s in all."""
    backoff_base: float = Field(0.5, gt=0)
    """Seconds; retry n waits a uniform random time in [c/2, c], c = min(backoff_max, backoff_base * 2**n)."""
    backoff_max: float = Field(8.0, gt=0)
    """Longest wait between two whole-operation retries, in seconds."""
    multipart_threshold: int = Field(64 * MiB, ge=1)
    """Bytes; files at least this large go up and down in parts, in parallel."""
    multipart_chunksize: int = Field(64 * MiB, ge=5 * MiB)
    """Bytes per part (S3's minimum is 5 MiB)."""
    max_concurrency: int = Field(8, ge=1)
    """Threads per multipart transfer, and files in flight in upload_dir / download_dir."""
    list_page_size: int = Field(1000, ge=1, le=1000)
    """Keys per ListObjectsV2 page (S3 never returns more than 1000)."""


class LeaseConfig(Section):
    """The stage lease (storage/lease.py), set in the environment as OLMOFLOW_LEASE_{KNOB} (OLMOFLOW_LEASE_TTL=20)."""

    ttl: float = Field(60.0, ge=0)
    """Seconds a stage's lease lives without renewal: its holder renews it every ttl/4, and a holder that stopped
    renewing (killed, its node gone) is taken over after ttl. 0 turns leases off: two runs of one stage may then
    both compute it (the first commit wins)."""


def from_env(section: type[S], prefix: str, error: type[Exception] = ValueError) -> S:
    """`section` with each knob set in the environment as {prefix}{KNOB} (the rest its default); a bad value is one
    `error` line naming the variable. (The caller names its error: storage.base imports this module.)"""
    values = {}
    for name, field in section.model_fields.items():
        var = prefix + name.upper()
        raw = os.environ.get(var)
        if raw is None:
            continue
        try:
            values[name] = TypeAdapter(Annotated[field.annotation, *field.metadata]).validate_python(raw.strip())
        except ValidationError as e:
            raise error(f"{var}={raw!r}: {e.errors()[0]['msg'].lower()}") from None
    return section(**values)
