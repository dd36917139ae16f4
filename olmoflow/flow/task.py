"""The body of every KFP component: plan, run the stage, and hand the next task a small artifact (the manifest,
with the store URI in its metadata). Payloads stay in the store, so the KFP launcher never copies a dataset.

A stage the pipeline gives more than one node (the run's nodes_{stage} parameter, in the task's `pool`) does not
run in the task pod: the pod launches `olmoflow stage ...` as a TrainJob / PyTorchJob / RayJob (olmoflow.cluster)
from the chart's cluster.json with the run's pool (GPUs per node, node selector, tolerations, image) on top, waits
for it, and reads the artifact's manifest back. On one node, a stage that trains on every rank (scale "torchrun" in
olmoflow/registry.py) runs one rank per GPU of the pod under `torchrun --standalone`; everything else runs in the
task's own process.

A task whose artifact is already in the store (cached) or whose stage is outside the plan (skipped) reads only
manifests: no torch, no MLflow (olmoflow.tracking.recorder), so a re-run costs each task little more than the KFP
executor's own start-up. Keep heavy imports inside the functions that run a stage. A stage left out by flow.skip
hands the URI of the checkpoint it was given on as its own output's (olmoflow/flow/plan.py: Plan.handed_on).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from olmoflow.config import FlowConfig, load_config, to_json
from olmoflow.flow.plan import Plan
from olmoflow.flow.runner import StageResult, find_cached, record_skipped, run_stage
from olmoflow.registry import LAST, step_name
from olmoflow.registry import stage as stage_entry

log = logging.getLogger("olmoflow")


def setup_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("alembic", "mlflow", "botocore", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_task(stage: str, config: str, overrides: list[str], start: str, stop: str, init: str, flow_run: str,
             job_id: str, inputs: dict[str, Any], output: Any, metrics: Any = None,
             pool: dict[str, Any] | None = None, of: str = "") -> None:
    """`inputs` maps names to KFP input artifacts (or None); `output` is the KFP output artifact; `pool` is the
    run's nodes, gpus_per_node, node_selector, tolerations and image for this stage; `of` is the stage whose
    checkpoint a per-checkpoint stage (eval) takes."""
    setup_logging()
    cfg = load_config(config, overrides)
    plan = Plan(start, stop, init, cfg.flow.skip)
    flow_run = flow_run or job_id
    upstream = {name: (art.metadata.get("uri", "") if art is not None else "") for name, art in inputs.items()}
    if not plan.runs(stage, of):
        why = plan.skip_reason(stage, of)
        record_skipped(step_name(stage, of), cfg, flow_run, why)
        # A stage left out by flow.skip hands on the checkpoint it was given: the next stage reads it as the latest
        # checkpoint, so it trains on the last stage that ran (the DAG keeps every task).
        handed_on = plan.handed_on(stage, upstream) if not of else ""
        output.metadata.update({"status": "skipped", **({"uri": handed_on} if handed_on else {})})
        with open(output.path, "w") as f:
            json.dump({"stage": stage, "status": "skipped", "reason": why,
                       **({"handed_on": handed_on} if handed_on else {})}, f)
        if stage == LAST:
            _end_flow(cfg, flow_run, "FINISHED")
        return
    pool = pool or {}
    nodes = int(pool.get("nodes") or 1)
    try:
        if nodes > 1:
            result = run_on_nodes(stage, cfg, plan.inputs(stage, upstream), nodes, flow_run, pool=pool)
        else:
            result = run_on_this_node(stage, cfg, plan.inputs(stage, upstream), pool, flow_run,
                                      plan.evaluated(stage, of))
    except BaseException:
        _end_flow(cfg, flow_run, "FAILED")
        raise
    with open(output.path, "w") as f:
        json.dump(result.manifest, f, indent=2)
    output.metadata.update({"uri": result.uri, "fingerprint": result.fingerprint, "kind": result.kind,
                            "status": result.status, "wall_s": round(result.wall_s, 1), "headline": result.headline})
    if metrics is not None:
        for k, v in result.metrics.items():
            metrics.log_metric(k, v)
    if stage == LAST:
        # The DAG's last task (it waits on every other), whatever --to says: the flow's run ends when its tasks do.
        _end_flow(cfg, flow_run, "FINISHED")


def run_on_this_node(stage: str, cfg: FlowConfig, inputs: dict[str, str], pool: dict[str, Any],
                     flow_run: str | None, of: str = "") -> StageResult:
    """The stage in this pod: its cached artifact if there is one (found before torch is imported to count the
    GPUs), else a rank per GPU for a stage that trains on every rank, else this process."""
    cached = find_cached(stage, cfg, inputs, flow_run, of=of)
    if cached:
        return cached
    if (gpus := local_ranks(stage, int(pool.get("gpus_per_node") or 1))) > 1:
        return run_on_local_gpus(stage, cfg, inputs, gpus, flow_run)
    return run_stage(stage, cfg, inputs, flow_run, of)


def _end_flow(cfg, flow_run: str, status: str) -> None:
    from olmoflow.tracking import SPOOL_ENV, Tracker
    if os.environ.get(SPOOL_ENV):
        return  # under `olmoflow run`: its driver ends the flow run once it has replayed the spool
    Tracker(cfg.flow.name, flow_run).end_flow(status)


def launch_job(manifest: dict) -> None:
    """Run one job to the end with the chart's launcher settings; raises JobFailed / JobTimeout."""
    from olmoflow.cluster.config import load_cluster_config
    from olmoflow.cluster.launcher import run_job
    cluster = load_cluster_config()
    run_job(manifest, cluster.timeout_s, cluster.poll_s, cluster.poll_max_s)


