"""The Olmo 3 dense decoder (olmo3.py), its masks and RoPE, its fused training kernels (lm_loss.py, fused.py),
KV-cache generation, HF import/export, FLOPs.

`Olmo3` and `generate` load lazily: `olmoflow.config` imports this package for ModelConfig, and a config check
(or a cached stage) should not pay for importing torch.
"""

from typing import Any

from olmoflow.model.config import ModelConfig, YarnConfig

__all__ = ["ModelConfig", "Olmo3", "YarnConfig", "generate"]


def __getattr__(name: str) -> Any:
    if name == "Olmo3":
        from olmoflow.model.olmo3 import Olmo3
        return Olmo3
    if name == "generate":
        from olmoflow.model.generation import generate
        return generate
    raise AttributeError(f"module 'olmoflow.model' has no attribute {name!r}")
