"""Rollout actors: where OlmoRL's samples come from, as a pool the learner pushes weights and prompts to and
collects finished samples from.

- `RayPool`: N Ray actors (a local Ray started once per process, or the cluster's Ray when RAY_ADDRESS is set, as
  under a RayJob), each an engine (olmoflow/post/engine.py) stepped by a thread of its own, so it keeps decoding
  while the learner trains. Weights go to the object store once per version (`ray.put`) and every actor takes them
  at its next step boundary (in-flight updates). Calls to a threaded actor may run out of order, so nothing here
  relies on order: an engine ignores an older version arriving late, and a request waits in the engine's queue until
  the weights it needs (`Request.min_version`) are there. An actor that dies is replaced: the new one gets the
  latest weights and the dead one's unfinished requests (same seeds, so the same samples at the same version).
- `LocalPool`: the engine in the learner's process, stepped only while the learner waits for samples: sampling
  and learning alternate (the synchronous path, `rlvr.actors: 0`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import torch

from olmoflow.model.config import ModelConfig
from olmoflow.post.engine import BuiltinEngine, Finished, Request, RolloutEngine

log = logging.getLogger("olmoflow")

MAX_REPLACEMENTS = 3
"""Per actor: a pool whose actors die more often than this fails the step with the last cause."""


def make_engine(kind: str, model_cfg: ModelConfig, **kw) -> RolloutEngine:
    """The engine `rlvr.engine` names: "builtin" (default) or "vllm" (imported only here, and only on a cluster's
    GPU image; here, not in engine.py, so the interface module and the vLLM adapter do not import each other)."""
    if kind == "builtin":
        return BuiltinEngine(model_cfg, **kw)
    if kind == "vllm":
        from olmoflow.post.vllm_engine import VLLMEngine
        return VLLMEngine(model_cfg, **kw)
    raise ValueError(f"rlvr.engine: unknown engine {kind!r} (builtin or vllm)")


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights on the host: what goes to the object store (a GPU cluster would broadcast instead)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class RolloutWorker:
    """The body of one rollout actor: an engine, and a thread that steps it whenever it has runnable work."""

    def __init__(self, engine: str, model_cfg: dict, engine_kw: dict, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self.engine = make_engine(engine, ModelConfig(**model_cfg), **engine_kw)
        self.cv = threading.Condition()
        self.done: list[Finished] = []
        self.error: BaseException | None = None
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        try:
            while True:
                with self.cv:
                    self.cv.wait_for(lambda: self.engine.busy)
                    self.engine.step()
                    finished = self.engine.collect()
                    if finished:
                        self.done += finished
                        self.cv.notify_all()
        except BaseException as e:  # surfaced by the next collect, which kills the actor
            with self.cv:
                self.error = e
                self.cv.notify_all()

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> int:
        with self.cv:
            if self.engine.version < 0:
                self.engine.load_weights(state, version)
            else:
                self.engine.update_weights(state, version)
            self.cv.notify_all()
            return version

    def submit(self, requests: list[Request]) -> None:
        with self.cv:
            for r in requests:
                self.engine.submit(r)
            self.cv.notify_all()

    def drop(self, ids: list[int]) -> None:
        with self.cv:
            self.engine.drop(set(ids))

    def collect(self, timeout: float) -> list[Finished]:
        with self.cv:
            self.cv.wait_for(lambda: self.done or self.error is not None, timeout)
            if self.error is not None:
                raise RuntimeError(f"rollout actor: engine failed: {self.error!r}") from self.error
            out, self.done = self.done, []
            return out


def ensure_ray() -> Any:
    """Ray, initialized: the cluster's when RAY_ADDRESS is set (a RayJob's driver), else a local one for this
    process (no dashboard, a small object store: weights of a tiny model, a few MB each)."""
    import ray

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], logging_level=logging.WARNING)
        else:
            # A local Ray is ours alone: its token-auth warning is noise (a user's own setting still wins).
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING, object_store_memory=256 << 20)
    return ray


class RayPool:
    """N rollout actors behind one interface: push(weights, version), submit(requests), collect(timeout)."""

    def __init__(self, n: int, engine: str, model_cfg: ModelConfig, engine_kw: dict, *, gpus: float = 0.0,
                 threads: int = 0):
        self.ray = ensure_ray()
        self.args = (engine, model_cfg.model_dump(), engine_kw, threads)
        # Threaded (max_concurrency > 1): a collect that waits must not block the pushes and submits behind it.
        self.cls = self.ray.remote(num_cpus=0, num_gpus=gpus, max_concurrency=4)(RolloutWorker)
        self.actors = [self.cls.remote(*self.args) for _ in range(n)]
        self.assigned: list[dict[int, Request]] = [{} for _ in range(n)]
        self.polls: dict[Any, int] = {}
        self.weights: tuple[Any, int] | None = None
        self.replaced = 0

    def push(self, state: dict[str, torch.Tensor], version: int) -> None:
        ref = self.ray.put(state)
        self.weights = (ref, version)
        for a in self.actors:
            a.load_weights.remote(ref, version)

    def submit(self, requests: list[Request]) -> None:
        by_actor: dict[int, list[Request]] = {}
        for r in requests:  # to the least loaded actor
            i = min(range(len(self.actors)), key=lambda k: len(self.assigned[k]) + len(by_actor.get(k, [])))
            by_actor.setdefault(i, []).append(r)
        for i, rs in by_actor.items():
            self.assigned[i].update({r.id: r for r in rs})
            self.actors[i].submit.remote(rs)

    def drop(self, ids: set[int]) -> None:
        for i, a in enumerate(self.actors):
            mine = [r for r in ids if r in self.assigned[i]]
            if mine:
                for r in mine:
                    del self.assigned[i][r]
                a.drop.remote(mine)

    def collect(self, timeout: float) -> list[Finished]:
        """Samples finished on any actor within `timeout` seconds (maybe none); a dead actor is replaced."""
        for i, a in enumerate(self.actors):
            if i not in self.polls.values() and self.assigned[i]:
                self.polls[a.collect.remote(timeout)] = i
        if not self.polls:
            return []
        ready, _ = self.ray.wait(list(self.polls), num_returns=1, timeout=timeout)
        out: list[Finished] = []
        for ref in ready:
            i = self.polls.pop(ref)
            try:
                got = self.ray.get(ref)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as e:
                self._replace(i, e)
                continue
            for f in got:
                if self.assigned[i].pop(f.id, None) is not None:  # a dropped request's result is not wanted
                    out.append(f)
        return out

    def _replace(self, i: int, why: BaseException) -> None:
        if self.replaced >= MAX_REPLACEMENTS * len(self.actors):  # not a lost node: something kills every actor
            raise RuntimeError(f"rlvr: rollout actors died {self.replaced + 1} times; the last: "
                               f"{str(why).splitlines()[0][:300]}")
        log.warning("rlvr: rollout actor %d died (%s); replacing it and resubmitting its %d requests", i,
                    str(why).splitlines()[0][:200], len(self.assigned[i]))
        self.polls = {r: k for r, k in self.polls.items() if k != i}
        try:
            self.ray.kill(self.actors[i])
        except Exception:  # already gone
            pass
        self.actors[i] = self.cls.remote(*self.args)
        self.replaced += 1
        if self.weights is not None:
            self.actors[i].load_weights.remote(*self.weights)
        if self.assigned[i]:
            self.actors[i].submit.remote(list(self.assigned[i].values()))

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


class LocalPool:
    """The engine in this process, stepped only inside collect: sampling and learning alternate."""

    replaced = 0

    def __init__(self, engine: str, model_cfg: ModelConfig, engine_kw: dict):
        self.engine = make_engine(engine, model_cfg, **engine_kw)

    def push(self, state: dict[str, torch.Tensor], version: int) -> None:
        self.engine.load_weights(state, version)  # nothing runs between collects: the swap is immediate

    def submit(self, requests: list[Request]) -> None:
        for r in requests:
            self.engine.submit(r)

    def drop(self, ids: set[int]) -> None:
        self.engine.drop(ids)

    def collect(self, timeout: float) -> list[Finished]:
        """Steps the engine until something finishes or nothing can run."""
        while self.engine.busy:
            self.engine.step()
            out = self.engine.collect()
            if out:
                return out
        return self.engine.collect()

    def close(self) -> None:
        pass
