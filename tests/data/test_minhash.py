"""MinHash LSH fuzzy dedup against planted near-duplicates of real text (Python stdlib docstrings): the oracle is
the exact Jaccard of word 5-gram sets computed here with plain Python sets, pair by pair; the vectorized hashing is
checked against a plain-Python reimplementation of the same arithmetic, and the LSH S-curve against its formula."""

import random
import re
import sys
import sysconfig
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from olmoflow.data import minhash_shingles
from olmoflow.data.config import FuzzyDedupConfig
from olmoflow.data.minhash import (
    EMPTY,
    Shingles,
    candidate_pairs,
    cluster,
    fuzzy_dedup,
    jaccard,
    permutations,
    shingle_hashes,
    signatures,
    signatures_for,
)
from olmoflow.data.minhash_shingles import WHITESPACE, shingles, word_hashes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from planted import edit  # noqa: E402  (the benchmark's planted-duplicate editor; bench/ is not a package)

CFG = FuzzyDedupConfig()


def grams(words: list[str], n: int = 5) -> set[tuple[str, ...]]:
    words = [w.lower() for w in words]
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def true_jaccard(a: list[str], b: list[str]) -> float:
    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def stdlib_docstrings(count: int) -> list[list[str]]:
    """`count` docstrings of 60+ words from the stdlib, no two sharing more than 10% of their 5-grams."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not {"site-packages", "test", "tests"} & set(p.parts))
    out: list[list[str]] = []
    chosen: list[set] = []
    for path in files:
        for m in re.finditer(r'("""|\'\'\')(.*?)\1', path.read_text(errors="replace"), re.S):
            words = m.group(2).split()
            g = grams(words)
            if len(words) >= 60 and all(len(g & c) <= 0.1 * len(g | c) for c in chosen):
                out.append(words)
                chosen.append(g)
                if len(out) == count:
                    return out
    raise AssertionError(f"only {len(out)} docstrings found under {root}")



@pytest.fixture(scope="module")
def planted():
    """300 distinct originals; 100 of them get 1-4 copies with 1-10% word edits, skewed to light edits so that
    many copy pairs stay above the threshold. (texts, family of each text, words of each text)"""
    rng = random.Random(7)
    originals = stdlib_docstrings(300)
    vocab = sorted({w for d in originals for w in d})
    docs, family = [], []
    for f, words in enumerate(originals):
        docs.append(words)
        family.append(f)
    for f in rng.sample(range(300), 100):
        for _ in range(rng.randint(1, 4)):
            docs.append(edit(originals[f], 0.01 + 0.09 * rng.random() ** 3, rng, vocab, min_len=10))
            family.append(f)
    order = list(range(len(docs)))
    rng.shuffle(order)  # copies may precede their original: "first" means input order, not "the original"
    return [" ".join(docs[i]) for i in order], [family[i] for i in order], [docs[i] for i in order]


def components(n: int, edges: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in edges:
        ri, rj = find(i), find(j)
        parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(n)]


def test_planted_near_duplicates_are_found_and_nothing_else(planted):
    texts, family, words = planted
    result = fuzzy_dedup(texts, CFG)
    same = [(i, j) for i, j in combinations(range(len(texts)), 2) if family[i] == family[j]]
    above = [(i, j) for i, j in same if true_jaccard(words[i], words[j]) >= CFG.threshold]
    assert len(above) >= 60  # the test plants enough pairs over the threshold to measure recall
    found = [(i, j) for i, j in above if result.cluster[i] == result.cluster[j]]
    assert len(found) / len(above) >= 0.95
    # precision: a cluster never spans two originals, nor two components of the true >= threshold graph
    truth = components(len(texts), above)
    for i, c in enumerate(result.cluster):
        assert family[i] == family[c] and truth[i] == truth[c], (i, c)
    # LSH misses a few links (26 x 11 finds ~90% of pairs at exactly 0.8), so a true component may stay split
    assert len(set(truth)) <= sum(result.keep) <= len(set(truth)) + 3
    # the kept document of each cluster is its first in input order
    for c in result.cluster:
        assert c == min(j for j in range(len(texts)) if result.cluster[j] == c)
    assert result.keep == [c == i for i, c in enumerate(result.cluster)]
    assert result.summary()["removed"] == len(texts) - sum(result.keep)


