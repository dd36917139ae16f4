"""Reading the eval sets' files: Arrow streams (OLMES's copies of HF datasets), gzipped OLMES requests files and
plain JSON lines; and the one-line error a bad row becomes."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pyarrow.ipc as ipc


class EvalRowError(ValueError):
    """A source row that does not convert (the converter says why; the loader names file, task and row)."""


def bad_row(task: str, path: Path, row: int | str, why: str) -> ValueError:
    return ValueError(f"curate: eval task {task}: {path} row {row}: {why}")


def arrow_rows(task: str, path: Path) -> list[dict]:
    try:
        with ipc.open_stream(str(path)) as reader:
            return reader.read_all().to_pylist()
    except (OSError, ValueError) as e:
        raise ValueError(f"curate: eval task {task}: {path}: not an Arrow stream ({e})") from None


def lines(task: str, path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-empty line of a (gzipped) JSON-lines file."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz"
              else open(path, encoding="utf-8")) as f:
            for n, text in enumerate(f, 1):
                if text.strip():
                    yield n, text
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"curate: eval task {task}: {path}: unreadable ({e})") from None
