"""GRPO end to end on a toy task, plus the rollout bookkeeping: active sampling and sampler/learner alignment."""

from __future__ import annotations

import pytest
import torch
from kit import tiny_olmo

from olmoflow.post.grpo import policy_update, to_samples
from olmoflow.post.rollout import Group, active_sample, sample_groups
from olmoflow.train.optim import build_optimizer

VOCAB, TARGET = 16, 5
PROMPTS = [[1, 2 + i % 8, 3] for i in range(64)]


def toy_reward(prompt: list[int], completion: list[int]) -> float:
    """The policy must open its answer with token TARGET (a random init does so ~1/16 of the time)."""
    return float(completion[0] == TARGET)


def rl_run(steps: int, temperature: float = 1.0, lr: float = 3e-3, epochs: int = 1
           ) -> tuple[list[float], list[dict]]:
    model = tiny_olmo(VOCAB, seed=0)
    optimizer = build_optimizer(model, lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    cursor = [0]

    def draw(k: int) -> list[list[int]]:
        cursor[0] += k
        return [PROMPTS[(cursor[0] - k + j) % len(PROMPTS)] for j in range(k)]

    def sample(items: list[list[int]]) -> list[Group]:
        return sample_groups(model, items, lambda p: p, toy_reward, 8, 2, temperature, 1.0, None, generator)

    rewards, stats = [], []
    for _ in range(steps):
        batch = active_sample(draw, sample, n_groups=8, max_rounds=3)
        rewards.append(sum(batch.rewards) / len(batch.rewards))
        stats.append(policy_update(model, optimizer, to_samples(batch.groups), pad_id=0, micro_batch=16, epochs=epochs,
                                   clip_low=0.2, clip_high=0.28, tis_cap=2.0, temperature=temperature,
                                   grad_clip=1.0))
    return rewards, stats


def test_grpo_learns_a_verifiable_toy_task() -> None:
    rewards, _ = rl_run(steps=12)
    assert rewards[0] < 0.2
    assert sum(rewards[-3:]) / 3 > 0.6, rewards


def test_sampler_and_learner_logprobs_line_up() -> None:
    # Without top-p the sampler draws from the learner's own tempered distribution, so every token's importance
    # weight π_old / π_sampler is 1; a one-position misalignment of completion tokens would break this.
    _, stats = rl_run(steps=2, temperature=0.7)
    for s in stats:
        assert s["tis_weight"] == pytest.approx(1.0, abs=1e-4)
        assert s["clip_fraction"] == 0.0  # one epoch: the ratio is exactly 1


def test_later_epochs_move_the_ratio_until_it_clips() -> None:
    # Epochs after the first reuse the rollouts with π_old frozen, so a large step pushes ratios past the bounds.
    _, stats = rl_run(steps=1, lr=5e-2, epochs=4)
    assert 0.0 < stats[0]["clip_fraction"] < 0.75


def fake_groups(items: list[int]) -> list[Group]:
    """Prompt k earns rewards [1, 0] when k is even (variance) and [0, 0] when odd (dropped)."""
    return [Group([k], [[1], [2]], [[0.0], [0.0]], [float(k % 2 == 0), 0.0], k) for k in items]


def test_active_sampling_refills_dropped_groups_with_fresh_prompts() -> None:
    drawn: list[int] = []

    def draw(k: int) -> list[int]:
        new = list(range(len(drawn), len(drawn) + k))
        drawn.extend(new)
        return new

    batch = active_sample(draw, fake_groups, n_groups=4, max_rounds=10)
    assert [g.item for g in batch.groups] == [0, 2, 4, 6]
    assert drawn == [0, 1, 2, 3, 4, 5, 6]  # rounds of 4, 2, 1 fresh prompts: only the missing ones, never twice
    assert (batch.sampled, batch.zero_variance, len(batch.rewards)) == (7, 3, 14)


def test_active_sampling_gives_up_after_max_rounds() -> None:
    batch = active_sample(lambda k: [1] * k, fake_groups, n_groups=4, max_rounds=3)
    assert batch.groups == [] and batch.sampled == batch.zero_variance == 12
