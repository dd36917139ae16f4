"""The model-flow report: gather's shape on synthetic eval results (a failed task, a stage that did not run,
contamination, today's eval results without the new fields), the metrics it logs, and report.html (self-contained,
every task and stage in it, chance drawn in each suite's plot)."""

from __future__ import annotations

import json
import re

import pytest

from olmoflow.evals import modelflow_html
from olmoflow.evals.modelflow import ModelFlowError, copy_predictions, flat_metrics, gather
from olmoflow.evals.modelflow_html import write_report


def task(metrics, chance, primary, n=40, suite=None, lower=(), **extra):
    """A task entry as eval's results.json holds it (olmoflow/stages/eval.py), plus the per-task fields."""
    entry = {"n": n, "num_shots": 0, "chance": chance, "primary": primary, "metrics": metrics,
             "prompt_format": "cloze (rc)", "wall_s": 0.1, "kind": "mc", "description": "d", "formulas": {},
             "lower_is_better": list(lower)}
    return entry | ({"suite": suite} if suite else {}) | extra


def results(tasks, bpb, chat=False, docs=5):
    return {"tasks": tasks, "chat_format": {"chat": chat, "reason": "r"},
            "heldout": {"all": {"docs": docs, "tokens": 100, "bytes": 400, "nats": 1.0, "loss_per_token": 2 * bpb,
                                "bpb": bpb}, "macro_bpb": bpb + 0.01, "domains": {}},
            "metrics": {"val_bpb": bpb}, "model": {"checkpoint": f"/store/ckpt-{bpb}"}}


@pytest.fixture
def per_stage():
    arc = dict(primary="acc_per_char", lower=("bpb",))
    return {
        "pretrain": results({
            "arc_easy": task({"acc_per_char": 0.30, "acc_raw": 0.28, "bpb": 1.9}, 0.25, suite="base", **arc,
                             status="ok", contamination={"checked": True, "share": 0.1, "contaminated": 4,
                                                         "items": 40, "flagged": True,
                                                         "clean": {"n": 36, "acc_per_char": 0.25}}),
            "gsm8k": task({}, 0.0, "exact_match", suite="base", status="failed",
                          error="eval/gsm8k.jsonl line 3: missing field 'answer'"),
        }, bpb=2.5),
        # midtrain and long-context did not run: no entry
        "sft": results({
            "arc_easy": task({"acc_per_char": 0.45, "acc_raw": 0.40, "bpb": 1.2}, 0.25, suite="chat", **arc,
                             status="ok", contamination={"share": 0.0, "contaminated": 0, "items": 40}),
            "gsm8k": task({"exact_match": 0.05}, 0.0, "exact_match", n=30, suite="chat", status="ok",
                          contamination={"checked": False}),
        }, bpb=2.1, chat=True),
    }


