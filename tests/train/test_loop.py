"""The trainer: it learns, its loss is the token mean an outside formula gives, a resumed run ends bitwise where
an uninterrupted one does (in-process interruption and a real SIGKILL), foreign checkpoints are refused, and a
planted loss spike is skipped."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from kit import Stop, stop_at
from lossref import loss_sums
from trainkit import VOCAB, make_trainer, markov_docs, resume_and_fit

from olmoflow.train.evaluate import val_losses
from olmoflow.train.packing import IGNORE
from olmoflow.train.resume import ResumeError, Resumer, decode_rng, encode_rng, rng_state, set_rng_state

HERE = Path(__file__).parent


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_loss_sums_match_torch_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11) * 3
    labels = torch.randint(0, 11, (2, 5))
    labels[0, 1] = labels[1, 4] = IGNORE
    ce, z = loss_sums(logits, labels)
    keep = labels != IGNORE
    assert torch.allclose(ce, F.cross_entropy(logits[keep], labels[keep], reduction="sum"))
    assert torch.allclose(z, (torch.logsumexp(logits[keep], -1) ** 2).sum())


def test_a_small_run_learns(tmp_path):
    ctx, trainer = make_trainer(tmp_path, steps=60, lr=3e-2, warmup_steps=5, micro_batch=4, batch_tokens=128,
                                  checkpoint_every=60)
    result = trainer.fit()
    first = result.curve[0][1]
    assert abs(first - math.log(VOCAB)) < 0.5  # an untrained model is near uniform
    assert result.train_loss < first - 1.5
    val = val_losses(trainer.model, {"markov": markov_docs("heldout", 40, seed=99)}, 16, 4, 0, True)
    assert val["val_loss"] < math.log(VOCAB) - 1.5
    logged = [m for _, m in ctx.history]
    assert len(logged) == 60 and {"loss", "z_loss", "lr", "grad_norm", "skipped_steps", "tokens_per_s",
                                  "mfu"} <= logged[0].keys()
    assert logged[-1]["skipped_steps"] == 0 and 0 < logged[-1]["mfu"] < 1


def test_grad_accumulation_is_an_exact_token_mean(tmp_path):
    # One step over 64 tokens as 4 micro-batches of 1 or 1 micro-batch of 4: labels masked at document
    # boundaries differ per micro-batch, so only a global token mean makes the two gradients agree.
    grads = []
    for name, mb in (("a", 4), ("b", 1)):
        _, trainer = make_trainer(tmp_path / name, steps=1, warmup_steps=0, micro_batch=mb)
        assert trainer.accum == 4 // mb
        captured = {}
        step = trainer.opt.step
        trainer.opt.step = lambda captured=captured, trainer=trainer, step=step: captured.update(
            {n: p.grad.clone() for n, p in trainer.model.named_parameters()}) or step()
        trainer.fit()
        grads.append(captured)
    for k, g in grads[0].items():
        assert torch.allclose(g, grads[1][k], rtol=1e-4, atol=1e-7), k


def test_interrupted_run_resumes_bitwise(tmp_path):
    _, ref = make_trainer(tmp_path / "ref")
    ref_result = ref.fit()

    ctx, first = make_trainer(tmp_path / "run")
    ctx.metrics_sink = stop_at(6)  # the checkpoint at step 4 survives; steps 5-6 are lost
    with pytest.raises(Stop):
        resume_and_fit(ctx, first)
    assert ctx.work.steps() == ["step-000004"]

    _, second = make_trainer(tmp_path / "run")
    result = resume_and_fit(None, second)
    assert_bitwise_equal(weights(second), weights(ref))
    assert result.curve == ref_result.curve
    assert second.opt.state_dict()["state"][0]["step"] == ref.opt.state_dict()["state"][0]["step"]


def test_sigkilled_process_resumes_bitwise(tmp_path):
    threads = torch.get_num_threads()
    _, ref = make_trainer(tmp_path / "ref")
    ref.fit()

    path = [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]  # trainkit, and the kit it imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    child = subprocess.Popen([sys.executable, str(HERE / "killed_run.py"), str(tmp_path / "run"), "6",
                              str(threads)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = child.stdout.readline().strip()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    assert line == "reached 6" and child.returncode == -signal.SIGKILL

    _, resumed = make_trainer(tmp_path / "run")
    assert resumed.resumer.work.latest().name == "step-000004"
    resume_and_fit(None, resumed)
    assert_bitwise_equal(weights(resumed), weights(ref))


def test_checkpoint_of_another_stage_or_config_is_refused(tmp_path):
    ctx, trainer = make_trainer(tmp_path, steps=4)
    trainer.fit()
    written = Resumer(ctx).hash

    other_stage, _ = make_trainer(tmp_path, stage="midtrain", steps=4)
    other_stage.work = ctx.work
    with pytest.raises(ResumeError) as e:
        Resumer(other_stage).latest()
    msg = str(e.value)
    assert "'pretrain'" in msg and "'midtrain'" in msg and written in msg and "step-000004" in msg

    other_cfg, _ = make_trainer(tmp_path, steps=4, lr=1e-3)
    with pytest.raises(ResumeError, match=f"config hash {written}, but this run is stage 'pretrain' with config hash "
                                          f"{Resumer(other_cfg).hash}"):
        Resumer(other_cfg).latest()


def test_cuda_rng_states_travel_with_the_checkpoint(monkeypatch):
    # No GPU here: torch.cuda's RNG calls are stood in for, to check what is saved and what is given back.
    saved, restored = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3, 4], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    state = decode_rng(encode_rng(rng_state()), "test")  # as the DCP checkpoint stores it: JSON
    assert [s.tolist() for s in state["cuda"]] == [[1, 2], [3, 4]]
    set_rng_state(state)
    assert [[s.tolist() for s in r] for r in restored] == [[[1, 2]]]  # the one GPU this machine has
    restored.clear()
    set_rng_state({k: v for k, v in state.items() if k != "cuda"})  # a checkpoint written without CUDA
    assert restored == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rng_state_round_trip_on_a_gpu():
    state = decode_rng(encode_rng(rng_state()), "test")
    first = torch.rand(4, device="cuda")
    set_rng_state(state)
    assert torch.equal(torch.rand(4, device="cuda"), first)


def spiky_run(root: Path, spike_at: int | None):
    """50 steps; at `spike_at` both micro-batches get scrambled labels (the loss jumps ~2x). Returns the trainer,
    the logged metrics by step and the weights after each step."""
    ctx, trainer = make_trainer(root, steps=50, lr=3e-2, warmup_steps=5, micro_batch=4, batch_tokens=128,
                                checkpoint_every=50)
    real_next, calls, after = trainer.loader.next_batch, {"n": 0}, {}

    def next_batch():
        b = real_next()
        calls["n"] += 1
        if spike_at is not None and trainer.accum * (spike_at - 1) < calls["n"] <= trainer.accum * spike_at:
            keep = b.labels != IGNORE
            b.labels[keep] = torch.randint(2, VOCAB, (int(keep.sum()),), generator=torch.Generator().manual_seed(0))
        return b

    trainer.loader.next_batch = next_batch
    ctx.metrics_sink = lambda metrics, step: after.update({step: weights(trainer)})
    trainer.fit()
    return trainer, {step: m for step, m in ctx.history}, after


def test_a_planted_spike_is_skipped_and_nothing_else(tmp_path):
    trainer, logged, after = spiky_run(tmp_path / "spiky", spike_at=45)
    assert logged[45]["loss"] > 1.5 * logged[44]["loss"]
    assert [s for s in logged if logged[s]["skipped_steps"] != logged.get(s - 1, {"skipped_steps": 0})[
        "skipped_steps"]] == [45]
    assert trainer.skip.skipped == 1
    assert_bitwise_equal(after[45], after[44])  # the spike's update was not applied
    assert not torch.equal(after[46]["lm_head.weight"], after[45]["lm_head.weight"])

    clean, _, _ = spiky_run(tmp_path / "clean", spike_at=None)
    assert clean.skip.skipped == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_one_process_trains_in_bf16_like_on_the_cpu(tmp_path, monkeypatch):
    """The single-GPU path: weights moved to the GPU, bf16 autocast, compiled blocks and flex attention over packed
    documents ("auto"), the MFU against the GPU's peak, the payload model back on the CPU."""
    import trainkit

    monkeypatch.setitem(trainkit.MODEL, "head_dim", 16)  # flex's narrowest checked width
    monkeypatch.setenv("OLMOFLOW_DEVICE", "cpu")
    _, cpu = make_trainer(tmp_path / "cpu")
    want = cpu.fit()
    monkeypatch.delenv("OLMOFLOW_DEVICE")
    _, gpu = make_trainer(tmp_path / "gpu")
    got = gpu.fit()
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert [s for s, _ in got.curve] == [s for s, _ in want.curve]
    for (_, a), (_, b) in zip(got.curve, want.curve):
        assert abs(a - b) < 0.05 * b, (got.curve, want.curve)  # bf16 rounding, not another run
    assert next(gpu.export_model().parameters()).device.type == "cpu"
