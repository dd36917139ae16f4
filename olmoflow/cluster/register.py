"""Register the compiled model-flow pipeline in Kubeflow Pipelines, so a run is one click in the KFP UI.

    python -m olmoflow.cluster.register --host http://ml-pipeline.kubeflow:8888 \\
        --file /work/model_flow.yaml --name olmo3-model-flow --version 0.1.0

The Helm chart runs this as a post-install/post-upgrade Job in the curate image, after an init container has
compiled the pipeline with the release's settings (`olmoflow compile --cluster-config --settings`, from the
release's ConfigMap), so the registered pipeline's pods use the install's names, images and pool. It is
idempotent: the version name is `{version}-{sha256(yaml)[:8]}`, so rerunning
the hook uploads nothing new, while a changed pipeline under the same package version still gets a version.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any


def version_name(version: str, package: Path) -> str:
    return f"{version}-{hashlib.sha256(package.read_bytes()).hexdigest()[:8]}"


def _version_exists(client: Any, pipeline_id: str, name: str) -> bool:
    token = ""
    while True:
        page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
        if any(v.display_name == name for v in page.pipeline_versions or []):
            return True
        token = page.next_page_token
        if not token:
            return False


def register(client: Any, package: Path, name: str, version: str, description: str = "") -> str:
    """Upload `package` as pipeline `name` (creating it if needed) and as version `{version}-{hash}`.

    Returns what happened, in one line. `client` is a kfp.Client (or anything with the same four methods).
    """
    if not package.is_file():
        raise FileNotFoundError(f"pipeline package {package} does not exist")
    vname = version_name(version, package)
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=name, description=description).pipeline_id
        created = f"created pipeline {name} ({pipeline_id}); "
    else:
        created = ""
    if _version_exists(client, pipeline_id, vname):
        return f"{created}pipeline {name} already has version {vname}"
    client.upload_pipeline_version(str(package), pipeline_version_name=vname, pipeline_id=pipeline_id,
                                   description=description)
    return f"{created}uploaded pipeline {name} version {vname}"


def kfp_client(host: str, namespace: str = "kubeflow") -> Any:
    """kfp.Client for `host`; in multi-user KFP the projected service-account token (audience
    pipelines.kubeflow.org) authenticates us, if the pod mounts one."""
    import kfp
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token_path = os.environ.get(KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH)
    credentials = ServiceAccountTokenVolumeCredentials(token_path) if Path(token_path).exists() else None
    return kfp.Client(host=host, namespace=namespace, credentials=credentials)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m olmoflow.cluster.register", description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://ml-pipeline.kubeflow:8888")
    p.add_argument("--file", required=True, type=Path, help="compiled pipeline YAML (KFP IR)")
    p.add_argument("--name", required=True, help="pipeline name shown in the KFP UI")
    p.add_argument("--version", required=True, help="package version; the content hash is appended")
    p.add_argument("--description", default="")
    p.add_argument("--namespace", default="kubeflow", help="KFP namespace (multi-user mode)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    print(register(kfp_client(args.host, args.namespace), args.file, args.name, args.version, args.description))


if __name__ == "__main__":
    main()
