"""A store someone else can write: manifests whose paths, stage names or fingerprints try to leave their folder are
refused in one line naming the artifact and the field, before anything is written or deleted; a remote in-stage
step holding a climbing key is refused before its download; and `--init` refuses a URI of the wrong kind or with a
bad manifest (exit 1, one line, no traceback)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from olmoflow.artifacts import MANIFEST, ArtifactError, ArtifactStore, open_artifact, read_manifest
from olmoflow.contract.workdir import WorkDir
from olmoflow.storage import StorageError, join, storage_for

REPO = Path(__file__).resolve().parents[2]


def _entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _plant(uri: str, manifest: dict, files: dict[str, bytes]) -> None:
    """Write an artifact as a hostile store writer would: payload objects, then a manifest of their choosing."""
    store = storage_for(uri)
    for key, data in files.items():
        store.write_bytes(join(uri, key), data)
    store.write_bytes(join(uri, MANIFEST), json.dumps(manifest).encode())


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("key", ["ABS", "../../../escaped.txt", "model/../../escaped.txt", "./w.bin", "a//b"])
def test_a_files_key_out_of_the_artifact_is_refused_before_any_download(s3_uri, tmp_path, key):
    # The S3 reader downloads each listed file to cache/{stage}/{fp}/{key}: an absolute key (or one climbing with
    # '..') would make it write wherever the store's writer likes.
    target = tmp_path / "escaped.txt"
    key = str(target) if key == "ABS" else key
    uri = join(s3_uri, "flow", "pretrain", "a" * 16)
    payload = b"attacker's bytes"
    storage_for(uri).write_bytes(join(uri, "escaped.txt"), payload)  # something for a download to fetch
    _plant(uri, {"stage": "pretrain", "kind": "checkpoint", "fingerprint": "a" * 16,
                 "files": {key: _entry(payload)}}, {})
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError) as e:
        open_artifact(uri, cache_dir=cache)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(uri) and repr(key) in msg
    assert not target.exists() and not cache.exists()


def test_a_fingerprint_that_climbs_never_reaches_rmtree(s3_uri, tmp_path):
    # Before: open_artifact rmtree'd cache/artifacts/{stage}/{fingerprint}, so '../../../victim' took a folder
    # beside the cache with it.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    uri = join(s3_uri, "flow", "pretrain", "b" * 16)
    data = b"w"
    _plant(uri, {"stage": "pretrain", "kind": "checkpoint", "fingerprint": "../../../victim",
                 "files": {"w.bin": _entry(data)}}, {"w.bin": data})
    with pytest.raises(ArtifactError, match=r"fingerprint '\.\./\.\./\.\./victim' is not a plain name") as e:
        open_artifact(uri, cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value) and str(e.value).startswith(uri)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("field,value", [("stage", "../pretrain"), ("stage", "a/b"), ("kind", ".."),
                                         ("fingerprint", ""), ("fingerprint", 7), ("stage", None)])
def test_stage_kind_and_fingerprint_must_be_plain_names(tmp_path, field, value):
    uri = str(tmp_path / "store" / "flow" / "pretrain" / ("c" * 16))
    manifest = {"stage": "pretrain", "kind": "checkpoint", "fingerprint": "c" * 16, "files": {}, field: value}
    _plant(uri, manifest, {})
    with pytest.raises(ArtifactError, match=f"{field} {value!r} is not a plain name") as e:
        read_manifest(uri)
    assert "\n" not in str(e.value)


def test_names_given_to_the_store_are_checked_before_a_path_is_built(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    (tmp_path / "store").mkdir()
    bystander = tmp_path / "bystander"
    bystander.mkdir()
    for stage, fp in (("pretrain", "../../../bystander"), ("..", "d" * 16), ("pretrain", "x/../..")):
        with pytest.raises(ArtifactError, match="is not a plain name"):
            store.staging_dir(stage, fp)  # it rmtree's the staging path before making it
    with pytest.raises(ArtifactError, match="is not a plain name"):
        ArtifactStore(str(tmp_path / "store"), "../flow")
    assert bystander.is_dir() and _tree(tmp_path / "store") == set()


def test_commit_writes_only_into_the_folder_its_manifest_names(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    staging = store.staging_dir("pretrain", "e" * 16)
    (staging / "w.bin").write_bytes(b"w")
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(ArtifactError, match="not this store's folder"):
        store.commit(staging, str(elsewhere), {"stage": "pretrain", "fingerprint": "e" * 16, "kind": "checkpoint"})
    assert not elsewhere.exists() and (staging / "w.bin").exists()


def test_a_local_artifact_file_linking_out_of_the_artifact_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not yours")
    uri = tmp_path / "store" / "flow" / "pretrain" / ("f" * 16)
    uri.mkdir(parents=True)
    (uri / "w.bin").symlink_to(secret)
    _plant(str(uri), {"stage": "pretrain", "kind": "checkpoint", "fingerprint": "f" * 16,
                      "files": {"w.bin": _entry(b"not yours")}}, {})
    with pytest.raises(ArtifactError, match="w.bin leads outside the artifact"):
        open_artifact(str(uri))


@pytest.mark.parametrize("manifest", [[1, 2], "x", 3, {"stage": "s", "kind": "k", "fingerprint": "f", "files": []},
                                      {"stage": "s", "kind": "k", "fingerprint": "f",
                                       "files": {"a": {"size": -1, "sha256": "0" * 64}}},
                                      {"stage": "s", "kind": "k", "fingerprint": "f",
                                       "files": {"a": {"size": 1, "sha256": "not-hex"}}}])
def test_a_manifest_of_the_wrong_shape_is_one_line(tmp_path, manifest):
    uri = tmp_path / "a"
    uri.mkdir()
    (uri / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as e:
        open_artifact(str(uri))
    assert "\n" not in str(e.value) and str(e.value).startswith(str(uri))


def _olmoflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "olmoflow.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_init_of_the_wrong_kind_or_with_a_bad_manifest_is_one_line(tmp_path):
    store = tmp_path / "store"
    dataset = store / "olmo3" / "curate" / ("1" * 16)
    _plant(str(dataset), {"stage": "curate", "kind": "dataset", "fingerprint": "1" * 16, "files": {}}, {})
    hostile = store / "olmo3" / "pretrain" / ("2" * 16)
    _plant(str(hostile), {"stage": "pretrain", "kind": "checkpoint", "fingerprint": "2" * 16,
                          "files": {"/etc/passwd": _entry(b"")}}, {})
    before = _tree(tmp_path)
    cases = [(str(dataset), "is a dataset artifact"), (str(hostile), "'/etc/passwd' is not a relative path"),
             ("http://example.invalid/ckpt", "unsupported URI scheme 'http'"),
             (str(tmp_path / "nothing"), "not a complete artifact")]
    for init, why in cases:
        run = _olmoflow("run", "--config", "tiny", "--set", f"flow.store={store}", "--from", "sft",
                        "--init", init, cwd=tmp_path)
        assert run.returncode == 1, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0] and "Traceback" not in run.stderr, run.stderr
    # nothing written: no staging folder, no cache, no MLflow files
    assert _tree(tmp_path) == before


def test_a_remote_step_holding_a_climbing_key_is_refused_before_its_download(s3_uri, tmp_path):
    # Anyone who can write the store's `.work/` prefix can add objects to a step; a key that climbs with '..'
    # would be downloaded beside (or far above) the machine's local copy.
    bucket, prefix = s3_uri.removeprefix("s3://").split("/", 1)
    remote = f"{s3_uri}/flow/pretrain/{'a' * 16}.work"
    s3 = boto3.client("s3")
    base = f"{prefix}/flow/pretrain/{'a' * 16}.work/step-000004"
    s3.put_object(Bucket=bucket, Key=f"{base}/meta.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key=f"{base}/dcp/../../../../escaped.txt", Body=b"owned")
    s3.put_object(Bucket=bucket, Key=f"{base}/.complete", Body=b"4")
    work = WorkDir(tmp_path / "machine" / "x.work", remote=remote)
    assert work.latest_name() == "step-000004"
    with pytest.raises(StorageError, match=r"refusing key 'dcp/\.\./\.\./\.\./\.\./escaped.txt'") as e:
        work.latest()
    assert "\n" not in str(e.value)
    assert not list(tmp_path.rglob("escaped.txt"))
