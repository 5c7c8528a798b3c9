// The scraper's API (services/scraper/README.md), through the gateway, and the live run state
// the Sources pages keep from scrape.run events.
import { api } from "./api";
import type { FieldError } from "./problem";
import type { ScrapeRunEvent } from "./stream";

export type SourceKind = "page" | "feed" | "sitemap";
export const SOURCE_KINDS: SourceKind[] = ["page", "feed", "sitemap"];

export interface ScrapeSource {
  id: string;
  name: string | null;
  url: string;
  kind: SourceKind;
  interval_seconds: number;
  include: string[] | null;
  exclude: string[] | null;
  max_items: number;
  status: string; // active | paused
  next_run_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface Run {
  id: string;
  source_id: string;
  state: string; // running | finished | failed | interrupted
  trigger: string;
  resumed_from: string | null;
  fetched: number;
  new: number;
  unchanged: number;
  failed: number;
  error_summary: string | null;
  started_at: string;
  finished_at: string | null;
}

export interface ScrapedItem {
  id: string;
  source_id?: string;
  url: string;
  canonical_url?: string | null;
  title?: string | null;
  author?: string | null;
  published?: string | null;
  lang?: string | null;
  description?: string | null;
  text?: string;
  version?: number;
  created_at?: string;
  updated_at?: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

// ------------------------------------------------------------ the registration form

export interface SourceForm {
  url: string;
  kind: SourceKind;
  name: string;
  interval: string; // "30m", "1h", "1d"
  include: string; // one regular expression per line
  exclude: string;
  max_items: string;
  paused: boolean;
}

export const emptySourceForm: SourceForm = {
  url: "",
  kind: "feed",
  name: "",
  interval: "1h",
  include: "",
  exclude: "",
  max_items: "100",
  paused: false,
};

export const lines = (s: string): string[] =>
  s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);

// Seconds of "90s", "30m", "1h", "2d", "1h30m"; null when it is not a duration.
export function parseInterval(s: string): number | null {
  const t = s.trim().toLowerCase();
  if (!/^(\d+(s|m|h|d))+$/.test(t)) return null;
  let total = 0;
  for (const m of t.matchAll(/(\d+)([smhd])/g)) total += Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "s" | "m" | "h" | "d"];
  return total > 0 ? total : null;
}

