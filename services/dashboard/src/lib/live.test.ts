import { afterEach, describe, expect, it, vi } from "vitest";
import {
  eventsUrl,
  Handoff,
  initialLive,
  liveReducer,
  MAX_HISTORY,
  subscribe,
  type LiveEvent,
  type LiveState,
} from "./live";

const run = (events: LiveEvent[], s: LiveState = initialLive) => events.reduce(liveReducer, s);
const item = (id: string, status: string, version: number): LiveEvent => ({
  type: "content.item",
  id,
  at: 1,
  data: { item_id: "x", status, version },
});
const progress = (id: string, stage: string, percent: number): LiveEvent => ({
  type: "generation.progress",
  id,
  at: 1,
  data: { item_id: "x", stage, percent },
});

describe("liveReducer", () => {
  it("follows a generation from queued to generated", () => {
    const s = run([
      { type: "open" },
      item("e1", "generating", 1),
      progress("e2", "queued", 0),
      progress("e3", "ranking", 25),
      progress("e4", "composing", 75),
    ]);
    expect(s).toMatchObject({ connection: "open", status: "generating", stage: "composing", percent: 75, version: 1, lastEventId: "e4" });
    const done = run([progress("e5", "done", 100), item("e6", "generated", 2)], s);
    expect(done).toMatchObject({ status: "generated", version: 2, stage: null, percent: null, lastEventId: "e6" });
    expect(done.history.map((h) => h.text)).toEqual([
      "generating (version 1)",
      "queued 0%",
      "ranking 25%",
      "composing 75%",
      "done 100%",
      "generated (version 2)",
    ]);
  });

  it("ignores an event seen twice (a replay after reconnecting)", () => {
    const s = run([item("e1", "generating", 1), progress("e2", "ranking", 25)]);
    expect(run([progress("e2", "ranking", 25), item("e1", "generating", 1)], s)).toBe(s);
  });

  it("never lets an older version overwrite a newer one", () => {
    const s = run([item("e1", "generated", 3), item("e0", "generating", 2)]);
    expect(s.status).toBe("generated");
    expect(s.version).toBe(3);
  });

  it("marks reconnects, resets and overflows", () => {
    let s = run([{ type: "open" }, { type: "error" }]);
    expect(s.connection).toBe("reconnecting");
    s = run([{ type: "reset", at: 5, reason: "history no longer reaches back" }, { type: "open" }], s);
    expect(s.resets).toBe(1);
    expect(s.connection).toBe("open");
    expect(s.history.at(-1)).toMatchObject({ kind: "reset", text: "history no longer reaches back" });
    s = run([{ type: "overflow", at: 6 }], s);
    expect(s.connection).toBe("reconnecting");
  });

  it("clamps percentages and bounds the history", () => {
    expect(run([progress("p", "composing", 140)]).percent).toBe(100);
    expect(run([progress("q", "composing", Number.NaN)]).percent).toBe(0);
    const many = Array.from({ length: MAX_HISTORY + 50 }, (_, i) => progress(`id${i}`, "composing", i % 100));
    const s = run(many);
    expect(s.history).toHaveLength(MAX_HISTORY);
    expect(s.history[0].id).toBe("id50");
  });
});

describe("eventsUrl", () => {
  it("encodes each channel", () => {
    expect(eventsUrl(["content:abc", "content:*"])).toBe("/api/realtime/events?channels=content%3Aabc,content%3A*");
  });
  it("carries the access token when signed in (EventSource sends no headers)", () => {
    expect(eventsUrl(["content:*"], "a.b+c/d")).toBe("/api/realtime/events?channels=content%3A*&access_token=a.b%2Bc%2Fd");
    expect(eventsUrl(["content:*"], null)).toBe("/api/realtime/events?channels=content%3A*");
  });
  it("names the position to resume from when reopening", () => {
    expect(eventsUrl(["content:x"], "t", "t17.c3:12.g0:4")).toBe(
      "/api/realtime/events?channels=content%3Ax&last_event_id=t17.c3%3A12.g0%3A4&access_token=t",
    );
    expect(eventsUrl(["content:x"], null, null)).toBe("/api/realtime/events?channels=content%3Ax");
  });
});

