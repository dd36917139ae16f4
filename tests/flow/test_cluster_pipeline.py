"""The pipeline as a cluster sees it: every task's pod settings in the compiled YAML, the checked-in Kubernetes
manifests are current, and a multi-node stage launches a job (a fake launcher that runs the job's own command)."""

import json
import shlex
import shutil
import subprocess
import types

import pytest
import yaml

from olmoflow import __version__
from olmoflow.artifacts import ArtifactError, read_manifest
from olmoflow.cli import main
from olmoflow.cluster.config import ClusterConfig
from olmoflow.cluster.register import version_name
from olmoflow.cluster.settings import CONFIG_MAP_ENV, S3_KEYS, PipelineSettings, from_cluster_config, load_settings
from olmoflow.config import load_config, to_json
from olmoflow.flow import runner, task
from olmoflow.flow.pipeline import IR_PATH, K8S_DIR, REPO_ROOT, compile_all, compile_ir
from olmoflow.registry import CHECKPOINT_STAGES, REGISTRY, STAGES
from olmoflow.registry import stage as stage_entry

HELM = shutil.which("helm") or shutil.which("helm", path=str(REPO_ROOT / ".venv" / "bin"))


def leaf_tasks(spec: dict) -> dict[str, dict]:
    """Every task that runs a container, by display name ("pretrain", "pretrain (job)"), from all DAG levels."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    executors = spec["deploymentSpec"]["executors"]
    return {t["taskInfo"]["name"]: t for d in dags for t in d["tasks"].values()
            if t["componentRef"]["name"].replace("comp-", "exec-") in executors}


def _compiled(tmp_path, settings=None):
    spec, platform_spec = yaml.safe_load_all(compile_ir(tmp_path / "p.yaml", settings).read_text())
    tasks = leaf_tasks(spec)
    containers = spec["deploymentSpec"]["executors"]
    platform = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    by_name = {name: t["componentRef"]["name"].replace("comp-", "exec-") for name, t in tasks.items()}
    return ({s: containers[e]["container"] for s, e in by_name.items()},
            {s: platform[e] for s, e in by_name.items()}, tasks, spec["root"]["inputDefinitions"]["parameters"])


def _param(name: str) -> str:
    return f"{{{{$.inputs.parameters['pipelinechannel--{name}']}}}}"


def test_gpu_tasks_get_gpus_pool_secret_and_config_map(tmp_path):
    containers, platform, tasks, params = _compiled(tmp_path)
    steps = {s for s in STAGES if not stage_entry(s).per_checkpoint} | {f"eval-{s}" for s in CHECKPOINT_STAGES}
    assert set(tasks) == steps | {f"{s.name} (job)" for s in REGISTRY if s.multi_node}
    for name in tasks:
        c, p = containers[name], platform[name]
        stage, launcher = name.removesuffix(" (job)"), name.endswith(" (job)")
        stage = "eval" if stage.startswith("eval-") else stage
        repo = "olmoflow/curate" if stage == "curate" else "olmoflow/trainer"
        assert c["image"] == f"{repo}:{_param('image_tag')}"
        if stage_entry(stage).gpus and not launcher:
            # the run form's GPUs per node and GPU pool reach the pod spec
            assert c["resources"]["accelerator"] == {"resourceType": "nvidia.com/gpu", "type": "nvidia.com/gpu",
                                                     "resourceCount": _param("gpus_per_node")}, name
            # (a task inside a branch sees the parameter as pipelinechannel--NAME, eval at the top level as NAME)
            assert p["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
            [toleration] = p["tolerations"]
            assert toleration["tolerationJson"]["componentInputParameter"].endswith("gpu_tolerations")
        else:  # curate, and every pod that only launches a multi-node job: no GPU, schedulable anywhere
            assert "accelerator" not in c["resources"] and "tolerations" not in p and "nodeSelector" not in p
            assert c["resources"]["resourceCpuRequest"] == "2" and c["resources"]["resourceMemoryRequest"] == "8Gi"
        secret = p["secretAsEnv"][0]
        assert secret["secretName"] == "olmoflow-s3" and secret["optional"] is True
        assert {e["envVar"] for e in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        required = p["configMapAsEnv"][0]
        assert required["configMapName"] == "olmoflow-cluster" and not required["optional"]
        assert {e["envVar"] for e in required["keyToEnv"]} == {"OLMOFLOW_STORE", "MLFLOW_TRACKING_URI"}
        assert p["configMapAsVolume"] == [{"configMapName": "olmoflow-cluster", "mountPath": "/etc/olmoflow",
                                           "optional": False,
                                           "configMapNameParameter": {"runtimeValue":
                                                                      {"constant": "olmoflow-cluster"}}}]
        assert {"name": "OLMOFLOW_CLUSTER_CONFIG", "value": "/etc/olmoflow/cluster.json"} in c["env"]
        assert p["activeDeadlineSeconds"] == str(7 * 24 * 3600)
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3
        assert tasks[name]["retryPolicy"]["backoffDuration"] == "60s"
        assert not tasks[name].get("cachingOptions", {}).get("enableCache", False)
    # the run form's defaults work as they are
    assert params["image_tag"]["defaultValue"] == __version__ and params["gpus_per_node"]["defaultValue"] == 8
    assert params["gpu_tolerations"]["defaultValue"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                          "effect": "NoSchedule"}]
    assert params["gpu_node_selector"]["defaultValue"] == {}
    assert {k: v["defaultValue"] for k, v in params.items() if k.startswith("nodes_")} == \
        {f"nodes_{s.section}": 1 for s in REGISTRY if s.multi_node}


@pytest.mark.skipif(HELM is None, reason="helm is not installed: run scripts/install_k8s_tools.sh")
def test_defaults_are_what_the_chart_renders_for_release_olmoflow():
    out = subprocess.run([HELM, "template", "olmoflow", str(REPO_ROOT / "charts" / "olmoflow"), "-n", "kubeflow",
                          "-f", str(REPO_ROOT / "charts/olmoflow/ci/minimal-values.yaml"),
                          "--set", "s3.accessKeyId=k", "--set", "s3.secretAccessKey=s"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    defaults = PipelineSettings()
    config_map = docs[("ConfigMap", defaults.cluster_config_map)]
    assert set(CONFIG_MAP_ENV) <= set(config_map["data"])
    assert set(docs[("Secret", defaults.s3_secret)]["stringData"]) == set(S3_KEYS)
    cluster = ClusterConfig.model_validate_json(config_map["data"]["cluster.json"])
    assert from_cluster_config(cluster) == defaults  # GPU pool, timeout and Secret as values.yaml has them


def test_settings_from_the_charts_cluster_json(tmp_path):
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"gpus_per_node": 4, "gpu_resource": "amd.com/gpu", "s3_secret": "my-keys",
                                   "trainer_image": "registry.internal:5000/ml/trainer:2.0",
                                   "node_selector": {"pool": "h100"},
                                   "tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes",
                                                    "effect": "NoExecute"}]}))
    extra = tmp_path / "settings.yaml"
    extra.write_text("nodes: {pretrain: 16}\n")
    settings = load_settings(extra, cluster)
    containers, platform, _, params = _compiled(tmp_path, settings)
    assert containers["sft"]["resources"]["accelerator"]["resourceType"] == "amd.com/gpu"
    assert containers["sft"]["image"] == f"registry.internal:5000/ml/trainer:{_param('image_tag')}"
    assert platform["curate"]["secretAsEnv"][0]["secretName"] == "my-keys"
    # the install's pool becomes the run form's defaults
    assert params["gpus_per_node"]["defaultValue"] == 4 and params["image_tag"]["defaultValue"] == "2.0"
    assert params["gpu_node_selector"]["defaultValue"] == {"pool": "h100"}
    assert params["gpu_tolerations"]["defaultValue"] == [{"key": "gpu", "operator": "Equal", "value": "yes",
                                                          "effect": "NoExecute"}]
    assert params["nodes_pretrain"]["defaultValue"] == 16 and params["nodes_sft"]["defaultValue"] == 1


def test_bad_settings_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "s.yaml"
    bad.write_text("nodes: {pretrian: 2}\n")
    with pytest.raises(ValueError, match=r"s.yaml: nodes: unknown stage 'pretrian' \(stages: curate, "):
        load_settings(bad)
    bad.write_text("nodes: {eval: 2}\n")
    with pytest.raises(ValueError, match=r"s.yaml: nodes: eval: runs in one process on one node"):
        load_settings(bad)
    bad.write_text("gpus: 8\n")
    assert main(["compile", "--settings", str(bad), "--output", str(tmp_path / "o.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"olmoflow: config error: pipeline settings {bad}: gpus: unknown key"
    assert not (tmp_path / "o.yaml").exists()


def test_checked_in_k8s_manifests_are_current(tmp_path):
    ir, k8s = compile_all(tmp_path / "model_flow.yaml", tmp_path / "k8s")
    checked_in = K8S_DIR / "model_flow.yaml"
    assert checked_in.read_text() == k8s.read_text(), "pipelines/k8s is stale: run `olmoflow compile`"
    pipeline, version = yaml.safe_load_all(checked_in.read_text())
    assert (pipeline["kind"], version["kind"]) == ("Pipeline", "PipelineVersion")
    assert version["spec"]["pipelineName"] == pipeline["metadata"]["name"] == "olmo3-model-flow"
    # the version is named after the checked-in IR, as the chart's registration names its REST version
    assert version["spec"]["displayName"] == version_name(__version__, IR_PATH)
    assert version["spec"]["pipelineSpec"]["root"] == next(yaml.safe_load_all(IR_PATH.read_text()))["root"]


# ---- the multi-node branch of run_task ----

def _fake():
    """A stage module: its inputs, output kind and headline are its registry entry's."""
    def run(ctx):
        (ctx.out / "payload.txt").write_text(ctx.stage)
        return {"loss": 2.5}
    return types.SimpleNamespace(run=run)


