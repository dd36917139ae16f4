"""What in-stage checkpoints carry across ranks and machines (gloo, spawned ranks on 127.0.0.1), with an s3:// store
and ranks that share no disk: each rank uploads its own DCP shards and rank 0 the rest and the `.complete` marker,
fresh machines resume from the store, every rank gets its own RNG state back, and the long-context checkpoint
average is a sum sharded like the weights that survives the kill, reshards from 2 ranks to 1, and ends where the
single-process average does.

Tolerances as in test_parallel.py: ranks sum gradients in another order than one process does.
"""

from __future__ import annotations

import torch
from distkit import run_ranks, train
from kit import read_model_weights
from test_parallel import WEIGHT_ATOL

from olmoflow.storage import storage_for
from olmoflow.train.world import World

MACHINES = {"LOCAL_RANK": "0"}
"""Each rank is alone on its machine: it fetches what it needs itself."""


def assert_close(want: dict, got: dict, atol: float = WEIGHT_ATOL) -> None:
    assert want.keys() == got.keys()
    for k, v in want.items():
        assert torch.allclose(v, got[k], rtol=0, atol=atol), k


def test_two_machines_resume_through_s3_with_their_rng_and_a_sharded_average(tmp_path, s3_uri):
    # Checkpoints at 4, 8, 12; average_last 2 averages the weights at 8 and 12.
    ref = tmp_path / "ref"
    train(ref, World(), steps=12, average_last=2)
    want = torch.load(ref / "result.pt")["weights"]
    at = [read_model_weights(ref / "pretrain.work" / f"step-{s:06d}") for s in (8, 12)]
    assert_close(want, {k: (at[0][k] + at[1][k]) / 2 for k in want}, atol=1e-7)  # the average is what it says
    assert not torch.allclose(want["lm_head.weight"], at[1]["lm_head.weight"], atol=1e-4)

    # Two machines train, checkpoint at 4 and 8 (step 8 also into the sum) and die at 10.
    remote = s3_uri + "/pretrain/f00d.work"
    root = tmp_path / "run"
    run_ranks(2, root, MACHINES, stop_after=10, steps=12, average_last=2, remote=remote, machine="a-")
    keys = storage_for(remote).list(remote)
    assert [k for k in keys if k.startswith("step-000008/")] == [
        "step-000008/.complete", "step-000008/dcp/.metadata", "step-000008/dcp/__0_0.distcp",
        "step-000008/dcp/__1_0.distcp", "step-000008/meta.json", "step-000008/state.json"]
    assert {k.split("/")[0] for k in keys} == {"step-000004", "step-000008"}
    # The machines' disks only staged the steps: nothing stays there.
    assert [p for p in root.glob("a-rank*/**/*") if p.is_file()] == []
    # Each rank held only its shard of the running sum: the two shards together are one copy of the model.
    shards = [torch.load(root / f"average-numel-rank{r}.pt") for r in (0, 1)]
    assert sum(shards) == sum(v.numel() for v in want.values()) and max(shards) < 0.6 * sum(shards)

    # Two fresh machines (fresh RNG seeds too) each download step 8 and finish the run.
    run_ranks(2, root, MACHINES, steps=12, average_last=2, remote=remote, machine="b-", rng_seed=2000)
    for rank in (0, 1):
        assert [p.name for p in (root / f"b-rank{rank}").iterdir()] == ["step-000008"]
    saved = [torch.load(root / f"rng-a-rank{r}.pt")["start"] for r in (0, 1)]  # the trainer draws nothing
    back = [torch.load(root / f"rng-b-rank{r}.pt")["resumed"] for r in (0, 1)]
    assert not torch.equal(saved[0], saved[1])
    assert torch.equal(back[0], saved[0]) and torch.equal(back[1], saved[1])
    two = torch.load(root / "result.pt")["weights"]
    assert_close(want, two)

    # One process loads the final step (the sum reshards from 2 ranks to 1) and averages to the same weights.
    train(root, World(), steps=12, average_last=2, remote=remote, machine="c-")
    assert_close(two, torch.load(root / "result.pt")["weights"], atol=1e-7)
