"""Manifests (plain dicts) for stages that span nodes: TrainJob or PyTorchJob running torchrun, and RayJob.

A training stage on N nodes with G GPUs each runs `torchrun --nnodes=N --nproc-per-node=G` with a c10d rendezvous
at the operator's master address. The trainer builds its HSDP mesh from OLMOFLOW_REPLICATE=N (replicas across
nodes) and OLMOFLOW_SHARD=G (parameters sharded within a node), so parameter all-gathers stay on the intra-node
links and only gradient all-reduces cross the network. A stage that scales out on Ray runs as a RayJob: one head
(the driver) and N workers. The head holds no GPU and runs no Ray work (num-cpus 0, num-gpus 0): curate's driver
only plans, and RLVR's driver places its learner and rollout actors on the workers, each a Ray actor asking for a
GPU (olmoflow/stages/rlvr.py), so the GPUs train and generate while the head orchestrates. Which kind a stage gets
is its registry entry's scale (olmoflow/registry.py).

Field names follow the CRD Go types -- kubeflow/trainer pkg/apis/trainer/v1alpha1/trainjob_types.go (v2.2+, where
runtimePatches replaced podTemplateOverrides), kubeflow/training-operator pkg/apis/kubeflow.org/v1/
{pytorch,common}_types.go and ray-project/kuberay ray-operator/apis/ray/v1/{rayjob,raycluster}_types.go -- and
tests/cluster checks every key against the published API models.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass, field
from importlib import metadata

from olmoflow.cluster.config import WORK_DIR, ClusterConfig, work_env
from olmoflow.registry import stage as stage_entry

RUN_AS_UID = 1000
"""The non-root user the images create (images/*/Dockerfile)."""

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_STAGE = "olmoflow.io/stage"

# The operators name the trainer container and export the rendezvous address under different names:
# Trainer's torch plugin sets PET_MASTER_ADDR/PORT on container "node"; the Training Operator sets MASTER_ADDR/PORT
# on container "pytorch" (and adds its port to that container only).
TRAINJOB_CONTAINER = "node"
PYTORCHJOB_CONTAINER = "pytorch"
RAY_HEAD_CONTAINER = "ray-head"
RAY_WORKER_CONTAINER = "ray-worker"

RDZV_JOIN_TIMEOUT_S = 1800
"""Nodes of a big job are scheduled and pull a ~10 GB image minutes apart; torchrun's default 600 s is too short."""


@dataclass(frozen=True)
class JobSpec:
    """Everything a manifest builder needs, resolved from ClusterConfig and the stage."""

    name: str
    stage: str
    namespace: str
    image: str
    command: list[str]
    """The stage's own argv (e.g. ["olmoflow", "stage", "pretrain", ...]); torchrun or Ray wrap it."""
    nodes: int = 1
    gpus_per_node: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    requests: dict[str, str] = field(default_factory=dict)
    """Per-node requests besides GPUs (cpu, memory)."""
    env: list[dict] = field(default_factory=list)
    """Container env entries (EnvVar dicts: value or valueFrom)."""
    service_account: str = ""
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: list[str] = field(default_factory=list)
    work_dir: str = WORK_DIR
    work_volume: str = "emptyDir"
    work_size: str = "200Gi"
    work_storage_class: str = ""
    shm_size: str = "64Gi"
    active_deadline_s: int = 7 * 24 * 3600
    backoff_limit: int = 0

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"job {self.name}: nodes must be >= 1 (got {self.nodes})")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", self.name):
            raise ValueError(f"job name {self.name!r}: must be a DNS-1035 label of at most 40 characters "
                             "(pods append -node-0-0-xxxxx / -worker-NN)")
        if not self.command:
            raise ValueError(f"job {self.name}: empty command")


def job_name(stage: str, token: str = "") -> str:
    """`{stage}-{token[:8]}-{4 hex}`: readable, unique per attempt, a valid DNS-1035 label."""
    base = re.sub(r"[^a-z0-9-]+", "-", f"{stage}-{token[:8]}".lower()).strip("-")
    return f"{base}-{secrets.token_hex(2)}"


def job_spec(cfg: ClusterConfig, stage: str, command: list[str], nodes: int, name: str | None = None,
             image: str | None = None, gpus_per_node: int | None = None) -> JobSpec:
    """A JobSpec for `stage` from the cluster config; GPU stages land on the GPU pool, CPU stages anywhere."""
    gpus = cfg.gpus_per_node if gpus_per_node is None else gpus_per_node
    on_gpu_pool = gpus > 0
    return JobSpec(
        name=name or job_name(stage),
        stage=stage,
        namespace=cfg.job_namespace(),
        image=image or (cfg.curate_image if stage == "curate" else cfg.trainer_image),
        command=list(command),
        nodes=nodes,
        gpus_per_node=gpus,
        gpu_resource=cfg.gpu_resource,
        node_selector=dict(cfg.node_selector) if on_gpu_pool else {},
        tolerations=[t.manifest() for t in cfg.tolerations] if on_gpu_pool else [],
        requests={k: v for k, v in (("cpu", cfg.cpu), ("memory", cfg.memory)) if v},
        env=base_env(cfg),
        service_account=cfg.service_account,
        image_pull_policy=cfg.image_pull_policy,
        image_pull_secrets=list(cfg.image_pull_secrets),
        work_dir=cfg.work_dir,
        work_volume=cfg.work_volume,
        work_size=cfg.work_size,
        work_storage_class=cfg.work_storage_class,
        shm_size=cfg.shm_size,
        active_deadline_s=int(cfg.timeout_s),
        backoff_limit=cfg.backoff_limit,
    )


def base_env(cfg: ClusterConfig) -> list[dict]:
    """Env every job container gets: unbuffered output, the work volume as every writable path, MLflow, and
    credentials by reference (a Secret's name and key, never a value)."""
    env: list[dict] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    # The root filesystem is read-only; caches (torch, triton, HF), staging and checkpoints go to the work volume.
    env += [{"name": k, "value": v} for k, v in work_env(cfg.work_dir).items()]
    plain = (("MLFLOW_TRACKING_URI", cfg.mlflow_tracking_uri), ("AWS_ENDPOINT_URL", cfg.s3_endpoint),
             ("AWS_DEFAULT_REGION", cfg.s3_region), ("OLMOFLOW_SOURCES", cfg.sources_uri))
    env += [{"name": k, "value": v} for k, v in plain if v]
    secrets_ = ((cfg.s3_secret, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
                (cfg.mlflow_secret, ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")))
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
            for name, keys in secrets_ if name for key in keys]
    return env


def mesh_env(spec: JobSpec) -> list[dict]:
    """The HSDP mesh shape the trainer reads: replicate across nodes, shard across the GPUs of one node."""
    return [{"name": "OLMOFLOW_REPLICATE", "value": str(spec.nodes)},
            {"name": "OLMOFLOW_SHARD", "value": str(_procs_per_node(spec))}]


def torchrun_command(spec: JobSpec, addr_var: str, port_var: str) -> list[str]:
    """torchrun with c10d rendezvous at $(addr_var):$(port_var), which the kubelet expands from the operator's env.

    c10d (not a static node rank) lets a restarted pod rejoin under the same rendezvous id.
    """
    return ["torchrun",
            f"--nnodes={spec.nodes}",
            f"--nproc-per-node={_procs_per_node(spec)}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=$({addr_var}):$({port_var})",
            f"--rdzv-id={spec.name}",
            f"--rdzv-conf=join_timeout={RDZV_JOIN_TIMEOUT_S}",
            "--max-restarts=0",
            "--no-python",
            *spec.command]


def train_job(spec: JobSpec, runtime: str = "torch-distributed") -> dict:
    """A Kubeflow Trainer TrainJob on a torch ClusterTrainingRuntime; pod settings go in through runtimePatches."""
    pod_patch: dict = {
        "securityContext": _pod_security(),
        "volumes": _volumes(spec),
        "containers": [{"name": TRAINJOB_CONTAINER, "volumeMounts": _mounts(spec),
                        "securityContext": _container_security()}],
    }
    if spec.image_pull_secrets:
        pod_patch["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    if spec.node_selector:
        pod_patch["nodeSelector"] = spec.node_selector
    if spec.tolerations:
        pod_patch["tolerations"] = spec.tolerations
    if spec.service_account:
        pod_patch["serviceAccountName"] = spec.service_account
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": _metadata(spec),
        "spec": {
            "runtimeRef": {"name": runtime, "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"},
            "activeDeadlineSeconds": spec.active_deadline_s,
            "trainer": {
                "image": spec.image,
                "command": torchrun_command(spec, "PET_MASTER_ADDR", "PET_MASTER_PORT"),
                "env": spec.env + mesh_env(spec),
                "numNodes": spec.nodes,
                "numProcPerNode": _procs_per_node(spec),
                "resourcesPerNode": _resources(spec),
            },
            "runtimePatches": [{
                "manager": "olmoflow.io/launcher",
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [{
                    "name": TRAINJOB_CONTAINER,
                    "template": {"spec": {"template": {"metadata": {"labels": _labels(spec)},
                                                       "spec": pod_patch}}},
                }]}}},
            }],
        },
    }


def pytorch_job(spec: JobSpec) -> dict:
    """A Training Operator PyTorchJob: one Master and nodes-1 Workers, each a full node."""
    template = _pod_template(spec, PYTORCHJOB_CONTAINER, torchrun_command(spec, "MASTER_ADDR", "MASTER_PORT"),
                             spec.env + mesh_env(spec), _resources(spec), on_gpu_pool=True)
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if spec.nodes > 1:
        replicas["Worker"] = {"replicas": spec.nodes - 1, "restartPolicy": "OnFailure", "template": template}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _metadata(spec),
        "spec": {
            "nprocPerNode": str(_procs_per_node(spec)),
            "runPolicy": {"cleanPodPolicy": "All", "backoffLimit": spec.backoff_limit,
                          "activeDeadlineSeconds": spec.active_deadline_s},
            "pytorchReplicaSpecs": replicas,
        },
    }


def ray_job(spec: JobSpec, ray_version: str | None = None, head_cpu: str = "2", head_memory: str = "8Gi") -> dict:
    """A KubeRay RayJob: the stage command is the entrypoint (the driver, on the head); `nodes` workers do the work."""
    head_resources = {"requests": {"cpu": head_cpu, "memory": head_memory}}
    # num-cpus / num-gpus 0 keep Ray tasks and actors off the head, so the driver never competes with them and a
    # GPU actor (RLVR's learner) can only be placed on a worker.
    head = {"rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0", "num-gpus": "0"},
            "template": _pod_template(spec, RAY_HEAD_CONTAINER, None, spec.env, head_resources, on_gpu_pool=False)}
    # Each worker advertises its GPUs to Ray (KubeRay infers them from the limit too; stating it keeps the learner's
    # and the actors' num_gpus requests satisfiable whatever the operator version).
    workers_params = {"num-gpus": str(spec.gpus_per_node)} if spec.gpus_per_node else {}
    worker = {"groupName": "workers", "replicas": spec.nodes, "minReplicas": spec.nodes, "maxReplicas": spec.nodes,
              "rayStartParams": workers_params,
              "template": _pod_template(spec, RAY_WORKER_CONTAINER, None, spec.env, _resources(spec),
                                        on_gpu_pool=True)}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _metadata(spec),
        "spec": {
            "entrypoint": shlex.join(spec.command),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 60,
            "activeDeadlineSeconds": spec.active_deadline_s,
            "backoffLimit": spec.backoff_limit,
            "rayClusterSpec": {"rayVersion": ray_version or metadata.version("ray"),
                               "headGroupSpec": head, "workerGroupSpecs": [worker]},
        },
    }


def stage_job(cfg: ClusterConfig, stage: str, command: list[str], nodes: int, name: str | None = None) -> dict:
    """The manifest a multi-node `stage` runs as: a RayJob for a Ray stage, the configured train backend for a
    torchrun one; a stage that runs in one process has none."""
    entry = stage_entry(stage)
    if entry.scale == "ray":
        spec = job_spec(cfg, stage, command, nodes, name, gpus_per_node=None if entry.gpus else 0)
        return ray_job(spec, head_cpu=cfg.ray_head_cpu, head_memory=cfg.ray_head_memory)
    if entry.scale != "torchrun":
        raise ValueError(f"stage {stage} runs in one process on one node; it has no multi-node job")
    spec = job_spec(cfg, stage, command, nodes, name)
    return train_job(spec, cfg.trainjob_runtime) if cfg.train_backend == "trainjob" else pytorch_job(spec)


# ---- pod pieces shared by the three kinds ----

def _mounts(spec: JobSpec) -> list[dict]:
    return [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "work", "mountPath": spec.work_dir}]


def _procs_per_node(spec: JobSpec) -> int:
    return max(spec.gpus_per_node, 1)


def _labels(spec: JobSpec) -> dict[str, str]:
    return {LABEL_MANAGED_BY: "olmoflow", LABEL_STAGE: spec.stage}


def _metadata(spec: JobSpec) -> dict:
    return {"name": spec.name, "namespace": spec.namespace, "labels": _labels(spec)}


def _resources(spec: JobSpec) -> dict:
    requests = dict(spec.requests)
    if spec.gpus_per_node:
        requests[spec.gpu_resource] = str(spec.gpus_per_node)
        # Extended resources cannot be overcommitted: the limit must equal the request.
        return {"requests": requests, "limits": {spec.gpu_resource: str(spec.gpus_per_node)}}
    return {"requests": requests} if requests else {}


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_UID, "runAsGroup": RUN_AS_UID, "fsGroup": RUN_AS_UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _volumes(spec: JobSpec) -> list[dict]:
    if spec.work_volume == "ephemeral":  # a PVC made for the pod and deleted with it
        claim: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.work_size}}}
        if spec.work_storage_class:
            claim["storageClassName"] = spec.work_storage_class
        work = {"name": "work", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}
    else:
        work = {"name": "work", "emptyDir": {"sizeLimit": spec.work_size}}
    return [{"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}, work]


def _pod_template(spec: JobSpec, container: str, command: list[str] | None, env: list[dict], resources: dict,
                  on_gpu_pool: bool) -> dict:
    main = {"name": container, "image": spec.image, "imagePullPolicy": spec.image_pull_policy, "env": env,
            "resources": resources, "volumeMounts": _mounts(spec), "securityContext": _container_security()}
    if command:
        main["command"] = command
    pod: dict = {"containers": [main], "securityContext": _pod_security(), "volumes": _volumes(spec)}
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    if on_gpu_pool and spec.node_selector:
        pod["nodeSelector"] = spec.node_selector
    if on_gpu_pool and spec.tolerations:
        pod["tolerations"] = spec.tolerations
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    return {"metadata": {"labels": _labels(spec)}, "spec": pod}
