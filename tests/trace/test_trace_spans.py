"""OlmoTrace's span rules: planted spans are found with their document; text absent from the training data, and
held-out (val) text, finds none; spans are self-contained, maximal, and merged for display."""

from __future__ import annotations

from tracekit import ABSENT, HELD_OUT, PLANTED, SFT_ANSWER

from olmoflow.trace.spans import MARK, Span, _contained, find_spans, merge


def test_planted_spans_are_found_with_their_document(index):
    for (part, _, src, doc_id), sentence in PLANTED.items():
        text = f"Well, as I recall it: {sentence} That is all."
        spans = find_spans(index, text)
        assert len(spans) == 1, (sentence, [s.text for s in spans])
        s = spans[0]
        assert s.text in sentence and len(s.text) > 0.8 * len(sentence)  # all but a first word's leading space
        assert text[s.start:s.end] == s.text and s.count == 1
        docs = s.as_json()["docs"]
        assert [(d["part"], d["source"], d["doc_id"]) for d in docs] == [(part, src, doc_id)]
        assert f"{MARK}{s.text}{MARK}" in docs[0]["snippet"]


def test_post_training_text_is_indexed(index):
    [s] = find_spans(index, SFT_ANSWER)
    assert s.text == SFT_ANSWER and s.as_json()["docs"][0]["source"] == "post/sft"


def test_text_absent_from_the_training_data_finds_none(index):
    assert find_spans(index, ABSENT) == []


def test_held_out_documents_are_not_training_spans(index):
    assert find_spans(index, HELD_OUT) == []


def test_spans_are_self_contained():
    text = "The cat sat. Then it ran home quickly"
    assert _contained(text, 0, 12, 3) == (0, 12)  # a sentence may end a span
    assert _contained(text, 0, 17, 3) is None  # but no break inside it
    assert _contained(text, 1, 12, 1) is None  # no partial word at the start
    assert _contained(text, 12, 29, 3) == (13, 29)  # leading space stripped
    assert _contained(text, 12, 28, 3) is None  # ... nor at the end ("hom")
    assert _contained(text, 12, 21, 3) is None  # too few words


def test_overlapping_spans_merge_for_display(index):
    text = "alpha beta gamma delta epsilon"
    a, b, c = Span(0, 16, text[0:16], 2, -30.0), Span(6, 22, text[6:22], 5, -40.0), Span(23, 30, text[23:30], 1, -9.0)
    out = merge([b, c, a], max_docs=10, text=text)
    assert [(m.start, m.end, m.count) for m in out] == [(0, 22, 5), (23, 30, 1)]
    assert out[0].text == "alpha beta gamma delta" and len(out[0].as_json()["parts"]) == 2


def test_long_rare_spans_rank_first(index):
    sentences = list(PLANTED.values())
    text = " ".join(sentences)
    one = find_spans(index, text, max_spans=1)
    every = find_spans(index, text, max_spans=10)
    assert len(every) == 3 and len(one) == 1
    assert one[0].logprob == min(s.logprob for s in every)
