"""The stage runner: caching by fingerprint, input checks, failures leave nothing half-written, MLflow records."""

import types

import pytest

from olmoflow.artifacts import ArtifactError, open_artifact
from olmoflow.config import load_config
from olmoflow.flow import runner
from olmoflow.flow.runner import StageError, run_stage

CALLS = []


def _fake(fail=False):
    """A stage module: its inputs, output kind and headline are its registry entry's."""
    def run(ctx):
        CALLS.append(ctx.stage)
        if fail:
            raise RuntimeError("boom")
        (ctx.out / "payload.txt").write_text(f"{ctx.stage} {sorted(ctx.inputs)}")
        ctx.log_metrics({"loss": 1.5}, step=1)
        return {"loss": 1.25}
    return types.SimpleNamespace(run=run)


@pytest.fixture
def fake_stages(monkeypatch):
    mods = {"curate": _fake(), "pretrain": _fake(), "midtrain": _fake()}
    monkeypatch.setattr(runner, "stage_module", lambda s: mods[s])
    CALLS.clear()
    return mods


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load_config("smoke", [f"flow.store={tmp_path / 'store'}"])


def test_run_then_cached(fake_stages, cfg):
    data = run_stage("curate", cfg, {})
    assert data.status == "ran" and CALLS == ["curate"]
    ckpt = run_stage("pretrain", cfg, {"dataset": data.uri})
    again = run_stage("pretrain", cfg, {"dataset": data.uri})
    assert again.status == "cached" and again.uri == ckpt.uri and CALLS == ["curate", "pretrain"]
    assert again.metrics == {"loss": 1.25}
    art = open_artifact(ckpt.uri, kind="checkpoint")
    assert (art.path / "payload.txt").read_text() == "pretrain ['dataset']"
    assert art.manifest["inputs"]["dataset"]["fingerprint"] == data.fingerprint
    assert "stage.log" in art.manifest["files"]


def test_changed_config_reruns_only_that_stage(fake_stages, cfg):
    data = run_stage("curate", cfg, {})
    ckpt = run_stage("pretrain", cfg, {"dataset": data.uri})
    changed = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"lr": 0.5})})
    assert run_stage("curate", changed, {}).status == "cached"
    new = run_stage("pretrain", changed, {"dataset": data.uri})
    assert new.status == "ran" and new.uri != ckpt.uri
    # midtrain's config did not change, but its input did: it runs again too
    m1 = run_stage("midtrain", cfg, {"dataset": data.uri, "checkpoint": ckpt.uri})
    m2 = run_stage("midtrain", changed, {"dataset": data.uri, "checkpoint": new.uri})
    assert m1.uri != m2.uri


def test_input_errors(fake_stages, cfg):
    data = run_stage("curate", cfg, {})
    with pytest.raises(StageError, match="stage pretrain: missing input 'dataset'"):
        run_stage("pretrain", cfg, {})
    with pytest.raises(StageError, match=r"stage curate: unexpected input 'dataset' \(it takes: none\)"):
        run_stage("curate", cfg, {"dataset": data.uri})
    with pytest.raises(StageError, match=r"unexpected input 'model' \(it takes: dataset, checkpoint\)"):
        run_stage("pretrain", cfg, {"dataset": data.uri, "model": data.uri})
    with pytest.raises(ArtifactError, match="is a dataset artifact .* expected a checkpoint"):
        run_stage("midtrain", cfg, {"dataset": data.uri, "checkpoint": data.uri})
    assert CALLS == ["curate"]


