"""The flow's typed config: one section per stage, presets in configs/*.yaml, `--set key=value` overrides.

Every error is a one-line ConfigError naming the key, raised before any compute.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from olmoflow._base import Section
from olmoflow.artifacts import home
from olmoflow.data.config import CurateConfig
from olmoflow.evals.config import EvalConfig
from olmoflow.evals.modelflow_config import ModelFlowConfig
from olmoflow.model.config import ModelConfig
from olmoflow.post.config import DPOConfig, RLVRConfig, SFTConfig
from olmoflow.registry import CHECKPOINT_STAGES, REGISTRY, STAGES
from olmoflow.registry import stage as stage_entry
from olmoflow.trace.config import TraceIndexConfig
from olmoflow.train.config import LongContextConfig, MidtrainConfig, TrainConfig

CONFIG_DIR = Path(os.environ.get("OLMOFLOW_CONFIG_DIR", Path(__file__).resolve().parent.parent / "configs"))
SECTIONS = {s.name: s.section for s in REGISTRY}
"""Each stage's config section by the stage's name (they differ for long-context: long_context)."""


class ConfigError(ValueError):
    """A bad config: the message is one line and names the key."""


class FlowSettings(Section):
    name: str = Field("olmo3", pattern=r"^[a-z0-9][a-z0-9-]*$")
    """The flow's name: the MLflow experiment and the top folder in the store."""
    store: str = Field(default_factory=lambda: os.environ.get("OLMOFLOW_STORE") or str(home() / "store"))
    """Artifact store: a local path or s3://bucket/prefix. Default: $OLMOFLOW_STORE (the chart sets it in every
    pod, so a one-click cluster run of any preset shares one store), else store/ in $OLMOFLOW_HOME (.olmoflow)."""
    threads: int = Field(0, ge=0)
    """torch threads per process; 0 = all cores."""
    skip: tuple[str, ...] = ()
    """Checkpoint stages this flow leaves out (Olmo 3 RL-Zero: [sft, dpo], RLVR straight from the base model).
    A left-out stage and its eval-{stage} do not run; the next stage takes the checkpoint of the last stage that
    ran (the left-out task hands on the checkpoint it was given, olmoflow/flow/plan.py). Not in any fingerprint:
    it changes a stage's output only through its input checkpoint, whose fingerprint is there already."""

    @field_validator("skip")
    @classmethod
    def _check_skip(cls, skip: tuple[str, ...]) -> tuple[str, ...]:
        for name in skip:
            if name not in STAGES:
                raise ValueError(f"unknown stage {name!r} (stages it may leave out: "
                                 f"{', '.join(CHECKPOINT_STAGES[1:])})")
            if name not in CHECKPOINT_STAGES:
                raise ValueError(f"{name} makes no checkpoint; only checkpoint stages can be left out "
                                 f"({', '.join(CHECKPOINT_STAGES[1:])})")
            if name == CHECKPOINT_STAGES[0]:
                raise ValueError(f"{name} is the first checkpoint stage: every later stage needs its checkpoint")
        return tuple(dict.fromkeys(skip))


class FlowConfig(Section):
    flow: FlowSettings = Field(default_factory=FlowSettings)
    model: ModelConfig = Field(default_factory=ModelConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    trace_index: TraceIndexConfig = Field(default_factory=TraceIndexConfig)
    pretrain: TrainConfig = Field(default_factory=TrainConfig)
    midtrain: MidtrainConfig = Field(default_factory=MidtrainConfig)
    long_context: LongContextConfig = Field(default_factory=LongContextConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    rlvr: RLVRConfig = Field(default_factory=RLVRConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    model_flow: ModelFlowConfig = Field(default_factory=ModelFlowConfig)

    @model_validator(mode="after")
    def _check(self) -> FlowConfig:
        m = self.model
        for key in ("pretrain", "midtrain"):
            seq = getattr(self, key).seq_len
            if seq > m.max_seq_len:
                raise ValueError(f"{key}.seq_len ({seq}) is longer than model.max_seq_len ({m.max_seq_len})")
        if m.sliding_window > self.pretrain.seq_len:
            raise ValueError(
                f"model.sliding_window ({m.sliding_window}) is longer than pretrain.seq_len ({self.pretrain.seq_len})")
        if self.curate.tokenizer.path is None and self.curate.tokenizer.vocab_size > m.vocab_size:
            raise ValueError(
                f"curate.tokenizer.vocab_size ({self.curate.tokenizer.vocab_size}) does not fit "
                f"model.vocab_size ({m.vocab_size})")
        return self

    def stage_config(self, stage: str) -> dict[str, Any]:
        """The part of the config that determines a stage's output; it goes into the stage's fingerprint."""
        sections = stage_entry(stage).sections
        # where curate runs (in-process or Ray), which attention kernel computes the same function, whether blocks
        # are compiled and MFU's denominator never change what a stage writes (beyond rounding)
        how = {"compile", "peak_tflops"}
        excluded = {"curate": {"ray"}, "model": {"attn_backend"}, "pretrain": how, "midtrain": how,
                    "long_context": how}
        return {s: getattr(self, s).model_dump(mode="json", exclude=excluded.get(s)) for s in sections}


def stage_index(stage: str, key: str = "stage") -> int:
    """Position of a stage in the flow; an unknown name is a ConfigError naming `key`."""
    if stage not in STAGES:
        raise ConfigError(f"config error: {key}: unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    return STAGES.index(stage)


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"config error: config file {name} does not exist")
        return path
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))
        raise ConfigError(f"config error: unknown preset {name!r} (presets: {', '.join(known)})")
    return path


def _read_preset(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's dict, with its `base:` chain merged underneath it."""
    path = preset_path(name)
    if str(path) in seen:
        raise ConfigError(f"config error: base: presets form a cycle through {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config error: {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path}: the top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    return _merge(_read_preset(str(base), seen + (str(path),)), data)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_override(data: dict, item: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"config error: --set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    parts[0] = SECTIONS.get(parts[0], parts[0])  # a stage's name for its section: long-context.lr = long_context.lr
    key = ".".join(parts)
    if not all(parts):
        raise ConfigError(f"config error: --set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node = data
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"config error: {'.'.join(parts[:i + 1])}: is not a section, cannot set {key}")
        node = nxt
    node[parts[-1]] = value


def _format_error(e: ValidationError) -> str:
    err = e.errors()[0]
    # a key is printed as typed unless that would hide it (empty) or break the line (a control character)
    loc = ".".join(str(p) if str(p) and str(p).isprintable() else repr(str(p)) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and not isinstance(err["input"], (dict, list)) and err["type"] != "value_error":
        msg += f" (got {err['input']!r})"
    return f"config error: {loc}: {msg}" if loc else f"config error: {msg}"


def from_dict(data: dict[str, Any]) -> FlowConfig:
    try:
        return FlowConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e)) from None


def load_config(name_or_path: str = "tiny", overrides: list[str] | tuple[str, ...] = ()) -> FlowConfig:
    """A preset name (configs/NAME.yaml), a YAML path, or inline JSON; then overrides; then validation."""
    text = name_or_path.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config error: --config: inline JSON is not valid ({e.msg} at line {e.lineno} "
                              f"column {e.colno})") from None
    else:
        data = _read_preset(text)
    for item in overrides:
        apply_override(data, item)
    return from_dict(data)


def to_json(cfg: FlowConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
