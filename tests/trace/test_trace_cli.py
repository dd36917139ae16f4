"""`olmoflow trace`: JSON with character offsets into the text, the text from a file, and a model whose tokenizer is
not the index's refused with one line naming both."""

from __future__ import annotations

import json

from tracekit import PLANTED

from olmoflow.cli import main
from olmoflow.data.tokenizer import train_bpe

SENTENCE = PLANTED[("long", "books", "gutenberg", "b0")]


def test_json_spans_with_offsets(index_dir, capsys):
    text = f"He said: {SENTENCE}"
    assert main(["trace", "--index", str(index_dir), "--json", text]) == 0
    out = json.loads(capsys.readouterr().out)
    [span] = out["spans"]
    assert {"text", "start", "end", "count", "docs"} <= set(span)
    assert text[span["start"]:span["end"]] == span["text"] == SENTENCE
    assert {"source", "doc_id", "snippet"} <= set(span["docs"][0])
    assert (span["docs"][0]["source"], span["docs"][0]["doc_id"]) == ("gutenberg", "b0")


def test_text_from_a_file_and_plain_output(index_dir, tmp_path, capsys):
    f = tmp_path / "out.txt"
    f.write_text(f"So: {SENTENCE}")
    assert main(["trace", "--index", str(index_dir), "--file", str(f)]) == 0
    out = capsys.readouterr().out
    assert "gutenberg b0" in out and SENTENCE in out


def test_same_tokenizer_checkpoint_is_accepted(index_dir, dataset, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "tokenizer.json").write_text(json.dumps(json.loads((dataset / "tokenizer.json").read_text()), indent=4))
    assert main(["trace", "--index", str(index_dir), "--checkpoint", str(ckpt), "--json", SENTENCE]) == 0
    assert json.loads(capsys.readouterr().out)["spans"]


def test_another_tokenizer_is_refused_in_one_line(index_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    train_bpe(["an entirely different corpus of words"] * 5, vocab_size=300).save(str(ckpt / "tokenizer.json"))
    assert main(["trace", "--index", str(index_dir), "--checkpoint", str(ckpt), SENTENCE]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    theirs = json.loads((index_dir / "index.json").read_text())["tokenizer"]
    assert theirs in err and "uses tokenizer" in err and str(ckpt) in err


def test_text_or_file_is_required(index_dir, capsys):
    assert main(["trace", "--index", str(index_dir)]) == 2
    assert "give the text" in capsys.readouterr().err


def test_trace_ui_refuses_a_checkpoint_of_another_tokenizer(index_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    train_bpe(["an entirely different corpus of words"] * 5, vocab_size=300).save(str(ckpt / "tokenizer.json"))
    assert main(["trace-ui", "--index", str(index_dir), "--checkpoint", str(ckpt), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "uses tokenizer" in err and str(ckpt) in err
