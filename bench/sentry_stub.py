"""A stand-in for Sentry on loopback, so the servers' SDK runs its real transport."""

from __future__ import annotations

import gzip
import http.server
import threading
from typing import Any

from tools.servers import HOST


class SentryStub:
    """An HTTP server on loopback that answers Sentry's envelope endpoint with 200 and counts
    what it receives, so the SDK runs its real transport without reaching Sentry."""

    def __init__(self) -> None:
        from sentry_sdk.envelope import Envelope

        self.items: dict[str, int] = {}
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                kinds = [str(item.type) for item in Envelope.deserialize(body).items]
                with stub._lock:
                    for kind in kinds:
                        stub.items[kind] = stub.items.get(kind, 0) + 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://bench@{HOST}:{self.server.server_address[1]}/1"

    def __enter__(self) -> SentryStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
