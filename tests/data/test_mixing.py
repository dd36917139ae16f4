"""Token-budget mixing: shares, downsampling to the token, upsampling up to max_repeat and the shortfall
beyond it, weights, tiers; written shards hold exactly the chosen docs. Counts are worked out by hand."""

import logging
from collections import Counter

import numpy as np
import pytest

from olmoflow.data.config import MixConfig
from olmoflow.data.mixing import TokDoc, plan_mix, write_domains
from olmoflow.data.shards import ShardSet

EOS = 7


def doc(source: str, domain: str, tier: int, first: int) -> TokDoc:
    """10 tokens: `first` (the document's identity) eight more times, then eos."""
    return TokDoc(source, domain, tier, 1.0, np.array([first] * 9 + [EOS], np.uint32))


def pool() -> list[TokDoc]:
    """code: 100 docs x 10 tokens (py, then c); prose: 50 x 10; math: 10 x 10 (tier 0)."""
    docs = [doc("py" if i < 50 else "c", "code", 1, 100 + i) for i in range(100)]
    docs += [doc("docs", "prose", 1, 1000 + i) for i in range(50)]
    docs += [doc("math", "math", 0, 2000 + i) for i in range(10)]
    return docs


def tokens(docs):
    return sum(d.ids.size for d in docs)


def test_shares_bound_by_the_scarcest_domain_without_repeats():
    out, stats = plan_mix("pretrain", MixConfig(domains={"code": 0.5, "prose": 0.5}), pool(), seed=0)
    assert tokens(out["prose"]) == 500 and tokens(out["code"]) == 500  # prose (500 tokens) is used once
    assert stats["code"]["sources"]["py"]["repeat"] == pytest.approx(0.5)


def test_max_repeat_upsamples_a_scarce_domain():
    out, stats = plan_mix("mid", MixConfig(domains={"code": 0.5, "math": 0.5}, max_repeat=3), pool(), seed=0)
    assert tokens(out["math"]) == 300 and tokens(out["code"]) == 300
    assert set(Counter(int(d.ids[0]) for d in out["math"]).values()) == {3}  # each math doc exactly 3 times
    assert stats["math"]["sources"]["math"]["repeat"] == pytest.approx(3.0)


def test_explicit_token_budget_and_weights():
    docs = pool()
    for d in docs:
        d.weight = 3.0 if d.source == "py" else 1.0
    out, stats = plan_mix("m", MixConfig(domains={"code": 1.0}, tokens=400), docs, seed=0)
    by_src = Counter(d.source for d in out["code"])
    assert by_src == {"py": 30, "c": 10}  # 400 tokens split 3:1 over equal-sized sources


def test_tiers_and_missing_domains():
    with pytest.raises(ValueError, match=r"curate: mix 'mid': domain 'code' has no training documents of tier <= 0"):
        plan_mix("mid", MixConfig(domains={"math": 0.5, "code": 0.5}, max_tier=0), pool(), seed=0)
    with pytest.raises(ValueError, match=r"domain 'qa' has no training documents \(domains: code, math, prose\)"):
        plan_mix("p", MixConfig(domains={"qa": 1.0}), pool(), seed=0)


def test_shuffled_deterministically():
    a, _ = plan_mix("p", MixConfig(domains={"code": 1.0}), pool(), seed=0)
    b, _ = plan_mix("p", MixConfig(domains={"code": 1.0}), pool(), seed=0)
    c, _ = plan_mix("p", MixConfig(domains={"code": 1.0}), pool(), seed=1)
    firsts = lambda m: [int(d.ids[0]) for d in m["code"]]
    assert firsts(a) == firsts(b) != firsts(c)
    assert sorted(firsts(a)) == list(range(100, 200))


def test_written_shards_hold_exactly_the_documents(tmp_path):
    out, _ = plan_mix("p", MixConfig(domains={"code": 0.5, "prose": 0.5}), pool(), seed=0)
    write_domains(tmp_path, out, shard_tokens=64)
    for dom, docs in out.items():
        shards = ShardSet(tmp_path / dom)
        assert len(shards.paths) > 1  # cut into several shards, never inside a document
        assert [d.tolist() for d in shards.documents()] == [d.ids.tolist() for d in docs]


