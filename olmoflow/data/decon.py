"""Decontamination after allenai's decon: a training text is contaminated by an eval item when it holds most of
the item's question as word n-grams, and, where the question alone is weak evidence, one of its answers near
that match.

Words are lowercase alphanumeric runs, so case, punctuation and spacing never matter. Each eval item (any task:
a question, or a code / instruction prompt, and its answer texts) contributes its question's word n-grams to an
inverted index. A training text is read once: every n-gram is looked up; one item's hits that lie close together
form a cluster (neighbours at most 2n+1 words apart: one edited word leaves a gap of n+1, two within n words of
each other up to 2n+1), and the item matches when one cluster holds at least `threshold` of the item's distinct
question n-grams. Then:

- Numbers are the content of a question (decon weights them up as "poison tokens"): every number of the
  question must occur in the stretch the whole question covers when the cluster is aligned with it. "36 stamps
  are packed into 3 equal boxes..." shares 8 of 9 8-grams with "108 stamps are packed into 3 equal boxes..."
  and is another problem (curate's own synthetic training and eval problems differ exactly so).
- Answers are evidence, as in decon. A question shorter than `question_only_words` words ("Which of the
  following is the most likely cause of ...?" is half stock phrase) counts only with one of its answers within
  `answer_window` words before or after that stretch: an answer shorter than n words as its exact word
  sequence, a longer one by `threshold` of its n-grams. A long question matched is enough on its own; an item
  with no answer text is judged on its question alone.
- A question shorter than n words has no n-grams: it matches where its whole word sequence occurs, and by the
  rule above needs its answer near ("What is 48 + 37?" with 85 after it; "What is 48 - 37?" is the same words,
  since + and - are not words, but its answer is 11).
- n = 8 by default (8 to 13 allowed): ARC-Easy's median question has 16 words and a third have fewer than 13,
  so 13-grams would leave those to the exact-sequence rule, where one edited word hides them; 8 words in a row
  already rarely repeat by chance, and the stock phrases that do are what the threshold and the answer rule
  are for (Tülu 3's decontamination also uses 8-grams at 0.5). All 570 ARC-Easy items planted as quizzes
  (question and choices) in news text are found; with one word of the question replaced, 58% (13-grams: 29%),
  since a question under 23 words can lose half its 8-grams to one edit.

Unlike decon we read every n-gram rather than a sample (curate's sources are small, and this costs one numpy
pass), and weight n-grams equally rather than by IDF. Speed: words become ids of the eval vocabulary (a word
no eval item uses sits in no matching n-gram: id 0), n-grams become 64-bit polynomial hashes computed in numpy
and found by binary search in a sorted array; only the rare hits reach Python, where each is checked against
the n-gram's words, so a hash collision never makes a match. The index is plain data: it pickles to Ray
workers and matches the same there.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from olmoflow.data.config import DecontamConfig

_WORD = re.compile(r"[a-z0-9]+")
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd, so each step of the polynomial is a bijection mod 2^64
_MASK = (1 << 64) - 1
_MUL_INT = int(_MUL)
EXAMPLES = 5
"""Item ids per task kept in the stats, for a person to look up."""
MIN_WORDS = 4
"""Questions of fewer words are not indexed: "What is 48 + 37?" (4) still is, "How many?" is no evidence."""


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class EvalItem:
    task: str
    id: str
    question: str
    answers: tuple[str, ...] = ()
    """Texts whose presence near a matched question confirms it (the gold choice, the reference answer)."""


def eval_items(task: str, rows: Iterable[dict]) -> list[EvalItem]:
    """EvalItems from eval/{task}.jsonl rows (any family of olmoflow/data/evalsets.py): the question, or the prompt
    of code and instruction-following rows; answered by the gold choice's text (multiple choice), the reference
    answer and its aliases (generative), the canonical solution (code), or nothing (instruction following)."""
    out = []
    for r in rows:
        gold = r.get("answer")
        if "choices" in r and isinstance(gold, int):
            answers: tuple[str, ...] = (r["choices"][gold],)
        elif gold is not None:
            # an alias is a string, or DROP's list of spans
            aliases = (a if isinstance(a, str) else ", ".join(a) for a in r.get("aliases", ()))
            answers = tuple(dict.fromkeys([str(gold), *aliases]))
        elif r.get("solution"):
            answers = (r["solution"],)
        else:
            answers = ()
        out.append(EvalItem(task, str(r["id"]), r.get("question") or r.get("prompt") or "", answers))
    return out


def _window_hashes(ids: np.ndarray, lengths: Iterable[int]) -> Iterable[tuple[int, np.ndarray]]:
    """(k, hash of every k-word window) for each k in `lengths`, built up one word at a time."""
    wanted = set(lengths)
    h = np.zeros(0, np.uint64)
    for k in range(1, max(wanted, default=0) + 1):
        count = len(ids) - k + 1
        if count <= 0:
            return
        h = h[:count] * _MUL + ids[k - 1:k - 1 + count] if k > 1 else ids.copy()
        if k in wanted:
            yield k, h


class _Table:
    """Windows of one length k: sorted hashes for the numpy lookup; hash -> (word ids, owning items)."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[tuple[int, ...], list[int]]] = {}
        self.keys = np.zeros(0, np.uint64)

    def add(self, gram: tuple[int, ...], item: int) -> int:
        """Index `gram` as one of `item`'s; returns its hash."""
        key = gram[0]
        for w in gram[1:]:
            key = (key * _MUL_INT + w) & _MASK  # the same polynomial as _window_hashes, in Python ints
        stored = self.entries.setdefault(key, (gram, []))
        if stored[0] != gram:
            raise ValueError(f"decon: two eval n-grams share the 64-bit hash {key:#x}")
        if item not in stored[1]:
            stored[1].append(item)
        return key

    def freeze(self) -> None:
        self.keys = np.array(sorted(self.entries), np.uint64)

    def hits(self, ids: np.ndarray, h: np.ndarray, where: np.ndarray, k: int) -> Iterable[tuple[int, int, list[int]]]:
        """(position, hash, owners) of each window of `ids` starting at a position in `where` that is one of this
        table's n-grams."""
        at = np.searchsorted(self.keys, h[where])
        at[at == self.keys.size] = 0
        for p in where[self.keys[at] == h[where]].tolist():
            key = int(h[p])
            gram, owners = self.entries[key]
            if tuple(ids[p:p + k].tolist()) == gram:  # the words, not just the hash
                yield p, key, owners


