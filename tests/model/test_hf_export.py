"""export-hf of a checkpoint payload: sharded past a size (bfloat16 for a model larger than one shard), an index
transformers and our importer both read, and the tokenizer files transformers' Auto classes need."""

from __future__ import annotations

import json

import pytest
import torch
from modelkit import tiny_cfg, tiny_model
from test_checkpoint import write_tokenizer

from olmoflow.model.checkpoint import save_checkpoint
from olmoflow.model.hf import HFFormatError, export_checkpoint, load_hf

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()


@pytest.fixture
def ckpt(tmp_path):
    model = tiny_model(tiny_cfg(2))
    write_tokenizer(tmp_path / "tok.json", 90)
    save_checkpoint(tmp_path / "ckpt", model, tmp_path / "tok.json")
    return tmp_path / "ckpt", model


def test_a_model_over_the_threshold_is_sharded_bfloat16(tmp_path, ckpt):
    src, model = ckpt
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
    out = export_checkpoint(src, tmp_path / "hf", max_shard_bytes=fp32_bytes // 6)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) >= 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert sorted(set(index["weight_map"].values())) == shards
    assert index["metadata"]["total_size"] == fp32_bytes // 2  # bfloat16
    assert all(p.stat().st_size <= fp32_bytes // 6 + 4096 for p in out.glob("*.safetensors"))  # + header
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"

    want = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    ours = load_hf(out, dtype=torch.bfloat16).state_dict()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).state_dict()
    for name, w in want.items():
        assert torch.equal(ours[name], w), name
        assert torch.equal(theirs[name if name.startswith("lm_head") else f"model.{name}"], w), name

    # Exported again into the same folder, as one file: no stale shard or index stays behind.
    export_checkpoint(src, out)
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"  # it fits a shard: as stored


def test_a_base_checkpoint_exports_without_a_chat_template(tmp_path, ckpt):
    src, model = ckpt
    out = export_checkpoint(src, tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.chat_template is None and (tok.eos_token, tok.pad_token) == ("<|endoftext|>", "<|pad|>")
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    x = torch.randint(0, 90, (1, 20))
    with torch.no_grad():
        assert (hf(x).logits - model(x)).abs().max() < 1e-4


def test_export_errors_name_the_file(tmp_path, ckpt):
    src, _ = ckpt
    (src / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"ckpt/tokenizer.json: not found"):
        export_checkpoint(src, tmp_path / "hf")
    write_tokenizer(src / "tokenizer.json", 90)
    cfg = json.loads((src / "model/config.json").read_text())
    (src / "model/config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(HFFormatError, match=r"model/config.json: model_type is 'llama'"):
        export_checkpoint(src, tmp_path / "hf")
