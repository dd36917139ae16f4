"""Model-flow stage: the eval of every checkpoint stage gathered into one report, and the models registered.

    olmoflow stage model-flow --config tiny --input eval-pretrain=URI --input eval-sft=URI ...

Its inputs are the eval reports, `eval-{stage}` in flow order (a stage that did not run gives none). The payload:
results.json (olmoflow/evals/modelflow.py: {"stages": {STAGE: {TASK: {METRIC: value, "n": items}}}, chance,
suites, failed tasks, contamination), report.html with plots/ (modelflow_html.py), and predictions/{stage}/
{task}.jsonl, each eval's per-item predictions. The numbers go to MLflow as `{stage}/{task}/{metric}`;
report.html goes on this run and on the flow's parent run. Under a flow run (MLflow on) and with
model_flow.register_models, each evaluated stage's checkpoint is exported to Hugging Face format, logged on this run,
and registered as a version of one model (model_flow.model_name, default the flow's name) with an alias per stage;
the last stage's is the newest.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from olmoflow.artifacts import ArtifactStore
from olmoflow.contract.context import StageContext
from olmoflow.evals.modelflow import copy_predictions, flat_metrics, gather
from olmoflow.evals.modelflow_html import write_report

PREFIX = "eval-"


def _eval_results(ctx: StageContext) -> dict[str, dict]:
    """{stage: its eval's results.json}, in the inputs' (flow) order."""
    per_stage = {}
    for name, art in ctx.inputs.items():
        if not name.startswith(PREFIX):
            raise ValueError(f"model-flow: unexpected input {name!r} (its inputs are eval-{{stage}} reports)")
        path = art.path / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"model-flow: input {name} ({art.uri}): no results.json")
        per_stage[name.removeprefix(PREFIX)] = json.loads(path.read_text())
    return per_stage


def register_models(ctx: StageContext, stages: list[str]) -> str:
    """Each stage's checkpoint (the one its eval scored, from the eval manifest's inputs) exported to HF format and
    registered as a version of the flow's model, aliased by stage; returns the registered model's name."""
    name = ctx.cfg.model_flow.model_name or ctx.cfg.flow.name
    versions = ctx.tracker.register_model_versions(name, _exports(ctx, stages), ctx.run_id)
    ctx.log.info("model-flow: registered %s versions %s", name,
                 ", ".join(f"{v} (@{s})" for s, v in versions.items()))
    return name


def _exports(ctx: StageContext, stages: list[str]) -> Iterator[tuple[str, Path]]:
    """(stage, its checkpoint's HF export), one at a time: each export is removed once the next is asked for (after
    it was logged), so the disk holds one model's copy, not one per stage."""
    from olmoflow.evals.gen import chat_style
    from olmoflow.model.hf import ChatSpec, export_checkpoint
    from olmoflow.post.chat_template import CHAT_TEMPLATE, STOP

    store = ArtifactStore(ctx.cfg.flow.store, ctx.cfg.flow.name)
    for stage in stages:
        given = ctx.inputs[PREFIX + stage].manifest.get("inputs", {}).get("checkpoint", {}).get("uri")
        if not given:
            raise ValueError(f"model-flow: eval-{stage}'s manifest names no checkpoint input to register")
        checkpoint = store.open(given, kind="checkpoint")  # verified (and downloaded, for s3://)
        with tempfile.TemporaryDirectory(prefix=f"olmoflow-hf-{stage}-") as tmp:
            # a post-trained checkpoint is registered chat-ready: its chat template, eos <|im_end|>
            chat, _ = chat_style("auto", checkpoint.manifest.get("stage"), checkpoint.path)
            ctx.log.info("model-flow: exporting %s's checkpoint %s%s", stage, given, " (chat)" if chat else "")
            yield stage, export_checkpoint(checkpoint.path, Path(tmp) / stage,
                                           ChatSpec(CHAT_TEMPLATE, STOP) if chat else None)


def run(ctx: StageContext) -> dict[str, float]:
    per_stage = _eval_results(ctx)
    if not per_stage:
        raise ValueError("model-flow: no eval-{stage} inputs: evaluate at least one stage first")
    gathered = gather(per_stage)
    for stage in per_stage:
        copy_predictions(ctx.input(PREFIX + stage).path, ctx.out, stage)
    (ctx.out / "results.json").write_text(json.dumps(gathered, indent=2) + "\n")
    written = write_report(ctx.out, gathered, title=f"Model flow of {ctx.cfg.flow.name}")
    for path in written.values():
        ctx.log_artifact(path, "plots" if path.suffix == ".png" else "report")
    metrics = flat_metrics(gathered)
    if ctx.tracker is not None and ctx.run_id:
        parent = ctx.tracker.parent_run_id(create=False)
        if parent:  # the report where a user lands first: the flow's run
            ctx.tracker.log_artifact(parent, written["report.html"], "model-flow")
        if ctx.cfg.model_flow.register_models:
            register_models(ctx, gathered["order"])
    return metrics
