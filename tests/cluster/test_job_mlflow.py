"""A multi-node stage's MLflow record: the job's command carries `--flow-run`, so the run the job's rank 0 opens
(here: the job's own `olmoflow stage` command, run in this process by a fake launcher) is nested under the flow's
parent run, and the launching task adds no second run for it; a cached stage still gets its own record."""

from __future__ import annotations

import json
import types

import pytest

from olmoflow.cli import main
from olmoflow.config import load_config
from olmoflow.flow import runner, task

FLOW_RUN = "kfp-1234"


def _fake_curate(ctx):
    (ctx.out / "tokens.txt").write_text("tokens")
    return {}


def _fake_pretrain(ctx):
    (ctx.out / "payload.txt").write_text("weights")
    ctx.log_metrics({"loss": 3.0}, step=1)
    return {"val_loss": 2.5}


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mods = {"curate": types.SimpleNamespace(run=_fake_curate), "pretrain": types.SimpleNamespace(run=_fake_pretrain)}
    monkeypatch.setattr(runner, "stage_module", lambda s: mods[s])
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"namespace": "ml", "gpus_per_node": 8}))
    monkeypatch.setenv("OLMOFLOW_CLUSTER_CONFIG", str(cluster))
    return load_config("smoke", [f"flow.store={tmp_path / 'store'}"])


def test_the_jobs_stage_run_is_nested_under_the_flow(cfg):
    from olmoflow.tracking import Tracker

    data = runner.run_stage("curate", cfg, {})
    launched = []

    def launch(manifest):
        command = manifest["spec"]["trainer"]["command"]
        argv = command[command.index("olmoflow") + 1:]
        launched.append(argv)
        assert main(argv) == 0

    result = task.run_on_nodes("pretrain", cfg, {"dataset": data.uri}, 4, FLOW_RUN, launch=launch)
    (argv,) = launched
    assert argv[argv.index("--flow-run") + 1] == FLOW_RUN

    tracker = Tracker(cfg.flow.name, FLOW_RUN)
    parent = tracker.parent_run_id(create=False)
    (stage_run,) = tracker.stage_runs()  # the job's run; the launcher added none
    assert stage_run.data.tags["mlflow.parentRunId"] == parent
    assert tracker.client.get_run(parent).data.tags["olmoflow.flow_run"] == FLOW_RUN
    assert stage_run.info.run_id == result.manifest["mlflow_run_id"]
    assert stage_run.data.tags["olmoflow.status"] == "ran" and stage_run.data.tags["olmoflow.nodes"] == "4"
    assert stage_run.data.metrics["val_loss"] == 2.5
    assert {"manifest.json", "stage.log"} <= {a.path for a in tracker.client.list_artifacts(stage_run.info.run_id)}

    # Another flow run finds the artifact: no job, and a "cached" record that points at the job's run.
    other = Tracker(cfg.flow.name, "kfp-5678")
    again = task.run_on_nodes("pretrain", cfg, {"dataset": data.uri}, 4, "kfp-5678", launch=launch)
    assert again.status == "cached" and len(launched) == 1
    (cached,) = other.stage_runs()
    assert cached.data.tags["olmoflow.made_by_run"] == stage_run.info.run_id
    assert cached.data.tags["mlflow.parentRunId"] == other.parent_run_id(create=False)
