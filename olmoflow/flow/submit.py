"""Start the model flow on a cluster's Kubeflow Pipelines from a laptop, and follow a run.

    olmoflow submit --host http://localhost:8888 [--config olmo3-7b] [--set k=v] [--from S --to S --init URI]
                    [--nodes pretrain=16 ...] [--gpus-per-node 8] [--image-tag 0.1.0]
    olmoflow status RUN_ID --host http://localhost:8888

`submit` uploads pipelines/model_flow.yaml as a version named `{version}-{sha256[:8]}` (the chart's registration
names it the same way, so an unchanged pipeline uploads nothing), then starts a run of exactly that version. A preset
name travels as a name (the pod reads configs/ from its image); a YAML file on this machine travels as JSON, since the
pod cannot read it. Either way the config is validated here first, so a typo never costs a GPU pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmoflow import __version__
from olmoflow.cluster.register import register, version_name
from olmoflow.config import ConfigError, load_config, to_json
from olmoflow.flow.plan import Plan
from olmoflow.registry import STAGES
from olmoflow.registry import stage as stage_entry

EXPERIMENT = "olmoflow"


def run_params(config: str, overrides: list[str], start: str, stop: str, init: str) -> dict[str, Any]:
    """The pipeline parameters of a run; raises ConfigError on a bad config or plan before anything is sent."""
    cfg = load_config(config, overrides)
    Plan(start, stop, init)
    if Path(config).is_file() or config.lstrip().startswith("{"):
        config, overrides = to_json(cfg), []
    return {"config": config, "overrides": list(overrides), "start": start, "stop": stop, "init": init}


def pool_params(nodes: list[str], gpus_per_node: int | None, image_tag: str | None) -> dict[str, Any]:
    """The run form's pool parameters from `--nodes STAGE=N` etc.; what is not given keeps the pipeline's default."""
    params: dict[str, Any] = {}
    for item in nodes:
        name, _, n = item.partition("=")
        if name not in STAGES:
            raise ConfigError(f"--nodes {item}: unknown stage {name!r} (stages: {', '.join(STAGES)})")
        if not stage_entry(name).multi_node:
            raise ConfigError(f"--nodes {item}: stage {name} runs in one process on one node")
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--nodes {item}: the node count must be an integer >= 1")
        params[f"nodes_{stage_entry(name).section}"] = int(n)
    if gpus_per_node is not None:
        if gpus_per_node < 1:
            raise ConfigError(f"--gpus-per-node {gpus_per_node}: must be >= 1")
        params["gpus_per_node"] = gpus_per_node
    if image_tag:
        params["image_tag"] = image_tag
    return params


def run_name(config: str, start: str, stop: str) -> str:
    """`tiny curate..eval`: the preset or file name, or `inline` for JSON, and the plan."""
    name = "inline" if config.lstrip().startswith("{") else Path(config).stem
    return f"{name} {start}..{stop}"


def version_id(client: Any, pipeline_id: str, name: str) -> str:
    token = ""
    while True:
        page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
        for v in page.pipeline_versions or []:
            if v.display_name == name:
                return v.pipeline_version_id
        token = page.next_page_token
        if not token:
            raise ConfigError(f"pipeline {pipeline_id} has no version {name} after upload")


def submit(client: Any, package: Path, pipeline: str, params: dict[str, Any], run_name: str,
           experiment: str = EXPERIMENT) -> tuple[str, str]:
    """Upload `package` if this version is new, start a run of it; returns (what the upload did, run id)."""
    uploaded = register(client, package, pipeline, __version__)
    pipeline_id = client.get_pipeline_id(pipeline)
    vid = version_id(client, pipeline_id, version_name(__version__, package))
    exp = client.create_experiment(experiment)
    run = client.run_pipeline(exp.experiment_id, run_name, params=params, pipeline_id=pipeline_id, version_id=vid)
    return uploaded, run.run_id


def describe(run: Any) -> list[str]:
    """One line for the run, then one per task the backend has reported: `name  STATE`."""
    lines = [f"run {run.run_id} ({run.display_name}): {run.state}"]
    if run.error and getattr(run.error, "message", ""):
        lines.append(f"error: {run.error.message}")
    tasks = (run.run_details.task_details or []) if run.run_details else []
    for t in sorted(tasks, key=lambda t: str(t.start_time or "")):
        lines.append(f"  {t.display_name:<16} {t.state}")
    return lines
