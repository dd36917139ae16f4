"""OlmoRL on Ray rollout actors (one local Ray for the module): max_lag 0 through actors is the synchronous
algorithm, lag > 0 trains on real off-policy data within the bound (clip-higher and TIS act on it), and an actor
that dies is replaced while the step completes."""

from __future__ import annotations

import logging

import pytest
import torch
from kit import tiny_model_config, tiny_olmo

from olmoflow.post.actors import LocalPool, RayPool, cpu_state, ensure_ray
from olmoflow.post.config import RLVRConfig
from olmoflow.post.learner import learn
from olmoflow.post.olmorl import Rollouts

VOCAB, TARGET = 16, 5
PROMPTS = [{"ids": [1, 2 + i % 8, 3], "prompt": f"p{i}", "verifier": "toy"} for i in range(64)]
ENGINE = {"slots": 16, "max_len": 16, "temperature": 1.0, "top_p": 1.0, "eos_id": None, "device": "cpu"}


def toy_reward(item: dict, completion: list[int]) -> float:
    """Open the answer with token TARGET (a random init does so ~1/16 of the time)."""
    return float(completion[0] == TARGET)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    if ray.is_initialized():  # another module's Ray: this one declares (logical) GPUs for the cluster path
        ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 << 20)
    assert ensure_ray() is ray
    yield ray
    ray.shutdown()


def run(steps: int = 4, **knobs) -> tuple[list[tuple[int | None, dict]], dict, torch.nn.Module]:
    cfg = RLVRConfig(**{"steps": steps, "prompts_per_step": 6, "group_size": 4, "max_new_tokens": 2, "lr": 2e-2,
                        "micro_batch": 32, "max_sample_rounds": 3, "max_prompt_len": 8, "val_prompts": 4,
                        "engine_slots": 16, **knobs})
    model = tiny_olmo(VOCAB, seed=0)
    history: list[tuple[int | None, dict]] = []
    loop = learn(model, str, cfg, PROMPTS[8:], PROMPTS[:8], toy_reward, eos_id=-1, pad_id=0,
                 device=torch.device("cpu"), log_metrics=lambda m, s: history.append((s, m)),
                 log=logging.getLogger("test"))
    return history, loop, model


