#!/usr/bin/env python3
"""RSS per idle SSE connection of the realtime service (the server's memory, not the client's).

Reads the server's VmRSS (/proc/<pid>/status) with no client connected, opens N idle SSE
connections (HTTP/1.1, each subscribed to an item channel of its own, so per-channel costs are
counted too), waits until the service reports them all in sse_clients, lets them sit idle past
--idle seconds (set it above SSE_HEARTBEAT so that every client got a heartbeat), checks that
they are all still connected, reads VmRSS again and prints the difference per connection.

    # against a running instance (what scripts/bench-realtime.sh does)
    idle_rss.py --pid PID --port PORT 20000
    # or it starts $BUILD/bin/realtime itself (BUILD defaults to build)
    ulimit -n 65536; KAFKA_BROKERS=127.0.0.1:9092 python3 services/realtime/bench/idle_rss.py 20000

Connections come from 127.0.0.1 and further loopback addresses (127.0.0.2, ...) once one source
address has used BENCH_PER_SOURCE (20000) ports, so the ephemeral port range is never the limit.
The last line is machine-readable: RESULT connections=... bytes_per_connection=...
"""
import argparse
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
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_ready(port, proc=None, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"realtime exited with {proc.returncode}")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"realtime on port {port} not ready after {timeout}s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=1000, help="connections (1000)")
    ap.add_argument("--pid", type=int, help="a running realtime's pid (else one is started)")
    ap.add_argument("--port", type=int, help="its HTTP port")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds to sit idle before reading")
    args = ap.parse_args()
    n = args.n

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        if hard < want:
            sys.exit(f"fd limit {hard} < {want}: raise it (ulimit -n {want}, as root) first")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    proc = None
    if args.pid:
        pid, port = args.pid, args.port
    else:
        port = args.port or free_port()
        env = dict(os.environ, HTTP_PORT=str(port), LOG_LEVEL="warn")
        env.setdefault("KAFKA_BROKERS", "127.0.0.1:9092")
        binary = os.path.join(ROOT, os.environ.get("BUILD", "build"), "bin", "realtime")
        proc = subprocess.Popen([binary], env=env)
        pid = proc.pid
    try:
        wait_ready(port, proc)
        time.sleep(1)
        base = rss_kb(pid)
        per_source = int(os.environ.get("BENCH_PER_SOURCE", "20000"))
        socks = []
        t0 = time.time()
        for i in range(n):
            src = f"127.0.0.{1 + i // per_source}"
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if src != "127.0.0.1":
                s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            s.sendall((f"GET /api/realtime/events?channels=content:bench-{i} HTTP/1.1\r\n"
                       f"Host: x\r\n\r\n").encode())
            socks.append(s)
        deadline = time.time() + 300
        while metric(port, "sse_clients") < n and time.time() < deadline:
            time.sleep(0.5)
        opened = time.time() - t0
        time.sleep(args.idle)
        clients = int(metric(port, "sse_clients"))
        after = rss_kb(pid)
        if clients < n:
            sys.exit(f"only {clients} of {n} clients connected")
        per = (after - base) * 1024 / n
        print(f"connections={clients} rss_idle_kb={base} rss_with_connections_kb={after} "
              f"opened_in_s={opened:.1f} idle_s={args.idle:g}")
        print(f"RESULT connections={clients} rss_delta_kb={after - base} "
              f"bytes_per_connection={per:.0f} kb_per_connection={per / 1024:.2f}", flush=True)
        for s in socks:
            s.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
