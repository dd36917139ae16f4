"""The chart fits common platforms: usable as a subchart (`global`), buckets required (one line), the Postgres
password kept (existingSecret, keep policy, never regenerated on an upgrade), scheduling knobs and annotations on
every pod it runs, NetworkPolicies that select the pods they mean, MLflow's auth app wired to its Secrets, and the
install-time CRD check (run here on stand-in CRD objects, since `lookup` needs a live cluster)."""

from __future__ import annotations

import shutil
from importlib.metadata import entry_points

import pytest
import yaml
from test_chart import CHART, HELM, MINIMAL, by_kind, helm, one, pod_specs

pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not installed: run scripts/install_k8s_tools.sh")

TEAM = CHART / "ci" / "team-install-values.yaml"


def render(*args: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(helm("template", "olmoflow", str(CHART), "-n", "kubeflow",
                                                *args).stdout) if d]


def test_global_values_of_a_parent_chart_are_accepted():
    assert render("-f", str(MINIMAL), "--set", "global.imageRegistry=x.example", "--set", "global.storageClass=y")


@pytest.mark.parametrize("missing,key", [("s3.store", "s3.store"),
                                         ("mlflow.artifactsDestination", "mlflow.artifactsDestination")])
def test_buckets_are_required_with_one_line(missing, key):
    proc = helm("template", "x", str(CHART), "-f", str(MINIMAL), "--set", f"{missing}=", check=False)
    assert proc.returncode != 0
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert f"{key} is required" in error and "s3://BUCKET/PREFIX" in error


def test_generated_postgres_password_is_kept_and_never_regenerated_on_upgrade():
    secret = one(render("-f", str(MINIMAL)), "Secret", "-postgres")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # An upgrade that cannot read the existing Secret (no cluster: `helm template --is-upgrade`) must not render
    # a new password over it; the kept Secret stays as it is.
    assert not [d for d in render("-f", str(MINIMAL), "--is-upgrade") if d["kind"] == "Secret"]
    # A password given in the values is used as is, on upgrade too.
    given = one(render("-f", str(MINIMAL), "--is-upgrade", "--set", "postgres.password=given-pass-1"), "Secret")
    assert given["stringData"] == {"password": "given-pass-1"}


