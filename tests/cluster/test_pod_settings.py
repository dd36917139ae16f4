"""apply_settings on a one-step pipeline per kind of task (a GPU stage in its pod, the same stage's launcher pod, a
CPU stage): the work volume and its env reach every pod, /dev/shm only the pods that hold GPUs, the pull secrets
and MLflow's client Secret every pod; a relative work root is refused in one line."""

from __future__ import annotations

import pytest
import yaml
from kfp import compiler, dsl

from olmoflow.cluster.settings import PipelineSettings, apply_settings, load_settings
from olmoflow.tracking import JOURNAL_ENV


@dsl.component(base_image="python:3.11")
def step():
    pass


def compiled(tmp_path, settings: PipelineSettings) -> tuple[dict, dict]:
    @dsl.pipeline(name="p")
    def p():
        for name, stage, launcher in (("gpu", "pretrain", False), ("launcher", "pretrain", True),
                                      ("cpu", "curate", False)):
            task = step().set_display_name(name)
            apply_settings(task, stage, settings, launcher=launcher, image="img:1", gpus_per_node=8,
                           node_selector={}, tolerations=[])

    compiler.Compiler().compile(p, str(tmp_path / "p.yaml"))
    spec, platform = yaml.safe_load_all((tmp_path / "p.yaml").read_text())
    names = {t["taskInfo"]["name"]: t["componentRef"]["name"].replace("comp-", "exec-")
             for t in spec["root"]["dag"]["tasks"].values()}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    containers = spec["deploymentSpec"]["executors"]
    return ({n: executors[e] for n, e in names.items()}, {n: containers[e]["container"] for n, e in names.items()})


def test_work_volume_shm_pull_secrets_and_mlflow_secret(tmp_path):
    settings = PipelineSettings(image_pull_secrets=["regcred"], mlflow_secret="mlflow-user", work_size="50Gi",
                                shm_size="16Gi")
    platform, containers = compiled(tmp_path, settings)
    for name, p in platform.items():
        mounts = {m["volumeName"]: m for m in p["emptyDirMounts"]}
        assert mounts["work"] == {"volumeName": "work", "mountPath": "/var/lib/olmoflow", "sizeLimit": "50Gi"}, name
        assert ("dshm" in mounts) == (name == "gpu"), name
        assert [s["secretName"] for s in p["imagePullSecret"]] == ["regcred"]
        assert [s["secretName"] for s in p["secretAsEnv"]] == ["olmoflow-s3", "mlflow-user"]
        env = {e["name"]: e["value"] for e in containers[name]["env"]}
        assert env["OLMOFLOW_HOME"] == "/var/lib/olmoflow/.olmoflow" and env["TMPDIR"] == "/var/lib/olmoflow"
        assert env[JOURNAL_ENV] == "/var/lib/olmoflow/.olmoflow/tracking-journal"
    assert {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "16Gi"} in \
        platform["gpu"]["emptyDirMounts"]
    # none configured: no pull secrets, no MLflow Secret
    plain, _ = compiled(tmp_path, PipelineSettings())
    assert all("imagePullSecret" not in p and len(p["secretAsEnv"]) == 1 for p in plain.values())


def test_a_relative_work_root_is_refused_in_one_line(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("work_dir: .olmoflow\n")
    with pytest.raises(ValueError) as e:
        load_settings(path)
    assert str(e.value) == f"pipeline settings {path}: work_dir: must be an absolute path (got '.olmoflow'): a " \
                           "pod's working directory is read-only"
