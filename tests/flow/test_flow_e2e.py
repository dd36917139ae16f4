"""End to end: the `smoke` flow through kfp.local, an all-cached re-run, --from/--init, --to, and bad input.

One module-scoped flow run is shared by the tests below (the whole flow takes a few minutes on 2 cores).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmoflow.flow.plan import Plan
from olmoflow.registry import CHECKPOINT_STAGES, STAGES

STEPS = Plan().ordered()
"""Every step of a full run: the stages, with eval once per checkpoint stage (eval-pretrain ... eval-rlvr)."""

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / ".olmoflow" / "sources"

pytestmark = pytest.mark.slow


def olmoflow(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    command, rest = args[0], list(args[1:])
    return subprocess.run([sys.executable, "-m", "olmoflow.cli", command, "--config", "smoke",
                           "--set", f"curate.sources_dir={SOURCES}", "--set", f"flow.store={cwd}/store", *rest],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def statuses(cwd: Path) -> dict[str, str]:
    """Stage → status of the newest flow run, read back from MLflow."""
    from mlflow import MlflowClient
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    exp = client.get_experiment_by_name("smoke")
    parent = client.search_runs([exp.experiment_id], "tags.`olmoflow.kind` = 'flow'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    flow_run = parent.data.tags["olmoflow.flow_run"]
    runs = client.search_runs([exp.experiment_id], f"tags.`olmoflow.flow_run` = '{flow_run}'")
    assert parent.info.status == "FINISHED"
    return {r.data.tags["olmoflow.stage"]: r.data.tags["olmoflow.status"] for r in runs
            if "olmoflow.stage" in r.data.tags}


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    if not (SOURCES / "python-stdlib" / ".done").exists():
        pytest.skip("demo data missing: run `make data`")
    cwd = tmp_path_factory.mktemp("flow")
    first = olmoflow(cwd, "run")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return cwd, first


def artifact(cwd: Path, stage: str) -> Path:
    (path,) = [p for p in (cwd / "store" / "smoke" / stage).iterdir() if (p / "manifest.json").exists()]
    return path


def test_full_flow_runs_every_stage(flow):
    cwd, first = flow
    assert statuses(cwd) == {s: "ran" for s in STEPS}
    for stage in STAGES:
        if stage == "eval":
            continue
        manifest = json.loads((artifact(cwd, stage) / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["files"]
    evals = [json.loads((p / "manifest.json").read_text()) for p in (cwd / "store" / "smoke" / "eval").iterdir()
             if (p / "manifest.json").exists()]
    assert sorted(m["step"] for m in evals) == sorted(f"eval-{s}" for s in CHECKPOINT_STAGES)
    for step in STEPS:  # the summary table names every step
        assert f"\n{step} " in first.stdout
    assert "make ui" in first.stdout


def test_every_stage_is_evaluated_and_gathered(flow):
    """The model-flow report holds every checkpoint stage's scores, base suite for the base stages and chat suite
    for the post-trained ones, and the Model Registry has a version per stage behind its alias."""
    cwd, _ = flow
    report = artifact(cwd, "model-flow")
    res = json.loads((report / "results.json").read_text())
    assert list(res["stages"]) == list(CHECKPOINT_STAGES)
    assert "hellaswag" in res["stages"]["pretrain"] and "ifbench" in res["stages"]["sft"]
    assert res["stages"]["pretrain"]["arc_easy"]["n"] == 4  # smoke's eval.limit
    html = (report / "report.html").read_text()
    assert "rlvr" in html and "http://" not in html and "https://" not in html
    from mlflow import MlflowClient
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    versions = {s: client.get_model_version_by_alias("smoke", s).version for s in CHECKPOINT_STAGES}
    assert sorted(int(v) for v in versions.values()) == list(range(1, 7))


def test_rerun_is_all_cached(flow):
    cwd, _ = flow
    again = olmoflow(cwd, "run")
    assert again.returncode == 0, again.stderr[-3000:]
    assert statuses(cwd) == {s: "cached" for s in STEPS}
    # the cached run's parent run still opens on the model-flow report
    from mlflow import MlflowClient
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    exp = client.get_experiment_by_name("smoke")
    parent = client.search_runs([exp.experiment_id], "tags.`olmoflow.kind` = 'flow'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert [f.path for f in client.list_artifacts(parent.info.run_id, "model-flow")] == ["model-flow/report.html"]


def test_from_sft_with_init_runs_only_the_rest(flow):
    cwd, _ = flow
    init = artifact(cwd, "long-context")
    res = olmoflow(cwd, "run", "--from", "sft", "--init", str(init), "--set", "sft.lr=0.0003")
    assert res.returncode == 0, res.stderr[-3000:]
    got = statuses(cwd)
    assert got["curate"] == "cached"
    assert [got[s] for s in ("pretrain", "midtrain", "long-context")] == ["skipped"] * 3
    assert [got[s] for s in ("sft", "dpo", "rlvr", "eval-sft", "eval-dpo", "eval-rlvr")] == ["ran"] * 6
    assert got["eval-pretrain"] == "skipped" and got["model-flow"] == "ran"


def test_to_pretrain_stops_there(flow):
    cwd, _ = flow
    res = olmoflow(cwd, "run", "--to", "pretrain")
    assert res.returncode == 0, res.stderr[-3000:]
    got = statuses(cwd)
    assert got["curate"] == got["pretrain"] == "cached"
    assert all(got[s] == "skipped" for s in STEPS if s not in ("curate", "pretrain"))


def test_bad_init_and_bad_stage(flow):
    cwd, _ = flow
    dataset = artifact(cwd, "curate")
    res = olmoflow(cwd, "run", "--from", "sft", "--init", str(dataset))
    assert res.returncode == 1 and "is a dataset artifact" in res.stderr and "needs a checkpoint" in res.stderr
    res = olmoflow(cwd, "run", "--from", "sftt")
    assert res.returncode == 2 and "--from: unknown stage 'sftt'" in res.stderr
    res = olmoflow(cwd, "run", "--from", "sft")
    assert res.returncode == 2 and "needs --init" in res.stderr
    res = olmoflow(cwd, "run", "--init", str(cwd / "nowhere"), "--from", "sft")
    assert res.returncode == 1 and "not a complete artifact" in res.stderr


def test_killed_stage_resumes_from_its_last_checkpoint(flow):
    """SIGKILL `olmoflow stage pretrain` after its first in-stage checkpoint; the rerun picks up from there."""
    import signal
    import time
    cwd, _ = flow
    dataset = artifact(cwd, "curate")
    args = ["stage", "pretrain", "--input", f"dataset={dataset}", "--set", "pretrain.steps=40",
            "--set", "pretrain.checkpoint_every=4"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    cmd = [sys.executable, "-m", "olmoflow.cli", *args, "--config", "smoke", "--set",
           f"curate.sources_dir={SOURCES}", "--set", f"flow.store={cwd}/store"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    steps = []
    while time.time() < deadline and proc.poll() is None:
        steps = list((cwd / "store" / "smoke" / "pretrain").glob("*.work/step-*/.complete"))
        if steps:
            break
        time.sleep(0.2)
    assert steps and proc.poll() is None, "no in-stage checkpoint appeared before the stage ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "pretrain: resuming at step" in res.stderr
    uri = res.stdout.strip().splitlines()[-1]
    assert (Path(uri) / "manifest.json").exists() and not Path(uri + ".work").exists()
