"""SFT, DPO and RLVR end to end at smoke scale (configs/smoke.yaml) on a d_model-64 Olmo3: the numbers move
the right way, the checkpoint payload is complete and loadable, a killed stage resumes to bitwise the same weights,
and errors name what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from postkit import context, make_payloads, smoke

from olmoflow.config import FlowConfig
from olmoflow.contract.context import StageContext
from olmoflow.model import Olmo3
from olmoflow.model.checkpoint import load_checkpoint
from olmoflow.registry import stage as stage_entry
from olmoflow.stages import dpo, rlvr, sft


@pytest.fixture(scope="module")
def payloads(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset folder, base checkpoint folder)."""
    return make_payloads(tmp_path_factory.mktemp("post"))


def logged(ctx: StageContext, key: str) -> list[tuple[int, float]]:
    return [(step, m[key]) for step, m in ctx.history if key in m]


def assert_checkpoint(out: Path, plot: str) -> None:
    for f in ("model/config.json", "model/model.safetensors", "tokenizer.json", "metrics.json", f"plots/{plot}"):
        assert (out / f).is_file(), f
    model, tok = load_checkpoint(out)
    assert isinstance(model, Olmo3) and tok.token_to_id("<|im_end|>") is not None


def test_sft_then_dpo_then_rlvr(payloads, tmp_path: Path) -> None:
    data, base = payloads
    cfg = smoke()

    ctx = context("sft", cfg, tmp_path, data, base)
    m = sft.run(ctx)
    assert_checkpoint(ctx.out, "sft_loss.png")
    assert ctx.artifacts == [ctx.out / "plots" / "sft_loss.png"]
    assert m[stage_entry("sft").headline] < 0.75 * m["val_sft_loss_before"]
    assert logged(ctx, "val_sft_loss") == [(0, m["val_sft_loss_before"]), (8, m["val_sft_loss"])]
    losses = [v for _, v in logged(ctx, "train_loss")]
    assert len(losses) == 8 and losses[-1] < 0.75 * losses[0]
    assert json.loads((ctx.out / "metrics.json").read_text()) == pytest.approx(m)

    ctx = context("dpo", cfg, tmp_path, data, ctx.out)
    m = dpo.run(ctx)
    assert_checkpoint(ctx.out, "dpo.png")
    # At step 0 the policy is the reference: every held-out margin is exactly 0 and the loss exactly log 2.
    assert m["reward_accuracy_before"] == 0.0 and m["val_dpo_loss_before"] == pytest.approx(0.6931472)
    assert m["reward_accuracy"] > 0.5 and m["val_reward_margin"] > 0
    margins = [v for _, v in logged(ctx, "reward_margin")]
    assert margins[-1] > margins[0]
    assert 0.0 <= m[stage_entry("dpo").headline] <= 1.0

    ctx = context("rlvr", cfg, tmp_path, data, ctx.out)
    m = rlvr.run(ctx)
    assert_checkpoint(ctx.out, "rlvr_reward.png")
    for key in ("mean_reward", "reward/math", "reward_errors", "zero_variance_fraction", "response_length", "loss",
                "clip_fraction"):
        assert [s for s, _ in logged(ctx, key)] == [1, 2, 3], key
    assert all(0 <= v <= 1 for _, v in logged(ctx, "zero_variance_fraction"))
    assert all(1 <= v <= 16 for _, v in logged(ctx, "response_length"))
    assert 0.0 <= m["val_accuracy_before"] <= 1.0 and 0.0 <= m[stage_entry("rlvr").headline] <= 1.0
    # issue 13's names for the same greedy held-out measurements, and the run's zero-variance share
    assert (m["heldout_reward_before"], m["heldout_reward_after"]) == (m["val_accuracy_before"], m["val_accuracy"])
    assert 0.0 <= m["zero_variance_fraction"] <= 1.0 and "heldout_reward_after/math" in m
    table = json.loads((ctx.out / "samples" / "rlvr_generations.json").read_text())
    assert table["columns"][:4] == ["family", "prompt", "before", "after"] and len(table["data"]) == 8
    assert ctx.out / "samples" / "rlvr_generations.json" in ctx.artifacts


