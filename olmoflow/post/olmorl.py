"""OlmoRL's rollout side of the learner: prompts of each step go to the rollout pool (olmoflow/post/actors.py) ahead
of time, finished samples come back as GRPO groups, zero-variance groups are refilled with fresh prompts (active
sampling), and no step trains on a sample staler than `max_lag`.

Versions: the learner's policy version is its step index (the weights after `t` updates are version `t`, pushed
to the actors as soon as they exist). Step t's prompts are submitted with `min_version = t - max_lag`, so an
engine admits them only once it holds weights at least that new, and every token of a sample trained at step t is
at most `max_lag` versions old. The learner opens steps up to `t + max_lag` while it trains step t, which is what
lets the actors keep generating (in flight) instead of waiting. With `max_lag: 0` only the current step is ever
open and its prompts wait for the current weights: sample, then learn, exactly the synchronous algorithm.

Active sampling is per step and in rounds, as in olmoflow/post/rollout.py's `active_sample`: a step's first round
draws `n_groups` prompts; when every group of a round is back and fewer than `n_groups` have reward variance, the
next round draws as many fresh prompts as are missing, up to `max_rounds` rounds.

Every request gets a seed from (seed, its request id), and ids follow the draw order, so the synchronous paths
(in-process or through actors at max_lag 0) draw the same samples from the same weights.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from olmoflow.post.engine import Finished, Request
from olmoflow.post.rollout import Batch, Group

STALL_S = 600.0
"""A step that gets no sample for this long fails with a message (every actor wedged, not merely slow)."""


@dataclass
class _Prompt:
    item: Any
    prompt: list[int]
    ids: list[int]
    done: dict[int, Finished] = field(default_factory=dict)


@dataclass
class _Step:
    batch: Batch = field(default_factory=lambda: Batch([], 0, 0, [], []))
    open: dict[int, _Prompt] = field(default_factory=dict)
    """Prompts of the current round still waiting for samples, by their first request id."""
    rounds: int = 0
    scored: list[tuple[str, float]] = field(default_factory=list)
    """(family, reward) of every completion sampled for the step."""
    stale: int = 0
    """Groups dropped as staler than max_lag (the engines' min_version makes this 0; the learner checks anyway)."""
    sampled_by_family: Counter[str] = field(default_factory=Counter)
    zero_by_family: Counter[str] = field(default_factory=Counter)


class Rollouts:
    """Steps' groups from a rollout pool; see the module docstring."""

    def __init__(self, pool: Any, draw: Callable[[int], list[Any]], prompt_of: Callable[[Any], list[int]],
                 reward: Callable[[Any, list[int]], float], family_of: Callable[[Any], str], *, group_size: int,
                 max_new_tokens: int, n_groups: int, max_rounds: int, max_lag: int, seed: int, next_id: int = 0):
        self.pool, self.draw, self.prompt_of, self.reward, self.family_of = pool, draw, prompt_of, reward, family_of
        self.group_size, self.max_new_tokens = group_size, max_new_tokens
        self.n_groups, self.max_rounds, self.max_lag, self.seed = n_groups, max_rounds, max_lag, seed
        self.next_id = next_id
        """Request ids drawn so far (saved with the loop state, so a resumed run draws the same seeds)."""
        self.steps: dict[int, _Step] = {}
        self.owner: dict[int, tuple[int, int]] = {}
        """request id -> (step, the id of its prompt's first request)."""

    def open(self, t: int) -> None:
        """Draw step t's first round and submit it."""
        self.steps[t] = _Step()
        self._round(t, self.n_groups)

    def _round(self, t: int, k: int) -> None:
        st = self.steps[t]
        st.rounds += 1
        requests = []
        for item in self.draw(k):
            prompt = self.prompt_of(item)
            ids = list(range(self.next_id, self.next_id + self.group_size))
            self.next_id += self.group_size
            st.open[ids[0]] = _Prompt(item, prompt, ids)
            for i in ids:
                self.owner[i] = (t, ids[0])
                requests.append(Request(i, prompt, self.max_new_tokens, seed=self.seed * 1_000_003 + i,
                                        min_version=max(0, t - self.max_lag)))
        self.pool.submit(requests)

    def take(self, t: int) -> _Step:
        """Step t's batch and bookkeeping, blocking until its rounds are done."""
        if t not in self.steps:
            self.open(t)
        st = self.steps[t]
        last = time.monotonic()
        while st.open:
            got = self.pool.collect(timeout=1.0)
            if got:
                last = time.monotonic()
            elif time.monotonic() - last > STALL_S:
                raise RuntimeError(f"rlvr: step {t + 1}: no rollout finished in {STALL_S:.0f} s "
                                   f"({sum(len(p.ids) - len(p.done) for p in st.open.values())} samples pending)")
            for f in got:
                self._arrive(f)
        return self.steps.pop(t)

    def _arrive(self, f: Finished) -> None:
        owner = self.owner.pop(f.id, None)
        if owner is None:
            return
        t, key = owner
        st = self.steps[t]
        p = st.open[key]
        p.done[f.id] = f
        if len(p.done) < len(p.ids):
            return
        del st.open[key]
        outs = [p.done[i] for i in p.ids]
        rewards = [self.reward(p.item, o.tokens) for o in outs]
        g = Group(p.prompt, [o.tokens for o in outs], [o.logprobs for o in outs], rewards, p.item,
                  [o.versions for o in outs])
        family = self.family_of(p.item)
        st.scored += [(family, r) for r in rewards]
        st.sampled_by_family[family] += 1
        b = st.batch
        b.sampled += 1
        b.rewards += g.rewards
        b.lengths += [len(c) for c in g.completions]
        if g.zero_variance:
            b.zero_variance += 1
            st.zero_by_family[family] += 1
        elif min((min(v) for v in g.versions if v), default=t) < t - self.max_lag:
            st.stale += 1
        else:
            b.groups.append(g)
        if not st.open and len(b.groups) < self.n_groups and st.rounds < self.max_rounds:
            self._round(t, self.n_groups - len(b.groups))

    def close(self) -> None:
        pending = set(self.owner)
        if pending:
            self.pool.drop(pending)
        self.owner.clear()
        self.steps.clear()
