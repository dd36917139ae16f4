"""The checkpoint artifact's model payload: model/ in HF layout (config.json + model.safetensors) + tokenizer.json.

The tokenizer travels with the weights so any later stage (or `transformers`) can use the checkpoint alone; its
eos / pad ids go into config.json.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tokenizers import Tokenizer

from olmoflow.model.hf import export_hf, load_hf
from olmoflow.model.olmo3 import Olmo3

EOS, PAD = "<|endoftext|>", "<|pad|>"


def _check_fits(tokenizer: Tokenizer, tokenizer_path: Path, model: Olmo3, model_path: Path) -> None:
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > model.cfg.vocab_size:
        raise ValueError(f"{tokenizer_path}: the tokenizer has {size} tokens but the embedding of {model_path} has "
                         f"only {model.cfg.vocab_size} rows (model.vocab_size)")


def save_checkpoint(out_dir: str | Path, model: Olmo3, tokenizer_json_path: str | Path) -> Path:
    """Write out_dir/model/{config.json, model.safetensors} and out_dir/tokenizer.json."""
    out, tok_path = Path(out_dir), Path(tokenizer_json_path)
    tokenizer = Tokenizer.from_file(str(tok_path))
    _check_fits(tokenizer, tok_path, model, out / "model")
    export_hf(model, out / "model", eos_token_id=tokenizer.token_to_id(EOS), pad_token_id=tokenizer.token_to_id(PAD))
    shutil.copyfile(tok_path, out / "tokenizer.json")
    return out


def load_checkpoint(ckpt_dir: str | Path, weights: bool = True) -> tuple[Olmo3, Tokenizer]:
    """The model and tokenizer of a checkpoint payload written by save_checkpoint (or any HF Olmo3 + tokenizer);
    weights=False: the model on the meta device, every tensor's name and shape checked but none read."""
    d = Path(ckpt_dir)
    tok_path = d / "tokenizer.json"
    if not tok_path.exists():
        raise FileNotFoundError(f"{tok_path}: not found; a checkpoint holds model/ and tokenizer.json")
    model = load_hf(d / "model", weights=weights)
    tokenizer = Tokenizer.from_file(str(tok_path))
    _check_fits(tokenizer, tok_path, model, d / "model")
    return model, tokenizer