def test_max_lag_0_through_actors_is_the_synchronous_path() -> None:
    sync_history, sync_loop, sync_model = run(actors=0)
    history, loop, model = run(actors=1, max_lag=0)
    assert [s for s, _ in history] == [s for s, _ in sync_history]
    for (_, got), (_, want) in zip(history, sync_history):
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert got.get("lag_mean", 0.0) == 0.0
    assert loop["reward"] == sync_loop["reward"]  # the same samples: the same rewards, exactly
    for (k, a), b in zip(model.state_dict().items(), sync_model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert any(m.get("groups_trained", 0) > 0 for _, m in history)


def test_lag_trains_on_off_policy_data_within_the_bound() -> None:
    history, loop, _ = run(steps=5, actors=1, max_lag=2)
    steps = [m for s, m in history if "lag_mean" in m]
    assert len(steps) == 5
    assert all(m["lag_max"] <= 2 and m["stale_groups"] == 0 for m in steps)
    # step 2 was sampled wholly before the learner's first update: every token of it is off-policy
    off = [m for m in steps if m["lag_mean"] > 0 and m["tokens"] > 0]
    assert off and steps[1]["lag_mean"] > 0
    assert any(m["clip_fraction"] > 0 for m in off)  # clip-higher acts on the stale ratios
    assert any(abs(m["tis_weight"] - 1.0) > 1e-3 for m in off)
    assert loop["after"]["val_accuracy"] >= 0.0


def requests_through(pool, n_groups: int = 4, kill=None) -> tuple[dict, Rollouts]:
    items = iter(PROMPTS * 4)
    rollouts = Rollouts(pool, lambda k: [next(items) for _ in range(k)], lambda it: it["ids"], toy_reward,
                        lambda it: it["verifier"], group_size=4, max_new_tokens=6, n_groups=n_groups,
                        max_rounds=1, max_lag=0, seed=3)
    pool.push(cpu_state(tiny_olmo(VOCAB, seed=0)), 0)
    rollouts.open(0)
    if kill is not None:
        kill()
    step = rollouts.take(0)
    return {tuple(g.prompt): g.completions for g in step.batch.groups} | {"sampled": step.batch.sampled}, rollouts


def test_a_killed_actor_is_replaced_and_the_step_completes(local_ray) -> None:
    want, _ = requests_through(LocalPool("builtin", tiny_model_config(VOCAB), ENGINE))
    pool = RayPool(2, "builtin", tiny_model_config(VOCAB), ENGINE)
    got, rollouts = requests_through(pool, kill=lambda: local_ray.kill(pool.actors[0]))
    assert pool.replaced >= 1
    assert got["sampled"] == 4
    assert got == want  # the dead actor's requests ran again elsewhere with their own seeds: the same samples
    rollouts.close()
    pool.close()


def test_active_sampling_refills_zero_variance_groups_in_rounds() -> None:
    """Prompts whose second token is even always score 1 (one reward only: dropped); the others score by the
    sampled token. Dropped groups are refilled with fresh prompts, round after round, until enough teach."""
    def reward(item: dict, completion: list[int]) -> float:
        return 1.0 if item["ids"][1] % 2 == 0 else float(completion[0] % 2)

    drawn: list[dict] = []

    def draw(k: int) -> list[dict]:
        drawn.extend(PROMPTS[len(drawn):len(drawn) + k])
        return drawn[-k:]

    pool = LocalPool("builtin", tiny_model_config(VOCAB), ENGINE)
    pool.push(cpu_state(tiny_olmo(VOCAB, seed=0)), 0)
    rollouts = Rollouts(pool, draw, lambda it: it["ids"], reward, lambda it: it["verifier"], group_size=4,
                        max_new_tokens=2, n_groups=6, max_rounds=12, max_lag=0, seed=0)
    step = rollouts.take(0)
    b = step.batch
    assert len(b.groups) == 6 and all(g.item["ids"][1] % 2 == 1 for g in b.groups)
    assert b.zero_variance >= 3 and b.sampled == len(drawn) == len(b.groups) + b.zero_variance
    assert step.rounds >= 2 and step.zero_by_family["toy"] == b.zero_variance
    assert all(v == [0, 0] for g in b.groups for v in g.versions)


def test_on_a_ray_cluster_the_learner_is_an_actor_holding_a_gpu(local_ray) -> None:
    """A RayJob's driver (RAY_ADDRESS set) trains nothing: the learner is a GPU actor (the GPUs here are Ray's
    logical ones, the devices CPUs), it drives its rollout actor, and its metrics and weights come back."""
    import sys
    from types import SimpleNamespace

    from olmoflow.stages import rlvr

    # the learner actor's process cannot import this test module: ship toy_reward by value
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    cfg = RLVRConfig(steps=2, prompts_per_step=4, group_size=4, max_new_tokens=2, lr=2e-2, micro_batch=32,
                     max_sample_rounds=2, max_prompt_len=8, val_prompts=4, actors=1, max_lag=1)
    history: list = []
    model = tiny_olmo(VOCAB, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = (cfg, PROMPTS[8:], PROMPTS[:8], toy_reward)
    loop, state = rlvr.learn_on_cluster(SimpleNamespace(log_metrics=lambda m, s: history.append((s, m))), model,
                                        str, args, {"eos_id": -1, "pad_id": 0, "table_rows": 2})
    assert [s for s, m in history if "loss" in m] == [1, 2] and len(loop["samples_after"]) == 2
    assert any(not torch.equal(state[k], before[k]) for k in before)  # it trained, and sent the weights back
    too_many = RLVRConfig(**{**cfg.model_dump(), "actors": 2})
    with pytest.raises(ValueError, match=r"the Ray cluster has 2 GPUs; the learner and rlvr.actors=2 rollout actors "
                                         r"need 3 \(one each\)"):
        rlvr.learn_on_cluster(SimpleNamespace(), model, str, (too_many, *args[1:]), {})


def test_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match=r"rlvr.max_lag=1 needs rollout actors \(rlvr.actors >= 1\)"):
        RLVRConfig(actors=0, max_lag=1)
    with pytest.raises(ValueError, match="rlvr.engine=vllm runs in rollout actors"):
        RLVRConfig(actors=0, engine="vllm")
    with pytest.raises(ValueError):
        RLVRConfig(engine="tgi")
    with pytest.raises(ValueError):
        RLVRConfig(max_lag=-1)
