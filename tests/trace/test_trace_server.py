"""trace-ui: the page, tracing over HTTP, a document's text, a prompt answered by a tiny checkpoint and traced; and,
where Debian's chromium is installed, the page in a real headless browser: it loads, a traced text shows highlighted
spans, clicking one lists its documents and clicking a document shows its text; with a checkpoint, a typed prompt's
answer shows its spans. (make test installs chromium with `apt-get install -y chromium`; without it the browser
tests skip.)"""

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


def serving(index, completer=None):
    server = make_server(index, 0, completer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture()
def base(index):
    server, url = serving(index)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory):
    """A tiny Olmo3 over the index's tokenizer, saved as a checkpoint payload (model/ + tokenizer.json)."""
    from kit import tiny_olmo
    from tokenizers import Tokenizer

    from olmoflow.model.checkpoint import save_checkpoint

    vocab = Tokenizer.from_file(str(dataset / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    out = tmp_path_factory.mktemp("trace-ckpt") / "ckpt"
    save_checkpoint(out, tiny_olmo(vocab, max_seq_len=128), dataset / "tokenizer.json")
    return out


class Copier:
    """A stand-in checkpoint that answers every prompt with training text (a tiny random model never does)."""

    uri = "copier"

    def __call__(self, prompt: str) -> str:
        return f"Well, {SENTENCE} That is all."

    def info(self) -> dict:
        return {"uri": self.uri, "chat": False}


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


def test_a_prompt_answered_by_a_checkpoint_and_traced(index, checkpoint):
    from olmoflow.trace.prompting import Completer

    completer = Completer.load(checkpoint, None, str(checkpoint), max_new_tokens=12)
    assert completer.info() == {"uri": str(checkpoint), "chat": False, "max_new_tokens": 12,
                                "reason": "auto: the checkpoint was made by stage unknown, not a post-training stage"}
    server, url = serving(index, completer)
    try:
        info = json.loads(urllib.request.urlopen(url + "/api/info", timeout=10).read())
        assert info["checkpoint"]["uri"] == str(checkpoint) and info["checkpoint"]["chat"] is False
        out = post(url + "/api/generate", {"prompt": "The lighthouse keeper"})
        assert out["prompt"] == "The lighthouse keeper" and out["gen_ms"] > 0 and isinstance(out["spans"], list)
        assert out["text"] == completer("The lighthouse keeper")  # greedy: the same answer again
        with pytest.raises(urllib.error.HTTPError) as err:
            post(url + "/api/generate", {"prompt": "  "})
        assert err.value.code == 400
    finally:
        server.shutdown()
        server.server_close()
    # a post-training stage's checkpoint is prompted with the chat template; its answer stops at <|im_end|>
    chat = Completer.load(checkpoint, "sft", "sft-ckpt", max_new_tokens=12)
    assert chat.chat and chat.reason == "auto: the checkpoint was made by stage sft"
    assert isinstance(chat("What does photosynthesis do?"), str)


def test_an_answer_that_copies_training_text_shows_its_span(index):
    server, url = serving(index, Copier())
    try:
        out = post(url + "/api/generate", {"prompt": "Tell me about the captain."})
        [span] = out["spans"]
        assert span["text"] == SENTENCE and span["docs"][0]["doc_id"] == "b0"
        assert out["text"][span["start"]:span["end"]] == SENTENCE
    finally:
        server.shutdown()
        server.server_close()


def test_no_checkpoint_no_prompts(base):
    assert json.loads(urllib.request.urlopen(base + "/api/info", timeout=10).read())["checkpoint"] is None
    with pytest.raises(urllib.error.HTTPError) as err:
        post(base + "/api/generate", {"prompt": "hello"})
    assert err.value.code == 404 and "--checkpoint" in json.loads(err.value.read())["error"]


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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_prompt_box_in_a_headless_browser(index):
    server, url = serving(index, Copier())
    b = Browser(CHROMIUM, url + "/")
    try:
        b.wait("document.readyState === 'complete' && !document.getElementById('promptbox').hidden")
        assert b.js("document.getElementById('checkpoint').textContent") == "copier (plain text)"
        b.js("document.getElementById('prompt').value = 'Tell me about the captain.';"
             " document.getElementById('generate').click(); true")
        marks = b.wait("(() => { const m = [...document.querySelectorAll('mark.span')].map(e => e.textContent);"
                       " return m.length ? m : null; })()")
        assert marks == [SENTENCE]
        assert b.js("document.getElementById('text').value") == Copier()("")
        assert "generated in" in b.js("document.getElementById('status').textContent")
    finally:
        b.close()
        server.shutdown()
        server.server_close()
