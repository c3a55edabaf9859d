"""An origin web server on the controller that counts what it serves.

Jobs and squids in the scenario's containers reach it as
``host.containers.internal``. It serves files from memory with the headers a
cacheable download has (Last-Modified, Cache-Control: max-age), and counts
GET requests per path, so a test can say "the origin saw one request".

    with Origin() as origin:
        url = origin.add("archive.tar.gz", data)
        ...
        assert origin.requests("archive.tar.gz") == 1
"""

from __future__ import annotations

import threading
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTAINER_NAME = "host.containers.internal"


class Origin:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                with origin._lock:
                    origin.counts[name] += 1
                data = origin.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Last-Modified", formatdate(0, usegmt=True))
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, name: str, data: bytes) -> str:
        """Serve DATA as /NAME; return its URL as the containers see it."""
        self.files[name] = data
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://{CONTAINER_NAME}:{self.port}/{name}"

    def requests(self, name: str) -> int:
        with self._lock:
            return self.counts[name]
