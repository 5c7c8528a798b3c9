#!/usr/bin/env python3
"""Scripted HTTP/1.1 server for the httpc tests (standard library only).

Listens on 127.0.0.1 on an ephemeral port and prints the port on stdout. Exits when stdin
reaches end of file (the test closed its end or died) or on SIGTERM.

Every request is recorded (except /stats) with its path, its `key` query parameter and a
monotonic timestamp, so tests can count attempts on the server side:

  /ok                         200 "ok"
  /echo                       200, JSON: method, path, query, headers (lower-case names), body
  /status/<a>-then-<b>?key=K&n=N  the first N (default 1) hits for K answer <a>, then <b>
  /status/<code>              always <code>
  /retry-after/<s>?key=K&n=N  first N hits for K: 429 with "Retry-After: <s>", then 200
  /retry-after-date?key=K&secs=S  first hit: 429 with an HTTP-date S seconds ahead, then 200
  /slow/<ms>                  sleeps, then 200 "slow"; tracks in-flight requests per key
  /big/<n>                    n bytes of "x" with Content-Length
  /big-chunked/<n>            n bytes of "x", chunked (no Content-Length)
  /gzip, /deflate             a compressed body (Content-Encoding), 11000 bytes decoded
  /redirect/<n>               302 to /redirect/<n-1>; /redirect/0 answers 200 "done"
  /headers?Name=value...      200 with those response headers (repeatable)
  /reset                      closes the connection without answering (RST)
  /stats?key=K | ?path=P      JSON {"count", "times_ms", "max_inflight"} of matching hits
"""
import gzip
import json
import os
import socket
import struct
import sys
import threading
import time
import zlib
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
HITS = []  # (path, key, monotonic ms)
COUNTERS = {}  # (path, key) -> hits so far
INFLIGHT = {}  # key -> current
MAX_INFLIGHT = {}  # key -> max seen
GZ_TEXT = b"hello gzip\n" * 1000


def now_ms():
    return time.monotonic() * 1000.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "httpc-fixture/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            pass

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    # ------------------------------------------------------------ helpers
    def reply(self, code, body=b"", ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def hit_number(self, path, key):
        with LOCK:
            n = COUNTERS.get((path, key), 0) + 1
            COUNTERS[(path, key)] = n
        return n

    # ------------------------------------------------------------ routes
    def dispatch(self):
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query)
        key = query.get("key", [""])[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path != "/stats":
            with LOCK:
                HITS.append((path, key, now_ms()))
        seg = path.strip("/").split("/")
        try:
            self.route(path, seg, query, key, body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def route(self, path, seg, query, key, body):
        if path == "/ok":
            return self.reply(200, "ok")
        if path == "/echo":
            doc = {
                "method": self.command,
                "path": path,
                "query": urlsplit(self.path).query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            return self.reply(200, json.dumps(doc), "application/json")
        if seg[0] == "status" and len(seg) == 2:
            codes = seg[1].split("-then-")
            n = int(query.get("n", ["1"])[0])
            if len(codes) == 2:
                code = int(codes[0]) if self.hit_number(path, key) <= n else int(codes[1])
            else:
                code = int(codes[0])
            return self.reply(code, "status %d" % code)
        if seg[0] == "retry-after" and len(seg) == 2:
            n = int(query.get("n", ["1"])[0])
            if self.hit_number(path, key) <= n:
                return self.reply(429, "slow down", headers=[("Retry-After", seg[1])])
            return self.reply(200, "ok")
        if path == "/retry-after-date":
            secs = int(query.get("secs", ["2"])[0])
            if self.hit_number(path, key) <= 1:
                when = formatdate(int(time.time()) + secs, usegmt=True)
                return self.reply(429, "slow down", headers=[("Retry-After", when)])
            return self.reply(200, "ok")
        if seg[0] == "slow" and len(seg) == 2:
            with LOCK:
                INFLIGHT[key] = INFLIGHT.get(key, 0) + 1
                MAX_INFLIGHT[key] = max(MAX_INFLIGHT.get(key, 0), INFLIGHT[key])
            try:
                time.sleep(int(seg[1]) / 1000.0)
            finally:
                with LOCK:
                    INFLIGHT[key] -= 1
            return self.reply(200, "slow")
        if seg[0] == "big" and len(seg) == 2:
            return self.reply(200, b"x" * int(seg[1]))
        if seg[0] == "big-chunked" and len(seg) == 2:
            n = int(seg[1])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while n > 0:
                k = min(n, 65536)
                self.wfile.write(b"%x\r\n" % k + b"x" * k + b"\r\n")
                n -= k
            self.wfile.write(b"0\r\n\r\n")
            return None
        if path == "/gzip":
            return self.reply(200, gzip.compress(GZ_TEXT), headers=[("Content-Encoding", "gzip")])
        if path == "/deflate":
            return self.reply(200, zlib.compress(GZ_TEXT), headers=[("Content-Encoding", "deflate")])
        if seg[0] == "redirect" and len(seg) == 2:
            n = int(seg[1])
            if n <= 0:
                return self.reply(200, "done")
            return self.reply(302, "", headers=[("Location", "/redirect/%d" % (n - 1))])
        if path == "/headers":
            hdrs = [(k, v) for k, vs in query.items() for v in vs]
            return self.reply(200, "headers", headers=hdrs)
        if path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return None
        if path == "/stats":
            want_key = query.get("key", [None])[0]
            want_path = query.get("path", [None])[0]
            with LOCK:
                times = [t for (p, k, t) in HITS
                         if (want_key is None or k == want_key)
                         and (want_path is None or p == want_path)]
                mx = MAX_INFLIGHT.get(want_key, 0) if want_key is not None else 0
            doc = {"count": len(times), "times_ms": times, "max_inflight": mx}
            return self.reply(200, json.dumps(doc), "application/json")
        return self.reply(404, "not found")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):  # quiet: clients hang up on purpose
        pass


def main():
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
