"""The model-flow stage: eval reports in, results.json + report.html + predictions + plots out; under a flow run the
report also lands on the parent run and each evaluated stage's checkpoint becomes a registered model version
(its Hugging Face export), aliased by stage."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from kit import make_test_context, tiny_olmo

from olmoflow.artifacts import ArtifactStore, sha256_file
from olmoflow.contract.context import InputArtifact
from olmoflow.data.tokenizer import train_bpe
from olmoflow.evals.modelflow_config import ModelFlowConfig
from olmoflow.model.hf import export_hf
from olmoflow.stages import model_flow

STAGES = {"pretrain": False, "sft": True}  # stage: post-trained (chat suite)


def _eval_results(stage: str, chat: bool, checkpoint: str) -> dict:
    """A stage's eval results.json, as olmoflow/stages/eval.py writes it, with the per-task fields."""
    acc = 0.3 if not chat else 0.45
    return {
        "tasks": {"arc_easy": {"n": 4, "num_shots": 0, "chance": 0.25, "primary": "acc", "metrics": {"acc": acc},
                               "lower_is_better": [], "suite": "chat" if chat else "base", "status": "ok"}},
        "heldout": {"all": {"docs": 2, "tokens": 50, "bytes": 200, "nats": 60.0, "loss_per_token": 1.2,
                            "bpb": 2.0 - acc}, "macro_bpb": 2.0 - acc, "domains": {}},
        "chat_format": {"chat": chat, "reason": "test"}, "model": {"checkpoint": checkpoint}}


@pytest.fixture
def flow(tmp_path):
    """Two checkpoints in a store, and the eval reports of each: the stage's inputs and config."""
    store = ArtifactStore(str(tmp_path / "store"), "mf")
    tokenizer = train_bpe(["the flow evaluates every stage"] * 8, 64)  # with the chat template's special tokens
    inputs, weights = {}, {}
    for i, (stage, chat) in enumerate(STAGES.items()):
        staging = store.staging_dir(stage, f"fp{i}")
        export_hf(tiny_olmo(64, seed=i), staging / "model")
        tokenizer.save(str(staging / "tokenizer.json"))
        ckpt = store.uri(stage, f"fp{i}")
        store.commit(staging, ckpt, {"stage": stage, "fingerprint": f"fp{i}", "kind": "checkpoint"})
        weights[stage] = sha256_file(tmp_path / "store" / "mf" / stage / f"fp{i}" / "model" / "model.safetensors")
        report = tmp_path / f"eval-{stage}"
        (report / "predictions").mkdir(parents=True)
        (report / "results.json").write_text(json.dumps(_eval_results(stage, chat, ckpt)))
        (report / "predictions" / "arc_easy.jsonl").write_text(json.dumps({"id": "1", "stage": stage}) + "\n")
        inputs[f"eval-{stage}"] = InputArtifact(str(report), "report", f"e{i}", {
            "stage": "eval", "inputs": {"checkpoint": {"uri": ckpt, "fingerprint": f"fp{i}"}}}, report)
    cfg = SimpleNamespace(flow=SimpleNamespace(name="mf", store=str(tmp_path / "store")),
                          model_flow=ModelFlowConfig())
    return SimpleNamespace(inputs=inputs, cfg=cfg, weights=weights, im_end=tokenizer.token_to_id("<|im_end|>"))


def test_report_payload_without_mlflow(flow, tmp_path):
    ctx = make_test_context("model-flow", flow.cfg, tmp_path, flow.inputs)
    logged = []
    ctx.artifact_sink = lambda path, sub: logged.append(f"{sub}/{path.name}")
    metrics = model_flow.run(ctx)
    results = json.loads((ctx.out / "results.json").read_text())
    assert results["stages"] == {
        "pretrain": {"arc_easy": {"acc": 0.3, "n": 4}, "heldout": {"val_bpb": 1.7, "val_loss": 1.2,
                                                                   "val_bpb_macro": 1.7, "n": 2}},
        "sft": {"arc_easy": {"acc": 0.45, "n": 4}, "heldout": {"val_bpb": 1.55, "val_loss": 1.2,
                                                               "val_bpb_macro": 1.55, "n": 2}}}
    assert metrics["stages_evaluated"] == 2 and metrics["sft/arc_easy/acc"] == 0.45
    for stage in STAGES:
        assert json.loads((ctx.out / "predictions" / stage / "arc_easy.jsonl").read_text())["stage"] == stage
    assert sorted(logged) == ["plots/heldout_bpb.png", "plots/suite_base.png", "plots/suite_chat.png",
                              "report/report.html"]
    assert (ctx.out / "report.html").is_file()


def test_an_input_that_is_not_an_eval_report(flow, tmp_path):
    ctx = make_test_context("model-flow", flow.cfg, tmp_path, {"checkpoint": flow.inputs["eval-sft"]})
    with pytest.raises(ValueError, match="model-flow: unexpected input 'checkpoint'"):
        model_flow.run(ctx)


def test_models_registered_with_stage_aliases(flow, tmp_path, monkeypatch):
    import mlflow

    from olmoflow.tracking import Tracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    tracker = Tracker("mf", "r1")
    parent = tracker.parent_run_id()
    run_id = tracker.start_stage("model-flow", "fp", "/store/mf/model-flow/fp", {}, status="running")
    ctx = make_test_context("model-flow", flow.cfg, tmp_path, flow.inputs)
    ctx.tracker, ctx.run_id = tracker, run_id
    model_flow.run(ctx)
    tracker.end_stage(run_id)
    for version, stage in enumerate(STAGES, 1):
        mv = tracker.client.get_model_version_by_alias("mf", stage)
        assert str(mv.version) == str(version) and mv.run_id == run_id
    got = tmp_path / "got"
    mlflow.artifacts.download_artifacts("models:/mf@sft", dst_path=str(got))
    # the post-trained stage is registered chat-ready: its template, and generation stopping at <|im_end|>
    assert {p.name for p in got.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                               "tokenizer_config.json", "generation_config.json"}
    assert "chat_template" in json.loads((got / "tokenizer_config.json").read_text())
    assert json.loads((got / "generation_config.json").read_text())["eos_token_id"] == flow.im_end
    assert sha256_file(got / "model.safetensors") == flow.weights["sft"]
    assert [a.path for a in tracker.client.list_artifacts(parent, "model-flow")] == ["model-flow/report.html"]
