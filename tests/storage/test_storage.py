"""olmoflow.storage: one behavioural suite over a local folder and a real S3 endpoint (moto_server), plus the
S3 failure modes (dead endpoint, hung endpoint, missing bucket, no credentials, broken streams)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from fixtures.s3 import moto_server, s3_uri  # noqa: F401  (pytest fixtures)
from urllib3.exceptions import ProtocolError

import olmoflow.storage.s3 as s3mod
from olmoflow.storage import (
    LocalStorage,
    ObjectExists,
    ObjectNotFound,
    StorageConfig,
    StorageError,
    is_remote,
    join,
    storage_for,
)
from olmoflow.storage.local import TMP_PREFIX
from olmoflow.storage.s3 import S3Storage

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's root URI: a local folder, or s3://bucket/prefix on moto."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_uri")


def _tree(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under folder."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def _raw(uri: str) -> dict:
    """The object as plain boto3 sees it, bypassing olmoflow.storage."""
    bucket, key = s3mod.split(uri)
    return boto3.client("s3").head_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def _hooked(store: S3Storage, event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Attach a botocore event handler to the store's client (shared per process) for the block only."""
    events = store.client.meta.events
    events.register(event, handler)
    try:
        yield
    finally:
        events.unregister(event, handler)


def _calls(store: S3Storage, operation: str, seen: list[dict]) -> contextlib.AbstractContextManager[None]:
    """Record the API parameters of every `operation` call the store makes inside the block."""
    return _hooked(store, f"before-parameter-build.s3.{operation}", lambda params, **_: seen.append(dict(params)))


# --- the same behaviour on both backends -----------------------------------------------------------------


def test_bytes_round_trip(root: str) -> None:
    store = storage_for(root)
    uri = join(root, "a", "b.bin")
    payload = bytes(range(256)) * 3
    assert not store.exists(uri)
    store.write_bytes(uri, payload)
    assert store.exists(uri) and store.read_bytes(uri) == payload
    store.write_bytes(uri, b"")
    assert store.read_bytes(uri) == b""
    assert not store.exists(join(root, "a")), "a prefix is not an object"
    if is_remote(root):
        assert _raw(uri)["ContentLength"] == 0


def test_overwrite_false_is_refused(root: str) -> None:
    store = storage_for(root)
    uri = join(root, "manifest.json")
    store.write_bytes(uri, b"first", overwrite=False)
    with pytest.raises(ObjectExists) as e:
        store.write_bytes(uri, b"second", overwrite=False)
    assert str(e.value).startswith(f"{uri}: already exists")
    assert isinstance(e.value, FileExistsError)
    if is_remote(root):
        assert f"at S3 endpoint {os.environ['AWS_ENDPOINT_URL']}" in str(e.value)
    assert store.read_bytes(uri) == b"first"


def test_racing_writers_exactly_one_wins(root: str) -> None:
    store = storage_for(root)
    uri = join(root, "race", "manifest.json")
    n = 6
    barrier = threading.Barrier(n)
    outcomes: list[str] = []

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.write_bytes(uri, f"writer {i}".encode(), overwrite=False)
            outcomes.append(f"won {i}")
        except ObjectExists:
            outcomes.append("refused")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("refused") == n - 1
    assert store.read_bytes(uri) == f"writer {winners[0].split()[1]}".encode()


def test_missing_object_names_the_uri(root: str, tmp_path: Path) -> None:
    store = storage_for(root)
    uri = join(root, "no", "such.json")
    for call in (lambda: store.read_bytes(uri), lambda: store.download_file(uri, tmp_path / "dl" / "x")):
        with pytest.raises(ObjectNotFound) as e:
            call()
        msg = str(e.value)
        assert msg.startswith(f"{uri}: no such ") and "\n" not in msg
        assert isinstance(e.value, FileNotFoundError)
    assert not (tmp_path / "dl" / "x").exists()
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").iterdir()), "no temp file left behind"


