"""OlmoTrace's span rules over a model's output.

1. Maximal spans: for each token that starts a word, the longest token sequence from it that occurs verbatim in
   the index (one pass: the longest match from a later start never ends earlier, so each start costs O(1) counts).
2. Self-contained: a span starts and ends on word boundaries of the text (no partial words) and holds no sentence
   break inside (a newline, or . ! ? followed by a space; one may end it); it is cut back to its longest
   self-contained prefix, needs `min_words` words, and one inside another is dropped.
3. Long and rare first: ranked by the span's unigram log-probability (the sum of its tokens' log p in the index:
   low for long spans of rare tokens); the top ceil(density x tokens) are kept, at least one.
4. For display, overlapping spans merge into one (their documents pooled, up to `max_docs`); character offsets are
   into the text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from olmoflow.trace.index import Hit, TraceIndex
from olmoflow.trace.tokens import encode

_BREAK = re.compile(r"\n|[.!?](?=\s)")
_WORD = re.compile(r"\w+")
MARK = "**"
"""A snippet marks the span as **span**."""


@dataclass
class Span:
    start: int
    end: int
    text: str
    count: int
    """Occurrences in the training data (for a merged span: of its most frequent part)."""
    logprob: float
    hits: list[Hit] = field(default_factory=list)
    parts: list[Span] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end, "count": self.count,
                "docs": [{"source": h.row["source"], "doc_id": h.row["doc_id"], "doc_ix": h.doc_ix,
                          "part": h.row["part"], "shard": h.row["shard"], "offset": h.row["offset"],
                          "snippet": f"{h.before}{MARK}{h.match}{MARK}{h.after}"} for h in self.hits],
                "parts": [{"start": p.start, "end": p.end, "count": p.count} for p in self.parts]}


def _boundary(text: str, i: int) -> bool:
    """Whether character position i is not inside a word."""
    return i <= 0 or i >= len(text) or not (text[i - 1].isalnum() and text[i].isalnum())


def _contained(text: str, a: int, b: int, min_words: int) -> tuple[int, int] | None:
    """The stripped [start, end) of text[a:b] if it is a self-contained span, else None."""
    if not (_boundary(text, a) and _boundary(text, b)):
        return None
    inner = text[a:b]
    s = a + len(inner) - len(inner.lstrip())
    e = b - (len(inner) - len(inner.rstrip()))
    inner = text[s:e]
    if not inner or _BREAK.search(inner) or len(_WORD.findall(inner)) < min_words:
        return None
    return s, e


def find_spans(index: TraceIndex, text: str, min_words: int = 3, density: float = 0.05, max_spans: int | None = None,
               max_docs: int = 10, context: int = 24) -> list[Span]:
    """The spans of `text` found in the index, merged for display, in text order."""
    ids, offsets = encode(index.tokenizer, text)
    q = index.dense(ids)
    n = len(q)
    found: list[tuple[int, int, int, int]] = []  # (l, r, start, end)
    r = 0
    for lo in range(n):
        if not _boundary(text, offsets[lo][0]):
            continue
        r = max(r, lo)
        while r < n and index.count(q[lo:r + 1]) > 0:
            r += 1
        for hi in range(r, lo, -1):  # the longest self-contained prefix of the maximal match
            got = _contained(text, offsets[lo][0], offsets[hi - 1][1], min_words)
            if got:
                found.append((lo, hi, *got))
                break
    kept, reach = [], -1
    for lo, hi, s, e in found:  # starts ascend: one ending no later than an earlier one lies inside it
        if hi > reach:
            kept.append((lo, hi, s, e))
            reach = hi
    spans = []
    for lo, hi, s, e in kept:
        cnt, segments = index.find(q[lo:hi])
        spans.append((Span(s, e, text[s:e], cnt, float(index.logp[q[lo:hi]].sum())), q[lo:hi], segments))
    top = max_spans if max_spans is not None else max(1, math.ceil(density * n))
    spans = sorted(spans, key=lambda t: (t[0].logprob, t[0].start))[:top]
    for sp, dense, segments in spans:
        sp.hits = index.hits(dense, segments, max_docs, context)
    return merge([sp for sp, _, _ in spans], max_docs, text)


def merge(spans: list[Span], max_docs: int, text: str) -> list[Span]:
    """Overlapping spans as one display span over their union, in text order."""
    out: list[Span] = []
    for sp in sorted(spans, key=lambda s: (s.start, s.end)):
        if out and sp.start < out[-1].end:
            m = out[-1]
            m.parts.append(sp)
            m.end = max(m.end, sp.end)
            m.text = text[m.start:m.end]
            m.count = max(m.count, sp.count)
            m.logprob = min(m.logprob, sp.logprob)
            have = {(h.row["source"], h.row["doc_id"]) for h in m.hits}
            m.hits += [h for h in sp.hits if (h.row["source"], h.row["doc_id"]) not in have][:max_docs - len(m.hits)]
        else:
            out.append(Span(sp.start, sp.end, sp.text, sp.count, sp.logprob, list(sp.hits), [sp]))
    return out
