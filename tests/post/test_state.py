"""In-stage checkpoints of post-training (post/state.py): a round trip restores weights, optimizer, RNG and the
sampler's stream exactly; a sampler state from another kind of device is refused by name."""

from __future__ import annotations

import pytest
import torch

from olmoflow.post.state import load_state, save_state


def setup(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_everything(tmp_path):
    model, optimizer = setup(0)
    generator = torch.Generator().manual_seed(7)
    torch.rand(3, generator=generator)
    save_state(tmp_path, model, optimizer, {"step": 3}, generator)
    want_draw, want_global = torch.rand(5, generator=generator), torch.rand(2)

    other, other_opt = setup(1)
    fresh = torch.Generator().manual_seed(0)
    assert load_state(tmp_path, other, other_opt, fresh) == {"step": 3}
    assert torch.equal(torch.rand(5, generator=fresh), want_draw) and torch.equal(torch.rand(2), want_global)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))
    assert other_opt.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])


def test_a_sampler_state_from_another_device_is_refused(tmp_path):
    model, optimizer = setup(0)
    save_state(tmp_path, model, optimizer, {"step": 1}, torch.Generator())
    blob = torch.load(tmp_path / "state.pt", weights_only=True)
    blob["generator_device"] = "cuda:0"  # as a GPU run writes it
    torch.save(blob, tmp_path / "state.pt")
    with pytest.raises(ValueError, match=r"was sampling on cuda:0, this run samples on cpu"):
        load_state(tmp_path, model, optimizer, torch.Generator())
    with pytest.raises(ValueError, match="has no sampler RNG state"):
        save_state(tmp_path, model, optimizer, {"step": 1})
        load_state(tmp_path, model, optimizer, torch.Generator())
