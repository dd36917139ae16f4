"""`olmoflow trace-ui`: a local web page over an index (standard library only, bound to 127.0.0.1). Paste a model's
output, or (given a checkpoint) type a prompt and let the checkpoint answer; see the spans highlighted, click one for
its documents and a document for its text.

    GET  /              the page (page.py)
    POST /api/trace     {"text"} -> {"spans": [...], "ms"} (as `olmoflow trace --json`)
    POST /api/generate  {"prompt"} -> {"text": the checkpoint's completion, "spans", "ms", "gen_ms"}
    GET  /api/doc?ix=N  a document's row and text
    GET  /api/info      the index: uri, docs, tokens, tokenizer; the checkpoint (uri, chat) or null
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from olmoflow.trace.index import TraceError, TraceIndex
from olmoflow.trace.page import PAGE
from olmoflow.trace.spans import find_spans

MAX_TEXT = 20_000
"""Characters a traced text may have (a model's output, not a corpus)."""


def make_server(index: TraceIndex, port: int = 0, completer: Callable[[str], str] | None = None,
                **trace_kw: Any) -> HTTPServer:
    """A server on 127.0.0.1:`port` (0: a free one); serve_forever() runs it. `completer` (prompting.Completer, or
    any prompt -> text callable) answers prompts; trace_kw go to find_spans."""
    info = getattr(completer, "info", None)
    checkpoint = (info() if info else {"uri": "", "chat": False}) if completer is not None else None
    page = PAGE.encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: the terminal shows the URL, not every request
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: Any, status: int = 200) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode())

        def do_GET(self) -> None:  # noqa: N802 -- http.server's name
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            elif url.path == "/api/info":
                self._json({"uri": index.uri, "docs": index.meta["docs"], "tokens": index.meta["tokens"],
                            "tokenizer": index.tokenizer_id, "parts": index.meta["parts"],
                            "checkpoint": checkpoint})
            elif url.path == "/api/doc":
                try:
                    self._json(index.document(int(parse_qs(url.query).get("ix", ["-1"])[0])))
                except (TraceError, ValueError) as e:
                    self._json({"error": str(e)}, 404)
            else:
                self._json({"error": f"no such page: {url.path}"}, 404)

        def _body(self, key: str) -> str | None:
            """The request's JSON string `key`; None (after answering 400) when there is none."""
            try:
                n = int(self.headers.get("Content-Length", "0"))
                value = json.loads(self.rfile.read(n) or b"{}").get(key, "")
            except (ValueError, AttributeError):
                self._json({"error": f"expected a JSON body {{\"{key}\": ...}}"}, 400)
                return None
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                self._json({"error": f"{key}: a string of at most {MAX_TEXT} characters"}, 400)
                return None
            return value

        def _traced(self, traced: str, **extra: Any) -> None:
            start = time.perf_counter()
            spans = find_spans(index, traced, **trace_kw)
            self._json({**extra, "spans": [s.as_json() for s in spans],
                        "ms": round(1000 * (time.perf_counter() - start), 1)})

        def do_POST(self) -> None:  # noqa: N802
            path = urlparse(self.path).path
            if path == "/api/trace":
                text = self._body("text")
                if text is not None:
                    self._traced(text)
            elif path == "/api/generate":
                if completer is None:
                    return self._json({"error": "no checkpoint: start trace-ui with --checkpoint URI"}, 404)
                prompt = self._body("prompt")
                if prompt is None:
                    return None
                if not prompt.strip():
                    return self._json({"error": "prompt: type a prompt"}, 400)
                start = time.perf_counter()
                try:
                    text = completer(prompt)
                except Exception as e:  # a generation that fails is the page's message, not a dead connection
                    return self._json({"error": f"generation failed: {type(e).__name__}: {e}"}, 500)
                self._traced(text, prompt=prompt, text=text, gen_ms=round(1000 * (time.perf_counter() - start), 1))
            else:
                self._json({"error": "no such endpoint"}, 404)
            return None

    return HTTPServer(("127.0.0.1", port), Handler)


def serve(index: TraceIndex, port: int, completer: Callable[[str], str] | None = None, **trace_kw: Any) -> None:
    server = make_server(index, port, completer, **trace_kw)
    model = f", checkpoint {completer.uri}" if completer is not None and hasattr(completer, "uri") else ""
    print(f"trace-ui: http://127.0.0.1:{server.server_address[1]}/ (index {index.uri}{model}); Ctrl-C stops it",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
