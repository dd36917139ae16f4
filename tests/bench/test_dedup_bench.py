"""The dedup benchmark's core (bench/dedup.py, bench/planted.py) on a small planted corpus from the stdlib's own
files: the scoring against hand-worked families, the corpus' promises (checked with plain Python sets), and both
systems' removals against the planted truth (datatrove's only where it is installed: requirements-bench.txt)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


planted = load("planted")
dedup = load("dedup")


def test_score_against_hand_worked_families():
    family = [0, 0, 0, 3, 4, 4]  # docs 0-2 one family, 3 alone, 4-5 a pair: 2 + 0 + 1 = 3 documents to remove
    perfect = planted.score({1, 2, 5}, family)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    half = planted.score({2, 4}, family)  # either member of a family may go
    assert (half.correct, half.precision, half.recall) == (2, 1.0, pytest.approx(2 / 3))
    wiped = planted.score({0, 1, 2, 3}, family)  # a whole family and a lone original: two wrong removals
    assert (wiped.removed, wiped.correct) == (4, 2)
    assert wiped.precision == 0.5 and wiped.recall == pytest.approx(2 / 3)
    assert wiped.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    none = planted.score(set(), family)
    assert (none.precision, none.recall, none.f1) == (1.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def corpus():
    return planted.build(300, seed=0, sources_dir=None)  # None: the stdlib's .py files, present everywhere


def test_planted_corpus_keeps_its_promises(corpus):
    again = planted.build(300, seed=0, sources_dir=None)
    assert again.texts == corpus.texts and again.family == corpus.family
    n = len(corpus.texts)
    originals = [i for i in range(n) if corpus.family[i] == i]
    assert n == 300 and len(originals) == 180
    for i in range(n):
        f = corpus.family[i]
        assert corpus.family[f] == f and (corpus.rate[i] == 0) == (i == f)
        if i != f:
            assert 0.01 <= corpus.rate[i] <= 0.10
            words, base = corpus.texts[i].split(), corpus.texts[f].split()
            assert abs(len(words) - len(base)) <= max(1, round(corpus.rate[i] * len(base)))
            g, h = planted.grams(corpus.texts[i].lower().split()), planted.grams(corpus.texts[f].lower().split())
            assert corpus.jaccard[i] == pytest.approx(len(g & h) / len(g | h))
    sets = [planted.grams(corpus.texts[i].lower().split()) for i in originals]
    for a in range(len(sets)):  # no original is a near-duplicate of another
        for b in range(a + 1, len(sets)):
            assert len(sets[a] & sets[b]) <= 0.2 * max(len(sets[a]), len(sets[b]))
    copies = [j for j, r in zip(corpus.jaccard, corpus.rate) if r]
    assert min(copies) < 0.6 and sum(j >= 0.8 for j in copies) >= 10  # a spread on both sides of the threshold


def found_every_close_copy(removed: set[int], corpus) -> bool:
    """Every family with a copy at Jaccard >= 0.9 to its original (an LSH miss there has probability ~6e-5)
    lost at least one member."""
    close = {corpus.family[i] for i, j in enumerate(corpus.jaccard) if corpus.rate[i] and j >= 0.9}
    hit = {corpus.family[i] for i in removed}
    return bool(close) and close <= hit


def test_olmoflow_side(corpus):
    removed = dedup.olmoflow_dedup(corpus.texts, threads=1)
    fam = planted.score(removed, corpus.family)
    components = dedup.threshold_families(corpus)
    at = planted.score(removed, components)
    assert fam.precision == 1.0 and at.precision == 1.0  # the exact check never removes a copy under 0.8
    assert at.recall >= 0.9 and found_every_close_copy(removed, corpus)
    assert fam.recall < at.recall  # copies far under the threshold stay, by design
    assert dedup.olmoflow_dedup(corpus.texts, threads=2) == removed  # signatures in worker processes


def test_datatrove_side(corpus, tmp_path):
    pytest.importorskip("datatrove")
    dedup.write_datatrove_input(corpus.texts, tmp_path / "input", threads=1)
    removed = dedup.datatrove_dedup(tmp_path, threads=1)
    fam = planted.score(removed, corpus.family)
    assert fam.precision >= 0.99 and found_every_close_copy(removed, corpus)
    # no exact check: datatrove also removes LSH candidates under 0.8, so it beats olmoflow's planted recall
    assert fam.recall >= planted.score(dedup.olmoflow_dedup(corpus.texts, threads=1), corpus.family).recall
