// Live events from realtime (services/realtime/README.md): an EventSource on
// /api/realtime/events?channels=..., through the gateway. The browser reconnects by itself and
// sends Last-Event-ID, so realtime resumes where the stream broke; `reset` means history no
// longer reaches back that far: reload from content-manager. EventSource cannot send an
// Authorization header: when signed in, the access token goes as ?access_token= (the gateway
// accepts it on its ;stream routes and strips it before realtime sees it).
import { currentAccessToken } from "./api";

export interface ItemEventData {
  item_id: string;
  title?: string;
  kind?: string;
  status?: string;
  version?: number;
  failure_reason?: string;
}

export interface ProgressEventData {
  item_id: string;
  job_id?: string;
  stage: string;
  percent: number;
  provider?: string;
}

export type LiveEvent =
  | { type: "open" }
  | { type: "error" } // the EventSource lost its connection (it retries by itself)
  | { type: "content.item"; id: string; at: number; data: ItemEventData }
  | { type: "generation.progress"; id: string; at: number; data: ProgressEventData }
  | { type: "reset"; at: number; reason: string }
  | { type: "overflow" | "shutdown"; at: number };

export interface HistoryEntry {
  id: string;
  at: number;
  kind: string; // "status", "progress", "reset", ...
  text: string;
  version: number | null; // the item's version it belongs to (progress: the generating version)
  stage?: string;
}

export interface LiveState {
  connection: "connecting" | "open" | "reconnecting";
  stage: string | null;
  percent: number | null;
  status: string | null;
  version: number | null;
  lastEventId: string | null;
  resets: number;
  history: HistoryEntry[]; // newest last, at most MAX_HISTORY
}

export const MAX_HISTORY = 200;

export const initialLive: LiveState = {
  connection: "connecting",
  stage: null,
  percent: null,
  status: null,
  version: null,
  lastEventId: null,
  resets: 0,
  history: [],
};

function push(s: LiveState, e: HistoryEntry): HistoryEntry[] {
  const h = [...s.history, e];
  return h.length > MAX_HISTORY ? h.slice(h.length - MAX_HISTORY) : h;
}

// One item's live state. Events already seen (same id, replayed after a reconnect) change
// nothing; an older version of the item never overwrites a newer one.
export function liveReducer(s: LiveState, e: LiveEvent): LiveState {
  switch (e.type) {
    case "open":
      return { ...s, connection: "open" };
    case "error":
      return { ...s, connection: "reconnecting" };
    case "content.item": {
      if (s.history.some((h) => h.id === e.id)) return s;
      const d = e.data;
      // a version already seen (the same event on two streams, see Handoff) or an older one
      if (s.version !== null && d.version !== undefined && d.version <= s.version) return s;
      const status = d.status ?? s.status;
      const done = status !== "generating";
      return {
        ...s,
        lastEventId: e.id,
        status,
        version: d.version ?? s.version,
        stage: done ? null : s.stage,
        percent: done ? null : s.percent,
        history: push(s, {
          id: e.id,
          at: e.at,
          kind: "status",
          version: d.version ?? s.version,
          text: `${d.status ?? "changed"} (version ${d.version ?? "?"})${d.failure_reason ? `: ${d.failure_reason}` : ""}`,
        }),
      };
    }
    case "generation.progress": {
      if (s.history.some((h) => h.id === e.id)) return s;
      const d = e.data;
      const pct = Math.max(0, Math.min(100, Number(d.percent) || 0));
      if (s.stage === d.stage && s.percent === pct) return s; // the same step twice
      return {
        ...s,
        lastEventId: e.id,
        stage: d.stage,
        percent: pct,
        history: push(s, { id: e.id, at: e.at, kind: "progress", version: s.version, stage: d.stage, text: `${d.stage} ${pct}%` }),
      };
    }
    case "reset":
      return {
        ...s,
        resets: s.resets + 1,
        history: push(s, { id: `reset-${e.at}-${s.resets}`, at: e.at, kind: "reset", version: null, text: e.reason }),
      };
    case "overflow":
    case "shutdown":
      return {
        ...s,
        connection: "reconnecting",
        history: push(s, { id: `${e.type}-${e.at}`, at: e.at, kind: e.type, version: null, text: `stream ${e.type}; reconnecting` }),
      };
  }
}

export function eventsUrl(channels: string[], accessToken?: string | null, lastEventId?: string | null): string {
  let url = `/api/realtime/events?channels=${channels.map(encodeURIComponent).join(",")}`;
  if (lastEventId) url += `&last_event_id=${encodeURIComponent(lastEventId)}`;
  return accessToken ? `${url}&access_token=${encodeURIComponent(accessToken)}` : url;
}

