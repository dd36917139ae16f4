"""The stage registry: what each stage of the flow is, in flow order, in one place.

A stage is its module, olmoflow/stages/{section}.py, with `run(ctx) -> metrics`, and one entry here. Everything that
needs to know about a stage reads its entry: the config (which sections go into its fingerprint), the runner (its
inputs, output kind and headline; whether it may run on several ranks), the pipeline and its components (its
artifacts; whether it gets a multi-node branch), the cluster (a GPU pod or not; a torchrun job or a RayJob), the CLI
and the eval stage (whether its checkpoints speak the chat template). tests/test_registry.py holds each entry's
scale-out to what its module does.

This module imports nothing from olmoflow, so every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scale = Literal["torchrun", "ray", "one-process"]
"""How a stage spreads over ranks and nodes: "torchrun" trains on every rank of a torchrun world (one per GPU of a
node, and a TrainJob / PyTorchJob across nodes); "ray" hands its batch work to a Ray cluster (a RayJob across
nodes); "one-process" runs in one process on one node, and nowhere else."""


@dataclass(frozen=True)
class Stage:
    name: str
    """The stage's name in the flow, the store, MLflow and the CLI."""
    section: str
    """Its config section (FlowConfig.{section}), which is also its module's name: olmoflow/stages/{section}.py."""
    output: str
    """The kind of artifact it writes: dataset, index (trace-index's), checkpoint or report."""
    headline: str
    """The metric the flow's summary shows for it."""
    inputs: tuple[str, ...] = ()
    """Input artifacts it needs; each is named after the kind it must be."""
    optional_inputs: tuple[str, ...] = ()
    """Input artifacts it may take (the pipeline wires one when an earlier stage writes that kind and the stage's
    component takes it: eval's trace index; pretrain's checkpoint comes only from --init)."""
    shared_sections: tuple[str, ...] = ()
    """Config sections besides its own that determine its output (they go into its fingerprint too)."""
    gpus: bool = True
    """Its task pod holds GPUs (in the pipeline's GPU pool)."""
    scale: Scale = "one-process"
    chat: bool = False
    """Its checkpoints were trained on the chat template (the eval stage then prompts them with it)."""
    per_checkpoint: bool = False
    """It runs once per checkpoint stage, on that stage's checkpoint (eval: every stage is evaluated). Each run is
    a step named `{name}-{stage}` (eval-pretrain, eval-sft, ...) in the DAG, MLflow and the summary; its artifact
    has its own address, as its checkpoint input differs."""
    gathers: str = ""
    """The per-checkpoint stage whose every output it takes (model-flow gathers eval's reports): one input per
    checkpoint stage, named after that step (`eval-pretrain`, ...), each of the gathered stage's output kind; a
    step that did not run gives none."""

    @property
    def module(self) -> str:
        return f"olmoflow.stages.{self.section}"

    @property
    def multi_node(self) -> bool:
        """It can run as a job over several nodes (the pipeline gives it a nodes_{section} parameter)."""
        return self.scale != "one-process"

    @property
    def sections(self) -> tuple[str, ...]:
        """The config sections in its fingerprint, shared ones first."""
        return self.shared_sections + (self.section,)


REGISTRY: tuple[Stage, ...] = (
    Stage("curate", "curate", output="dataset", headline="train_tokens", gpus=False, scale="ray"),
    Stage("pretrain", "pretrain", output="checkpoint", headline="val_loss", inputs=("dataset",),
          optional_inputs=("checkpoint",), shared_sections=("model",), scale="torchrun"),
    Stage("midtrain", "midtrain", output="checkpoint", headline="val_loss", inputs=("dataset", "checkpoint"),
          scale="torchrun"),
    Stage("long-context", "long_context", output="checkpoint", headline="val_loss",
          inputs=("dataset", "checkpoint"), scale="torchrun"),
    Stage("sft", "sft", output="checkpoint", headline="val_sft_loss", inputs=("dataset", "checkpoint"),
          scale="torchrun", chat=True),
    Stage("dpo", "dpo", output="checkpoint", headline="pref_accuracy", inputs=("dataset", "checkpoint"),
          scale="torchrun", chat=True),
    Stage("rlvr", "rlvr", output="checkpoint", headline="val_accuracy", inputs=("dataset", "checkpoint"),
          scale="ray", chat=True),
    Stage("trace-index", "trace_index", output="index", headline="tokens", inputs=("dataset",), gpus=False),
    Stage("eval", "eval", output="report", headline="val_bpb", inputs=("dataset", "checkpoint"),
          optional_inputs=("index",), per_checkpoint=True),
    Stage("model-flow", "model_flow", output="report", headline="stages_evaluated", gathers="eval", gpus=False),
)

STAGES: tuple[str, ...] = tuple(s.name for s in REGISTRY)
"""Stage names in flow order."""

LAST: str = STAGES[-1]
"""Where a flow stops unless told otherwise (--to)."""

CHECKPOINT_STAGES: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.output == "checkpoint")
"""The stages that make a checkpoint, in flow order: each is evaluated (eval-{stage})."""

_BY_NAME = {s.name: s for s in REGISTRY}


def step_name(stage: str, of: str = "") -> str:
    """The name of one run of `stage`: itself, or for a per-checkpoint stage `{stage}-{of}` (eval-sft)."""
    return f"{stage}-{of}" if of else stage


def gathered_inputs(spec: Stage) -> dict[str, str]:
    """{input name: kind} of a gathering stage (model-flow: eval-pretrain ... eval-rlvr, each a report)."""
    if not spec.gathers:
        return {}
    kind = stage(spec.gathers).output
    return {step_name(spec.gathers, s): kind for s in CHECKPOINT_STAGES}


def input_kind(spec: Stage, name: str) -> str | None:
    """The artifact kind input `name` of stage `spec` must be; None when the stage takes no such input."""
    if name in spec.inputs + spec.optional_inputs:
        return name  # an input is named after its kind
    return gathered_inputs(spec).get(name)


def stage(name: str) -> Stage:
    """The registry entry of stage `name`; a ValueError listing the stages when there is none."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    return _BY_NAME[name]
