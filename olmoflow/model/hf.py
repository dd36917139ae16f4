"""HF interop: our Olmo3 <-> a transformers Olmo3ForCausalLM directory (config.json + safetensors).

Our parameter names are HF's without the "model." prefix, so the state dicts map by a rename. config.json is
written and parsed here as plain JSON, so neither export nor import needs transformers at run time; only
`to_hf_config` (and the tests' oracle) imports it.

The config states `layer_types` explicitly (HF's default marks only every 4th layer full, ours also makes the last
one full), and YaRN in transformers 5.x's per-layer-type form: `rope_parameters = {"full_attention": yarn,
"sliding_attention": default}`. Import also reads the older top-level `rope_theta` / `rope_scaling`, which
transformers 5.x applies to full-attention layers only. `export_checkpoint` flattens a checkpoint artifact's
model/ + tokenizer.json into one HF directory (`olmoflow export-hf`) that transformers' Auto classes load, chat-ready
for a post-trained checkpoint (the chat template in tokenizer_config.json, eos <|im_end|>), sharded past a size.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer

from olmoflow.model.config import ModelConfig, YarnConfig
from olmoflow.model.olmo3 import Olmo3

FULL, SLIDING = "full_attention", "sliding_attention"
EOS, PAD = "<|endoftext|>", "<|pad|>"


class HFFormatError(ValueError):
    """An HF directory that does not describe (or does not fit) our Olmo 3 architecture."""


def hf_name(name: str) -> str:
    """Our parameter name -> HF's."""
    return name if name.startswith("lm_head.") else f"model.{name}"


def our_name(name: str) -> str:
    """HF's parameter name -> ours."""
    return name.removeprefix("model.")


def hf_config_dict(cfg: ModelConfig, eos_token_id: int | None = None, pad_token_id: int | None = None,
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The config.json of an HF Olmo3ForCausalLM with our architecture."""
    sliding = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    full = dict(sliding)
    if cfg.yarn is not None:
        full = {"rope_type": "yarn", "rope_theta": cfg.rope_theta, "factor": cfg.yarn.factor,
                "beta_fast": cfg.yarn.beta_fast, "beta_slow": cfg.yarn.beta_slow,
                "original_max_position_embeddings": cfg.yarn.original_max_seq_len}
    return {
        "architectures": ["Olmo3ForCausalLM"],
        "model_type": "olmo3",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.norm_eps,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "sliding_window": cfg.sliding_window,
        "layer_types": [FULL if cfg.layer_is_full(i) else SLIDING for i in range(cfg.n_layers)],
        "rope_parameters": {FULL: full, SLIDING: sliding},
        "bos_token_id": None,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "use_cache": True,
        "dtype": str(dtype).removeprefix("torch."),
    }


def to_hf_config(cfg: ModelConfig, eos_token_id: int | None = None, pad_token_id: int | None = None):
    """The same config as a `transformers.Olmo3Config` (imports transformers)."""
    from transformers import Olmo3Config

    d = hf_config_dict(cfg, eos_token_id, pad_token_id)
    for key in ("architectures", "model_type", "dtype"):
        d.pop(key)
    return Olmo3Config(**d)


def export_hf(model: Olmo3, out_dir: str | Path, eos_token_id: int | None = None,
              pad_token_id: int | None = None) -> Path:
    """Write out_dir/config.json + out_dir/model.safetensors, loadable by Olmo3ForCausalLM.from_pretrained."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {hf_name(k): v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    dtype = next(iter(tensors.values())).dtype
    (out / "config.json").write_text(json.dumps(hf_config_dict(model.cfg, eos_token_id, pad_token_id, dtype),
                                                indent=2) + "\n")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


SHARD_BYTES = 5 * 10**9
"""Default largest safetensors file of an export (transformers' own default, "5GB")."""


@dataclass
class ChatSpec:
    """What makes an export chat-ready: the Jinja chat template, and the token that ends an assistant turn (the
    eos of generation_config.json, so `generate` stops where olmoflow's generation stops)."""

    template: str
    stop_token: str


def export_checkpoint(ckpt_dir: str | Path, out_dir: str | Path, chat: ChatSpec | None = None,
                      max_shard_bytes: int = SHARD_BYTES, dtype: torch.dtype | None = None) -> Path:
    """A checkpoint payload (model/ + tokenizer.json) as one flat HF directory that transformers' Auto classes load:
    config.json, generation_config.json, the weights, tokenizer.json and tokenizer_config.json.

    With `chat`, tokenizer_config.json carries the chat template and the stop token is eos everywhere (else eos is
    <|endoftext|>). Weights over `max_shard_bytes` are split into shards of at most that size with an index
    (model.safetensors.index.json); `dtype` None keeps the stored dtype for a model that fits one shard and writes
    a larger one in bfloat16, as published checkpoints are."""
    src, out = Path(ckpt_dir), Path(out_dir)
    model_dir = src / "model"
    tok_path = src / "tokenizer.json"
    if not tok_path.exists():
        raise FileNotFoundError(f"{tok_path}: not found; a checkpoint holds model/ and tokenizer.json")
    hf = json.loads((model_dir / "config.json").read_text())
    cfg = config_from_hf(hf, str(model_dir / "config.json"))
    found = read_hf_tensors(model_dir)
    stored = {name: _slice_bytes(handle, name) for name, (_, handle) in found.items()}
    if dtype is None:
        dtype = torch.bfloat16 if sum(stored.values()) > max_shard_bytes else _stored_dtype(found)
    out.mkdir(parents=True, exist_ok=True)
    _write_shards(found, out, dtype, max_shard_bytes)

    tokenizer = Tokenizer.from_file(str(tok_path))
    special = {name: _token_id(tokenizer, name, tok_path) for name in (EOS, PAD)}
    stop = EOS if chat is None else chat.stop_token
    special[stop] = _token_id(tokenizer, stop, tok_path)
    hf.update(eos_token_id=special[stop], pad_token_id=special[PAD], dtype=str(dtype).removeprefix("torch."))
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": special[stop], "pad_token_id": special[PAD], "bos_token_id": None}, indent=2) + "\n")
    shutil.copyfile(tok_path, out / "tokenizer.json")
    tok_cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_seq_len,
        "eos_token": stop, "pad_token": PAD, "bos_token": None, "unk_token": None,
        "clean_up_tokenization_spaces": False}
    if chat is not None:
        tok_cfg["chat_template"] = chat.template
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    return out


