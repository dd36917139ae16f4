"""SFT and DPO on 2 ranks (FSDP2 over gloo, spawned on 127.0.0.1): the metrics and weights of the one-process run
up to summation order, and a run killed on 2 ranks resumes on 1 (the DCP checkpoint reshards) to the same end.

Tolerance as in tests/train/test_parallel.py: 2 ranks sum gradients in another order than one process does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from postkit import make_payloads, run_ranks, run_stage

from olmoflow.contract.workdir import WorkDir
from olmoflow.post.ranks import check_batch, padded_share, share
from olmoflow.train.world import World

WEIGHT_ATOL = 1e-4
RUN = {"sft": ("sft.steps=6", "sft.checkpoint_every=3", "sft.batch_size=6", "sft.micro_batch=2"),
       "dpo": ("dpo.steps=5", "dpo.checkpoint_every=2", "dpo.batch_size=4", "dpo.micro_batch=1")}


@pytest.fixture(scope="module")
def payloads(tmp_path_factory) -> tuple[Path, Path]:
    return make_payloads(tmp_path_factory.mktemp("post"))


@pytest.fixture(scope="module")
def single(payloads, tmp_path_factory) -> dict[str, dict]:
    """Each stage's one-process result: {"metrics", "weights"}."""
    out = {}
    for stage, overrides in RUN.items():
        root = tmp_path_factory.mktemp(f"single-{stage}")
        run_stage(stage, root, *payloads, overrides)
        out[stage] = torch.load(root / "result.pt", weights_only=True)
    return out


def assert_same_run(got: dict, want: dict) -> None:
    assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-4, abs=1e-5)
    assert got["weights"].keys() == want["weights"].keys()
    for name, w in want["weights"].items():
        assert torch.allclose(got["weights"][name], w, atol=WEIGHT_ATOL), name


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_two_ranks_match_one_process(payloads, single, tmp_path, stage):
    assert_same_run(run_ranks(2, stage, tmp_path, *payloads, RUN[stage]), single[stage])


def test_killed_on_two_ranks_resumes_on_one(payloads, single, tmp_path):
    assert run_ranks(2, "sft", tmp_path, *payloads, RUN["sft"], stop_after=4) == {}  # killed after step 4
    assert WorkDir(tmp_path / "sft.work").steps() == ["step-000003"]
    run_stage("sft", tmp_path, *payloads, RUN["sft"])  # one process picks up the 2-rank checkpoint at step 3
    assert_same_run(torch.load(tmp_path / "result.pt", weights_only=True), single["sft"])


def test_work_splits_evenly_and_scoring_pads_the_short_shares():
    two = [World(0, 2), World(1, 2)]
    assert [share(list("abcdef"), w) for w in two] == [list("ace"), list("bdf")]
    assert [padded_share(list("abcde"), w) for w in two] == [[("a", True), ("c", True), ("e", True)],
                                                              [("b", True), ("d", True), ("a", False)]]
    assert padded_share(list("a"), World(2, 4)) == [("a", False)]  # a rank with nothing still runs one pass
    check_batch(6, "sft.batch_size", two[0])
    with pytest.raises(ValueError, match=r"sft.batch_size=3 is not a multiple of the 2 ranks"):
        check_batch(3, "sft.batch_size", two[0])
