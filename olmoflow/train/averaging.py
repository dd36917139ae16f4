"""A running sum of a model's weights at chosen moments (the last checkpoints of long-context, the runs of a soup),
kept the way the weights are: under FSDP each rank holds only its own shard of the sum (one extra copy of its
local parameters, never the whole model), one process holds plain tensors. The sum goes into every in-stage
checkpoint through DCP next to the model, so it survives a kill and reshards onto another number of ranks; at the
end the mean is written back into the (still sharded) model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.distributed.tensor import DTensor


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    # The model's own (sharded) parameters under their plain names; views, not copies.
    return {k: v for k, v in get_model_state_dict(model).items() if v.is_floating_point()}


class WeightSum:
    def __init__(self) -> None:
        self.count = 0
        self.tensors: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        """Add the model's current weights (each rank its own shard)."""
        weights = _weights(model)
        if self.tensors is None:
            self.tensors = {k: v.detach().clone() for k, v in weights.items()}
        else:
            # Local shards: a sum carried over from an earlier model (a soup's previous run) is laid out the same
            # way but belongs to that model's mesh object.
            for k, v in weights.items():
                _local(self.tensors[k]).add_(_local(v))
        self.count += 1

    def template(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Tensors shaped and sharded like `model`'s weights, for DCP to load a saved sum into."""
        return {k: torch.empty_like(v) for k, v in _weights(model).items()}

    def restore(self, tensors: dict[str, torch.Tensor], count: int) -> None:
        self.tensors, self.count = tensors, count

    @torch.no_grad()
    def mean_into(self, model: nn.Module) -> None:
        """Set the model's weights (each rank its own shard, in place) to the mean of what was added."""
        if not self.count:
            raise ValueError("no weights were added to the running sum; nothing to average")
        for k, v in _weights(model).items():
            _local(v).copy_(_local(self.tensors[k]) / self.count)
