// Scraper runs and CSV imports, live: the same realtime stream as content (lib/live.ts), on the
// source:<id> / source:* and import:<id> / import:* channels (services/realtime/README.md).
// Events come as typed values; "open" (also after a reconnect) and "reset" tell the page to read
// its data again from the service, so a missed event never leaves a stale page.
import { currentAccessToken } from "./api";
import { eventsUrl } from "./live";

export interface ScrapeRunEvent {
  run_id: string;
  source_id: string;
  state: string; // started | progress | finished | failed | interrupted
  fetched: number;
  new_items: number;
  unchanged: number;
  failed: number;
  error_summary: string;
}

export interface ImportProgressEvent {
  import_id: string;
  status: string; // running | done | failed
  rows_processed: number;
  rows_inserted: number;
  rows_updated: number;
  rows_skipped: number;
  rows_failed: number;
  occurred_unix_ms: number;
  error: string;
}

export type StreamEvent =
  | { type: "open" }
  | { type: "error" }
  | { type: "reset"; reason: string }
  | { type: "scrape.run"; id: string; data: ScrapeRunEvent }
  | { type: "import.progress"; id: string; data: ImportProgressEvent };

function parse(m: MessageEvent): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(String(m.data));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

// Opens the stream; reopens it after an HTTP error (the browser gives up on those by itself).
export function openStream(channels: string[], on: (e: StreamEvent) => void, retryMs = 3000): () => void {
  let closed = false;
  let es: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const connect = () => {
    const s = new EventSource(eventsUrl(channels, currentAccessToken()));
    es = s;
    s.onopen = () => on({ type: "open" });
    s.onerror = () => {
      on({ type: "error" });
      if (s.readyState === EventSource.CLOSED && !closed && !timer)
        timer = setTimeout(() => {
          timer = null;
          if (!closed) connect();
        }, retryMs);
    };
    s.addEventListener("reset", (m) => on({ type: "reset", reason: String(parse(m as MessageEvent)?.reason ?? "history reset") }));
    s.addEventListener("scrape.run", (m) => {
      const d = parse(m as MessageEvent);
      if (d) on({ type: "scrape.run", id: (m as MessageEvent).lastEventId, data: d as unknown as ScrapeRunEvent });
    });
    s.addEventListener("import.progress", (m) => {
      const d = parse(m as MessageEvent);
      if (d) on({ type: "import.progress", id: (m as MessageEvent).lastEventId, data: d as unknown as ImportProgressEvent });
    });
  };
  connect();
  return () => {
    closed = true;
    if (timer) clearTimeout(timer);
    es?.close();
  };
}
