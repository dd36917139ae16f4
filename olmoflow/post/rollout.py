"""Rollouts for GRPO: sample a group of completions per prompt, score them, and keep only groups that teach
something. A group whose completions all earn the same reward has zero advantage everywhere, so OlmoRL drops it
and refills the batch with fresh prompts (active sampling), up to a bounded number of rounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from olmoflow.model import generate
from olmoflow.train.world import autocast


@dataclass
class Group:
    """One prompt's completions, the sampler's log-probability of each completion token, and their rewards."""

    prompt: list[int]
    completions: list[list[int]]
    sampler_logprobs: list[list[float]]
    rewards: list[float]
    item: Any = None
    """The dataset row the prompt came from."""
    versions: list[list[int]] | None = None
    """The policy version that produced each completion token (rollout actors); None = the learner's current one."""

    @property
    def zero_variance(self) -> bool:
        return max(self.rewards) == min(self.rewards)


def sample_groups(model: nn.Module, items: list[Any], prompt_of: Callable[[Any], list[int]],
                  reward: Callable[[Any, list[int]], float], group_size: int, max_new_tokens: int,
                  temperature: float, top_p: float, eos_id: int | None, generator: torch.Generator
                  ) -> list[Group]:
    """`group_size` completions for each item, all in one batched generate call."""
    prompts = [prompt_of(it) for it in items]
    was_training = model.training
    model.eval()
    with autocast(next(model.parameters()).device):
        tokens, logprobs = generate(model, [p for p in prompts for _ in range(group_size)], max_new_tokens,
                                    temperature=temperature, top_p=top_p, eos_id=eos_id, generator=generator)
    model.train(was_training)
    groups = []
    for i, (it, p) in enumerate(zip(items, prompts)):
        span = slice(i * group_size, (i + 1) * group_size)
        comps = [list(c) for c in tokens[span]]
        groups.append(Group(p, comps, [list(lp) for lp in logprobs[span]], [reward(it, c) for c in comps], it))
    return groups


@dataclass
class Batch:
    groups: list[Group]
    """Groups with non-zero reward variance, at most the number asked for."""
    sampled: int
    """Groups sampled in all rounds."""
    zero_variance: int
    """Of those, how many were dropped for having one reward only."""
    rewards: list[float]
    """Rewards of every sampled completion, kept or not: the honest mean reward of the policy."""
    lengths: list[int]
    """Tokens of every sampled completion, kept or not."""


def active_sample(draw: Callable[[int], list[Any]], sample: Callable[[list[Any]], list[Group]],
                  n_groups: int, max_rounds: int) -> Batch:
    """Sample groups for `draw(k)`'s fresh prompts until `n_groups` have reward variance, or `max_rounds` pass."""
    batch = Batch([], 0, 0, [], [])
    for _ in range(max_rounds):
        for g in sample(draw(n_groups - len(batch.groups))):
            batch.sampled += 1
            batch.rewards += g.rewards
            batch.lengths += [len(c) for c in g.completions]
            if g.zero_variance:
                batch.zero_variance += 1
            else:
                batch.groups.append(g)
        if len(batch.groups) >= n_groups:
            break
    return batch
