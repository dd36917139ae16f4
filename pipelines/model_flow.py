"""The Olmo 3 model flow as one KFP DAG: curate → pretrain → midtrain → long-context → SFT → DPO → RLVR → eval.

The same function runs locally (`olmoflow run`, kfp.local) and compiles for a cluster (`olmoflow compile`).
Every stage always exists in the DAG; `start` / `stop` / `init` decide inside each task whether it runs, so the UI
shows one stable graph and a resumed run reads like a full one with some stages marked skipped.

The run form in the KFP UI has working defaults for everything: the config preset (or a config URI), start/stop
stage, an init artifact, the image tag, GPUs per node, the GPU pool's node selector and tolerations (JSON), and
nodes per stage. A stage with `nodes_{stage} == 1` runs in its task pod, which holds the GPUs; with more, the
`else` branch's pod (no GPU) launches a TrainJob/PyTorchJob/RayJob and waits: `dsl.If`/`dsl.Else` with
`dsl.OneOf` joining the two branches' outputs, so downstream stages read whichever ran. Pod settings come from one
PipelineSettings (olmoflow.cluster.settings), which also gives the parameters their defaults.
"""

from typing import List

from kfp import dsl

from components import stages as c
from olmoflow.cluster.settings import PipelineSettings, apply_settings

PIPELINE_NAME = "olmo3-model-flow"
DESCRIPTION = "Olmo 3 model flow: curate, pretrain, midtrain, long-context, SFT, DPO, RLVR, eval — with resumable " \
              "artifacts and MLflow."


def build(settings: PipelineSettings):
    """The pipeline with `settings` as its pod settings and parameter defaults (see olmoflow.cluster.settings)."""
    s = settings

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def model_flow(config: str = "tiny", overrides: List[str] = [], start: str = "curate", stop: str = "eval",
                   init: str = "", flow_run: str = "", image_tag: str = s.image_tag,
                   gpus_per_node: int = s.gpus_per_node, gpu_node_selector: dict = s.node_selector,
                   gpu_tolerations: list = s.toleration_list(),
                   nodes_curate: int = s.stage_nodes("curate"), nodes_pretrain: int = s.stage_nodes("pretrain"),
                   nodes_midtrain: int = s.stage_nodes("midtrain"),
                   nodes_long_context: int = s.stage_nodes("long-context"), nodes_sft: int = s.stage_nodes("sft"),
                   nodes_dpo: int = s.stage_nodes("dpo"), nodes_rlvr: int = s.stage_nodes("rlvr")):
        run = dict(config=config, overrides=overrides, start=start, stop=stop, init=init, flow_run=flow_run,
                   job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        pool = dict(gpus_per_node=gpus_per_node, node_selector=gpu_node_selector, tolerations=gpu_tolerations)

        def one_node(name: str, component, **io):
            image = f"{s.image(name)}:{image_tag}"
            task = component(**run, **io, **pool, nodes=1, image=image).set_display_name(name)
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

        dataset = stage("curate", c.curate, nodes_curate, "dataset")
        model = stage("pretrain", c.pretrain, nodes_pretrain, "checkpoint", dataset=dataset)
        for name, component, nodes in (("midtrain", c.midtrain, nodes_midtrain),
                                       ("long-context", c.long_context, nodes_long_context),
                                       ("sft", c.sft, nodes_sft), ("dpo", c.dpo, nodes_dpo),
                                       ("rlvr", c.rlvr, nodes_rlvr)):
            model = stage(name, component, nodes, "checkpoint", dataset=dataset, model=model)
        one_node("eval", c.evaluate, dataset=dataset, model=model)

    return model_flow


model_flow = build(PipelineSettings())
