"""The model's fused training loss (`Olmo3.forward(..., labels=, z_loss=)`) against `lossref.loss_sums` on its
logits, the formula the trainer's loss has always been, with autograd's gradients as the oracle: packed documents,
unscored targets and z-loss included."""

from __future__ import annotations

import torch
from kit import tiny_olmo
from lossref import loss_sums

from olmoflow.train.packing import IGNORE


def test_fused_training_loss_equals_loss_sums_on_the_logits():
    model = tiny_olmo(vocab_size=97, sliding_window=8).train()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 97, (3, 40), generator=g)
    labels = torch.randint(0, 97, (3, 40), generator=g)
    labels[0, :6] = labels[2, 17] = IGNORE
    docs = torch.tensor([[0] * 17 + [1] * 23, [4] * 40, [0] * 5 + [1] * 30 + [2] * 5])
    z_loss = 0.05

    ce, z = loss_sums(model(ids, docs), labels)
    ((ce + z_loss * z) / 100).backward()
    want = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    total, fused_ce, fused_z = model(ids, docs, labels=labels, z_loss=z_loss)
    (total / 100).backward()
    assert torch.allclose(fused_ce, ce, rtol=1e-6) and torch.allclose(fused_z, z, rtol=1e-6)
    assert torch.allclose(total, ce + z_loss * z, rtol=1e-6)
    for name, p in model.named_parameters():
        assert (p.grad - want[name]).abs().max() <= 1e-5 * want[name].abs().max(), name