def test_file_round_trip(root: str, tmp_path: Path) -> None:
    store = storage_for(root)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    uri = join(root, "files", "x.bin")
    store.upload_file(src, uri)
    dest = tmp_path / "out" / "deep" / "x.bin"
    store.download_file(uri, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["x.bin"], "no temp file left beside the download"
    with pytest.raises(StorageError, match=r"^.*nope\.bin: no such local file to upload to "):
        store.upload_file(tmp_path / "nope.bin", uri)


def test_dir_round_trip_list_and_folder_semantics(root: str, tmp_path: Path) -> None:
    store = storage_for(root)
    src = tmp_path / "payload"
    files = {"tokenizer.json": b"{}", "pretrain/web/00000.npy": os.urandom(5000),
             "pretrain/web/00000.idx.npy": b"\x00" * 16, "post/sft.jsonl": b'{"messages": []}\n'}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    prefix = join(root, "flow", "curate", "abc123")
    keys = store.upload_dir(src, prefix)
    assert keys == sorted(files)
    assert store.list(prefix) == sorted(files)
    assert store.list(join(prefix, "pretrain")) == ["web/00000.idx.npy", "web/00000.npy"]
    # Folder semantics: "flow/curate/abc" is not a prefix of "flow/curate/abc123/...".
    assert store.list(join(root, "flow", "curate", "abc")) == []
    assert store.list(join(root, "nothing-here")) == []
    out = tmp_path / "downloaded"
    assert store.download_dir(prefix, out) == sorted(files)
    assert _tree(out) == _tree(src)


def test_delete_prefix(root: str) -> None:
    store = storage_for(root)
    for rel in ("run/a.json", "run/step-000001/model.safetensors", "runs/keep.json", "run.json"):
        store.write_bytes(join(root, rel), rel.encode())
    store.delete_prefix(join(root, "run"))
    assert store.list(root) == ["run.json", "runs/keep.json"]
    store.delete_prefix(join(root, "run"))
    assert store.list(root) == ["run.json", "runs/keep.json"]


@pytest.mark.parametrize("root", ["local", pytest.param("s3", marks=pytest.mark.slow)], indirect=True)
def test_list_past_1000_keys(root: str, tmp_path: Path) -> None:
    names = _many_files(tmp_path / "many", 1001)
    store = storage_for(root)
    store.upload_dir(tmp_path / "many", join(root, "many"))
    if not is_remote(root):
        assert store.list(join(root, "many")) == names
        return
    calls: list[dict] = []
    with _calls(store, "ListObjectsV2", calls):
        assert store.list(join(root, "many")) == names
    assert len(calls) == 2, "S3 returns at most 1000 keys a page"


def test_list_follows_continuation_tokens(s3_uri: str, tmp_path: Path) -> None:  # noqa: F811
    names = _many_files(tmp_path / "many", 45)
    storage_for(s3_uri).upload_dir(tmp_path / "many", join(s3_uri, "many"))
    paged = S3Storage(StorageConfig(list_page_size=7))
    calls: list[dict] = []
    with _calls(paged, "ListObjectsV2", calls):
        assert paged.list(join(s3_uri, "many")) == names
    assert len(calls) == 7 and all(c["MaxKeys"] == 7 for c in calls)
    assert "ContinuationToken" not in calls[0] and all("ContinuationToken" in c for c in calls[1:])


def _many_files(folder: Path, n: int) -> list[str]:
    """n small files spread over three subfolders; returns their sorted relative paths."""
    names = [f"d{i % 3}/{i:05d}.txt" for i in range(n)]
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(name.encode())
    return sorted(names)


def test_readers_never_see_a_partial_object(root: str) -> None:
    store = storage_for(root)
    uri = join(root, "hot.bin")
    size = MiB // 2
    store.write_bytes(uri, b"a" * size)
    seen: set[tuple[int, int]] = set()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            data = store.read_bytes(uri)
            seen.add((len(data), len(set(data))))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(6):
        store.write_bytes(uri, (b"b" if i % 2 else b"c") * size)
    done.set()
    t.join()
    assert seen == {(size, 1)}, "every read is one whole object"


# --- S3 specifics ----------------------------------------------------------------------------------------


def test_client_uses_aws_endpoint_url(s3_uri: str, moto_server: str) -> None:  # noqa: F811
    assert S3Storage().endpoint == moto_server
    assert is_remote(s3_uri) and isinstance(storage_for(s3_uri), S3Storage)


def test_multipart_upload_and_download_integrity(s3_uri: str, tmp_path: Path) -> None:  # noqa: F811
    cfg = StorageConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    store = S3Storage(cfg)
    src = tmp_path / "model.safetensors"
    src.write_bytes(os.urandom(11 * MiB))
    uri = join(s3_uri, "model.safetensors")
    store.upload_file(src, uri)
    # S3's ETag of a multipart object is md5-of-part-md5s with "-<parts>": 11 MiB in 5 MiB parts is 3.
    assert _raw(uri)["ETag"].strip('"').endswith("-3")
    assert _raw(uri)["ContentLength"] == 11 * MiB

    gets: list[dict] = []
    dest = tmp_path / "back" / "model.safetensors"
    with _calls(store, "GetObject", gets):
        store.download_file(uri, dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()
    assert len([g for g in gets if "Range" in g]) == 3, "downloaded in ranged parts"

    data = os.urandom(6 * MiB)
    store.write_bytes(join(s3_uri, "big.bin"), data)
    assert _raw(join(s3_uri, "big.bin"))["ETag"].strip('"').endswith("-2")
    assert store.read_bytes(join(s3_uri, "big.bin")) == data

    small = tmp_path / "small.json"
    small.write_bytes(b"{}")
    store.upload_file(small, join(s3_uri, "small.json"))
    assert "-" not in _raw(join(s3_uri, "small.json"))["ETag"], "small files go up in one PUT"


def test_unreachable_endpoint_fails_fast(s3_uri: str, tmp_path: Path,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    store = storage_for(s3_uri)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    uri = join(s3_uri, "k")
    calls = {"read_bytes": lambda: store.read_bytes(uri), "exists": lambda: store.exists(uri),
             "write_bytes": lambda: store.write_bytes(uri, b"x", overwrite=False),
             "upload_file": lambda: store.upload_file(src, uri),
             "download_file": lambda: store.download_file(uri, tmp_path / "d"),
             "list": lambda: store.list(s3_uri)}
    for name, call in calls.items():
        start = time.monotonic()
        with pytest.raises(StorageError) as e:
            call()
        elapsed = time.monotonic() - start
        target = s3_uri if name == "list" else uri
        assert str(e.value) == f"{target}: cannot reach S3 endpoint http://127.0.0.1:1 (Connection refused)", name
        assert elapsed < 5, f"{name} took {elapsed:.1f} s"


def test_hung_endpoint_times_out(s3_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        store = S3Storage(StorageConfig(read_timeout=0.5, max_attempts=1))
        start = time.monotonic()
        with pytest.raises(StorageError) as e:
            store.read_bytes(join(s3_uri, "k"))
        assert str(e.value) == f"{join(s3_uri, 'k')}: S3 endpoint {endpoint} did not answer within 0.5 s"
        assert time.monotonic() - start < 2.5


def test_missing_bucket_is_one_clear_line(s3_uri: str, tmp_path: Path) -> None:  # noqa: F811
    store = storage_for(s3_uri)
    root = "s3://no-such-bucket-here/flows"
    uri = join(root, "x.json")
    src = tmp_path / "f"
    src.write_bytes(b"x")
    calls = {"read_bytes": lambda: store.read_bytes(uri), "exists": lambda: store.exists(uri),
             "write_bytes": lambda: store.write_bytes(uri, b"x"),
             "write_bytes(overwrite=False)": lambda: store.write_bytes(uri, b"x", overwrite=False),
             "upload_file": lambda: store.upload_file(src, uri),
             "download_file": lambda: store.download_file(uri, tmp_path / "d"),
             "list": lambda: store.list(root), "delete_prefix": lambda: store.delete_prefix(root)}
    for name, call in calls.items():
        with pytest.raises(StorageError) as e:
            call()
        target = root if name in ("list", "delete_prefix") else uri
        expected = (f"{target}: bucket 'no-such-bucket-here' does not exist at S3 endpoint "
                    f"{os.environ['AWS_ENDPOINT_URL']}")
        assert str(e.value) == expected, name
        assert not isinstance(e.value, ObjectNotFound), name


def test_no_credentials(s3_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError) as e:
        storage_for(s3_uri).read_bytes(join(s3_uri, "k"))
    assert str(e.value) == (f"{join(s3_uri, 'k')}: no AWS credentials for S3 endpoint "
                            f"{os.environ['AWS_ENDPOINT_URL']} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                            f"or AWS_PROFILE)")


class _CutStream:
    """A raw HTTP body that breaks off, as urllib3 reports a dropped connection."""

    def read(self, *_: object) -> bytes:
        raise ProtocolError("Connection broken: IncompleteRead(3 bytes read, 7 more expected)")

    def close(self) -> None:
        pass


def _cut_first_gets(store: S3Storage, n: int, cuts: list[int]) -> contextlib.AbstractContextManager[None]:
    """Inside the block, the first n GETs' bodies break off; cuts[0] counts them."""
    def cut(parsed: dict, **_: object) -> None:
        if cuts[0] < n:
            cuts[0] += 1
            parsed["Body"] = StreamingBody(_CutStream(), 10)

    return _hooked(store, "after-call.s3.GetObject", cut)


def test_broken_download_stream_is_retried(s3_uri: str) -> None:  # noqa: F811
    uri = join(s3_uri, "k")
    storage_for(s3_uri).write_bytes(uri, b"0123456789")

    patient = S3Storage(StorageConfig(transient_retries=2, backoff_base=0.01))
    cuts = [0]
    with _cut_first_gets(patient, 2, cuts):
        assert patient.read_bytes(uri) == b"0123456789"
    assert cuts == [2]

    impatient = S3Storage(StorageConfig(transient_retries=0))
    with _cut_first_gets(impatient, 1, [0]), pytest.raises(StorageError) as e:
        impatient.read_bytes(uri)
    assert str(e.value) == (f"{uri}: the download from S3 endpoint {impatient.endpoint} kept breaking off "
                            f"(An error occurred while reading from response stream: Connection broken: "
                            f"IncompleteRead(3 bytes read, 7 more expected))")


def test_conditional_put_falls_back_to_check_then_put(s3_uri: str,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers 501 to If-None-Match still refuses an overwrite, via HEAD first."""
    monkeypatch.setattr(s3mod, "_NO_CONDITIONAL_PUT", set())
    store = S3Storage()
    refused: list[str] = []

    class _Body:
        def stream(self):
            yield b"<Error><Code>NotImplemented</Code><Message>If-None-Match</Message></Error>"

    def no_conditionals(request, **_: object) -> AWSResponse | None:
        if "If-None-Match" in request.headers:
            refused.append(request.url)
            return AWSResponse(request.url, 501, {}, _Body())
        return None

    uri = join(s3_uri, "manifest.json")
    with _hooked(store, "before-send.s3.PutObject", no_conditionals):
        store.write_bytes(uri, b"first", overwrite=False)
        with pytest.raises(ObjectExists):
            store.write_bytes(uri, b"second", overwrite=False)
    assert store.read_bytes(uri) == b"first"
    assert len(refused) == 1, "the 501 is remembered per endpoint"
    assert s3mod._NO_CONDITIONAL_PUT == {store.endpoint}


def test_s3_uri_errors() -> None:
    store = S3Storage()
    with pytest.raises(StorageError, match=r"^s3://bucket/folder/: names a bucket or a folder, not an object$"):
        store.read_bytes("s3://bucket/folder/")
    with pytest.raises(StorageError, match=r"^s3:///key: not an s3://bucket/key URI$"):
        store.read_bytes("s3:///key")


# --- local specifics and URI helpers ---------------------------------------------------------------------


def test_file_uris_and_schemes(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/store/x.json"
    store = storage_for(uri)
    assert isinstance(store, LocalStorage) and not is_remote(uri)
    store.write_bytes(uri, b"1")
    assert (tmp_path / "store" / "x.json").read_bytes() == b"1"
    assert store.list(f"file://{tmp_path}/store") == ["x.json"]
    with pytest.raises(StorageError, match=r"^gs://b/x: unsupported URI scheme 'gs' \(use a local path"):
        storage_for("gs://b/x")


def test_local_temp_files_are_not_listed(tmp_path: Path) -> None:
    store = LocalStorage()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f"{TMP_PREFIX}deadbeef").write_bytes(b"half a write")
    store.write_bytes(str(tmp_path / "a" / "done.json"), b"{}")
    assert store.list(str(tmp_path)) == ["a/done.json"]


def test_local_overwrite_false_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(*_: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    store = LocalStorage()
    uri = str(tmp_path / "m.json")
    store.write_bytes(uri, b"first", overwrite=False)
    with pytest.raises(ObjectExists, match=r"m\.json: already exists"):
        store.write_bytes(uri, b"second", overwrite=False)
    assert Path(uri).read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["m.json"]


def test_local_write_errors_name_the_uri(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match=r"^.*/file/x: cannot write \(a parent folder is a file\)$"):
        LocalStorage().write_bytes(str(tmp_path / "file" / "x"), b"1")
    with pytest.raises(StorageError, match=r": is a folder, not a file$"):
        LocalStorage().read_bytes(str(tmp_path))


def test_join() -> None:
    assert join("s3://bucket", "a", "b.json") == "s3://bucket/a/b.json"
    assert join("s3://bucket/prefix/", "/a/", "b/c") == "s3://bucket/prefix/a/b/c"
    assert join("/tmp/store", "flow", "curate/abc") == "/tmp/store/flow/curate/abc"
    assert join("/", "x") == "/x"
    assert join("s3://bucket/p") == "s3://bucket/p"
    with pytest.raises(StorageError, match=r"^s3://b/p: refusing to join a '\.\.' segment"):
        join("s3://b/p", "../other")


def test_config_rejects_parts_below_s3_minimum() -> None:
    with pytest.raises(ValueError, match="multipart_chunksize"):
        StorageConfig(multipart_chunksize=1024)

