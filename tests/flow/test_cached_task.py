"""A cached or skipped KFP task stays light under `olmoflow run`: it reads manifests and spools its MLflow record,
importing neither torch nor MLflow, and the flow's driver replays the records as the same cached / skipped runs."""

import json
import os
import subprocess
import sys
import textwrap

from olmoflow.artifacts import ArtifactStore
from olmoflow.config import load_config, to_json
from olmoflow.flow.runner import address
from olmoflow.tracking import SPOOL_ENV, Tracker, flatten

# Both tasks in one fresh process, as kfp.local starts them: pretrain is cached (a stage that trains on every rank,
# on a pool of 8 GPUs: the GPU count needs torch, the cache does not) and the last stage of the plan; midtrain is
# after --to, so skipped.
TASKS = textwrap.dedent("""
    import json, sys, types
    from olmoflow.flow.task import run_task
    config, dataset, out = sys.argv[1], sys.argv[2], sys.argv[3]
    pool = {"nodes": 1, "gpus_per_node": 8}
    for stage, inputs in (("pretrain", {"dataset": types.SimpleNamespace(metadata={"uri": dataset})}),
                          ("midtrain", {"dataset": None, "checkpoint": None})):
        output = types.SimpleNamespace(path=f"{out}-{stage}", metadata={})
        run_task(stage, config, [], "curate", "pretrain", "", "flow-1", "", inputs, output, pool=pool)
        print(json.dumps(output.metadata))
    print(json.dumps(sorted(m for m in ("torch", "mlflow", "ray", "transformers") if m in sys.modules)))
""")


def commit(store: ArtifactStore, stage: str, fp: str, uri: str, kind: str) -> None:
    staging = store.staging_dir(stage, fp)
    (staging / "payload.txt").write_text(stage)
    store.commit(staging, uri, {"stage": stage, "fingerprint": fp, "kind": kind, "metrics": {"loss": 2.5},
                                "headline": "loss", "mlflow_run_id": f"made-{stage}"})


def test_cached_and_skipped_tasks_spool_their_records_without_torch_or_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    cfg = load_config("smoke", [f"flow.store={tmp_path / 'store'}"])
    store = ArtifactStore(cfg.flow.store, cfg.flow.name)
    data_fp, data_uri = address(store, "curate", cfg, {})
    commit(store, "curate", data_fp, data_uri, "dataset")
    ckpt_fp, ckpt_uri = address(store, "pretrain", cfg, {"dataset": data_fp})
    commit(store, "pretrain", ckpt_fp, ckpt_uri, "checkpoint")

    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**os.environ, SPOOL_ENV: str(spool)}
    done = subprocess.run([sys.executable, "-c", TASKS, to_json(cfg), data_uri, str(tmp_path / "out")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    pretrain, midtrain, heavy = (json.loads(line) for line in done.stdout.splitlines()[-3:])
    assert heavy == []
    assert pretrain["status"] == "cached" and pretrain["uri"] == ckpt_uri and midtrain["status"] == "skipped"
    assert len(list(spool.glob("*.json"))) == 2

    tracker = Tracker(cfg.flow.name, "flow-1")
    parent = tracker.parent_run_id()
    assert tracker.replay(spool) == 2 and tracker.replay(spool) == 0  # a record is written once
    cached, skipped = tracker.stage_runs()  # oldest first: the order the tasks ran in
    assert cached.data.tags["olmoflow.stage"] == "pretrain" and skipped.data.tags["olmoflow.stage"] == "midtrain"
    assert cached.data.tags["olmoflow.status"] == "cached" and skipped.data.tags["olmoflow.status"] == "skipped"
    assert cached.data.tags["olmoflow.made_by_run"] == "made-pretrain"
    assert cached.data.tags["mlflow.parentRunId"] == parent and cached.data.metrics == {"loss": 2.5}
    assert cached.data.tags["olmoflow.artifact_uri"] == ckpt_uri
    assert cached.data.params == flatten(cfg.stage_config("pretrain"))
    assert skipped.data.tags["olmoflow.skip_reason"] == "after --to pretrain"
    assert cached.info.status == "FINISHED" and tracker.client.get_run(parent).info.status == "RUNNING"
