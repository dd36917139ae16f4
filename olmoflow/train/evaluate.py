"""Held-out loss: the token mean over whole documents, and the loss at each position of long documents
(how well the model uses context; beyond the pretraining context it shows what long-context training bought).

The model may be the trainer's sharded one (FSDP): then every rank runs the same batches (each forward gathers
the weights collectively) and gets the same numbers, on the device the weights live on; the gathered weights are
freed after (parallel.reshard says why)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from olmoflow.model.lm_loss import IGNORE
from olmoflow.train.loader import Batch, eval_batches
from olmoflow.train.packing import Docs
from olmoflow.train.parallel import reshard


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Iterable[Batch], intra_doc: bool) -> tuple[float, int]:
    """(mean cross-entropy per scored target, number of targets)."""
    was_training = model.training
    model.eval()
    total, n, device = 0.0, 0, _device(model)
    for b in batches:
        ids, docs, labels = (t.to(device) for t in (b.input_ids, b.doc_ids, b.labels))
        # the fused head + loss, as in training: never the [tokens, vocab] logits
        total += float(model(ids, docs if intra_doc else None, labels=labels).ce)
        n += int((labels != IGNORE).sum())
    reshard(model)
    model.train(was_training)
    return total / max(n, 1), n


def val_losses(model: nn.Module, heldout: dict[str, Docs], seq_len: int, micro_batch: int, pad_id: int,
               intra_doc: bool) -> dict[str, float]:
    """{"val_loss": token mean over all held-out documents, "val_loss/{domain}": per domain}."""
    out, total, n = {}, 0.0, 0
    for name, docs in heldout.items():
        loss, k = mean_loss(model, eval_batches(docs, seq_len, micro_batch, pad_id, intra_doc), intra_doc)
        out[f"val_loss/{name}"] = loss
        total, n = total + loss * k, n + k
    out["val_loss"] = total / max(n, 1)
    return out


@torch.no_grad()
def position_losses(model: nn.Module, docs: list[np.ndarray], seq_len: int, micro_batch: int = 1) -> np.ndarray:
    """Mean loss at each position [seq_len] over the first seq_len + 1 tokens of each document (shorter ones are
    skipped). One document per row, so every position is its true position in the document."""
    rows = [d[:seq_len + 1].astype(np.int64) for d in docs if d.size > seq_len]
    if not rows:
        raise ValueError(f"no held-out document is longer than {seq_len} tokens")
    was_training = model.training
    model.eval()
    sums = torch.zeros(seq_len, dtype=torch.float64)
    for lo in range(0, len(rows), micro_batch):
        x = torch.from_numpy(np.stack(rows[lo:lo + micro_batch])).to(_device(model))
        sums -= model(x[:, :-1], labels=x[:, 1:], per_token=True).double().sum(0).cpu()
    reshard(model)
    model.train(was_training)
    return (sums / len(rows)).numpy()


def bucket_means(per_position: np.ndarray, edges: list[int]) -> list[float]:
    return [float(per_position[a:b].mean()) for a, b in zip(edges[:-1], edges[1:])]
