"""trace-ui: the page, tracing over HTTP, a document's text; and, where Debian's chromium is installed, the page in
a real headless browser: it loads, a traced text shows highlighted spans, clicking one lists its documents and
clicking a document shows its text. (make test installs chromium with `apt-get install -y chromium`; without it
the browser test skips.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
from kit import free_port
from tracekit import PLANTED

from olmoflow.trace.server import make_server

SENTENCE = PLANTED[("long", "books", "gutenberg", "b0")]


@pytest.fixture()
def base(index):
    server = make_server(index, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def test_page_trace_and_document_over_http(base):
    assert b"<textarea" in urllib.request.urlopen(base + "/", timeout=10).read()
    out = post(base + "/api/trace", {"text": f"Then: {SENTENCE}"})
    [span] = out["spans"]
    assert span["text"] == SENTENCE and span["docs"][0]["doc_id"] == "b0"
    doc = json.loads(urllib.request.urlopen(f"{base}/api/doc?ix={span['docs'][0]['doc_ix']}", timeout=10).read())
    assert doc["source"] == "gutenberg" and SENTENCE in doc["text"]
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(base + "/api/doc?ix=99999", timeout=10)


class Browser:
    """Headless chromium driven over the DevTools protocol (websocket-client, already a pinned dependency)."""

    def __init__(self, binary: str, url: str):
        import websocket

        port = free_port()
        self.proc = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      f"--remote-debugging-port={port}", "--remote-allow-origins=*", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2).read())
                page = next(p for p in pages if p.get("type") == "page")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=20)
        self.n = 0

    def js(self, expr: str):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": "Runtime.evaluate",
                                 "params": {"expression": expr, "returnByValue": True, "awaitPromise": True}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                return msg["result"]["result"].get("value")

    def wait(self, expr: str, timeout: float = 15):
        deadline = time.time() + timeout
        while not (value := self.js(expr)):
            assert time.time() < deadline, f"timed out waiting for {expr}"
            time.sleep(0.1)
        return value

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(10)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_page_in_a_headless_browser(base):
    b = Browser(CHROMIUM, base + "/")
    try:
        b.wait("document.readyState === 'complete' && document.getElementById('index').textContent.length > 0")
        text = json.dumps(f"As the story goes, {SENTENCE} And then nothing.")
        b.js(f"document.getElementById('text').value = {text}; document.getElementById('trace').click(); true")
        marks = b.wait("(() => { const m = [...document.querySelectorAll('mark.span')].map(e => e.textContent);"
                       " return m.length ? m : null; })()")
        assert marks == [SENTENCE]
        b.js("document.querySelector('mark.span').click(); true")
        first = b.wait("document.querySelector('#docs a.doc') && document.querySelector('#docs a.doc').textContent")
        assert first == "gutenberg / b0"
        assert b.js("document.querySelector('#docs .snippet b').textContent") == SENTENCE
        b.js("document.querySelector('#docs a.doc').click(); true")
        doc = b.wait("document.getElementById('doc').textContent")
        assert doc.startswith("gutenberg / b0") and SENTENCE in doc
    finally:
        b.close()