def test_gather_shape(per_stage):
    g = gather(per_stage)
    assert g["stages"] == {
        "pretrain": {"arc_easy": {"acc_per_char": 0.30, "acc_raw": 0.28, "bpb": 1.9, "n": 40},
                     "heldout": {"val_bpb": 2.5, "val_loss": 5.0, "val_bpb_macro": 2.51, "n": 5}},
        "sft": {"arc_easy": {"acc_per_char": 0.45, "acc_raw": 0.40, "bpb": 1.2, "n": 40},
                "gsm8k": {"exact_match": 0.05, "n": 30},
                "heldout": {"val_bpb": 2.1, "val_loss": 4.2, "val_bpb_macro": 2.11, "n": 5}}}
    assert g["order"] == ["pretrain", "sft"]
    assert g["tasks"] == ["arc_easy", "gsm8k", "heldout"]
    assert g["failed"] == {"pretrain": {"gsm8k": "eval/gsm8k.jsonl line 3: missing field 'answer'"}}
    assert g["primary"] == {"arc_easy": "acc_per_char", "gsm8k": "exact_match", "heldout": "val_bpb"}
    # chance is a guess's accuracy: not drawn for bits-per-byte
    assert g["chance"] == {"arc_easy": {"acc_per_char": 0.25, "acc_raw": 0.25}, "gsm8k": {"exact_match": 0.0}}
    # the metric names eval's catalog writes: a chance level for the rates only
    rates = gather({"sft": results({"ifbench": task(dict.fromkeys(
        ["prompt_level_strict_acc", "inst_level_loose_acc", "unverified_share", "logits_per_char_corr",
         "bits_per_byte_corr", "pass_at_1", "f1", "exact_match_flex", "acc_uncond"], 0.5), 0.1,
        "prompt_level_strict_acc", lower=("unverified_share", "bits_per_byte_corr"))}, bpb=1.0)})
    assert set(rates["chance"]["ifbench"]) == {"prompt_level_strict_acc", "inst_level_loose_acc", "pass_at_1", "f1",
                                               "exact_match_flex", "acc_uncond"}
    assert g["suites"] == {"base": {"stages": ["pretrain"], "tasks": ["arc_easy", "gsm8k"]},
                           "chat": {"stages": ["sft"], "tasks": ["arc_easy", "gsm8k"]}}
    assert g["contamination"]["pretrain"]["arc_easy"] == {"share": 0.1, "contaminated": 4, "items": 40,
                                                          "flagged": True, "clean": {"n": 36, "acc_per_char": 0.25}}
    assert g["contamination"]["sft"]["arc_easy"]["flagged"] is False
    assert "gsm8k" not in g["contamination"]["sft"]  # not checked: no entry
    assert g["checkpoints"] == {"pretrain": "/store/ckpt-2.5", "sft": "/store/ckpt-2.1"}
    json.dumps(g)  # results.json


def test_eval_results_without_the_per_task_fields():
    """Today's eval results (no suite, status, error or contamination): the suite follows the prompt style, a task
    without metrics is failed, and contamination given as the list of item ids counts them."""
    g = gather({"dpo": results({
        "arc_easy": task({"acc": 0.5}, 0.25, "acc", contamination={"contaminated": ["a", "b"], "items": 8}),
        "arithmetic": task({}, 0.0, "exact_match"),
        "boolq": task({"acc": 0.6}, 0.5, "acc", status="failed")}, bpb=1.5, chat=True)})
    assert g["suites"] == {"chat": {"stages": ["dpo"], "tasks": ["arc_easy", "arithmetic", "boolq"]}}
    assert g["failed"] == {"dpo": {"arithmetic": "no metrics recorded", "boolq": "status failed"}}
    assert g["primary"] == {"arc_easy": "acc", "arithmetic": "exact_match", "boolq": "acc", "heldout": "val_bpb"}
    assert "arithmetic" not in g["stages"]["dpo"] and "arithmetic" not in g["chance"]
    # the stage's suite when its tasks do not name one (eval writes it beside the tasks)
    sft = gather({"sft": {"suite": "chat", "tasks": {"boolq": task({"acc": 0.6}, 0.5, "acc")}}})
    assert sft["suites"] == {"chat": {"stages": ["sft"], "tasks": ["boolq"]}} and sft["tasks"] == ["boolq"]
    assert g["contamination"]["dpo"]["arc_easy"] == {"share": 0.25, "contaminated": 2, "items": 8, "flagged": True}


def test_a_malformed_task_entry_names_stage_and_task():
    with pytest.raises(ModelFlowError, match="stage sft: task mmlu: entry is not a JSON object"):
        gather({"sft": {"tasks": {"mmlu": [0.3]}}})


def test_flat_metrics(per_stage):
    flat = flat_metrics(gather(per_stage))
    assert flat["stages_evaluated"] == 2.0
    assert flat["pretrain/arc_easy/acc_per_char"] == 0.30 and flat["sft/gsm8k/exact_match"] == 0.05
    assert flat["final/heldout/val_bpb"] == 2.1 and flat["pretrain/heldout/val_bpb"] == 2.5
    assert flat["pretrain/arc_easy/contamination_share"] == 0.1
    assert not any(k.endswith("/n") for k in flat) and "pretrain/gsm8k/exact_match" not in flat


