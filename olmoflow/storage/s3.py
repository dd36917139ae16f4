"""Storage on S3 and S3-compatible servers (MinIO, Ceph, moto), through boto3.

Endpoint, credentials and region come from the usual AWS environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...):
boto3 reads them itself. One client per process is made on first use and shared by all threads.

Retries come in two layers. botocore's "standard" mode retries each request (throttling, 5xx, dropped
connections) up to `max_attempts`, within seconds. Around that, each whole operation (an object put or fetched, a
prefix listed or deleted) is retried with exponential backoff when it failed on an outage that botocore's attempts
did not outlast, or in a way the SDK cannot see (a GET body cut mid-stream, a write conflict): retry.py says which,
and StorageConfig (or OLMOFLOW_S3_* in the environment) how often. An endpoint that never answered this process
fails in seconds (a wrong URL is not an outage). Giving up is one line naming the object, the endpoint, the cause
and the retries spent.

upload_dir checks, with one listing, that every file is in the store with its local size before it returns, so the
artifact store's manifest (written after it) never describes a missing or truncated object. Reads are checked
against the manifest's sha256 by the artifact store (olmoflow/artifacts.py).

An S3 PUT is atomic (a multipart upload too: the object appears at CompleteMultipartUpload), so writes need no
temp objects. overwrite=False is one conditional PUT (If-None-Match: *, so at most 5 GB: it is meant for
manifests and markers); a server that answers 501 to it gets check-then-put instead, which a racing writer
can slip through.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from s3transfer.exceptions import RetriesExceededError
from urllib3.exceptions import HTTPError as URLLib3Error

from olmoflow.storage.base import ObjectExists, ObjectNotFound, Storage, StorageError, join
from olmoflow.storage.config import StorageConfig
from olmoflow.storage.local import TMP_PREFIX
from olmoflow.storage.retry import GaveUp, StreamCut, answered, delay, from_environment, reached, transient

T = TypeVar("T")

_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE")
_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()
_NO_CONDITIONAL_PUT: set[str] = set()
"""Endpoints that answered 501 to If-None-Match; they get check-then-put."""
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
log = logging.getLogger("olmoflow")


def client(cfg: StorageConfig) -> Any:
    """The process's S3 client for these settings, made on first use."""
    # The pid keeps a forked child off its parent's sockets; the AWS_* values let a test (or a tool) that
    # changes the environment get a client that follows it.
    key = (os.getpid(), cfg.max_attempts, cfg.connect_timeout, cfg.read_timeout, cfg.max_concurrency,
           tuple(os.environ.get(k) for k in _ENV))
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            config = Config(retries={"mode": "standard", "max_attempts": cfg.max_attempts},
                            connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout,
                            # upload_dir runs max_concurrency files, each with max_concurrency part threads.
                            max_pool_connections=max(10, cfg.max_concurrency ** 2))
            _CLIENTS[key] = boto3.session.Session().client("s3", config=config)
        return _CLIENTS[key]


