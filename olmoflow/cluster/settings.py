"""The Kubernetes side of every pipeline task, in one place: GPUs, the GPU pool, requests, retries, timeouts, images,
and the chart's Secret and ConfigMap. `apply_settings(task, stage, settings, ...)` decorates a task in
pipelines/model_flow.py.

What a researcher may change per run is a pipeline parameter (the KFP UI's run form): the image tag, GPUs per node,
the GPU pool's node selector and tolerations (as JSON), and nodes per stage. `PipelineSettings` gives those their
defaults, and holds what belongs to the install rather than to a run: the GPU resource name, requests, retries, the
timeout, and the Secret/ConfigMap names. `olmoflow compile` bakes them from defaults (= the chart's values.yaml for
release `olmoflow`), a settings YAML, or the chart's own cluster.json:

    olmoflow compile --cluster-config cluster.json   # gpuPool, images, S3 Secret and timeout as the chart renders

kfp.local ignores the resource and Kubernetes settings (it warns about resources, which `olmoflow run` filters) and
the image; it does set plain env vars, which is harmless: only a task given more than one node reads
$OLMOFLOW_CLUSTER_CONFIG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from olmoflow import __version__
from olmoflow._base import Section
from olmoflow.cluster.config import (
    CLUSTER_CONFIG_ENV,
    WORK_DIR,
    ClusterConfig,
    Toleration,
    absolute_work_dir,
    load_cluster_config,
    work_env,
)
from olmoflow.registry import stage as stage_entry

CLUSTER_MOUNT = "/etc/olmoflow"
"""Where the cluster ConfigMap is mounted in every task pod; cluster.json is OLMOFLOW_CLUSTER_CONFIG."""

# Keys of the chart's ConfigMap (templates/configmap-cluster.yaml) that become env vars of every task; the optional
# ones are rendered only when set in values.yaml.
CONFIG_MAP_ENV = ("OLMOFLOW_STORE", "MLFLOW_TRACKING_URI")
CONFIG_MAP_OPTIONAL_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "OLMOFLOW_SOURCES")
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MLFLOW_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
WORK_VOLUME, SHM_VOLUME = "work", "dshm"


def split_image(image: str) -> tuple[str, str]:
    """("registry:5000/team/trainer", "0.1.0") of "registry:5000/team/trainer:0.1.0"; no tag = ("...", "latest")."""
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # the colon belonged to a registry port
        return image, "latest"
    return repo, tag


class PipelineSettings(Section):
    trainer_image: str = "olmoflow/trainer"
    """Repository of the training image (images.trainer); the run's image_tag parameter picks the tag."""
    curate_image: str = "olmoflow/curate"
    """Repository of the curate image (images.curate)."""
    image_tag: str = __version__
    """Default of the image_tag parameter: the package version, as `make images` tags them."""
    cluster_config_map: str = "olmoflow-cluster"
    """The chart's ConfigMap (`<release>-cluster`): cluster.json plus OLMOFLOW_STORE / MLFLOW_TRACKING_URI env."""
    s3_secret: str = "olmoflow-s3"
    """Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (`<release>-s3` or s3.existingSecret); read as optional,
    so a workload-identity install without one still schedules; empty = no Secret env at all."""
    mlflow_secret: str = ""
    """Secret with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (mlflow.auth.clientSecret); empty = none."""
    image_pull_secrets: list[str] = []
    """Secrets for pulling the images from a private registry (the chart's imagePullSecrets)."""
    work_dir: str = WORK_DIR
    """Absolute mount point of the work volume; OLMOFLOW_HOME, HOME and TMPDIR point into it (ClusterConfig)."""
    work_volume: Literal["emptyDir", "ephemeral"] = "emptyDir"
    """emptyDir (node disk, capped at work_size) or a generic ephemeral PVC of work_size (workVolume.type)."""
    work_size: str = "200Gi"
    """Size of the work volume: checkpoints and the artifact cache of a stage live here while it runs."""
    work_storage_class: str = ""
    """StorageClass of an ephemeral work volume; empty = the cluster default."""
    shm_size: str = "64Gi"
    """Size of the in-memory /dev/shm of a GPU task (NCCL and data-loader workers; the default is 64 MiB)."""
    gpu_resource: str = "nvidia.com/gpu"
    """Extended resource a GPU task requests (gpuPool.gpuResource)."""
    gpus_per_node: int = Field(8, ge=1)
    """Default of the gpus_per_node parameter: GPUs a GPU task (or each node of a job) requests
    (gpuPool.gpusPerNode)."""
    node_selector: dict[str, str] = {}
    """Default of the gpu_node_selector parameter: labels of the GPU pool (gpuPool.nodeSelector)."""
    tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
    """Default of the gpu_tolerations parameter: tolerations for the GPU pool's taints (gpuPool.tolerations)."""
    gpu_cpu: str = ""
    """CPU request of a GPU task (gpuPool.cpu); empty = none."""
    gpu_memory: str = ""
    """Memory request of a GPU task (gpuPool.memory); empty = none."""
    cpu: str = "2"
    """CPU request of a CPU task (curate) and of a launcher task (a stage on more than one node)."""
    memory: str = "8Gi"
    """Memory request of a CPU or launcher task."""
    nodes: dict[str, int] = {}
    """Defaults of the nodes_{section} parameters by stage name, e.g. {pretrain: 16}; absent = 1. A stage on >1 node
    runs as a TrainJob/PyTorchJob/RayJob (olmoflow.cluster) and its task pod only launches and waits, so it requests
    no GPU. Only a stage that scales out (olmoflow/registry.py) has the parameter."""
    local: bool = False
    """The tasks run as processes of this machine (kfp.local, `olmoflow run`): kfp.local applies a task's env
    but none of its Kubernetes settings, so the work volume's env (HOME, TMPDIR, OLMOFLOW_HOME pointing at a mount
    that does not exist here) is left off. Never set for a compiled pipeline."""
    retries: int = Field(3, ge=0)
    """Retries of a failed task (spot preemption, node loss); a retried stage resumes from its in-stage checkpoint."""
    backoff: str = "60s"
    """Wait before the first retry; it doubles per retry."""
    backoff_max: str = "3600s"
    """Longest wait between retries."""
    timeout_s: int = Field(7 * 24 * 3600, gt=0)
    """activeDeadlineSeconds of a task pod (launcher.timeoutSeconds)."""

    @field_validator("nodes")
    @classmethod
    def _known_stages(cls, nodes: dict[str, int]) -> dict[str, int]:
        for stage, n in nodes.items():
            if not stage_entry(stage).multi_node:
                raise ValueError(f"{stage}: runs in one process on one node; it takes no node count")
            if n < 1:
                raise ValueError(f"{stage}: must be >= 1 (got {n})")
        return nodes

    @field_validator("work_dir")
    @classmethod
    def _absolute(cls, path: str) -> str:
        return absolute_work_dir(path)

    def stage_nodes(self, stage: str) -> int:
        return self.nodes.get(stage, 1)

    def image(self, stage: str) -> str:
        """The image repository of a stage's task (and of its job)."""
        return self.curate_image if stage == "curate" else self.trainer_image

    def toleration_list(self) -> list[dict[str, str]]:
        """Keys sorted: the compiled YAML prints this default, and must come out the same from every path."""
        return [dict(sorted(t.manifest().items())) for t in self.tolerations]


