"""`olmoflow lineage`: from an eval report back to curate through every manifest, with each artifact's MLflow run
and config, the dataset's per-rule removal counts and the trace index built from it; a bad URI is one line."""

from __future__ import annotations

import json

import pytest

from olmoflow.artifacts import ArtifactStore
from olmoflow.cli import main
from olmoflow.trace.lineage import lineage

STATS = {"rules": {"holdout": {"docs": 4, "tokens": 400}, "min_words": {"docs": 7, "tokens": 90},
                   "duplicate": {"docs": 2, "tokens": 300}},
         "sources": {"web-crawl": {"domain": "web", "docs_in": 30, "docs_out": 19, "tokens_out": 5000,
                                   "dropped": {"min_words": 7}}},
         "train_tokens": 5000}


def _commit(store, stage, fp, kind, inputs=None, config=None, run=None, files=None, metrics=None, headline=""):
    staging = store.staging_dir(stage, fp)
    for name, body in (files or {"payload.bin": "x"}).items():
        (staging / name).write_text(body)
    uri = store.uri(stage, fp)
    store.commit(staging, uri, {
        "stage": stage, "fingerprint": fp, "kind": kind, "config": config or {},
        "inputs": {n: {"uri": a, "fingerprint": a.rsplit("/", 1)[1]} for n, a in (inputs or {}).items()},
        "mlflow_run_id": run, "flow_run": "flowrun1" if run else None, "metrics": metrics or {},
        "headline": headline})
    return uri


@pytest.fixture
def chain(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"), "olmo3")
    data = _commit(store, "curate", "d" * 16, "dataset", config={"curate": {"seed": 0, "val_fraction": 0.1}},
                   run="run-curate", files={"stats.json": json.dumps(STATS), "tokenizer.json": "{}"})
    other = _commit(store, "curate", "e" * 16, "dataset", run="run-other")
    pre = _commit(store, "pretrain", "p" * 16, "checkpoint", {"dataset": data},
                  {"model": {"d_model": 32}, "pretrain": {"lr": 0.001, "steps": 10}}, run="run-pretrain")
    sft = _commit(store, "sft", "s" * 16, "checkpoint", {"dataset": data, "checkpoint": pre},
                  {"sft": {"lr": 0.0001}}, run=None)  # run without MLflow: no run id
    index = _commit(store, "trace-index", "i" * 16, "index", {"dataset": data},
                    {"trace_index": {"parts": ["pretrain", "post"], "mem_gib": 4}}, run="run-index")
    _commit(store, "trace-index", "j" * 16, "index", {"dataset": other}, run="run-other-index")
    report = _commit(store, "eval", "r" * 16, "report", {"dataset": data, "checkpoint": sft},
                     {"eval": {"tasks": ["arc_easy"]}}, run="run-eval", metrics={"val_bpb": 1.2345},
                     headline="val_bpb")
    return {"data": data, "pre": pre, "sft": sft, "index": index, "report": report}


def test_graph_from_the_report_back_to_curate(chain):
    g = lineage(chain["report"] + "/")
    assert g["root"] == chain["report"]
    by = {n["stage"]: n for n in g["nodes"]}
    assert [n["stage"] for n in g["nodes"]] == ["eval", "sft", "pretrain", "curate"]  # each artifact once
    assert {(e["from"], e["to"], e["input"]) for e in g["edges"]} == {
        (chain["data"], chain["report"], "dataset"), (chain["sft"], chain["report"], "checkpoint"),
        (chain["data"], chain["sft"], "dataset"), (chain["pre"], chain["sft"], "checkpoint"),
        (chain["data"], chain["pre"], "dataset")}
    assert by["eval"]["mlflow_run_id"] == "run-eval" and by["eval"]["headline"] == {"metric": "val_bpb",
                                                                                     "value": 1.2345}
    assert by["sft"]["mlflow_run_id"] is None
    assert by["pretrain"]["config"] == {"model": {"d_model": 32}, "pretrain": {"lr": 0.001, "steps": 10}}
    data = by["curate"]
    assert data["fingerprint"] == "d" * 16 and data["mlflow_run_id"] == "run-curate"
    assert list(data["data"]["rules"]) == ["min_words", "holdout", "duplicate"]  # most documents removed first
    assert data["data"]["rules"]["holdout"] == {"docs": 4, "tokens": 400}
    assert data["data"]["sources"]["web-crawl"]["docs_out"] == 19
    [ix] = data["indexes"]  # the index of the other dataset does not match
    assert ix["uri"] == chain["index"] and ix["mlflow_run_id"] == "run-index" and ix["parts"] == ["pretrain", "post"]


def test_printed_chain(chain, capsys):
    assert main(["lineage", chain["report"]]) == 0
    out = capsys.readouterr().out
    assert out.index(f"eval report {'r' * 16}  {chain['report']}") < out.index("sft checkpoint") \
        < out.index("pretrain checkpoint") < out.index("curate dataset")
    assert "mlflow run: run-eval (flow run flowrun1)" in out and "val_bpb: 1.2345" in out
    assert "mlflow run: — (not logged to MLflow)" in out
    assert 'config: model.d_model=32 pretrain.lr=0.001 pretrain.steps=10' in out
    assert f"input checkpoint: {chain['pre']}" in out
    assert "removed by rule (docs / tokens): min_words 7 / 90, holdout 4 / 400, duplicate 2 / 300" in out
    assert "source web-crawl (web): 30 docs in, 19 out, 5,000 tokens" in out
    assert f"trace index: {chain['index']} (mlflow run run-index)" in out


def test_json_is_one_object(chain, capsys):
    assert main(["lineage", chain["pre"], "--json"]) == 0
    g = json.loads(capsys.readouterr().out)
    assert [n["stage"] for n in g["nodes"]] == ["pretrain", "curate"]
    assert g["edges"] == [{"from": chain["data"], "to": chain["pre"], "input": "dataset"}]
    assert g["nodes"][1]["indexes"][0]["uri"] == chain["index"]


def test_a_long_config_points_to_the_manifest(tmp_path, capsys):
    store = ArtifactStore(str(tmp_path / "store"), "olmo3")
    uri = _commit(store, "curate", "c" * 16, "dataset", config={"curate": {f"knob_{i}": i for i in range(40)}})
    assert main(["lineage", uri]) == 0
    out = capsys.readouterr().out
    assert f"more in {uri}/manifest.json (config)" in out
    assert "stats.json: none in this dataset" in out and "trace index: none built from this dataset" in out


def test_a_missing_input_is_shown_not_fatal(chain, tmp_path, capsys):
    (tmp_path / "store" / "olmo3" / "pretrain" / ("p" * 16) / "manifest.json").unlink()
    g = lineage(chain["sft"])
    gone = next(n for n in g["nodes"] if n["uri"] == chain["pre"])
    assert "not a complete artifact" in gone["error"] and gone["fingerprint"] == "p" * 16
    assert main(["lineage", chain["sft"]]) == 0
    assert f"? {chain['pre']}" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["folder", "corrupt"])
def test_a_bad_uri_is_one_line(tmp_path, capsys, chain, bad):
    if bad == "folder":
        uri = str(tmp_path / "nowhere")
    else:
        uri = chain["report"]
        (tmp_path / "store" / "olmo3" / "eval" / ("r" * 16) / "manifest.json").write_text("{oops")
    assert main(["lineage", uri]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert uri in line and ("not a complete artifact" in line if bad == "folder" else "corrupt manifest.json" in line)