def _token_id(tokenizer: Tokenizer, name: str, where: Path) -> int:
    i = tokenizer.token_to_id(name)
    if i is None:
        raise ValueError(f"{where}: no special token {name} (export-hf needs it in the tokenizer)")
    return i


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def _stored_dtype(found: dict[str, tuple[Path, Any]]) -> torch.dtype:
    """The dtype of the stored weights (all alike, as export_hf writes them), from the file header alone."""
    name, (f, handle) = next(iter(found.items()))
    code = handle.get_slice(name).get_dtype()
    if code not in _SAFETENSORS_DTYPES:
        raise HFFormatError(f"{f}: {name} is stored as {code}; export-hf writes float weights only")
    return _SAFETENSORS_DTYPES[code]


def _slice_bytes(handle: Any, name: str) -> int:
    sl = handle.get_slice(name)
    return math.prod(sl.get_shape()) * _SAFETENSORS_DTYPES.get(sl.get_dtype(), torch.float32).itemsize


def _write_shards(found: dict[str, tuple[Path, Any]], out: Path, dtype: torch.dtype, max_shard_bytes: int) -> None:
    """The tensors in `dtype`, in their stored order, cut into files of at most max_shard_bytes (a tensor larger
    than that is a file of its own); one file needs no index. Reads one shard's tensors at a time."""
    width = torch.tensor([], dtype=dtype).element_size()
    groups: list[list[str]] = [[]]
    size = 0
    for name, (_, handle) in found.items():
        n = math.prod(handle.get_slice(name).get_shape()) * width
        if groups[-1] and size + n > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += n
    for old in [*out.glob("model*.safetensors"), out / "model.safetensors.index.json"]:
        old.unlink(missing_ok=True)  # a re-export into the same folder leaves no stale shard behind
    files = (["model.safetensors"] if len(groups) == 1 else
             [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))])
    weight_map, total = {}, 0
    for names, file in zip(groups, files):
        tensors = {n: found[n][1].get_tensor(n).to(dtype).contiguous() for n in names}
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        total += sum(t.numel() * width for t in tensors.values())
        weight_map.update(dict.fromkeys(names, file))
    if len(groups) > 1:
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


