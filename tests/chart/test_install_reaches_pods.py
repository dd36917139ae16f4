"""A platform team's values reach every pod: render release `myrel` with its own registry, pull secret, S3 Secret,
GPU pool, work volume, timeout and job ServiceAccount (ci/team-install-values.yaml); compile the pipeline the way
the registration Job does (its init container's own command, on the rendered ConfigMap's files); then every image,
Secret, ConfigMap, pull secret, selector and volume in the compiled IR and in each kind of launched job manifest
is the install's, and every Secret and ConfigMap a pod names is rendered or is the install's existing one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_chart import CHART, HELM, helm

from olmoflow.registry import stage as stage_entry

pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not installed: run scripts/install_k8s_tools.sh")

TEAM = CHART / "ci" / "team-install-values.yaml"
RELEASE, NAMESPACE = "myrel", "team-llm"
REGISTRY = "harbor.team.example/llm/"
CONFIG_MAP = "myrel-olmoflow-cluster"
POOL = {"team.example/gpu-pool": "h200-a"}
POOL_TOLERATION = {"key": "team.example/gpu", "operator": "Equal", "value": "h200", "effect": "NoSchedule"}


def walk(obj, key: str):
    """Every value under `key` anywhere in a nested manifest."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk(v, key)


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    """The rendered release, and the pipeline compiled as its registration Job compiles it."""
    from olmoflow.cli import main

    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(TEAM),
               "--set", "s3.existingSecret=team-s3").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # Lay out the pod's mounts in a folder: the ConfigMap's keys as files, the work emptyDir empty.
    root = tmp_path_factory.mktemp("pod")
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    mounts = {}
    for m in init["volumeMounts"]:
        where = root / m["mountPath"].lstrip("/")
        where.mkdir(parents=True)
        if "configMap" in volumes[m["name"]]:
            for key, text in config_maps[volumes[m["name"]]["configMap"]["name"]]["data"].items():
                (where / key).write_text(text)
        mounts[m["mountPath"]] = where

    def local(arg: str) -> str:
        flag, eq, path = arg.partition("=")
        for mount, where in mounts.items():
            if eq and path.startswith(mount + "/"):
                return f"{flag}={where}{path[len(mount):]}"
        return arg

    assert init["command"][0] == "olmoflow"
    # The Job also writes the Kubernetes-native manifests (the same IR inside a PipelineVersion) that register.py
    # never reads; skipping them halves the compile time.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("olmoflow.flow.pipeline.compile_k8s", lambda ir, out_dir, settings=None: Path(out_dir))
        assert main([local(a) for a in init["command"][1:]]) == 0
    register_file = next(a for a in pod["containers"][0]["command"] if a.startswith("--file="))
    ir = Path(local(register_file).partition("=")[2])
    spec, platform = yaml.safe_load_all(ir.read_text())
    cluster_json = mounts["/etc/olmoflow"] / "cluster.json"
    return docs, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], cluster_json


def test_every_task_pod_uses_the_installs_images_names_pool_and_volume(install):
    docs, spec, executors, _ = install
    rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["image_tag"]["defaultValue"] == "0.1.0-cu128"
    assert params["gpu_node_selector"]["defaultValue"] == POOL
    assert params["gpu_tolerations"]["defaultValue"] == [POOL_TOLERATION]
    containers = spec["deploymentSpec"]["executors"]
    assert set(containers) == set(executors)
    for name, executor in containers.items():
        image = executor["container"]["image"]
        assert image.startswith(REGISTRY) and image.split(":")[0] in (REGISTRY + "olmoflow-trainer",
                                                                       REGISTRY + "olmoflow-curate"), name
        p = executors[name]
        assert [s["secretName"] for s in p["secretAsEnv"]] == ["team-s3", "mlflow-pipeline-user"], name
        names = {c["configMapName"] for c in p["configMapAsEnv"] + p["configMapAsVolume"]}
        assert names == {CONFIG_MAP} and ("ConfigMap", CONFIG_MAP) in rendered, name
        assert p["imagePullSecret"] == [{"secretName": "harbor-pull",
                                          "secretNameParameter": {"runtimeValue": {"constant": "harbor-pull"}}}]
        assert p["activeDeadlineSeconds"] == "259200", name
        # the work volume: an ephemeral PVC of the install's size and class at its absolute mount point
        [work] = p["genericEphemeralVolume"]
        assert (work["mountPath"], work["storageClassName"], work["size"]) == ("/scratch", "local-nvme", "500Gi")
        env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
        assert env["OLMOFLOW_HOME"] == "/scratch/.olmoflow" and env["HOME"] == env["TMPDIR"] == "/scratch", name
        if "nodeSelector" in p:  # a GPU task: the pool (a run parameter defaulting to the install's), /dev/shm
            assert p["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
            assert {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "64Gi", "volumeName": "dshm"} in \
                p["emptyDirMounts"], name


@pytest.mark.parametrize("stage,backend,kind", [("pretrain", "trainjob", "TrainJob"),
                                                ("sft", "pytorchjob", "PyTorchJob"),
                                                ("curate", "trainjob", "RayJob")])
def test_every_launched_job_uses_the_installs_images_secrets_and_pool(install, stage, backend, kind):
    from olmoflow.cluster.config import ClusterConfig, load_cluster_config
    from olmoflow.cluster.jobs import stage_job

    docs, _, _, cluster_json = install
    cfg = load_cluster_config(cluster_json)
    cfg = ClusterConfig.model_validate({**cfg.model_dump(), "train_backend": backend})
    job = stage_job(cfg, stage, ["olmoflow", "stage", stage], nodes=2, name=f"{stage}-x")
    assert job["kind"] == kind and job["metadata"]["namespace"] == NAMESPACE
    images = list(walk(job, "image"))
    repo = "olmoflow-curate:0.1.0" if stage == "curate" else "olmoflow-trainer:0.1.0-cu128"
    assert images and set(images) == {REGISTRY + repo}
    refs = {r["name"] for r in walk(job, "secretKeyRef")}
    assert refs == {"team-s3", "mlflow-pipeline-user"}
    assert [s for pulls in walk(job, "imagePullSecrets") for s in pulls] and \
        all(pulls == [{"name": "harbor-pull"}] for pulls in walk(job, "imagePullSecrets"))
    assert set(map(str, walk(job, "serviceAccountName"))) == {"llm-jobs"}
    selectors = list(walk(job, "nodeSelector"))
    if stage_entry(stage).gpus:
        assert selectors and all(s == POOL for s in selectors)
        assert all(POOL_TOLERATION in t for t in walk(job, "tolerations"))
    claims = [v["ephemeral"]["volumeClaimTemplate"]["spec"] for vs in walk(job, "volumes") for v in vs
              if v["name"] == "work"]
    assert claims and all(c["storageClassName"] == "local-nvme" and c["resources"]["requests"]["storage"] == "500Gi"
                          for c in claims)
    assert all({"name": "work", "mountPath": "/scratch"} in m for m in walk(job, "volumeMounts"))
    env = {e["name"]: e.get("value") for es in walk(job, "env") for e in es}
    assert env["OLMOFLOW_SOURCES"] == "s3://team-llm-flows/sources" and env["OLMOFLOW_HOME"] == "/scratch/.olmoflow"
