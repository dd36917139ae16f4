"""In-stage checkpoints of a stage: step folders under `{artifact}.work/`, saved atomically, newest wins on resume."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from olmoflow.storage import join, storage_for

COMPLETE = ".complete"
"""The marker a step folder gets last: without it the folder is partial and never read."""
STEP = re.compile(r"step-\d{6,}")
"""A step folder's name: only such names (from a listing of the store, which anyone with write access may fill)
are ever joined to a path, downloaded or deleted."""


class WorkDir:
    """In-stage checkpoints under `{artifact}.work/step-NNNNNN/`: saved atomically, newest wins on resume.

    Local store: the step folders live in `local`; several ranks writing one step must share that filesystem.
    Remote store (`remote` = the s3:// `.work` prefix): `local` only stages files. Each rank uploads the files it
    wrote (`share`), then rank 0 the rest and the `.complete` marker last (`commit`), so nodes need no shared
    filesystem and a step is complete in the store or absent; `latest()` downloads the newest complete one.
    `saving(step)` is the one-writer form of begin / share / commit, for stages that run in one process.
    """

    def __init__(self, local: Path, keep: int = 3, remote: str | None = None):
        self.local = Path(local)
        self.keep = keep
        self.remote = remote
        self._storage = storage_for(remote) if remote else None

    def steps(self) -> list[str]:
        """Names of the complete steps, oldest first (for a remote store: the ones in the store)."""
        if self.remote is not None:
            keys = self._storage.list(self.remote)
            return sorted({k.split("/")[0] for k in keys if k.count("/") == 1 and k.endswith("/" + COMPLETE)
                           and STEP.fullmatch(k.split("/")[0])})
        if not self.local.exists():
            return []
        return sorted(p.name for p in self.local.glob("step-*")
                      if STEP.fullmatch(p.name) and p.is_dir() and not p.is_symlink() and (p / COMPLETE).exists())

    def latest_name(self) -> str | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def latest(self) -> Path | None:
        """The newest complete step as a local folder, or None when the stage starts fresh."""
        name = self.latest_name()
        return self.fetch(name) if name else None

    def fetch(self, name: str) -> Path:
        """The local folder of complete step `name`; from a remote store it is downloaded once, into a temp folder
        renamed at the end (a killed download is never taken for a complete step), and older copies go."""
        if not STEP.fullmatch(name):
            raise ValueError(f"in-stage checkpoints {self.remote or self.local}: {name!r} is not a step folder name")
        target = self.local / name
        if self.remote is None or (target / COMPLETE).exists():
            return target
        tmp = self.local / f".fetch-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        self._storage.download_dir(join(self.remote, name), tmp)
        for old in self.local.glob("step-*"):
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
        return target

    def begin(self, step: int) -> Path:
        """A fresh local folder to write step `step` into (one rank calls this; the others write into the same
        path). A partial upload of this step left by a killed run is dropped first."""
        tmp = self.local / f".tmp-step-{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.remote is not None:
            self._storage.delete_prefix(join(self.remote, _name(step)))
        return tmp

    def share(self, step: int, folder: Path, files: Iterable[Path]) -> None:
        """Remote store: upload `files` (the ones this rank wrote into `folder`) to the step and drop them here.
        Local store: nothing to do, the folder is shared."""
        if self.remote is None:
            return
        dest = join(self.remote, _name(step))
        for f in files:
            self._storage.upload_file(f, join(dest, f.relative_to(folder).as_posix()))
            f.unlink()

    def commit(self, step: int, folder: Path) -> None:
        """Make `folder` step-NNNNNN once every writer is done: the rest of its files, then the `.complete` marker;
        then drop the oldest steps beyond `keep`."""
        name = _name(step)
        if self.remote is None:
            (folder / COMPLETE).write_text(str(step))
            final = self.local / name
            shutil.rmtree(final, ignore_errors=True)
            folder.rename(final)
            for old in self.steps()[:-self.keep]:
                shutil.rmtree(self.local / old, ignore_errors=True)
            return
        self.share(step, folder, sorted(p for p in folder.rglob("*") if p.is_file()))
        self._storage.write_bytes(join(self.remote, name, COMPLETE), str(step).encode())
        shutil.rmtree(folder, ignore_errors=True)
        for old in self.steps()[:-self.keep]:
            self._storage.delete_prefix(join(self.remote, old))

    @contextlib.contextmanager
    def saving(self, step: int) -> Iterator[Path]:
        """Yield a temp folder to write step `step` into; it becomes step-NNNNNN only if the block succeeds."""
        tmp = self.begin(step)
        yield tmp
        self.commit(step, tmp)

    def clear(self, everywhere: bool = True) -> None:
        """Drop the in-stage checkpoints once the stage's artifact is committed (`everywhere=False`: only the local
        copies, as ranks other than 0 do on their machines)."""
        if everywhere and self.remote is not None:
            self._storage.delete_prefix(self.remote)
        shutil.rmtree(self.local, ignore_errors=True)


def _name(step: int) -> str:
    return f"step-{step:06d}"
