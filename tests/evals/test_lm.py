"""Continuation scoring and document windows, against hand computations on a bigram model with a known table
and on a tiny Olmo3 scored one sequence at a time."""

from __future__ import annotations

import pytest
import torch

from olmoflow.evals.lm import Request, document_requests, score_groups, score_requests, token_batches, windows


@pytest.mark.parametrize("n,seq_len,overlap", [(1, 8, 0), (8, 8, 3), (9, 8, 0), (50, 8, 3), (50, 8, 7), (23, 5, 2)])
def test_windows_score_every_target_once_with_the_promised_context(n, seq_len, overlap):
    scored = []
    for a, b, k in windows(n, seq_len, overlap):
        assert 0 < b - a <= seq_len and 0 < k <= b - a
        for t in range(b - k + 1, b + 1):  # targets t_{b-k+1}..t_b, predicted from positions t-1 >= a
            scored.append(t)
            assert t - 1 - a >= min(overlap, t - 1)  # earlier tokens seen besides the one predicting t
    assert scored == list(range(1, n + 1))


def test_windows_overlap_zero_is_plain_chunks():
    assert windows(20, 8, 0) == [(0, 8, 8), (8, 16, 8), (12, 20, 4)]


def test_token_batches_fill_a_budget_of_padded_tokens():
    lengths = [5, 40, 3, 40, 12, 7, 7, 1]
    batches = token_batches(lengths, budget=40)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[:2] == [[1], [3]]  # a full-length sequence fills a batch alone
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 40
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    assert token_batches([50], budget=40) == [[0]]  # too long for the budget still gets a batch


def test_score_requests_matches_hand_computation_in_any_batching(bigram):
    g = torch.Generator().manual_seed(1)
    v = bigram.table.shape[0]
    sizes = zip(torch.randint(1, 9, (13,), generator=g).tolist(), torch.randint(1, 6, (13,), generator=g).tolist())
    reqs = [Request(torch.randint(v, (c,), generator=g).tolist(), torch.randint(v, (k,), generator=g).tolist())
            for c, k in sizes]
    for batch_size in (1, 4, 13):
        got = score_requests(bigram, reqs, batch_size=batch_size, max_len=64)
        for r, s in zip(reqs, got):
            want = bigram.hand_logprob(r.context[-1:] + r.continuation)
            assert s.n_tokens == len(r.continuation)
            assert s.logprob == pytest.approx(want, abs=1e-4)


def test_is_greedy_follows_the_argmax(bigram):
    table = bigram.table.detach()
    a = 5
    b = int(table[a].argmax())
    c = int(table[b].argmin())
    greedy, not_greedy = score_requests(bigram, [Request([a], [b]), Request([a], [b, c])], batch_size=2, max_len=8)
    assert greedy.is_greedy and not not_greedy.is_greedy


def test_too_long_requests_lose_context_from_the_left(tiny_olmo):
    ctx, cont = list(range(10, 40)), list(range(40, 46))
    got = score_requests(tiny_olmo, [Request(ctx, cont)], batch_size=1, max_len=16)[0]
    seq = (ctx + cont)[-17:]
    with torch.no_grad():
        logp = torch.log_softmax(tiny_olmo(torch.tensor([seq[:-1]])), -1)[0]
    want = sum(float(logp[i, seq[i + 1]]) for i in range(16 - 6, 16))
    assert got.n_tokens == 6 and got.logprob == pytest.approx(want, abs=1e-4)


def test_padding_does_not_change_a_transformers_scores(tiny_olmo):
    """Right-padded batches of a real (sliding-window) transformer equal each sequence scored alone."""
    g = torch.Generator().manual_seed(2)
    reqs = [Request(torch.randint(300, (n,), generator=g).tolist(), torch.randint(300, (3,), generator=g).tolist())
            for n in (2, 9, 20, 31)]
    batched = score_requests(tiny_olmo, reqs, batch_size=4, max_len=64)
    alone = [score_requests(tiny_olmo, [r], batch_size=1, max_len=64)[0] for r in reqs]
    for b, a in zip(batched, alone):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)


def test_document_requests_cover_the_document(bigram):
    tokens = list(range(3, 40))
    reqs = document_requests(tokens, 0, seq_len=8, overlap=3)
    assert sum((r.continuation for r in reqs), []) == tokens
    assert all(len(r.context) + len(r.continuation) <= 9 for r in reqs)
    total = sum(s.logprob for s in score_requests(bigram, reqs, batch_size=3, max_len=8))
    assert total == pytest.approx(bigram.hand_logprob([0] + tokens), abs=1e-3)


def test_empty_context_is_refused(bigram):
    with pytest.raises(ValueError, match="at least one context token"):
        score_requests(bigram, [Request([], [1])], batch_size=1, max_len=8)


@pytest.mark.parametrize("max_len", [64, 16, 9])
def test_trie_rows_equal_each_request_scored_alone(tiny_olmo, max_len):
    """Requests laid into rows as token tries (window 8 < row length, so the sliding mask is exercised; a short
    max_len splits rows and truncates requests) give score_requests' numbers, greedy flags included."""
    g = torch.Generator().manual_seed(3)
    shots = torch.randint(300, (11,), generator=g).tolist()  # a few-shot prefix that several groups repeat
    groups = [[Request(shots + [q], [a]) for a in (5, 6, 7)] for q in (40, 41)]
    for n_ctx in (1, 5, 12, 25):
        ctx = torch.randint(300, (n_ctx,), generator=g).tolist()
        groups.append([Request(ctx, torch.randint(300, (k,), generator=g).tolist()) for k in (1, 3, 5, 2)])
    groups.append([Request([1, 2, 3], [4, 5]), Request([1, 2, 3], [4]), Request([1, 2, 3], [4, 5, 6])])
    groups.append([Request([7, 8, 9], [10]), Request([7, 8, 11], [10])])  # contexts differ, continuation shared
    got = [s for group in score_groups(tiny_olmo, groups, batch_size=2, max_len=max_len) for s in group]
    want = score_requests(tiny_olmo, [r for group in groups for r in group], batch_size=2, max_len=max_len)
    for a, b in zip(got, want):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert (a.n_tokens, a.is_greedy) == (b.n_tokens, b.is_greedy)


def test_groups_without_a_hidden_method_fall_back_to_plain_scoring(bigram):
    groups = [[Request([1, 2], [3, 4]), Request([1, 2], [5])], [Request([6], [7])]]
    got = score_groups(bigram, groups, batch_size=2, max_len=8)
    assert [len(g) for g in got] == [2, 1]
    assert got[0][1].logprob == pytest.approx(bigram.hand_logprob([2, 5]), abs=1e-5)


def test_a_prefix_shared_across_groups_is_laid_out_once():
    from olmoflow.evals.lm import _tries

    shots = list(range(100, 120))
    groups = [[Request(shots + [q], [a]) for a in (1, 2, 3)] for q in (50, 51)]
    (row,) = _tries(groups, max_len=64)
    assert len(row.ids) == len(shots) + 2  # the shots once; each question once; continuations are only targets
    assert len(row.scored) == 6