class Out:
    """A KFP output artifact as the executor hands it to a component."""

    def __init__(self, path):
        self.path, self.metadata = str(path), {}


@pytest.fixture
def flow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mods = {"curate": _fake(), "pretrain": _fake()}
    monkeypatch.setattr(runner, "stage_module", lambda s: mods[s])
    # The fake curate reads no sources, but `olmoflow stage curate` (the job's command) checks them first.
    monkeypatch.setattr("olmoflow.data.sources.check_sources", lambda cfg: ([], []))
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"namespace": "ml", "gpus_per_node": 8}))
    monkeypatch.setenv("OLMOFLOW_CLUSTER_CONFIG", str(cluster))
    return load_config("smoke", [f"flow.store={tmp_path / 'store'}"])


def job_command(manifest: dict) -> list[str]:
    """The `olmoflow stage ...` argv inside a TrainJob's torchrun or a RayJob's entrypoint."""
    if manifest["kind"] == "RayJob":
        argv = shlex.split(manifest["spec"]["entrypoint"])
    else:
        argv = manifest["spec"]["trainer"]["command"]
    return argv[argv.index("olmoflow"):]


def test_multi_node_stage_launches_a_job_and_fills_the_output(flow, tmp_path, monkeypatch, capsys):
    launched = []

    def launcher(manifest):  # the job runs its own command, in this process
        launched.append(manifest)
        assert main(job_command(manifest)[1:]) == 0

    monkeypatch.setattr(task, "launch_job", launcher)
    pool = dict(nodes=4, gpus_per_node=2, node_selector={"pool": "a100"}, image="olmoflow/trainer:9.9",
                tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}])
    data = Out(tmp_path / "dataset")
    task.run_task("curate", to_json(flow), [], "curate", "midtrain", "", "", "", {}, data,
                  pool={**pool, "image": "olmoflow/curate:9.9"})
    ckpt = Out(tmp_path / "checkpoint")
    task.run_task("pretrain", to_json(flow), [], "curate", "midtrain", "", "", "", {"dataset": data}, ckpt,
                  pool=pool)

    assert [m["kind"] for m in launched] == ["RayJob", "TrainJob"]
    ray, train = launched
    assert ray["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 4
    assert train["spec"]["trainer"]["numNodes"] == 4 and train["metadata"]["namespace"] == "ml"
    # the run's pool wins over cluster.json (8 GPUs, no selector): GPUs, selector, tolerations, image
    assert train["spec"]["trainer"]["image"] == "olmoflow/trainer:9.9"
    assert train["spec"]["trainer"]["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "2"}
    assert ray["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == \
        "olmoflow/curate:9.9"
    assert job_command(train)[:3] == ["olmoflow", "stage", "pretrain"]
    assert f"dataset={data.metadata['uri']}" in job_command(train)
    printed = capsys.readouterr().out.split()
    assert [data.metadata["uri"], ckpt.metadata["uri"]] == printed  # what `olmoflow stage` printed in the job
    assert ckpt.metadata["status"] == "ran" and ckpt.metadata["kind"] == "checkpoint"
    assert json.loads(open(ckpt.path).read()) == read_manifest(ckpt.metadata["uri"])

    # the artifact exists now: a rerun launches nothing
    again = Out(tmp_path / "again")
    task.run_task("pretrain", to_json(flow), [], "curate", "midtrain", "", "", "", {"dataset": data}, again,
                  pool=pool)
    assert len(launched) == 2 and again.metadata["status"] == "cached"
    assert again.metadata["uri"] == ckpt.metadata["uri"]


def test_a_job_that_publishes_nothing_fails_the_stage(flow):
    launched = []
    with pytest.raises(ArtifactError, match=r"store/smoke/curate/[0-9a-f]+"):
        task.run_on_nodes("curate", flow, {}, 2, launch=launched.append)
    assert launched[0]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 2


def test_a_bad_pool_from_the_run_form_names_the_stage(flow):
    with pytest.raises(ValueError, match=r"^pretrain: pipeline parameters: .*"):
        task.job_cluster("pretrain", {"nodes": 2, "gpus_per_node": -1})
    bad_toleration = {"nodes": 2, "tolerations": [{"key": "gpu", "operator": "Sometimes"}]}
    with pytest.raises(ValueError, match=r"^pretrain: pipeline parameters: "):
        task.job_cluster("pretrain", bad_toleration)
