"""The rollout actors' generation engine, behind one interface (`RolloutEngine`) so a GPU cluster can swap in vLLM
(olmoflow/post/vllm_engine.py) while the built-in engine stays the default and the tested one.

`BuiltinEngine` runs continuous batching over a fixed number of slots: a request waits in a queue until a slot is
free, is prefilled into that slot's rows of the KV cache, and decodes one token per `step()` beside whatever else is
running; when it finishes (eos, a stop token, or its token budget) its slot takes the next queued request at the
next step, so the batch is never drained. Each slot has its own KV positions: slot s's cache column c holds its
token at position c, so no left padding is needed and a slot can start while others are mid-sequence.

Sampling is per request: each request carries its own seed and its draws are a function of (seed, token index)
(`request_noise`), so the tokens a prompt gets do not depend on which other requests share its batch (the
synchronous and the asynchronous paths draw the same samples from the same weights).
Every token records the log-probability of the distribution it was drawn from (the behaviour policy, for truncated
importance sampling) and the version of the weights whose forward produced its logits. New weights
(`update_weights`) are swapped in at the next step boundary without draining the running requests (in-flight
updates, as in Olmo 3's OlmoRL): their KV cache stays as the old weights wrote it, and their later tokens carry the
new version.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from olmoflow.model.attention import Masks
from olmoflow.model.config import ModelConfig
from olmoflow.model.generation import sampling_logp
from olmoflow.model.olmo3 import Olmo3
from olmoflow.train.world import autocast


@dataclass
class Request:
    id: int
    prompt: list[int]
    max_new_tokens: int
    seed: int = 0
    min_version: int = 0
    """Not admitted before the engine holds weights of at least this version (the learner's staleness bound)."""


@dataclass
class Finished:
    """A finished request: its new tokens (the last is eos or a stop token when it stopped there), the behaviour
    log-probability of each, and the policy version that produced each."""

    id: int
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


class RolloutEngine(abc.ABC):
    """What a rollout actor drives: weights in (with a version), prompts in, one step at a time, samples out."""

    version: int = -1

    @abc.abstractmethod
    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Take these weights now (nothing is running, or the caller accepts the swap mid-sequence)."""

    @abc.abstractmethod
    def update_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Take these weights at the next step boundary, without draining running requests."""

    @abc.abstractmethod
    def submit(self, request: Request) -> None: ...

    @abc.abstractmethod
    def step(self) -> None:
        """Swap pending weights, admit queued requests into free slots, decode one token for every running one."""

    @abc.abstractmethod
    def collect(self) -> list[Finished]:
        """Requests finished since the last collect."""

    @property
    @abc.abstractmethod
    def busy(self) -> bool:
        """Requests are queued or running."""

    @abc.abstractmethod
    def drop(self, ids: set[int]) -> None:
        """Forget these requests, queued or running (their results are no longer wanted)."""


class SlotCache:
    """One layer's keys and values for every slot, [slots, max_len, kv_heads, head_dim]; column c = position c.

    The model's attention calls `update(k, v)`; the engine sets `rows` (the slots in this forward) and `pos` (decode:
    each row's position, [rows]; None = prefill from position 0) before each forward. Decode writes each row's new
    key with one index_copy_ into the flattened (slot, position) axis, and reads a view when every slot runs."""

    def __init__(self, slots: int, kv_heads: int, max_len: int, head_dim: int, device: torch.device,
                 dtype: torch.dtype):
        self.k = torch.zeros(slots, max_len, kv_heads, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len
        self.rows = torch.zeros(0, dtype=torch.long, device=device)
        self.pos: torch.Tensor | None = None
        self.width = 0
        self.all_rows = False

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [rows, kv_heads, T, head_dim] -> what this forward's queries attend over, in the same layout."""
        k, v = k.to(self.k.dtype), v.to(self.v.dtype)
        if self.pos is None:  # prefill: the prompt's keys; pad columns past a prompt are masked and overwritten later
            self.k[self.rows, :k.shape[2]] = k.transpose(1, 2)
            self.v[self.rows, :k.shape[2]] = v.transpose(1, 2)
            return k, v
        flat = self.rows * self.max_len + self.pos
        self.k.view(-1, *self.k.shape[2:]).index_copy_(0, flat, k[:, :, 0])
        self.v.view(-1, *self.v.shape[2:]).index_copy_(0, flat, v[:, :, 0])
        keys, values = self.k[:, :self.width], self.v[:, :self.width]
        if not self.all_rows:
            keys, values = keys.index_select(0, self.rows), values.index_select(0, self.rows)
        return keys.transpose(1, 2), values.transpose(1, 2)


M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finalizer on int64 tensors holding values < 2**32 (products wrap; the mask keeps 32 bits)."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def request_uniform(seeds: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """One uniform draw in (0, 1) per row [rows], a pure function of (the row's request seed, its token index): a
    counter-based generator, so a request's draws do not depend on its batch, its slot or the device, and a batch
    draws in a few vectorized integer ops instead of one generator call per row."""
    x = _mix32(_mix32(seeds & M32) ^ ((steps * 0x9E3779B9) & M32))
    return (x.double() + 0.5) / 2.0 ** 32


def pick_rows(logits: torch.Tensor, temperature: float, top_p: float, seeds: torch.Tensor,
              steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Like generation.pick, but each row's draw is its request's own (request_uniform, by inverse CDF over the
    temperature / top-p distribution)."""
    if temperature == 0:
        logp = F.log_softmax(logits, dim=-1)
        tokens = logp.argmax(dim=-1)
        return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)
    logp = sampling_logp(logits, temperature, top_p)
    cdf = logp.double().exp().cumsum(dim=-1)
    # the first token whose cumulative probability reaches u: u > 0, so a token of probability 0 is never picked
    u = request_uniform(seeds, steps)[:, None] * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, u).squeeze(-1).clamp(max=logits.shape[-1] - 1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


@dataclass
class _Slot:
    request: Request
    out: Finished
    pos: int = 0
    """The position the next token goes to."""
    logits: torch.Tensor | None = None
    """Next-token logits [vocab] and the version that computed them."""
    logits_version: int = 0


class BuiltinEngine(RolloutEngine):
    """Continuous batching on an olmoflow Olmo3 with per-slot KV caches (see the module docstring)."""

    def __init__(self, model_cfg: ModelConfig, *, slots: int, max_len: int, temperature: float, top_p: float,
                 eos_id: int | None, device: torch.device | str = "cpu", stop_ids: Sequence[int] = ()):
        self.device = torch.device(device)
        self.model = Olmo3(model_cfg).to(self.device).eval()
        self.cfg = model_cfg
        self.temperature, self.top_p, self.eos_id = temperature, top_p, eos_id
        # stop_ids: further tokens that end a sequence (RL-Zero's plain template: any token holding a newline)
        self.stops = {eos_id, *stop_ids} - {None}
        self.max_len = max_len
        self.n_slots = slots
        # bf16 caches under autocast on GPU (what the forward produces there); float32 on the CPU
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.caches = [SlotCache(slots, model_cfg.n_kv_heads, max_len, model_cfg.head_dim, self.device, dtype)
                       for _ in range(model_cfg.n_layers)]
        self.slots: list[_Slot | None] = [None] * slots
        self.queue: deque[Request] = deque()
        self.finished: list[Finished] = []
        self.pending: tuple[dict[str, torch.Tensor], int] | None = None
        self.version = -1

    # ---- weights
    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        self.model.load_state_dict(state)
        self.version = version

    def update_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        if version > max(self.version, self.pending[1] if self.pending else -1):  # an older push arriving late
            self.pending = (state, version)

    # ---- requests
    def submit(self, request: Request) -> None:
        if not request.prompt:
            raise ValueError(f"engine: request {request.id} has an empty prompt")
        if len(request.prompt) + request.max_new_tokens > self.max_len:
            raise ValueError(f"engine: request {request.id} needs {len(request.prompt)} + {request.max_new_tokens} "
                             f"positions, the engine holds {self.max_len}")
        self.queue.append(request)

    def collect(self) -> list[Finished]:
        out, self.finished = self.finished, []
        return out

    @property
    def busy(self) -> bool:
        """Something can run now: a slot is decoding, or a queued request's weights are here."""
        runnable = bool(self.queue) and (self.queue[0].min_version <= self.version or self.pending is not None)
        return runnable or any(s is not None for s in self.slots)

    def drop(self, ids: set[int]) -> None:
        self.queue = deque(r for r in self.queue if r.id not in ids)
        self.slots = [None if s is not None and s.request.id in ids else s for s in self.slots]

    # ---- the step
    @torch.no_grad()
    def step(self) -> None:
        if self.pending is not None:  # the step boundary: running requests keep their caches, continue on these
            self.load_weights(*self.pending)
            self.pending = None
        with autocast(self.device):
            self._admit()
            running = [i for i, s in enumerate(self.slots) if s is not None]
            if not running:
                return
            logits = torch.stack([self.slots[i].logits for i in running])
            seeds = torch.tensor([self.slots[i].request.seed for i in running], device=self.device)
            steps = torch.tensor([len(self.slots[i].out.tokens) for i in running], device=self.device)
            tokens, logp = pick_rows(logits, self.temperature, self.top_p, seeds, steps)
            cont, cont_tokens = [], []
            for i, tok, lp in zip(running, tokens.tolist(), logp.tolist()):
                s = self.slots[i]
                s.out.tokens.append(tok)
                s.out.logprobs.append(lp)
                s.out.versions.append(s.logits_version)
                if tok in self.stops or len(s.out.tokens) >= s.request.max_new_tokens:
                    self.finished.append(s.out)
                    self.slots[i] = None
                else:
                    cont.append(i)
                    cont_tokens.append(tok)
            if cont:
                self._decode(cont, torch.tensor(cont_tokens, device=self.device))

    def _admit(self) -> None:
        free = [i for i, s in enumerate(self.slots) if s is None]
        batch = []
        while free and self.queue and self.queue[0].min_version <= self.version:
            r = self.queue.popleft()
            i = free.pop(0)
            self.slots[i] = _Slot(r, Finished(r.id, list(r.prompt)), pos=len(r.prompt))
            batch.append(i)
        if batch:
            self._prefill(batch)

    def _prefill(self, rows: list[int]) -> None:
        """Prompts of the newly admitted slots, right-padded into one forward from position 0. Identical prompts
        (an RL group: one prompt, group_size samples) are computed once and their keys copied to the other slots."""
        first: dict[tuple[int, ...], int] = {}
        for i in rows:
            first.setdefault(tuple(self.slots[i].request.prompt), i)
        uniq = list(first.values())
        prompts = [self.slots[i].request.prompt for i in uniq]
        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(uniq), width, dtype=torch.long, device=self.device)
        lens = torch.tensor([len(p) for p in prompts], device=self.device)
        for j, p in enumerate(prompts):
            ids[j, :len(p)] = torch.tensor(p, dtype=torch.long)
        pos = torch.arange(width, device=self.device)
        causal = pos[:, None] >= pos[None, :]
        valid = pos[None, :] < lens[:, None]  # [n, T_k]; a pad query still sees its causal real keys
        full = (causal[None] & valid[:, None, :])[:, None]
        window = causal & (pos[:, None] - pos[None, :] < self.cfg.sliding_window)
        sliding = (window[None] & valid[:, None, :])[:, None]
        for c in self.caches:
            c.rows, c.pos = torch.tensor(uniq, device=self.device), None
        hidden = self.model.hidden(ids, pos[None].expand(len(uniq), -1), Masks(full=full, sliding=sliding),
                                   self.caches)
        last = hidden[torch.arange(len(uniq), device=self.device), lens - 1]
        logits = self.model.lm_head(last).float()
        row_of = {i: j for j, i in enumerate(uniq)}
        for i in rows:
            src = first[tuple(self.slots[i].request.prompt)]
            if src != i:  # a shared prompt: its keys and values, as the first copy's forward wrote them
                n = len(self.slots[i].request.prompt)
                for c in self.caches:
                    c.k[i, :n] = c.k[src, :n]
                    c.v[i, :n] = c.v[src, :n]
            self.slots[i].logits = logits[row_of[src]]
            self.slots[i].logits_version = self.version

    def _decode(self, rows: list[int], tokens: torch.Tensor) -> None:
        """One token for each of these slots at its own position."""
        pos = torch.tensor([self.slots[i].pos for i in rows], device=self.device)
        width = int(pos.max()) + 1
        cols = torch.arange(width, device=self.device)
        delta = pos[:, None] - cols[None, :]
        full = (delta >= 0)[:, None, None]
        sliding = ((delta >= 0) & (delta < self.cfg.sliding_window))[:, None, None]
        idx = torch.tensor(rows, device=self.device)
        for c in self.caches:
            c.rows, c.pos, c.width, c.all_rows = idx, pos, width, len(rows) == self.n_slots
        hidden = self.model.hidden(tokens[:, None], pos[:, None], Masks(full=full, sliding=sliding), self.caches)
        logits = self.model.lm_head(hidden[:, -1]).float()
        for j, i in enumerate(rows):
            s = self.slots[i]
            s.logits, s.logits_version, s.pos = logits[j], self.version, s.pos + 1

    def run(self, requests: list[Request]) -> list[Finished]:
        """Every request to the end (a convenience for tests, benches and the in-process path), in request order."""
        for r in requests:
            self.submit(r)
        done: list[Finished] = []
        while self.busy:
            self.step()
            done += self.collect()
        order = {r.id: k for k, r in enumerate(requests)}
        return sorted(done, key=lambda f: order[f.id])

