"""How much of each eval set the training data still holds, after decontamination: eval/contamination.json.

Overlap, as measured here: an item is contaminated when one of its n-grams (n = curate.eval.overlap_ngram, 13 by
default, as GPT-3's and Llama's contamination studies count them) occurs in a training text curate kept; an item
shorter than n words needs its whole sequence, and one shorter than MIN_WORDS words is not measured (a CoQA turn
such as "State?" occurs in any text: it is counted clean, and `unmeasured` says how many such items a task has).
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

Speed: every training text becomes ids of the items' vocabulary (a word no item uses is 0, and no window holding
one can match), all texts in one array with a 0 between them, so each window length is one numpy pass of 64-bit
polynomial hashes (decon.py's) looked up by binary search in the items' sorted hashes; the rare hits are checked
word by word (a hash collision never counts) and for the item's numbers in Python.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from itertools import repeat

import numpy as np

from olmoflow.data.decon import _known_run, _Table, _window_hashes

_WORD = re.compile(r"[a-z0-9]+|[-+*/=<>^%$\\#&|~_@]")
MIN_WORDS = 3
"""Items with fewer words are not measured (they occur anywhere)."""


def overlap_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def item_text(row: dict) -> str:
    """The text of an eval row that overlap is measured on (see the module docstring)."""
    return row.get("question") or row.get("prompt") or ""


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
        self._offset: dict[tuple[int, int], int] = {}
        """(n-gram hash, item) -> the n-gram's first position in the item."""
        self._tables: dict[int, _Table] = defaultdict(_Table)
        for task, rows in tasks.items():
            for r in rows:
                ws = overlap_words(item_text(r))
                if len(ws) < MIN_WORDS:
                    self.unmeasured[task] += 1
                    continue
                ids = [self._vocab.setdefault(w, len(self._vocab) + 1) for w in ws]
                k = min(self.n, len(ids))
                index = len(self._refs)
                self._refs.append((task, str(r["id"])))
                self._numbers.append([(j, i) for j, (i, w) in enumerate(zip(ids, ws)) if any(c.isdigit() for c in w)])
                for j in range(len(ids) - k + 1):
                    self._offset.setdefault((self._tables[k].add(tuple(ids[j:j + k]), index), index), j)
        for t in self._tables.values():
            t.freeze()
        self.hit: set[int] = set()
        self.texts = 0

    def scan(self, texts: Iterable[str]) -> None:
        """Mark every item one of these training texts overlaps."""
        chunks = []
        for text in texts:
            ws = overlap_words(text)
            chunks.append(np.fromiter(map(self._vocab.get, ws, repeat(0)), np.uint64, len(ws)))
            chunks.append(np.zeros(1, np.uint64))  # no window crosses from one text into the next
            self.texts += 1
        if not chunks or not self._tables:
            return
        ids = np.concatenate(chunks)
        run = _known_run(ids)
        for k, h in _window_hashes(ids, self._tables):
            where = np.flatnonzero(run[:h.size] >= k)
            for p, key, owners in self._tables[k].hits(ids, h, where, k):
                for o in owners:
                    if o not in self.hit and self._numbers_in_place(ids, p - self._offset[key, o], o):
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
