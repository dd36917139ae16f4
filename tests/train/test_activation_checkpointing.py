"""Activation checkpointing (TrainConfig.activation_checkpointing): each block's forward runs again in backward
instead of keeping its activations, and the gradients, weights and checkpoint keys are exactly those of a run
without it."""

from __future__ import annotations

import torch
from trainkit import make_trainer

from olmoflow.model import Olmo3

WRAPPER = "_checkpoint_wrapped_module."


def first_step(root, activation_checkpointing: bool):
    """Gradients at the first optimizer step (names without the wrapper's), MLP forward calls, the trainer."""
    _, trainer = make_trainer(root, steps=2, warmup_steps=0, micro_batch=1,
                              activation_checkpointing=activation_checkpointing)
    grads, calls = {}, {"mlp": 0}
    trainer.model.layers[0].mlp.register_forward_hook(lambda *_: calls.update(mlp=calls["mlp"] + 1))
    step = trainer.opt.step

    def capture():
        if not grads:
            grads.update({n.replace(WRAPPER, ""): p.grad.clone() for n, p in trainer.model.named_parameters()})
            grads["calls"] = calls["mlp"]
        return step()

    trainer.opt.step = capture
    trainer.fit()
    return grads, trainer


def test_gradients_and_weights_equal_with_and_without_checkpointing(tmp_path):
    off, plain = first_step(tmp_path / "off", False)
    on, checkpointed = first_step(tmp_path / "on", True)
    # 4 micro-batches a step: the block's MLP runs once each without checkpointing, twice each with it.
    assert (off.pop("calls"), on.pop("calls")) == (4, 8)
    assert off.keys() == on.keys() and len(off) == len(dict(plain.model.named_parameters()))
    for name, g in off.items():
        assert torch.equal(g, on[name]), name

    exported = checkpointed.export_model()
    assert type(exported) is Olmo3 and not any(WRAPPER in k for k in exported.state_dict())
    for name, w in plain.model.state_dict().items():
        assert torch.equal(w, exported.state_dict()[name]), name
