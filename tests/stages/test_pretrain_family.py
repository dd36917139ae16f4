"""Pretrain, midtrain and long-context end to end on a tiny Olmo3 over a real dataset payload built here (Python
standard library source and pydoc topics as text, a BPE trained with curate's own trainer): payloads are
complete and loadable, numbers move the right way, soups and checkpoint averages are the means they claim, a
killed stage resumes to bitwise the same weights, and errors name what is wrong."""

from __future__ import annotations

import json
import math
import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from kit import Stop, input_from_dir, make_test_context, read_model_weights, stop_at

from olmoflow.config import from_dict
from olmoflow.contract.context import StageContext
from olmoflow.data.shards import ShardWriter
from olmoflow.data.tokenizer import EOS, encode_docs, train_bpe
from olmoflow.model.checkpoint import load_checkpoint
from olmoflow.stages import long_context, midtrain, pretrain
from olmoflow.train.packing import Docs

VOCAB = 512
CONFIG = {
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 8, "mlp_hidden": 64,
              "vocab_size": VOCAB, "max_seq_len": 64, "sliding_window": 32},
    "curate": {"tokenizer": {"vocab_size": VOCAB}},
    "pretrain": {"steps": 16, "seq_len": 64, "batch_tokens": 512, "micro_batch": 4, "lr": 1e-2, "warmup_steps": 2,
                 "checkpoint_every": 4, "log_every": 2, "val_tokens": 4096},
    "midtrain": {"steps": 4, "seq_len": 64, "batch_tokens": 256, "micro_batch": 4, "lr": 1e-3,
                 "checkpoint_every": 2, "log_every": 1, "val_tokens": 4096,
                 "mix": {"math": 0.5, "code": 0.3, "prose": 0.2}},
    "long_context": {"steps": 4, "seq_len": 128, "batch_tokens": 256, "micro_batch": 2, "lr": 1e-3,
                     "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1, "val_tokens": 4096,
                     "yarn": {"factor": 2, "original_max_seq_len": 64}, "long_fraction": 0.5, "average_last": 2},
}


def config(**sections):
    data = json.loads(json.dumps(CONFIG))
    for key, over in sections.items():
        data[key].update(over)
    return from_dict(data)


# ---- a dataset payload as curate writes it ----------------------------------------------------------------------

