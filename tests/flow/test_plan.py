"""Which stages a run's --from / --to / --init make run: the data stages (curate, and trace-index, whose index eval
traces its samples with) run on every path that reaches them; checkpoint stages before --from are skipped."""

from olmoflow.flow.plan import Plan


def test_data_stages_run_on_every_path_that_reaches_them():
    assert Plan().ordered() == ["curate", "pretrain", "midtrain", "long-context", "sft", "dpo", "rlvr", "trace-index",
                                "eval"]
    assert Plan("eval", "eval", "ckpt").ordered() == ["curate", "trace-index", "eval"]
    assert Plan("sft", "rlvr", "ckpt").ordered() == ["curate", "sft", "dpo", "rlvr"]
    assert Plan("curate", "pretrain").ordered() == ["curate", "pretrain"]
    assert Plan("sft", "eval", "ckpt").skip_reason("pretrain") == "before --from sft"
    assert Plan("curate", "pretrain").skip_reason("trace-index") == "after --to pretrain"
