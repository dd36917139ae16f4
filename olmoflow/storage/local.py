"""Storage on the local filesystem, for plain paths and file:// URIs.

Every write goes to a hidden temp file in the destination folder and is renamed into place, so a reader (or a
killed writer) never leaves a partial file under the real name. overwrite=False publishes with os.link, which
fails if the name exists: of two racing writers exactly one wins.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from olmoflow.storage.base import ObjectExists, ObjectNotFound, Storage, StorageError, scheme

TMP_PREFIX = ".tmp-olmoflow-"
"""Temp files in flight carry this prefix; list() never shows them."""

_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def path_of(uri: str | os.PathLike[str]) -> Path:
    """The filesystem path of a plain path or a file:// URI."""
    s = os.fspath(uri)
    if scheme(s) == "file":
        parsed = urlparse(s)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"{s}: file:// URIs on another host ({parsed.netloc}) are not supported")
        return Path(unquote(parsed.path))
    return Path(s)


class LocalStorage(Storage):
    def exists(self, uri: str) -> bool:
        return path_of(uri).is_file()

    def read_bytes(self, uri: str) -> bytes:
        path = path_of(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{uri}: no such file") from None
        except IsADirectoryError:
            raise StorageError(f"{uri}: is a folder, not a file") from None

    def write_bytes(self, uri: str, data: bytes, overwrite: bool = True) -> None:
        self._publish(uri, lambda f: f.write(data), overwrite)

    def upload_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        src = Path(local_path)
        if not src.is_file():
            raise StorageError(f"{src}: no such local file to upload to {uri}")
        with open(src, "rb") as f_in:
            self._publish(uri, lambda f: shutil.copyfileobj(f_in, f, 1 << 20), overwrite=True)

    def download_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        try:
            f_in = open(path_of(uri), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"{uri}: no such file") from None
        except IsADirectoryError:
            raise StorageError(f"{uri}: is a folder, not a file") from None
        with f_in:
            self._publish(local_path, lambda f: shutil.copyfileobj(f_in, f, 1 << 20), overwrite=True)

    def list(self, uri_prefix: str) -> list[str]:
        root = path_of(uri_prefix)
        if not root.is_dir():
            return []
        out = []
        for folder, _, files in os.walk(root):
            rel = Path(folder).relative_to(root)
            out.extend((rel / name).as_posix() for name in files if not name.startswith(TMP_PREFIX))
        return sorted(out)

    def delete_prefix(self, uri_prefix: str) -> None:
        root = path_of(uri_prefix)
        if root.is_dir():
            shutil.rmtree(root)

    def _publish(self, uri: str | os.PathLike[str], fill: Callable[[BinaryIO], object], overwrite: bool) -> None:
        """Write via `fill` into a temp file beside the target, then move it under the target's name."""
        path = path_of(uri)
        if path.is_dir():
            raise StorageError(f"{uri}: is a folder, cannot write a file there")
        tmp = path.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise StorageError(f"{uri}: cannot write (a parent folder is a file)") from None
            # 0o666 so the umask applies, as for any file the process creates (mkstemp would force 0600).
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                _publish_new(tmp, path, str(uri))
        except StorageError:
            raise
        except OSError as e:
            raise StorageError(f"{uri}: cannot write ({e.strerror or e})") from None
        finally:
            if tmp.exists():
                tmp.unlink()


def _publish_new(tmp: Path, path: Path, uri: str) -> None:
    """Give `tmp` the name `path` only if nothing has it: atomic and exclusive."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise ObjectExists(f"{uri}: already exists (refusing to overwrite)") from None
    except OSError as e:
        if e.errno not in _NO_HARDLINKS:
            raise StorageError(f"{uri}: cannot create ({e.strerror})") from None
    # No hard links here (some network and FUSE filesystems): reserve the name with O_EXCL, which is still
    # exclusive, then rename the full temp file over the empty reservation.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise ObjectExists(f"{uri}: already exists (refusing to overwrite)") from None
    os.replace(tmp, path)