@dataclass
class _Item:
    length: int
    """Words in the question."""
    grams: int
    """Distinct question n-grams (0 for a question shorter than n words, matched whole)."""
    where: dict[int, int]
    """Each n-gram's (first) word position in the question, to align a match with the whole question."""
    numbers: set[int]
    """Word ids of the question's numbers: a text holding the question with other numbers holds another one."""
    answers: list[tuple[int, ...]]
    needs_answer: bool


class DeconIndex:
    """Every eval item's question n-grams (see the module docstring for when a text matches)."""

    def __init__(self, items: dict[str, list[EvalItem]], cfg: DecontamConfig = DecontamConfig()):
        self.cfg = cfg
        self.n = cfg.ngram
        self.items_per_task = {task: len(v) for task, v in items.items()}
        self._vocab: dict[str, int] = {}
        self._refs: list[tuple[str, str]] = []
        self._info: list[_Item] = []
        self._tables: dict[int, _Table] = defaultdict(_Table)
        for task, group in items.items():
            for it in group:
                if it.task != task:
                    raise ValueError(f"decon: item {it.id!r} of task {it.task!r} is listed under task {task!r}")
                self._add(it)
        self._tables = dict(self._tables)
        for t in self._tables.values():
            t.freeze()

    def _new_ids(self, ws: list[str]) -> list[int]:
        return [self._vocab.setdefault(w, len(self._vocab) + 1) for w in ws]

    def _add(self, it: EvalItem) -> None:
        ws = words(it.question)
        q = self._new_ids(ws)
        if len(q) < MIN_WORDS:
            return  # "Is she?", "How many?": a CoQA follow-up occurs in any book, whatever answer follows
        answers = [a for a in (tuple(self._new_ids(words(t))) for t in it.answers) if a]
        index = len(self._refs)
        self._refs.append((it.task, it.id))
        k = min(self.n, len(q))
        where: dict[int, int] = {}
        for i in range(len(q) - k + 1):
            where.setdefault(self._tables[k].add(tuple(q[i:i + k]), index), i)
        numbers = {w for w, s in zip(q, ws) if not s.isalpha()}  # a word of [a-z0-9] with a digit
        self._info.append(_Item(len(q), len(where) if k == self.n else 0, where, numbers, answers,
                                bool(answers) and len(q) < self.cfg.question_only_words))

    def __len__(self) -> int:
        return len(self._refs)

    def match(self, text: str) -> list[tuple[str, str]]:
        """Sorted (task, item id) of every eval item that contaminates `text`."""
        if not self.cfg.enabled or not self._refs:
            return []
        ws = words(text)
        ids = np.fromiter(map(self._vocab.get, ws, repeat(0)), np.uint64, len(ws))
        run = _known_run(ids)
        if not run.size or run.max() < min(self._tables):
            return []
        found: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for k, h in _window_hashes(ids, self._tables):
            where = np.flatnonzero(run[:h.size] >= k)  # most windows hold a word no eval item uses
            for p, key, owners in self._tables[k].hits(ids, h, where, k):
                for o in owners:
                    found[o].append((p, key))
        return sorted(self._refs[o] for o, hits in found.items() if self._matches(o, hits, ids))

    def contaminated(self, text: str) -> bool:
        return bool(self.match(text))

    def _matches(self, item: int, hits: list[tuple[int, int]], ids: np.ndarray) -> bool:
        info = self._info[item]
        if not info.grams:  # a short question: each occurrence of its whole word sequence
            spans = [(p, p + info.length) for p, _ in hits]
        else:
            spans = []
            for c in _clusters(sorted(hits), 2 * self.n + 1):
                if len({key for _, key in c}) < self.cfg.threshold * info.grams:
                    continue
                # where the whole question lies if each hit sits at its place in it
                starts = [p - info.where[key] for p, key in c]
                lo, hi = max(0, min(starts)), max(starts) + info.length
                if info.numbers <= set(ids[lo:hi].tolist()):
                    spans.append((lo, hi))
        return any(not info.needs_answer or self._answer_near(info, ids, lo, hi) for lo, hi in spans)

    def _answer_near(self, info: _Item, ids: np.ndarray, lo: int, hi: int) -> bool:
        for ans in info.answers:
            reach = max(self.cfg.answer_window, 2 * len(ans))
            for seg in (ids[max(0, lo - reach):lo].tolist(), ids[hi:hi + reach].tolist()):
                if len(ans) < self.n:
                    if any(seg[i:i + len(ans)] == list(ans) for i, w in enumerate(seg) if w == ans[0]):
                        return True
                    continue
                want = {ans[i:i + self.n] for i in range(len(ans) - self.n + 1)}
                have = {tuple(seg[i:i + self.n]) for i in range(len(seg) - self.n + 1)}
                if len(want & have) >= self.cfg.threshold * len(want):
                    return True
        return False

    def tally(self) -> DeconTally:
        """An empty tally for this index's tasks and settings."""
        return DeconTally(dict(self.items_per_task), self.cfg.enabled, self.n, self.cfg.threshold)


