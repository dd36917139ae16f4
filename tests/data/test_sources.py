"""Readers per format, the max_docs choice, and the one-line errors for missing or unreadable sources."""

import bz2
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from olmoflow.data.config import CurateConfig, SourceConfig
from olmoflow.data.sources import check_sources, read_source, strip_wikitext

WIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
  <page><title>Tea</title><ns>0</ns><id>1</id><revision><text>{{Infobox drink|name=Tea}}
'''Tea''' is a [[beverage|drink]] made from [[Camellia sinensis]].&lt;ref&gt;Source&lt;/ref&gt;
== History ==
It spread along the [[Silk Road]].[[File:Tea.jpg|thumb|A [[cup]] of tea]]
{| class="wikitable"
| a || b
|}
See [http://example.org the site].[[Category:Drinks]]</text></revision></page>
  <page><title>Talk:Tea</title><ns>1</ns><id>2</id><revision><text>chat</text></revision></page>
  <page><title>Chai</title><ns>0</ns><id>3</id><redirect title="Tea" />
    <revision><text>#REDIRECT [[Tea]]</text></revision></page>
</mediawiki>"""


def src(**kw) -> SourceConfig:
    return SourceConfig(**{"name": "s", "path": "*", **kw})


def test_mediawiki_keeps_articles_and_strips_markup(tmp_path):
    (tmp_path / "w.xml.bz2").write_bytes(bz2.compress(WIKI.encode()))
    docs = read_source(src(path="w.xml.bz2", format="mediawiki"), tmp_path)
    assert [d.id for d in docs] == ["w.xml.bz2#Tea"]
    text = docs[0].data
    assert text.startswith("Tea\n\nTea is a drink made from Camellia sinensis.")
    assert "It spread along the Silk Road." in text and "See the site." in text
    for markup in ("{{", "[[", "'''", "<ref", "wikitable", "Category", "thumb", "=="):
        assert markup not in text, markup


def test_strip_wikitext_handles_nesting():
    assert strip_wikitext("a {{outer {{inner}} x}} b [[File:x.png|cap with [[link]]]] c").split() == ["a", "b", "c"]


def test_text_rst_lines_jsonl_minerva(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"plain\xff text")
    (tmp_path / "d.rst.gz").write_bytes(gzip.compress(b".. _label:\n\nTitle\n=====\n\n.. index:: x\n\nBody.\n"))
    (tmp_path / "l.cor").write_text("first doc\n\nsecond doc\n")
    (tmp_path / "j.jsonl").write_text(json.dumps({"text": "from json"}) + "\n" + json.dumps({"other": 1}) + "\n")
    with gzip.open(tmp_path / "m.jsonl.gz", "wt") as f:
        f.write(json.dumps({"doc": {"problem": "1+1?", "solution": "$\\boxed{2}$"}}) + "\n")
    assert [d.data for d in read_source(src(path="a.txt"), tmp_path)] == [b"plain\xff text"]
    assert read_source(src(path="d.rst.gz", format="rst"), tmp_path)[0].data == b"\nTitle\n=====\n\n\nBody.\n"
    assert [(d.id, d.data) for d in read_source(src(path="l.cor", format="lines"), tmp_path)] == \
        [("l.cor#0", b"first doc"), ("l.cor#2", b"second doc")]
    assert [d.data for d in read_source(src(path="j.jsonl", format="jsonl"), tmp_path)] == ["from json"]
    assert read_source(src(path="m.jsonl.gz", format="minerva"), tmp_path)[0].data == \
        "Problem:\n1+1?\n\nSolution:\n$\\boxed{2}$"


def test_max_docs_is_a_stable_choice_spread_over_files(tmp_path):
    for i in range(30):
        (tmp_path / f"f{i:02d}.txt").write_text(f"doc {i}")
    first = [d.id for d in read_source(src(path="*.txt", max_docs=10), tmp_path)]
    again = [d.id for d in read_source(src(path="*.txt", max_docs=10), tmp_path)]
    assert first == again and len(first) == 10 and first == sorted(first)
    assert first != [f"f{i:02d}.txt" for i in range(10)]  # not simply the first files in name order


def test_glob_matching_nothing_is_one_line_naming_the_source(tmp_path):
    with pytest.raises(ValueError) as e:
        read_source(SourceConfig(name="docs", path="nowhere/*.rst"), tmp_path)
    msg = str(e.value)
    assert msg.startswith("curate: source 'docs': path 'nowhere/*.rst' matches no files") and "\n" not in msg


def test_unreadable_file_names_source_and_file(tmp_path):
    (tmp_path / "bad.rst.gz").write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match=r"curate: source 'broken': cannot read .*bad\.rst\.gz \(BadGzipFile"):
        read_source(SourceConfig(name="broken", path="*.gz", format="rst"), tmp_path)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match=r"curate: source 'js': cannot read .*bad\.jsonl \(JSONDecodeError"):
        read_source(SourceConfig(name="js", path="*.jsonl", format="jsonl"), tmp_path)


def test_check_sources_covers_post_eval_and_tokenizer(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    cfg = CurateConfig(sources_dir=str(tmp_path), sources=[SourceConfig(name="a", path="a.txt")])
    with pytest.raises(ValueError, match=r"curate: post.sharegpt 'sharegpt/sharegpt.jsonl' matches no files"):
        check_sources(cfg)
    cfg = CurateConfig(sources_dir=str(tmp_path), post={"sft_conversations": 0, "hhh": "a.txt"},
                       eval={"arc_easy": "a.txt"}, tokenizer={"path": "dolma2/tokenizer.json"})
    with pytest.raises(ValueError, match=r"tokenizer.path 'dolma2/tokenizer.json' is not a file"):
        check_sources(cfg)


def test_parquet_reads_the_text_column(tmp_path):
    pq.write_table(pa.table({"id": [1, 2, 3], "body": ["first doc", None, "third doc"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"body": pa.array([b"bytes \xff doc"], pa.binary())}), tmp_path / "b.parquet")
    docs = read_source(src(path="*.parquet", format="parquet", text_field="body"), tmp_path)
    assert [(d.id, d.data) for d in docs] == [("a.parquet#0", "first doc"), ("a.parquet#2", "third doc"),
                                              ("b.parquet#0", b"bytes \xff doc")]
    with pytest.raises(ValueError, match=r"^curate: source 's': cannot read .*a\.parquet \(ValueError: no column "
                                         r"'text' \(columns: id, body\)\)$"):
        read_source(src(path="a.parquet", format="parquet"), tmp_path)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"^curate: source 's': cannot read .*bad\.parquet \(ArrowInvalid"):
        read_source(src(path="bad.parquet", format="parquet"), tmp_path)


def test_jsonl_text_field(tmp_path):
    (tmp_path / "j.jsonl").write_text(json.dumps({"content": "from content", "text": "not this"}) + "\n")
    assert [d.data for d in read_source(src(path="j.jsonl", format="jsonl", text_field="content"), tmp_path)] == \
        ["from content"]
