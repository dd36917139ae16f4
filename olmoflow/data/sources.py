"""Reading sources: a source is a glob of files, in a local folder or under an s3:// prefix, and a format that
turns each file into documents.

`check_sources` (preflight runs it too) proves every configured file is there before any compute (an optional
source, `required: false`, may be absent: it is set aside, not an error). Reading is
three steps, so that curate can run the middle one on many files at once: `plan_files` lists a source's files
(for one-document-per-file formats already cut to max_docs), `read_file` turns one file into raw documents (bytes
for plain files, str for parsed formats), and `choose` keeps max_docs of a source's documents by hash.
`read_source` is the three in a row. Errors are one line, `ValueError("curate: source 'NAME': ...")`, for a glob
that matches nothing or a file that cannot be read, naming the path or URI.

On S3 a glob is matched against the object keys with glob's own rules (`*` stays within a folder, `**` spans
folders, a name starting with '.' only matches a pattern that starts with '.'), files are sorted as paths are, and
a document's id names its file relative to sources_dir: a sources folder copied to S3 reads exactly as the
original, and curate makes the same artifact from either.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import html
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from olmoflow.data.config import CurateConfig, SourceConfig
from olmoflow.storage import StorageError, is_remote, join, storage_for


@dataclass
class RawDoc:
    id: str
    """Where it came from: the file (relative to sources_dir) and, for multi-document files, a position."""
    data: bytes | str


@dataclass(frozen=True)
class SourceFile:
    uri: str
    """A local path or an s3:// URI."""
    rel: str
    """The path relative to sources_dir (the whole path or URI when outside it): names the file's documents."""

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]


def sources_root(cfg: CurateConfig) -> str:
    """sources_dir: a local folder or an s3:// prefix."""
    return cfg.sources_dir


# ---- finding files ---------------------------------------------------------------------------------------

def find(root: str | os.PathLike[str], pattern: str, what: str) -> list[SourceFile]:
    """Files matching a glob under root (or an absolute glob, or an s3:// one), sorted as paths; `**` spans
    folders. `what` names the config key in the one-line error of a listing that fails."""
    root = os.fspath(root)
    if is_remote(pattern) or is_remote(root):
        full = pattern if is_remote(pattern) else join(root, pattern)
        try:
            uris = _s3_glob(full)
        except StorageError as e:
            raise ValueError(f"curate: {what}: cannot list {full} ({e})") from None
        base = root.rstrip("/") + "/"
        return [SourceFile(u, u[len(base):] if u.startswith(base) else u) for u in uris]
    full = pattern if Path(pattern).is_absolute() else str(Path(root) / pattern)
    out = []
    for path in sorted(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file()):
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        out.append(SourceFile(str(path), rel))
    return out


