"""Where and how multi-node stages run on Kubernetes: backend, images, GPU pool, secrets, timeouts.

The Helm chart renders these same keys into the `<release>-cluster` ConfigMap (`cluster.json`), so a pipeline pod
reads the platform team's settings with `load_cluster_config()` instead of repeating them in the pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from olmoflow import __version__
from olmoflow._base import Section

CLUSTER_CONFIG_ENV = "OLMOFLOW_CLUSTER_CONFIG"
WORK_DIR = "/var/lib/olmoflow"
"""Default mount point of the work volume (values.yaml workVolume.mountPath)."""
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def absolute_work_dir(path: str) -> str:
    """The work volume's mount point, which must be absolute: a pod's working directory is read-only."""
    if not path.startswith("/"):
        raise ValueError(f"must be an absolute path (got {path!r}): a pod's working directory is read-only")
    return path


def work_env(work_dir: str) -> dict[str, str]:
    """Env that points every writable path of a pod at its work volume: OLMOFLOW_HOME (the `.olmoflow` folder:
    artifact cache, staging, in-stage checkpoints), MLflow's write-behind journal (olmoflow.tracking's
    OLMOFLOW_TRACKING_JOURNAL, named here: this layer does not import tracking), HOME (torch / triton / HF caches)
    and TMPDIR."""
    home = f"{work_dir}/.olmoflow"
    return {"OLMOFLOW_HOME": home, "OLMOFLOW_TRACKING_JOURNAL": f"{home}/tracking-journal", "HOME": work_dir,
            "TMPDIR": work_dir}


class Toleration(Section):
    key: str = ""
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""
    """Only with operator Equal."""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""

    def manifest(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class ClusterConfig(Section):
    namespace: str = ""
    """Namespace the jobs run in; empty = the launching pod's own namespace (or `default` outside a cluster)."""
    train_backend: Literal["trainjob", "pytorchjob"] = "trainjob"
    """Kubeflow Trainer TrainJob (trainer.kubeflow.org/v1alpha1) or Training Operator PyTorchJob (kubeflow.org/v1)."""
    trainjob_runtime: str = "torch-distributed"
    """ClusterTrainingRuntime a TrainJob refers to."""
    trainer_image: str = f"olmoflow/trainer:{__version__}"
    """Image for training stages (CUDA torch + olmoflow)."""
    curate_image: str = f"olmoflow/curate:{__version__}"
    """Image for Ray stages that need no GPU (Ray + olmoflow)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = []
    """Secrets (names) for pulling the images from a private registry (the chart's imagePullSecrets)."""
    service_account: str = ""
    """ServiceAccount of the job pods; empty = the namespace's default."""
    gpus_per_node: int = Field(8, ge=0)
    """GPUs per node: torchrun processes per node and the HSDP shard size."""
    gpu_resource: str = "nvidia.com/gpu"
    """Extended resource name the GPU operator advertises."""
    node_selector: dict[str, str] = {}
    """Labels of the GPU node pool."""
    tolerations: list[Toleration] = []
    """Tolerations for the GPU pool's taints."""
    cpu: str = ""
    """CPU request per node (Kubernetes quantity); empty = none."""
    memory: str = ""
    """Memory request per node (Kubernetes quantity); empty = none."""
    shm_size: str = "64Gi"
    """Size of the in-memory /dev/shm (NCCL and data loader workers need far more than the 64 MiB default)."""
    work_dir: str = WORK_DIR
    """Absolute, writable cache and work root of every pod (artifact cache, staging, in-stage checkpoints, HOME,
    TMPDIR): the image's own folders are read-only and root-owned."""
    work_volume: Literal["emptyDir", "ephemeral"] = "emptyDir"
    """What backs work_dir: an emptyDir (node disk, capped at work_size) or a generic ephemeral volume (a PVC of
    work_size from work_storage_class, made for the pod and deleted with it)."""
    work_size: str = "200Gi"
    """Size of the work volume (an emptyDir's sizeLimit, an ephemeral PVC's request)."""
    work_storage_class: str = ""
    """StorageClass of an ephemeral work volume; empty = the cluster default."""
    s3_secret: str = ""
    """Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; empty = workload identity (no keys)."""
    s3_endpoint: str = ""
    """S3 endpoint for non-AWS object stores (MinIO, Ceph); empty = AWS."""
    s3_region: str = ""
    mlflow_tracking_uri: str = ""
    """MLflow server the job pods log to; empty = none set."""
    mlflow_secret: str = ""
    """Secret with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for an MLflow with auth; empty = none."""
    sources_uri: str = ""
    """Where curate reads its sources on the cluster (s3://bucket/prefix, set as OLMOFLOW_SOURCES); empty = the
    config's curate.sources_dir."""
    ray_head_cpu: str = "2"
    """CPU request of a RayJob's head pod (it runs the driver, not tasks)."""
    ray_head_memory: str = "8Gi"
    timeout_s: float = Field(7 * 24 * 3600, gt=0)
    """Give up on (and delete) a job that has not finished after this many seconds."""
    backoff_limit: int = Field(0, ge=0)
    """Pod restarts a job may use before it counts as failed; 0 = fail fast and resume the stage from its
    in-stage checkpoint instead."""
    poll_s: float = Field(5.0, gt=0)
    """First interval between status polls; it grows 1.5x per poll up to poll_max_s."""
    poll_max_s: float = Field(60.0, gt=0)

    @field_validator("work_dir")
    @classmethod
    def _absolute(cls, path: str) -> str:
        return absolute_work_dir(path)

    def job_namespace(self) -> str:
        if self.namespace:
            return self.namespace
        if SA_NAMESPACE_FILE.exists():
            return SA_NAMESPACE_FILE.read_text().strip()
        return "default"


def load_cluster_config(path: str | Path | None = None) -> ClusterConfig:
    """Read cluster.json (the chart's ConfigMap); the path defaults to $OLMOFLOW_CLUSTER_CONFIG, else defaults."""
    path = path or os.environ.get(CLUSTER_CONFIG_ENV)
    if not path:
        return ClusterConfig()
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"cluster config {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"cluster config {path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise ValueError(f"cluster config {path}: {loc}: {msg}") from None
