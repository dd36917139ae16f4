"""How SFT and DPO split their work over data-parallel ranks (torchrun; FSDP2 as the pretraining trainer shards).

Under FSDP every forward gathers each block's weights with all ranks, so every rank must run the same number of
forward passes, or the ranks that ran out wait forever on the others. A training step's batch is split evenly
(its size must be a multiple of the ranks), so equal shares cut into equal numbers of micro-batches. Scoring a
held-out set (any size) pads the shorter shares with a repeat whose result is dropped. Gradients are summed
across ranks (olmoflow/train/parallel.py), so each rank divides its loss by the whole batch's count, and the step
is exactly the one-process step, up to summation order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from olmoflow.train.world import World

T = TypeVar("T")


def check_batch(batch_size: int, knob: str, world: World) -> None:
    """A batch that does not split evenly over the ranks is a config error, named, before any compute."""
    if batch_size % world.size:
        raise ValueError(f"{knob}={batch_size} is not a multiple of the {world.size} ranks (torchrun): "
                         f"every rank trains an equal share of each step")


def share(batch: Sequence[T], world: World) -> list[T]:
    """This rank's share of a step's batch (every size-th item, from its rank): lengths stay mixed across ranks."""
    return list(batch[world.rank::world.size])


def padded_share(items: Sequence[T], world: World) -> list[tuple[T, bool]]:
    """This rank's share of `items` as (item, real): padded with repeats (real False) to the longest share, so every
    rank runs as many forward passes."""
    mine = [(x, True) for x in items[world.rank::world.size]]
    longest = -(-len(items) // world.size)
    return mine + [(items[0], False)] * (longest - len(mine))
