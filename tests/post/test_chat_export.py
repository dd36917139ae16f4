"""A post-trained checkpoint exported for transformers is chat-ready: AutoTokenizer's apply_chat_template builds the
token ids olmoflow's ChatTemplate trains on, and AutoModelForCausalLM's greedy generate stops at <|im_end|> with the
tokens olmoflow's own generation gives. `olmoflow export-hf` decides chat-ready from the stage that made it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kit import tiny_olmo
from test_chat import MESSAGES
from tokenizers import Tokenizer

from olmoflow.artifacts import ArtifactStore
from olmoflow.cli import main
from olmoflow.data.tokenizer import train_bpe
from olmoflow.model.checkpoint import save_checkpoint
from olmoflow.model.generation import generate
from olmoflow.model.hf import ChatSpec, export_checkpoint
from olmoflow.post.chat import IM_END, ChatTemplate
from olmoflow.post.chat_template import CHAT_TEMPLATE, STOP
from olmoflow.post.sft import sft_backward

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()
CHAT = ChatSpec(CHAT_TEMPLATE, STOP)


def export(tmp_path: Path, model: torch.nn.Module, tokenizer: Tokenizer, chat: ChatSpec | None = CHAT) -> Path:
    tokenizer.save(str(tmp_path / "tok.json"))
    save_checkpoint(tmp_path / "ckpt", model, tmp_path / "tok.json")
    return export_checkpoint(tmp_path / "ckpt", tmp_path / "hf", chat)


@pytest.mark.parametrize("split_digits", [False, True], ids=["test-bpe", "curate-bpe"])
def test_auto_tokenizer_renders_chat_templates_ids(tmp_path: Path, tokenizer: Tokenizer, split_digits: bool):
    tok = tokenizer if not split_digits else train_bpe([TEXT_WITH_DIGITS], 300)  # curate's pre-tokenizer
    hf = transformers.AutoTokenizer.from_pretrained(export(tmp_path, tiny_olmo(tok.get_vocab_size()), tok))
    ours = ChatTemplate(tok)
    enc = ours.encode(MESSAGES)
    text = hf.apply_chat_template(MESSAGES, tokenize=False)
    assert text == tok.decode(enc.ids, skip_special_tokens=False)  # byte-identical rendering
    got = hf.apply_chat_template(MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert got["input_ids"] == enc.ids and got["assistant_masks"] == enc.mask
    prompt = hf.apply_chat_template(MESSAGES[:2], tokenize=True, return_dict=True, add_generation_prompt=True)
    assert prompt["input_ids"] == ours.prompt(MESSAGES[:2])
    assert (hf.eos_token, hf.pad_token) == (IM_END, "<|pad|>")
    with pytest.raises(Exception, match="message 1 needs role in system/user/assistant"):
        hf.apply_chat_template([MESSAGES[0], {"role": "tool", "content": "x"}], tokenize=False)


TEXT_WITH_DIGITS = ("system\nuser\nassistant\nYou are a helpful assistant. What is 12 plus 7? 12 plus 7 is 19. "
                    "Hello there! How are you today? I am fine, thank you. ") * 20


def test_greedy_generate_stops_at_im_end_like_olmoflow(tmp_path: Path, tokenizer: Tokenizer):
    # A tiny model taught one reply (a few SFT steps), so greedy decoding reaches <|im_end|> by itself.
    template = ChatTemplate(tokenizer)
    conv = template.encode(MESSAGES[1:3])
    model = tiny_olmo(tokenizer.get_vocab_size()).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        sft_backward(model, [conv], 1, template.pad, conv.n_targets)
        opt.step()
        opt.zero_grad()
    model.eval()
    prompt = template.prompt(MESSAGES[1:2])
    [ours], _ = generate(model, [prompt], max_new_tokens=30, temperature=0, eos_id=template.im_end)
    assert ours[-1] == template.im_end and len(ours) < 30  # it stopped, before the budget

    out = export(tmp_path, model, tokenizer)
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == template.im_end
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = hf_tok.apply_chat_template(MESSAGES[1:2], add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)["input_ids"]
    assert ids[0].tolist() == prompt
    with torch.no_grad():
        theirs = hf_model.generate(ids, max_new_tokens=30, do_sample=False)[0, ids.shape[1]:].tolist()
    assert theirs == ours
    assert hf_tok.decode(theirs, skip_special_tokens=True) == tokenizer.decode(ours)


@pytest.mark.parametrize("stage, chat", [("sft", True), ("rlvr", True), ("pretrain", False)])
def test_cli_ships_the_chat_template_for_post_trained_checkpoints(tmp_path: Path, tokenizer: Tokenizer, stage,
                                                                   chat, capsys):
    store = ArtifactStore(str(tmp_path / "store"), "flow")
    staging = store.staging_dir(stage, "fp")
    tokenizer.save(str(tmp_path / "tok.json"))
    save_checkpoint(staging, tiny_olmo(tokenizer.get_vocab_size()), tmp_path / "tok.json")
    uri = store.uri(stage, "fp")
    store.commit(staging, uri, {"stage": stage, "fingerprint": "fp", "kind": "checkpoint"})
    assert main(["export-hf", uri, str(tmp_path / "hf")]) == 0
    assert f"({'' if chat else 'no '}chat template;" in capsys.readouterr().out
    tok_cfg = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    gen_cfg = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    stop = "<|im_end|>" if chat else "<|endoftext|>"
    assert ("chat_template" in tok_cfg) == chat and tok_cfg["eos_token"] == stop
    assert gen_cfg["eos_token_id"] == tokenizer.token_to_id(stop)
    assert gen_cfg["pad_token_id"] == tokenizer.token_to_id("<|pad|>")
