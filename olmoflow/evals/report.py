"""The eval stage's payload: results.json (every number, with item counts and formulas), report.md (the table a
person reads, and where the model saw its sample generations: results.json's `trace`, also traces.json) and plots/
(task scores against chance; bits-per-byte per held-out domain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olmoflow.contract.report import pyplot, save_figure


def write_results(out: Path, results: dict[str, Any]) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def write_markdown(out: Path, results: dict[str, Any]) -> Path:
    head = results["headline"]
    lines = ["# Eval report", "",
             f"Headline: **{head['metric']} = {_fmt(head['value'])}** (lower is better).", "",
             "## Tasks", "",
             "| task | metric | score | n | chance |", "|---|---|---:|---:|---:|"]
    for name, t in results["tasks"].items():
        if t.get("status") == "failed":
            lines.append(f"| {name} | **failed**: {t.get('error', '')} | — | — | — |")
            continue
        for metric, value in t["metrics"].items():
            primary = metric == t["primary"]
            shown = f"**{metric}** (primary)" if primary else metric
            if metric in t["lower_is_better"]:
                shown += " ↓"
            if primary and t.get("contamination", {}).get("flagged"):
                shown += " ⚠ contaminated items"
            chance = t["chance"] if metric.startswith(("acc", "exact", "pass", "prompt", "inst")) else None
            lines.append(f"| {name} | {shown} | {_fmt(value)} | {t['n']} | {_fmt(chance)} |")
    ok = {n: t for n, t in results["tasks"].items() if t.get("status") != "failed"}
    lines += ["", "Prompts:", ""] + [f"- {n}: {t['description']}; {t.get('shots', str(t['num_shots']) + '-shot')}; "
                                     f"{t['prompt_format']} prompts" for n, t in ok.items()]
    chat = results["chat_format"]
    lines += [f"- suite: {results.get('suite', 'base')}; chat template: {'yes' if chat['chat'] else 'no'} "
              f"({chat['reason']})", ""]
    lines += contamination_lines(results["tasks"])
    lm = results["heldout"]
    lines += ["## Held-out language modelling", "",
              "| domain | docs | tokens | bytes | loss / token (nats) | bits / byte |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, d in list(lm["domains"].items()) + [("**all (pooled)**", lm["all"])]:
        lines.append(f"| {name} | {d['docs']} | {d['tokens']} | {d['bytes']} | {_fmt(d['loss_per_token'])} "
                     f"| {_fmt(d['bpb'])} |")
    lines += ["", f"Macro average over domains: {_fmt(lm['macro_bpb'])} bits/byte.", "", lm["method"], "",
              "## Formulas", ""]
    lines.append(f"- held-out: {lm['formula']}")
    for name, t in ok.items():
        lines += [f"- {name} {metric}: {formula}" for metric, formula in t["formulas"].items()]
    lines += trace_lines(results.get("trace"))
    lines += ["", f"Wall time: {results['wall_s']['total']:.1f} s.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def contamination_lines(tasks: dict[str, Any]) -> list[str]:
    """Per task, the share of the items scored that share an n-gram with the training data used (curate's
    eval/contamination.json), and the primary metric on the clean items when some are contaminated."""
    rows = [(n, t["contamination"]) for n, t in tasks.items() if t.get("contamination", {}).get("checked")
            and "items" in t["contamination"]]
    if not rows:
        return ["## Contamination", "", "No contamination counts (the dataset has no eval/contamination.json).", ""]
    lines = ["## Contamination", "", "| task | items | contaminated | share | primary on clean items |",
             "|---|---:|---:|---:|---:|"]
    for name, c in rows:
        clean = c.get("clean")
        primary = tasks[name]["primary"]
        shown = f"{_fmt(clean[primary])} (n={clean['n']})" if clean and clean.get(primary) is not None else "—"
        flag = " ⚠" if c.get("flagged") else ""
        lines.append(f"| {name}{flag} | {c['items']} | {c['contaminated']} | {c['share']:.1%} | {shown} |")
    return lines + ["", "An item is contaminated when it shares an n-gram of words with a training text kept in the "
                    "dataset (curate's eval/contamination.json says which n).", ""]


def _quote(text: str, width: int = 160) -> str:
    """Text on one line for a table or a list: whitespace collapsed, cut at `width`, markdown's | escaped."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= width else flat[:width - 1] + "…"
    return flat.replace("|", "\\|")


