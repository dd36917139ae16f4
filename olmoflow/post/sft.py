"""The SFT objective: next-token cross-entropy on assistant tokens only, averaged over all of a step's assistant
tokens. Micro-batches (on every rank) backpropagate their token sums divided by the whole step's total, so their
gradients add up to exactly the full batch's mean, however the batch is cut, packed or split over ranks.

Packed (`sft.pack`): the conversations are packed into rows of seq_len positions, each its own document of the
row (post/data.py), `micro_batch` rows per forward, so a forward holds at most micro_batch x seq_len tokens as a
padded one does at worst, with only the rows' tails padded."""

from __future__ import annotations

import torch
from torch import nn

from olmoflow.model.lm_loss import IGNORE
from olmoflow.post.chat import Encoded
from olmoflow.post.data import Packed, micro_batches, pack_batch, pack_rows, pad_batch
from olmoflow.post.logprobs import masked_sums
from olmoflow.train.parallel import sync_grads
from olmoflow.train.world import World, autocast


def packed_micro_batches(batch: list[Encoded], micro_batch: int, pad_id: int, capacity: int) -> list[Packed]:
    """`batch` packed into rows of `capacity` positions, cut into micro-batches of `micro_batch` rows."""
    rows = pack_rows([len(e) - 1 for e in batch], capacity)
    out = []
    for k in range(0, len(rows), micro_batch):
        group = rows[k:k + micro_batch]
        items = [i for row in group for i in row]
        where = {i: j for j, i in enumerate(items)}
        out.append(pack_batch([batch[i].ids for i in items], [batch[i].mask for i in items], pad_id, capacity,
                              rows=[[where[i] for i in row] for row in group]))
    return out


def packed_logprobs(model: nn.Module, packed: Packed) -> torch.Tensor:
    """log p(target) [R, T] of a packed batch (0 off the mask), each token seeing only its own document."""
    device = next(model.parameters()).device
    targets = packed.targets.masked_fill(packed.mask == 0, IGNORE)
    with autocast(device):
        return model(packed.inputs.to(device), packed.doc_ids.to(device), labels=targets.to(device),
                     per_token=True)


def _same_count_on_every_rank(chunks: list[Packed], pad_id: int) -> list[Packed]:
    """Under FSDP every rank must run as many forwards and backwards, but ranks' shares may pack into different
    numbers of micro-batches: the short ones get one-token micro-batches with no sequence (`spans` empty), which
    sft_backward weighs 0. Their token is scored all the same, so backward runs through every block (FSDP's
    gradient reduction hooks fire on each rank alike), contributing a zero gradient."""
    world = World.current()
    if world.size == 1:
        return chunks
    counts = torch.zeros(world.size, device=world.device)
    counts[world.rank] = len(chunks)
    world.sum(counts)
    one = torch.full((1, 1), pad_id, dtype=torch.long)
    empty = Packed(one, one, torch.ones((1, 1)), torch.zeros((1, 1), dtype=torch.long), [])
    return chunks + [empty] * (int(counts.max()) - len(chunks))


def sft_backward(model: nn.Module, batch: list[Encoded], micro_batch: int, pad_id: int,
                 n_tokens: int, pack_len: int = 0) -> torch.Tensor:
    """Accumulate the gradient of `batch`'s share of the step's mean assistant-token loss (`n_tokens`: the step's
    assistant tokens on all ranks); returns that share, detached (summed over ranks: the step's loss).
    pack_len > 0: packed into rows of pack_len positions (seq_len), else padded, one conversation per row."""
    if pack_len:
        chunks = _same_count_on_every_rank(packed_micro_batches(batch, micro_batch, pad_id, pack_len), pad_id)
        sums = [lambda p=p: packed_logprobs(model, p).sum() * (1.0 if p.spans else 0.0) for p in chunks]
    else:
        padded = micro_batches(batch, micro_batch)
        sums = [lambda mb=mb: masked_sums(model, *pad_batch([e.ids for e in mb], [e.mask for e in mb], pad_id))[0]
                .sum() for mb in padded]
    losses = []
    for k, logp_sum in enumerate(sums):
        sync_grads(model, k == len(sums) - 1)  # FSDP: reduce-scatter once, after the last micro-batch
        loss = -logp_sum() / n_tokens
        loss.backward()
        losses.append(loss.detach())
    return torch.stack(losses).sum()
