"""The deterministic token loader: packed windows from several domains in target proportions, sharded over
data-parallel ranks, with its position in a small state dict (part of every in-stage checkpoint).

The global stream is a pure function of (domains, weights, seed, seq_len, packing): window g of the stream
comes from the domain a stride scheduler picks (the one furthest behind its target share, so proportions are
exact to one window), and that domain's next window in its shuffled epoch. Each micro-step takes
`world * micro_batch` consecutive windows; rank r reads block r. The state is the same on every rank, so a
checkpoint written by N ranks resumes on M.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from olmoflow.train.packing import BestFitPlan, ConcatPlan, Docs, Window, make_window

PLANS = {"concat": ConcatPlan, "bestfit": BestFitPlan}


@dataclass
class Batch:
    input_ids: torch.Tensor
    """[B, T] long"""
    labels: torch.Tensor
    """[B, T] long, IGNORE where no loss is taken"""
    doc_ids: torch.Tensor
    """[B, T] long: attention never crosses a change of id"""

    @property
    def num_targets(self) -> int:
        return int((self.labels >= 0).sum())


def collate(windows: list[Window]) -> Batch:
    return Batch(*(torch.from_numpy(np.stack([getattr(w, f) for w in windows]))
                   for f in ("input_ids", "labels", "doc_ids")))


class TokenLoader:
    def __init__(self, domains: dict[str, Docs], seq_len: int, micro_batch: int, *,
                 weights: dict[str, float] | None = None, seed: int = 0, packing: str = "concat",
                 pad_id: int = 0, intra_doc: bool = True, rank: int = 0, world: int = 1):
        if packing not in PLANS:
            raise ValueError(f"unknown packing {packing!r} (concat, bestfit)")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside world size {world}")
        # No weights: each domain's share is its share of the tokens. Given weights: a domain they leave out
        # (or weigh 0) is not read at all.
        weights = weights or {name: float(d.num_tokens) for name, d in domains.items()}
        unknown = sorted(set(weights) - set(domains))
        if unknown:
            raise ValueError(f"mix names domain(s) {', '.join(unknown)} that the data does not have "
                             f"(domains: {', '.join(sorted(domains))})")
        total = sum(w for w in weights.values() if w > 0)
        if total <= 0:
            raise ValueError("mix gives every domain a weight of 0")
        self.names = sorted(n for n, w in weights.items() if w > 0)
        self.weights = np.array([weights[n] / total for n in self.names])
        self.domains = domains
        self.window = seq_len + 1
        self.micro_batch, self.seed, self.packing = micro_batch, seed, packing
        self.pad_id, self.intra_doc, self.rank, self.world = pad_id, intra_doc, rank, world
        self._plans: dict[str, tuple[int, ConcatPlan | BestFitPlan]] = {}
        self.windows = 0
        """Windows consumed by all ranks together (the global stream position)."""
        self.counts = {n: 0 for n in self.names}
        """Windows taken from each domain so far (drives the scheduler)."""
        self.cursor = {n: [0, 0] for n in self.names}
        """(epoch, window within the epoch) of each domain's next window."""
        for n in self.names:
            if self._plan(n, 0).num_windows == 0:
                raise ValueError(f"domain {n!r} has {domains[n].num_tokens} tokens, "
                                 f"fewer than one window of {self.window}")

    def _plan(self, name: str, epoch: int) -> ConcatPlan | BestFitPlan:
        cached = self._plans.get(name)
        if cached is None or cached[0] != epoch:
            # Every (seed, domain, epoch) has its own shuffle: epochs differ, and reruns repeat exactly.
            rng = np.random.default_rng([self.seed, self.names.index(name), epoch])
            cached = (epoch, PLANS[self.packing](self.domains[name], self.window, rng))
            self._plans[name] = cached
        return cached[1]

    def _pick(self) -> str:
        # Stride scheduling: the domain whose next window would finish earliest relative to its share.
        finish = [(self.counts[n] + 1) / w for n, w in zip(self.names, self.weights)]
        return self.names[int(np.argmin(finish))]

    def _advance(self, materialize: bool) -> Window | None:
        name = self._pick()
        epoch, k = self.cursor[name]
        plan = self._plan(name, epoch)
        out = make_window(self.domains[name], plan.pieces(k), self.window, self.pad_id,
                          self.intra_doc) if materialize else None
        k += 1
        self.cursor[name] = [epoch + 1, 0] if k == plan.num_windows else [epoch, k]
        self.counts[name] += 1
        self.windows += 1
        return out

    def next_batch(self) -> Batch:
        """This rank's next micro-batch; the other ranks' windows are skipped without reading their tokens."""
        mine = []
        for i in range(self.world * self.micro_batch):
            w = self._advance(materialize=i // self.micro_batch == self.rank)
            if w is not None:
                mine.append(w)
        return collate(mine)

    def state_dict(self) -> dict:
        return {"windows": self.windows, "counts": dict(self.counts),
                "cursor": {n: list(c) for n, c in self.cursor.items()},
                "stream": self._stream_key()}

    def load_state_dict(self, state: dict) -> None:
        if state["stream"] != self._stream_key():
            raise ValueError(f"loader state is for stream {state['stream']}, this loader is {self._stream_key()}")
        self.windows = int(state["windows"])
        self.counts = {n: int(v) for n, v in state["counts"].items()}
        self.cursor = {n: [int(e), int(k)] for n, (e, k) in state["cursor"].items()}

    def _stream_key(self) -> dict:
        """What defines the global stream; world size and micro-batch are not part of it, so a resharded run
        (other rank count, same global batch) resumes at the same position."""
        return {"names": self.names, "weights": [round(float(w), 12) for w in self.weights], "seed": self.seed,
                "window": self.window, "packing": self.packing}


def eval_batches(docs: Docs, seq_len: int, micro_batch: int, pad_id: int, intra_doc: bool) -> Iterator[Batch]:
    """Held-out documents best-fit packed in a fixed order, so each fits from its start and all are scored."""
    plan = BestFitPlan(docs, seq_len + 1, None)
    n = plan.num_windows
    for lo in range(0, n, micro_batch):
        yield collate([make_window(docs, plan.pieces(k), seq_len + 1, pad_id, intra_doc)
                       for k in range(lo, min(n, lo + micro_batch))])
