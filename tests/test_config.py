"""Config: presets load and validate; every bad input is a one-line error naming the key."""

import json

import pytest

from olmoflow.config import CONFIG_DIR, ConfigError, load_config, stage_index
from olmoflow.model.config import ModelConfig


def test_presets_load():
    for name in ("smoke", "tiny", "olmo3-7b", "olmo3-32b"):
        cfg = load_config(name)
        assert cfg.model.n_heads % cfg.model.n_kv_heads == 0
    assert (CONFIG_DIR / "tiny.yaml").exists()


def test_cluster_presets_have_the_published_architecture():
    assert load_config("olmo3-7b").model == ModelConfig.olmo3_7b()
    m = load_config("olmo3-32b").model
    assert (m.d_model, m.n_layers, m.n_heads, m.n_kv_heads, m.mlp_hidden) == (5120, 64, 40, 8, 27648)
    assert m.rope_theta == 500_000 and m.sliding_window == 4096 and m.vocab_size == 100352


def test_override_parses_values():
    cfg = load_config("smoke", ["pretrain.lr=0.01", "long-context.average_last=2", "eval.base_tasks=[arc_easy]"])
    assert cfg.pretrain.lr == 0.01 and cfg.long_context.average_last == 2 and cfg.eval.base_tasks == ["arc_easy"]


@pytest.mark.parametrize("override,expected", [
    ("pretrain.lrr=1", "config error: pretrain.lrr: unknown key"),
    ("pretrain.lr=fast", "config error: pretrain.lr: Input should be a valid number"),
    ("model.n_kv_heads=3", "must be divisible by n_kv_heads (3)"),
    ("model.sliding_window=100000", "sliding_window (100000) is longer than max_seq_len"),
    ("pretrain.steps=-1", "config error: pretrain.steps: Input should be greater than 0"),
    ("bogus.x=1", "config error: bogus: unknown key"),
    ("pretrain.steps.x=1", "config error: pretrain.steps: is not a section"),
    ("novalue", "expected key=value"),
])
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", [override])
    msg = str(e.value)
    assert expected in msg and "\n" not in msg


def test_unknown_preset_and_stage():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="--from: unknown stage 'sftt'"):
        stage_index("sftt", "--from")


def test_inline_json_round_trip():
    cfg = load_config("smoke")
    again = load_config(json.dumps(cfg.model_dump(mode="json")))
    assert again == cfg


def test_stage_config_is_what_the_stage_depends_on():
    cfg = load_config("smoke")
    assert set(cfg.stage_config("pretrain")) == {"model", "pretrain"}
    assert set(cfg.stage_config("sft")) == {"sft"}


def test_how_a_stage_runs_is_not_what_it_makes():
    base = load_config("smoke")
    how = load_config("smoke", ["pretrain.compile=true", "pretrain.peak_tflops=989", "model.attn_backend=flex",
                                "midtrain.compile=false", "long_context.peak_tflops=312", "curate.ray.enabled=true"])
    for stage in ("curate", "pretrain", "midtrain", "long-context"):
        assert how.stage_config(stage) == base.stage_config(stage), stage
    assert load_config("smoke", ["pretrain.lr=0.0123"]).stage_config("pretrain") != base.stage_config("pretrain")
