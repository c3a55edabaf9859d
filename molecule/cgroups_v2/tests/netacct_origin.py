"""A web server for the network accounting tests, run in the VM in its own network namespace.

GET /<bytes> answers that many bytes; PUT reads and discards the body and
answers how many bytes it got. Started twice by test_netacct.py: once on
the "site" address, once on the "external" one.
usage: python3 netacct_origin.py ADDRESS PORT
"""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        size = int(self.path.strip("/") or 0)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"x" * 65536
        while size > 0:
            self.wfile.write(chunk[: min(size, len(chunk))])
            size -= min(size, len(chunk))

    def do_PUT(self):
        size = int(self.headers.get("Content-Length", 0))
        got = 0
        while got < size:
            data = self.rfile.read(min(65536, size - got))
            if not data:
                break
            got += len(data)
        body = str(got).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
