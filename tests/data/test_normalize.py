"""Normalization on crafted text, with counts known by construction (the quality filters: test_filters.py)."""

import unicodedata

from olmoflow.data.normalize import decode, normalize


def test_decode_drops_and_counts_undecodable_bytes():
    text, dropped = decode("café ".encode() + b"\xff\xfe" + b"ok \xe9")
    assert (text, dropped) == ("café ok ", 3)
    assert decode("naïve ünïcode".encode()) == ("naïve ünïcode", 0)


def test_normalize_nfc_and_whitespace():
    decomposed = "Cafe\u0301"  # e + combining acute
    out = normalize(f"\ufeff  {decomposed}\u00a0bar\u200b\r\nline two   \t\r\n\n\n\n\ndef f():\n\treturn 1\x07\n  ")
    assert out == "Café bar\nline two\n\ndef f():\n\treturn 1"
    assert unicodedata.is_normalized("NFC", out)
    assert normalize("a\ud800b") == "ab"  # a lone surrogate from a JSON escape cannot be encoded


def test_normalize_keeps_code_indentation():
    code = "class A:\n    def f(self):\n        return 1"
    assert normalize(code + "\n\n") == code

