"""What curate tells a person: report.md (sources x rules, dedup, contamination per eval set, each mix against its
targets, held-out text, tokenizer), a compact table for the log, flat metrics for MLflow, and plots.

It reads only stats.json's dict. The keys it reads (new ones marked *):
  sources[name]       domain, docs_in, docs_out, tokens_in, tokens_out, val_docs, dropped {rule: docs},
                      *dropped_tokens {rule: tokens}
  rules[rule]         docs, tokens
  fuzzy_dedup         clusters, removed, max_cluster, mean_cluster, candidates, confirmed,
                      *sizes {cluster size: clusters}
  *decontam           DeconTally.as_stats(): enabled, ngram, threshold, items / hits / items_hit {task: n},
                      by_source {source: {task: documents}}, examples {task: [item ids]}
  mixes[mix][domain]  target_tokens, tokens, docs, sources {name: {repeat, tokens}}, and from plan_mix
                      *target_share, *share, *short_by, *repeat
  val {domain: docs}, long {domain: {docs, tokens}}, tokenizer {vocab_size, trained_on_chars, path}
A key that is missing is shown as "—" (or its section says it was not recorded), so older stats still render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from olmoflow.contract.report import pyplot, save_figure
from olmoflow.data.config import FilterConfig
from olmoflow.data.filters import rules

RULE_ORDER = ("holdout", "undecodable",
              *dict.fromkeys([*rules(FilterConfig(), "prose"), *rules(FilterConfig(), "code")]),
              "decontam", "duplicate", "fuzzy_dedup")
"""The order curate applies its rules in; the report's columns follow it (unknown rules go last)."""
DASH = "—"


def flat_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """stats.json's counts as flat MLflow metric names: source/{name}/docs_in, filter/{rule}/docs, ..."""
    out: dict[str, float] = {}
    for name, s in stats["sources"].items():
        for key in ("docs_in", "docs_out", "chars_in", "chars_out", "tokens_out", "undecodable_bytes"):
            out[f"source/{name}/{key}"] = s[key]
    for rule, r in stats["rules"].items():
        out[f"filter/{rule}/docs"] = r["docs"]
        out[f"filter/{rule}/tokens"] = r["tokens"]
    for mix, domains in stats["mixes"].items():
        for dom, d in domains.items():
            out[f"{mix}/{dom}/tokens"] = d["tokens"]
            for key in ("share", "short_by"):
                if key in d:
                    out[f"{mix}/{dom}/{key}"] = d[key]
    for dom, d in stats["long"].items():
        out[f"long/{dom}/tokens"] = d["tokens"]
    for key, n in stats["post"].items():
        out[f"post/{key}"] = n
    for key, n in stats["eval"].items():
        out[f"eval/{key}"] = n
    for task, n in stats.get("decontam", {}).get("hits", {}).items():
        out[f"decontam/{task}/docs"] = n
        out[f"decontam/{task}/items_hit"] = stats["decontam"]["items_hit"][task]
    for key in ("clusters", "removed", "max_cluster"):
        if key in stats.get("fuzzy_dedup", {}):
            out[f"fuzzy_dedup/{key}"] = stats["fuzzy_dedup"][key]
    out["vocab_size"] = stats["tokenizer"]["vocab_size"]
    out["train_tokens"] = stats["train_tokens"]
    return out


# ---- tables ------------------------------------------------------------------------------------------------

def _n(x: Any) -> str:
    return DASH if x is None else f"{x:,}" if isinstance(x, int) else f"{x:,.3f}" if isinstance(x, float) else str(x)