def test_failed_stage_writes_no_artifact(fake_stages, cfg, monkeypatch):
    data = run_stage("curate", cfg, {})
    fake_stages["pretrain"] = _fake(fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_stage("pretrain", cfg, {"dataset": data.uri})
    stage_dir = cfg.flow.store + "/smoke/pretrain"
    import pathlib
    leftovers = list(pathlib.Path(stage_dir).glob("*")) if pathlib.Path(stage_dir).exists() else []
    assert not [p for p in leftovers if (p / "manifest.json").exists()]
    assert not [p for p in leftovers if ".staging" in p.name]


def test_mlflow_records_nested_runs(fake_stages, cfg, tmp_path, monkeypatch):
    from olmoflow.tracking import Tracker
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    data = run_stage("curate", cfg, {}, flow_run="r1")
    run_stage("curate", cfg, {}, flow_run="r2")
    t1, t2 = Tracker(cfg.flow.name, "r1"), Tracker(cfg.flow.name, "r2")
    (made,), (cached,) = t1.stage_runs(), t2.stage_runs()
    assert made.data.tags["olmoflow.status"] == "ran" and cached.data.tags["olmoflow.status"] == "cached"
    assert cached.data.tags["olmoflow.made_by_run"] == made.info.run_id
    assert made.data.tags["mlflow.parentRunId"] == t1.parent_run_id(create=False)
    assert made.data.tags["olmoflow.artifact_uri"] == data.uri
    assert made.data.metrics["loss"] == 1.25
    hist = t1.client.get_metric_history(made.info.run_id, "loss")
    assert {(m.step, m.value) for m in hist} >= {(1, 1.5)}
    names = {a.path for a in t1.client.list_artifacts(made.info.run_id)}
    assert {"manifest.json", "config.json", "stage.log"} <= names


def test_s3_store_round_trip(fake_stages, tmp_path, monkeypatch, s3_uri):
    """The same contract over s3:// (a moto server on 127.0.0.1): run, reuse, tamper detection."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config("smoke", [f"flow.store={s3_uri}"])
    data = run_stage("curate", cfg, {})
    assert data.uri.startswith(s3_uri) and data.status == "ran"
    ckpt = run_stage("pretrain", cfg, {"dataset": data.uri})
    assert run_stage("pretrain", cfg, {"dataset": data.uri}).status == "cached"
    art = open_artifact(ckpt.uri, kind="checkpoint", cache_dir=tmp_path / "other-machine")
    assert (art.path / "payload.txt").read_text() == "pretrain ['dataset']"
    from olmoflow.storage import join, storage_for
    storage_for(ckpt.uri).write_bytes(join(ckpt.uri, "payload.txt"), b"tampered")
    with pytest.raises(ArtifactError, match="payload.txt fails its checksum"):
        open_artifact(ckpt.uri, cache_dir=tmp_path / "third-machine")


def test_s3_work_dir_resumes_on_a_fresh_machine(tmp_path, monkeypatch, s3_uri):
    """In-stage checkpoints go up to `{uri}.work/` and come back on a machine with an empty cache."""
    from olmoflow.artifacts import ArtifactStore
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore(s3_uri, "flow", cache_dir=tmp_path / "a")
    uri = store.uri("pretrain", "f" * 16)
    work = runner.work_dir(store, "pretrain", "f" * 16, uri)
    for step in (1, 2, 3, 4):
        with work.saving(step) as d:
            (d / "state.txt").write_text(f"step {step}")
    fresh = runner.work_dir(ArtifactStore(s3_uri, "flow", cache_dir=tmp_path / "b"), "pretrain", "f" * 16, uri)
    latest = fresh.latest()
    assert latest.name == "step-000004" and (latest / "state.txt").read_text() == "step 4"
    from olmoflow.storage import storage_for
    kept = {k.split("/")[0] for k in storage_for(uri).list(uri + ".work")}
    assert kept == {"step-000002", "step-000003", "step-000004"}
    fresh.clear()
    assert storage_for(uri).list(uri + ".work") == []


def test_a_one_process_stage_is_refused_under_torchrun(fake_stages, cfg, monkeypatch):
    """A stage that does not split its work over ranks would run whole on each of them (and race on its files)."""
    from olmoflow.train.world import World
    monkeypatch.setattr(World, "current", classmethod(lambda cls: cls(0, 2)))
    with pytest.raises(StageError, match="stage curate runs in one process; it cannot run on 2 ranks"):
        run_stage("curate", cfg, {})
    assert CALLS == []


def test_a_dataset_made_without_an_optional_source_has_its_own_address(tmp_path):
    """Which optional sources are absent changes what curate writes, so it is part of curate's fingerprint; with every
    source present the fingerprint is the config's alone (the same as before optional sources existed)."""
    from olmoflow.artifacts import ArtifactStore, fingerprint
    from olmoflow.config import from_dict
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("x = 1\n")
    cfg = from_dict({"curate": {"sources_dir": str(tmp_path), "sources": [
        {"name": "code", "path": "code/*.py", "domain": "code"},
        {"name": "docs", "path": "docs/*.rst", "domain": "prose", "required": False}]}})
    store = ArtifactStore(str(tmp_path / "store"), "f")
    without, _ = runner.address(store, "curate", cfg, {})
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.rst").write_text("Some prose.\n")
    present, _ = runner.address(store, "curate", cfg, {})
    assert present == fingerprint("curate", cfg.stage_config("curate"), {}) != without
