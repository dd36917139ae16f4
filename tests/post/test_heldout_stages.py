"""SFT and DPO on rule tasks: SFT reports its format rate and held-out reward before and after, with a table of
sample replies; DPO samples delta-learning pairs on verifiable prompts (chosen: a correct sample of the policy,
rejected: an incorrect one of its parent checkpoint, found through the input's manifest) and reports the held-out
verifiable pairs' and the HHH pairs' preference accuracy apart, ties counting 0.5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kit import input_from_dir, make_test_context, tiny_olmo

from olmoflow.config import from_dict
from olmoflow.contract.context import InputArtifact
from olmoflow.data.postsets import rule_rows
from olmoflow.data.tokenizer import train_bpe
from olmoflow.model.checkpoint import save_checkpoint
from olmoflow.stages import dpo, sft

POST = {"sft": {"steps": 30, "seq_len": 64, "batch_size": 16, "micro_batch": 16, "lr": 3e-3, "warmup_steps": 2,
                "val_examples": 8, "checkpoint_every": 100, "log_every": 10, "heldout_items": 40,
                "heldout_max_new_tokens": 12},
        "dpo": {"steps": 4, "seq_len": 64, "batch_size": 8, "micro_batch": 8, "lr": 1e-4, "warmup_steps": 1,
                "val_pairs": 4, "val_pairs_hhh": 2, "checkpoint_every": 100, "log_every": 2, "delta_prompts": 16,
                "delta_heldout": 40, "delta_samples": 2, "delta_max_new_tokens": 12}}


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rules")
    data = root / "dataset"
    rows = rule_rows(300, 16, 8, 40, seed=0, think=False)
    hhh = [{"messages": [{"role": "user", "content": f"Question {i}?"}], "chosen": "A kind answer.",
            "rejected": "Go away.", "source": "hhh"} for i in range(6)]
    _jsonl(data / "post" / "sft.jsonl", rows["sft"])
    _jsonl(data / "post" / "dpo.jsonl", hhh + [{"messages": [{"role": "user", "content": r["prompt"]}],
                                                "chosen": f"The answer is {r['answer']}.", "rejected": "No."}
                                               for r in rows["rl"]])
    for name in ("dpo_prompts", "heldout", "rl"):
        _jsonl(data / "post" / f"{name}.jsonl", rows[name])
    texts = [json.dumps(r) for rs in rows.values() for r in rs] + ["system\nuser\nassistant\n"]
    tok = train_bpe(texts, 300, min_frequency=0)
    tok.save(str(data / "tokenizer.json"))
    save_checkpoint(root / "base", tiny_olmo(300, max_seq_len=128), data / "tokenizer.json")
    return data, root / "base"


def test_sft_reports_format_and_dpo_samples_delta_pairs(dataset, tmp_path: Path) -> None:
    data, base = dataset
    cfg = from_dict(POST)
    torch.manual_seed(0)
    ctx = make_test_context("sft", cfg, tmp_path, {"dataset": input_from_dir(data, "dataset"),
                                                    "checkpoint": input_from_dir(base, "checkpoint")})
    ctx.artifacts = []
    ctx.artifact_sink = lambda path, subdir: ctx.artifacts.append(path)
    m = sft.run(ctx)
    assert m["heldout_items"] == 40
    assert m["format_rate_before"] == 0.0  # an untrained model never writes "The answer is X."
    assert 0.0 <= m["format_rate_after"] <= 1.0 and 0.0 <= m["heldout_reward_after"] <= 1.0
    table = json.loads((ctx.out / "samples" / "sft_samples.json").read_text())
    assert table["columns"] == ["prompt", "answer", "before", "after"] and len(table["data"]) == 12
    # 30 steps teach a d_model-32 model to open with the format's words (not yet to stop after the period)
    assert sum(row[3].startswith("The answer is") for row in table["data"]) >= 9
    assert not any(row[2].startswith("The answer is") for row in table["data"])
    assert ctx.out / "samples" / "sft_samples.json" in ctx.artifacts

    # DPO's input names its parent (the base) in its manifest, as the runner's does
    sft_in = InputArtifact(uri=str(ctx.out), kind="checkpoint", fingerprint="sft", path=ctx.out,
                           manifest={"inputs": {"checkpoint": {"uri": str(base), "fingerprint": "base"}}})
    opened = []

    def open_parent(self, uri: str, kind: str | None = None):
        opened.append(uri)
        return input_from_dir(Path(uri), kind or "checkpoint")

    mp = pytest.MonkeyPatch()
    mp.setattr("olmoflow.artifacts.ArtifactStore.open", open_parent)
    ctx = make_test_context("dpo", cfg, tmp_path, {"dataset": input_from_dir(data, "dataset"), "checkpoint": sft_in})
    try:
        m = dpo.run(ctx)
    finally:
        mp.undo()
    assert opened == [str(base)]
    assert m["delta_train_prompts"] == 16 and m["delta_heldout_prompts"] == 40
    assert 0 < m["delta_heldout_pairs"] <= 40 and m["delta_train_pairs"] > 0
    for key in ("heldout_pref_accuracy", "heldout_pref_accuracy_before", "heldout_pref_accuracy_hhh",
                "heldout_pref_accuracy_hhh_before", "heldout_reward", "heldout_reward_before"):
        assert 0.0 <= m[key] <= 1.0, key
    # the untrained parent is never right, so every rejected reply is a real sample of it
    assert m["delta_heldout_weak_correct"] == 0.0
    assert (ctx.out / "samples" / "dpo_samples.json").is_file()


def test_a_tie_counts_half() -> None:
    scores = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -3.0, -2.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert dpo.preference(scores) == pytest.approx((0.5 + 1 + 0) / 3)


def test_dpo_holds_out_pairs_of_the_families_it_trains_on(tmp_path: Path) -> None:
    """heldout_rows(families=...) keeps only those families' rows (DPO passes the families of its prompts, so a
    family the SFT model always gets right, with no in-format wrong reply, makes no held-out pair)."""
    from olmoflow.post.heldout import heldout_rows
    rows = rule_rows(0, 0, 0, 60, seed=0, think=False, families=("parity", "min3", "max3"))["heldout"]
    _jsonl(tmp_path / "post" / "heldout.jsonl", rows)
    kept = heldout_rows(tmp_path, 30, "dpo.delta_heldout", {"min3", "max3"})
    assert len(kept) == 30 and {r["family"] for r in kept} == {"min3", "max3"}
    assert {r["family"] for r in heldout_rows(tmp_path, 60, "k")} == {"parity", "min3", "max3"}


def test_sft_keeps_an_early_model_and_dpo_rejects_its_replies(dataset, tmp_path: Path, caplog) -> None:
    """sft.early_checkpoint: the artifact's early/ holds the model part-way (not the final one); with
    dpo.delta_weak early, DPO samples its rejected replies from it and never opens the parent checkpoint."""
    from olmoflow.model.checkpoint import load_checkpoint
    data, base = dataset
    cfg = from_dict({**POST, "sft": {**POST["sft"], "early_checkpoint": 0.5, "heldout_items": 0},
                     "dpo": {**POST["dpo"], "delta_weak": "early", "steps": 2}})
    torch.manual_seed(0)
    ctx = make_test_context("sft", cfg, tmp_path / "sft", {"dataset": input_from_dir(data, "dataset"),
                                                           "checkpoint": input_from_dir(base, "checkpoint")})
    sft.run(ctx)
    early, final = load_checkpoint(ctx.out / "early")[0], load_checkpoint(ctx.out)[0]
    start = load_checkpoint(base)[0]
    name = next(iter(final.state_dict()))
    assert not torch.equal(early.state_dict()[name], final.state_dict()[name])
    assert not torch.equal(early.state_dict()[name], start.state_dict()[name])

    sft_in = InputArtifact(uri=str(ctx.out), kind="checkpoint", fingerprint="sft", path=ctx.out,
                           manifest={"inputs": {"checkpoint": {"uri": str(base), "fingerprint": "base"}}})
    mp = pytest.MonkeyPatch()
    mp.setattr("olmoflow.artifacts.ArtifactStore.open", lambda *a, **k: pytest.fail("opened the parent"))
    ctx = make_test_context("dpo", cfg, tmp_path / "dpo", {"dataset": input_from_dir(data, "dataset"),
                                                           "checkpoint": sft_in})
    caplog.set_level("INFO")
    try:
        m = dpo.run(ctx)
    finally:
        mp.undo()
    assert m["delta_train_pairs"] > 0
    assert f"rejected replies are samples of {sft_in.uri}/early" in caplog.text
