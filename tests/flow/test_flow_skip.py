"""flow.skip (RL-Zero: sft and dpo left out): the plan leaves the stages and their evals out, a left-out task hands
on the checkpoint it was given so the next stage trains on the last one made, and bad names are one-line errors."""

import json
import types

import pytest

from olmoflow.config import ConfigError, load_config, to_json
from olmoflow.flow.plan import Plan
from olmoflow.flow.task import run_task

SKIP = ("sft", "dpo")
LC, INIT, DATA = "/store/long-context/aa", "/store/imported/bb", "/store/curate/cc"


def test_plan_leaves_out_the_skipped_stages_and_their_evals():
    plan = Plan(skip=SKIP)
    assert plan.ordered() == ["curate", "pretrain", "midtrain", "long-context", "rlvr", "trace-index",
                              "eval-pretrain", "eval-midtrain", "eval-long-context", "eval-rlvr", "model-flow"]
    assert not plan.runs("sft") and not plan.runs("eval", "dpo") and plan.runs("rlvr") and plan.runs("eval", "rlvr")
    assert plan.skip_reason("sft") == "left out by flow.skip"
    assert plan.skip_reason("eval", "dpo") == "dpo is left out by flow.skip"
    assert Plan(stop="pretrain", skip=SKIP).skip_reason("sft") == "after --to pretrain"
    # --from with skip: the left-out stages before --from, or the --from stage itself, change nothing else
    assert Plan("rlvr", "model-flow", INIT, SKIP).ordered() == ["curate", "rlvr", "trace-index", "eval-rlvr",
                                                                  "model-flow"]
    assert Plan("sft", "rlvr", INIT, SKIP).ordered() == ["curate", "rlvr"]
    assert Plan("eval", "eval", INIT, SKIP).ordered() == ["curate", "trace-index", "eval"]


def test_a_left_out_stage_hands_on_its_input_checkpoint():
    plan = Plan(skip=SKIP)
    assert plan.handed_on("sft", {"dataset": DATA, "checkpoint": LC}) == LC
    assert plan.handed_on("rlvr", {"dataset": DATA, "checkpoint": LC}) == ""  # it runs: its output is its own
    # --from sft --init URI: sft is left out and hands on --init's checkpoint
    assert Plan("sft", "rlvr", INIT, SKIP).handed_on("sft", {"checkpoint": ""}) == INIT
    # --from rlvr --init URI: nothing reaches sft or dpo, and rlvr reads --init
    late = Plan("rlvr", "rlvr", INIT, SKIP)
    assert late.handed_on("sft", {"checkpoint": ""}) == ""
    assert late.inputs("rlvr", {"dataset": DATA, "checkpoint": ""})["checkpoint"] == INIT


@pytest.mark.parametrize("value, says", [
    ("[foo]", "unknown stage 'foo'"), ("[eval]", "eval makes no checkpoint"),
    ("[curate]", "curate makes no checkpoint"), ("[trace-index]", "trace-index makes no checkpoint"),
    ("[model-flow]", "model-flow makes no checkpoint"), ("[pretrain]", "pretrain is the first checkpoint stage")])
def test_bad_skip_is_one_line_naming_flow_skip(value, says):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", [f"flow.skip={value}"])
    assert str(e.value).startswith("config error: flow.skip: ") and says in str(e.value)
    assert "\n" not in str(e.value)


def test_skip_is_in_no_fingerprint():
    plain, skipped = load_config("smoke"), load_config("smoke", ["flow.skip=[sft,dpo]"])
    for stage in ("curate", "pretrain", "long-context", "rlvr", "eval", "model-flow"):
        assert plain.stage_config(stage) == skipped.stage_config(stage)


def _task(stage, cfg, inputs, tmp_path, of="", start="curate", init=""):
    """One KFP task's body, as kfp.local runs it (no flow run: nothing goes to MLflow), on stand-in artifacts."""
    output = types.SimpleNamespace(path=str(tmp_path / f"{stage}{of}.json"), metadata={})
    arts = {k: types.SimpleNamespace(metadata={"uri": v} if v else {}) for k, v in inputs.items()}
    run_task(stage, to_json(cfg), [], start, "model-flow", init, "", "", arts, output, of=of)
    return output


def test_task_wiring_feeds_rlvr_long_contexts_checkpoint(tmp_path):
    """The smoke preset with flow.skip [sft, dpo], through the tasks' own code: sft and dpo hand long-context's
    checkpoint on, rlvr's input is that artifact, and the model-flow report gets no eval-sft / eval-dpo."""
    cfg = load_config("smoke", ["flow.skip=[sft,dpo]"])
    sft = _task("sft", cfg, {"dataset": DATA, "checkpoint": LC}, tmp_path)
    assert sft.metadata == {"status": "skipped", "uri": LC}
    assert json.loads(open(sft.path).read())["reason"] == "left out by flow.skip"
    dpo = _task("dpo", cfg, {"dataset": DATA, "checkpoint": sft.metadata["uri"]}, tmp_path)
    assert dpo.metadata["uri"] == LC
    plan = Plan(skip=cfg.flow.skip)
    assert plan.inputs("rlvr", {"dataset": DATA, "checkpoint": dpo.metadata["uri"]}) == {"dataset": DATA,
                                                                                        "checkpoint": LC}
    evals = {of: _task("eval", cfg, {"dataset": DATA, "checkpoint": LC, "index": ""}, tmp_path, of=of)
             for of in ("sft", "dpo")}
    assert all(o.metadata == {"status": "skipped"} for o in evals.values())  # no URI: model-flow gets no input
    gathered = {f"eval-{of}": o.metadata.get("uri", "") for of, o in evals.items()} | {"eval-rlvr": "/r"}
    assert plan.inputs("model-flow", gathered) == {"eval-rlvr": "/r"}


def test_task_wiring_with_from_and_init(tmp_path):
    cfg = load_config("smoke", ["flow.skip=[sft,dpo]"])
    sft = _task("sft", cfg, {"dataset": "", "checkpoint": ""}, tmp_path, start="sft", init=INIT)
    assert sft.metadata["uri"] == INIT  # --from sft --init: the left-out sft hands --init's checkpoint on
    late = _task("sft", cfg, {"dataset": "", "checkpoint": ""}, tmp_path, start="rlvr", init=INIT)
    assert late.metadata == {"status": "skipped"}
