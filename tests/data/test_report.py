"""The curate report from a hand-built stats dict: every number lands in its cell, totals add up, the plots are
real PNGs, and stats from before the new keys still render."""

import copy

import matplotlib.image as mpimg
import numpy as np

from olmoflow.data.report import flat_metrics, markdown, render_text, write_report

STATS = {
    "sources": {
        "web": {"domain": "web", "tier": 1, "docs_in": 100, "docs_out": 80, "chars_in": 9000, "chars_out": 7000,
                "tokens_in": 5000, "tokens_out": 4000, "undecodable_bytes": 0, "val_docs": 4,
                "dropped": {"too_short": 12, "decontam": 3, "duplicate": 5},
                "dropped_tokens": {"too_short": 300, "decontam": 450, "duplicate": 250}},
        "code": {"domain": "code", "tier": 1, "docs_in": 50, "docs_out": 47, "chars_in": 8000, "chars_out": 7900,
                 "tokens_in": 3000, "tokens_out": 2900, "undecodable_bytes": 2, "val_docs": 1,
                 "dropped": {"fuzzy_dedup": 3}, "dropped_tokens": {"fuzzy_dedup": 100}},
        "math": {"domain": "math", "tier": 0, "docs_in": 40, "docs_out": 30, "chars_in": 4000, "chars_out": 3000,
                 "tokens_in": 2000, "tokens_out": 1500, "undecodable_bytes": 0, "val_docs": 2,
                 "dropped": {"holdout": 9, "alpha_words": 1}, "dropped_tokens": {"holdout": 420, "alpha_words": 80}},
    },
    "rules": {"too_short": {"docs": 12, "tokens": 300, "chars": 1},
              "decontam": {"docs": 3, "tokens": 450, "chars": 1},
              "duplicate": {"docs": 5, "tokens": 250, "chars": 1},
              "fuzzy_dedup": {"docs": 3, "tokens": 100, "chars": 1},
              "holdout": {"docs": 9, "tokens": 420, "chars": 1},
              "alpha_words": {"docs": 1, "tokens": 80, "chars": 1}},
    "fuzzy_dedup": {"candidates": 9, "confirmed": 4, "clusters": 2, "removed": 3, "max_cluster": 3,
                    "mean_cluster": 2.5, "sizes": {"3": 1, "2": 1}},
    "decontam": {"enabled": True, "ngram": 8, "threshold": 0.5,
                 "items": {"arc_easy": 570, "arithmetic": 500}, "hits": {"arc_easy": 3, "arithmetic": 1},
                 "items_hit": {"arc_easy": 2, "arithmetic": 1},
                 "by_source": {"post/sft": {"arithmetic": 1}, "web": {"arc_easy": 3}},
                 "examples": {"arc_easy": ["Mercury_7", "MCAS_2"], "arithmetic": ["arith-0042"]}},
    "mixes": {"pretrain": {
        "web": {"target_share": 0.6, "share": 0.6667, "target_tokens": 600, "tokens": 600, "short_by": 0, "docs": 9,
                "available_tokens": 3800, "repeat": 0.158, "sources": {"web": {"repeat": 0.158, "tokens": 600}}},
        "math": {"target_share": 0.4, "share": 0.3333, "target_tokens": 400, "tokens": 300, "short_by": 100,
                 "docs": 6, "available_tokens": 150, "repeat": 2.0,
                 "sources": {"math": {"repeat": 2.0, "tokens": 300, "capped": True}}}}},
    "long": {"code": {"docs": 2, "tokens": 1800}},
    "val": {"code": 1, "math": 2, "web": 4},
    "synthetic": {}, "post": {"sft": 20}, "eval": {"arc_easy": 570, "arithmetic": 500},
    "tokenizer": {"vocab_size": 1024, "trained_on_chars": 123456, "path": None},
    "train_tokens": 900,
}


def table(md: str, heading: str, nth: int = 0) -> dict[str, dict[str, str]]:
    """The nth markdown table after `heading`, as {first cell: {column: cell}}."""
    lines = md[md.index(heading):].splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("| ") and lines[i + 1].startswith("| --")]
    i = starts[nth]
    header = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = {}
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_sources_by_rules_in_documents_and_tokens():
    md = markdown(STATS)
    docs = table(md, "## Removals: documents")
    assert list(docs["web"])[2:9] == ["documents in", "holdout", "too_short", "alpha_words", "decontam", "duplicate",
                                      "fuzzy_dedup"]  # the pipeline's order, only rules that fired
    assert docs["web"] == {"source": "web", "domain": "web", "documents in": "100", "holdout": "0",
                                "too_short": "12", "alpha_words": "0", "decontam": "3", "duplicate": "5",
                                "fuzzy_dedup": "0", "removed": "20", "documents out": "80"}
    assert (docs["math"]["holdout"], docs["math"]["removed"]) == ("9", "10")
    total = docs["**total**"]
    assert (total["documents in"], total["too_short"], total["fuzzy_dedup"], total["removed"],
            total["documents out"]) == ("190", "12", "3", "33", "157")
    tokens = table(md, "## Removals: tokens")
    web = tokens["web"]
    assert (web["decontam"], web["removed"], web["tokens out"]) == ("450", "1,000", "4,000")
    assert (tokens["**total**"]["tokens in"], tokens["**total**"]["holdout"], tokens["**total**"]["removed"]) == \
        ("10,000", "420", "1,600")
    assert "not recorded" not in md


