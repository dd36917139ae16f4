"""Quality filters: named rules applied in order; a document is dropped by the first rule it fails, so every
dropped document is counted under exactly one rule (the name is its key in stats.json and report.md).

Each source gets one rule set (`SourceConfig.filters`; by default code for domain 'code', prose otherwise):
  prose  Gopher's quality and repetition rules (Rae et al. 2021, appendix A): word count, mean word length,
         '#' and ellipsis per word, bullet and ellipsis lines, words with a letter, stop words, duplicate lines,
         paragraphs and n-grams; then C4's boilerplate rules (Raffel et al. 2020): 'lorem ipsum', lines about
         javascript / cookies / terms of use / privacy policies, and lines holding '{'.
  code   The Stack / StarCoder / RedPajama code heuristics: the longest line, mean line length, alphanumeric share,
         an auto-generated header, encoded data (base64, hex, \\u escapes), lines of bare literals (data tables),
         duplicate lines.
  none   no rule (curated sets such as the MATH problems, whose LaTeX the prose rules misjudge).
Both sets start with too_short / too_long.

C4 removes a boilerplate *line* and keeps the rest of the page; here a rule drops the whole document when such
lines pass a share of its lines. Why: a rule judges a document and never edits it, so the text that is hashed,
deduplicated, decontaminated and tokenized is the text that was read, and every removal is one document under one
rule in the stats; C4's lines are page chrome on a web crawl ("Please enable JavaScript", "We use cookies"), but in
our sources (docs, Wikipedia, books, news) a line naming JavaScript or a privacy policy is content, and cutting it
out would leave a hole mid-paragraph. A page that is mostly chrome is still dropped, which is what C4's removal of
its lines plus its minimum-length rules end up doing. 'lorem ipsum' and '{' drop the page in C4 too.

Speed: measures are regexes and str methods over the whole text, the n-gram ones numpy over word hashes; what
several rules share (the word count, the line count, the lowercased text, the word hashes) is computed once per
document by a one-entry cache keyed by the text (first_failed hands every rule the same str object).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable

import numpy as np

from olmoflow.data.config import CodeFilterConfig, FilterConfig, FilterKind, ProseFilterConfig, SourceConfig
from olmoflow.data.minhash_shingles import MIX

Rule = Callable[[str], bool]
"""True when the document fails the rule (is dropped)."""

PUNCTUATION = string.punctuation + "“”‘’«»‹›„‚–—…·•′″§¶"
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
BOILERPLATE = ("javascript", "cookie policy", "use cookies", "uses cookies", "use of cookies", "terms of use",
               "privacy policy")

_P = re.escape(PUNCTUATION)
_WORD = re.compile(rf"(?<!\S)\S*?[^\s{_P}]")  # a whitespace-separated word with a non-punctuation character
_ALPHA_WORD = re.compile(r"(?<!\S)\S*?[^\W\d_]")  # ... with a letter
_SPACE_OR_PUNCT = re.compile(rf"[\s{_P}]+")
_STOP = re.compile(rf"\b(?:{'|'.join(STOP_WORDS)})\b", re.I)
_LINE = re.compile(r"^[ \t]*\S", re.M)
_BULLET = re.compile(r"^[ \t]*[-*•‣◦▪●–](?:\s|$)", re.M)
_ELLIPSIS_LINE = re.compile(r"(?:\.\.\.|…)[ \t]*$", re.M)
_HASHES = re.compile(r"#+")
_ELLIPSES = re.compile(r"\.{3,}|…+")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n")
_BOILERPLATE_LINE = re.compile(rf"^[^\n]*(?:{'|'.join(BOILERPLATE)})", re.M | re.I)
_CURLY_LINE = re.compile(r"^[^\n]*\{", re.M)
_NOT_ALNUM = re.compile(r"[\W_]+")
# StarCoder's encoded-data patterns: base64-like runs, hex byte lists, \uXXXX escape runs; the lookbehind makes
# a base64 run start only where a run starts, keeping the scan linear
_ENCODED = re.compile(r"(?<![A-Za-z0-9+/=\n])[A-Za-z0-9+/=\n]{64,}"
                      r"|(?:\b(?:0x|\\x)?[0-9a-fA-F]{2}(?:\s*,\s*|\b\s*)){8,}|(?:\\u[0-9a-fA-F]{4}){8,}")
# Data lines in two linear passes: every literal (a one-line string, a number, True/False/None...) becomes "0"
# (triple quotes become "Q", so a one-line docstring is not a literal), then a line of only 0s and separators,
# perhaps with a trailing comment, is data.
_LITERAL = re.compile(r"(?<!\w)[rRbBuUfF]{0,2}(?:\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')"
                      r"|(?<![\w.])(?:0[xXoObB][0-9a-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?[jJlL]?|\.\d+)(?!\w)"
                      r"|\b(?:True|False|None|null|true|false|nil)\b")
_DATA_LINE = re.compile(r"^[ \t]*(?=[^\n#]*0)[-+\[\](){},;:=>0 \t]*(?:(?:#|//)[^\n]*)?$", re.M)


# ---- measures ------------------------------------------------------------------------------------------------

def alnum_fraction(text: str) -> float:
    """Letters and digits among all characters, whitespace included, as StarCoder counts (1.0 when empty)."""
    return len(_NOT_ALNUM.sub("", text)) / len(text) if text else 1.0


def dup_line_fraction(text: str, min_len: int = 10) -> float:
    """Share of substantial lines (>= min_len chars, stripped) that repeat an earlier line of the document."""
    lines = [s for s in map(str.strip, text.split("\n")) if len(s) >= min_len]
    return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


@functools.lru_cache(maxsize=1)
def word_count(text: str) -> int:
    """Words that hold a character other than punctuation (Gopher counts these)."""
    return len(_WORD.findall(text))


def mean_word_length(text: str) -> float:
    """Characters other than space and punctuation per counted word (punctuation glued to words not counted)."""
    n = word_count(text)
    return len(_SPACE_OR_PUNCT.sub("", text)) / n if n else 0.0


def symbol_ratio(text: str) -> float:
    """The larger of '#' per word and '...'/'…' per word, a run counting once (a reStructuredText '####'
    underline or a '.....' leader is one symbol; '#tag #tag' is two)."""
    hashes = len(_HASHES.findall(text)) if "#" in text else 0  # the substring test is far faster than the scan
    ellipses = len(_ELLIPSES.findall(text)) if "..." in text or "…" in text else 0
    return max(hashes, ellipses) / max(word_count(text), 1)


@functools.lru_cache(maxsize=1)
def nonempty_lines(text: str) -> int:
    return len(_LINE.findall(text))


@functools.lru_cache(maxsize=1)
def lowered(text: str) -> str:
    return text.lower()


def line_share(pattern: re.Pattern[str], text: str) -> float:
    """Share of non-empty lines that `pattern` (anchored so it matches once per line) matches."""
    n = nonempty_lines(text)
    return len(pattern.findall(text)) / n if n else 0.0


def alpha_word_fraction(text: str) -> float:
    """Share of the counted words (word_count) that hold a letter (1.0 for none). Pure punctuation (bullets,
    table rules, reStructuredText underlines) is not a word here: the symbol and bullet rules judge markup, this
    one numbers, codes and dumps."""
    n = word_count(text)
    return len(_ALPHA_WORD.findall(text)) / n if n else 1.0


def has_stop_words(text: str, k: int) -> bool:
    """At least k occurrences of the Gopher stop words (stops scanning at the k-th)."""
    if k <= 0:
        return True
    for i, _ in enumerate(_STOP.finditer(text), 1):
        if i >= k:
            return True
    return False


def duplicate_fractions(parts: list[str]) -> tuple[float, float]:
    """(share of parts that repeat an earlier one, share of the parts' characters in those repeats)."""
    if not parts:
        return 0.0, 0.0
    unique = set(parts)
    chars = sum(map(len, parts))
    return (len(parts) - len(unique)) / len(parts), (chars - sum(map(len, unique))) / chars if chars else 0.0


def dup_lines(text: str) -> tuple[float, float]:
    """duplicate_fractions of the non-empty lines, stripped."""
    return duplicate_fractions([s for s in map(str.strip, text.split("\n")) if s])


def dup_paras(text: str) -> tuple[float, float]:
    """duplicate_fractions of the paragraphs (split at blank lines), stripped."""
    return duplicate_fractions([s for s in map(str.strip, _PARAGRAPHS.split(text)) if s])


@functools.lru_cache(maxsize=1)
def word_hashes(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash of each word, its length); n-grams are hashed from these by a polynomial, equal words equal
    hashes within a process, which is all the n-gram measures compare."""
    ws = text.split()
    h = np.fromiter(map(hash, ws), np.int64, len(ws)).view(np.uint64)
    return h, np.fromiter(map(len, ws), np.int64, len(ws))


def _ngrams(h: np.ndarray, n: int) -> np.ndarray:
    g = h[:h.size - n + 1].copy()
    for k in range(1, n):
        g = g * MIX + h[k:h.size - n + 1 + k]
    return g


def top_ngram_fraction(text: str, n: int) -> float:
    """Share of word characters covered by the most frequent word n-gram (its characters times its count; of
    several equally frequent, the one that comes first, as a Counter would pick); 0 when no n-gram repeats."""
    h, lens = word_hashes(text)
    total = int(lens.sum())
    if h.size < n or not total:
        return 0.0
    _, first, counts = np.unique(_ngrams(h, n), return_index=True, return_counts=True)
    top = int(counts.max())
    if top < 2:
        return 0.0
    i = int(first[counts == top].min())
    return float(lens[i:i + n].sum() * top / total)


def dup_ngram_fraction(text: str, n: int) -> float:
    """Share of word characters inside an occurrence of a word n-gram that already occurred earlier (a word in
    several such occurrences counts once; first occurrences do not count, as in datatrove's Gopher filter)."""
    h, lens = word_hashes(text)
    total = int(lens.sum())
    if h.size < n or not total:
        return 0.0
    _, first, inverse = np.unique(_ngrams(h, n), return_index=True, return_inverse=True)
    starts = np.nonzero(first[inverse] != np.arange(inverse.size))[0]
    if not starts.size:
        return 0.0
    depth = np.cumsum(np.bincount(starts, minlength=h.size + 1) - np.bincount(starts + n, minlength=h.size + 1))
    return float(lens[depth[:h.size] > 0].sum() / total)


def dup_ngram_exceeds(text: str, limits: dict[int, float]) -> bool:
    """Whether dup_ngram_fraction passes its limit for any n. The fraction never grows with n (the n-grams inside a
    repeated (n+1)-gram repeat too), so once one is under every limit left the larger n are skipped: on most
    documents only the 5-grams are hashed."""
    todo = sorted(limits.items())
    for k, (n, limit) in enumerate(todo):
        fraction = dup_ngram_fraction(text, n)
        if fraction > limit:
            return True
        if fraction <= min(x for _, x in todo[k:]):
            return False
    return False


def boilerplate_share(text: str) -> float:
    """Share of non-empty lines naming javascript, cookies, terms of use or a privacy policy (C4's list); the
    line count runs only when a phrase is there at all, which plain substring search finds fast."""
    low = lowered(text)
    return line_share(_BOILERPLATE_LINE, text) if any(b in low for b in BOILERPLATE) else 0.0


def curly_share(text: str) -> float:
    """Share of non-empty lines holding '{'."""
    return line_share(_CURLY_LINE, text) if "{" in text else 0.0


def max_line_length(text: str) -> int:
    return max(map(len, text.split("\n")))


def mean_line_length(text: str) -> float:
    """Characters per line, newlines not counted."""
    lines = text.count("\n") + 1
    return (len(text) - lines + 1) / lines


def autogenerated(text: str, lines: int, markers: list[str]) -> bool:
    """A marker phrase in the first `lines` lines (case-insensitive)."""
    head = "\n".join(text.split("\n", lines)[:lines]).lower()
    return any(m in head for m in markers)


def encoded_fraction(text: str) -> float:
    """Share of characters in base64-like runs, hex byte lists and \\uXXXX escape runs."""
    return sum(len(m) for m in _ENCODED.findall(text)) / len(text) if text else 0.0


def data_line_fraction(text: str) -> float:
    """Share of non-empty lines that hold only literals and separators (and perhaps a trailing comment)."""
    n = nonempty_lines(text)
    masked = _LITERAL.sub("0", text.replace('"""', "Q").replace("'''", "Q"))
    return len(_DATA_LINE.findall(masked)) / n if n else 0.0


# ---- rule sets -----------------------------------------------------------------------------------------------

def kind_of(source: SourceConfig) -> FilterKind:
    """The rule set a source gets: its `filters`, else code for domain 'code' and prose for everything else."""
    if source.filters is not None:
        return source.filters
    return "code" if source.domain == "code" else "prose"


def prose_rules(p: ProseFilterConfig) -> dict[str, Rule]:
    """Gopher's quality rules (cheap counts first), its repetition rules, then C4's boilerplate rules."""
    return {
        "word_count": lambda t: not p.min_words <= word_count(t) <= p.max_words,
        "word_length": lambda t: not p.min_mean_word <= mean_word_length(t) <= p.max_mean_word,
        "symbols": lambda t: symbol_ratio(t) > p.max_symbol_ratio,
        "bullet_lines": lambda t: line_share(_BULLET, t) > p.max_bullet_lines,
        "ellipsis_lines": lambda t: line_share(_ELLIPSIS_LINE, t) > p.max_ellipsis_lines,
        "alpha_words": lambda t: alpha_word_fraction(t) < p.min_alpha_words,
        "stop_words": lambda t: not has_stop_words(t, p.min_stop_words),
        "dup_lines": lambda t: _over(dup_lines(t), p.max_dup_lines, p.max_dup_line_chars),
        "dup_paras": lambda t: _over(dup_paras(t), p.max_dup_paras, p.max_dup_para_chars),
        "top_ngram": lambda t: any(top_ngram_fraction(t, n) > x for n, x in sorted(p.max_top_ngram.items())),
        "dup_ngram": lambda t: dup_ngram_exceeds(t, p.max_dup_ngram),
        "lorem_ipsum": lambda t: p.lorem_ipsum and "lorem ipsum" in lowered(t),
        "boilerplate": lambda t: boilerplate_share(t) > p.max_boilerplate_lines,
        "curly_brace": lambda t: curly_share(t) > p.max_curly_lines,
    }


def _over(fractions: tuple[float, float], max_parts: float, max_chars: float) -> bool:
    return fractions[0] > max_parts or fractions[1] > max_chars


def code_rules(c: CodeFilterConfig) -> dict[str, Rule]:
    """Line shape first (cheapest), then content: alphanumerics, generated header, encoded data, data tables,
    duplicate lines."""
    markers = [m.lower() for m in c.autogen_markers]
    return {
        "long_line": lambda t: max_line_length(t) > c.max_line_chars,
        "mean_line": lambda t: mean_line_length(t) > c.max_mean_line,
        "low_alnum": lambda t: alnum_fraction(t) < c.min_alnum,
        "autogenerated": lambda t: autogenerated(t, c.autogen_lines, markers),
        "encoded_data": lambda t: encoded_fraction(t) > c.max_encoded,
        "data_lines": lambda t: data_line_fraction(t) > c.max_data_lines,
        "repetitive": lambda t: dup_line_fraction(t) > c.max_dup_lines,
    }


def rules(cfg: FilterConfig, kind: FilterKind) -> dict[str, Rule]:
    """The rules of one set, in the order they are tried: the length bounds first, then the set's own."""
    if kind == "none":
        return {}
    own = prose_rules(cfg.prose) if kind == "prose" else code_rules(cfg.code)
    return {"too_short": lambda t: len(t) < cfg.min_chars, "too_long": lambda t: len(t) > cfg.max_chars, **own}


def first_failed(text: str, checks: dict[str, Rule]) -> str | None:
    """The name of the first rule the text fails, or None when it passes them all."""
    for name, fails in checks.items():
        if fails(text):
            return name
    return None