describe("Handoff", () => {
  function fakeStream() {
    const opened: Array<(e: LiveEvent) => void> = [];
    let closed = 0;
    const open = (_channels: string[], on: (e: LiveEvent) => void) => {
      opened.push(on);
      return () => closed++;
    };
    return { open, opened, closed: () => closed };
  }

  it("buffers an item's events for its page and forwards the rest until released", async () => {
    const f = fakeStream();
    const h = new Handoff(f.open, 0);
    h.start();
    h.start(); // one stream for several users
    expect(f.opened).toHaveLength(1);
    const ready = h.ready(1000);
    f.opened[0]({ type: "open" });
    expect(await ready).toBe(true);
    const ev = (id: string, item: string): LiveEvent => ({ type: "content.item", id, at: 1, data: { item_id: item, status: "generating", version: 1 } });
    f.opened[0](ev("e1", "A"));
    f.opened[0](ev("e2", "B"));
    const seen: string[] = [];
    const stop = h.listen("A", (e) => seen.push((e as { id: string }).id));
    f.opened[0](ev("e3", "A"));
    stop();
    f.opened[0](ev("e4", "A"));
    expect(seen).toEqual(["e1", "e3"]);
    h.release();
    h.release();
    await new Promise((r) => setTimeout(r, 5));
    expect(f.closed()).toBe(1);
  });

  it("does not wait forever for a stream that never opens", async () => {
    const h = new Handoff(fakeStream().open, 0);
    h.start();
    expect(await h.ready(10)).toBe(false);
  });

  it("counts the same item version from two streams once", () => {
    const s = run([item("a1", "generating", 1), item("b1", "generating", 1), progress("a2", "ranking", 25), progress("b2", "ranking", 25)]);
    expect(s.history.map((x) => x.text)).toEqual(["generating (version 1)", "ranking 25%"]);
  });
});

describe("subscribe", () => {
  // Just enough of EventSource: the URL it was opened with and the listeners the page set.
  class FakeEventSource {
    static readonly CLOSED = 2;
    static made: FakeEventSource[] = [];
    readyState = 1;
    onopen: (() => void) | null = null;
    onerror: (() => void) | null = null;
    listeners = new Map<string, (m: { data: string; lastEventId: string }) => void>();
    constructor(readonly url: string) {
      FakeEventSource.made.push(this);
    }
    addEventListener(type: string, fn: (m: { data: string; lastEventId: string }) => void) {
      this.listeners.set(type, fn);
    }
    close() {
      this.readyState = FakeEventSource.CLOSED;
    }
  }
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
    FakeEventSource.made = [];
  });

  it("reopens after an HTTP error from the last event seen, so nothing is skipped", () => {
    vi.useFakeTimers();
    vi.stubGlobal("EventSource", FakeEventSource);
    const seen: LiveEvent[] = [];
    const stop = subscribe(["content:x"], (e) => seen.push(e), 100);
    const first = FakeEventSource.made[0];
    expect(first.url).not.toContain("last_event_id");
    first.listeners.get("content.item")?.({
      data: JSON.stringify({ item_id: "x", status: "generated", version: 2 }),
      lastEventId: "t1.c0:5",
    });
    first.readyState = FakeEventSource.CLOSED; // an HTTP error: the browser gives up
    first.onerror?.();
    vi.advanceTimersByTime(100);
    expect(FakeEventSource.made).toHaveLength(2);
    expect(FakeEventSource.made[1].url).toContain("last_event_id=t1.c0%3A5");
    expect(seen.map((e) => e.type)).toEqual(["content.item", "error"]);
    stop();
    expect(FakeEventSource.made[1].readyState).toBe(FakeEventSource.CLOSED);
  });
});
