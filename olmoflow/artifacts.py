"""The stage artifact contract: `{store}/{flow}/{stage}/{fingerprint}/` with manifest.json written last.

- fingerprint = short sha256 of (stage, its resolved config, its inputs' fingerprints, FORMAT_VERSION): same inputs
  and config → same path → the stage is skipped; one changed knob re-runs that stage and everything after it.
- A folder without manifest.json is partial and never read; a complete one is never overwritten.
- Every file's sha256 is in the manifest and is checked when the artifact is opened.
- A store may be written by someone else, so a manifest is data to check, not to trust: its stage, fingerprint and
  kind must each be one safe path segment and every `files` key a relative path inside the artifact, before any of
  them reaches a path join, a download or an rmtree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmoflow import __version__
from olmoflow.storage import ObjectNotFound, StorageError, is_remote, join, storage_for

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("dataset", "checkpoint", "report")
SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""A flow, stage, fingerprint or kind: one folder name, never '.', '..' or a path."""
SHA256 = re.compile(r"[0-9a-f]{64}")


class ArtifactError(RuntimeError):
    """A missing, partial, corrupt or wrong-kind artifact; the message names the URI."""


def fingerprint(stage: str, config: dict[str, Any], inputs: dict[str, str]) -> str:
    """Content address of a stage's output: stable across runs and machines, sensitive to every input."""
    blob = json.dumps({"stage": stage, "config": config, "inputs": dict(sorted(inputs.items())),
                       "format": FORMAT_VERSION}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} for every file under root except the manifest."""
    table = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            table[p.relative_to(root).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return table


def check_segment(value: Any, what: str, where: str) -> str:
    """`value` if it is one safe folder name, else an ArtifactError naming `what` and `where`."""
    if not isinstance(value, str) or not SEGMENT.fullmatch(value):
        raise ArtifactError(f"{where}: {what} {value!r} is not a plain name (letters, digits, '_', '-', '.'); "
                            f"refusing it")
    return value


def check_relpath(key: Any, where: str) -> str:
    """`key` if it is a relative path that stays inside the folder it is read under: no absolute path, no empty,
    '.' or '..' segment, no backslash (a separator to other tools) and nothing unprintable (a line break would
    split the one-line errors that name the file)."""
    parts = key.split("/") if isinstance(key, str) else [""]
    if any(p in ("", ".", "..") for p in parts) or "\\" in key or not key.isprintable():
        raise ArtifactError(f"{where}: file {key!r} is not a relative path inside the artifact; refusing it")
    return key


def check_manifest(manifest: Any, uri: str) -> dict[str, Any]:
    """The manifest if its fields have the types and forms the readers rely on, else one ArtifactError naming
    the artifact and the field (or file) at fault."""
    where = f"{uri}: {MANIFEST}"
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{uri}: corrupt {MANIFEST} (not a JSON object)")
    missing = [k for k in ("stage", "kind", "fingerprint", "files") if k not in manifest]
    if missing:
        raise ArtifactError(f"{uri}: corrupt {MANIFEST} (missing {', '.join(missing)})")
    for key in ("stage", "kind", "fingerprint"):
        check_segment(manifest[key], key, where)
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ArtifactError(f"{where}: files is not a JSON object")
    for rel, meta in files.items():
        check_relpath(rel, where)
        if not (isinstance(meta, dict) and type(meta.get("size")) is int and meta["size"] >= 0
                and isinstance(meta.get("sha256"), str) and SHA256.fullmatch(meta["sha256"])):
            raise ArtifactError(f"{where}: file {rel!r} has no valid size and sha256")
    for key in ("inputs", "config", "metrics"):
        if not isinstance(manifest.get(key, {}), dict):
            raise ArtifactError(f"{where}: {key} is not a JSON object")
    for name, spec in manifest.get("inputs", {}).items():  # lineage and the runner follow these
        if not (isinstance(spec, dict) and all(isinstance(spec.get(k, ""), str) for k in ("uri", "fingerprint"))):
            raise ArtifactError(f"{where}: input {name!r} is not an object with a string uri and fingerprint")
    return manifest


def verify_files(root: Path, files: dict[str, dict[str, Any]], uri: str) -> None:
    inside = root.resolve()
    for rel, meta in files.items():
        p = root / check_relpath(rel, f"{uri}: {MANIFEST}")
        if not p.resolve().is_relative_to(inside):  # a planted symlink in a local store
            raise ArtifactError(f"{uri}: file {rel} leads outside the artifact (a link to {p.resolve()}); "
                                f"refusing it")
        if not p.is_file():
            raise ArtifactError(f"{uri}: file {rel} listed in the manifest is missing")
        if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
            raise ArtifactError(f"{uri}: file {rel} fails its checksum (corrupt or tampered)")


@dataclass
class Artifact:
    """A complete artifact: its URI, its verified manifest, and a local folder with its payload."""

    uri: str
    manifest: dict[str, Any]
    path: Path

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def stage(self) -> str:
        return self.manifest["stage"]


def read_manifest(uri: str, kind: str | None = None) -> dict[str, Any]:
    """The manifest of a complete artifact; a partial or corrupt one, or (given `kind`) one of another kind, is an
    ArtifactError naming the URI."""
    storage = storage_for(uri)  # an unsupported scheme is its own one-line StorageError, not "not complete"
    try:
        raw = storage.read_bytes(join(uri, MANIFEST))
    except StorageError as e:
        if "cannot reach" in str(e):
            raise
        raise ArtifactError(f"{uri}: not a complete artifact (no {MANIFEST})") from None
    try:
        manifest = check_manifest(json.loads(raw), uri)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{uri}: corrupt {MANIFEST} ({e.msg} at line {e.lineno})") from None
    except (UnicodeDecodeError, RecursionError):
        raise ArtifactError(f"{uri}: corrupt {MANIFEST} (not UTF-8 JSON)") from None
    if kind is not None and manifest["kind"] != kind:
        raise ArtifactError(f"{uri}: is a {manifest['kind']} artifact (from stage {manifest['stage']}), "
                            f"expected a {kind}")
    return manifest


def home() -> Path:
    """olmoflow's own writable folder: $OLMOFLOW_HOME (a pod's work volume, where the image's folders are
    read-only), else .olmoflow in the working directory."""
    return Path(os.environ.get("OLMOFLOW_HOME") or ".olmoflow")


def open_artifact(uri: str, kind: str | None = None, cache_dir: str | Path | None = None) -> Artifact:
    """Read, verify and (for s3://) download an artifact; `kind` refuses an artifact of another kind."""
    uri = uri.rstrip("/")
    manifest = read_manifest(uri, kind)
    if not is_remote(uri):
        path = Path(uri.removeprefix("file://"))
        verify_files(path, manifest["files"], uri)
        return Artifact(uri, manifest, path)
    path = Path(cache_dir or home() / "cache") / "artifacts" / manifest["stage"] / manifest["fingerprint"]
    done = path / ".verified"
    # The copy is this URI's with these files: another store's artifact of the same name is not taken for it.
    stamp = json.dumps({"uri": uri, "files": manifest["files"]}, sort_keys=True)
    if not (done.is_file() and done.read_text() == stamp):
        shutil.rmtree(path, ignore_errors=True)
        storage = storage_for(uri)
        try:
            for rel in manifest["files"]:
                try:
                    storage.download_file(join(uri, rel), path / rel)
                except ObjectNotFound:
                    raise ArtifactError(f"{uri}: file {rel} listed in the manifest is missing") from None
            verify_files(path, manifest["files"], uri)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # a half-downloaded copy is never taken for the artifact
            raise
        done.write_text(stamp)
    return Artifact(uri, manifest, path)


class ArtifactStore:
    """Artifacts of one flow in one store (a local folder or s3://bucket/prefix)."""

    def __init__(self, root: str, flow: str, cache_dir: str | Path | None = None):
        self.root = root.rstrip("/")
        self.flow = check_segment(flow, "flow name", self.root)
        self.cache_dir = Path(cache_dir or home() / "cache")
        self.storage = storage_for(self.root)

    def uri(self, stage: str, fp: str) -> str:
        where = join(self.root, self.flow)
        check_segment(stage, "stage", where)
        check_segment(fp, "fingerprint", where)
        return join(self.root, self.flow, stage, fp)

    def is_complete(self, uri: str) -> bool:
        return self.storage.exists(join(uri, MANIFEST))

    def open(self, uri: str, kind: str | None = None) -> Artifact:
        return open_artifact(uri, kind, self.cache_dir)

    def staging_dir(self, stage: str, fp: str) -> Path:
        """A fresh local folder for a stage's payload; it never is the final artifact folder."""
        uri = self.uri(stage, fp)  # checks both names before they reach a path join or rmtree
        if is_remote(self.root):
            path = self.cache_dir / "staging" / self.flow / stage / f"{fp}.{os.getpid()}"
        else:
            path = Path(uri + f".staging-{os.getpid()}")
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def commit(self, staging: Path, uri: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Publish staging as the artifact at uri: payload first, manifest.json last, never over a complete one."""
        if uri != self.uri(manifest.get("stage", ""), manifest.get("fingerprint", "")):
            raise ArtifactError(f"{uri}: not this store's folder for stage {manifest.get('stage')!r} and fingerprint "
                                f"{manifest.get('fingerprint')!r}; refusing to commit there")
        if self.is_complete(uri):
            raise ArtifactError(f"{uri}: a complete artifact is already there; refusing to overwrite it")
        manifest = {**manifest, "files": file_table(staging), "olmoflow_version": __version__,
                    "format_version": FORMAT_VERSION, "committed_at": time.time()}
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        if is_remote(uri):
            self.storage.upload_dir(staging, uri)
            self.storage.write_bytes(join(uri, MANIFEST), body, overwrite=False)
            shutil.rmtree(staging, ignore_errors=True)
        else:
            final = Path(uri.removeprefix("file://"))
            if final.exists():
                # A partial folder from a crashed run: it holds no manifest, so nothing complete is lost.
                shutil.rmtree(final)
            staging.rename(final)
            self.storage.write_bytes(join(uri, MANIFEST), body, overwrite=False)
        return manifest