def _known_run(ids: np.ndarray) -> np.ndarray:
    """How many words in a row from each position are in the eval vocabulary (id > 0)."""
    pos = np.arange(ids.size)
    next_unknown = np.minimum.accumulate(np.where(ids > 0, ids.size, pos)[::-1])[::-1]
    return next_unknown - pos


def _clusters(hits: list[tuple[int, int]], gap: int) -> list[list[tuple[int, int]]]:
    """Position-sorted hits split wherever two neighbours lie more than `gap` words apart."""
    out = [[hits[0]]]
    for h in hits[1:]:
        if h[0] - out[-1][-1][0] > gap:
            out.append([])
        out[-1].append(h)
    return out


@dataclass
class DeconTally:
    """Contamination counts for stats.json: training documents hit per eval task and per (source, task), and
    which items were hit. Tallies made on separate workers add up with `merge`."""

    items: dict[str, int]
    enabled: bool = True
    ngram: int = 8
    threshold: float = 0.5
    docs: Counter = field(default_factory=Counter)
    by_source: dict[str, Counter] = field(default_factory=dict)
    hit_items: dict[str, set[str]] = field(default_factory=dict)

    def add(self, source: str, hits: list[tuple[str, str]]) -> None:
        """Count one document of `source` with these hits (an empty list counts nothing)."""
        tasks = {t for t, _ in hits}
        if not tasks:
            return
        self.docs.update(tasks)
        self.by_source.setdefault(source, Counter()).update(tasks)
        for task, item in hits:
            self.hit_items.setdefault(task, set()).add(item)

    def merge(self, other: DeconTally) -> DeconTally:
        self.docs.update(other.docs)
        for src, c in other.by_source.items():
            self.by_source.setdefault(src, Counter()).update(c)
        for task, ids in other.hit_items.items():
            self.hit_items.setdefault(task, set()).update(ids)
        return self

    def as_stats(self) -> dict:
        """stats["decontam"]: see olmoflow/data/report.py for how each key is shown."""
        tasks = sorted(set(self.items) | set(self.docs))
        return {"enabled": self.enabled, "ngram": self.ngram, "threshold": self.threshold,
                "items": {t: self.items.get(t, 0) for t in tasks},
                "hits": {t: self.docs.get(t, 0) for t in tasks},
                "items_hit": {t: len(self.hit_items.get(t, ())) for t in tasks},
                "by_source": {s: {t: c[t] for t in sorted(c)} for s, c in sorted(self.by_source.items()) if c},
                "examples": {t: sorted(ids)[:EXAMPLES] for t, ids in sorted(self.hit_items.items())}}
