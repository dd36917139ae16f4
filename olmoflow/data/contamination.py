"""How much of each eval set the training data still holds, after decontamination: eval/contamination.json.

Overlap, as measured here: an item is contaminated when one of its n-grams (n = curate.eval.overlap_ngram, 13 by
default, as GPT-3's and Llama's contamination studies count them) occurs in a training text curate kept; an item
shorter than n words needs its whole sequence, and one shorter than MIN_WORDS (5) words only if it holds a number
("What is 48 + 37?"): CoQA's "What is it called?" or PIQA's "How to Meditate" occur in any text, so such an item
is counted clean and `unmeasured` says how many a task has.
Words are lowercase alphanumeric runs, plus each of + - * / = < > ^ % $ \\ # & | ~ _ @ as a word of its own
(in "What is 48 + 37?" the operator is the content), so case, spacing and punctuation never matter. Numbers are
content too, as in decon.py: a shared n-gram counts only where the whole item, aligned on it, has every one of its
numbers in place in the training text, so a templated problem with other operands ("There are 12 rows of coins
with 7 coins in every row...") is another problem. An item's words are its question (multiple choice and
generative tasks: no passage, no answer) or its prompt (code and instruction following). Training texts are what
the model actually trains on: the documents the pretrain and midtrain mixes and long/ hold (synthetic ones
included), and every post-training row's text (SFT conversations, DPO prompts and replies, RL prompts with their
answers). Few-shot pools and held-out val text are not training data.

This is a measurement, not a filter: decon.py drops training texts by its own, stricter-evidence rule (most of a
question's 8-grams with its answer near), so what remains here is overlap below that bar: a shared sentence, a
stock phrase 13 words long, a short question quoted whole.

Speed: items and training texts alike become ids of the items' vocabulary (a word no item uses is 0, and no
window holding one can match), all in one array each with a 0 between texts, so each window length is one numpy
pass of 64-bit polynomial hashes (decon.py's): a bitmap of the items' hashes passes ~1% of the windows on to a
binary search in the sorted hashes, and the rare hits are checked word by word (a hash collision never counts) and
for the item's numbers in Python.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from itertools import repeat

import numpy as np

from olmoflow.data.decon import _known_run, _window_hashes

_WORD = re.compile(r"[a-z0-9]+|[-+*/=<>^%$\\#&|~_@]")
MIN_WORDS = 5
"""Items with fewer words and no number are not measured (they occur anywhere)."""
_BLOOM_BITS = 24


def overlap_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def item_text(row: dict) -> str:
    """The text of an eval row that overlap is measured on (see the module docstring)."""
    return row.get("question") or row.get("prompt") or ""


def _joined(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(the sequences in one array, a 0 after each; each one's start)."""
    lengths = np.array([len(s) + 1 for s in seqs], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out = np.zeros(int(lengths.sum()), np.uint64)
    for s, at in zip(seqs, starts.tolist()):
        out[at:at + len(s)] = s
    return out, starts


class OverlapScan:
    """Feed it training texts with `scan`, then `result()` gives per task {items, contaminated, share, ids, ngram,
    unmeasured}."""

    def __init__(self, tasks: dict[str, list[dict]], ngram: int = 13):
        self.n = ngram
        self.tasks = {t: [str(r["id"]) for r in rows] for t, rows in tasks.items()}
        self.unmeasured: dict[str, int] = defaultdict(int)
        self._vocab: dict[str, int] = {}
        self._refs: list[tuple[str, str]] = []
        self._numbers: list[list[tuple[int, int]]] = []
        """Per item: (position in the item, word id) of each number."""
        seqs = []
        for task, rows in tasks.items():
            for r in rows:
                ws = overlap_words(item_text(r))
                numbers = [j for j, w in enumerate(ws) if w.isalnum() and not w.isalpha()]  # [a-z0-9]+ with a digit
                if len(ws) < MIN_WORDS and not numbers:
                    self.unmeasured[task] += 1
                    continue
                ids = [self._vocab.setdefault(w, len(self._vocab) + 1) for w in ws]
                self._refs.append((task, str(r["id"])))
                self._numbers.append([(j, ids[j]) for j in numbers])
                seqs.append(np.array(ids, np.uint64))
        self.hit: set[int] = set()
        self.texts = 0
        self._tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        """k -> (sorted hashes of the items' k-word windows, their item, their position in the joined items)."""
        if not seqs:
            return
        self._items, starts = _joined(seqs)
        lengths = np.array([len(s) for s in seqs], np.int64)
        owner = np.repeat(np.arange(len(seqs)), lengths + 1)
        k_of = np.minimum(lengths, self.n)  # an item's window length: n, or all of a shorter item
        run = _known_run(self._items)
        self._bloom = np.zeros(1 << _BLOOM_BITS, bool)
        for k, h in _window_hashes(self._items, set(k_of.tolist())):
            pos = np.flatnonzero((run[:h.size] >= k) & (k_of[owner[:h.size]] == k))
            order = np.argsort(h[pos], kind="stable")
            self._tables[k] = (h[pos][order], owner[pos][order], pos[order])
            self._bloom[(h[pos] >> np.uint64(64 - _BLOOM_BITS)).astype(np.int64)] = True
        self._starts = starts

    def scan(self, texts: Iterable[str]) -> None:
        """Mark every item one of these training texts overlaps."""
        chunks = []
        for text in texts:
            ws = overlap_words(text)
            chunks.append(np.fromiter(map(self._vocab.get, ws, repeat(0)), np.uint64, len(ws)))
            self.texts += 1
        if not chunks or not self._tables:
            return
        ids, _ = _joined(chunks)  # no window crosses from one text into the next
        run = _known_run(ids)
        for k, h in _window_hashes(ids, self._tables):
            keys, owners, where = self._tables[k]
            cand = np.flatnonzero(run[:h.size] >= k)
            cand = cand[self._bloom[(h[cand] >> np.uint64(64 - _BLOOM_BITS)).astype(np.int64)]]
            lo = np.searchsorted(keys, h[cand], "left")
            hi = np.searchsorted(keys, h[cand], "right")
            for p, a, b in zip(cand[hi > lo].tolist(), lo[hi > lo].tolist(), hi[hi > lo].tolist()):
                window = ids[p:p + k]
                for o, q in zip(owners[a:b].tolist(), where[a:b].tolist()):
                    if o in self.hit or not np.array_equal(window, self._items[q:q + k]):
                        continue
                    if self._numbers_in_place(ids, p - (q - int(self._starts[o])), o):
                        self.hit.add(o)

    def _numbers_in_place(self, ids: np.ndarray, start: int, item: int) -> bool:
        return all(0 <= start + j < ids.size and int(ids[start + j]) == w for j, w in self._numbers[item])

    def result(self) -> dict[str, dict]:
        """{task: {"items", "contaminated", "share" (of all its items), "ids" (sorted), "ngram", "unmeasured"}}."""
        hit_ids: dict[str, set[str]] = defaultdict(set)
        for i in self.hit:
            task, item = self._refs[i]
            hit_ids[task].add(item)
        out = {}
        for task, ids in self.tasks.items():
            k = len(hit_ids[task])
            out[task] = {"items": len(ids), "contaminated": k, "share": round(k / len(ids), 6) if ids else 0.0,
                         "ids": sorted(hit_ids[task]), "ngram": self.n, "unmeasured": self.unmeasured[task]}
        return out