def _pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A markdown table; `align` has one letter per column, l or r (default: the first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = " | ".join("---:" if a == "r" else "---" for a in align)
    return [f"| {' | '.join(header)} |", f"| {rule} |"] + [f"| {' | '.join(r)} |" for r in rows]


def rule_names(stats: dict[str, Any]) -> list[str]:
    seen = set(stats.get("rules", {})) | {r for s in stats["sources"].values() for r in s.get("dropped", {})}
    return [r for r in RULE_ORDER if r in seen] + sorted(seen - set(RULE_ORDER))


def removals(stats: dict[str, Any], what: str) -> dict[str, dict[str, int | None]]:
    """{source: {rule: documents or tokens removed}}; None where tokens per (source, rule) were not recorded."""
    key = "dropped" if what == "docs" else "dropped_tokens"
    rules = rule_names(stats)
    out: dict[str, dict[str, int | None]] = {}
    for name, s in stats["sources"].items():
        got = s.get(key)
        out[name] = {r: None if got is None else int(got.get(r, 0)) for r in rules}
    return out


def _removal_table(stats: dict[str, Any], what: str) -> list[str]:
    rules = rule_names(stats)
    table = removals(stats, what)
    before, after = ("docs_in", "docs_out") if what == "docs" else ("tokens_in", "tokens_out")
    rows = []
    for name, by_rule in table.items():
        s = stats["sources"][name]
        known = [v for v in by_rule.values() if v is not None]
        removed = sum(known) if len(known) == len(by_rule) else s.get(before, 0) - s.get(after, 0)
        rows.append([name, s.get("domain", DASH), _n(s.get(before))] + [_n(by_rule[r]) for r in rules]
                    + [_n(removed), _n(s.get(after))])

    def total(rule: str) -> int | None:  # stats["rules"] has every rule's totals, even where sources lack them
        if rule in stats["rules"]:
            return stats["rules"][rule][what]
        column = [by_rule[rule] for by_rule in table.values()]
        return None if None in column else sum(column)

    totals = [total(r) for r in rules]
    rows.append(["**total**", "", _n(sum(s.get(before, 0) for s in stats["sources"].values()))]
                + [_n(t) for t in totals]
                + [_n(None if None in totals else sum(totals)),
                   _n(sum(s.get(after, 0) for s in stats["sources"].values()))])
    unit = "documents" if what == "docs" else "tokens"
    return _table(["source", "domain", f"{unit} in"] + rules + ["removed", f"{unit} out"], rows,
                  "ll" + "r" * (len(rules) + 3))


def _dedup_lines(stats: dict[str, Any]) -> list[str]:
    exact = stats["rules"].get("duplicate", {"docs": 0, "tokens": 0})
    lines = [f"Exact duplicates: {_n(exact['docs'])} removed ({_n(exact['tokens'])} tokens).", ""]
    f = stats.get("fuzzy_dedup") or {}
    if not f:
        return lines + ["Fuzzy dedup: not run.", ""]
    lines += [f"Fuzzy duplicates (MinHash LSH): {_n(f['removed'])} removed from {_n(f['clusters'])} clusters; "
              f"largest cluster {_n(f['max_cluster'])} documents, mean {f['mean_cluster']:.2f}; "
              f"{_n(f['confirmed'])} of {_n(f['candidates'])} LSH candidate pairs confirmed by exact Jaccard.", ""]
    sizes = f.get("sizes")
    if sizes:
        rows = [[str(size), _n(int(n))] for size, n in sorted(sizes.items(), key=lambda kv: int(kv[0]))]
        lines += _table(["cluster size (documents)", "clusters"], rows) + [""]
    return lines


def _decontam_lines(stats: dict[str, Any]) -> list[str]:
    d = stats.get("decontam")
    if not d:
        return ["Not recorded in these stats.", ""]
    if not d["enabled"]:
        return ["Disabled (curate.decontam.enabled = false): nothing was checked.", ""]
    lines = [f"A document is contaminated by an eval item when one stretch of it holds at least "
             f"{d['threshold']:.0%} of the item's word {d['ngram']}-grams (a short question also needs its answer "
             f"near; see olmoflow/data/decon.py). Training documents and post-training rows removed per eval set (one "
             f"that hits two eval sets counts in both):", ""]
    tasks = list(d["items"])
    rows = [[t, _n(d["items"][t]), _n(d["hits"][t]), _n(d["items_hit"][t]),
             ", ".join(d["examples"].get(t, [])) or DASH] for t in tasks]
    rows.append(["**total**", _n(sum(d["items"].values())), _n(sum(d["hits"].values())),
                 _n(sum(d["items_hit"].values())), ""])
    lines += _table(["eval set", "items", "documents hit", "items hit", "examples"], rows, "lrrrl") + [""]
    if d["by_source"]:
        rows = [[src] + [_n(by.get(t, 0)) for t in tasks] for src, by in d["by_source"].items()]
        lines += ["Documents hit per source:", ""] + _table(["source"] + tasks, rows) + [""]
    return lines


def mix_rows(domains: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per domain: target and achieved share (computed from tokens where the stats predate them), tokens, repeats."""
    target_total = sum(d["target_tokens"] for d in domains.values()) or 1
    total = sum(d["tokens"] for d in domains.values()) or 1
    return {dom: {"target_share": d.get("target_share", d["target_tokens"] / target_total),
                  "share": d.get("share", d["tokens"] / total), "target_tokens": d["target_tokens"],
                  "tokens": d["tokens"], "short_by": d.get("short_by"), "repeat": d.get("repeat"),
                  "sources": d.get("sources", {})} for dom, d in domains.items()}


def _mix_lines(stats: dict[str, Any]) -> list[str]:
    lines = []
    for mix, domains in stats["mixes"].items():
        rows, table = [], mix_rows(domains)
        for dom, r in table.items():
            srcs = ", ".join(f"{s} ×{v['repeat']:g}" for s, v in r["sources"].items())
            rows.append([dom, _pct(r["target_share"]), _pct(r["share"]), _n(r["target_tokens"]), _n(r["tokens"]),
                         _n(r["short_by"]), DASH if r["repeat"] is None else f"{r['repeat']:g}", srcs])
        short = [r["short_by"] for r in table.values()]
        rows.append(["**total**", _pct(sum(r["target_share"] for r in table.values())),
                     _pct(sum(r["share"] for r in table.values())),
                     _n(sum(r["target_tokens"] for r in table.values())), _n(sum(r["tokens"] for r in table.values())),
                     _n(sum(short) if None not in short else None), "", ""])
        lines += [f"### {mix}", ""] + _table(["domain", "target share", "share", "target tokens", "tokens",
                                              "short by", "passes", "sources (passes)"], rows, "lrrrrrrl") + [""]
        lacking = [dom for dom, r in table.items() if r["short_by"]]
        if lacking:
            lines += [f"Short of target (every source at max_repeat): {', '.join(lacking)}.", ""]
    return lines


def markdown(stats: dict[str, Any]) -> str:
    src = stats["sources"]
    read, kept = sum(s["docs_in"] for s in src.values()), sum(s["docs_out"] for s in src.values())
    tok = stats["tokenizer"]
    lines = ["# Curate report", "",
             f"{_n(read)} documents read from {len(src)} sources, {_n(kept)} kept "
             f"({_pct(kept / read if read else None)}); {_n(stats['train_tokens'])} pretraining tokens.", ""]
    lines += _absent_lines(stats)
    lines += ["## Removals: documents per source and rule", "",
             "Each removed document is counted under the first rule it failed, in column order.", ""]
    lines += _removal_table(stats, "docs") + ["", "## Removals: tokens per source and rule", ""]
    if any("dropped_tokens" not in s for s in src.values()):
        lines += ["Tokens per source and rule were not recorded (only the per-rule totals).", ""]
    lines += _removal_table(stats, "tokens") + ["", "## Deduplication", ""] + _dedup_lines(stats)
    lines += ["## Contamination", ""] + _decontam_lines(stats)
    lines += ["## Mixes: achieved against target", ""] + _mix_lines(stats)
    lines += ["## Held-out text (val/)", ""]
    lines += _table(["domain", "documents"], [[d, _n(n)] for d, n in stats["val"].items()]
                    + [["**total**", _n(sum(stats["val"].values()))]]) + [""]
    if stats.get("long"):
        lines += ["## Long documents (long/)", ""]
        lines += _table(["domain", "documents", "tokens"],
                        [[d, _n(v["docs"]), _n(v["tokens"])] for d, v in stats["long"].items()]) + [""]
    trained = f"trained on {_n(tok['trained_on_chars'])} characters" if not tok.get("path") else f"from {tok['path']}"
    lines += ["## Tokenizer", "", f"Byte-level BPE, vocabulary {_n(tok['vocab_size'])}, {trained}.", ""]
    return "\n".join(lines)


def _absent_lines(stats: dict[str, Any]) -> list[str]:
    """The optional sources that were not there, and the domains each mix lost with them."""
    absent = stats.get("absent") or {}
    if not absent.get("sources"):
        return []
    lines = ["## Absent optional sources", "",
             "These sources are optional (`required: false`) and matched no files, so this dataset was made without "
             "them.", ""]
    lines += _table(["source", "path", "domain"], [[n, f"`{v['path']}`", v["domain"]]
                                                    for n, v in absent["sources"].items()]) + [""]
    for mix, doms in absent.get("mix_domains", {}).items():
        lines.append(f"- mix `{mix}`: no source left for {', '.join(doms)}; the other domains' target shares are "
                     "re-normalised to sum to 1.")
    return lines + [""]


def render_text(stats: dict[str, Any]) -> str:
    """A compact plain-text summary for the log: documents removed per source and rule, each mix's shares
    (target -> achieved), contamination hits per eval set."""
    rules = rule_names(stats)
    table = removals(stats, "docs")
    width = max([len("source")] + [len(s) for s in table]) + 2
    cols = ["in", *rules, "out"]
    fmt = lambda cells: cells[0].ljust(width) + "".join(c.rjust(max(len(h), 6) + 1) for c, h in zip(cells[1:], cols))
    lines = [fmt(["source", *cols])]
    for name, by_rule in table.items():
        s = stats["sources"][name]
        lines.append(fmt([name, str(s["docs_in"]), *(str(by_rule[r]) for r in rules), str(s["docs_out"])]))
    lines.append(fmt(["total", str(sum(s["docs_in"] for s in stats["sources"].values())),
                      *(str(stats["rules"].get(r, {}).get("docs", 0)) for r in rules),
                      str(sum(s["docs_out"] for s in stats["sources"].values()))]))
    for mix, domains in stats["mixes"].items():
        parts = []
        for dom, r in mix_rows(domains).items():
            short = f" (short {r['short_by']:,})" if r["short_by"] else ""
            parts.append(f"{dom} {r['target_share']:.2f}->{r['share']:.2f}{short}")
        lines.append(f"mix {mix} {sum(d['tokens'] for d in domains.values()):,} tokens: " + ", ".join(parts))
    absent = (stats.get("absent") or {}).get("sources")
    if absent:
        lines.append(f"absent optional sources: {', '.join(absent)}")
    d = stats.get("decontam")
    if d and d["enabled"]:
        lines.append("decontam: " + ", ".join(f"{t} {d['hits'][t]} docs ({d['items_hit'][t]}/{d['items'][t]} items)"
                                              for t in d["items"]))
    return "\n".join(lines)


def write_report(stats: dict[str, Any], out_dir: Path) -> list[Path]:
    """report.md, plots/removals.png and plots/mix.png under out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    md.write_text(markdown(stats))
    plots = out_dir / "plots"
    return [md, plot_removals(stats, plots / "removals.png"), plot_mix(stats, plots / "mix.png")]


# ---- plots -------------------------------------------------------------------------------------------------

def plot_removals(stats: dict[str, Any], path: Path) -> Path:
    """Documents (left) and tokens (right) removed per source, stacked by rule."""
    plt = pyplot()
    rules = rule_names(stats)
    names = list(stats["sources"])
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(names) + 4), 4.2))
    colors = plt.get_cmap("tab10")
    for ax, what in zip(axes, ("docs", "tokens")):
        table = removals(stats, what)
        bottom = np.zeros(len(names))
        for i, r in enumerate(rules):
            v = np.array([table[n][r] or 0 for n in names], float)
            ax.bar(range(len(names)), v, bottom=bottom, label=r, color=colors(i % 10))
            bottom += v
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{'documents' if what == 'docs' else 'tokens'} removed")
    axes[0].set_title("curate: documents removed per source, by rule")
    axes[1].set_title("tokens removed" + ("" if all("dropped_tokens" in s for s in stats["sources"].values())
                                          else " (not recorded per source)"))
    if rules:
        axes[0].legend(fontsize=8)
    return save_figure(fig, path, dpi=100)


