"""A corpus with planted near-duplicates and known clusters, and how a dedup is scored against it.

Originals are real documents: the Linux kernel and Python documentation that `make data` fetches into
.olmoflow/sources (the Python standard library's own source files when those are absent), cut at blank lines into
documents of MIN_WORDS..MAX_WORDS words, and only those that share at most 20% of their word 5-grams with every
original chosen before them (checked with plain Python sets), so originals are not near-duplicates of each other.
A third of the originals get copies, each made by word edits (substitute, delete or insert a corpus word) at a rate
drawn uniformly from 1-10% of its words. An original and its copies form a family; the corpus is shuffled, so a copy
may come before its original.

Scoring: a dedup keeps one document of each family ideally and removes the rest. A removal is correct while its
family still has a kept member: for a family of m documents of which r were removed, min(r, m - 1) removals are
correct (so a system that removes a whole family, or an original without copies, is charged for it). precision =
correct / removed, recall = correct / sum over families of (m - 1), F1 their harmonic mean.
"""

from __future__ import annotations

import random
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SOURCES = ("linux-docs/**/*.rst", "python-docs/**/*.rst.txt")
MIN_WORDS, MAX_WORDS = 60, 1200
COPY_SHARE = 0.4  # of all documents
EDIT_RATES = (0.01, 0.10)
N = 5  # word n-grams of the distinctness check and of the Jaccard reported per copy


@dataclass
class Planted:
    texts: list[str]
    family: list[int]
    """family[i]: the index (in `texts`) of document i's original; an original is its own."""
    rate: list[float]
    """The edit rate a copy was made with; 0 for originals."""
    jaccard: list[float]
    """Word 5-gram Jaccard of each document with its original (lowercased words, as olmoflow shingles)."""


@dataclass
class Score:
    removed: int
    correct: int
    positives: int

    @property
    def precision(self) -> float:
        return self.correct / self.removed if self.removed else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.positives if self.positives else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score(removed: set[int], family: list[int]) -> Score:
    """Precision and recall of the removed document indices against the planted families (module docstring)."""
    size = Counter(family)
    gone = Counter(family[i] for i in removed)
    correct = sum(min(r, size[f] - 1) for f, r in gone.items())
    return Score(len(removed), correct, sum(m - 1 for m in size.values()))


def grams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + N]) for i in range(len(words) - N + 1)}


def source_files(sources_dir: Path | None) -> list[Path]:
    """The documentation files under sources_dir; the stdlib's .py files if there are none."""
    files = sorted(p for g in SOURCES for p in sources_dir.glob(g)) if sources_dir else []
    if files:
        return files
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not {"site-packages", "test", "tests", "idlelib"} & set(p.parts))


def documents(files: list[Path]):
    """Documents of MIN_WORDS..MAX_WORDS words: each file's blank-line-separated blocks, packed in order."""
    for path in files:
        parts: list[str] = []
        words = 0
        for block in path.read_text(errors="replace").split("\n\n"):
            n = len(block.split())
            if words and words + n > MAX_WORDS:
                if words >= MIN_WORDS:
                    yield "\n\n".join(parts)
                parts, words = [], 0
            parts.append(block)
            words += n
        if words >= MIN_WORDS:
            yield "\n\n".join(parts)


def originals(count: int, sources_dir: Path | None) -> list[str]:
    """`count` documents, none sharing more than 20% of its 5-grams with an earlier one."""
    seen: dict[tuple[str, ...], list[int]] = {}
    out: list[str] = []
    for text in documents(source_files(sources_dir)):
        g = grams(text.lower().split())
        overlap = Counter(k for s in g for k in seen.get(s, ()))
        if overlap and overlap.most_common(1)[0][1] > 0.2 * len(g):
            continue
        for s in g:
            seen.setdefault(s, []).append(len(out))
        out.append(text)
        if len(out) == count:
            return out
    raise ValueError(f"planted: only {len(out)} distinct documents in {sources_dir}, {count} asked for")


def edit(words: list[str], rate: float, rng: random.Random, vocab: list[str], min_len: int = MIN_WORDS // 2
         ) -> list[str]:
    """A copy with round(rate * len) words replaced, deleted or inserted (never deleted below min_len)."""
    out = list(words)
    for _ in range(max(1, round(rate * len(words)))):
        i = rng.randrange(len(out))
        op = rng.random()
        if op < 0.5:
            out[i] = rng.choice(vocab)
        elif op < 0.75 and len(out) > min_len:
            del out[i]
        else:
            out.insert(i, rng.choice(vocab))
    return out


def build(docs: int, seed: int, sources_dir: Path | None) -> Planted:
    """`docs` documents: (1 - COPY_SHARE) originals, and copies of a third of them (module docstring)."""
    rng = random.Random(seed)
    base = originals(round(docs * (1 - COPY_SHARE)), sources_dir)
    vocab = sorted({w for t in base for w in t.split()})
    parents = rng.sample(range(len(base)), max(1, len(base) // 3))
    texts, family, rate = list(base), list(range(len(base))), [0.0] * len(base)
    for _ in range(docs - len(base)):
        f, r = rng.choice(parents), rng.uniform(*EDIT_RATES)
        texts.append(" ".join(edit(base[f].split(), r, rng, vocab)))
        family.append(f)
        rate.append(r)
    order = list(range(docs))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    sets = [grams(t.lower().split()) for t in texts]
    jac = [len(sets[i] & sets[family[i]]) / len(sets[i] | sets[family[i]]) for i in range(docs)]
    return Planted([texts[i] for i in order], [where[family[i]] for i in order], [rate[i] for i in order],
                   [jac[i] for i in order])
