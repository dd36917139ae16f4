"""The training path (fused LM loss, hand-written RMSNorm/RoPE backward) gives transformers' loss and gradients:
Olmo3ForCausalLM with the same weights, its own loss (`labels=`), autograd, as the outside oracle."""

from __future__ import annotations

import pytest
import torch
from modelkit import YARN, tiny_cfg, tiny_model

from olmoflow.model.hf import hf_name, to_hf_config

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("n_kv_heads, yarn", [(4, None), (2, YARN)], ids=["mha", "gqa-yarn"])
def test_loss_and_every_gradient_equal_transformers(n_kv_heads, yarn):
    cfg = tiny_cfg(n_kv_heads, yarn)
    ours = tiny_model(cfg).train()
    theirs = transformers.Olmo3ForCausalLM._from_config(to_hf_config(cfg), attn_implementation="sdpa").train()
    theirs.load_state_dict({hf_name(k): v.clone() for k, v in ours.state_dict().items()})
    batch = torch.randint(0, cfg.vocab_size, (3, 41), generator=torch.Generator().manual_seed(4))
    x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    total, ce, _ = ours(x, labels=y)
    (total / y.numel()).backward()
    loss = theirs(input_ids=x, labels=x, shift_labels=y).loss
    loss.backward()

    assert abs(ce.item() / y.numel() - loss.item()) < 1e-5
    grads = {hf_name(k): p.grad for k, p in ours.named_parameters()}
    for name, p in theirs.named_parameters():
        assert (grads[name] - p.grad).abs().max() <= 1e-4 * p.grad.abs().max(), name


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones():
    # ~20-30 s of inductor compiling on 2 busy cores; state-dict names must not change (checkpoints, HF export).
    cfg = tiny_cfg(2, YARN)
    eager, compiled = tiny_model(cfg).train(), tiny_model(cfg).train()
    compiled.compile_blocks()
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x, y = torch.randint(0, cfg.vocab_size, (2, 2, 40), generator=torch.Generator().manual_seed(5))
    docs = torch.tensor([[0] * 15 + [1] * 25, [3] * 40])
    for model in (eager, compiled):
        model(x, docs, labels=y, z_loss=0.01).total.backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        assert (a.grad - b.grad).abs().max() <= 1e-5 * a.grad.abs().max(), name
