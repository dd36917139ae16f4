"""Which stages a run's --from / --to / --init make run: the data stages (curate, and trace-index, whose index eval
traces its samples with) run on every path that reaches them; checkpoint stages before --from are skipped; every
checkpoint stage that runs is evaluated (eval-{stage}); model-flow gathers them when the flow reaches it."""

from olmoflow.flow.plan import Plan

EVALS = ["eval-pretrain", "eval-midtrain", "eval-long-context", "eval-sft", "eval-dpo", "eval-rlvr"]


def test_data_stages_run_on_every_path_that_reaches_them():
    assert Plan().ordered() == ["curate", "pretrain", "midtrain", "long-context", "sft", "dpo", "rlvr", "trace-index",
                                *EVALS, "model-flow"]
    assert Plan("sft", "rlvr", "ckpt").ordered() == ["curate", "sft", "dpo", "rlvr"]
    assert Plan("curate", "pretrain").ordered() == ["curate", "pretrain"]
    assert Plan("sft", "eval", "ckpt").skip_reason("pretrain") == "before --from sft"
    assert Plan("curate", "pretrain").skip_reason("trace-index") == "after --to pretrain"


def test_every_checkpoint_stage_that_runs_is_evaluated():
    plan = Plan("sft", "model-flow", "ckpt")
    assert plan.ordered() == ["curate", "sft", "dpo", "rlvr", "trace-index", "eval-sft", "eval-dpo", "eval-rlvr",
                              "model-flow"]
    assert not plan.runs("eval", "midtrain") and plan.runs("eval", "sft")
    assert plan.skip_reason("eval", "midtrain") == "midtrain is before --from sft"
    # --to eval: the evaluations run, the report that gathers them does not
    assert Plan("curate", "eval").ordered()[-1] == "eval-rlvr"
    assert Plan("curate", "eval").skip_reason("model-flow") == "after --to eval"


def test_from_eval_evaluates_the_init_checkpoint_once():
    plan = Plan("eval", "eval", "ckpt")
    # one run, named after the stage that made the checkpoint (its manifest says, so the step here is "eval")
    assert plan.ordered() == ["curate", "trace-index", "eval"]
    assert [of for of in ("pretrain", "sft", "rlvr") if plan.runs("eval", of)] == ["rlvr"]
    assert plan.inputs("eval", {"checkpoint": "", "dataset": "d"}, "rlvr") == {"dataset": "d", "checkpoint": "ckpt"}
    assert plan.evaluated("eval", "rlvr") == ""
    assert Plan().evaluated("eval", "sft") == "sft"