def from_cluster_config(cluster: ClusterConfig, **overrides: Any) -> PipelineSettings:
    """Settings that agree with the chart's cluster.json (the GPU pool, the S3 Secret, the timeout)."""
    (trainer, tag), (curate, _) = split_image(cluster.trainer_image), split_image(cluster.curate_image)
    values: dict[str, Any] = dict(trainer_image=trainer, curate_image=curate, image_tag=tag,
                                  gpu_resource=cluster.gpu_resource, gpus_per_node=max(cluster.gpus_per_node, 1),
                                  node_selector=cluster.node_selector, tolerations=cluster.tolerations,
                                  gpu_cpu=cluster.cpu, gpu_memory=cluster.memory, s3_secret=cluster.s3_secret,
                                  mlflow_secret=cluster.mlflow_secret, image_pull_secrets=cluster.image_pull_secrets,
                                  work_dir=cluster.work_dir, work_volume=cluster.work_volume,
                                  work_size=cluster.work_size, work_storage_class=cluster.work_storage_class,
                                  shm_size=cluster.shm_size, timeout_s=int(cluster.timeout_s))
    return PipelineSettings(**{**values, **overrides})


def load_settings(path: str | Path | None = None, cluster_config: str | Path | None = None) -> PipelineSettings:
    """PipelineSettings from a YAML file (its keys override), on top of a cluster.json if given, else defaults."""
    base = from_cluster_config(load_cluster_config(cluster_config)) if cluster_config else PipelineSettings()
    if not path:
        return base
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ValueError(f"pipeline settings {path} does not exist") from None
    if not isinstance(data, dict):
        raise ValueError(f"pipeline settings {path}: expected a mapping of settings")
    try:
        return PipelineSettings.model_validate({**base.model_dump(), **data})
    except ValidationError as e:
        err = e.errors()[0]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise ValueError(f"pipeline settings {path}: {'.'.join(str(p) for p in err['loc'])}: {msg}") from None


