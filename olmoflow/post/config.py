"""Knobs of the post-training stages: SFT, DPO and RLVR (Olmo 3's Dolci recipe at any scale)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from olmoflow._base import Section


class PostTrainConfig(Section):
    """What every post-training stage has: `steps` optimizer steps at `lr` in micro-batches, clipped, with in-stage
    checkpoints and a seed. A stage restates a default only where its own differs."""

    steps: int = Field(100, gt=0)
    micro_batch: int = Field(4, gt=0)
    lr: float = Field(1e-6, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward instead of keeping them (a third more compute): what lets a
    7B policy, its gradients and AdamW fit one GPU at these sequence lengths."""
    checkpoint_every: int = Field(50, gt=0)
    log_every: int = Field(5, gt=0)
    seed: int = 0


class SFTConfig(PostTrainConfig):
    steps: int = Field(500, gt=0)
    seq_len: int = Field(4096, gt=0)
    batch_size: int = Field(32, gt=0)
    """Conversations per optimizer step."""
    lr: float = Field(5e-5, ge=0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_examples: int = Field(0, ge=0)
    """0 = all conversations in the dataset."""
    val_examples: int = Field(64, gt=0)
    """Held-out conversations (a content-hash split of post/sft.jsonl) for the loss before and after."""
    pack: bool = True
    """Pack a step's conversations into rows of seq_len positions, each its own document (intra-document masking:
    no token sees another conversation, positions restart at 0), `micro_batch` rows per forward; false: one
    conversation per right-padded row. Same loss and gradient either way, up to float rounding."""
    heldout_items: int = Field(256, ge=0)
    """Held-out rule prompts (post/heldout.jsonl, never trained on) answered greedily before and after:
    format_rate_before / _after and heldout_reward_before / _after; 0 = none (so is a dataset without the file)."""
    heldout_max_new_tokens: int = Field(24, gt=0)
    """Reply tokens for those answers ("The answer is 52." is ~8; a Think reply needs more)."""
    early_checkpoint: float = Field(0.0, ge=0, lt=1)
    """Also keep the model as it was after this fraction of the steps, in the artifact's early/ folder: a weaker
    model that already writes the answer format, for DPO's rejected replies (dpo.delta_weak: early); 0 = none."""
    checkpoint_every: int = Field(100, gt=0)
    log_every: int = Field(10, gt=0)


class DPOConfig(PostTrainConfig):
    steps: int = Field(200, gt=0)
    seq_len: int = Field(2048, gt=0)
    batch_size: int = Field(16, gt=0)
    """Preference pairs per optimizer step."""
    warmup_steps: int = Field(20, ge=0)
    beta: float = Field(5.0, gt=0)
    """Olmo 3 uses length-normalized DPO, whose beta is on per-token log-ratios, hence large."""
    length_normalized: bool = True
    max_pairs: int = Field(0, ge=0)
    """0 = all pairs in the dataset."""
    val_pairs: int = Field(64, gt=0)
    """Held-out pairs (a content-hash split of post/dpo.jsonl) for preference accuracy before and after."""
    val_pairs_hhh: int = Field(0, ge=0)
    """Held-out HHH human pairs, split apart from the others (their accuracy is heldout_pref_accuracy_hhh);
    0 = the HHH pairs are split with the rest by val_pairs."""
    delta_prompts: int = Field(0, ge=0)
    """Verifiable prompts of post/dpo_prompts.jsonl to sample delta-learning pairs on (olmoflow/post/delta.py),
    added to the training pairs; 0 = none (the curated pairs alone)."""
    delta_heldout: int = Field(256, ge=0)
    """Held-out prompts of post/heldout.jsonl (never trained on) made into pairs the same way:
    heldout_pref_accuracy, before and after (a tie counts 0.5). Only with delta_prompts."""
    delta_weak: Literal["parent", "early", "self"] = "parent"
    """Whose incorrect sample is rejected: "parent", the checkpoint the input checkpoint was trained from (in the
    flow, the long-context model SFT started from); "early", the input's early/ model (sft.early_checkpoint: SFT
    part-way, which writes the format but answers worse), else its parent; "self", the input model's own. Where
    there is no such model, the input's own samples."""
    delta_samples: int = Field(4, gt=0)
    """Samples per prompt from each model."""
    delta_max_new_tokens: int = Field(24, gt=0)
    delta_temperature: float = Field(1.0, gt=0)


class RLVRConfig(PostTrainConfig):
    prompts_per_step: int = Field(16, gt=0)
    group_size: int = Field(8, gt=1)
    """Completions sampled per prompt (GRPO group)."""
    max_new_tokens: int = Field(512, gt=0)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    clip_low: float = Field(0.2, ge=0)
    clip_high: float = Field(0.272, ge=0)
    """Clip-higher: the upper ratio bound is looser than the lower one."""
    tis_cap: float = Field(2.0, gt=0)
    """Truncated importance sampling cap between the sampler's and the learner's probabilities."""
    ppo_epochs: int = Field(1, gt=0)
    """Optimizer steps per batch of rollouts; after the first, the clipped ratio starts to bind."""
    micro_batch: int = Field(16, gt=0)
    """Completions per learner forward pass."""
    max_sample_rounds: int = Field(4, gt=0)
    """Active sampling: rounds of fresh prompts to refill groups dropped for zero reward variance."""
    max_prompt_len: int = Field(512, gt=0)
    """Prompts longer than this (in tokens, with the template) are skipped."""
    val_prompts: int = Field(64, gt=0)
    """Held-out RL prompts (a content-hash split of post/rl.jsonl), solved greedily before and after."""
    checkpoint_every: int = Field(20, gt=0)
    log_every: int = Field(1, gt=0)
    actors: int = Field(1, ge=0)
    """Rollout actors (Ray actors: a local Ray, or the cluster's under a RayJob), each an engine generating with
    continuous batching while the learner trains; 0 = generate in the learner's process (the synchronous path)."""
    max_lag: int = Field(0, ge=0)
    """Staleness bound: the learner never trains on a sample with a token more than max_lag policy versions behind
    its own; actors run up to max_lag steps ahead and take new weights in flight. 0 = synchronous (sample with the
    current weights, then learn): deterministic, so a killed run resumes to the same weights."""
    engine: Literal["builtin", "vllm"] = "builtin"
    """The actors' generation engine: the built-in continuous-batching engine, or vLLM (a GPU cluster's)."""
    engine_slots: int = Field(64, gt=0)
    """Sequences an engine decodes at once (continuous batching: a finished one's slot takes the next prompt)."""
    template: Literal["chat", "plain"] = "chat"
    """The prompt template (olmoflow/post/rl_template.py): "chat", Olmo 3's chat template (RLVR after SFT / DPO);
    "plain", RL-Zero's "Question: {prompt}\nAnswer:" for a base model, no chat tokens, the answer its first line
    (generation stops at a newline). A plain-template checkpoint is evaluated and exported as a base model."""

    @model_validator(mode="after")
    def _check(self) -> RLVRConfig:
        if self.clip_high < self.clip_low:
            raise ValueError(f"clip_high ({self.clip_high}) is below clip_low ({self.clip_low})")
        if self.actors == 0 and self.max_lag > 0:
            raise ValueError(f"rlvr.max_lag={self.max_lag} needs rollout actors (rlvr.actors >= 1): without them "
                             "sampling and learning cannot overlap")
        if self.actors == 0 and self.engine != "builtin":
            raise ValueError(f"rlvr.engine={self.engine} runs in rollout actors: set rlvr.actors >= 1")
        return self
