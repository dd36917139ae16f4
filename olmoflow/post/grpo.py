"""The OlmoRL policy-gradient update (GRPO without its KL and std terms).

- advantage = reward - mean reward of the prompt's group (not divided by the group's std, which would
  up-weight prompts that are nearly solved or nearly hopeless);
- token-level loss: every completion token in the batch counts once, so the sum is divided by the batch's
  total token count (long completions are not down-weighted as in per-sequence averaging);
- PPO's clipped ratio with clip-higher, ratio in [1 - clip_low, 1 + clip_high], so rare tokens with positive
  advantage can still grow (entropy does not collapse);
- truncated importance sampling: each token's loss is weighted by min(π_learner_old / π_sampler, tis_cap),
  correcting for the sampler (vLLM in Olmo 3; top-p here) not being exactly the learner;
- off-policy tokens (OlmoRL's in-flight updates: a token whose policy version is behind the learner's): π_old is
  the policy that generated the token, whose probability only the actor knows, so the ratio is taken against the
  actor's behaviour log-probability and clip-higher bounds how far the step moves from it; the ratio is truncated
  at tis_cap as well (for a negative advantage the unclipped branch is otherwise unbounded). On-policy tokens
  (max_lag 0) get exactly the synchronous update. `tis_weight` reports min(π_learner / π_behaviour, tis_cap) at the
  step's start over every token: 1 on-policy (up to the sampler's numerics), the staleness of the data otherwise;
- no KL penalty and no reference model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from olmoflow.post.data import micro_batches, pad_batch
from olmoflow.post.logprobs import token_logprobs
from olmoflow.post.rollout import Group


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """[groups, group_size] rewards -> advantages, centered per group."""
    return rewards - rewards.mean(dim=-1, keepdim=True)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, sampler_logp: torch.Tensor, adv: torch.Tensor,
              mask: torch.Tensor, clip_low: float, clip_high: float, tis_cap: float, n_tokens: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss summed over masked tokens / n_tokens, number of tokens where clipping bound the objective).

    logp, old_logp, sampler_logp, mask: [B, T]; adv: [B] (one advantage per completion)."""
    ratio = torch.exp(logp - old_logp).clamp(max=tis_cap)
    tis = torch.clamp(torch.exp(old_logp - sampler_logp), max=tis_cap)
    a = adv.unsqueeze(-1)
    unclipped = -a * ratio
    clipped = -a * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped) * tis
    n_clipped = ((clipped > unclipped).float() * mask).sum()
    return (per_token * mask).sum() / n_tokens, n_clipped


@dataclass
class Sample:
    ids: list[int]
    """Prompt then completion."""
    prompt_len: int
    sampler_logprobs: list[float]
    advantage: float
    versions: list[int] | None = None
    """The policy version of each completion token; None = the learner's current one."""


def to_samples(groups: list[Group]) -> list[Sample]:
    out = []
    for g in groups:
        adv = group_advantages(torch.tensor([g.rewards], dtype=torch.float64))[0].tolist()
        versions = g.versions or [None] * len(g.completions)
        for comp, lp, a, v in zip(g.completions, g.sampler_logprobs, adv, versions):
            if comp:
                out.append(Sample(g.prompt + comp, len(g.prompt), lp, a, v))
    return out


def _tensors(samples: list[Sample], pad_id: int, version: int | None) -> tuple[torch.Tensor, ...]:
    inputs, targets, mask = pad_batch([s.ids for s in samples],
                                      [[0] * s.prompt_len + [1] * (len(s.ids) - s.prompt_len) for s in samples],
                                      pad_id)
    sampler = torch.zeros_like(mask)
    lag = torch.zeros_like(mask)
    for b, s in enumerate(samples):
        # The first completion token is predicted at position prompt_len - 1 (targets are shifted by one).
        span = slice(s.prompt_len - 1, s.prompt_len - 1 + len(s.sampler_logprobs))
        sampler[b, span] = torch.tensor(s.sampler_logprobs)
        if version is not None and s.versions is not None:
            lag[b, span] = version - torch.tensor(s.versions, dtype=lag.dtype)
    adv = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
    return inputs, targets, mask, sampler, adv, lag


def policy_update(model: nn.Module, optimizer: torch.optim.Optimizer, samples: list[Sample], *, pad_id: int,
                  micro_batch: int, epochs: int, clip_low: float, clip_high: float, tis_cap: float,
                  temperature: float, grad_clip: float, version: int | None = None) -> dict[str, float]:
    """`epochs` optimizer steps on one batch of rollouts; on-policy tokens' first ratio is 1 (π_old is this policy),
    an off-policy token's π_old is its behaviour policy (see the module docstring). `version` is the learner's
    policy version, against which samples' per-token versions measure lag (`lag_mean`, `lag_max`).
    No samples (every group had one reward only) means no step."""
    if not samples:
        return {"loss": 0.0, "clip_fraction": 0.0, "tis_weight": 1.0, "grad_norm": 0.0, "tokens": 0.0,
                "lag_mean": 0.0, "lag_max": 0.0}
    device = next(model.parameters()).device
    chunks = [tuple(t.to(device) for t in _tensors(c, pad_id, version))
              for c in micro_batches(samples, micro_batch, length=lambda s: len(s.ids))]
    n_tokens = float(sum(c[2].sum() for c in chunks))
    old: list[torch.Tensor] = []
    current: list[torch.Tensor] = []
    loss_total = clipped_total = 0.0
    for epoch in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        for k, (inputs, targets, mask, sampler, adv, lag) in enumerate(chunks):
            logp = token_logprobs(model, inputs, targets, mask, temperature)
            if epoch == 0:
                # No step has been taken yet, so this policy is π_old of on-policy tokens: no separate no-grad pass.
                # An off-policy token's π_old is the older policy that sampled it: the actor's log-prob.
                current.append(logp.detach())
                old.append(torch.where(lag > 0, sampler, logp.detach()))
            loss, n_clipped = grpo_loss(logp, old[k], sampler, adv, mask, clip_low, clip_high, tis_cap, n_tokens)
            loss.backward()
            loss_total += loss.item()
            clipped_total += n_clipped.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    tis_weight = sum(float((torch.clamp(torch.exp(o - c[3]), max=tis_cap) * c[2]).sum())
                     for o, c in zip(current, chunks))
    lag_sum = sum(float((c[5] * c[2]).sum()) for c in chunks)
    lag_max = max(float((c[5] * c[2]).max()) for c in chunks)
    return {"loss": loss_total / epochs, "clip_fraction": clipped_total / (epochs * n_tokens),
            "tis_weight": tis_weight / n_tokens, "grad_norm": float(grad_norm), "tokens": n_tokens,
            "lag_mean": lag_sum / n_tokens, "lag_max": lag_max}
