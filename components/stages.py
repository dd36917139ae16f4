"""One KFP component per stage. Each is a thin wrapper: the library (olmoflow.flow.task) does the work, the
component only declares the task's inputs and outputs so the KFP UI shows the flow's shape and data lineage.

Every component takes the run's parameters (config, overrides, start/stop/init, flow_run) and the stage's pool
(nodes, gpus_per_node, node_selector, tolerations, image): a task on one node ignores the pool, as its pod already
has it; a task given more nodes launches a job with it (olmoflow.flow.task.run_on_nodes).

KFP reads the annotations at import time (so no `from __future__ import annotations`) and turns each function's
source into a task program, so imports live inside the bodies, and the bodies cannot share a helper: they stay one
call long on purpose.
"""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from olmoflow import __version__

# The images a task's pod starts from; the pipeline sets the tag per run (its image_tag parameter).
TRAINER_IMAGE = f"olmoflow/trainer:{__version__}"
CURATE_IMAGE = f"olmoflow/curate:{__version__}"


def _component(image: str):
    # install_kfp_package=False: the image (or, locally, the venv) already has kfp; a pip install per task would
    # need the network and cost seconds per stage.
    return dsl.component(base_image=image, install_kfp_package=False)


@_component(CURATE_IMAGE)
def curate(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
           nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
           dataset: Output[Dataset], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("curate", config, overrides, start, stop, init, flow_run, job_id,
             {}, dataset, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def trace_index(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
                nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
                dataset: Input[Dataset], index: Output[Artifact], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("trace-index", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset}, index, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def pretrain(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
             nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
             dataset: Input[Dataset], checkpoint: Output[Model], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("pretrain", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset}, checkpoint, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def midtrain(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
             nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
             dataset: Input[Dataset], model: Input[Model], checkpoint: Output[Model], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("midtrain", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset, "checkpoint": model}, checkpoint, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def long_context(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
                 nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
                 dataset: Input[Dataset], model: Input[Model], checkpoint: Output[Model], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("long-context", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset, "checkpoint": model}, checkpoint, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def sft(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
        nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
        dataset: Input[Dataset], model: Input[Model], checkpoint: Output[Model], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("sft", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset, "checkpoint": model}, checkpoint, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def dpo(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
        nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
        dataset: Input[Dataset], model: Input[Model], checkpoint: Output[Model], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("dpo", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset, "checkpoint": model}, checkpoint, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def rlvr(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
         nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
         dataset: Input[Dataset], model: Input[Model], checkpoint: Output[Model], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("rlvr", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset, "checkpoint": model}, checkpoint, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


@_component(TRAINER_IMAGE)
def evaluate(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
             nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str, of: str,
             dataset: Input[Dataset], model: Input[Model], index: Input[Artifact], report: Output[Markdown],
             metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("eval", config, overrides, start, stop, init, flow_run, job_id,
             {"dataset": dataset, "checkpoint": model, "index": index}, report, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image), of=of)


@_component(TRAINER_IMAGE)
def model_flow(config: str, overrides: List[str], start: str, stop: str, init: str, flow_run: str, job_id: str,
               nodes: int, gpus_per_node: int, node_selector: dict, tolerations: list, image: str,
               eval_pretrain: Input[Markdown], eval_midtrain: Input[Markdown], eval_long_context: Input[Markdown],
               eval_sft: Input[Markdown], eval_dpo: Input[Markdown], eval_rlvr: Input[Markdown],
               report: Output[Markdown], metrics: Output[Metrics]):
    from olmoflow.flow.task import run_task
    run_task("model-flow", config, overrides, start, stop, init, flow_run, job_id,
             {"eval-pretrain": eval_pretrain, "eval-midtrain": eval_midtrain, "eval-long-context": eval_long_context,
              "eval-sft": eval_sft, "eval-dpo": eval_dpo, "eval-rlvr": eval_rlvr}, report, metrics,
             pool=dict(nodes=nodes, gpus_per_node=gpus_per_node, node_selector=node_selector,
                       tolerations=tolerations, image=image))


COMPONENTS = {"curate": curate, "pretrain": pretrain, "midtrain": midtrain, "long-context": long_context, "sft": sft,
              "dpo": dpo, "rlvr": rlvr, "trace-index": trace_index, "eval": evaluate, "model-flow": model_flow}
"""Each stage's component, by stage name (olmoflow/registry.py). Its artifacts follow the stage's entry: an input
`dataset` (Input[Dataset]) and `model` (Input[Model], the checkpoint input), eval's optional `index` (Input[Artifact],
trace-index's output; an empty one when trace-index was skipped), a gathering stage's one input per step it gathers
(model-flow's eval_pretrain ... eval_rlvr: the step's name with `_` for `-`), an output named after the stage's
output kind (trace-index's `index`: Output[Artifact]); a per-checkpoint stage (eval) also takes `of`, the stage whose
checkpoint it is given; tests/test_registry.py holds the two together."""
