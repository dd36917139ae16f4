"""Stages run inside the built images as the cluster runs them, here with podman: uid 1000, a read-only root
filesystem, no capabilities, and only the env and mounts that the rendered chart and the compiled pipeline give a
pod -- ConfigMap env and the cluster.json volume, the S3 Secret's env, the work volume at its configured root, the
IR's own env -- plus the scratch folders KFP gives a task for its local artifact paths (/s3, /minio, /gcs).

1. The registration Job's `compile` init container, as rendered, compiles the pipeline in the curate image.
2. The MLflow Deployment's init container and server, as rendered, run in the tracking image (sqlite for Postgres).
3. curate, then pretrain (smoke), run the compiled IR's own command (the KFP executor) with an executor input as
   KFP's launcher writes it, in the images the IR names: their artifacts land in the moto S3 store, their runs in
   MLflow, and a second KFP run finds both cached.

Curate reads its sources from S3 (the chart's `s3.sources`, as the one-click default does on a cluster: no image
holds local files), uploaded here from `.olmoflow/sources`. The repo is never mounted. Every container uses the
host's network (moto and MLflow listen on 127.0.0.1 only); the MLflow Service's DNS name resolves to 127.0.0.1.

Slow (~6 min on 2 cores). Needs podman and images built from this tree (their `org.olmoflow.context` label is
images/build.sh's hash of what they were built from). Where buildah is and all three images exist (`make test-pods`
or `make images` made them once), the test rebuilds them from their cached layers first (seconds when nothing
changed, ~10-25 s per image when the code did), so it runs this tree's code; where an image is missing it skips with
one line naming `make test-pods` -- it never builds from scratch, which could take the suite's whole time budget.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import yaml
from kit import free_port, wait_for_url

from olmoflow import __version__

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "olmoflow"
SOURCES = ROOT / ".olmoflow" / "sources"
PODMAN = shutil.which("podman")
HELM = shutil.which("helm") or shutil.which("helm", path=str(ROOT / ".venv" / "bin"))
RELEASE, NAMESPACE = "podtest", "kubeflow"
LOCAL_BASE = "localhost/olmoflow-base:bookworm-py3.11"
"""What images/local-base.sh makes (and `make test-pods` builds on)."""
TAG_PARAM = "{{$.inputs.parameters['pipelinechannel--image_tag']}}"
KFP_SCRATCH = ("/s3", "/minio", "/gcs")
"""emptyDirs KFP's compiler gives every task pod: the launcher's local paths of s3://, minio:// and gs:// artifacts."""
POD_PLATFORM_KEYS = {"configMapAsEnv", "configMapAsVolume", "secretAsEnv", "emptyDirMounts", "genericEphemeralVolume"}
SCHEDULING_KEYS = {"activeDeadlineSeconds", "nodeSelector", "tolerations", "imagePullSecret"}
"""Platform keys that change where and how long a pod runs, not what it holds: nothing to reproduce here."""

pytestmark = pytest.mark.slow


