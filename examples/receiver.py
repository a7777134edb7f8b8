#!/usr/bin/env python3
"""A tiny webhook receiver for the quick start: prints what arrives, answers 200.

    python3 examples/receiver.py [port]      (default 9000)
"""
import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        print(f"--- {self.command} {self.path}")
        for k, v in self.headers.items():
            print(f"{k}: {v}")
        try:
            print(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
        except ValueError:
            print(body.decode("utf-8", "replace"))
        sys.stdout.flush()
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