def plot_mix(stats: dict[str, Any], path: Path) -> Path:
    """Per mix, each domain's target share next to its achieved share."""
    plt = pyplot()
    mixes = stats["mixes"]
    fig, axes = plt.subplots(1, max(1, len(mixes)), figsize=(5.5 * max(1, len(mixes)), 3.8), squeeze=False)
    for ax, (mix, domains) in zip(axes[0], mixes.items()):
        table = mix_rows(domains)
        x = np.arange(len(table))
        ax.bar(x - 0.2, [r["target_share"] for r in table.values()], 0.4, label="target", color="#9db7d8")
        bars = ax.bar(x + 0.2, [r["share"] for r in table.values()], 0.4, label="achieved", color="#3b7dd8")
        ax.bar_label(bars, labels=[f"{r['share']:.2f}" for r in table.values()], fontsize=7)
        ax.set_xticks(x, list(table), rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("share of the mix's tokens")
        ax.set_title(f"mix {mix}: target vs achieved")
        ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=100)


def length_histogram(lengths: dict[str, list[int]], path: Path) -> Path:
    """Documents per length bucket (log-spaced token counts), one line per domain."""
    plt = pyplot()
    longest = max((max(v) for v in lengths.values() if v), default=2)
    bins = np.logspace(0, np.log10(max(longest, 10)) + 0.01, 40)
    fig, ax = plt.subplots(figsize=(7, 4))
    for dom, v in sorted(lengths.items()):
        counts, edges = np.histogram(v, bins=bins)
        ax.step(edges[:-1], counts, where="post", label=f"{dom} ({len(v)} docs)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1)  # small domains stay visible next to thousands of math problems
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("documents")
    ax.set_title("curate: training document lengths per domain")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=100)