export function formatInterval(seconds: number): string {
  const s = Math.round(seconds);
  if (s % 86400 === 0) return `${s / 86400}d`;
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

// Checked before sending, so the form can point at the field; the server checks again (and
// compiles the patterns: its field errors are shown at the same fields).
export function validateSourceForm(f: SourceForm): { body: Record<string, unknown>; errors: FieldError[] } {
  const errors: FieldError[] = [];
  const url = f.url.trim();
  if (!url) errors.push({ field: "url", detail: "a URL is required" });
  else if (!/^https?:\/\/[^\s/]+/i.test(url)) errors.push({ field: "url", detail: "an http:// or https:// URL" });
  const seconds = parseInterval(f.interval);
  if (seconds === null) errors.push({ field: "interval", detail: "a duration such as 30m, 1h or 1d" });
  const max = Number(f.max_items);
  if (!/^\d+$/.test(f.max_items.trim()) || max < 1) errors.push({ field: "max_items", detail: "a whole number, at least 1" });
  for (const field of ["include", "exclude"] as const)
    lines(f[field]).forEach((p) => {
      try {
        new RegExp(p);
      } catch {
        errors.push({ field, detail: `not a regular expression: ${p}` });
      }
    });
  const body: Record<string, unknown> = { url, kind: f.kind, max_items: max, paused: f.paused };
  if (seconds !== null) body.interval = f.interval.trim().toLowerCase(); // the server parses it too
  if (f.name.trim()) body.name = f.name.trim();
  if (lines(f.include).length) body.include = lines(f.include);
  if (lines(f.exclude).length) body.exclude = lines(f.exclude);
  return { body, errors };
}

// The server names fields as in its API (interval_seconds, include[2], ...): map to the form's.
export function formField(apiField: string): string {
  const base = apiField.replace(/\[\d+\]$/, "").replace(/^\//, "");
  if (base === "interval_seconds") return "interval";
  return base;
}

// ------------------------------------------------------------ live runs

export interface LiveRun {
  run_id: string;
  state: string;
  fetched: number;
  new: number;
  unchanged: number;
  failed: number;
  error_summary: string;
  events: number;
}

export type RunsBySource = Record<string, LiveRun>;

const TERMINAL = new Set(["finished", "failed", "interrupted"]);
export const isTerminal = (state: string) => TERMINAL.has(state);

// The latest run of each source as events tell it. Counts only grow within a run (an event
// replayed after a reconnect, or arriving late, never takes them back), a finished run is not
// reopened by a late progress event, and a new run id replaces the old run.
export function runReducer(s: RunsBySource, e: ScrapeRunEvent): RunsBySource {
  const cur = s[e.source_id];
  const state = e.state === "started" || e.state === "progress" ? "running" : e.state;
  if (cur && cur.run_id === e.run_id) {
    const late = isTerminal(cur.state) && !isTerminal(state);
    const next: LiveRun = {
      ...cur,
      state: late ? cur.state : state,
      fetched: Math.max(cur.fetched, e.fetched),
      new: Math.max(cur.new, e.new_items),
      unchanged: Math.max(cur.unchanged, e.unchanged),
      failed: Math.max(cur.failed, e.failed),
      error_summary: e.error_summary || cur.error_summary,
      events: cur.events + 1,
    };
    return { ...s, [e.source_id]: next };
  }
  return {
    ...s,
    [e.source_id]: {
      run_id: e.run_id,
      state,
      fetched: e.fetched,
      new: e.new_items,
      unchanged: e.unchanged,
      failed: e.failed,
      error_summary: e.error_summary,
      events: 1,
    },
  };
}

// A run from the API with what the stream has said since (the stream may be ahead).
export function mergeRun(r: Run, live: LiveRun | undefined): Run {
  if (!live || live.run_id !== r.id) return r;
  return {
    ...r,
    state: isTerminal(r.state) ? r.state : live.state,
    fetched: Math.max(r.fetched, live.fetched),
    new: Math.max(r.new, live.new),
    unchanged: Math.max(r.unchanged, live.unchanged),
    failed: Math.max(r.failed, live.failed),
    error_summary: r.error_summary || live.error_summary || null,
  };
}

// ------------------------------------------------------------ calls

const S = "/api/scraper";
const enc = encodeURIComponent;

export const listSources = (signal?: AbortSignal) => api<{ sources: ScrapeSource[] }>(`${S}/sources`, { signal });
export const getSource = (id: string, signal?: AbortSignal) => api<ScrapeSource>(`${S}/sources/${enc(id)}`, { signal });
export const createSource = (body: Record<string, unknown>) => api<ScrapeSource>(`${S}/sources`, { method: "POST", body });
export const sourceAction = (id: string, action: "pause" | "resume" | "run") =>
  api<unknown>(`${S}/sources/${enc(id)}/${action}`, { method: "POST" });
export const deleteSource = (id: string) => api<null>(`${S}/sources/${enc(id)}`, { method: "DELETE" });
export const listRuns = (id: string, signal?: AbortSignal) => api<{ runs: Run[] }>(`${S}/sources/${enc(id)}/runs`, { signal });
export function itemsQuery(sourceId: string, cursor?: string | null, limit = 20): string {
  const p = new URLSearchParams({ source_id: sourceId, limit: String(limit) });
  if (cursor) p.set("cursor", cursor);
  return p.toString();
}
export const listScrapedItems = (sourceId: string, cursor?: string | null, signal?: AbortSignal) =>
  api<Page<ScrapedItem>>(`${S}/items?${itemsQuery(sourceId, cursor)}`, { signal });
export const getScrapedItem = (id: string, signal?: AbortSignal) => api<ScrapedItem>(`${S}/items/${enc(id)}`, { signal });
