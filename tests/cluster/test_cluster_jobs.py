"""Job manifests: field names against the published CRD models, pods against Kubernetes' own schema, torchrun args
against torch's own parser, and the HSDP mesh / GPU / secret wiring."""

from __future__ import annotations

import copy
import json
import shlex

import kubernetes_validate
import pytest
from crd_schema import TRAINJOB_MODEL, unknown_fields

from olmoflow.cluster.config import ClusterConfig, load_cluster_config
from olmoflow.cluster.jobs import (
    JobSpec,
    job_name,
    job_spec,
    pytorch_job,
    ray_job,
    stage_job,
    torchrun_command,
    train_job,
)

KUBE_VERSIONS = ("1.33.0", "1.36.0")
CMD = ["olmoflow", "stage", "pretrain", "--config", "olmo3-7b", "--set", "pretrain.lr=1e-4"]
CFG = ClusterConfig(
    namespace="ml", s3_secret="olmoflow-s3", s3_endpoint="http://minio.storage:9000",
    mlflow_tracking_uri="http://olmoflow-mlflow.ml:5000", cpu="96", memory="1500Gi",
    node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    tolerations=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}], service_account="olmoflow",
    # a private registry, an ephemeral work volume and MLflow auth: the field and strict checks below cover them
    image_pull_secrets=["regcred"], work_dir="/scratch", work_volume="ephemeral", work_size="500Gi",
    work_storage_class="local-nvme", mlflow_secret="mlflow-user", sources_uri="s3://flows/sources")


def spec(nodes: int = 4, name: str = "pretrain-1a2b3c4d-beef", **kw) -> JobSpec:
    return job_spec(CFG, "pretrain", CMD, nodes=nodes, name=name, **kw)


def all_manifests() -> dict[str, dict]:
    # the RayJob with GPU workers: curate's RayJob has none, the builder supports them
    return {"TrainJob": train_job(spec()), "PyTorchJob": pytorch_job(spec()),
            "RayJob": ray_job(spec(nodes=2, name="ray-1a2b3c4d-beef"))}


def pod_templates(m: dict) -> list[dict]:
    if m["kind"] == "PyTorchJob":
        return [r["template"] for r in m["spec"]["pytorchReplicaSpecs"].values()]
    if m["kind"] == "RayJob":
        c = m["spec"]["rayClusterSpec"]
        return [c["headGroupSpec"]["template"]] + [w["template"] for w in c["workerGroupSpecs"]]
    return []


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("kind", ["TrainJob", "PyTorchJob", "RayJob"])
def test_every_field_is_in_the_crd_model(kind):
    assert unknown_fields(all_manifests()[kind]) == []


@pytest.mark.parametrize("kind,path,typo", [
    ("TrainJob", ("spec", "trainer"), "numNode"),
    ("TrainJob", ("spec", "runtimePatches", 0), "podSpec"),
    ("PyTorchJob", ("spec", "runPolicy"), "cleanPodPolicies"),
    ("PyTorchJob", ("spec", "pytorchReplicaSpecs", "Master", "template", "spec", "containers", 0), "envs"),
    ("RayJob", ("spec", "rayClusterSpec", "workerGroupSpecs", 0), "replica"),
    ("RayJob", ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec"), "nodeSelectors"),
])
def test_the_field_check_catches_a_typo(kind, path, typo):
    m = copy.deepcopy(all_manifests()[kind])
    node = m
    for p in path:
        node = node[p]
    node[typo] = 1
    assert typo in unknown_fields(m)[0]


def test_trainjob_parses_as_the_trainer_api_model():
    m = train_job(spec())
    job = TRAINJOB_MODEL.from_dict(m)  # strict types: numNodes int, numProcPerNode int, ...
    assert (job.spec.trainer.num_nodes, job.spec.trainer.num_proc_per_node) == (4, 8)
    assert job.spec.runtime_ref.name == "torch-distributed"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("kind", ["PyTorchJob", "RayJob"])
def test_pod_templates_pass_kubernetes_strict_validation(kind, version):
    templates = pod_templates(all_manifests()[kind])
    assert templates
    for t in templates:
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": t}
        kubernetes_validate.validate(pod_template, version, strict=True)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_trainjob_pod_patch_is_a_valid_pod_spec_fragment(version):
    # The patch is a partial pod: give it the image a runtime would, then validate it as a whole pod.
    patch = train_job(spec())["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    pod = copy.deepcopy(patch["replicatedJobs"][0]["template"]["spec"]["template"])
    pod["spec"]["containers"][0]["image"] = "x"
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"},
                                  "template": pod}, version, strict=True)