def apply_settings(task: Any, stage: str, settings: PipelineSettings, *, launcher: bool, image: Any,
                   gpus_per_node: Any = None, node_selector: Any = None, tolerations: Any = None) -> Any:
    """Give one pipeline task its pod settings; the one place the pipeline touches Kubernetes.

    `launcher`: the task only launches a multi-node job and waits, so it needs no GPU. The other arguments are
    pipeline parameters (or plain values): the image, and for a GPU task its GPU count and pool.
    """
    from kfp import kubernetes

    # The artifact store is the cache (content-addressed, shared by local and cluster runs); KFP's own cache would
    # replay old outputs and hide the stage from this run's MLflow record.
    task.set_caching_options(False)
    task.set_container_image(image)
    if stage_entry(stage).gpus and not launcher:
        task.set_accelerator_type(settings.gpu_resource).set_accelerator_limit(gpus_per_node)
        kubernetes.add_node_selector_json(task, node_selector)
        kubernetes.add_toleration_json(task, tolerations)
        _requests(task, settings.gpu_cpu, settings.gpu_memory)
        # torchrun's ranks and the data-loader workers share tensors through /dev/shm; the default is 64 MiB.
        kubernetes.empty_dir_mount(task, SHM_VOLUME, "/dev/shm", medium="Memory", size_limit=settings.shm_size)
    else:
        _requests(task, settings.cpu, settings.memory)
    # Preemption kills the pod, not the stage: the retry resumes from the stage's last in-stage checkpoint.
    task.set_retry(settings.retries, backoff_duration=settings.backoff, backoff_factor=2.0,
                   backoff_max_duration=settings.backoff_max)
    kubernetes.set_timeout(task, settings.timeout_s)
    if settings.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, settings.image_pull_secrets)
    _work_volume(task, settings)
    if settings.s3_secret:
        kubernetes.use_secret_as_env(task, settings.s3_secret, {k: k for k in S3_KEYS}, optional=True)
    if settings.mlflow_secret:
        kubernetes.use_secret_as_env(task, settings.mlflow_secret, {k: k for k in MLFLOW_KEYS})
    kubernetes.use_config_map_as_env(task, settings.cluster_config_map, {k: k for k in CONFIG_MAP_ENV})
    kubernetes.use_config_map_as_env(task, settings.cluster_config_map, {k: k for k in CONFIG_MAP_OPTIONAL_ENV},
                                     optional=True)
    kubernetes.use_config_map_as_volume(task, settings.cluster_config_map, CLUSTER_MOUNT)
    task.set_env_variable(CLUSTER_CONFIG_ENV, f"{CLUSTER_MOUNT}/cluster.json")
    return task


def _work_volume(task: Any, settings: PipelineSettings) -> None:
    """The pod's writable, sized work root: the image's folders are root-owned (and read-only in job pods)."""
    from kfp import kubernetes

    if settings.work_volume == "ephemeral":
        kubernetes.add_ephemeral_volume(task, WORK_VOLUME, settings.work_dir, ["ReadWriteOnce"], settings.work_size,
                                        settings.work_storage_class or None)
    else:
        kubernetes.empty_dir_mount(task, WORK_VOLUME, settings.work_dir, size_limit=settings.work_size)
    if settings.local:
        return
    for name, value in work_env(settings.work_dir).items():
        task.set_env_variable(name, value)


def _requests(task: Any, cpu: str, memory: str) -> None:
    if cpu:
        task.set_cpu_request(cpu)
    if memory:
        task.set_memory_request(memory)