def _s3_glob(pattern: str) -> list[str]:
    """URIs of the objects matching an s3:// glob: one listing under the longest folder without wildcards."""
    wild = re.search(r"[*?\[]", pattern)
    cut = pattern.rfind("/", 0, wild.start() if wild else len(pattern))
    base, rest = pattern[:cut], pattern[cut + 1:]
    rx = glob_regex(rest)
    keys = [k for k in storage_for(base).list(base) if rx.fullmatch(k)]
    return [f"{base}/{k}" for k in sorted(keys, key=lambda k: k.split("/"))]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for relative keys that matches what glob.glob(pattern, recursive=True) would match as paths."""
    parts = pattern.split("/")
    rx = ""
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "**":
            rx += r"(?:(?!\.)[^/]+/)*" + (r"(?!\.)[^/]+" if last else "")
            continue
        rx += ("" if seg.startswith(".") else r"(?!\.)") + _segment_regex(seg) + ("" if last else "/")
    return re.compile(rx)


def _segment_regex(seg: str) -> str:
    """One path segment of a glob as a regex (fnmatch's classes: [abc], [!abc], a leading ] is literal)."""
    out, i = [], 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1 + (seg[i + 1:i + 2] == "!")
            j += seg[j:j + 1] == "]"
            end = seg.find("]", j)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = seg[i + 1:end].replace("\\", "\\\\")
                body = "^" + body[1:] if body.startswith("!") else "\\" + body if body.startswith("^") else body
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def plan_files(src: SourceConfig, root: str | os.PathLike[str]) -> list[SourceFile]:
    """The files of a source to read: all that match, or for one-document-per-file formats with max_docs a
    choice by hash (so unchosen files are never opened), in path order."""
    files = find(root, src.path, f"source {src.name!r}")
    if not files:
        hint = "" if is_remote(src.path) or is_remote(root) else " (run `make data`?)"
        raise ValueError(f"curate: source {src.name!r}: path {src.path!r} matches no files under "
                         f"{os.fspath(root)}{hint}")
    if src.max_docs and src.format in ONE_PER_FILE and len(files) > src.max_docs:
        chosen = set(sorted(files, key=lambda f: _hash_order(f.rel))[:src.max_docs])
        files = [f for f in files if f in chosen]
    return files


def holdout_files(src: SourceConfig, root: str | os.PathLike[str]) -> list[SourceFile]:
    """The files of the source's holdout glob; none is an error."""
    files = find(root, src.holdout or "", f"source {src.name!r}: holdout")
    if not files:
        raise ValueError(f"curate: source {src.name!r}: holdout {src.holdout!r} matches no files under "
                         f"{os.fspath(root)}")
    return files


def absent_optional(cfg: CurateConfig) -> list[str]:
    """Names of the optional sources whose path matches no files under sources_dir (all of them when it is not
    there): what a dataset made from this folder lacks beyond what its config says."""
    root = sources_root(cfg)
    return [s.name for s in cfg.sources if not s.required and not find(root, s.path, f"source {s.name!r}")]


def split_sources(cfg: CurateConfig) -> tuple[list[SourceConfig], list[SourceConfig]]:
    """(sources to read, optional sources that are absent); a required source that is absent raises."""
    root = sources_root(cfg)
    if not is_remote(root) and not Path(root).is_dir():
        raise ValueError(f"curate: sources_dir {os.fspath(root)!r} is not a folder (run `make data`, or set "
                         "curate.sources_dir)")
    gone = set(absent_optional(cfg))
    present = [s for s in cfg.sources if s.name not in gone]
    for src in present:
        plan_files(src, root)  # raises, naming the source, for a required one that is absent
    return present, [s for s in cfg.sources if s.name in gone]


def check_sources(cfg: CurateConfig) -> tuple[list[SourceConfig], list[SourceConfig]]:
    """Every required source, post-training and eval file the config needs exists (one clear error otherwise);
    returns split_sources' (sources to read, absent optional sources)."""
    root = sources_root(cfg)
    split = split_sources(cfg)
    needs = {"post.sharegpt": (cfg.post.sharegpt, cfg.post.sft_conversations),
             "post.hhh": (cfg.post.hhh, 1 if cfg.post.dpo_hhh is None else cfg.post.dpo_hhh),
             "eval.arc_easy": (cfg.eval.arc_easy, 1)}
    for key, (pattern, count) in needs.items():
        if count and not find(root, pattern, key):
            hint = "" if is_remote(pattern) or is_remote(root) else " (run `make data`?)"
            raise ValueError(f"curate: {key} {pattern!r} matches no files under {root}{hint}")
    tok = cfg.tokenizer.path
    if tok is not None and not find(root, tok, "tokenizer.path"):
        raise ValueError(f"curate: tokenizer.path {tok!r} is not a file under {root}")
    return split


def local_files(root: str | os.PathLike[str], pattern: str, what: str, tmp: Path) -> list[Path]:
    """Local paths of the files matching a glob, downloading those on S3 into `tmp` (for readers that take a
    path: the post-training and eval files, the tokenizer)."""
    out = []
    for k, f in enumerate(find(root, pattern, what)):
        if not is_remote(f.uri):
            out.append(Path(f.uri))
            continue
        dest = tmp / f"{hashlib.sha256(f.uri.encode()).hexdigest()[:12]}-{k}" / f.name  # keeps the suffix
        try:
            storage_for(f.uri).download_file(f.uri, dest)
        except StorageError as e:
            raise ValueError(f"curate: {what}: cannot read {f.uri} ({e})") from None
        out.append(dest)
    return out


# ---- formats ---------------------------------------------------------------------------------------------

def _decompressed(data: bytes, name: str) -> bytes:
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".bz2"):
        return bz2.decompress(data)
    return data