def job_cluster(stage: str, pool: dict[str, Any] | None):
    """The chart's cluster.json with this run's pool on top: what the run form says wins over the install."""
    from olmoflow.cluster.config import ClusterConfig, load_cluster_config
    cluster = load_cluster_config()
    update = {k: pool[k] for k in ("gpus_per_node", "node_selector", "tolerations") if pool and k in pool}
    if pool and pool.get("image"):
        update["curate_image" if stage == "curate" else "trainer_image"] = pool["image"]
    try:
        return ClusterConfig.model_validate({**cluster.model_dump(), **update})
    except ValueError as e:
        raise ValueError(f"{stage}: pipeline parameters: {str(e).splitlines()[-1].strip()}") from None


def local_ranks(stage: str, gpus_per_node: int) -> int:
    """Ranks a one-node task runs `stage` on: one per GPU the pod sees (at most gpus_per_node) for a stage that
    trains on every rank, else 1 (and 1 without CUDA, as under kfp.local on a laptop)."""
    if gpus_per_node <= 1 or stage_entry(stage).scale != "torchrun":
        return 1
    import torch

    if not torch.cuda.is_available():
        return 1
    return min(gpus_per_node, torch.cuda.device_count())


def torchrun_argv(ranks: int, command: list[str]) -> list[str]:
    """`olmoflow stage ...` as `ranks` processes on this machine (torchrun --standalone: a local rendezvous)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
            "-m", "olmoflow.cli", *command[1:]]


def _execute(argv: list[str]) -> None:
    code = subprocess.run(argv).returncode
    if code:
        raise RuntimeError(f"torchrun exited with status {code}: {' '.join(argv[:6])} ... (its ranks' logs above)")


def run_on_local_gpus(stage: str, cfg: FlowConfig, inputs: dict[str, str], gpus: int, flow_run: str | None = None,
                      execute: Callable[[list[str]], None] | None = None) -> StageResult:
    """Run a torchrun-scale `stage` on this pod's `gpus` GPUs (one torchrun rank each) unless its artifact already
    exists; the ranks publish it (rank 0 writes) and the result comes from the manifest, as for a job."""
    def start(command: list[str], fp: str, uri: str) -> None:
        log.info("%s: running on this node's %d GPUs -> %s", stage, gpus, uri)
        (execute or _execute)(torchrun_argv(gpus, command))

    return _run_elsewhere(stage, cfg, inputs, flow_run, 1, start)


def run_on_nodes(stage: str, cfg: FlowConfig, inputs: dict[str, str], nodes: int, flow_run: str | None = None,
                 launch: Callable[[dict], Any] | None = None, pool: dict[str, Any] | None = None) -> StageResult:
    """Run `stage` as a `nodes`-node job unless its artifact already exists; the result comes from the manifest.

    The output URI is known before launching (content address of config + input fingerprints), so a finished
    stage costs no GPU, and only manifests are read here: this pod never downloads a dataset or a checkpoint.
    The job runs `olmoflow stage ... --flow-run`, so its MLflow run is nested under the flow's own parent run.
    """
    from olmoflow.cluster.jobs import job_name, stage_job

    def start(command: list[str], fp: str, uri: str) -> None:
        log.info("%s: launching on %d nodes -> %s", stage, nodes, uri)
        (launch or launch_job)(stage_job(job_cluster(stage, pool), stage, command, nodes, job_name(stage, fp)))

    return _run_elsewhere(stage, cfg, inputs, flow_run, nodes, start)


def _run_elsewhere(stage: str, cfg: FlowConfig, inputs: dict[str, str], flow_run: str | None, nodes: int,
                   start: Callable[[list[str], str, str], None]) -> StageResult:
    """`start(command, fingerprint, uri)` runs `olmoflow stage ...` in other processes unless the artifact exists;
    then the manifest gives the result, and MLflow gets the stage's run (the job's own, nested, or a record)."""
    from olmoflow.flow.runner import from_manifest, locate, record_result

    tags = {"olmoflow.nodes": str(nodes)}
    cached = find_cached(stage, cfg, inputs, flow_run, tags)
    if cached:
        return cached
    started = time.time()
    _, fp, uri = locate(stage, cfg, inputs)
    start(stage_command(stage, cfg, inputs, flow_run), fp, uri)
    result = from_manifest(stage, "ran", uri, fp, started)  # the job may have ended without publishing it
    if flow_run:
        from olmoflow.tracking import Tracker
        tracker = Tracker(cfg.flow.name, flow_run)
        m = result.manifest
        if m.get("flow_run") == flow_run and m.get("mlflow_run_id"):
            # The job logged the stage itself, nested under this flow's run (--flow-run); say how big it was.
            tracker.set_tags(m["mlflow_run_id"], tags)
            tracker.drain()  # the journal sends in the background: this task ends here, so see the tags out
        else:
            record_result(tracker, result, cfg.stage_config(stage), tags)
    return result


def stage_command(stage: str, cfg: FlowConfig, inputs: dict[str, str], flow_run: str | None) -> list[str]:
    """The `olmoflow stage` command line a job's pods run (torchrun or Ray wraps it)."""
    command = ["olmoflow", "stage", stage, "--config", to_json(cfg)]
    for name, u in inputs.items():
        if u:
            command += ["--input", f"{name}={u}"]
    if flow_run:
        command += ["--flow-run", flow_run]
    return command