def config_from_hf(hf: dict[str, Any], where: str = "config.json") -> ModelConfig:
    """Parse an HF Olmo3 config.json into our ModelConfig; anything our architecture cannot express is an error."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise HFFormatError(f"{where}: {what}, but olmoflow's Olmo3 is the published Olmo 3 architecture")

    need(hf.get("model_type") == "olmo3", f"model_type is {hf.get('model_type')!r}, not 'olmo3'")
    need(hf.get("hidden_act", "silu") == "silu", f"hidden_act is {hf.get('hidden_act')!r}")
    need(not hf.get("attention_bias", False), "attention_bias is true")
    need(not hf.get("tie_word_embeddings", False), "tie_word_embeddings is true")
    try:
        n_layers, n_heads = hf["num_hidden_layers"], hf["num_attention_heads"]
        theta, yarn = _rope_from_hf(hf, where)
        cfg = ModelConfig(
            d_model=hf["hidden_size"], n_layers=n_layers, n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
            mlp_hidden=hf["intermediate_size"], vocab_size=hf["vocab_size"],
            max_seq_len=hf["max_position_embeddings"], sliding_window=hf["sliding_window"],
            rope_theta=theta, norm_eps=hf.get("rms_norm_eps", 1e-5), init_std=hf.get("initializer_range", 0.02),
            yarn=yarn)
    except KeyError as e:
        raise HFFormatError(f"{where}: missing key {e.args[0]!r}") from None
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(map(str, err["loc"]))
        raise HFFormatError(f"{where}: {field + ': ' if field else ''}{err['msg']}") from None
    ours = [FULL if cfg.layer_is_full(i) else SLIDING for i in range(n_layers)]
    theirs = hf.get("layer_types") or [SLIDING if (i + 1) % 4 else FULL for i in range(n_layers)]
    need(theirs == ours, f"layer_types is {theirs} where Olmo 3 has {ours}")
    return cfg


def _rope_from_hf(hf: dict[str, Any], where: str) -> tuple[float, YarnConfig | None]:
    """RoPE theta and YaRN (full layers) from either config layout; other scalings are errors."""
    params = hf.get("rope_parameters")
    if params is None:  # transformers 4.x layout: one theta, scaling for the full layers
        theta = hf.get("rope_theta", 500_000.0)
        params = {SLIDING: {"rope_type": "default", "rope_theta": theta},
                  FULL: {"rope_theta": theta, **(hf.get("rope_scaling") or {"rope_type": "default"})}}
    if FULL not in params or SLIDING not in params:
        raise HFFormatError(f"{where}: rope_parameters has keys {sorted(params)}, expected {[FULL, SLIDING]}")
    sliding, full = params[SLIDING], params[FULL]
    if sliding.get("rope_type", "default") != "default":
        raise HFFormatError(f"{where}: rope_parameters.{SLIDING} is {sliding.get('rope_type')!r}; "
                            "Olmo 3 scales RoPE on full-attention layers only")
    if full.get("rope_theta", 500_000.0) != sliding.get("rope_theta", 500_000.0):
        raise HFFormatError(f"{where}: rope_theta differs between layer types ({full.get('rope_theta')} vs "
                            f"{sliding.get('rope_theta')}); Olmo 3 uses one theta")
    theta = float(sliding.get("rope_theta", 500_000.0))
    kind = full.get("rope_type", full.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind != "yarn":
        raise HFFormatError(f"{where}: rope_parameters.{FULL}.rope_type is {kind!r}; only 'default' and 'yarn'")
    yarn = YarnConfig(factor=full["factor"], beta_fast=full.get("beta_fast") or 32.0,
                      beta_slow=full.get("beta_slow") or 1.0,
                      original_max_seq_len=full.get("original_max_position_embeddings", hf["max_position_embeddings"]))
    mscale = 0.1 * math.log(yarn.factor) + 1.0
    unsupported = [k for k in ("mscale", "mscale_all_dim") if full.get(k)]
    if full.get("truncate", True) is False:
        unsupported.append("truncate")
    if full.get("attention_factor") is not None and not math.isclose(full["attention_factor"], mscale, rel_tol=1e-6):
        unsupported.append(f"attention_factor={full['attention_factor']} (YaRN's default is {mscale})")
    if unsupported:
        raise HFFormatError(f"{where}: YaRN options {unsupported} are not part of Olmo 3's YaRN")
    return theta, yarn


def read_hf_tensors(hf_dir: Path) -> dict[str, tuple[Path, Any]]:
    """HF tensor name -> (file, lazy handle) over model.safetensors or the shards an index lists."""
    index = hf_dir / "model.safetensors.index.json"
    if index.exists():
        files = sorted({hf_dir / f for f in json.loads(index.read_text())["weight_map"].values()})
    elif (hf_dir / "model.safetensors").exists():
        files = [hf_dir / "model.safetensors"]
    else:
        raise HFFormatError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json")
    found: dict[str, tuple[Path, Any]] = {}
    for f in files:
        handle = safe_open(str(f), framework="pt")
        for name in handle.keys():
            found[name] = (f, handle)
    return found


def load_hf(hf_dir: str | Path, dtype: torch.dtype = torch.float32, weights: bool = True) -> Olmo3:
    """Our Olmo3 from an HF Olmo3 directory (config.json + safetensors, possibly sharded); weights=False checks
    names and shapes the same way but reads no tensor and returns the model on the meta device (the ranks of a
    sharded run other than 0, parallel.parallelize)."""
    d = Path(hf_dir)
    cfg_path = d / "config.json"
    if not cfg_path.exists():
        raise HFFormatError(f"{cfg_path}: not found; an HF model directory holds config.json + safetensors")
    cfg = config_from_hf(json.loads(cfg_path.read_text()), str(cfg_path))
    with torch.device("meta"):
        model = Olmo3(cfg)
    expected = {hf_name(k): v.shape for k, v in model.state_dict().items()}
    found = read_hf_tensors(d)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise HFFormatError(f"{d}: tensors do not match olmoflow's Olmo3 for {cfg_path}: "
                            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}")
    state = {}
    for name, shape in expected.items():
        f, handle = found[name]
        stored = tuple(handle.get_slice(name).get_shape())
        if stored != tuple(shape):
            raise HFFormatError(f"{f}: {name} has shape {stored}, but olmoflow's Olmo3 built from "
                                f"{cfg_path} expects {tuple(shape)}")
        if weights:
            state[our_name(name)] = handle.get_tensor(name).to(dtype)
    if weights:
        model.load_state_dict(state, strict=True, assign=True)
    return model
