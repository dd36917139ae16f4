"""`olmoflow submit` / `olmoflow status` through the real kfp.Client against the stand-in KFP v2beta1 REST API of
tests/cluster/test_register.py, grown by experiments and runs."""

import json
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from cluster.test_register import FakeKFP

from olmoflow import __version__
from olmoflow.cli import main
from olmoflow.cluster.register import version_name
from olmoflow.config import load_config, to_json
from olmoflow.flow.pipeline import IR_PATH

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")


class FakeKFPRuns(FakeKFP):
    def __init__(self):
        super().__init__()
        self.experiments: list[dict] = []
        self.runs: dict[str, dict] = {}

    def handler(kfp):  # noqa: N805 - the server's state, seen from the request handler
        base = FakeKFP.handler(kfp)

        class Handler(base):
            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/apis/v2beta1/experiments":
                    want = json.loads(parse_qs(url.query)["filter"][0])["predicates"][0]["stringValue"]
                    found = [e for e in kfp.experiments if e["display_name"] == want]
                    return self.reply({"experiments": found} if found else {})
                if url.path.startswith("/apis/v2beta1/runs/"):
                    return self.reply(kfp.runs[url.path.rsplit("/", 1)[1]])
                return super().do_GET()

            def do_POST(self):
                url = urlparse(self.path)
                if url.path not in ("/apis/v2beta1/experiments", "/apis/v2beta1/runs"):
                    return super().do_POST()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if url.path.endswith("experiments"):
                    kfp.experiments.append({**body, "experiment_id": f"e{len(kfp.experiments)}"})
                    return self.reply(kfp.experiments[-1])
                run = {**body, "run_id": f"r{len(kfp.runs)}", "state": "PENDING"}
                kfp.runs[run["run_id"]] = run
                return self.reply(run)

        return Handler


@pytest.fixture
def kfp(monkeypatch, tmp_path):
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    state = FakeKFPRuns()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_submit_uploads_once_and_runs_that_version(kfp, capsys):
    state, host = kfp
    vname = version_name(__version__, IR_PATH)
    assert main(["submit", "--host", host, "--config", "smoke", "--set", "pretrain.lr=1e-3", "--to", "sft"]) == 0
    out = capsys.readouterr().out
    assert f"uploaded pipeline olmo3-model-flow version {vname}" in out and "run r0:" in out
    assert [b for _, b in state.uploads][-1].count(IR_PATH.read_bytes()) == 1  # the checked-in IR went up
    run = state.runs["r0"]
    version = state.versions["p0"][-1]
    assert version["display_name"] == vname
    assert run["pipeline_version_reference"] == {"pipeline_id": "p0",
                                                 "pipeline_version_id": version["pipeline_version_id"]}
    assert run["runtime_config"]["parameters"] == {"config": "smoke", "overrides": ["pretrain.lr=1e-3"],
                                                   "start": "curate", "stop": "sft", "init": ""}
    assert run["display_name"] == "smoke curate..sft"
    assert run["experiment_id"] == "e0" and state.experiments[0]["display_name"] == "olmoflow"

    uploads = len(state.uploads)
    assert main(["submit", "--host", host, "--from", "sft", "--init", "s3://b/flow/dpo/abc", "--nodes", "sft=2",
                 "--nodes", "long-context=4", "--gpus-per-node", "4", "--image-tag", "0.2.0"]) == 0
    assert len(state.uploads) == uploads and len(state.experiments) == 1  # same version, same experiment
    assert "already has version" in capsys.readouterr().out
    params = state.runs["r1"]["runtime_config"]["parameters"]
    assert params["init"] == "s3://b/flow/dpo/abc"
    assert {k: params[k] for k in ("nodes_sft", "nodes_long_context", "gpus_per_node", "image_tag")} == \
        {"nodes_sft": 2, "nodes_long_context": 4, "gpus_per_node": 4, "image_tag": "0.2.0"}
    # every run-form parameter submit sets is one the compiled pipeline declares
    declared = next(yaml.safe_load_all(IR_PATH.read_text()))["root"]["inputDefinitions"]["parameters"]
    assert set(params) <= set(declared)


def test_a_local_config_file_travels_as_json(kfp, tmp_path):
    state, host = kfp
    preset = tmp_path / "mine.yaml"
    preset.write_text(yaml.safe_dump({"flow": {"name": "mine"}}))
    assert main(["submit", "--host", host, "--config", str(preset), "--set", "sft.lr=2e-5"]) == 0
    params = state.runs["r0"]["runtime_config"]["parameters"]
    assert params["config"] == to_json(load_config(str(preset), ["sft.lr=2e-5"])) and params["overrides"] == []
    assert json.loads(params["config"])["flow"]["name"] == "mine"


def test_bad_config_or_plan_sends_nothing(kfp, capsys):
    state, host = kfp
    assert main(["submit", "--host", host, "--set", "pretrain.nope=1"]) == 2
    assert main(["submit", "--host", host, "--from", "sft"]) == 2
    assert "--from sft needs --init URI" in capsys.readouterr().err
    assert main(["submit", "--host", host, "--nodes", "pretrian=2"]) == 2
    assert "--nodes pretrian=2: unknown stage 'pretrian'" in capsys.readouterr().err
    assert main(["submit", "--host", host, "--nodes", "eval=2"]) == 2
    assert "--nodes eval=2: stage eval runs in one process on one node" in capsys.readouterr().err
    assert main(["submit", "--host", host, "--nodes", "trace-index=2"]) == 2
    assert main(["submit", "--host", host, "--nodes", "sft=0"]) == 2
    assert "--nodes sft=0: the node count must be an integer >= 1" in capsys.readouterr().err
    assert state.uploads == [] and state.runs == {}


def test_status_shows_the_run_and_its_tasks(kfp, capsys):
    state, host = kfp
    state.runs["r7"] = {"run_id": "r7", "display_name": "tiny curate..eval", "state": "RUNNING",
                        "run_details": {"task_details": [
                            {"display_name": "pretrain", "state": "RUNNING", "start_time": "2026-01-01T01:00:00Z"},
                            {"display_name": "curate", "state": "SUCCEEDED", "start_time": "2026-01-01T00:00:00Z"}]}}
    assert main(["status", "r7", "--host", host]) == 0
    assert capsys.readouterr().out.splitlines() == ["run r7 (tiny curate..eval): RUNNING",
                                                    "  curate           SUCCEEDED",
                                                    "  pretrain         RUNNING"]