def read_text(data: bytes, f: SourceFile, src: SourceConfig) -> Iterator[RawDoc]:
    yield RawDoc(f.rel, _decompressed(data, f.name))


# Sphinx labels (.. _name:), comments-only directives and the SPDX tag carry no prose.
_RST_NOISE = re.compile(rb"^(?:\.\. _[^\n]*:|\.\. (?:index|highlight|toctree|only|module|currentmodule|"
                        rb"sectionauthor|moduleauthor|versionadded|versionchanged)::[^\n]*|"
                        rb"\.\. SPDX-License-Identifier:[^\n]*)\n", re.MULTILINE)


def read_rst(data: bytes, f: SourceFile, src: SourceConfig) -> Iterator[RawDoc]:
    yield RawDoc(f.rel, _RST_NOISE.sub(b"", _decompressed(data, f.name)))


def read_lines(data: bytes, f: SourceFile, src: SourceConfig) -> Iterator[RawDoc]:
    for i, line in enumerate(_decompressed(data, f.name).split(b"\n")):
        if line.strip():
            yield RawDoc(f"{f.rel}#{i}", line)


def _json_lines(data: bytes, name: str) -> Iterator[tuple[int, dict]]:
    for i, line in enumerate(_decompressed(data, name).decode("utf-8").split("\n")):
        if line.strip():
            yield i, json.loads(line)


def read_jsonl(data: bytes, f: SourceFile, src: SourceConfig) -> Iterator[RawDoc]:
    for i, row in _json_lines(data, f.name):
        if isinstance(row.get(src.text_field), str):
            yield RawDoc(f"{f.rel}#{i}", row[src.text_field])