def test_dedup_contamination_mixes_val_tokenizer():
    md = markdown(STATS)
    assert "Exact duplicates: 5 removed (250 tokens)." in md
    assert "3 removed from 2 clusters; largest cluster 3 documents, mean 2.50; 4 of 9" in md
    assert table(md, "## Deduplication") == {"2": {"cluster size (documents)": "2", "clusters": "1"},
                                             "3": {"cluster size (documents)": "3", "clusters": "1"}}
    hits = table(md, "## Contamination")
    assert hits["arc_easy"] == {"eval set": "arc_easy", "items": "570", "documents hit": "3", "items hit": "2",
                                "examples": "Mercury_7, MCAS_2"}
    assert (hits["**total**"]["items"], hits["**total**"]["documents hit"]) == ("1,070", "4")
    per_source = table(md, "## Contamination", nth=1)
    assert per_source["post/sft"] == {"source": "post/sft", "arc_easy": "0", "arithmetic": "1"}
    assert "at least 50% of the item's word 8-grams" in md
    mix = table(md, "### pretrain")
    assert mix["math"] == {"domain": "math", "target share": "40.0%", "share": "33.3%", "target tokens": "400",
                           "tokens": "300", "short by": "100", "passes": "2", "sources (passes)": "math ×2"}
    assert (mix["**total**"]["target tokens"], mix["**total**"]["tokens"], mix["**total**"]["short by"]) == \
        ("1,000", "900", "100")
    assert "Short of target (every source at max_repeat): math." in md
    assert table(md, "## Held-out")["**total**"]["documents"] == "7"
    assert "vocabulary 1,024, trained on 123,456 characters" in md
    assert "190 documents read from 3 sources, 157 kept (82.6%); 900 pretraining tokens." in md


def test_text_table_and_metrics():
    text = render_text(STATS).splitlines()
    assert text[0].split() == ["source", "in", "holdout", "too_short", "alpha_words", "decontam", "duplicate",
                               "fuzzy_dedup", "out"]
    assert text[1].split() == ["web", "100", "0", "12", "0", "3", "5", "0", "80"]
    assert text[4].split() == ["total", "190", "9", "12", "1", "3", "5", "3", "157"]
    assert text[5] == "mix pretrain 900 tokens: web 0.60->0.67, math 0.40->0.33 (short 100)"
    assert text[6] == "decontam: arc_easy 3 docs (2/570 items), arithmetic 1 docs (1/500 items)"
    m = flat_metrics(STATS)
    assert (m["decontam/arc_easy/docs"], m["decontam/arithmetic/items_hit"]) == (3, 1)
    assert (m["pretrain/math/short_by"], m["pretrain/web/share"], m["fuzzy_dedup/removed"]) == (100, 0.6667, 3)


def test_plots_are_pngs(tmp_path):
    paths = write_report(STATS, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["report.md", "plots/removals.png", "plots/mix.png"]
    assert paths[0].read_text() == markdown(STATS)
    for p in paths[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 500 and np.std(img) > 0.05  # drawn on, not blank


def test_stats_without_the_new_keys_still_render(tmp_path):
    old = copy.deepcopy(STATS)
    for s in old["sources"].values():
        del s["dropped_tokens"]
    del old["decontam"], old["fuzzy_dedup"]["sizes"]
    for d in old["mixes"]["pretrain"].values():
        for key in ("target_share", "share", "short_by", "repeat"):
            del d[key]
    md = markdown(old)
    assert "Tokens per source and rule were not recorded" in md and "## Contamination\n\nNot recorded" in md
    tokens = table(md, "## Removals: tokens")
    web, total = tokens["web"], tokens["**total**"]
    assert (web["decontam"], web["removed"], total["decontam"]) == ("—", "1,000", "450")  # in - out; stats["rules"]
    mix = table(md, "### pretrain")
    assert (mix["math"]["target share"], mix["math"]["share"], mix["math"]["short by"]) == ("40.0%", "33.3%", "—")
    assert len(write_report(old, tmp_path)) == 3
    assert "decontam:" not in render_text(old)


def test_disabled_decontam_says_so():
    stats = copy.deepcopy(STATS)
    stats["decontam"]["enabled"] = False
    assert "Disabled (curate.decontam.enabled = false)" in markdown(stats)