def test_rlvr_scores_each_family_with_its_verifier_and_survives_one_that_raises(payloads, tmp_path: Path,
                                                                               monkeypatch) -> None:
    """post/rl.jsonl as curate writes it (math, code, ifeval) plus a family whose verifier always raises: every
    family's reward and held-out accuracy are reported, the raising one scores 0 and is counted, the run ends."""
    from collections import Counter

    from olmoflow.data.postsets import rl_from_items
    from olmoflow.post import verifiers

    data, base = payloads
    math = [json.loads(line) for line in (data / "post" / "rl.jsonl").read_text().splitlines()][:12]
    mixed = math + rl_from_items([], code=12, ifeval=12, seed=0)
    boom = [{"prompt": f"Say {i}.", "answer": str(i), "verifier": "boom"} for i in range(12)]
    (tmp_path / "data" / "post").mkdir(parents=True)
    (tmp_path / "data" / "post" / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mixed + boom))

    def explode(completion: str, answer: str) -> float:
        raise RuntimeError("verifier bug")
    monkeypatch.setitem(verifiers.VERIFIERS, "boom", explode)
    monkeypatch.setattr(verifiers, "reward_errors", Counter())
    monkeypatch.setattr(verifiers, "last_errors", {})
    ctx = context("rlvr", smoke("rlvr.max_prompt_len=200"), tmp_path / "run", tmp_path / "data", base)
    m = rlvr.run(ctx)

    families = ("boom", "code", "ifeval", "math")
    assert all(0.0 <= m[f"val_accuracy/{f}"] <= 1.0 and f"val_accuracy_before/{f}" in m for f in families)
    assert m["val_accuracy/boom"] == m["val_accuracy_before/boom"] == 0.0
    # 8 held-out prompts, 2 per family: each boom one raised before and after training, besides the sampled ones
    assert m["reward_errors"] == m["reward_errors/boom"] >= 4
    assert verifiers.reward_errors == {"boom": m["reward_errors"]}
    assert verifiers.last_errors["boom"] == "RuntimeError: verifier bug"
    sampled = {k.split("/")[1] for _, metrics in ctx.history for k in metrics if k.startswith("reward/")}
    assert sampled == set(families)
    assert all(v == 0.0 for _, v in logged(ctx, "reward/boom"))
    per_step = sum(v for _, v in logged(ctx, "reward_errors/boom"))
    assert per_step == sum(v for _, v in logged(ctx, "reward_errors")) and per_step >= 4  # a group of 4 at least
    assert m["reward_errors"] == per_step + 4  # + the held-out passes


def test_dpo_teaches_the_chosen_style(payloads, tmp_path: Path) -> None:
    data, base = payloads
    m = dpo.run(context("dpo", smoke("dpo.steps=10", "dpo.warmup_steps=0"), tmp_path, data, base))
    assert m["pref_accuracy_before"] < 0.9
    assert m["pref_accuracy"] == 1.0 and m["reward_accuracy"] == 1.0


def interrupted_then_resumed(stage: ModuleType, cfg: FlowConfig, root: Path, data: Path, ckpt: Path,
                             crash_at: int) -> tuple[dict[str, torch.Tensor], StageContext]:
    ctx = context(stage.__name__.rsplit(".", 1)[1], cfg, root, data, ckpt)

    def crash(metrics: dict, step: int | None) -> None:
        if step == crash_at:
            raise KeyboardInterrupt("killed")
    ctx.metrics_sink = crash
    with pytest.raises(KeyboardInterrupt):
        stage.run(ctx)
    resumed = context(ctx.stage, cfg, root, data, ckpt)
    stage.run(resumed)
    return load_checkpoint(resumed.out)[0].state_dict(), resumed


@pytest.mark.parametrize("stage, crash_at", [(sft, 6), (dpo, 5), (rlvr, 3)])
def test_killed_stage_resumes_to_the_same_weights(payloads, tmp_path: Path, stage: ModuleType,
                                                  crash_at: int) -> None:
    data, base = payloads
    cfg = smoke("sft.steps=7", "rlvr.steps=4")
    straight = context(stage.__name__.rsplit(".", 1)[1], cfg, tmp_path / "straight", data, base)
    want_metrics = stage.run(straight)
    want = load_checkpoint(straight.out)[0].state_dict()
    got, resumed = interrupted_then_resumed(stage, cfg, tmp_path / "killed", data, base, crash_at)
    # It resumed from the last in-stage checkpoint (step 4 / 3 / 2), not from scratch, and then learned.
    assert min(s for s, _ in resumed.history if s) == {sft: 5, dpo: 4, rlvr: 3}[stage]
    if stage is rlvr:
        assert any(m.get("groups_trained", 0) > 0 for _, m in resumed.history)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name
    assert json.loads((resumed.out / "metrics.json").read_text()) == want_metrics