def texts() -> dict[str, list[str]]:
    from pydoc_data.topics import topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = [p.read_text(encoding="utf-8") for d in ("json", "email", "importlib")
            for p in sorted((stdlib / d).glob("*.py"))]
    rng = random.Random(0)
    math_docs = ["\n".join(f"{a} + {b} = {a + b}" for a, b in ((rng.randrange(100), rng.randrange(100))
                                                                for _ in range(20))) for _ in range(120)]
    return {"code": [c for c in code if len(c) > 200], "prose": [topics[k] for k in sorted(topics)],
            "math": math_docs}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    by_domain = texts()
    train = {d: [t for i, t in enumerate(ts) if i % 10 != 3] for d, ts in by_domain.items()}
    val = {d: [t for i, t in enumerate(ts) if i % 10 == 3] for d, ts in by_domain.items()}
    tok = train_bpe((t for ts in train.values() for t in ts), VOCAB)
    tok.save(str(root / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    ids = {d: encode_docs(tok, ts, eos) for d, ts in train.items()}
    mixes = {"pretrain": ("code", "prose"), "midtrain": ("math", "code", "prose")}
    for mix, domains in mixes.items():
        for d in domains:
            with ShardWriter(root / mix / d, shard_tokens=20_000) as w:
                for doc in ids[d]:
                    w.add(doc)
    with ShardWriter(root / "long" / "code") as w:
        for doc in ids["code"]:
            if doc.size >= 300:
                w.add(doc)
    for d, ts in val.items():
        (root / "val").mkdir(exist_ok=True)
        (root / "val" / f"{d}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ts))
    return root


def context(stage: str, cfg, root: Path, **inputs: Path) -> StageContext:
    return make_test_context(stage, cfg, root, {k: input_from_dir(v, k) for k, v in inputs.items()})


def weights(payload: Path) -> dict[str, torch.Tensor]:
    """The payload's weights under our parameter names."""
    return load_checkpoint(payload)[0].state_dict()


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- the three stages, once, shared by the tests -----------------------------------------------------------------

@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory) -> tuple[Path, dict]:
    ctx = context("pretrain", config(), tmp_path_factory.mktemp("pretrain"), dataset=dataset)
    return ctx.out, pretrain.run(ctx)


@pytest.fixture(scope="module")
def midtrained(dataset, pretrained, tmp_path_factory) -> tuple[Path, dict]:
    ctx = context("midtrain", config(), tmp_path_factory.mktemp("midtrain"), dataset=dataset,
                  checkpoint=pretrained[0])
    return ctx.out, midtrain.run(ctx)


def test_pretrain_learns_and_writes_a_complete_checkpoint(pretrained):
    out, metrics = pretrained
    assert {"model/config.json", "model/model.safetensors", "tokenizer.json", "metrics.json", "plots/loss.png"} <= {
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert json.loads((out / "metrics.json").read_text())["val_loss"] == metrics["val_loss"]
    assert {"val_loss/code", "val_loss/prose", "val_loss/math", "train_loss"} <= metrics.keys()
    # 16 steps of 512 tokens: below the uniform loss already, and the held-out loss agrees with training's.
    assert metrics["val_loss"] < math.log(VOCAB) - 0.5
    assert abs(metrics["val_loss"] - metrics["train_loss"]) < 1.0
    model, tok = load_checkpoint(out)
    assert model.cfg.vocab_size == VOCAB and tok.get_vocab_size() == VOCAB


def test_killed_pretrain_resumes_to_the_same_weights(dataset, pretrained, tmp_path):
    ctx = context("pretrain", config(), tmp_path, dataset=dataset)
    ctx.metrics_sink = stop_at(10)  # the checkpoint at step 8 survives
    with pytest.raises(Stop):
        pretrain.run(ctx)
    ctx = context("pretrain", config(), tmp_path, dataset=dataset)
    metrics = pretrain.run(ctx)
    assert_same_weights(ctx.out, pretrained[0])
    assert metrics["val_loss"] == pretrained[1]["val_loss"]


def test_soup_is_the_mean_of_its_runs_and_survives_a_kill(dataset, pretrained, midtrained, tmp_path):
    single = context("midtrain", config(midtrain={"seed": 1}), tmp_path / "seed1", dataset=dataset,
                     checkpoint=pretrained[0])
    seed1 = midtrain.run(single)

    soup_cfg = config(midtrain={"soup_seeds": [0, 1]})
    ctx = context("midtrain", soup_cfg, tmp_path / "soup", dataset=dataset, checkpoint=pretrained[0])
    ctx.metrics_sink = stop_at(7)  # in the second run (steps 5-8), after its checkpoint at step 6
    with pytest.raises(Stop):
        midtrain.run(ctx)
    assert ctx.work.latest().name == "step-000006"
    ctx = context("midtrain", soup_cfg, tmp_path / "soup", dataset=dataset, checkpoint=pretrained[0])
    metrics = midtrain.run(ctx)

    assert metrics["val_loss/seed0"] == midtrained[1]["val_loss"]
    assert metrics["val_loss/seed1"] == seed1["val_loss"]
    w0, w1, soup = weights(midtrained[0]), weights(single.out), weights(ctx.out)
    assert all(torch.equal(soup[k], (w0[k] + w1[k]) / 2) for k in soup)
    assert not torch.equal(w0["lm_head.weight"], w1["lm_head.weight"])  # the seeds really differ


def test_midtrain_moves_toward_its_mix(pretrained, midtrained):
    # Half of midtraining's tokens are arithmetic: the math held-out loss must fall the most.
    before, after = pretrained[1], midtrained[1]
    gains = {d: before[f"val_loss/{d}"] - after[f"val_loss/{d}"] for d in ("math", "code", "prose")}
    assert gains["math"] > 0 and gains["math"] == max(gains.values())


def test_long_context_extends_the_context(dataset, midtrained, tmp_path):
    ctx = context("long-context", config(), tmp_path, dataset=dataset, checkpoint=midtrained[0])
    metrics = long_context.run(ctx)
    hf = json.loads((ctx.out / "model" / "config.json").read_text())
    assert hf["max_position_embeddings"] == 128
    assert hf["rope_parameters"]["full_attention"] == {
        "rope_type": "yarn", "rope_theta": 500000.0, "factor": 2.0, "beta_fast": 32.0, "beta_slow": 1.0,
        "original_max_position_embeddings": 64}
    assert hf["rope_parameters"]["sliding_attention"]["rope_type"] == "default"
    model, _ = load_checkpoint(ctx.out)
    assert model.cfg.max_seq_len == 128 and model.cfg.yarn.factor == 2

    # average_last 2: the payload is the mean of the in-stage checkpoints at steps 2 and 4.
    states = [read_model_weights(ctx.work.local / f"step-{s:06d}") for s in (2, 4)]
    out = weights(ctx.out)
    for k, v in out.items():
        assert torch.allclose(v, (states[0][k] + states[1][k]) / 2, atol=1e-7), k

    by_pos = json.loads((ctx.out / "metrics.json").read_text())["loss_by_position"]
    assert by_pos["edges"] == [0, 32, 64, 96, 128] and len(by_pos["after"]) == 4
    assert by_pos["documents"] == long_context.POSITION_DOCS  # all held out: val text has enough long documents
    assert {"val_loss_beyond_context_before", "val_loss_beyond_context", "val_loss", "train_loss"} <= metrics.keys()
    assert (ctx.out / "plots" / "loss_by_position.png").stat().st_size > 0
    logged = [m for _, m in ctx.history if "val_loss_by_position/after" in m]
    assert len(logged) == 4


def test_the_before_curve_is_the_checkpoints_own_function(midtrained):
    """Scored on the (sharded) YaRN model under the checkpoint's config = scoring the checkpoint itself."""
    from olmoflow.model import Olmo3, YarnConfig
    from olmoflow.train.evaluate import position_losses

    base, _ = load_checkpoint(midtrained[0])
    yarn = YarnConfig(factor=2, beta_fast=32, beta_slow=1, original_max_seq_len=base.cfg.max_seq_len)
    extended = Olmo3(base.cfg.model_copy(update={"max_seq_len": 128, "yarn": yarn}))
    extended.load_state_dict(base.state_dict())
    docs = [np.random.default_rng(i).integers(0, 512, 129) for i in range(3)]
    as_it_was = base.cfg.model_copy(update={"max_seq_len": 128})
    got = long_context.position_losses_as(extended, as_it_was, docs, 128)
    assert np.allclose(got, position_losses(base, docs, 128), atol=1e-5)
    assert np.abs(position_losses(extended, docs, 128) - got).max() > 1e-4  # YaRN (on the full layer) changes it
    assert extended.cfg.yarn == yarn  # and the model keeps its own config


def test_position_docs_fall_back_to_unseen_long_training_documents():
    long_docs = Docs.from_list("long/code", [np.arange(n, dtype=np.uint32) for n in (50, 300, 20, 400)])
    domains = {"long/code": long_docs, "midtrain/code": long_docs}
    held_out = [np.arange(129, dtype=np.uint32)]
    assert long_context.position_docs(held_out, domains, 128) is held_out and domains["long/code"] is long_docs
    picked = long_context.position_docs([], domains, 128)
    assert [d.size for d in picked] == [300, 400]
    assert domains["long/code"].length.tolist() == [50, 20]  # taken out of training
    assert domains["midtrain/code"] is long_docs


def test_a_tokenizer_larger_than_the_embedding_is_refused(dataset, tmp_path):
    cfg = config(model={"vocab_size": 300}, curate={"tokenizer": {"vocab_size": 300}})
    with pytest.raises(ValueError, match=rf"{dataset / 'tokenizer.json'}: the tokenizer has {VOCAB} tokens but "
                                         r"model.vocab_size is 300"):
        pretrain.run(context("pretrain", cfg, tmp_path, dataset=dataset))


def test_continuing_from_another_architecture_is_refused(dataset, pretrained, tmp_path):
    cfg = config(model={"n_layers": 3})
    with pytest.raises(ValueError, match=r"differs from the config's model at n_layers \(2 vs 3\)"):
        pretrain.run(context("pretrain", cfg, tmp_path, dataset=dataset, checkpoint=pretrained[0]))


def test_a_checkpoint_with_another_tokenizer_is_refused(dataset, pretrained, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    train_bpe(["a different corpus " * 50], 300).save(str(other / "tokenizer.json"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model").symlink_to(pretrained[0] / "model")
    (ckpt / "tokenizer.json").write_bytes((other / "tokenizer.json").read_bytes())
    with pytest.raises(ValueError, match=r"the dataset's tokenizer .* differs from the checkpoint's tokenizer"):
        midtrain.run(context("midtrain", config(), tmp_path, dataset=dataset, checkpoint=ckpt))
