"""AdamW as the trainer builds it: fused, decay on matrices only; torch's reference (single-tensor) AdamW with the
same groups is the oracle for the weights after a few steps."""

from __future__ import annotations

import torch
from kit import tiny_olmo

from olmoflow.train.optim import build_optimizer, param_groups


def test_groups_exclude_embeddings_and_norms_from_decay():
    model = tiny_olmo(vocab_size=50)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in no_decay["params"]} == {
        n for n, p in model.named_parameters() if p.ndim == 1 or n == "embed_tokens.weight"}
    assert "lm_head.weight" in {names[id(p)] for p in decay["params"]}


def test_fused_adamw_steps_like_the_reference_adamw():
    models = [tiny_olmo(vocab_size=50, seed=3) for _ in range(2)]
    ours = build_optimizer(models[0], lr=1e-2, weight_decay=0.1)
    reference = torch.optim.AdamW(param_groups(models[1], 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8,
                                  foreach=False, fused=False)
    assert ours.defaults["fused"]
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for model, opt in zip(models, (ours, reference)):
            model(ids).logsumexp(-1).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    start = tiny_olmo(vocab_size=50, seed=3).state_dict()
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert not torch.equal(a, start[name]), name  # every weight moved
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name
