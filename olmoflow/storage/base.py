"""The Storage interface, its errors, and URI helpers shared by the local and S3 backends.

A URI names an object (a file) or a prefix (a folder). Prefixes have folder semantics on both backends:
`list("s3://b/run")` sees `run/a.json`, never `run.json` or `runs/x`.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from olmoflow.storage.config import StorageConfig

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(RuntimeError):
    """A failed storage operation; the message is one line naming the URI (and the endpoint, for S3)."""


class ObjectNotFound(StorageError, FileNotFoundError):
    """The object does not exist."""


class ObjectExists(StorageError, FileExistsError):
    """The object exists and the write asked not to overwrite it."""


def is_remote(uri: str | os.PathLike[str]) -> bool:
    return os.fspath(uri).startswith("s3://")


def scheme(uri: str | os.PathLike[str]) -> str | None:
    """The URI's scheme ("s3", "file", ...), or None for a plain path."""
    m = _SCHEME.match(os.fspath(uri))
    return m.group(1).lower() if m else None


def join(uri: str | os.PathLike[str], *parts: str) -> str:
    """`uri/part/part` with exactly one slash between pieces, for paths and s3:// alike.

    A `..` segment is refused: keys come from manifests and listings, and must not climb out of the store.
    """
    base = os.fspath(uri)
    segments = [s for p in parts for s in p.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise StorageError(f"{base}: refusing to join a '..' segment ({'/'.join(parts)})")
    if not segments:
        return base
    if base.endswith("://"):
        return base + "/".join(segments)
    return base.rstrip("/") + "/" + "/".join(segments)


def relative_parts(key: str, where: str) -> list[str]:
    """A relative key split on '/', refusing segments that would escape the folder it is written under."""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"{where}: refusing key {key!r} (empty, '.' or '..' segment)")
    return parts


class Storage(abc.ABC):
    """Objects addressed by URI. Writes are atomic: a reader sees the old object, the new one, or none."""

    def __init__(self, cfg: StorageConfig | None = None):
        self.cfg = cfg or StorageConfig()

    @abc.abstractmethod
    def exists(self, uri: str) -> bool:
        """True when an object (not a prefix) exists at `uri`."""

    @abc.abstractmethod
    def read_bytes(self, uri: str) -> bytes:
        """The object's bytes; ObjectNotFound when there is none."""

    @abc.abstractmethod
    def write_bytes(self, uri: str, data: bytes, overwrite: bool = True) -> None:
        """Write atomically; with overwrite=False an existing object raises ObjectExists and is left alone."""

    @abc.abstractmethod
    def upload_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        """Copy a local file to `uri` atomically."""

    @abc.abstractmethod
    def download_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        """Copy the object to a local file atomically (temp file + rename)."""

    @abc.abstractmethod
    def list(self, uri_prefix: str) -> list[str]:
        """Relative paths of all objects under the prefix, recursive, sorted; [] when there are none."""

    @abc.abstractmethod
    def delete_prefix(self, uri_prefix: str) -> None:
        """Delete every object under the prefix (nothing to delete is not an error)."""

    def upload_dir(self, local_dir: str | os.PathLike[str], uri_prefix: str) -> list[str]:
        """Upload every file under `local_dir`; returns their relative keys, sorted."""
        root = Path(local_dir)
        if not root.is_dir():
            raise StorageError(f"{root}: no such local folder to upload to {uri_prefix}")
        keys = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        self._each(keys, lambda k: self.upload_file(root / k, join(uri_prefix, k)))
        return keys

    def download_dir(self, uri_prefix: str, local_dir: str | os.PathLike[str]) -> list[str]:
        """Download every object under the prefix into `local_dir`; returns their relative keys, sorted."""
        root = Path(local_dir)
        keys = self.list(uri_prefix)
        for k in keys:
            relative_parts(k, uri_prefix)
        self._each(keys, lambda k: self.download_file(join(uri_prefix, k), root / k))
        return keys

    def _each(self, keys: list[str], fn: Callable[[str], None]) -> None:
        # Many small files are latency-bound, so keep several in flight; the first failure cancels the rest.
        with ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool:
            futures = [pool.submit(fn, k) for k in keys]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