def podman_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.setdefault("CONTAINERS_CONF", str(ROOT / "images" / "containers.conf"))  # what these machines need
    if not env["CONTAINERS_CONF"]:
        del env["CONTAINERS_CONF"]
    return env


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PODMAN, *args], env=podman_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"podman {' '.join(args[:3])} ... exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def build(image: str) -> None:
    """images/build.sh as `make test-pods` runs it: on the local base, with torch's CPU build."""
    env = podman_env() | {"BUILDER": "buildah",
                          "BUILD_ARGS": f"--build-arg PYTHON_IMAGE={LOCAL_BASE} --build-arg TORCH_VARIANT=cpu"}
    proc = subprocess.run(["bash", str(ROOT / "images" / "build.sh"), image, __version__], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"images/build.sh {image} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"


def context_hash(image: str) -> str:
    """images/build.sh's hash of what it would build `image` from, out of this tree."""
    proc = subprocess.run(["bash", str(ROOT / "images" / "build.sh"), image, __version__],
                          env={**os.environ, "CONTEXT_HASH": "1", "BUILDER": "buildah"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """The three images, built from this tree (by `make test-pods` or `make images`)."""
    if PODMAN is None:
        pytest.skip("podman is not installed: the pod-realism test runs where podman and buildah are (make test-pods)")
    if HELM is None:
        pytest.skip("helm is not installed: run scripts/install_k8s_tools.sh")
    if not (SOURCES / "sources.json").exists():
        pytest.skip("no demo sources: run make data first")
    refs = {name: f"olmoflow/{name}:{__version__}" for name in ("curate", "tracking", "trainer")}
    for ref in refs.values():
        if podman("image", "exists", ref, check=False).returncode:
            pytest.skip(f"image {ref} is not built: make test-pods builds the images and runs this test")
    if shutil.which("buildah") and not podman("image", "exists", LOCAL_BASE, check=False).returncode:
        for name in refs:  # from cached layers: only what this tree changed is rebuilt
            build(name)
    for name, ref in refs.items():
        label = podman("image", "inspect", "--format", '{{index .Labels "org.olmoflow.context"}}', ref).stdout.strip()
        if label != context_hash(name):
            pytest.skip(f"image {ref} was not built from this tree: make test-pods rebuilds them and runs this test")
    return refs


def upload_sources(s3, bucket: str, prefix: str) -> None:
    files = [p for p in SOURCES.rglob("*") if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(SOURCES)}"), files))


def render(values: dict[str, str | int | bool]) -> list[dict]:
    args = [a for k, v in values.items() for a in (("--set-string", f"{k}={v}") if isinstance(v, str)
                                                   else ("--set", f"{k}={str(v).lower()}"))]
    proc = subprocess.run([HELM, "template", RELEASE, str(CHART), "-n", NAMESPACE, *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def object_data(docs: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, name) -> the data of every rendered Secret and ConfigMap, as a pod would read it."""
    out = {}
    for d in docs:
        if d["kind"] == "ConfigMap":
            out["ConfigMap", d["metadata"]["name"]] = dict(d.get("data", {}))
        elif d["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
            out["Secret", d["metadata"]["name"]] = data | dict(d.get("stringData", {}))
    return out


class Pod:
    """One pod on this machine: its volumes (an emptyDir or ephemeral PVC as an empty folder anyone may write, as
    the kubelet makes it; a Memory emptyDir as tmpfs; a ConfigMap as a read-only folder of its keys), and its
    containers started with podman as the kubelet would start them."""

    def __init__(self, root: Path, name: str, spec: dict, objects: dict, hosts: list[str]):
        self.name, self.spec, self.objects, self.hosts = name, spec, objects, hosts
        self.root = root / name
        self.volumes: dict[str, tuple[str, str]] = {}
        for v in spec.get("volumes", []):
            where = self.root / v["name"]
            if "configMap" in v:
                where.mkdir(parents=True)
                for key, text in objects["ConfigMap", v["configMap"]["name"]].items():
                    (where / key).write_text(text)
                self.volumes[v["name"]] = ("bind", str(where))
            elif v.get("emptyDir", {}).get("medium") == "Memory":
                self.volumes[v["name"]] = ("tmpfs", v["emptyDir"].get("sizeLimit", "64Mi"))
            else:
                assert {"emptyDir", "ephemeral"} & set(v), f"{name}: volume {v['name']}: a kind this test lacks"
                where.mkdir(parents=True)
                where.chmod(0o777)
                self.volumes[v["name"]] = ("bind", str(where))

    def env(self, container: dict) -> list[str]:
        argv = []
        for e in container.get("env", []):
            if "value" in e:
                argv += ["-e", f"{e['name']}={e['value']}"]
                continue
            [(kind, ref)] = e["valueFrom"].items()
            data = self.objects.get(({"secretKeyRef": "Secret", "configMapKeyRef": "ConfigMap"}[kind], ref["name"]))
            if data is None or ref["key"] not in data:
                assert ref.get("optional"), f"{self.name}: env {e['name']}: {ref['name']}/{ref['key']} is missing"
                continue
            argv += ["-e", f"{e['name']}={data[ref['key']]}"]
        return argv

    def argv(self, container: dict, cname: str) -> list[str]:
        pod_sc, sc = self.spec.get("securityContext", {}), container.get("securityContext", {})
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", uid))
        argv = ["run", "--rm", f"--name={cname}", "--network=host", "--pull=never"]
        argv += [f"--user={uid}:{gid}"] if uid is not None else []
        if sc.get("readOnlyRootFilesystem"):
            argv += ["--read-only", "--read-only-tmpfs=false"]  # no /tmp, /run or /var/tmp but the pod's volumes
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop=all"]
        if sc.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt=no-new-privileges"]
        argv += [f"--add-host={host}:127.0.0.1" for host in self.hosts]
        argv += self.env(container)
        for m in container.get("volumeMounts", []):
            kind, where = self.volumes[m["name"]]
            if kind == "tmpfs" and m["mountPath"] == "/dev/shm":
                argv += [f"--shm-size={where.replace('i', '').lower()}"]
            elif kind == "tmpfs":
                argv += [f"--tmpfs={m['mountPath']}:rw,size={where.replace('i', '').lower()},mode=1777"]
            else:
                argv += ["-v", f"{where}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
        if container.get("command"):
            argv += [f"--entrypoint={json.dumps(container['command'])}"]
        return [*argv, container["image"], *container.get("args", [])]

    def run(self, container: dict, timeout: float = 900) -> str:
        """Run one container to its end; its output, or a failure with the output's tail."""
        cname = f"{self.name}-{container['name']}-{uuid.uuid4().hex[:6]}"
        try:
            proc = subprocess.run([PODMAN, *self.argv(container, cname)], env=podman_env(), capture_output=True,
                                  text=True, timeout=timeout)
        finally:
            podman("rm", "-f", "--ignore", cname, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{self.name}/{container['name']} exited {proc.returncode}:\n{out[-4000:]}"
        return out

    def start(self, container: dict, log: Path) -> tuple[subprocess.Popen, str]:
        cname = f"{self.name}-{container['name']}-{uuid.uuid4().hex[:6]}"
        return subprocess.Popen([PODMAN, *self.argv(container, cname)], env=podman_env(), stdout=log.open("wb"),
                                stderr=subprocess.STDOUT), cname


def task_pod(spec: dict, platform: dict, executor: str, tag: str, executor_input: dict) -> tuple[dict, dict]:
    """The pod KFP's driver makes for one task of the compiled IR: the executor's container (its image with the
    run's tag, its command, its args with the executor input) and what the Kubernetes platform spec adds."""
    c = spec["deploymentSpec"]["executors"][executor]["container"]
    p = platform[executor]
    unknown = set(p) - POD_PLATFORM_KEYS - SCHEDULING_KEYS
    assert not unknown, f"{executor}: platform settings this test does not reproduce: {sorted(unknown)}"
    env = [dict(e) for e in c.get("env", [])]
    for kind, ref_kind, name_key, key_key in (("configMapAsEnv", "configMapKeyRef", "configMapName", "configMapKey"),
                                              ("secretAsEnv", "secretKeyRef", "secretName", "secretKey")):
        for source in p.get(kind, []):
            for k in source["keyToEnv"]:
                env.append({"name": k["envVar"], "valueFrom": {ref_kind: {
                    "name": source[name_key], "key": k[key_key], "optional": source.get("optional", False)}}})
    volumes, mounts = [], []
    for i, v in enumerate(p.get("configMapAsVolume", [])):
        volumes.append({"name": f"cm{i}", "configMap": {"name": v["configMapName"]}})
        mounts.append({"name": f"cm{i}", "mountPath": v["mountPath"], "readOnly": True})
    for v in p.get("emptyDirMounts", []):
        volumes.append({"name": v["volumeName"], "emptyDir": {k: v[k] for k in ("medium", "sizeLimit") if k in v}})
        mounts.append({"name": v["volumeName"], "mountPath": v["mountPath"]})
    for v in p.get("genericEphemeralVolume", []):
        volumes.append({"name": v["volumeName"], "ephemeral": {}})
        mounts.append({"name": v["volumeName"], "mountPath": v["mountPath"]})
    for path in KFP_SCRATCH:
        volumes.append({"name": f"kfp{path.replace('/', '-')}", "emptyDir": {}})
        mounts.append({"name": f"kfp{path.replace('/', '-')}", "mountPath": path})
    image = c["image"].replace(TAG_PARAM, tag)
    assert "{{" not in image, image
    container = {"name": "main", "image": image, "command": c["command"], "env": env, "volumeMounts": mounts,
                 "args": [a.replace("{{$}}", json.dumps(executor_input)) for a in c["args"]],
                 "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}}}
    return {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000}, "volumes": volumes}, container


def executor_input(spec: dict, stage: str, params: dict, bucket: str, run: str, inputs: dict) -> dict:
    """What KFP's launcher hands the executor: the component's parameters, its input artifacts (the upstream
    task's output, metadata included) and where to write its outputs (s3:// URIs: local paths under /s3)."""
    comp = spec["components"][f"comp-{stage}"]
    names = comp["inputDefinitions"]["parameters"]
    assert set(names) <= set(params), f"{stage}: parameters the test does not give: {set(names) - set(params)}"
    outputs = {name: {"artifacts": [{"name": name, "type": art["artifactType"],
                                     "uri": f"s3://{bucket}/kfp/{run}/{stage}/{name}"}]}
               for name, art in comp["outputDefinitions"]["artifacts"].items()}
    return {"inputs": {"parameterValues": {k: params[k] for k in names},
                       "artifacts": {k: {"artifacts": [v]} for k, v in inputs.items()}},
            "outputs": {"artifacts": outputs, "outputFile": f"/s3/{bucket}/kfp/{run}/{stage}/output_metadata.json"}}


def test_curate_and_pretrain_run_in_the_images_as_task_pods(images, moto_server, tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("AWS_") or n.upper().endswith("_PROXY")]:
        monkeypatch.delenv(name)
    bucket = f"pods-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="pod",
                      aws_secret_access_key="pod")
    s3.create_bucket(Bucket=bucket)
    upload_sources(s3, bucket, "sources")
    port = free_port()
    docs = render({"s3.store": f"s3://{bucket}/store", "s3.sources": f"s3://{bucket}/sources",
                   "s3.endpoint": moto_server, "s3.region": "us-east-1", "s3.accessKeyId": "pod",
                   "s3.secretAccessKey": "pod", "mlflow.artifactsDestination": f"s3://{bucket}/mlflow",
                   "mlflow.port": port, "mlflow.workers": 1, "postgres.enabled": False,
                   "mlflow.backend.existingSecret": "mlflow-db"})
    objects = object_data(docs)
    # The one Secret an install brings itself (the external database's URI): sqlite in the pod's /tmp emptyDir.
    objects["Secret", "mlflow-db"] = {"uri": "sqlite:////tmp/mlflow.db"}
    service = next(d for d in docs if d["kind"] == "Service")["metadata"]["name"]
    hosts = [f"{service}.{NAMESPACE}.svc", f"{service}.{NAMESPACE}.svc.cluster.local"]
    config_map = objects["ConfigMap", f"{RELEASE}-olmoflow-cluster"]
    assert config_map["MLFLOW_TRACKING_URI"] == f"http://{hosts[0]}:{port}"

    # 1. The registration Job's compile step, in the curate image, from the release's ConfigMap.
    job = next(d for d in docs if d["kind"] == "Job")["spec"]["template"]["spec"]
    register = Pod(tmp_path, "register", job, objects, hosts)
    [compile_step] = job["initContainers"]
    assert compile_step["image"] == images["curate"]
    register.run(compile_step, timeout=600)
    ir = Path(register.volumes["work"][1]) / "model_flow.yaml"
    spec, platform = yaml.safe_load_all(ir.read_text())
    platform = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    # 2. MLflow as the Deployment runs it, in the tracking image, on loopback.
    deployment = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    mlflow_pod = Pod(tmp_path, "mlflow", deployment, objects, hosts)
    [upgrade] = deployment["initContainers"]
    [server] = deployment["containers"]
    assert upgrade["image"] == server["image"] == images["tracking"]
    mlflow_pod.run(upgrade, timeout=600)
    server = server | {"args": [a.replace("--host=0.0.0.0", "--host=127.0.0.1") for a in server["args"]]}
    log = tmp_path / "mlflow.log"
    proc, server_name = mlflow_pod.start(server, log)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/health", proc, log, 300)
        params = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
        tag = params["image_tag"]

        def run_flow(job_id: str) -> dict[str, dict]:
            """curate then pretrain of one KFP run, each in a fresh pod; each task's output metadata."""
            out, upstream = {}, {}
            for stage, source in (("curate", None), ("pretrain", "curate")):
                values = {"config": "smoke", "overrides": [], "start": "curate", "stop": "pretrain", "init": "",
                          "flow_run": "", "job_id": job_id, "nodes": 1, "gpus_per_node": int(params["gpus_per_node"]),
                          "node_selector": params["gpu_node_selector"], "tolerations": params["gpu_tolerations"],
                          "image": spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]["image"]
                          .replace(TAG_PARAM, tag)}
                arts = {"dataset": upstream[source]} if source else {}
                pod_spec, container = task_pod(spec, platform, f"exec-{stage}", tag,
                                               executor_input(spec, stage, values, bucket, job_id, arts))
                assert container["image"] == images["curate" if stage == "curate" else "trainer"]
                pod = Pod(tmp_path / job_id, stage, pod_spec, objects, hosts)
                pod.run(container)
                scratch = Path(pod.volumes["kfp-s3"][1])
                written = json.loads((scratch / bucket / "kfp" / job_id / stage / "output_metadata.json").read_text())
                [name] = [n for n in written["artifacts"] if n != "metrics"]
                [art] = written["artifacts"][name]["artifacts"]
                out[stage] = art["metadata"]
                upstream[stage] = {"name": name, "type": {"schemaTitle": "system.Dataset"},
                                   "uri": art.get("uri", f"s3://{bucket}/kfp/{job_id}/{stage}/{name}"),
                                   "metadata": art["metadata"]}
                work = Path(pod.volumes["work"][1])
                assert (work / ".olmoflow").is_dir(), f"{stage}: nothing in the work volume"
            return out

        first = run_flow("run-1")
        for stage, meta in first.items():
            assert meta["status"] == "ran", (stage, meta)
            assert meta["uri"].startswith(f"s3://{bucket}/store/"), meta["uri"]
            key = meta["uri"].removeprefix(f"s3://{bucket}/")
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=key + "/")
            assert listed.get("KeyCount", 0) > 0, f"{stage}: nothing under {meta['uri']}"
        second = run_flow("run-2")
        assert {s: m["status"] for s, m in second.items()} == {"curate": "cached", "pretrain": "cached"}
        assert {s: m["uri"] for s, m in second.items()} == {s: m["uri"] for s, m in first.items()}

        from mlflow.tracking import MlflowClient

        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        client = MlflowClient(f"http://127.0.0.1:{port}")
        experiment = client.get_experiment_by_name("smoke")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], "tags.`olmoflow.stage` != ''", max_results=100)
        recorded = {(r.data.tags.get("olmoflow.flow_run"), r.data.tags["olmoflow.stage"]):
                    r.data.tags.get("olmoflow.status") for r in runs}
        assert recorded[("run-1", "curate")] == recorded[("run-1", "pretrain")] == "ran", recorded
        assert recorded[("run-2", "curate")] == recorded[("run-2", "pretrain")] == "cached", recorded
    finally:
        podman("stop", "-t", "10", server_name, check=False)
        proc.wait(timeout=60)