def test_deterministic_and_seeded(planted):
    texts = planted[0]
    a, b = fuzzy_dedup(texts, CFG), fuzzy_dedup(list(texts), CFG)
    assert a.keep == b.keep and a.cluster == b.cluster and a.candidates == b.candidates
    sh = shingles(texts[:20], 5)
    sig = signatures(sh, 286, 0)
    assert np.array_equal(sig, signatures(shingles(texts[:20], 5), 286, 0))
    assert not np.array_equal(sig, signatures(sh, 286, 1))
    assert shingle_hashes("The quick brown fox jumps", 5).tolist() == shingle_hashes("the  QUICK brown\nfox jumps",
                                                                                     5).tolist()
    # pinned values: fixed-width integer arithmetic and PCG64 permutations, so any machine gives these numbers
    fox = shingle_hashes("the quick brown fox jumps over the lazy dog", 5)
    assert fox.tolist()[:2] == [1460437437676235298, 1583477120395781727]
    assert signatures(shingles(["the quick brown fox jumps over the lazy dog"], 5), 286, 0)[0, :3].tolist() == [
        1578068534, 301564138, 771203051]


M64 = (1 << 64) - 1


def splitmix(h: int) -> int:
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & M64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


def reference_shingles(text: str, n: int) -> list[int]:
    """The module's hashing redone one word at a time with Python ints: polynomial over code points + 1, splitmix,
    n-gram chaining."""
    words = []
    for w in text.lower().split():
        h = sum((ord(c) + 1) * pow(int(minhash_shingles._POLY), j, 1 << 64) for j, c in enumerate(w)) & M64
        words.append(splitmix(h))
    if not words:
        return []
    n = min(n, len(words))
    out = []
    for p in range(len(words) - n + 1):
        h = words[p]
        for k in range(1, n):
            h = (h * 0x9E3779B97F4A7C15 + words[p + k]) & M64
        out.append(splitmix(h))
    return out


def test_bulk_hashing_matches_word_by_word_reference(planted):
    tricky = ["", "  leading and trailing  ", "one", "a\x00 b\x00", "tab\tand\u00a0nbsp\u3000ideographic\u2028line",
              "İstanbul ΣΟΦΟΣ straße ǅ", "x\x1cy\x85z", "é" * 300 + " long word", "\U0001F600 emoji 𝔘nicode"]
    texts = tricky + planted[0][:30]
    sh = shingles(texts, 5)
    for i, t in enumerate(texts):
        assert sh.values[sh.offsets[i]:sh.offsets[i + 1]].tolist() == reference_shingles(t, 5), repr(t[:40])
    words, counts = word_hashes(texts)
    assert counts.tolist() == [len(t.lower().split()) for t in texts] and words.size == counts.sum()
    assert [a.size for a in word_hashes([])] == [0, 0] and len(shingles([], 5)) == 0
    # the whitespace table is exactly what str.split() splits on
    assert set(WHITESPACE) == {c for c in range(0x3100) if chr(c).isspace()}
    assert not any(chr(c).isspace() for c in range(0x3100, 0x110000, 7))


def test_batches_and_parallel_halves_agree(planted, monkeypatch):
    texts = planted[0]
    whole = fuzzy_dedup(texts, CFG)
    sig, sh = signatures_for(texts, CFG)
    monkeypatch.setattr(minhash_shingles, "BATCH_CHARS", 3000)  # many batches, and texts longer than one
    assert len(minhash_shingles.batches(texts)) > 100
    small_sig, small_sh = signatures_for(texts, CFG)
    assert np.array_equal(sig, small_sig) and np.array_equal(sh.values, small_sh.values)
    # what parallel workers would do: each slice on its own, then one cluster() over all, in input order
    cut = [0, 97, 98, 300, len(texts)]
    parts = [signatures_for(texts[lo:hi], CFG) for lo, hi in zip(cut[:-1], cut[1:])]
    joined = cluster(np.concatenate([p[0] for p in parts]), Shingles.concat([p[1] for p in parts]), CFG)
    assert joined == whole


