"""HF interop, with transformers' Olmo3ForCausalLM as the outside oracle."""

from __future__ import annotations

import json

import pytest
import torch
from modelkit import YARN, tiny_cfg, tiny_model

from olmoflow.model import rope
from olmoflow.model.hf import HFFormatError, config_from_hf, export_hf, hf_config_dict, load_hf, to_hf_config

transformers = pytest.importorskip("transformers")
transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
TOL = 1e-4


def tokens(seed: int = 1, batch: int = 2, t: int = 40) -> torch.Tensor:
    return torch.randint(0, 101, (batch, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_kv_heads, yarn, attn", [(4, None, "eager"), (2, None, "sdpa"), (4, YARN, "sdpa"),
                                                    (2, YARN, "eager")], ids=["mha", "gqa", "mha-yarn", "gqa-yarn"])
def test_export_gives_transformers_the_same_logits(tmp_path, n_kv_heads, yarn, attn):
    model = tiny_model(tiny_cfg(n_kv_heads, yarn))
    export_hf(model, tmp_path)
    hf = transformers.Olmo3ForCausalLM.from_pretrained(tmp_path, attn_implementation=attn).eval()
    # from_pretrained only warns about missing weights, so check the mapping is 1:1 before trusting logits.
    ours = {f"model.{k}" if not k.startswith("lm_head") else k: v.shape for k, v in model.state_dict().items()}
    assert ours == {k: v.shape for k, v in hf.state_dict().items()}
    x = tokens()
    with torch.no_grad():
        diff = (model(x) - hf(x).logits).abs().max().item()
    assert diff < TOL


def test_installed_transformers_applies_yarn_to_full_layers_only(tmp_path):
    cfg = tiny_cfg(2, YARN)
    model = tiny_model(cfg)
    export_hf(model, tmp_path)
    hf = transformers.Olmo3ForCausalLM.from_pretrained(tmp_path).eval()
    emb = hf.model.rotary_emb
    plain, _ = rope.inv_freq(cfg.head_dim, cfg.rope_theta)
    yarn, mscale = rope.inv_freq(cfg.head_dim, cfg.rope_theta, YARN)
    assert torch.allclose(emb.sliding_attention_inv_freq, plain) and emb.sliding_attention_attention_scaling == 1.0
    assert torch.allclose(emb.full_attention_inv_freq, yarn) and emb.full_attention_attention_scaling == mscale
    assert not torch.allclose(plain, yarn)
    # YaRN really moves the logits at seq 40 > original 16, so the parity test with YaRN on is not vacuous.
    plain_model = tiny_model(tiny_cfg(2, None))
    x = tokens()
    with torch.no_grad():
        assert (plain_model(x) - model(x)).abs().max() > 1e-2


def test_hf_checkpoint_loads_with_the_same_logits_even_sharded(tmp_path):
    cfg = tiny_cfg(2, YARN)
    torch.manual_seed(3)
    hf = transformers.Olmo3ForCausalLM(to_hf_config(cfg)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    hf.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model = load_hf(tmp_path)
    assert model.cfg == cfg
    assert all(p.requires_grad and p.device.type == "cpu" for p in model.parameters())
    x = tokens(2)
    with torch.no_grad():
        assert (model(x) - hf(x).logits).abs().max().item() < TOL


def test_transformers_4_style_rope_scaling_means_full_layers_only():
    cfg = tiny_cfg(2, YARN)
    legacy = hf_config_dict(cfg)
    del legacy["rope_parameters"]
    legacy["rope_theta"] = cfg.rope_theta
    legacy["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "beta_fast": 32, "beta_slow": 1,
                              "original_max_position_embeddings": 16, "attention_factor": 1.1386294361119891}
    assert config_from_hf(legacy) == cfg
    hf_cfg = transformers.Olmo3Config(**{k: v for k, v in legacy.items() if k not in ("architectures", "dtype")})
    assert hf_cfg.rope_parameters["full_attention"]["rope_type"] == "yarn"
    assert hf_cfg.rope_parameters["sliding_attention"]["rope_type"] == "default"


def rewrite_config(d, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def test_load_errors_name_both_sides(tmp_path):
    export_hf(tiny_model(tiny_cfg()), tmp_path)
    rewrite_config(tmp_path, intermediate_size=80)
    with pytest.raises(HFFormatError) as e:
        load_hf(tmp_path)
    msg = str(e.value)
    assert "model.safetensors" in msg and "config.json" in msg and "(96, 64)" in msg and "(80, 64)" in msg

    rewrite_config(tmp_path, intermediate_size=96, tie_word_embeddings=True)
    with pytest.raises(HFFormatError, match="config.json: tie_word_embeddings is true"):
        load_hf(tmp_path)

    rewrite_config(tmp_path, tie_word_embeddings=False, layer_types=["sliding_attention"] * 5)
    with pytest.raises(HFFormatError, match="layer_types is .* where Olmo 3 has"):
        load_hf(tmp_path)

    rewrite_config(tmp_path, layer_types=None, num_hidden_layers=4)
    with pytest.raises(HFFormatError, match=r"unexpected \['model.layers.4"):
        load_hf(tmp_path)

    rewrite_config(tmp_path, num_hidden_layers=5, sliding_window=100)
    with pytest.raises(HFFormatError, match=r"config.json: .*sliding_window \(100\) is longer than max_seq_len"):
        load_hf(tmp_path)

    rewrite_config(tmp_path, model_type="llama")
    with pytest.raises(HFFormatError, match="model_type is 'llama'"):
        load_hf(tmp_path)