def read_parquet(data: bytes, f: SourceFile, src: SourceConfig) -> Iterator[RawDoc]:
    """One document per row's text_field (a string or binary column; null rows are skipped)."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(io.BytesIO(data))
    names = table.schema_arrow.names
    if src.text_field not in names:
        raise ValueError(f"no column {src.text_field!r} (columns: {', '.join(names)})")
    for i, text in enumerate(table.read(columns=[src.text_field]).column(0).to_pylist()):
        if isinstance(text, (str, bytes)):
            yield RawDoc(f"{f.rel}#{i}", text)


def read_minerva(data: bytes, f: SourceFile, src: SourceConfig) -> Iterator[RawDoc]:
    for i, row in _json_lines(data, f.name):
        doc = row["doc"]
        yield RawDoc(f"{f.rel}#{i}", f"Problem:\n{doc['problem']}\n\nSolution:\n{doc['solution']}")


def read_mediawiki(data: bytes, f: SourceFile, src: SourceConfig) -> Iterator[RawDoc]:
    """Main-namespace, non-redirect pages of a MediaWiki XML dump, markup stripped."""
    # Decompressed as it is parsed: a dump's XML is many times its .bz2.
    stream = bz2.open(io.BytesIO(data), "rb") if f.name.endswith(".bz2") else io.BytesIO(data)
    with stream:
        for _, elem in ET.iterparse(stream):
            if elem.tag.rsplit("}", 1)[-1] != "page":
                continue
            fields = {child.tag.rsplit("}", 1)[-1]: child for child in elem}
            text = elem.find(".//{*}revision/{*}text")
            if fields.get("ns") is not None and fields["ns"].text == "0" and "redirect" not in fields \
                    and text is not None and text.text:
                title = fields["title"].text or ""
                yield RawDoc(f"{f.rel}#{title}", f"{title}\n\n{strip_wikitext(text.text)}")
            elem.clear()


_INNER_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_INNER_TABLE = re.compile(r"\{\|(?:(?!\{\|)[\s\S])*?\|\}")
_REFS = re.compile(r"<ref[^>/]*/>|<ref[^>]*>[\s\S]*?</ref>|<!--[\s\S]*?-->", re.IGNORECASE)
_TAGS = re.compile(r"</?[a-zA-Z][^>]*>")
_LINK = re.compile(r"\[\[(?!(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):)([^\[\]|]*\|)?([^\[\]]*)\]\]")
_MEDIA = re.compile(r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*\]\]")
_EXTERNAL = re.compile(r"\[(?:https?|ftp)://[^\s\]]+\s*([^\]]*)\]")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.MULTILINE)
_EMPHASIS = re.compile(r"'{2,}")
_LIST = re.compile(r"^[*#:;]+\s*", re.MULTILINE)


def _until_stable(pattern: re.Pattern, repl: str, text: str) -> str:
    """Apply a substitution of innermost constructs until nested ones are all gone."""
    while True:
        text, n = pattern.subn(repl, text)
        if n == 0:
            return text


def strip_wikitext(text: str) -> str:
    """Plain text of wiki markup: templates, tables, refs, media and category links removed; links and
    headings reduced to their words; HTML entities decoded."""
    text = _REFS.sub("", text)
    text = _until_stable(_INNER_TEMPLATE, "", text)
    text = _until_stable(_INNER_TABLE, "", text)
    text = _until_stable(_LINK, r"\2", text)
    text = _until_stable(_MEDIA, "", text)
    text = _EXTERNAL.sub(r"\1", text)
    text = _TAGS.sub("", text)
    text = _HEADING.sub(r"\2", text)
    text = _EMPHASIS.sub("", text)
    text = _LIST.sub("", text)
    return html.unescape(text).strip()


READERS: dict[str, Callable[[bytes, SourceFile, SourceConfig], Iterator[RawDoc]]] = {
    "text": read_text, "rst": read_rst, "lines": read_lines, "jsonl": read_jsonl, "parquet": read_parquet,
    "mediawiki": read_mediawiki, "minerva": read_minerva}
ONE_PER_FILE = {"text", "rst"}
# What a corrupt, truncated or mis-formatted file raises (pyarrow's errors derive from these too).
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, NotImplementedError, ET.ParseError, StorageError)


def _hash_order(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# ---- reading ---------------------------------------------------------------------------------------------

def read_file(src: SourceConfig, f: SourceFile) -> list[RawDoc]:
    """The raw documents of one file of a source."""
    try:
        data = storage_for(f.uri).read_bytes(f.uri) if is_remote(f.uri) else Path(f.uri).read_bytes()
        return list(READERS[src.format](data, f, src))
    except _UNREADABLE as e:
        raise ValueError(f"curate: source {src.name!r}: cannot read {f.uri} "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def choose(ids: list[str], max_docs: int) -> list[bool]:
    """keep[i]: document i is among the max_docs chosen by the hash of their ids (all when max_docs is 0 or
    there are no more than that); a stable choice spread over the files."""
    if not max_docs or len(ids) <= max_docs:
        return [True] * len(ids)
    chosen = set(sorted(ids, key=_hash_order)[:max_docs])
    return [i in chosen for i in ids]


def read_source(src: SourceConfig, root: str | os.PathLike[str]) -> list[RawDoc]:
    """A source's raw documents: at most max_docs, chosen by hash, in a stable order."""
    docs = [d for f in plan_files(src, root) for d in read_file(src, f)]
    return [d for d, keep in zip(docs, choose([d.id for d in docs], src.max_docs)) if keep]


def read_holdout(src: SourceConfig, root: str | os.PathLike[str]) -> list[RawDoc]:
    """The documents of the source's holdout glob (same format)."""
    return [d for f in holdout_files(src, root) for d in read_file(src, f)]