def test_a_token_budget_is_met_to_the_token_by_cutting_one_document_per_source():
    out, stats = plan_mix("p", MixConfig(domains={"code": 0.5, "prose": 0.5}, tokens=214), pool(), seed=0)
    assert {d: s["tokens"] for d, s in stats.items()} == {"code": 107, "prose": 107}
    assert {s: v["tokens"] for s, v in stats["code"]["sources"].items()} == {"c": 54, "py": 53}  # tie: c first
    for dom in out:
        cut = [d for d in out[dom] if d.ids.size < 10]
        assert len(cut) == len(stats[dom]["sources"])  # one partial document per source
        for d in cut:  # a prefix of its document, eos kept
            assert d.ids[-1] == EOS and set(d.ids[:-1].tolist()) == {int(d.ids[0])}
    assert sorted(d.ids.size for d in out["prose"]) == [7] + [10] * 10
    assert stats["prose"]["sources"]["docs"] == {"repeat": 0.214, "docs": 11, "tokens": 107,
                                                 "available_tokens": 500, "capped": False}
    assert stats["prose"]["short_by"] == 0 and stats["prose"]["share"] == stats["prose"]["target_share"] == 0.5


def test_upsampling_stops_at_max_repeat_and_the_shortfall_is_reported(caplog):
    mix = MixConfig(domains={"math": 0.5, "prose": 0.5}, tokens=1000, max_repeat=3)
    with caplog.at_level(logging.WARNING, logger="olmoflow.data.mixing"):
        out, stats = plan_mix("mid", mix, pool(), seed=0)
    math, prose = stats["math"], stats["prose"]
    assert (math["target_tokens"], math["tokens"], math["short_by"], math["repeat"]) == (500, 300, 200, 3.0)
    assert math["sources"]["math"]["capped"] and math["sources"]["math"]["repeat"] == 3.0
    assert set(Counter(int(d.ids[0]) for d in out["math"]).values()) == {3}  # every math doc exactly 3 times
    assert (prose["tokens"], prose["short_by"], prose["repeat"]) == (500, 0, 1.0)
    assert (math["target_share"], math["share"], prose["share"]) == (0.5, 0.375, 0.625)
    assert "mix 'mid': domain 'math' gets 300 of its 500 target tokens" in caplog.text
    assert "'prose'" not in caplog.text


def test_a_capped_source_passes_its_excess_to_the_rest_of_its_domain():
    docs = pool()
    for d in docs:
        d.weight = 3.0 if d.source == "py" else 1.0
    _, stats = plan_mix("m", MixConfig(domains={"code": 1.0}, tokens=800), docs, seed=0)
    py, c = stats["code"]["sources"]["py"], stats["code"]["sources"]["c"]
    assert (py["tokens"], py["capped"], c["tokens"], c["capped"]) == (500, True, 300, False)  # 600:200 wanted
    assert stats["code"]["tokens"] == 800 and stats["code"]["short_by"] == 0
    _, stats = plan_mix("m", MixConfig(domains={"code": 1.0}, tokens=1200), docs, seed=0)
    assert (stats["code"]["tokens"], stats["code"]["short_by"]) == (1000, 200)  # both at the cap


def test_without_a_budget_weights_are_kept_and_the_heaviest_source_sets_the_size():
    docs = pool()
    for d in docs:
        d.weight = 3.0 if d.source == "py" else 1.0
    _, stats = plan_mix("m", MixConfig(domains={"code": 1.0}, max_repeat=2), docs, seed=0)
    src = stats["code"]["sources"]
    assert (src["py"]["tokens"], src["py"]["repeat"], src["c"]["tokens"]) == (1000, 2.0, 333)  # 3:1 of 1333
    assert not src["py"]["capped"] and stats["code"]["short_by"] == 0


def test_the_seed_decides_which_documents_a_budget_takes():
    mix = MixConfig(domains={"code": 1.0}, tokens=455)
    picks = [sorted(int(d.ids[0]) for d in plan_mix("p", mix, pool(), seed)[0]["code"]) for seed in (0, 0, 1)]
    assert picks[0] == picks[1] != picks[2]
    assert len(picks[0]) == 46  # 22 + 1 cut from c (228 tokens), 22 + 1 cut from py (227)
