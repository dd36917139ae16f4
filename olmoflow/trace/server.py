"""`olmoflow trace-ui`: a local web page over an index (standard library only, bound to 127.0.0.1). Paste a model's
output, see its spans highlighted, click one for its documents and a document for its text.

    GET  /              the page (page.py)
    POST /api/trace     {"text"} -> {"spans": [...], "ms"} (as `olmoflow trace --json`)
    GET  /api/doc?ix=N  a document's row and text
    GET  /api/info      the index: uri, docs, tokens, tokenizer
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from olmoflow.trace.index import TraceError, TraceIndex
from olmoflow.trace.page import PAGE
from olmoflow.trace.spans import find_spans

MAX_TEXT = 20_000
"""Characters a traced text may have (a model's output, not a corpus)."""


def make_server(index: TraceIndex, port: int = 0, **trace_kw: Any) -> HTTPServer:
    """A server on 127.0.0.1:`port` (0: a free one); serve_forever() runs it. trace_kw go to find_spans."""
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
                            "tokenizer": index.tokenizer_id, "parts": index.meta["parts"]})
            elif url.path == "/api/doc":
                try:
                    self._json(index.document(int(parse_qs(url.query).get("ix", ["-1"])[0])))
                except (TraceError, ValueError) as e:
                    self._json({"error": str(e)}, 404)
            else:
                self._json({"error": f"no such page: {url.path}"}, 404)

        def do_POST(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/api/trace":
                return self._json({"error": "no such endpoint"}, 404)
            try:
                n = int(self.headers.get("Content-Length", "0"))
                text = json.loads(self.rfile.read(n) or b"{}").get("text", "")
            except (ValueError, AttributeError):
                return self._json({"error": "expected a JSON body {\"text\": ...}"}, 400)
            if not isinstance(text, str) or len(text) > MAX_TEXT:
                return self._json({"error": f"text: a string of at most {MAX_TEXT} characters"}, 400)
            start = time.perf_counter()
            spans = find_spans(index, text, **trace_kw)
            self._json({"spans": [s.as_json() for s in spans], "ms": round(1000 * (time.perf_counter() - start), 1)})

    return HTTPServer(("127.0.0.1", port), Handler)


def serve(index: TraceIndex, port: int, **trace_kw: Any) -> None:
    server = make_server(index, port, **trace_kw)
    print(f"trace-ui: http://127.0.0.1:{server.server_address[1]}/ (index {index.uri}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
