"""The Helm chart: lint, render with each values file, validate every resource with kubernetes-validate --strict,
reject bad values through values.schema.json, and hold the chart to the code it serves (the launcher's API calls,
ClusterConfig, MLflow's Host check, the registration CLI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "olmoflow"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
MINIMAL = CHART / "ci" / "minimal-values.yaml"
"""What an install must give (its buckets); `render(None)` renders the chart's defaults plus these."""
VALUES_SETS = [None, *[v for v in CI_VALUES if v != MINIMAL]]
KUBE_VERSIONS = ("1.33.0", "1.36.0")
NAMESPACE = "kubeflow"

HELM = shutil.which("helm") or shutil.which("helm", path=str(ROOT / ".venv" / "bin"))
pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not installed: run scripts/install_k8s_tools.sh")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


_cache: dict[tuple, list[dict]] = {}


def render(values: Path | None = None, *sets: str) -> list[dict]:
    key = (values, sets)
    if key not in _cache:
        args = ["template", "olmoflow", str(CHART), "--namespace", NAMESPACE, "-f", str(values or MINIMAL)]
        for s in sets:
            args += ["--set", s]
        _cache[key] = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    return _cache[key]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, suffix: str = "") -> dict:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in docs:
        if d["kind"] == "Pod":
            out.append((d["metadata"]["name"], d["spec"]))
        elif d["kind"] in ("Deployment", "StatefulSet", "Job"):
            out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
    return out


def label(values: Path | None) -> str:
    return values.stem if values else "defaults"


# ---- lint, render, validate ----


@pytest.mark.parametrize("values", VALUES_SETS, ids=label)
def test_lint_strict(values):
    helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(values or MINIMAL))


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUES_SETS, ids=label)
def test_every_resource_passes_strict_kubernetes_validation(values, version):
    import kubernetes_validate

    docs = render(values)
    for d in docs:
        kubernetes_validate.validate(d, version, strict=True)
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "Job", "Pod"} <= kinds