def test_report_html_is_self_contained_and_complete(per_stage, tmp_path, monkeypatch):
    g = gather(per_stage)
    figures = {}
    real_save = modelflow_html.save_figure

    def keep(fig, path, dpi):  # the figure, to read the drawn lines back
        figures[path.name] = [(ax.get_title(), [(tuple(line.get_ydata()), line.get_linestyle())
                                                for line in ax.get_lines()]) for ax in fig.axes if ax.get_visible()]
        return real_save(fig, path, dpi)

    monkeypatch.setattr(modelflow_html, "save_figure", keep)
    written = write_report(tmp_path, g)
    page = (tmp_path / "report.html").read_text()
    assert set(written) == {"report.html", "suite_base.png", "suite_chat.png", "heldout_bpb.png"}
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 3
    for name in ["pretrain", "sft", "arc_easy", "gsm8k", "heldout"]:
        assert f">{name}<" in page
    assert "failed: eval/gsm8k.jsonl line 3: missing field &#x27;answer&#x27;" in page
    # the contaminated score flagged with the clean items' score beside it, the clean one not
    assert "0.3000 ⚠ 10.0% (clean 0.2500)" in page and "0.4500</td>" in page
    # each task's chance is a dashed horizontal line at its value in its suite's panel
    base = dict(figures["suite_base.png"])
    assert ((0.25, 0.25), "--") in base["arc_easy (acc_per_char)"]
    chat = dict(figures["suite_chat.png"])
    assert ((0.0, 0.0), "--") in chat["gsm8k (exact_match)"]
    assert ((0.45,), "-") in chat["arc_easy (acc_per_char)"]
    (title, lines), = figures["heldout_bpb.png"]
    assert lines == [((2.5, 2.1), "-")]


def test_predictions_are_carried_per_stage(tmp_path):
    src = tmp_path / "eval-sft"
    (src / "predictions").mkdir(parents=True)
    (src / "predictions" / "arc_easy.jsonl").write_text('{"id": "1", "correct": true}\n')
    out = tmp_path / "out"
    assert copy_predictions(src, out, "sft") == ["arc_easy"]
    assert (out / "predictions" / "sft" / "arc_easy.jsonl").read_text() == '{"id": "1", "correct": true}\n'
    assert copy_predictions(tmp_path / "no-eval", out, "dpo") == []


def test_each_stages_traced_samples_are_in_the_report(per_stage, tmp_path):
    """OlmoTrace per stage: the spans of each checkpoint's sample generations, marked, with their documents."""
    span = {"text": "The answer is", "start": 1, "end": 14, "count": 557,
            "docs": [{"source": "synthetic-qa", "doc_id": "082c", "snippet": "..."}]}
    per_stage["sft"]["trace"] = {"status": "traced", "note": "", "checkpoints": [{
        "stage": "sft", "uri": "/store/ckpt", "chat": True, "spans": 1, "covered": 0.25,
        "samples": [{"id": "val/web#0", "prompt": "Plants <need>", "generated": " The answer is 4", "spans": [span],
                     "covered": 0.8}]}]}
    per_stage["pretrain"]["trace"] = {"status": "no index", "note": "no trace index was given", "checkpoints": []}
    g = gather(per_stage)
    assert list(g["traces"]) == ["pretrain", "sft"] and g["traces"]["sft"]["checkpoints"][0]["spans"] == 1
    page = write_report(tmp_path, g)["report.html"].read_text()
    assert '<mark title="×557">The answer is</mark> 4' in page and "Plants &lt;need&gt;" in page
    assert "from: synthetic-qa / 082c" in page and "not traced — no trace index was given" in page
