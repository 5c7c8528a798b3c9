#!/usr/bin/env python3
"""Spine benchmark: briefs per second and latency from POST to the `generated` event.

N concurrent clients each create briefs in a loop (POST /api/content/items, keep-alive); one
Server-Sent Events subscriber on `content:*` opened before the first brief timestamps every
`content.item` event whose status is `generated`. Latency = event arrival - POST sent.
Standard library only (asyncio), so it runs wherever python3 does.

    spine_latency.py --api http://127.0.0.1:8080 --events http://127.0.0.1:8080 \
        --clients 50 --briefs 2000 --warmup 100
"""
import argparse
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit

SOURCES = [
    "Kafka keeps events in partitions, ordered by offset. Consumers in a group share the "
    "partitions of a topic. A consumer commits its offset after the work is durable.",
    "PostgreSQL writes every change to its write-ahead log first. A transaction either commits "
    "as a whole or leaves nothing behind. The outbox table rides on that guarantee.",
    "An editor reviews each generated draft before it is sent. Approved articles go out to "
    "subscribers. Rejected drafts can be regenerated with new instructions.",
]


def addr(url):
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 80


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_body(reader, headers):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readline()
    return await reader.readexactly(int(headers.get("content-length", "0")))


class Events:
    """One SSE subscription; records when each item's `generated` event arrived."""

    def __init__(self, token=""):
        self.token = token
        self.generated = {}  # item id -> perf_counter at arrival
        self.waiters = {}  # item id -> future
        self.ready = asyncio.Event()

    async def run(self, url):
        host, port = addr(url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET /api/realtime/events?channels=content:*{self.query()} HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        status, headers = await read_head(reader)
        if status != 200:
            raise SystemExit(f"events: subscribe answered {status}")
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        buf = b""
        while True:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    raise SystemExit("events: stream ended")
                data = await reader.readexactly(size)
                await reader.readline()
            else:
                data = await reader.read(65536)
                if not data:
                    raise SystemExit("events: stream ended")
            now = time.perf_counter()
            buf += data
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                self.on_frame(frame.decode(), now)

    def query(self):
        return f"&access_token={self.token}" if self.token else ""

    def on_frame(self, frame, now):
        event, data = "message", None
        for line in frame.split("\n"):
            if line.startswith(": connected"):
                self.ready.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if event != "content.item" or data is None:
            return
        item = json.loads(data)
        if item.get("status") != "generated":
            return
        iid = item["item_id"]
        self.generated.setdefault(iid, now)
        fut = self.waiters.pop(iid, None)
        if fut and not fut.done():
            fut.set_result(now)

    async def wait(self, iid, timeout):
        if iid in self.generated:
            return self.generated[iid]
        fut = asyncio.get_running_loop().create_future()
        self.waiters[iid] = fut
        return await asyncio.wait_for(fut, timeout)


async def client(no, api, events, counter, total, latencies, errors, timeout, token):
    host, port = addr(api)
    reader, writer = await asyncio.open_connection(host, port)
    while True:
        n = counter[0]
        if n >= total:
            break
        counter[0] += 1
        body = json.dumps(
            {
                "title": f"bench brief {no}-{n}",
                "kind": "article",
                "topic": "event-driven systems",
                "sources": [{"text": s} for s in SOURCES],
            }
        ).encode()
        t0 = time.perf_counter()
        head = (
            f"POST /api/content/items HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        status, headers = await read_head(reader)
        payload = await read_body(reader, headers)
        if status != 201:
            errors.append(f"POST answered {status}: {payload[:200]!r}")
            continue
        iid = json.loads(payload)["id"]
        try:
            t1 = await events.wait(iid, timeout)
        except asyncio.TimeoutError:
            errors.append(f"{iid}: no generated event within {timeout}s")
            continue
        latencies.append((n, (t1 - t0) * 1000.0))
    writer.close()


def pct(sorted_ms, p):
    k = max(0, min(len(sorted_ms) - 1, int(round(p / 100.0 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[k]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--api", default="http://127.0.0.1:8080")
    ap.add_argument("--events", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--briefs", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100, help="first briefs not counted")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--goal-p99-ms", type=float, default=50.0)
    ap.add_argument("--token-file", help="a file holding a bearer token (the gateway needs one)")
    a = ap.parse_args()

    token = open(a.token_file).read().strip() if a.token_file else ""
    events = Events(token)
    sub = asyncio.create_task(events.run(a.events))
    await asyncio.wait_for(events.ready.wait(), 10)
    counter, latencies, errors = [0], [], []
    t_start = time.perf_counter()
    await asyncio.gather(
        *(
            client(i, a.api, events, counter, a.briefs, latencies, errors, a.timeout, token)
            for i in range(a.clients)
        )
    )
    elapsed = time.perf_counter() - t_start
    sub.cancel()
    for e in errors[:10]:
        print("error:", e, file=sys.stderr)
    counted = sorted(ms for n, ms in latencies if n >= a.warmup)
    if not counted:
        raise SystemExit("no brief completed")
    p50, p90, p99 = pct(counted, 50), pct(counted, 90), pct(counted, 99)
    print(
        f"spine: {len(latencies)} briefs by {a.clients} clients in {elapsed:.1f} s = "
        f"{len(latencies) / elapsed:.0f} briefs/s; errors {len(errors)}"
    )
    print(
        f"  POST -> generated event (after {a.warmup} warm-up briefs, n={len(counted)}): "
        f"p50 {p50:.1f} ms  p90 {p90:.1f} ms  p99 {p99:.1f} ms  max {counted[-1]:.1f} ms  "
        f"mean {statistics.fmean(counted):.1f} ms"
    )
    print(f"  p99 / goal ({a.goal_p99_ms:.0f} ms) = {p99 / a.goal_p99_ms:.2f}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