// Opens an EventSource and turns its events into LiveEvents. Returns the close function.
// The browser retries a broken connection by itself (sending Last-Event-ID), but gives up for
// good on an HTTP error (an expired token's 401, a 502 while realtime restarts): then a new
// EventSource is opened after a pause, with the current token and the last id seen in the
// query, so realtime replays what was missed; its "open" makes the pages read their data again.
export function subscribe(channels: string[], onEvent: (e: LiveEvent) => void, retryMs = 3000): () => void {
  let closed = false;
  let es: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let lastId: string | null = null;
  const track = (e: LiveEvent) => {
    if ((e.type === "content.item" || e.type === "generation.progress") && e.id) lastId = e.id;
    onEvent(e);
  };
  const connect = () => {
    es = open(channels, lastId, track, () => {
      if (!closed && !timer)
        timer = setTimeout(() => {
          timer = null;
          if (!closed) connect();
        }, retryMs);
    });
  };
  connect();
  return () => {
    closed = true;
    if (timer) clearTimeout(timer);
    es?.close();
  };
}

function open(
  channels: string[],
  lastEventId: string | null,
  onEvent: (e: LiveEvent) => void,
  onGone: () => void,
): EventSource {
  const es = new EventSource(eventsUrl(channels, currentAccessToken(), lastEventId));
  const parse = (m: MessageEvent): unknown => {
    try {
      return JSON.parse(String(m.data));
    } catch {
      return null;
    }
  };
  es.onopen = () => onEvent({ type: "open" });
  es.onerror = () => {
    onEvent({ type: "error" });
    if (es.readyState === EventSource.CLOSED) onGone();
  };
  es.addEventListener("content.item", (m) => {
    const d = parse(m as MessageEvent) as ItemEventData | null;
    if (d) onEvent({ type: "content.item", id: (m as MessageEvent).lastEventId, at: Date.now(), data: d });
  });
  es.addEventListener("generation.progress", (m) => {
    const d = parse(m as MessageEvent) as ProgressEventData | null;
    if (d) onEvent({ type: "generation.progress", id: (m as MessageEvent).lastEventId, at: Date.now(), data: d });
  });
  es.addEventListener("reset", (m) => {
    const d = parse(m as MessageEvent) as { reason?: string } | null;
    onEvent({ type: "reset", at: Date.now(), reason: d?.reason ?? "history reset" });
  });
  es.addEventListener("overflow", () => onEvent({ type: "overflow", at: Date.now() }));
  es.addEventListener("shutdown", () => onEvent({ type: "shutdown", at: Date.now() }));
  return es;
}

// Creating a brief with a fast provider: the item may be generated before its page has opened
// its own stream. So the New brief page listens to content:* before it creates (start), and
// the item's page takes what was seen for its id (listen) until its own stream is open. A
// content:* subscription lingers a few seconds after the last release.
type Listener = (e: LiveEvent) => void;
type ItemLiveEvent = Extract<LiveEvent, { type: "content.item" | "generation.progress" }>;

export class Handoff {
  private buffered = new Map<string, ItemLiveEvent[]>();
  private listeners = new Map<string, Set<Listener>>();
  private users = 0;
  private close: (() => void) | null = null;
  private closeTimer: ReturnType<typeof setTimeout> | null = null;
  private open = false;
  private openWaiters: Array<() => void> = [];
  constructor(
    private open_: (channels: string[], on: (e: LiveEvent) => void) => () => void = subscribe,
    private lingerMs = 5000,
    private maxItems = 50,
  ) {}

  start(): void {
    this.users++;
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    if (this.close) return;
    this.close = this.open_(["content:*"], (e) => this.onEvent(e));
  }

  // Resolves once the stream is open, or after timeoutMs (realtime down must not block).
  ready(timeoutMs = 3000): Promise<boolean> {
    if (this.open) return Promise.resolve(true);
    return new Promise((res) => {
      const t = setTimeout(() => res(false), timeoutMs);
      this.openWaiters.push(() => {
        clearTimeout(t);
        res(true);
      });
    });
  }

  release(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0 || !this.close) return;
    this.closeTimer = setTimeout(() => {
      this.close?.();
      this.close = null;
      this.open = false;
      this.buffered.clear();
    }, this.lingerMs);
  }

  // Replays what was seen for itemId, then forwards new events until the returned function
  // is called.
  listen(itemId: string, fn: Listener): () => void {
    for (const e of this.buffered.get(itemId) ?? []) fn(e);
    const set = this.listeners.get(itemId) ?? new Set<Listener>();
    set.add(fn);
    this.listeners.set(itemId, set);
    return () => {
      set.delete(fn);
      if (!set.size) this.listeners.delete(itemId);
    };
  }

  onEvent(e: LiveEvent): void {
    if (e.type === "open") {
      this.open = true;
      this.openWaiters.splice(0).forEach((w) => w());
      return;
    }
    if (e.type !== "content.item" && e.type !== "generation.progress") return;
    const id = e.data.item_id;
    const list = this.buffered.get(id) ?? [];
    list.push(e);
    this.buffered.delete(id); // most recent last: the oldest item is dropped first
    this.buffered.set(id, list.slice(-MAX_HISTORY));
    while (this.buffered.size > this.maxItems) this.buffered.delete(this.buffered.keys().next().value!);
    this.listeners.get(id)?.forEach((fn) => fn(e));
  }
}

export const handoff = new Handoff();