def _marked(text: str, spans: list[dict[str, Any]]) -> str:
    """The text with each span in **bold** (spans in text order, not overlapping: merged for display)."""
    out, at = [], 0
    for s in spans:
        out += [text[at:s["start"]], f"**{text[s['start']:s['end']]}**"]
        at = s["end"]
    return " ".join("".join(out + [text[at:]]).split())


def trace_lines(trace: dict[str, Any] | None) -> list[str]:
    """The report's "Where the model saw it" section (OlmoTrace), from results.json's `trace`."""
    lines = ["", "## Where the model saw it (OlmoTrace)", ""]
    if not trace or trace.get("status") != "traced":
        note = trace.get("note") if trace else "not recorded"
        return lines + [f"Sample generations were not traced: {note}."]
    ix = trace["index"]
    lines += [f"Index: `{ix['uri']}` ({ix['docs']:,} documents, {ix['tokens']:,} tokens of "
              f"{', '.join(ix['parts'])}). Prompts are openings of held-out documents (never in the index); spans "
              "of the greedy continuation found verbatim in the training data are in **bold** (long and rare first, "
              "as OlmoTrace ranks them), each with its documents. traces.json holds every span and document.", ""]
    for entry in trace["checkpoints"]:
        lines += [f"### Checkpoint of stage {entry['stage']} (`{entry['uri']}`)", "",
                  f"{len(entry['samples'])} samples ({'chat' if entry['chat'] else 'base'} prompts): {entry['spans']} "
                  f"span{'' if entry['spans'] == 1 else 's'}, {100 * entry['covered']:.1f}% of the generated "
                  "characters found in the training data.",
                  ""]
        for s in entry["samples"]:
            lines += [f"- **{s['id']}** prompt: “{_quote(s['prompt'])}”",
                      f"  - generation: “{_marked(s['generated'], s['spans']) or '(empty)'}”"]
            if not s["spans"]:
                lines.append("  - no span of it occurs in the training data")
            for sp in s["spans"]:
                docs = "; ".join(f"{d['source']} / {d['doc_id']} ({d['part']}): “{_quote(d['snippet'], 120)}”"
                                 for d in sp["docs"])
                lines.append(f"  - “{_quote(sp['text'], 120)}” ×{sp['count']} in: {docs}")
    return lines


def plot_tasks(path: Path, results: dict[str, Any]) -> Path:
    """One bar per task (its primary metric) with the chance level drawn across it."""
    names = [n for n, t in results["tasks"].items() if t.get("status") != "failed"]
    fig, ax = pyplot().subplots(figsize=(max(4.0, 1.6 * len(names) + 1), 3.5))
    scores = [results["tasks"][n]["metrics"][results["tasks"][n]["primary"]] for n in names]
    bars = ax.bar(range(len(names)), scores, color="#3b7dd8", label="score")
    for i, n in enumerate(names):
        ax.hlines(results["tasks"][n]["chance"], i - 0.4, i + 0.4, colors="#d83b3b", linestyles="--",
                  label="chance" if i == 0 else None)
    ax.bar_label(bars, fmt="%.3f")
    ax.set_xticks(range(len(names)), [f"{n}\n{results['tasks'][n]['primary']}" for n in names])
    ax.set_ylim(0, max([1.0, *scores]))  # bits-per-byte primaries can pass 1
    ax.set_ylabel("score")
    ax.set_title("Task scores vs chance")
    if names:
        ax.legend(loc="upper right")
    return save_figure(fig, path, dpi=100)


def plot_bpb(path: Path, results: dict[str, Any]) -> Path:
    """Bits-per-byte of each held-out domain, and all of them pooled."""
    lm = results["heldout"]
    names = list(lm["domains"]) + ["all"]
    values = [lm["domains"][n]["bpb"] for n in lm["domains"]] + [lm["all"]["bpb"]]
    fig, ax = pyplot().subplots(figsize=(max(4.0, 1.1 * len(names) + 1), 3.5))
    bars = ax.bar(names, values, color=["#3bab6e"] * (len(names) - 1) + ["#555555"])
    ax.bar_label(bars, fmt="%.3f")
    ax.margins(y=0.12)  # room for the labels above the tallest bar
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("Held-out bits-per-byte by domain")
    return save_figure(fig, path, dpi=100)
