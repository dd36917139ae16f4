"""Secrets stay in Secrets: S3 keys, a database password and URI, and an MLflow token planted in the chart's values
and in the environment appear in no rendered ConfigMap or other non-Secret resource, no compiled pipeline (IR and
Kubernetes manifests), no launched job manifest, no flattened config (MLflow params, manifests' config), and no
container's command line -- not even through `$(VAR)`, which the kubelet expands from a Secret-backed env var into
the process's argv (what the db-upgrade init container used to do with the Postgres URI)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from test_chart import CHART, HELM, MINIMAL, helm, pod_specs
from test_install_reaches_pods import walk

pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not installed: run scripts/install_k8s_tools.sh")

S3_KEY_ID, S3_SECRET = "AKIAPLANTED0KEYID0001", "planted-s3-secret-value-0002"
PG_PASSWORD = "plantedPgPassword0003"
DB_PASSWORD = "plantedDbUriPassword0004"
MLFLOW_TOKEN = "planted-mlflow-token-0005"
PLANTED = (S3_KEY_ID, S3_SECRET, PG_PASSWORD, DB_PASSWORD, MLFLOW_TOKEN)
ENV = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
       "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://mlflow:{DB_PASSWORD}@db.example:5432/mlflow",
       "MLFLOW_TRACKING_PASSWORD": MLFLOW_TOKEN, "MLFLOW_TRACKING_TOKEN": MLFLOW_TOKEN,
       "MLFLOW_TRACKING_URI": f"https://pipelines:{MLFLOW_TOKEN}@mlflow.example"}
VALUES = ("s3.accessKeyId=" + S3_KEY_ID, "s3.secretAccessKey=" + S3_SECRET, "postgres.password=" + PG_PASSWORD,
          "mlflow.auth.enabled=true", "mlflow.auth.configSecret=mlflow-auth", "mlflow.auth.clientSecret=mlflow-user",
          "networkPolicy.enabled=true")


def leaks(text: str) -> list[str]:
    return [v for v in PLANTED if v in text]


@pytest.fixture(scope="module")
def docs():
    args = ["template", "olmoflow", str(CHART), "-n", "kubeflow", "-f", str(MINIMAL)]
    for v in VALUES:
        args += ["--set", v]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def secret_env(container: dict) -> set[str]:
    """Env vars of a container whose value is, or is built from, a Secret's."""
    names: set[str] = set()
    for e in container.get("env", []):
        if "secretKeyRef" in e.get("valueFrom", {}) or set(re.findall(r"\$\((\w+)\)", e.get("value", ""))) & names:
            names.add(e["name"])
    return names


def argv_leaks(container: dict) -> list[str]:
    """What of a container's command line is secret: a planted value, or a $(VAR) of a Secret-backed var."""
    argv = " ".join(container.get("command", []) + container.get("args", []))
    return leaks(argv) + [f"$({v})" for v in secret_env(container) if f"$({v})" in argv]


def test_the_planted_values_reach_the_secrets(docs):
    secrets = json.dumps([d for d in docs if d["kind"] == "Secret"])
    assert S3_KEY_ID in secrets and S3_SECRET in secrets and PG_PASSWORD in secrets  # the check has things to find


def test_no_rendered_configmap_or_other_resource_holds_a_secret(docs):
    for d in docs:
        if d["kind"] != "Secret":
            assert not leaks(json.dumps(d)), f"{d['kind']} {d['metadata']['name']}"
    assert any(d["kind"] == "ConfigMap" for d in docs)


@pytest.mark.parametrize("values", [None, CHART / "ci" / "external-postgres-values.yaml",
                                    CHART / "ci" / "team-install-values.yaml"],
                         ids=lambda v: v.stem if v else "planted")
def test_no_container_command_line_carries_a_secret(docs, values):
    rendered = docs if values is None else [
        d for d in yaml.safe_load_all(helm("template", "x", str(CHART), "-f", str(values)).stdout) if d]
    containers = [c for _, spec in pod_specs(rendered) for c in spec.get("initContainers", []) + spec["containers"]]
    assert any(secret_env(c) for c in containers)  # MLflow's containers do read Secrets
    for c in containers:
        assert not argv_leaks(c), c["name"]


def test_the_old_db_upgrade_command_is_caught():
    old = {"name": "db-upgrade", "command": ["mlflow", "db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"],
           "env": [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "p", "key": "password"}}},
                   {"name": "MLFLOW_BACKEND_STORE_URI", "value": "postgresql://u:$(POSTGRES_PASSWORD)@h/db"}]}
    assert argv_leaks(old) == ["$(MLFLOW_BACKEND_STORE_URI)"]


def test_compiled_pipeline_and_launched_jobs_carry_no_secret(docs, tmp_path, monkeypatch):
    from olmoflow.cluster.config import ClusterConfig
    from olmoflow.cluster.jobs import stage_job
    from olmoflow.cluster.settings import load_settings
    from olmoflow.flow.pipeline import compile_ir

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    (tmp_path / "cluster.json").write_text(data["cluster.json"])
    (tmp_path / "settings.yaml").write_text(data["settings.yaml"])
    settings = load_settings(tmp_path / "settings.yaml", tmp_path / "cluster.json")
    # (the Kubernetes-native PipelineVersion embeds this same IR)
    assert not leaks(compile_ir(tmp_path / "ir.yaml", settings).read_text())
    cfg = ClusterConfig.model_validate_json(data["cluster.json"])
    for stage, backend in (("pretrain", "trainjob"), ("sft", "pytorchjob"), ("curate", "trainjob")):
        job = stage_job(cfg.model_copy(update={"train_backend": backend}), stage, ["olmoflow", "stage", stage], 2)
        assert not leaks(json.dumps(job)), stage
        # the MLflow user's password reaches the job by reference
        env = [e for es in walk(job, "env") for e in es]
        assert {"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": "mlflow-user", "key": "MLFLOW_TRACKING_PASSWORD"}}} in env, stage


def test_the_flattened_config_holds_no_secret_from_the_environment(monkeypatch):
    """What MLflow gets as a stage's params and a manifest as its config: the resolved config, read with the
    planted environment (OLMOFLOW_STORE is read from it; the keys, URIs and tokens must not be)."""
    from olmoflow.config import load_config
    from olmoflow.tracking import flatten

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("OLMOFLOW_STORE", "s3://team-flows/store")
    cfg = load_config("tiny")
    params = flatten(cfg.model_dump(mode="json"))
    assert params["flow.store"] == "s3://team-flows/store"  # the environment was read
    assert not leaks(json.dumps(params))
