"""The stage registry is the one place a stage is described, and it tells the truth: each entry's scale-out is what its
module's code does and what the launchers give it, its config sections exist, its component's artifacts are its
entry's, and no stage module keeps a second copy of what the registry says."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

from olmoflow.cluster.config import ClusterConfig
from olmoflow.cluster.jobs import stage_job
from olmoflow.config import FlowConfig
from olmoflow.flow import task
from olmoflow.flow.pipeline import load_pipeline
from olmoflow.registry import (
    CHECKPOINT_STAGES,
    LAST,
    REGISTRY,
    STAGES,
    gathered_inputs,
    input_kind,
    stage,
    step_name,
)

ARTIFACT_TYPES = {"dataset": "system.Dataset@0.0.1", "index": "system.Artifact@0.0.1",
                  "checkpoint": "system.Model@0.0.1", "report": "system.Markdown@0.0.1"}
INPUT_NAMES = {"dataset": "dataset", "checkpoint": "model", "index": "index"}


def calls(module: str) -> set[str]:
    """Dotted names the module calls, e.g. `World.current`, `World`, `open_executor`."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                found.add(f.id)
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                found.add(f"{f.value.id}.{f.attr}")
    return found


@pytest.mark.parametrize("entry", REGISTRY, ids=STAGES)
def test_declared_scale_out_is_what_the_code_does(entry):
    used = calls(entry.module)
    # torchrun: the stage joins the torchrun world and splits its work over the ranks; anything else must not, and a
    # one-process stage that uses a device takes the one-process World
    assert ("World.current" in used) == (entry.scale == "torchrun"), entry.module
    # ray: the stage hands its batch work to the executor that runs it on Ray (a local one or $RAY_ADDRESS's), or
    # its actors to Ray (RLVR's learner and rollout actors)
    assert bool({"open_executor", "ensure_ray"} & used) == (entry.scale == "ray"), entry.module


@pytest.mark.parametrize("entry", REGISTRY, ids=STAGES)
def test_launchers_follow_the_declared_scale_out(entry, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    # on one node: one torchrun rank per GPU for a torchrun stage, else the task's own process
    assert task.local_ranks(entry.name, 8) == (8 if entry.scale == "torchrun" else 1)
    # on several nodes: a RayJob, a torchrun job (TrainJob by default), or none at all
    cluster = ClusterConfig(namespace="ml", gpus_per_node=8)
    if entry.scale == "one-process":
        with pytest.raises(ValueError, match="runs in one process"):
            stage_job(cluster, entry.name, ["olmoflow", "stage", entry.name], 2)
        return
    kind = stage_job(cluster, entry.name, ["olmoflow", "stage", entry.name], 2)["kind"]
    assert kind == ("RayJob" if entry.scale == "ray" else "TrainJob")


def test_config_sections_are_the_stages_and_what_they_share():
    fields = set(FlowConfig.model_fields)
    assert {e.section for e in REGISTRY} | {"flow", "model"} == fields
    assert all(set(e.sections) <= fields for e in REGISTRY)
    assert FlowConfig().stage_config("long-context").keys() == {"long_context"}


@pytest.mark.parametrize("entry", REGISTRY, ids=STAGES)
def test_stage_module_is_its_run_only(entry):
    mod = importlib.import_module(entry.module)
    assert callable(mod.run)
    kept = [name for name in ("KIND", "INPUTS", "OPTIONAL_INPUTS", "HEADLINE", "DISTRIBUTED") if hasattr(mod, name)]
    assert not kept, f"{entry.module} repeats what olmoflow/registry.py says: {kept}"


@pytest.mark.parametrize("entry", REGISTRY, ids=STAGES)
def test_components_carry_the_declared_artifacts(entry):
    load_pipeline()  # puts the repo root, which holds components/, on sys.path
    from components.stages import COMPONENTS

    spec = COMPONENTS[entry.name].component_spec
    artifacts = {k: v.type for k, v in spec.inputs.items() if v.type.startswith("system.")}
    # every input it needs, and of the ones it may take those the flow wires (eval's index; not pretrain's
    # checkpoint, which only --init gives)
    optional = {INPUT_NAMES[kind]: ARTIFACT_TYPES[kind] for kind in entry.optional_inputs}
    # a gathering stage: one input per step it gathers (model-flow's eval_pretrain ... eval_rlvr)
    gathered = {name.replace("-", "_"): ARTIFACT_TYPES[kind] for name, kind in gathered_inputs(entry).items()}
    assert artifacts == {INPUT_NAMES[kind]: ARTIFACT_TYPES[kind] for kind in entry.inputs} | {
        k: v for k, v in optional.items() if k in artifacts} | gathered
    assert ("of" in spec.inputs) == entry.per_checkpoint
    assert ("index" in artifacts) == (entry.name == "eval")
    assert {k: v.type for k, v in spec.outputs.items()} == {entry.output: ARTIFACT_TYPES[entry.output],
                                                             "metrics": "system.Metrics@0.0.1"}


def test_lookup_and_order():
    assert STAGES[0] == "curate" and STAGES[-1] == LAST == "model-flow" and len(set(STAGES)) == len(STAGES)
    assert CHECKPOINT_STAGES == ("pretrain", "midtrain", "long-context", "sft", "dpo", "rlvr")
    assert step_name("eval", "long-context") == "eval-long-context" and step_name("sft") == "sft"
    assert input_kind(stage("model-flow"), "eval-sft") == "report" and input_kind(stage("eval"), "index") == "index"
    assert input_kind(stage("model-flow"), "eval-curate") is None
    assert stage("long-context").module == "olmoflow.stages.long_context"
    with pytest.raises(ValueError, match=r"unknown stage 'sftt' \(stages: curate, pretrain"):
        stage("sftt")
