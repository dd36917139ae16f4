"""The model-flow report's page and plots, drawn from modelflow.gather's dict alone.

report.html is one self-contained file (inline CSS, plots as base64 PNG, no link out), so it opens the same from
the artifact store, a download, or MLflow's artifact viewer: a task × stage table of each task's primary metric
(chance beside it; a failed task shows its reason; a score measured on items that overlap the training data is
flagged ⚠ with the share), one plot per suite of each task's primary metric across that suite's stages with its
chance level dashed, and the held-out bits-per-byte across every stage.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from olmoflow.contract.report import pyplot, save_figure
from olmoflow.evals.modelflow import HELDOUT, finite

COLUMNS = 4
"""Task panels per row in a suite's plot."""
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.task,th.task{text-align:left}tr.suite th{text-align:left;background:#e6eef9}
td.failed{color:#b00;background:#fdecec;text-align:left;font-size:.85em}td.flag{background:#fff4d6}
td.none{color:#aaa;text-align:center}.note{color:#555;font-size:.9em}img{max-width:100%;border:1px solid #eee}
"""


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _values(gathered: dict[str, Any], task: str, stages: list[str]) -> list[float]:
    """The task's primary metric at each stage (NaN where it was not scored: a gap in the line)."""
    metric = gathered["primary"].get(task)
    return [gathered["stages"][s].get(task, {}).get(metric, math.nan) for s in stages]


def _flagged(gathered: dict[str, Any], stage: str, task: str) -> dict[str, Any] | None:
    c = gathered["contamination"].get(stage, {}).get(task)
    return c if c and c["flagged"] else None


def plot_suite(path: Path, gathered: dict[str, Any], suite: str) -> Path | None:
    """One panel per task of `suite`: its primary metric across the suite's stages, chance dashed, a score on
    contaminated items ringed in red. None when no task of the suite has a score."""
    stages = gathered["suites"][suite]["stages"]
    tasks = [t for t in gathered["suites"][suite]["tasks"]
             if any(t in gathered["stages"][s] for s in stages)]  # a task that never scored has no line
    if not tasks:
        return None
    cols = min(COLUMNS, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    x = list(range(len(stages)))
    for ax, task in zip(axes.flat, tasks):
        metric = gathered["primary"][task]
        ax.plot(x, _values(gathered, task, stages), marker="o", color="#3b7dd8", label=metric)
        chance = gathered["chance"].get(task, {}).get(metric)
        if chance is not None:
            ax.axhline(chance, color="#d83b3b", linestyle="--", linewidth=1, label=f"chance {chance:.3g}")
        hits = [(i, gathered["stages"][s][task][metric]) for i, s in enumerate(stages)
                if _flagged(gathered, s, task) and task in gathered["stages"][s]]
        if hits:
            ax.scatter(*zip(*hits), s=120, facecolors="none", edgecolors="#d83b3b", label="contaminated")
        down = " ↓" if metric in gathered["lower_is_better"].get(task, []) else ""
        ax.set_title(f"{task} ({metric}{down})", fontsize=9)
        ax.set_xticks(x, stages, fontsize=7, rotation=20)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    return save_figure(fig, path, dpi=90)


def plot_heldout(path: Path, gathered: dict[str, Any]) -> Path | None:
    """Held-out bits-per-byte (all domains pooled) across every stage evaluated; None without any."""
    stages = [s for s in gathered["order"] if HELDOUT in gathered["stages"][s]]
    if not stages:
        return None
    fig, ax = pyplot().subplots(figsize=(max(4.0, 1.2 * len(stages) + 1.5), 3.2))
    values = _values(gathered, HELDOUT, stages)
    ax.plot(range(len(stages)), values, marker="o", color="#3bab6e")
    for i, v in enumerate(values):
        ax.annotate(f"{v:.3f}", (i, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xticks(range(len(stages)), stages)
    ax.margins(y=0.2)
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("Held-out bits-per-byte per stage")
    return save_figure(fig, path, dpi=90)


def _cell(gathered: dict[str, Any], stage: str, task: str, suite_stages: list[str]) -> str:
    reason = gathered["failed"].get(stage, {}).get(task)
    if reason is not None and stage in suite_stages:
        return f'<td class="failed" title="{html.escape(reason)}">failed: {html.escape(reason)}</td>'
    score = gathered["stages"].get(stage, {}).get(task)
    if stage not in suite_stages or score is None:
        return '<td class="none">·</td>'
    metric = gathered["primary"][task]
    text, title = _fmt(score.get(metric)), f"n = {score['n']} {'documents' if task == HELDOUT else 'items'}"
    c = _flagged(gathered, stage, task)
    if c is None:
        return f'<td title="{title}">{text}</td>'
    share = "?" if c["share"] is None else f"{100 * c['share']:.1f}%"
    title += f"; {share} of the items overlap the training data"
    clean = finite(c.get("clean", {}).get(metric))
    if clean is not None:
        title += f"; on the {c['clean'].get('n', '?')} clean items alone: {clean:.4f}"
        text += f" ⚠ {share} (clean {clean:.4f})"
    else:
        text += f" ⚠ {share}"
    return f'<td class="flag" title="{html.escape(title)}">{text}</td>'


def _table(gathered: dict[str, Any]) -> list[str]:
    order = gathered["order"]
    head = "".join(f"<th>{html.escape(s)}</th>" for s in order)
    lines = ['<table>', f'<tr><th class="task">task</th><th>metric</th><th>chance</th>{head}</tr>']
    groups = [(f"{suite} suite", g["tasks"], g["stages"]) for suite, g in gathered["suites"].items()]
    if any(HELDOUT in gathered["stages"][s] for s in order):
        groups.append(("held-out language modelling (every stage)", [HELDOUT], order))
    for title, tasks, stages in groups:
        lines.append(f'<tr class="suite"><th colspan="{3 + len(order)}">{html.escape(title)}</th></tr>')
        for task in tasks:
            metric = gathered["primary"].get(task, "")
            down = " ↓" if metric in gathered["lower_is_better"].get(task, []) else ""
            chance = gathered["chance"].get(task, {}).get(metric)
            cells = "".join(_cell(gathered, s, task, stages) for s in order)
            lines.append(f'<tr><td class="task">{html.escape(task)}</td><td>{html.escape(metric)}{down}</td>'
                         f"<td>{_fmt(chance)}</td>{cells}</tr>")
    return lines + ["</table>"]


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def render(gathered: dict[str, Any], plots: dict[str, Path], title: str = "Model flow") -> str:
    """report.html's text; `plots` maps a heading to a PNG drawn by plot_suite / plot_heldout."""
    order = gathered["order"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">Stages evaluated, in flow order: {html.escape(", ".join(order)) or "none"}. '
             "Each cell is the task's primary metric on that stage's checkpoint (hover: item count); ↓ marks a "
             "metric where lower is better; · marks a task not in that stage's suite (base models get the base "
             "suite, post-trained ones the chat suite); ⚠ flags a score measured on items whose n-grams occur in "
             "the training data, with their share.</p>",
             "<h2>Task × stage</h2>", *_table(gathered)]
    for heading, png in plots.items():
        parts += [f"<h2>{html.escape(heading)}</h2>", _img(png, heading)]
    failed = [(s, t, r) for s in order for t, r in gathered["failed"].get(s, {}).items()]
    if failed:
        parts += ["<h2>Failed tasks</h2>", "<ul>"]
        parts += [f"<li>{html.escape(s)} / {html.escape(t)}: {html.escape(r)}</li>" for s, t, r in failed]
        parts.append("</ul>")
    parts += _traces(gathered)
    if gathered["checkpoints"]:
        parts += ["<h2>Checkpoints</h2>", "<ul>"]
        parts += [f"<li>{html.escape(s)}: <code>{html.escape(u)}</code></li>"
                  for s, u in gathered["checkpoints"].items()]
        parts.append("</ul>")
    return "\n".join(parts + ["</body></html>", ""])


def _marked(text: str, spans: list[dict[str, Any]]) -> str:
    """The text, escaped, with each traced span in <mark> (spans are character offsets, merged for display)."""
    out, at = [], 0
    for sp in sorted(spans, key=lambda s: s["start"]):
        if sp["start"] < at:
            continue
        out += [html.escape(text[at:sp["start"]]),
                f'<mark title="×{sp.get("count", "?")}">{html.escape(text[sp["start"]:sp["end"]])}</mark>']
        at = sp["end"]
    return "".join(out + [html.escape(text[at:])])


def _traces(gathered: dict[str, Any]) -> list[str]:
    """Where each stage's sample generations occur verbatim in the training data (OlmoTrace, per eval)."""
    traces = gathered.get("traces") or {}
    if not traces:
        return []
    parts = ["<h2>Where the model saw it (OlmoTrace)</h2>",
             '<p class="note">Each evaluated checkpoint continued a few held-out openings; marked spans occur '
             "verbatim in the training data (hover: occurrences), with the documents they came from.</p>"]
    for stage, t in traces.items():
        entries = t["checkpoints"]
        if not entries:
            parts.append(f"<p><b>{html.escape(stage)}</b>: not traced — {html.escape(t['note'])}</p>")
            continue
        for e in entries:
            parts.append(f"<h3>{html.escape(stage)}: {len(e['samples'])} samples, {e['spans']} spans, "
                         f"{100 * e['covered']:.1f}% of the generated text</h3><ul>")
            for sample in e["samples"]:
                docs = sorted({f"{d['source']} / {d['doc_id']}" for sp in sample["spans"] for d in sp["docs"]})
                marked = _marked(sample["generated"], sample["spans"])
                source = f"<br><small>from: {html.escape('; '.join(docs[:5]))}</small>" if docs else ""
                parts.append(f"<li><code>{html.escape(sample['prompt'])}</code> → {marked}{source}</li>")
            parts.append("</ul>")
    return parts


def write_report(out: Path, gathered: dict[str, Any], title: str = "Model flow") -> dict[str, Path]:
    """plots/{suite}.png, plots/heldout_bpb.png and report.html under `out`; {name: path} of what was written."""
    plots: dict[str, Path] = {}
    for suite in gathered["suites"]:
        png = plot_suite(out / "plots" / f"suite_{suite}.png", gathered, suite)
        if png is not None:
            plots[f"{suite} suite: each task's primary metric across its stages (dashed: chance)"] = png
    png = plot_heldout(out / "plots" / "heldout_bpb.png", gathered)
    if png is not None:
        plots["held-out bits-per-byte across stages"] = png
    page = out / "report.html"
    page.write_text(render(gathered, plots, title), encoding="utf-8")
    return {"report.html": page} | {p.name: p for p in plots.values()}