def test_signature_matches_reference_minimum():
    sh = shingles(["alpha beta gamma delta epsilon zeta eta theta iota kappa", "one two"], 5)
    a, b = permutations(40, 3)
    sig = signatures(sh, 40, 3)
    for d in range(2):
        xs = [v >> 32 for v in sh.values[sh.offsets[d]:sh.offsets[d + 1]].tolist()]
        assert sig[d].tolist() == [min((int(ai) * x + int(bi)) % (1 << 32) for x in xs) for ai, bi in zip(a, b)]
    assert signatures(shingles([""], 5), 40, 3).tolist() == [[int(EMPTY)] * 40]


def test_signature_agreement_estimates_jaccard(planted):
    texts, _, words = planted
    sh = shingles(texts, 5)
    sets = [sh.of(i) for i in range(len(texts))]
    sig = signatures(sh, 286, 0)
    for i in range(0, 300, 7):
        for j in (i + 1, i + 2):
            # the module's hashed sets agree with the oracle's word tuples
            assert jaccard(sets[i], sets[j]) == pytest.approx(true_jaccard(words[i], words[j]), abs=1e-9)
    ok = 0
    for i in range(len(texts)):
        j = min(range(len(texts)), key=lambda k: -1 if k == i else -jaccard(sets[i], sets[k]))
        est = float(np.mean(sig[i] == sig[j]))
        ok += abs(est - jaccard(sets[i], sets[j])) < 0.1  # 286 samples: sd <= 0.03
    assert ok / len(texts) > 0.97


@pytest.mark.parametrize("replaced", [40, 66, 130])
def test_lsh_candidate_rate_follows_the_s_curve(replaced):
    """400 independent pairs of 400-word texts, `replaced` consecutive words swapped out: Jaccard 0.80, 0.70,
    0.49. Entries must agree at rate J, and a pair must become a candidate at 1 - (1 - J^rows)^bands: this only
    holds when the 286 hash functions behave as independent random permutations."""
    texts = []
    for p in range(400):
        a = [f"p{p}w{i}" for i in range(400)]
        b = a[:135] + [f"p{p}x{i}" for i in range(replaced)] + a[135 + replaced:]
        texts += [" ".join(a), " ".join(b)]
    sh = shingles(texts, 5)
    j = true_jaccard(texts[0].split(), texts[1].split())
    assert jaccard(sh.of(0), sh.of(1)) == pytest.approx(j)
    sig = signatures(sh, 286, 0)
    assert float(np.mean(sig[0::2] == sig[1::2])) == pytest.approx(j, abs=0.01)  # sd ~0.0015
    p = 1 - (1 - j ** CFG.rows) ** CFG.bands
    rate = len(candidate_pairs(sig, CFG.bands, CFG.rows)) / 400
    assert abs(rate - p) < 4 * (p * (1 - p) / 400) ** 0.5 + 0.005


def test_exact_jaccard_rejects_lsh_false_candidates():
    base = [f"w{i}" for i in range(200)]
    # 7 scattered single-word replacements each break 5 of the 196 shingles: Jaccard 161 / 231 = 0.697
    other = list(base)
    for k in range(7):
        other[10 + k * 25] = f"x{k}"
    a, b = " ".join(base), " ".join(other)
    j = jaccard(shingle_hashes(a, 5), shingle_hashes(b, 5))
    assert j == pytest.approx(true_jaccard(base, other)) and j == 161 / 231
    # 40 bands of one row: a pair at 0.7 is a candidate with probability 1 - 0.3^40
    loose = FuzzyDedupConfig(bands=40, rows=1)
    sig = signatures(shingles([a, b], 5), 40, loose.seed)
    assert candidate_pairs(sig, 40, 1).tolist() == [[0, 1]]
    result = fuzzy_dedup([a, b], loose)
    assert result.candidates == 1 and result.confirmed == 0 and result.keep == [True, True]
    assert fuzzy_dedup([a, b], FuzzyDedupConfig(bands=40, rows=1, threshold=0.65)).keep == [True, False]


def test_short_and_empty_texts():
    assert shingle_hashes("", 5).size == 0
    assert shingle_hashes("two words", 5).size == 1
    result = fuzzy_dedup(["", "two words", "Two  words", "", "other words here"], CFG)
    assert result.keep == [True, True, False, True, True]  # empty texts are never near-duplicates
    assert result.candidates == 1
    assert fuzzy_dedup([], CFG).keep == []
