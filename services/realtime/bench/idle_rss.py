#!/usr/bin/env python3
"""RSS per idle SSE connection of the realtime service.

Starts build/bin/realtime (release) against KAFKA_BROKERS, reads its RSS, opens N idle SSE
connections (each subscribed to an item channel of its own, HTTP/1.1),
waits until the service reports them in sse_clients, reads the RSS again and prints the
difference per connection and per 1,000 connections. Raise the fd limit first:

    ulimit -n 65536; KAFKA_BROKERS=127.0.0.1:9092 python3 services/realtime/bench/idle_rss.py 20000
"""
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    port = int(os.environ.get("BENCH_PORT", "18383"))
    env = dict(os.environ, HTTP_PORT=str(port), LOG_LEVEL="warn")
    env.setdefault("KAFKA_BROKERS", "127.0.0.1:9092")
    proc = subprocess.Popen([os.path.join(ROOT, "build/bin/realtime")], env=env,
                            preexec_fn=lambda: resource.setrlimit(
                                resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)))
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        # one connection first, so that buffers allocated once are not counted per connection
        socks = []

        def connect(i):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall((f"GET /api/realtime/events?channels=content:bench-{i} HTTP/1.1\r\n"
                       f"Host: x\r\n\r\n").encode())
            socks.append(s)

        connect(0)
        time.sleep(1)
        base = rss_kb(proc.pid)
        for i in range(1, n + 1):
            connect(i)
        deadline = time.time() + 120
        while metric(port, "sse_clients") < n + 1 and time.time() < deadline:
            time.sleep(0.5)
        clients = metric(port, "sse_clients")
        time.sleep(2)
        after = rss_kb(proc.pid)
        per = (after - base) * 1024 / n
        print(f"connections={int(clients)} rss_before_kb={base} rss_after_kb={after} "
              f"bytes_per_connection={per:.0f} kb_per_1000={per * 1000 / 1024:.0f}")
        for s in socks:
            s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
