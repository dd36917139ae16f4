"""MLflow as a training user opens it (olmoflow/tracking.py): flow experiments are model development, `make ui`'s
URL leads to a flow's runs, a stage run in this process gets system metrics and stops sampling when it ends, and
the Model Registry holds one version per stage behind an alias per stage. One sqlite database for the module (a
fresh one costs its schema migrations); each test uses its own flow name."""

from __future__ import annotations

import threading

import pytest

from olmoflow.tracking import EXPERIMENT_KIND, TAG_EXPERIMENT_KIND, Tracker, runs_view_urls


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.chdir(root)  # run artifacts (./mlruns) stay in the test's folder
        yield f"sqlite:///{root}/mlflow.db"


def test_flow_experiments_are_model_development(uri):
    t = Tracker("kind-new", "r1")
    assert t.client.get_experiment(t.experiment_id).tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND
    # one made before flows were tagged gets tagged; a kind the user chose stays
    old = t.client.create_experiment("kind-old")
    mine = t.client.create_experiment("kind-mine", tags={TAG_EXPERIMENT_KIND: "genai_development"})
    Tracker("kind-old", "r1"), Tracker("kind-mine", "r1")
    assert t.client.get_experiment(old).tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND
    assert t.client.get_experiment(mine).tags[TAG_EXPERIMENT_KIND] == "genai_development"


def test_ui_urls_lead_to_each_flows_runs(uri, tmp_path):
    t = Tracker("ui-flow", "r1")
    t.parent_run_id()
    untagged = t.client.create_experiment("ui-old-flow")  # a flow tracked before experiments were tagged
    t.client.create_run(untagged, tags={"olmoflow.kind": "flow"})
    t.client.create_experiment("not-a-flow")
    urls = dict(runs_view_urls("http://127.0.0.1:5000/", uri))
    assert urls["ui-flow"] == f"http://127.0.0.1:5000/#/experiments/{t.experiment_id}/runs?workflowType=machine_learning"
    assert urls["ui-old-flow"] == f"http://127.0.0.1:5000/#/experiments/{untagged}/runs?workflowType=machine_learning"
    assert "not-a-flow" not in urls and "Default" not in urls
    assert t.client.get_experiment(untagged).tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND
    assert runs_view_urls(uri=f"sqlite:///{tmp_path}/none.db") == []
    assert not (tmp_path / "none.db").exists()


def test_a_running_stage_gets_system_metrics_until_it_ends(uri):
    t = Tracker("sysmetrics", "r1")
    ran = t.start_stage("sft", "fp", "/store/sft/fp", {}, status="running")
    assert any(th.name == "SystemMetricsMonitor" and th.is_alive() for th in threading.enumerate())
    t.end_stage(ran)
    assert not any(th.name == "SystemMetricsMonitor" and th.is_alive() for th in threading.enumerate())
    system = {k for k in t.client.get_run(ran).data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    cached = t.record_stage("dpo", "fp", "/store/dpo/fp", {}, status="cached", metrics={"loss": 1.0})
    assert not any(k.startswith("system/") for k in t.client.get_run(cached).data.metrics)


def test_more_metrics_than_one_mlflow_batch(uri):
    t = Tracker("many-metrics", "r1")
    run = t.record_stage("model-flow", "fp", "/store/mf/fp", {}, status="ran",
                         metrics={f"sft/task{i}/acc": i / 1500 for i in range(1500)})
    assert len(t.client.get_run(run).data.metrics) == 1500


def test_stage_versions_with_aliases(uri, tmp_path):
    import mlflow

    t = Tracker("registry-flow", "r1")
    run = t.start_stage("model-flow", "fp", "/store/mf/fp", {}, status="running")
    exports = []
    for stage in ("pretrain", "sft"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "config.json").write_text(f'{{"stage": "{stage}"}}')
        exports.append((stage, tmp_path / stage))
    assert t.register_model_versions("registry-flow", exports, run) == {"pretrain": "1", "sft": "2"}
    t.end_stage(run)
    sft = t.client.get_model_version_by_alias("registry-flow", "sft")
    assert str(sft.version) == "2" and sft.run_id == run and sft.tags["olmoflow.stage"] == "sft"
    assert str(t.client.get_model_version_by_alias("registry-flow", "pretrain").version) == "1"
    got = mlflow.artifacts.download_artifacts("models:/registry-flow@sft", dst_path=str(tmp_path / "got"))
    assert (tmp_path / "got" / "config.json").read_text() == '{"stage": "sft"}', got
    # a second flow run adds versions and moves the aliases; the newest version is the last stage's
    t2 = Tracker("registry-flow", "r2")
    run2 = t2.start_stage("model-flow", "fp2", "/store/mf/fp2", {}, status="running")
    assert t2.register_model_versions("registry-flow", exports, run2) == {"pretrain": "3", "sft": "4"}
    t2.end_stage(run2)
    assert str(t.client.get_model_version_by_alias("registry-flow", "sft").version) == "4"
