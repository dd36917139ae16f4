"""The stage artifact contract: fingerprints, manifest-last commits, checksums on read, no overwrites."""

import json
from pathlib import Path

import pytest

from olmoflow.artifacts import ArtifactError, ArtifactStore, fingerprint, open_artifact, read_manifest


def test_fingerprint_stable_and_sensitive():
    base = fingerprint("pretrain", {"lr": 1e-3, "steps": 10}, {"dataset": "abc"})
    assert base == fingerprint("pretrain", {"steps": 10, "lr": 1e-3}, {"dataset": "abc"})
    assert len(base) == 16
    assert base != fingerprint("pretrain", {"lr": 2e-3, "steps": 10}, {"dataset": "abc"})
    assert base != fingerprint("pretrain", {"lr": 1e-3, "steps": 10}, {"dataset": "abd"})
    assert base != fingerprint("midtrain", {"lr": 1e-3, "steps": 10}, {"dataset": "abc"})


def _commit(store, stage="pretrain", fp="f" * 16, kind="checkpoint", payload=b"weights"):
    staging = store.staging_dir(stage, fp)
    (staging / "model").mkdir()
    (staging / "model" / "w.bin").write_bytes(payload)
    uri = store.uri(stage, fp)
    store.commit(staging, uri, {"stage": stage, "fingerprint": fp, "kind": kind})
    return uri


def test_commit_then_open_verifies(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    uri = _commit(store)
    art = open_artifact(uri, kind="checkpoint")
    assert art.manifest["files"]["model/w.bin"]["size"] == 7
    assert (art.path / "model" / "w.bin").read_bytes() == b"weights"
    assert uri == str(tmp_path / "store" / "flow" / "pretrain" / ("f" * 16))


def test_partial_artifact_is_never_read(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    partial = tmp_path / "store" / "flow" / "pretrain" / "p"
    (partial / "model").mkdir(parents=True)
    (partial / "model" / "w.bin").write_bytes(b"half")
    assert not store.is_complete(str(partial))
    with pytest.raises(ArtifactError, match="not a complete artifact"):
        open_artifact(str(partial))


def test_tampered_file_fails_checksum(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    uri = _commit(store)
    (tmp_path / "store" / "flow" / "pretrain" / ("f" * 16) / "model" / "w.bin").write_bytes(b"WEIGHTS")
    with pytest.raises(ArtifactError, match="model/w.bin fails its checksum"):
        open_artifact(uri)


def test_corrupt_manifest_and_wrong_kind(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    uri = _commit(store, stage="eval", kind="report")
    with pytest.raises(ArtifactError, match="is a report artifact .* expected a checkpoint"):
        open_artifact(uri, kind="checkpoint")
    (tmp_path / "store" / "flow" / "eval" / ("f" * 16) / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest.json"):
        read_manifest(uri)


def test_complete_artifact_is_never_overwritten(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    uri = _commit(store, payload=b"first")
    before = json.loads((tmp_path / "store" / "flow" / "pretrain" / ("f" * 16) / "manifest.json").read_text())
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        _commit(store, payload=b"second")
    art = open_artifact(uri)
    assert (art.path / "model" / "w.bin").read_bytes() == b"first"
    assert art.manifest == before


def test_olmoflow_home_moves_the_cache_and_default_store(tmp_path, monkeypatch):
    """A pod's image folders are read-only: $OLMOFLOW_HOME (the chart's work volume) holds what olmoflow writes."""
    from olmoflow.config import load_config
    monkeypatch.delenv("OLMOFLOW_STORE", raising=False)
    monkeypatch.setenv("OLMOFLOW_HOME", str(tmp_path / "work"))
    assert ArtifactStore("s3://bucket/x", "f").cache_dir == tmp_path / "work" / "cache"
    assert load_config("smoke").flow.store == str(tmp_path / "work" / "store")
    monkeypatch.delenv("OLMOFLOW_HOME")
    assert ArtifactStore("s3://bucket/x", "f").cache_dir == Path(".olmoflow/cache")