def test_torchrun_args_parse_with_torchs_own_parser():
    from torch.distributed.run import parse_args

    for cmd in (train_job(spec())["spec"]["trainer"]["command"],
                pytorch_job(spec())["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
                    "command"]):
        assert cmd[0] == "torchrun"
        a = parse_args(cmd[1:])
        assert (a.nnodes, a.nproc_per_node, a.rdzv_backend, a.rdzv_id) == ("4", "8", "c10d", "pretrain-1a2b3c4d-beef")
        assert a.no_python and a.max_restarts == 0 and a.rdzv_conf == "join_timeout=1800"
        assert [a.training_script, *a.training_script_args] == CMD


def test_rendezvous_uses_each_operators_own_master_address():
    trainer_cmd = train_job(spec())["spec"]["trainer"]["command"]
    master = pytorch_job(spec())["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert "--rdzv-endpoint=$(PET_MASTER_ADDR):$(PET_MASTER_PORT)" in trainer_cmd
    assert "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)" in master["command"]
    assert master["name"] == "pytorch"  # the operator injects MASTER_ADDR and its port into this container only


def test_hsdp_mesh_shape_and_node_count():
    tj = train_job(spec(nodes=4))["spec"]["trainer"]
    env = {e["name"]: e.get("value") for e in tj["env"]}
    assert (env["OLMOFLOW_REPLICATE"], env["OLMOFLOW_SHARD"]) == ("4", "8")
    assert (tj["numNodes"], tj["numProcPerNode"]) == (4, 8)

    pj = pytorch_job(spec(nodes=4))["spec"]
    assert pj["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    assert pj["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
    assert pj["nprocPerNode"] == "8"
    worker_env = env_of(pj["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0])
    assert worker_env["OLMOFLOW_REPLICATE"]["value"] == "4" and worker_env["OLMOFLOW_SHARD"]["value"] == "8"
    assert "Worker" not in pytorch_job(spec(nodes=1))["spec"]["pytorchReplicaSpecs"]


def test_trainjob_sets_no_env_the_trainer_webhook_reserves():
    # kubeflow/trainer pkg/constants TorchRunReservedEnvNames: the admission webhook rejects these in trainer.env
    reserved = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
    assert not reserved & {e["name"] for e in train_job(spec())["spec"]["trainer"]["env"]}


def test_gpu_pool_placement_and_resources():
    tj = train_job(spec())["spec"]
    assert tj["trainer"]["resourcesPerNode"] == {
        "requests": {"cpu": "96", "memory": "1500Gi", "nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}}
    pod = tj["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"][
        "spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "olmoflow"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}} in pod["volumes"]


def test_secrets_are_referenced_never_inlined():
    for m in all_manifests().values():
        text = json.dumps(m)
        assert '"secretKeyRef": {"name": "olmoflow-s3", "key": "AWS_SECRET_ACCESS_KEY"}' in text
        for t in pod_templates(m):
            env = env_of(t["spec"]["containers"][0])
            assert "value" not in env["AWS_ACCESS_KEY_ID"] and env["MLFLOW_TRACKING_URI"]["value"].startswith("http")


def _pods(m: dict) -> list[dict]:
    """Every pod spec of a manifest, the TrainJob's runtime patch included."""
    if m["kind"] == "TrainJob":
        return [m["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
            "template"]["spec"]["template"]["spec"]]
    return [t["spec"] for t in pod_templates(m)]


def test_every_pod_pulls_with_the_secret_and_writes_to_the_sized_work_volume():
    for m in all_manifests().values():
        for pod in _pods(m):
            assert pod["imagePullSecrets"] == [{"name": "regcred"}], m["kind"]
            work = next(v for v in pod["volumes"] if v["name"] == "work")
            assert work["ephemeral"]["volumeClaimTemplate"]["spec"] == {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "500Gi"}},
                "storageClassName": "local-nvme"}
            assert {"name": "work", "mountPath": "/scratch"} in pod["containers"][0]["volumeMounts"]
        env = [e for es in _envs(m) for e in es]
        plain = {e["name"]: e.get("value") for e in env}
        assert plain["OLMOFLOW_HOME"] == "/scratch/.olmoflow" and plain["HOME"] == plain["TMPDIR"] == "/scratch"
        assert plain["OLMOFLOW_SOURCES"] == "s3://flows/sources"
        assert {"name": "MLFLOW_TRACKING_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "mlflow-user", "key": "MLFLOW_TRACKING_PASSWORD"}}} in env
    # the default: an emptyDir capped at the size, no pull secrets
    plain_cfg = ClusterConfig(namespace="ml")
    pod = pytorch_job(job_spec(plain_cfg, "pretrain", CMD, nodes=2))["spec"]["pytorchReplicaSpecs"]["Master"][
        "template"]["spec"]
    assert {"name": "work", "emptyDir": {"sizeLimit": "200Gi"}} in pod["volumes"] and "imagePullSecrets" not in pod


def _envs(m: dict) -> list[list[dict]]:
    if m["kind"] == "TrainJob":
        return [m["spec"]["trainer"]["env"]]
    return [t["spec"]["containers"][0]["env"] for t in pod_templates(m)]


def test_a_relative_work_dir_is_refused_in_one_line(tmp_path):
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"work_dir": ".olmoflow"}))
    with pytest.raises(ValueError) as e:
        load_cluster_config(path)
    assert str(e.value) == f"cluster config {path}: work_dir: must be an absolute path (got " \
                           "'.olmoflow'): a pod's working directory is read-only"


def test_pods_run_as_non_root_with_a_read_only_root():
    for m in all_manifests().values():
        for t in pod_templates(m):
            assert t["spec"]["securityContext"]["runAsNonRoot"] is True
            c = t["spec"]["containers"][0]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_rayjob_shape():
    rj = ray_job(spec(nodes=2, name="ray-x"))["spec"]
    assert shlex.split(rj["entrypoint"]) == CMD
    head, workers = rj["rayClusterSpec"]["headGroupSpec"], rj["rayClusterSpec"]["workerGroupSpecs"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head only runs the driver
    assert "nodeSelector" not in head["template"]["spec"]  # the head needs no GPU node
    assert (workers[0]["replicas"], workers[0]["minReplicas"], workers[0]["maxReplicas"]) == (2, 2, 2)
    worker = workers[0]["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert worker["nodeSelector"] == CFG.node_selector
    assert rj["rayClusterSpec"]["rayVersion"] == __import__("ray").__version__


def test_curate_runs_on_cpu_with_the_curate_image():
    rj = stage_job(CFG, "curate", ["olmoflow", "stage", "curate"], nodes=3, name="curate-x")
    worker = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["containers"][0]["image"] == CFG.curate_image
    assert "nvidia.com/gpu" not in json.dumps(worker) and "nodeSelector" not in worker


def test_rlvr_runs_as_a_rayjob_whose_workers_hold_the_gpus():
    """RLVR's learner and rollout actors are Ray actors asking for GPUs: only the workers have any, the head (the
    driver) neither GPUs nor CPUs for Ray work, so nothing trains on it."""
    rj = stage_job(CFG, "rlvr", ["olmoflow", "stage", "rlvr"], nodes=2, name="rlvr-x")
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]
    worker = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert rj["kind"] == "RayJob" and shlex.split(rj["spec"]["entrypoint"]) == ["olmoflow", "stage", "rlvr"]
    assert head["rayStartParams"]["num-gpus"] == "0" and head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in json.dumps(head)
    assert worker["rayStartParams"]["num-gpus"] == "8" and worker["replicas"] == 2
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert worker["template"]["spec"]["containers"][0]["image"] == CFG.trainer_image


def test_a_stage_that_runs_in_one_process_has_no_job():
    for stage in ("trace-index", "eval"):
        with pytest.raises(ValueError, match=f"stage {stage} runs in one process on one node; it has no multi-node"):
            stage_job(CFG, stage, CMD, nodes=2, name=f"{stage}-x")


@pytest.mark.parametrize("backend,kind", [("trainjob", "TrainJob"), ("pytorchjob", "PyTorchJob")])
def test_train_stages_use_the_configured_backend(backend, kind):
    cfg = CFG.model_copy(update={"train_backend": backend})
    m = stage_job(cfg, "sft", ["olmoflow", "stage", "sft"], nodes=2, name="sft-x")
    assert m["kind"] == kind and m["metadata"]["labels"]["olmoflow.io/stage"] == "sft"


def test_names_are_dns_labels_and_bad_ones_are_refused():
    name = job_name("long-context", "9f8e7d6c5b4a3210")
    assert name.startswith("long-context-9f8e7d6c-") and len(name) == len("long-context-9f8e7d6c-") + 4
    assert job_name("sft") != job_name("sft")  # unique per attempt
    with pytest.raises(ValueError, match="job name 'Pretrain_1': must be a DNS-1035 label"):
        spec(name="Pretrain_1")
    with pytest.raises(ValueError, match="job name '.*': must be a DNS-1035 label of at most 40"):
        spec(name="p" * 41)
    with pytest.raises(ValueError, match="job pretrain-x: nodes must be >= 1"):
        job_spec(CFG, "pretrain", CMD, nodes=0, name="pretrain-x")


def test_torchrun_on_cpu_nodes_runs_one_process_per_node():
    cmd = torchrun_command(spec(gpus_per_node=0), "A", "P")
    assert "--nproc-per-node=1" in cmd


def test_cluster_config_file_errors_name_the_file_and_key(tmp_path):
    good = tmp_path / "cluster.json"
    good.write_text(json.dumps({"train_backend": "pytorchjob", "gpus_per_node": 4}))
    assert load_cluster_config(good).gpus_per_node == 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gpus_per_nod": 4}))
    with pytest.raises(ValueError, match=f"cluster config {bad}: gpus_per_nod: unknown key"):
        load_cluster_config(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_cluster_config(tmp_path / "none.json")
