"""Nothing from the store is unpickled: a pickle planted in an in-stage checkpoint (`{fingerprint}.work/step-*/`)
whose payload would create a marker file is refused in one line, and the marker never appears. The states that
used to be pickles (the trainer's state, the RNG states) are JSON now and still restore exactly."""

from __future__ import annotations

import os
import pickle
import random
import shutil

import numpy as np
import pytest
import torch
from trainkit import make_trainer

from olmoflow import cli
from olmoflow.contract.workdir import WorkDir
from olmoflow.post.state import load_state, save_state
from olmoflow.train import dist_checkpoint
from olmoflow.train.dist_checkpoint import UnsafeCheckpoint
from olmoflow.train.resume import ResumeError, decode_rng, encode_rng, rng_state, set_rng_state


class Payload:
    """Unpickling this creates `marker` (a folder): the proof that a load ran the store writer's code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def checkpointed(tmp_path):
    """A trainer that ran 4 steps and left its in-stage checkpoint at step 4; returns (folder, fresh trainer)."""
    _, trainer = make_trainer(tmp_path / "run", steps=4, checkpoint_every=4)
    trainer.fit()
    _, fresh = make_trainer(tmp_path / "run", steps=4, checkpoint_every=4)
    return fresh.resumer.work.latest(), fresh


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def test_a_pickle_planted_as_dcp_metadata_never_runs(checkpointed, tmp_path, monkeypatch, capsys):
    folder, trainer = checkpointed
    marker = tmp_path / "owned"
    (folder / "dcp" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UnsafeCheckpoint) as e:
        trainer.load_state_dict(trainer.resumer.latest())
    assert "dcp/.metadata refused" in _one_line(e) and "posix.mkdir" in str(e.value)
    # Through the CLI's error path (a stage's resume under `olmoflow stage`): one line, exit 1.
    monkeypatch.setitem(cli.COMMANDS, "config", lambda args: trainer.load_state_dict(trainer.resumer.latest()))
    assert cli.main(["config"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dcp/.metadata refused" in err[0]
    assert not marker.exists()


def test_a_pickle_planted_as_a_checkpoint_entry_never_runs(checkpointed, tmp_path):
    # A complete, well-formed DCP checkpoint whose RNG entry is a pickled object instead of JSON bytes: stock DCP
    # would torch.load it with weights_only=False.
    folder, trainer = checkpointed
    marker = tmp_path / "owned"
    shutil.rmtree(folder / "dcp")
    dist_checkpoint.save(folder, trainer.model, trainer.opt, {"rng.rank0": Payload(marker)})
    assert not marker.exists()  # saving only pickled it
    with pytest.raises(UnsafeCheckpoint) as e:
        trainer.load_state_dict(trainer.resumer.latest())
    assert "entry rng.rank0 is not plain data" in _one_line(e)
    assert not marker.exists()


def test_a_pickled_state_file_is_never_read(checkpointed, tmp_path):
    folder, trainer = checkpointed
    marker = tmp_path / "owned"
    torch.save({"step": Payload(marker)}, folder / "state.pt")  # the old format's name
    state = trainer.resumer.latest()  # state.json is there: state.pt is ignored
    trainer.load_state_dict(state)
    assert trainer.step == 4 and not marker.exists()
    (folder / "state.json").unlink()  # only the pickle left: refused, not read
    with pytest.raises(ResumeError) as e:
        trainer.resumer.latest()
    assert "has no state.json" in _one_line(e)
    (folder / "state.json").write_text("[1, 2]")
    with pytest.raises(ResumeError, match="not a JSON object"):
        trainer.resumer.latest()
    assert not marker.exists()


def test_rng_bytes_that_are_not_olmoflow_json_are_refused(checkpointed):
    folder, trainer = checkpointed
    shutil.rmtree(folder / "dcp")
    dist_checkpoint.save(folder, trainer.model, trainer.opt, {"rng.rank0": b'{"torch": "%%%"}'})
    with pytest.raises(ResumeError) as e:
        trainer.load_state_dict(trainer.resumer.latest())
    assert "RNG state is not the JSON olmoflow writes" in _one_line(e)


def test_rng_states_round_trip_through_json_exactly():
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.standard_normal()  # a cached Gaussian in numpy's state
    blob = encode_rng(rng_state())
    want = (torch.rand(4), np.random.standard_normal(3), random.random(), random.gauss(0, 1))
    set_rng_state(decode_rng(blob, "test"))
    got = (torch.rand(4), np.random.standard_normal(3), random.random(), random.gauss(0, 1))
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2:] == want[2:]
    assert b"\x80" not in blob[:2]  # JSON text, not a pickle stream


def test_a_pickle_planted_in_a_post_training_state_never_runs(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters())
    save_state(tmp_path, model, opt, {"step": 1})
    marker = tmp_path / "owned"
    blob = torch.load(tmp_path / "state.pt", weights_only=True)
    torch.save({**blob, "model": Payload(marker)}, tmp_path / "state.pt")
    with pytest.raises(ValueError) as e:
        load_state(tmp_path, model, opt)
    assert "holds more than tensors and plain data" in _one_line(e)
    assert not marker.exists()


def test_only_step_folders_are_listed_fetched_or_deleted(tmp_path):
    work = WorkDir(tmp_path / "x.work")
    outside = tmp_path / "outside"
    (outside / "step-000009").mkdir(parents=True)
    (outside / "step-000009" / ".complete").write_text("9")
    work.local.mkdir()
    (work.local / "step-000010").symlink_to(outside / "step-000009")  # a link posing as a step
    (work.local / "step-evil").mkdir()
    (work.local / "step-evil" / ".complete").write_text("1")
    assert work.steps() == []
    with pytest.raises(ValueError, match="is not a step folder name"):
        work.fetch("../outside/step-000009")
