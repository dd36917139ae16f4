"""The Olmo 3 model flow as one KFP DAG: curate → pretrain → midtrain → long-context → SFT → DPO → RLVR, each
checkpoint evaluated (eval-{stage}), and the model-flow report over them all.

The same function runs locally (`olmoflow run`, kfp.local) and compiles for a cluster (`olmoflow compile`).
Every stage always exists in the DAG; `start` / `stop` / `init` decide inside each task whether it runs, so the UI
shows one stable graph and a resumed run reads like a full one with some stages marked skipped.
A checkpoint stage the config's flow.skip leaves out (RL-Zero: sft, dpo) is skipped the same way, and its task
hands on the checkpoint it was given, so the next stage reads the last checkpoint that was made.

The run form in the KFP UI has working defaults for everything: the config preset (or a config URI), start/stop
stage, an init artifact, the image tag, GPUs per node, the GPU pool's node selector and tolerations (JSON), and
nodes per stage that scales out (olmoflow/registry.py; RLVR and eval run in one process on one node). A stage with
`nodes_{section} == 1` runs in its task pod, which holds the GPUs; with more, the `else` branch's pod (no GPU)
launches a TrainJob/PyTorchJob/RayJob and waits: `dsl.If`/`dsl.Else` with `dsl.OneOf` joining the two branches'
outputs, so downstream stages read whichever ran. The data stages are wired first, then the checkpoint stages in the
registry's order, each reading the latest artifact of each kind it takes; each checkpoint is evaluated by its own
eval task (eval-pretrain ... eval-rlvr, a branch beside the next stage, also reading trace-index's index), and
model-flow gathers their reports into the model-flow report. Pod settings come from one
PipelineSettings (olmoflow.cluster.settings), which also gives the parameters their defaults.
"""


from kfp import dsl

from components import stages as c
from olmoflow.cluster.settings import PipelineSettings, apply_settings
from olmoflow.registry import LAST, REGISTRY, gathered_inputs, step_name

PIPELINE_NAME = "olmo3-model-flow"
DESCRIPTION = "Olmo 3 model flow: curate, pretrain, midtrain, long-context, SFT, DPO, RLVR, eval — with resumable " \
              "artifacts and MLflow."
INPUT_NAMES = {"dataset": "dataset", "checkpoint": "model", "index": "index"}
"""A component's parameter for each input artifact kind (its output is named after its kind)."""


def build(settings: PipelineSettings):
    """The pipeline with `settings` as its pod settings and parameter defaults (see olmoflow.cluster.settings)."""
    s = settings

    # One nodes_{section} parameter per stage that scales out (olmoflow/registry.py); KFP reads the parameters
    # from the signature, so they are spelled out here and tests/flow/test_pipeline.py holds them to the registry.
    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def model_flow(config: str = "tiny", overrides: list[str] = [], start: str = "curate", stop: str = LAST,
                   init: str = "", flow_run: str = "", image_tag: str = s.image_tag,
                   gpus_per_node: int = s.gpus_per_node, gpu_node_selector: dict = s.node_selector,
                   gpu_tolerations: list = s.toleration_list(),
                   nodes_curate: int = s.stage_nodes("curate"), nodes_pretrain: int = s.stage_nodes("pretrain"),
                   nodes_midtrain: int = s.stage_nodes("midtrain"),
                   nodes_long_context: int = s.stage_nodes("long-context"), nodes_sft: int = s.stage_nodes("sft"),
                   nodes_dpo: int = s.stage_nodes("dpo"), nodes_rlvr: int = s.stage_nodes("rlvr")):
        """Args:
            config: Preset name (configs/NAME.yaml) or inline JSON. Its sources come from OLMOFLOW_SOURCES (the
                chart's s3.sources, s3://BUCKET/sources, uploaded from `make data`), never from local files.
            start: First stage to run (curate ... rlvr, eval, model-flow); earlier ones are skipped.
            stop: Last stage to run; model-flow (the default) evaluates every stage and gathers the report.
            init: Artifact URI the start stage reads instead of the previous stage's (a checkpoint).
        """
        nodes = {"curate": nodes_curate, "pretrain": nodes_pretrain, "midtrain": nodes_midtrain,
                 "long-context": nodes_long_context, "sft": nodes_sft, "dpo": nodes_dpo,
                 "rlvr": nodes_rlvr}
        run = dict(config=config, overrides=overrides, start=start, stop=stop, init=init, flow_run=flow_run,
                   job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        pool = dict(gpus_per_node=gpus_per_node, node_selector=gpu_node_selector, tolerations=gpu_tolerations)

        def one_node(name: str, component, display: str = "", **io):
            image = f"{s.image(name)}:{image_tag}"
            task = component(**run, **io, **pool, nodes=1, image=image).set_display_name(display or name)
            return apply_settings(task, name, s, launcher=False, image=image, **pool)

        def stage(name: str, component, nodes, output: str, **io):
            """The stage on one node or as a job of `nodes` nodes; its output, whichever branch ran."""
            with dsl.If(nodes == 1, name=f"{name} on one node"):
                here = one_node(name, component, **io)
            with dsl.Else(name=f"{name} as a multi-node job"):
                image = f"{s.image(name)}:{image_tag}"
                task = component(**run, **io, **pool, nodes=nodes, image=image).set_display_name(f"{name} (job)")
                job = apply_settings(task, name, s, launcher=True, image=image)
            return dsl.OneOf(here.outputs[output], job.outputs[output])

        def inputs(e, artifacts: dict) -> dict:
            io = {INPUT_NAMES[kind]: artifacts[kind] for kind in e.inputs}
            # an optional input, when an earlier stage wrote that kind and the component takes it (eval's index)
            takes = c.COMPONENTS[e.name].component_spec.inputs
            return io | {INPUT_NAMES[kind]: artifacts[kind] for kind in e.optional_inputs
                         if kind in artifacts and INPUT_NAMES[kind] in takes}

        def add(e, artifacts: dict, **extra):
            io = inputs(e, artifacts) | extra
            if e.multi_node:
                return stage(e.name, c.COMPONENTS[e.name], nodes[e.name], e.output, **io)
            display = step_name(e.name, extra.get("of", ""))
            return one_node(e.name, c.COMPONENTS[e.name], display, **io).outputs[e.output]

        # Data stages first (they read only the dataset: trace-index's index is ready for every eval), then each
        # checkpoint stage followed by its evaluation (a branch beside the next stage's training), then what
        # gathers the evaluations (model-flow).
        order = sorted(REGISTRY, key=lambda e: (e.output == "checkpoint" or "checkpoint" in e.inputs
                                                or e.per_checkpoint or bool(e.gathers)))
        artifacts = {}  # the latest artifact of each kind: dataset, index, checkpoint
        evaluations = {}  # step name -> a per-checkpoint stage's output
        per_checkpoint = [e for e in REGISTRY if e.per_checkpoint]
        for e in order:
            if e.per_checkpoint:
                continue
            if e.gathers:
                add(e, artifacts, **{name.replace("-", "_"): evaluations[name] for name in gathered_inputs(e)})
                continue
            artifacts[e.output] = add(e, artifacts)
            if e.output == "checkpoint":
                for p in per_checkpoint:
                    evaluations[step_name(p.name, e.name)] = add(p, artifacts, of=e.name)

    return model_flow


model_flow = build(PipelineSettings())
