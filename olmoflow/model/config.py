"""Architecture of the Olmo 3 dense decoder. Defaults are Olmo 3 7B; presets derive from them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from olmoflow._base import Section


class YarnConfig(Section):
    """YaRN RoPE scaling, applied to full-attention layers only (as Olmo 3 and vLLM do)."""

    factor: float = Field(8.0, gt=1.0)
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    original_max_seq_len: int = Field(8192, gt=0)
    """The context the model was pretrained with; positions beyond it are interpolated."""


class ModelConfig(Section):
    d_model: int = Field(4096, gt=0)
    n_layers: int = Field(32, gt=0)
    n_heads: int = Field(32, gt=0)
    n_kv_heads: int = Field(32, gt=0)
    """== n_heads is MHA (7B); fewer is GQA (32B uses 8)."""
    head_dim: int = Field(128, gt=0)
    mlp_hidden: int = Field(11008, gt=0)
    """SwiGLU hidden size."""
    vocab_size: int = Field(100352, gt=0)
    """Embedding rows: the tokenizer's vocabulary padded up (dolma2: 100,278 -> 100,352)."""
    max_seq_len: int = Field(8192, gt=0)
    sliding_window: int = Field(4096, gt=0)
    """Window of the sliding-attention layers (3 of every 4; layer i is full when (i+1) % 4 == 0, and the last)."""
    rope_theta: float = Field(500_000.0, gt=0)
    norm_eps: float = Field(1e-6, gt=0)
    init_std: float = Field(0.02, gt=0)
    yarn: YarnConfig | None = None
    attn_backend: Literal["auto", "sdpa", "flex"] = "auto"
    """Attention kernel, same numbers either way: auto = flex (compiled flex_attention) on CUDA when training or
    scoring without a KV cache over packed documents or past the window, SDPA otherwise (attention.py says why);
    KV-cache generation is always SDPA. Not architecture: HF export leaves it out, so a loaded checkpoint has
    "auto"."""

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if self.sliding_window > self.max_seq_len:
            raise ValueError(
                f"sliding_window ({self.sliding_window}) is longer than max_seq_len ({self.max_seq_len})")
        return self

    def layer_is_full(self, i: int) -> bool:
        """Olmo 3's layout: every 4th layer, and always the last, attends to the whole context."""
        return (i + 1) % 4 == 0 or i == self.n_layers - 1

    @classmethod
    def olmo3_7b(cls) -> ModelConfig:
        return cls()

    @classmethod
    def olmo3_32b(cls) -> ModelConfig:
        return cls(d_model=5120, n_layers=64, n_heads=40, n_kv_heads=8, mlp_hidden=27648)