def split(uri: str) -> tuple[str, str]:
    """("bucket", "key/in/bucket") of an s3:// URI; the key may be empty."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise StorageError(f"{uri}: not an s3://bucket/key URI")
    return bucket, key


def _object(uri: str) -> tuple[str, str]:
    bucket, key = split(uri)
    if not key or key.endswith("/"):
        raise StorageError(f"{uri}: names a bucket or a folder, not an object")
    return bucket, key


class S3Storage(Storage):
    def __init__(self, cfg: StorageConfig | None = None):
        # No settings given (a store opened from its URI alone): OLMOFLOW_S3_* from the environment.
        super().__init__(cfg or from_environment())

    @property
    def client(self) -> Any:
        return client(self.cfg)

    @property
    def endpoint(self) -> str:
        return self.client.meta.endpoint_url

    @property
    def _transfer(self) -> TransferConfig:
        return TransferConfig(multipart_threshold=self.cfg.multipart_threshold,
                              multipart_chunksize=self.cfg.multipart_chunksize,
                              max_concurrency=self.cfg.max_concurrency, use_threads=True)

    def exists(self, uri: str) -> bool:
        bucket, key = _object(uri)
        try:
            self._call(uri, lambda: self.client.head_object(Bucket=bucket, Key=key))
            return True
        except ObjectNotFound:
            return False

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = _object(uri)

        def get() -> bytes:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                return body.read()
            except (BotoCoreError, URLLib3Error, OSError) as e:
                raise StreamCut(_one_line(e)) from e
            finally:
                body.close()

        return self._call(uri, get)

    def write_bytes(self, uri: str, data: bytes, overwrite: bool = True) -> None:
        bucket, key = _object(uri)
        if not overwrite:
            self._put_new(uri, bucket, key, data)
        elif len(data) >= self.cfg.multipart_threshold:
            self._call(uri, lambda: self.client.upload_fileobj(io.BytesIO(data), bucket, key, Config=self._transfer))
        else:
            self._call(uri, lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data))

    def upload_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        src = Path(local_path)
        if not src.is_file():
            raise StorageError(f"{src}: no such local file to upload to {uri}")
        bucket, key = _object(uri)

        def put() -> None:
            if src.stat().st_size >= self.cfg.multipart_threshold:
                self.client.upload_file(str(src), bucket, key, Config=self._transfer)
                return
            # One PUT: upload_file would build a transfer manager and its threads for every small file.
            with open(src, "rb") as f:
                self.client.put_object(Bucket=bucket, Key=key, Body=f)

        self._call(uri, put)

    def upload_dir(self, local_dir: str | os.PathLike[str], uri_prefix: str) -> list[str]:
        """Upload every file under `local_dir`, then check with one listing that each is there with its size."""
        keys = super().upload_dir(local_dir, uri_prefix)
        bucket, prefix = _folder(uri_prefix)
        stored = {k[len(prefix):]: size for k, size in self._objects(uri_prefix, bucket, prefix)}
        for k in keys:
            want = (Path(local_dir) / k).stat().st_size
            got = stored.get(k)
            if got != want:
                found = "does not hold it" if got is None else f"holds {got} of its {want} bytes"
                raise StorageError(f"{join(uri_prefix, k)}: uploaded, but S3 endpoint {self.endpoint} {found}")
        return keys

    def download_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        bucket, key = _object(uri)
        dest = Path(local_path)
        tmp = dest.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._call(uri, lambda: self.client.download_file(bucket, key, str(tmp), Config=self._transfer))
            os.replace(tmp, dest)
        except OSError as e:
            if isinstance(e, StorageError):
                raise
            raise StorageError(f"{uri}: cannot write {dest} ({e.strerror or e})") from None
        finally:
            if tmp.exists():
                tmp.unlink()

    def list(self, uri_prefix: str) -> list[str]:
        bucket, prefix = _folder(uri_prefix)
        # "a/" keys are folder placeholders some consoles create: not objects a local folder could hold.
        return sorted(k[len(prefix):] for k, _ in self._objects(uri_prefix, bucket, prefix) if not k.endswith("/"))

    def delete_prefix(self, uri_prefix: str) -> None:
        bucket, prefix = _folder(uri_prefix)
        keys = [k for k, _ in self._objects(uri_prefix, bucket, prefix)]
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i:i + _DELETE_BATCH]]
            errors = self._call(uri_prefix, lambda batch=batch: self.client.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True})).get("Errors", [])
            if errors:
                e = errors[0]
                raise StorageError(f"s3://{bucket}/{e['Key']}: S3 endpoint {self.endpoint} refused to delete it "
                                   f"({e.get('Code')}: {e.get('Message')}; {len(errors)} keys failed in all)")

    # --- helpers -------------------------------------------------------------------------------------------

    def _objects(self, uri: str, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under the prefix; a listing cut by an outage starts over."""
        def pages() -> list[tuple[str, int]]:
            paginator = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": self.cfg.list_page_size})
            return [(obj["Key"], obj["Size"]) for page in paginator for obj in page.get("Contents", [])]

        return self._call(uri, pages)

    def _put_new(self, uri: str, bucket: str, key: str, data: bytes) -> None:
        endpoint = self.endpoint
        exists = ObjectExists(f"{uri}: already exists at S3 endpoint {endpoint} (refusing to overwrite)")
        tries = [0]

        def put() -> None:
            tries[0] += 1
            try:
                self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as e:
                # A retry refused because the object exists: our previous try may have landed with its answer
                # lost on the way back. The same bytes there mean it did, and the write is done.
                if tries[0] > 1 and _precondition_failed(e) and self._holds(bucket, key, data):
                    return
                raise

        if endpoint not in _NO_CONDITIONAL_PUT:
            try:
                with self._errors(uri):
                    self._retrying(uri, put)
                return
            except StorageError as e:
                cause = _sdk_error(e.__cause__)
                if isinstance(cause, ClientError) and _precondition_failed(cause):
                    raise exists from None
                if not isinstance(cause, ClientError) or (_code(cause) != "NotImplemented"
                                                          and _status(cause) != 501):
                    raise
            _NO_CONDITIONAL_PUT.add(endpoint)
        if self.exists(uri):
            raise exists
        self._call(uri, lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data))

    def _holds(self, bucket: str, key: str, data: bytes) -> bool:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        except (BotoCoreError, ClientError, URLLib3Error, OSError):
            return False

    def _call(self, uri: str, fn: Callable[[], T]) -> T:
        """fn() with whole-operation retries, its failure one StorageError line naming `uri` and the endpoint."""
        with self._errors(uri):
            return self._retrying(uri, fn)

    def _retrying(self, uri: str, fn: Callable[[], T]) -> T:
        """Call fn, retrying what retry.transient allows, with exponential backoff (retry.delay)."""
        endpoint, attempt, started = self.endpoint, 0, time.monotonic()
        while True:
            try:
                result = fn()
                reached(endpoint)
                return result
            except Exception as e:
                if answered(_sdk_error(e) or e):
                    reached(endpoint)
                if not transient(e, endpoint):
                    raise
                if attempt >= self.cfg.transient_retries:
                    if attempt == 0:
                        raise
                    raise GaveUp(attempt, time.monotonic() - started) from e
                wait = delay(self.cfg, attempt)
                log.warning("%s; retry %d of %d in %.1f s", self._explain(uri, _sdk_error(e) or e), attempt + 1,
                            self.cfg.transient_retries, wait)
            time.sleep(wait)
            attempt += 1

    @contextlib.contextmanager
    def _errors(self, uri: str) -> Iterator[None]:
        """Turn SDK errors into a one-line StorageError naming the URI and the endpoint."""
        try:
            yield
        except StorageError:
            raise
        except GaveUp as e:
            err = self._explain(uri, _sdk_error(e.__cause__) or e.__cause__)
            raise type(err)(f"{err}; {e} (OLMOFLOW_S3_TRANSIENT_RETRIES={self.cfg.transient_retries})") from e
        except Exception as e:
            cause = _sdk_error(e)
            if cause is None:
                raise
            raise self._explain(uri, cause) from e

    def _explain(self, uri: str, e: BaseException) -> StorageError:
        ep = self.endpoint
        if isinstance(e, StreamCut):
            return StorageError(f"{uri}: the download from S3 endpoint {ep} kept breaking off ({e})")
        if isinstance(e, RetriesExceededError):
            return StorageError(f"{uri}: the download from S3 endpoint {ep} kept breaking off "
                                f"({_one_line(e.last_exception)})")
        if isinstance(e, ConnectTimeoutError):
            return StorageError(f"{uri}: cannot reach S3 endpoint {ep} "
                                f"(no connection within {self.cfg.connect_timeout:g} s)")
        if isinstance(e, EndpointConnectionError):
            return StorageError(f"{uri}: cannot reach S3 endpoint {ep} ({_reason(e)})")
        if isinstance(e, ReadTimeoutError):
            return StorageError(f"{uri}: S3 endpoint {ep} did not answer within {self.cfg.read_timeout:g} s")
        if isinstance(e, HTTPClientError):
            return StorageError(f"{uri}: cannot reach S3 endpoint {ep} ({_one_line(e)})")
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"{uri}: no AWS credentials for S3 endpoint {ep} (set AWS_ACCESS_KEY_ID and "
                                f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
        if isinstance(e, ClientError):
            code, status, message = _code(e), _status(e), e.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket" or (status == 404 and code != "NoSuchKey" and self._bucket_missing(uri)):
                return StorageError(f"{uri}: bucket {split(uri)[0]!r} does not exist at S3 endpoint {ep}")
            if status == 404:
                return ObjectNotFound(f"{uri}: no such object at S3 endpoint {ep}")
            if status == 403:
                return StorageError(f"{uri}: access denied by S3 endpoint {ep} ({code}: {message})")
            return StorageError(f"{uri}: S3 endpoint {ep} refused the request ({code}: {_one_line(message)})")
        return StorageError(f"{uri}: S3 request to {ep} failed ({_one_line(e)})")

    def _bucket_missing(self, uri: str) -> bool:
        # HEAD answers carry no error code, so a 404 from HeadObject cannot tell a missing key from a missing
        # bucket; HeadBucket can.
        try:
            self.client.head_bucket(Bucket=split(uri)[0])
            return False
        except ClientError as e:
            return _status(e) == 404
        except BotoCoreError:
            return False


def _folder(uri: str) -> tuple[str, str]:
    """(bucket, "key/prefix/") with folder semantics; the bucket root is the empty prefix."""
    bucket, key = split(uri)
    key = key.strip("/")
    return bucket, key + "/" if key else ""


def _sdk_error(e: BaseException | None) -> BaseException | None:
    """The first SDK error along the chain: boto3 wraps upload failures in S3UploadFailedError."""
    while e is not None:
        if isinstance(e, (BotoCoreError, ClientError, StreamCut, RetriesExceededError)):
            return e
        e = e.__cause__ or e.__context__
    return None


def _precondition_failed(e: ClientError) -> bool:
    return _code(e) == "PreconditionFailed" or _status(e) == 412


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _reason(e: EndpointConnectionError) -> str:
    """'Connection refused' out of urllib3's 'Failed to establish a new connection: [Errno 111] ...'."""
    text = _one_line(e.kwargs.get("error", e))
    _, errno_sep, tail = text.partition("] ")
    return tail if errno_sep else text


def _one_line(e: object) -> str:
    return " ".join(str(e).split())