def test_strict_validation_catches_an_unknown_field():
    import kubernetes_validate

    deployment = json.loads(json.dumps(one(render(), "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_chart_version_is_the_package_version():
    from olmoflow import __version__

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__


# ---- values.schema.json rejects bad values ----


@pytest.mark.parametrize("setting,message", [
    ("gpuPool.gpusPerNode=0", "at '/gpuPool/gpusPerNode': minimum"),
    ("gpuPool.gpusPerNode=eight", "at '/gpuPool/gpusPerNode'"),
    ("launcher.trainBackend=mpijob", "at '/launcher/trainBackend': value must be one of"),
    ("postgres.enabled=false", "at '/mlflow/backend/existingSecret': minLength"),
    ("s3.store=gs://bucket/x", "at '/s3/store'"),
    ("s3.accessKeyId=AKIA0000", "at '/s3/secretAccessKey': minLength"),
    ("mlflow.replicaCount=2", "additional properties 'replicaCount' not allowed"),
    ("mlflow.port=80", "at '/mlflow/port': minimum"),
    ("postgres.password=p@ss:word", "at '/postgres/password'"),
    ("gpuPool.memory=lots", "at '/gpuPool/memory'"),
    ("gpuPool.tolerations[0].operator=Maybe", "at '/gpuPool/tolerations/0/operator'"),
    ("images.trainer.tag=has space", "at '/images/trainer/tag'"),
    ("pipeline.kfpHost=ml-pipeline:8888", "at '/pipeline/kfpHost'"),
    ("rbac.extraServiceAccounts[0]=Pipeline_Runner", "at '/rbac/extraServiceAccounts/0'"),
    ("workVolume.type=hostPath", "at '/workVolume/type': value must be one of"),
    ("workVolume.mountPath=.olmoflow", "at '/workVolume/mountPath'"),
    ("workVolume.size=big", "at '/workVolume/size'"),
    ("mlflow.auth.enabled=true", "at '/mlflow/auth/clientSecret': minLength"),
    ("postgres.existingSecret=Not_A_Name", "at '/postgres/existingSecret'"),
    ("s3.sources=/local/sources", "at '/s3/sources'"),
    ("crdCheck.enable=false", "additional properties 'enable' not allowed"),
])
def test_schema_rejects_bad_values(setting, message):
    proc = helm("template", "x", str(CHART), "-f", str(MINIMAL), "--set", setting, check=False)
    assert proc.returncode != 0 and "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_values_documented_with_helm_docs_comments():
    """STYLE.md: a `# --` comment on every value. A key needs one unless it is a plain parent of documented keys
    or lies inside a documented block."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented, documented_block = [], None
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w.-]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m[1]), m[2], m[3].strip()
        if documented_block is not None and indent > documented_block:
            continue
        documented_block = None
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        has_doc = j >= 0 and lines[j].strip().startswith("# --")
        child = next((ln for ln in lines[i + 1:] if ln.strip() and not ln.strip().startswith("#")), "")
        is_parent = rest == "" and re.match(r"^ *[A-Za-z]", child) and len(child) - len(child.lstrip()) > indent
        if has_doc:
            documented_block = indent
        elif not is_parent:
            undocumented.append(key)
    assert undocumented == []


# ---- the chart and the code it serves ----


@pytest.mark.parametrize("values", VALUES_SETS, ids=label)
def test_cluster_json_is_a_valid_launcher_config(values):
    from olmoflow.cluster.config import ClusterConfig
    from olmoflow.cluster.jobs import stage_job

    docs = render(values)
    data = one(docs, "ConfigMap", "-cluster")["data"]
    cfg = ClusterConfig.model_validate(json.loads(data["cluster.json"]))  # extra="forbid": no stray keys
    assert cfg.namespace == NAMESPACE and cfg.mlflow_tracking_uri == data["MLFLOW_TRACKING_URI"]
    # The launcher builds a job straight from it.
    job = stage_job(cfg, "pretrain", ["olmoflow", "stage", "pretrain"], nodes=2, name="pretrain-x")
    assert job["kind"] == {"trainjob": "TrainJob", "pytorchjob": "PyTorchJob"}[cfg.train_backend]


def test_another_gpu_pool_reaches_the_job_pods():
    from olmoflow.cluster.config import ClusterConfig
    from olmoflow.cluster.jobs import stage_job

    values = CHART / "ci" / "a100-pool-values.yaml"
    cfg = ClusterConfig.model_validate(json.loads(one(render(values), "ConfigMap", "-cluster")["data"]["cluster.json"]))
    job = stage_job(cfg, "midtrain", ["olmoflow", "stage", "midtrain"], nodes=3, name="midtrain-x")
    pod = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb", "pool": "training"}
    assert {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "44", "memory": "600Gi", "nvidia.com/gpu": "4"},
                                                 "limits": {"nvidia.com/gpu": "4"}}
    assert pod["serviceAccountName"] == "olmoflow-jobs"
    assert job["spec"]["runPolicy"]["backoffLimit"] == 2


def _allowed(role: dict, group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in role["rules"])


class RecordingApi:
    """Records (apiGroup, resource, verb) of every call a launcher makes; answers like a finished job."""

    def __init__(self, done: dict):
        self.calls: set[tuple[str, str, str]] = set()
        self.done = done

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.add((group, plural, "create"))

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.add((group, plural, "get"))
        return {"status": self.done}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.add((group, plural, "delete"))

    def list_namespaced_pod(self, namespace, label_selector):
        from kubernetes.client import V1ObjectMeta, V1Pod, V1PodList, V1PodStatus

        self.calls.add(("", "pods", "list"))
        return V1PodList(items=[V1Pod(metadata=V1ObjectMeta(name="p"), status=V1PodStatus(phase="Running"))])

    def read_namespaced_pod_log(self, name, namespace, **kw):
        self.calls.add(("", "pods/log", "get"))
        return ""


@pytest.mark.parametrize("kind,done", [
    ("TrainJob", {"conditions": [{"type": "Complete", "status": "True"}]}),
    ("PyTorchJob", {"conditions": [{"type": "Succeeded", "status": "True"}]}),
    ("RayJob", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}),
])
def test_role_allows_every_call_the_launcher_makes(kind, done):
    from olmoflow.cluster.config import ClusterConfig
    from olmoflow.cluster.jobs import job_spec, pytorch_job, ray_job, train_job
    from olmoflow.cluster.launcher import Launcher

    spec = job_spec(ClusterConfig(namespace=NAMESPACE), "sft", ["olmoflow"], nodes=2, name="sft-x")
    manifest = {"TrainJob": train_job, "PyTorchJob": pytorch_job, "RayJob": ray_job}[kind](spec)
    api = RecordingApi(done)
    Launcher(api, api, emit=lambda s: None, sleep=lambda s: None).run(manifest, timeout_s=60)
    role = one(render(), "Role")
    assert len(api.calls) == 5
    for call in api.calls:
        assert _allowed(role, *call), f"the chart's Role does not allow {call}"


def test_role_grants_nothing_else():
    rules = one(render(), "Role")["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    jobs = {("trainer.kubeflow.org", "trainjobs"), ("kubeflow.org", "pytorchjobs"), ("ray.io", "rayjobs")}
    expected = {(g, r, v) for g, r in jobs for v in ("create", "get", "watch", "delete")}
    expected |= {("", "pods", v) for v in ("get", "list", "watch")} | {("", "pods/log", "get")}
    assert granted == expected
    assert not by_kind(render(), "ClusterRole") and not by_kind(render(), "ClusterRoleBinding")
    narrowed = one(render(CHART / "ci" / "a100-pool-values.yaml"), "Role")["rules"]
    assert {r["resources"][0] for r in narrowed} == {"pytorchjobs", "pods", "pods/log"}


def test_pipeline_runs_service_accounts_are_bound():
    subjects = one(render(), "RoleBinding")["subjects"]
    assert [(s["name"], s["namespace"]) for s in subjects] == [("olmoflow", NAMESPACE), ("pipeline-runner", NAMESPACE)]


def test_mlflow_accepts_the_hosts_clients_use_and_nothing_else():
    from mlflow.server.security_utils import is_allowed_host_header

    docs = render(CHART / "ci" / "external-postgres-values.yaml")
    env = {e["name"]: e for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    tracking_host = one(docs, "ConfigMap", "-cluster")["data"]["MLFLOW_TRACKING_URI"].split("//")[1]
    for host in (tracking_host, "olmoflow-mlflow:5000", "olmoflow-mlflow.kubeflow.svc.cluster.local:5000",
                 "10.42.3.7:5000", "172.20.0.5:5000", "localhost:5000", "mlflow.example.org"):
        assert is_allowed_host_header(allowed, host), host
    for host in ("evil.example.com", "olmoflow-mlflow.evil.example.com", "8.8.8.8:5000", "172.32.0.1:5000"):
        assert not is_allowed_host_header(allowed, host), host


def test_registration_job_arguments_parse_with_the_register_cli():
    from olmoflow.cli import build_parser
    from olmoflow.cluster.register import parser

    job = one(render(), "Job", "-register-pipeline")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    pod = job["spec"]["template"]["spec"]
    # the init container compiles from the mounted ConfigMap into the volume the register container reads
    [compile_] = pod["initContainers"]
    assert compile_["command"][0] == "olmoflow"
    compiled = build_parser().parse_args(compile_["command"][1:])
    mounts = {m["mountPath"]: m["name"] for m in compile_["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/olmoflow"]]["configMap"]["name"] == "olmoflow-cluster"
    assert (compiled.cluster_config, compiled.settings) == ("/etc/olmoflow/cluster.json", "/etc/olmoflow/settings.yaml")
    command = pod["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "olmoflow.cluster.register"]
    args = parser().parse_args(command[3:])
    assert (args.name, args.version, str(args.file)) == ("olmo3-model-flow", "0.1.0", compiled.output)
    assert str(args.file).startswith(next(p for p, n in mounts.items() if n == "work"))
    assert args.description.startswith("Olmo 3 model flow: curate")
    assert not by_kind(render(None, "pipeline.register=false"), "Job")


def test_multi_user_kfp_gets_a_projected_token_where_kfp_client_looks():
    from kfp.client import KF_PIPELINES_SA_TOKEN_PATH

    pod = one(render(CHART / "ci" / "a100-pool-values.yaml"), "Job")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "kfp-token")
    source = next(v for v in pod["volumes"] if v["name"] == "kfp-token")["projected"]["sources"][0]
    assert os.path.join(mount["mountPath"], source["serviceAccountToken"]["path"]) == KF_PIPELINES_SA_TOKEN_PATH
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"


# ---- secrets and pod security ----


@pytest.mark.parametrize("values", VALUES_SETS, ids=label)
def test_no_secret_value_outside_secrets(values):
    docs = render(values)
    secret_values = {v for d in by_kind(docs, "Secret") for v in (d.get("stringData") or {}).values() if len(v) >= 8}
    for d in docs:
        if d["kind"] != "Secret":
            text = json.dumps(d)
            assert not [v for v in secret_values if v in text], f"{d['kind']} {d['metadata']['name']}"
    if values and values.stem == "bundled-postgres-values":
        assert "example-secret-access-key-not-real" in secret_values  # the check has something to find


def test_bundled_postgres_uri_matches_its_password_and_service():
    docs = render(CHART / "ci" / "bundled-postgres-values.yaml")
    secret = one(docs, "Secret", "-postgres")["stringData"]
    assert secret == {"password": "not-a-real-password-1234"}
    env = {e["name"]: e for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    # the kubelet expands $(POSTGRES_PASSWORD) from the entry before it: the URI exists only inside the pod
    assert list(env).index("POSTGRES_PASSWORD") < list(env).index("MLFLOW_BACKEND_STORE_URI")
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == \
        "postgresql+psycopg://mlflow:$(POSTGRES_PASSWORD)@olmoflow-postgres:5432/mlflow"
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "olmoflow-postgres", "key": "password"}
    service, sts = one(docs, "Service", "-postgres"), one(docs, "StatefulSet")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    generated = one(render(), "Secret", "-postgres")["stringData"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", generated["password"])


@pytest.mark.parametrize("values", VALUES_SETS, ids=label)
def test_pods_run_as_non_root_with_read_only_roots(values):
    specs = pod_specs(render(values))
    assert len(specs) >= 3
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert c["name"] == "smoke" or "/tmp" in mounts, f"{name}/{c['name']} has no writable /tmp"


def test_mlflow_reads_its_database_uri_from_a_secret():
    for values, secret, key in ((None, "olmoflow-postgres", "password"),
                                (CHART / "ci" / "team-install-values.yaml", "team-postgres", "password"),
                                (CHART / "ci" / "external-postgres-values.yaml", "mlflow-db", "connection-uri")):
        pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):
            env = {e["name"]: e for e in c["env"]}
            ref = env.get("POSTGRES_PASSWORD", env["MLFLOW_BACKEND_STORE_URI"])["valueFrom"]["secretKeyRef"]
            assert ref == {"name": secret, "key": key}
        args = pod["containers"][0]["args"]
        assert "--serve-artifacts" in args and any(a.startswith("--artifacts-destination=s3://") for a in args)


def test_notes_tell_where_mlflow_is_and_how_to_test():
    proc = helm("install", "olmoflow", str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "-f", str(MINIMAL))
    notes = proc.stdout[proc.stdout.index("NOTES:"):]
    assert "http://olmoflow-mlflow.kubeflow.svc:5000" in notes and "helm test olmoflow -n kubeflow" in notes
    assert 'Pipeline "olmo3-model-flow" is registered' in notes
