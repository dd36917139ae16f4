"""Off Debian: with an `apt-get` that fails, `make data`'s fetch exits 0 naming the two Debian sources it could
not get, and the smoke flow trains to its last stage on the rest (its prose domain gone from the mixes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmoflow.data.fetch import SOURCES as FETCHED

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / ".olmoflow" / "sources"
DEBIAN = ("python-docs", "linux-docs")

pytestmark = pytest.mark.slow


def test_smoke_flow_without_apt_get(tmp_path):
    others = [s.name for s in FETCHED if s.name not in DEBIAN]
    if not all((SOURCES / n / ".done").exists() for n in others if n != "humaneval"):
        pytest.skip("demo data missing: run `make data`")
    sources = tmp_path / "sources"  # what `make data` left here, less the Debian sources (links: no copies)
    sources.mkdir()
    for n in others:
        if (SOURCES / n).exists():
            (sources / n).symlink_to(SOURCES / n)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    (bin_ / "apt-get").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}

    fetch = subprocess.run([sys.executable, "-m", "olmoflow.data.fetch", "--dest", str(sources)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert fetch.returncode == 0, fetch.stderr
    assert "optional sources unavailable: python-docs, linux-docs" in fetch.stderr
    table = {r["name"]: r["status"] for r in json.loads((sources / "sources.json").read_text())}
    assert [n for n, st in table.items() if st == "unavailable-optional"] == list(DEBIAN)

    # through the last training stage: the evaluations after it read nothing curate's sources decide (the e2e
    # test runs them), and six of them would double this test's time
    run = subprocess.run([sys.executable, "-m", "olmoflow.cli", "run", "--config", "smoke", "--to", "rlvr", "--set",
                          f"curate.sources_dir={sources}", "--set", f"flow.store={tmp_path}/store"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for stage in ("curate", "pretrain", "sft", "dpo", "rlvr"):
        assert f"\n{stage} " in run.stdout
    (curated,) = [p for p in (tmp_path / "store" / "smoke" / "curate").iterdir() if (p / "manifest.json").exists()]
    stats = json.loads((curated / "stats.json").read_text())
    assert set(stats["absent"]["sources"]) == set(DEBIAN)
    assert stats["absent"]["mix_domains"] == {"pretrain": ["prose"], "midtrain": ["prose"]}
    assert "prose" not in stats["mixes"]["pretrain"] and stats["train_tokens"] > 50_000
    assert "## Absent optional sources" in (curated / "report.md").read_text()
    (trained,) = [p for p in (tmp_path / "store" / "smoke" / "rlvr").iterdir() if (p / "manifest.json").exists()]
    assert json.loads((trained / "manifest.json").read_text())["metrics"]
