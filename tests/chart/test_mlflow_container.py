"""Run the chart's MLflow containers as rendered -- the db-upgrade init container, then the server with the chart's
args and env -- on 127.0.0.1 with sqlite for Postgres and moto for S3, and point the chart's `helm test` script
at it. Slow (the server takes ~30 s to start on two busy cores), hence marked."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml
from kit import free_port, wait_for_url
from test_chart import CHART, HELM, NAMESPACE

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(HELM is None, reason="helm is not installed: run scripts/install_k8s_tools.sh")]

BIN = Path(sys.executable).parent


def container_env(container: dict, resolved: dict[str, str]) -> dict[str, str]:
    """The container's env: plain values as rendered, Secret references from `resolved`."""
    env = {}
    for e in container.get("env", []):
        env[e["name"]] = e["value"] if "value" in e else resolved[e["name"]]
    return env


def test_rendered_mlflow_serves_and_passes_the_helm_test(tmp_path):
    base_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("AWS_")}
    base_env |= {"NO_PROXY": "127.0.0.1,localhost", "AWS_EC2_METADATA_DISABLED": "true",
                 "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                 "PATH": f"{BIN}:/usr/bin:/bin"}

    moto_port, port = free_port(), free_port()
    moto_log = tmp_path / "moto.log"
    moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], env=base_env,
                            stdout=moto_log.open("wb"), stderr=subprocess.STDOUT)
    server = None
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        wait_for_url(f"{endpoint}/moto-api/", moto, moto_log, 30)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t",
                          aws_secret_access_key="t")
        s3.create_bucket(Bucket="olmoflow")
        s3.put_object(Bucket="olmoflow", Key="mlflow/marker.txt", Body=b"x")

        rendered = subprocess.run(
            [HELM, "template", "olmoflow", str(CHART), "-n", NAMESPACE, "--set", f"s3.endpoint={endpoint}",
             "--set", "s3.store=s3://olmoflow/store", "--set", "mlflow.artifactsDestination=s3://olmoflow/mlflow",
             "--set", "postgres.enabled=false", "--set", "mlflow.backend.existingSecret=mlflow-db",
             "--set", "s3.existingSecret=s3", "--set", "s3.region=us-east-1", "--set", f"mlflow.port={port}"],
            capture_output=True, text=True, check=True).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        smoke = next(d for d in docs if d["kind"] == "Pod")["spec"]["containers"][0]
        secrets = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
                   "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}

        # The init container, as rendered (it reads the URI from its env, not its command line).
        init = pod["initContainers"][0]
        init_env = base_env | container_env(init, secrets)
        assert not [a for a in init["command"] if "$(" in a]
        subprocess.run(init["command"], env=init_env, cwd=tmp_path, check=True, capture_output=True, timeout=300)
        assert (tmp_path / "mlflow.db").stat().st_size > 0  # the schema was created

        # The server, as rendered, bound to loopback instead of every interface.
        main = pod["containers"][0]
        server_env = base_env | container_env(main, secrets) | {"HOME": str(tmp_path)}
        args = [a.replace("--host=0.0.0.0", "--host=127.0.0.1") for a in main["args"]]
        server_log = tmp_path / "mlflow.log"
        server = subprocess.Popen(main["command"] + args, env=server_env, cwd=tmp_path,
                                  stdout=server_log.open("wb"), stderr=subprocess.STDOUT)
        wait_for_url(f"http://127.0.0.1:{port}/health", server, server_log, 180)

        # The helm test pod's own command, against the local server.
        smoke_env = base_env | {"MLFLOW_URL": f"http://127.0.0.1:{port}"}
        proc = subprocess.run(smoke["command"], env=smoke_env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert proc.stdout.startswith(f"ok: http://127.0.0.1:{port} tracks runs")

        # The artifact proxy really lists the S3 destination the chart configured.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        listing = opener.open(f"http://127.0.0.1:{port}/api/2.0/mlflow-artifacts/artifacts").read().decode()
        assert "marker.txt" in listing
    finally:
        for p in (server, moto):
            if p:
                p.terminate()
                p.wait(timeout=30)
