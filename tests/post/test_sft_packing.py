"""SFT packing: several conversations per row with intra-document masking give each conversation exactly the
loss (and the step exactly the gradient) it gets alone, and the packer fills rows first-fit decreasing."""

from __future__ import annotations

import pytest
import torch
from kit import tiny_olmo
from test_losses import conversations, unpadded_logprobs
from tokenizers import Tokenizer

from olmoflow.post.data import pack_batch, pack_rows
from olmoflow.post.sft import packed_logprobs, packed_micro_batches, sft_backward


def test_packed_rows_give_each_conversation_its_loss_alone(tokenizer: Tokenizer) -> None:
    batch = conversations(tokenizer) * 2  # 10 conversations of 20-30 tokens
    pad = tokenizer.token_to_id("<|pad|>")
    model = tiny_olmo(tokenizer.get_vocab_size())  # sliding window 16: windows and documents both bind
    capacity = 64
    packed = pack_batch([e.ids for e in batch], [e.mask for e in batch], pad, capacity)
    assert packed.inputs.shape[0] < len(batch) and packed.inputs.shape[1] <= capacity  # really packed
    assert max(int(d.max()) for d in packed.doc_ids) >= 2  # some row holds 3+ conversations
    with torch.no_grad():
        got = packed.per_sequence(packed_logprobs(model, packed))
        want = torch.stack([unpadded_logprobs(model, e) for e in batch])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert packed.per_sequence(packed.mask).tolist() == [float(sum(e.mask[1:])) for e in batch]


def test_packed_step_has_the_padded_steps_loss_and_gradient(tokenizer: Tokenizer) -> None:
    batch = conversations(tokenizer) * 2
    pad = tokenizer.token_to_id("<|pad|>")
    model = tiny_olmo(tokenizer.get_vocab_size())
    n_tokens = sum(e.n_targets for e in batch)
    padded = sft_backward(model, batch, 4, pad, n_tokens)
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert len(packed_micro_batches(batch, 1, pad, 64)) > 2  # several forwards to accumulate over
    for micro_batch in (1, 3):
        model.zero_grad()
        loss = sft_backward(model, batch, micro_batch, pad, n_tokens, pack_len=64)
        assert float(loss) == pytest.approx(float(padded), rel=1e-5)
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.grad, want[n], rtol=1e-4, atol=1e-6, msg=f"{n} micro_batch={micro_batch}")


def test_rows_are_first_fit_decreasing_and_never_overflow() -> None:
    assert pack_rows([3, 7, 5, 2, 4], 8) == [[1], [2, 0], [4, 3]]
    lengths = [int(x) for x in torch.randint(1, 50, (200,), generator=torch.Generator().manual_seed(0))]
    rows = pack_rows(lengths, 64)
    assert sorted(i for row in rows for i in row) == list(range(200))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    with pytest.raises(ValueError, match=r"pack: sequence 1 takes 9 positions, more than a row's 8"):
        pack_rows([3, 9], 8)


def test_packed_layout_shifts_targets_and_separates_documents() -> None:
    p = pack_batch([[1, 2, 3], [4, 5], [6, 7, 8, 9]], [[0, 1, 1], [0, 1], [0, 0, 1, 1]], pad_id=0, capacity=5)
    # lengths in positions 2, 1, 3: row 0 = seq 2 then seq 0; row 1 = seq 1, padded
    assert p.inputs.tolist() == [[6, 7, 8, 1, 2], [4, 0, 0, 0, 0]]
    assert p.targets.tolist() == [[7, 8, 9, 2, 3], [5, 0, 0, 0, 0]]
    assert p.mask.tolist() == [[0, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert p.doc_ids.tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 1, 1]]
    assert p.spans == [(0, 3, 5), (1, 0, 1), (0, 0, 3)]
