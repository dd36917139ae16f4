"""Pipeline registration through the real kfp.Client against a small stand-in of the KFP v2beta1 REST API on
127.0.0.1 (healthz, pipelines list/upload, versions list/upload_version)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from olmoflow.cluster.register import kfp_client, main, register, version_name

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")


class FakeKFP:
    def __init__(self):
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.uploads: list[tuple[str, bytes]] = []
        self.auth: set[str] = set()

    def add_pipeline(self, name: str) -> str:
        pid = f"p{len(self.pipelines)}"
        self.pipelines[pid] = {"pipeline_id": pid, "display_name": name}
        self.versions[pid] = [{"pipeline_id": pid, "pipeline_version_id": f"{pid}v0", "display_name": name}]
        return pid

    def handler(kfp):  # noqa: N805 - the server's state, seen from the request handler
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                kfp.auth.add(self.headers.get("Authorization", ""))
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = url.path.split("/")
                if url.path == "/apis/v2beta1/healthz":
                    return self.reply({"multi_user": False})
                if url.path == "/apis/v2beta1/pipelines":
                    want = json.loads(q["filter"])["predicates"][0]["stringValue"]
                    found = [p for p in kfp.pipelines.values() if p["display_name"] == want]
                    return self.reply({"pipelines": found} if found else {})
                if parts[-1] == "versions":
                    versions, size = kfp.versions[parts[-2]], int(q.get("page_size", 10))
                    start = int(q.get("page_token") or 0)
                    token = str(start + size) if start + size < len(versions) else ""
                    return self.reply({"pipeline_versions": versions[start:start + size], "next_page_token": token})
                self.send_error(404)

            def do_POST(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if url.path == "/apis/v2beta1/pipelines/upload":
                    kfp.uploads.append((q["name"], body))
                    return self.reply(kfp.pipelines[kfp.add_pipeline(q["name"])])
                if url.path == "/apis/v2beta1/pipelines/upload_version":
                    kfp.uploads.append((q["name"], body))
                    pid = q["pipelineid"]
                    version = {"pipeline_id": pid, "pipeline_version_id": f"{pid}v{len(kfp.versions[pid])}",
                               "display_name": q["name"]}
                    kfp.versions[pid].append(version)
                    return self.reply(version)
                self.send_error(404)

        return Handler


@pytest.fixture
def kfp_server():
    state = FakeKFP()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def package(tmp_path):
    p = tmp_path / "model_flow.yaml"
    p.write_text("pipelineInfo:\n  name: olmo3-model-flow\n")
    return p


def test_first_install_creates_the_pipeline_and_the_version(kfp_server, package, monkeypatch):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(package.parent / "no-token"))
    out = register(kfp_client(host), package, "olmo3-model-flow", "0.1.0", "Olmo 3 model flow")
    vname = version_name("0.1.0", package)
    assert out == f"created pipeline olmo3-model-flow (p0); uploaded pipeline olmo3-model-flow version {vname}"
    assert [v["display_name"] for v in state.versions["p0"]] == ["olmo3-model-flow", vname]
    assert all(package.read_bytes() in body for _, body in state.uploads)  # the YAML itself went up, twice


def test_rerunning_the_hook_uploads_nothing(kfp_server, package):
    state, host = kfp_server
    client = kfp_client(host)
    register(client, package, "olmo3-model-flow", "0.1.0")
    uploads = len(state.uploads)
    assert register(client, package, "olmo3-model-flow", "0.1.0") == \
        f"pipeline olmo3-model-flow already has version {version_name('0.1.0', package)}"
    assert len(state.uploads) == uploads


def test_a_changed_pipeline_gets_a_new_version_under_the_same_package_version(kfp_server, package):
    state, host = kfp_server
    client = kfp_client(host)
    register(client, package, "olmo3-model-flow", "0.1.0")
    first = version_name("0.1.0", package)
    package.write_text("pipelineInfo:\n  name: olmo3-model-flow\n# changed\n")
    register(client, package, "olmo3-model-flow", "0.1.0")
    names = [v["display_name"] for v in state.versions["p0"]]
    assert names[-2:] == [first, version_name("0.1.0", package)] and names[-1] != first


def test_existing_version_is_found_on_a_later_page(kfp_server, package):
    state, host = kfp_server
    pid = state.add_pipeline("olmo3-model-flow")
    state.versions[pid] += [{"pipeline_id": pid, "pipeline_version_id": f"x{i}", "display_name": f"old-{i}"}
                            for i in range(150)]
    state.versions[pid].append({"pipeline_id": pid, "pipeline_version_id": "mine",
                                "display_name": version_name("0.1.0", package)})
    assert "already has version" in register(kfp_client(host), package, "olmo3-model-flow", "0.1.0")
    assert state.uploads == []


def test_projected_token_authenticates_in_multi_user_kfp(kfp_server, package, monkeypatch):
    state, host = kfp_server
    token = package.parent / "token"
    token.write_text("sa-token-123")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    register(kfp_client(host), package, "olmo3-model-flow", "0.1.0")
    assert "Bearer sa-token-123" in state.auth


def test_cli_and_missing_file(kfp_server, package, capsys, tmp_path):
    _, host = kfp_server
    main(["--host", host, "--file", str(package), "--name", "flow", "--version", "1.2.3"])
    version = f"1.2.3-{version_name('', package)[1:]}"
    assert capsys.readouterr().out.strip().endswith(f"uploaded pipeline flow version {version}")
    with pytest.raises(FileNotFoundError, match=f"pipeline package {tmp_path / 'none.yaml'} does not exist"):
        register(None, tmp_path / "none.yaml", "flow", "1")
