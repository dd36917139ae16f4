"""Checkpoint payloads: model/ in HF layout + tokenizer.json, round trip and vocabulary check."""

from __future__ import annotations

import json

import pytest
import torch
from modelkit import tiny_cfg, tiny_model
from tokenizers import Tokenizer, models

from olmoflow.model.checkpoint import load_checkpoint, save_checkpoint
from olmoflow.model.hf import export_checkpoint


def write_tokenizer(path, size: int) -> None:
    specials = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(size - len(specials))])}
    Tokenizer(models.WordLevel(vocab, unk_token="<|pad|>")).save(str(path))


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(tiny_cfg(2))
    write_tokenizer(tmp_path / "tok.json", 90)
    save_checkpoint(tmp_path / "ckpt", model, tmp_path / "tok.json")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["model", "tokenizer.json"]
    assert sorted(p.name for p in (tmp_path / "ckpt/model").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "ckpt/model/config.json").read_text())
    assert (config["eos_token_id"], config["pad_token_id"]) == (0, 1)

    loaded, tokenizer = load_checkpoint(tmp_path / "ckpt")
    assert tokenizer.get_vocab_size() == 90 and tokenizer.token_to_id("w0") == 4
    x = torch.randint(0, 90, (2, 40))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))

    export_checkpoint(tmp_path / "ckpt", tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
    model = tiny_model(tiny_cfg())
    write_tokenizer(tmp_path / "tok.json", 120)
    with pytest.raises(ValueError, match=r"tok.json: the tokenizer has 120 tokens but the embedding of .* has only "
                                         r"101 rows"):
        save_checkpoint(tmp_path / "ckpt", model, tmp_path / "tok.json")

    write_tokenizer(tmp_path / "tok.json", 90)
    save_checkpoint(tmp_path / "ckpt", model, tmp_path / "tok.json")
    write_tokenizer(tmp_path / "ckpt/tokenizer.json", 120)
    with pytest.raises(ValueError, match=r"ckpt/tokenizer.json: the tokenizer has 120 tokens"):
        load_checkpoint(tmp_path / "ckpt")