def test_postgres_existing_secret_is_read_by_postgres_and_mlflow():
    docs = render("-f", str(TEAM))
    assert not [d for d in by_kind(docs, "Secret")]
    sts = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    mlflow = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    for env in (sts, mlflow):
        ref = next(e for e in env if e["name"] == "POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "team-postgres", "key": "password"}


def test_every_chart_pod_gets_the_scheduling_knobs_and_annotations():
    docs = render("-f", str(TEAM))
    specs = pod_specs(docs)
    assert {name for name, _ in specs} >= {"olmoflow-mlflow", "olmoflow-postgres", "olmoflow-register-pipeline",
                                          "olmoflow-test-mlflow"}
    for name, spec in specs:
        assert spec["nodeSelector"] == {"node-role.example/services": "true"}, name
        assert spec["tolerations"] == [{"key": "services", "operator": "Exists", "effect": "NoSchedule"}], name
        assert spec["priorityClassName"] == "ml-services", name
        assert spec["imagePullSecrets"] == [{"name": "harbor-pull"}], name
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job", "Pod"):
            meta = d["metadata"] if d["kind"] == "Pod" else d["spec"]["template"]["metadata"]
            assert meta["annotations"]["sidecar.istio.io/inject"] == "false", d["metadata"]["name"]
    hook = one(docs, "Pod")["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "test"  # the pod's own annotations survive the merge


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_network_policies_select_mlflow_postgres_and_the_ray_heads():
    from olmoflow.cluster.config import ClusterConfig
    from olmoflow.cluster.jobs import stage_job

    docs = render("-f", str(TEAM))
    assert not by_kind(render("-f", str(MINIMAL)), "NetworkPolicy")
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(docs, "NetworkPolicy")}
    mlflow_pods = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    postgres_pods = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert _selects(policies["olmoflow-mlflow"]["podSelector"], mlflow_pods)
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-notebooks"}}} in \
        policies["olmoflow-mlflow"]["ingress"][0]["from"]
    postgres = policies["olmoflow-postgres"]
    assert _selects(postgres["podSelector"], postgres_pods) and not _selects(postgres["podSelector"], mlflow_pods)
    assert [_selects(peer["podSelector"], mlflow_pods) for peer in postgres["ingress"][0]["from"]] == [True]
    # a RayJob's head pod: the launcher's labels plus the one KubeRay puts on heads
    ray = stage_job(ClusterConfig(), "curate", ["olmoflow", "stage", "curate"], 2, name="curate-x")
    head = ray["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    worker = ray["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"]
    heads = policies["olmoflow-ray-heads"]["podSelector"]
    assert _selects(heads, {**head, "ray.io/node-type": "head"})
    assert not _selects(heads, {**worker, "ray.io/node-type": "worker"})


def test_mlflow_auth_runs_the_basic_auth_app_with_its_secrets():
    import json

    assert "basic-auth" in {e.name for e in entry_points(group="mlflow.app")}  # the app MLflow will look up
    docs = render("-f", str(TEAM))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert "--app-name=basic-auth" in server["args"]
    env = {e["name"]: e for e in server["env"]}
    mount = next(m for m in server["volumeMounts"] if m["name"] == "auth")
    volume = next(v for v in pod["volumes"] if v["name"] == "auth")["secret"]
    assert volume["secretName"] == "mlflow-auth-config"
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == f"{mount['mountPath']}/{volume['items'][0]['path']}"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-auth-config"
    # clients log in as the client Secret's user: `helm test`, and (through cluster.json) task and job pods
    smoke = {e["name"]: e for e in one(docs, "Pod")["spec"]["containers"][0]["env"]}
    assert smoke["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-pipeline-user"
    cluster = json.loads(one(docs, "ConfigMap", "-cluster")["data"]["cluster.json"])
    assert cluster["mlflow_secret"] == "mlflow-pipeline-user"
    assert json.loads(one(render("-f", str(MINIMAL)), "ConfigMap")["data"]["cluster.json"])["mlflow_secret"] == ""


# ---- the install-time CRD check, on stand-in CRDs ----

def _crd(name: str, versions: dict[str, list[str]]) -> dict:
    return {"metadata": {"name": name}, "spec": {"versions": [
        {"name": v, "served": True, "schema": {"openAPIV3Schema": {"properties": {"spec": {"properties": {
            f: {"type": "object"} for f in fields}}}}}} for v, fields in versions.items()]}}


TRAINER_22 = _crd("trainjobs.trainer.kubeflow.org", {"v1alpha1": ["runtimeRef", "trainer", "runtimePatches"]})
TRAINER_21 = _crd("trainjobs.trainer.kubeflow.org", {"v1alpha1": ["runtimeRef", "trainer", "podSpecOverrides"]})
TRAINER_NEXT = _crd("trainjobs.trainer.kubeflow.org", {"v1beta1": ["runtimeRef", "runtimePatches"]})
KUBERAY_12 = _crd("rayjobs.ray.io", {"v1": ["entrypoint", "backoffLimit"], "v1alpha1": ["entrypoint"]})

PROBE = """{{- $out := dict }}
{{- range $i, $case := .Values.probe }}
{{- $_ := set $out (toString $i) (include "olmoflow.crdProblem" (dict "crd" $case.crd "need" $case.need)) }}
{{- end }}
apiVersion: v1
kind: ConfigMap
metadata: {name: probe}
data:
  requirements: {{ include "olmoflow.crdRequirements" . | quote }}
  {{- range $k, $v := $out }}
  {{ $k | quote }}: {{ $v | quote }}
  {{- end }}
"""


def crd_check(tmp_path, cases: list[tuple[dict | None, str]], *values: str) -> tuple[list[str], list[dict]]:
    """The check's verdict on each (CRD object or None, CRD name) and the requirements the values give."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()  # the probe's values are not the chart's
    (chart / "templates" / "probe.yaml").write_text(PROBE)

    def show(*extra: str) -> dict:
        return yaml.safe_load(helm("template", "x", str(chart), "-f", str(MINIMAL), *values, *extra,
                                   "--show-only", "templates/probe.yaml").stdout)["data"]

    needed = yaml.safe_load(show()["requirements"])
    if not cases:
        return [], needed
    by_name = {n["name"]: n for n in needed}
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"probe": [{"crd": crd, "need": by_name[name]} for crd, name in cases]}))
    out = show("-f", str(probe))
    return [out[str(i)] for i in range(len(cases))], needed


def test_crd_check_names_a_missing_or_too_old_operator_in_one_line(tmp_path):
    trainjobs, rayjobs = "trainjobs.trainer.kubeflow.org", "rayjobs.ray.io"
    verdicts, needed = crd_check(tmp_path, [(TRAINER_22, trainjobs), (KUBERAY_12, rayjobs), (None, trainjobs),
                                            (TRAINER_21, trainjobs), (TRAINER_NEXT, trainjobs)])
    assert verdicts == [
        "", "",
        "CRD trainjobs.trainer.kubeflow.org is not installed: install Kubeflow Trainer >= 2.2",
        "CRD trainjobs.trainer.kubeflow.org v1alpha1 has no spec.runtimePatches: upgrade to Kubeflow Trainer >= 2.2",
        "CRD trainjobs.trainer.kubeflow.org does not serve v1alpha1 (it serves v1beta1): install Kubeflow "
        "Trainer >= 2.2",
    ]
    # defaults: TrainJobs and RayJobs; the A100 pool's values (PyTorchJobs, no Ray): only PyTorchJobs
    assert [n["name"] for n in needed] == [trainjobs, rayjobs]
    _, a100 = crd_check(tmp_path / "a100", [], "-f", str(CHART / "ci" / "a100-pool-values.yaml"))
    assert [(n["name"], n["version"]) for n in a100] == [("pytorchjobs.kubeflow.org", "v1")]
