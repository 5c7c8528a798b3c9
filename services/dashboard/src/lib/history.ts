// An item's history: what content-manager committed (GET /api/content/items/{id}/history, written
// by a trigger in the transaction of every change), then what the live stream has shown since and
// the server has not answered yet. So the history is complete after a reload or a reconnect (the
// server's part) and still moves at once while a generation runs (the live part).
import { api } from "./api";
import type { HistoryEntry } from "./live";

export interface ItemEvent {
  at: string;
  what: "created" | "status" | "edited" | "progress";
  status: string;
  from_status: string | null;
  version: number;
  stage: string | null;
  percent: number | null;
  detail: string | null;
}

export interface HistoryRow {
  key: string;
  at: string | number;
  kind: string; // created, status, edited, progress (server); status, progress, reset, ... (live)
  text: string;
  live: boolean; // seen on the stream, not yet in the server's answer
}

export const getHistory = (id: string, signal?: AbortSignal) =>
  api<{ events: ItemEvent[] }>(`/api/content/items/${encodeURIComponent(id)}/history`, { signal }).then((r) => r.events);

export function eventText(e: ItemEvent): string {
  switch (e.what) {
    case "created":
      return `created: ${e.status} (version ${e.version})`;
    case "status":
      return `${e.status} (version ${e.version})${e.from_status ? `, was ${e.from_status}` : ""}${e.detail ? `: ${e.detail}` : ""}`;
    case "edited":
      return `draft edited (version ${e.version})`;
    case "progress":
      return `${e.stage ?? "progress"} ${e.percent ?? 0}%`;
  }
}

// The server's events, then the live entries it does not hold yet: a status the server has
// (its version or an older one) is dropped, and so is a stage it has, or any stage of a
// generation that a later version has ended. Resets and reconnects stay (only the stream saw
// them). Without the server's answer (loading, or it failed) the live entries alone.
export function mergeHistory(server: ItemEvent[] | undefined, live: HistoryEntry[], currentVersion: number): HistoryRow[] {
  const rows: HistoryRow[] = (server ?? []).map((e, i) => ({ key: `s${i}`, at: e.at, kind: e.what, text: eventText(e), live: false }));
  const known = new Set((server ?? []).filter((e) => e.what === "progress").map((e) => `${e.version}:${e.stage}`));
  const newest = Math.max(0, ...(server ?? []).map((e) => e.version));
  for (const h of live) {
    const v = h.version ?? currentVersion;
    if (server && h.kind === "status" && v <= newest) continue;
    if (server && h.kind === "progress" && (v < newest || known.has(`${v}:${h.stage}`))) continue;
    rows.push({ key: h.id, at: h.at, kind: h.kind, text: h.text, live: true });
  }
  return rows;
}
