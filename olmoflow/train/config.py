"""Knobs of one training run (pretrain, midtrain, long-context). TrainConfig's defaults are Olmo 3 7B pretraining;
midtraining and long-context extension change a few and add their own."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from olmoflow._base import Section
from olmoflow.model.config import YarnConfig


class TrainConfig(Section):
    steps: int = Field(100_000, gt=0)
    """Optimizer steps."""
    seq_len: int = Field(8192, gt=0)
    batch_tokens: int = Field(4 * 1024 * 1024, gt=0)
    """Global batch in tokens; micro-batches are accumulated up to it."""
    micro_batch: int = Field(1, gt=0)
    """Sequences per forward pass on one rank."""
    lr: float = Field(3e-4, ge=0)
    """Peak learning rate."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(2000, ge=0)
    final_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Cosine decays to lr * final_lr_ratio; linear decays to 0."""
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)
    """Not applied to embeddings and norms."""
    grad_clip: float = Field(1.0, gt=0)
    z_loss: float = Field(1e-5, ge=0)
    skip_sigma: float = Field(6.0, gt=0)
    """Skip a step whose loss or grad norm exceeds the running mean by more than this many std."""
    skip_window: int = Field(128, gt=1)
    checkpoint_every: int = Field(100, gt=0)
    """In-stage checkpoint interval (steps), for resuming a killed stage."""
    log_every: int = Field(10, gt=0)
    activation_checkpointing: bool = False
    compile: bool | Literal["auto"] = "auto"
    """torch.compile every block (Olmo3.compile_blocks); auto = on CUDA. Measured on an H200 (~1.5B, seq 4096,
    bf16): 1.33x tokens/s (57.5% MFU) for ~10 s of compiling; on CPU at tiny scale ~8% for 15-25 s, so there it
    pays off only after a few hundred steps. Not part of the fingerprint: the same numbers to rounding."""
    peak_tflops: float | None = Field(None, gt=0)
    """MFU's denominator per rank, TFLOP/s; None = the GPU's dense bf16 peak by name (H100/H200 989, A100 312;
    another GPU: a measured bf16 matmul), on CPU a measured fp32 matmul."""
    intra_doc_mask: bool = True
    """Packed documents never attend to (or predict) one another (Olmo 3)."""
    val_tokens: int = Field(1 << 20, ge=0)
    """Held-out tokens scored for val_loss at the end of the stage; 0 = every held-out document."""
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.batch_tokens % (self.seq_len * self.micro_batch):
            raise ValueError(
                f"batch_tokens ({self.batch_tokens}) must be a multiple of seq_len * micro_batch "
                f"({self.seq_len} * {self.micro_batch})")
        if self.warmup_steps > self.steps and self.schedule != "constant":
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps})")
        return self

    @property
    def grad_accum(self) -> int:
        return self.batch_tokens // (self.seq_len * self.micro_batch)


class MidtrainConfig(TrainConfig):
    schedule: str = "linear"
    warmup_steps: int = 0
    mix: dict[str, float] = {}
    """Target token proportion per domain (math/code/QA up-weighted); empty = curate's midtraining mix as is."""
    soup_seeds: list[int] = []
    """Train one run per seed and average their weights (Olmo 3 32B souped two); empty = one run."""


class LongContextConfig(TrainConfig):
    schedule: str = "linear"
    warmup_steps: int = 200
    seq_len: int = 65536
    yarn: YarnConfig | None = YarnConfig()
    long_fraction: float = Field(0.34, ge=0, le=1)
    """Share of tokens from long documents; the rest is midtraining data."""
    compress_drop: tuple[float, float] = (0.2, 0.2)
    """Drop this fraction of the most and of the least gzip-compressible long documents."""
    average_last: int = Field(0, ge=0)
    """Average the weights of the last N in-stage checkpoints (Olmo 3 32B used 3); 0 = none."""