@pytest.mark.parametrize("stage", [sft, dpo, rlvr])
def test_activation_checkpointing_changes_nothing_but_memory(payloads, tmp_path: Path, monkeypatch,
                                                             stage: ModuleType) -> None:
    from olmoflow.train import parallel

    data, base = payloads
    name = stage.__name__.rsplit(".", 1)[1]
    wrapped = []
    real = parallel.checkpoint_blocks
    monkeypatch.setattr(parallel, "checkpoint_blocks", lambda model: wrapped.append(model) or real(model))
    cfg = smoke(f"{name}.steps=3")
    want = stage.run(plain := context(name, cfg, tmp_path / "plain", data, base))
    got = stage.run(ac := context(name, smoke(f"{name}.steps=3", f"{name}.activation_checkpointing=true"),
                                  tmp_path / "ac", data, base))
    assert len(wrapped) == 1 and type(wrapped[0].layers[0]).__name__ == "CheckpointWrapper"
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # the payload is a plain Olmo3 checkpoint either way (the wrapper's names never reach it)
    for (k, a), (k2, b) in zip(load_checkpoint(plain.out)[0].state_dict().items(),
                               load_checkpoint(ac.out)[0].state_dict().items()):
        assert k == k2 and torch.allclose(a, b, rtol=1e-4, atol=1e-6), k


def test_a_resume_folder_of_another_config_is_refused(payloads, tmp_path: Path) -> None:
    from olmoflow.train.resume import ResumeError

    data, base = payloads
    ctx = context("sft", smoke("sft.steps=7"), tmp_path, data, base)

    def crash(metrics: dict, step: int | None) -> None:
        if step == 6:
            raise KeyboardInterrupt("killed")
    ctx.metrics_sink = crash
    with pytest.raises(KeyboardInterrupt):
        sft.run(ctx)
    steps = ctx.work.steps()
    with pytest.raises(ResumeError, match=r"written by stage 'sft' with config hash \w+, but this run is stage "
                                          r"'sft' with config hash \w+"):
        sft.run(context("sft", smoke("sft.steps=7", "sft.lr=1e-3"), tmp_path, data, base))
    assert steps and ctx.work.steps() == steps  # nothing overwritten


def test_errors_name_the_problem(payloads, tmp_path: Path) -> None:
    data, base = payloads
    with pytest.raises(FileNotFoundError, match=r"nowhere/post/sft.jsonl: not found"):
        sft.run(context("sft", smoke(), tmp_path, tmp_path / "nowhere", base))
    with pytest.raises(ValueError, match=r"no prompt in post/rl.jsonl fits rlvr.max_prompt_len=4"):
        rlvr.run(context("rlvr", smoke("rlvr.max_prompt_len=4"), tmp_path, data, base))
    with pytest.raises(ValueError, match=r"post/sft.jsonl keeps an assistant token within sft.seq_len=2"):
        sft.run(context("sft", smoke("sft.seq_len=2"), tmp_path, data, base))
    with pytest.raises(ValueError, match=r"dpo.val_pairs=64 leaves no training rows \(64 rows in all\)"):
        dpo.run(context("dpo", smoke("dpo.val_pairs=64"), tmp_path, data, base))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_post_training_runs_on_the_gpu_like_on_the_cpu(payloads, tmp_path: Path, monkeypatch) -> None:
    """SFT, DPO and RLVR on the GPU (bf16 autocast, sampling on the GPU): the same metrics as on the CPU up to
    bf16 rounding for SFT and DPO (RLVR samples from another RNG stream, so only its ranges); the payload is
    written from the GPU model; a killed GPU run resumes."""
    from olmoflow.train import parallel

    data, base = payloads
    cfg = smoke("sft.steps=7", "rlvr.steps=4")
    devices: list[str] = []  # where each run put its model
    real_parallelize = parallel.parallelize

    def parallelize(model, world, *args):
        devices.append(world.device.type)
        return real_parallelize(model, world, *args)

    monkeypatch.setattr(parallel, "parallelize", parallelize)
    got, want = {}, {}
    for stage in (sft, dpo, rlvr):
        name = stage.__name__.rsplit(".", 1)[1]
        monkeypatch.setenv("OLMOFLOW_DEVICE", "cpu")
        want[name] = stage.run(context(name, cfg, tmp_path / "cpu", data, base))
        monkeypatch.setenv("OLMOFLOW_DEVICE", "cuda")
        ctx = context(name, cfg, tmp_path / "gpu", data, base)
        got[name] = stage.run(ctx)
        assert_checkpoint(ctx.out, {sft: "sft_loss.png", dpo: "dpo.png", rlvr: "rlvr_reward.png"}[stage])
    assert devices == ["cpu", "cuda"] * 3
    for key in ("val_sft_loss", "val_sft_loss_before", "train_loss"):
        assert got["sft"][key] == pytest.approx(want["sft"][key], rel=0.03), key
    for key in ("val_dpo_loss", "val_reward_margin"):
        assert got["dpo"][key] == pytest.approx(want["dpo"][key], rel=0.05, abs=0.02), key
    assert 0.0 <= got["rlvr"][stage_entry("rlvr").headline] <= 1.0 and got["rlvr"]["steps"] == 4.0
    _, resumed = interrupted_then_resumed(rlvr, cfg, tmp_path / "gpu-killed", data, base, crash_at=3)
    assert min(s for s, _ in resumed.history if s) == 3
