// subscriber-manager's API (services/subscriber-manager/README.md), through the gateway: the
// subscriber search, lists, segments and their rule language, CSV import and export.
import { api, currentAccessToken } from "./api";
import { ApiError, problemFromResponse } from "./problem";
import type { ImportProgressEvent } from "./stream";

export const SUB_STATUSES = ["active", "pending", "unsubscribed", "blocklisted", "bounced"] as const;

export interface Subscriber {
  id: string;
  email: string | null; // null: erased, or not decrypted for this caller
  name: string | null;
  status: string;
  attributes: Record<string, unknown>;
  lists: Array<{ list_id: string; status?: string }>;
  consent?: { source: string | null; time: string | null; ip: string | null };
  created_at: string;
  updated_at: string;
  confirmed_at: string | null;
  erased?: boolean;
}

export interface MailList {
  id: string;
  name: string;
  description: string;
  visibility: string;
  optin: string;
  subscriber_count: number;
  created_at?: string;
}

export interface Segment {
  id: string;
  name: string;
  rules: Rule;
  created_at?: string;
}

export interface ImportRecord {
  id: string;
  mode: string;
  status: string;
  rows: number;
  inserted: number;
  updated: number;
  skipped: number;
  failed: number;
  errors: Array<{ row: number; error: string }>;
  created_at: string;
  finished_at: string | null;
  seconds: number;
}

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

// ------------------------------------------------------------ search

export interface SubscriberFilters {
  email?: string;
  status?: string;
  list_id?: string;
}

export function subscribersQuery(f: SubscriberFilters, cursor?: string | null, limit = 25): string {
  const p = new URLSearchParams();
  const email = f.email?.trim();
  if (email) p.set("email", email);
  if (f.status) p.set("status", f.status);
  if (f.list_id) p.set("list_id", f.list_id);
  p.set("limit", String(limit));
  if (cursor) p.set("cursor", cursor);
  return p.toString();
}

// ------------------------------------------------------------ segment rules

export type Rule = { all: Rule[] } | { any: Rule[] } | { not: Rule } | Cond;
export interface Cond {
  field: string;
  op: string;
  value: unknown;
}

export const RULE_FIELDS = ["status", "list", "created_at", "updated_at", "confirmed_at", "attribute"] as const;
export type RuleField = (typeof RULE_FIELDS)[number];

export function opsFor(field: RuleField): string[] {
  switch (field) {
    case "status":
      return ["eq", "ne", "in", "not_in"];
    case "list":
      return ["in", "not_in"];
    case "created_at":
    case "updated_at":
    case "confirmed_at":
      return ["before", "after", "within_days"];
    case "attribute":
      return ["eq", "ne", "gt", "gte", "lt", "lte", "contains", "exists"];
  }
}

export const OP_LABEL: Record<string, string> = {
  eq: "is",
  ne: "is not",
  in: "is one of / in",
  not_in: "is none of / not in",
  before: "before",
  after: "after",
  within_days: "within the last (days)",
  gt: ">",
  gte: "≥",
  lt: "<",
  lte: "≤",
  contains: "contains",
  exists: "exists",
};

// One row of the editor: what a person types.
export interface CondRow {
  field: RuleField;
  key: string; // the attribute name when field is "attribute"
  op: string;
  value: string;
  negate: boolean;
}

export interface RuleDraft {
  match: "all" | "any";
  rows: CondRow[];
}

export const newRow = (): CondRow => ({ field: "status", key: "", op: "eq", value: "active", negate: false });

const ATTR_KEY = /^[A-Za-z0-9_-]{1,64}$/;

// A typed value from the text box: numbers and booleans as JSON for attribute equality,
// comma lists for in / not_in on status.
function valueOf(r: CondRow): { value?: unknown; error?: string } {
  const v = r.value.trim();
  if (r.field === "status") {
    if (r.op === "in" || r.op === "not_in") {
      const list = v.split(",").map((x) => x.trim()).filter(Boolean);
      return list.length ? { value: list } : { error: "one or more statuses, comma-separated" };
    }
    return v ? { value: v } : { error: "a status" };
  }
  if (r.field === "list") return v ? { value: v } : { error: "a list" };
  if (r.op === "within_days") {
    const n = Number(v);
    return Number.isInteger(n) && n >= 1 && n <= 36500 ? { value: n } : { error: "a whole number of days, 1 to 36500" };
  }
  if (r.op === "before" || r.op === "after") {
    if (!v) return { error: "a date" };
    const iso = /^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00Z` : v;
    return Number.isNaN(Date.parse(iso)) ? { error: "a date (YYYY-MM-DD) or an RFC 3339 time" } : { value: iso };
  }
  // attributes
  if (r.op === "exists") return v === "false" ? { value: false } : { value: true };
  if (r.op === "gt" || r.op === "gte" || r.op === "lt" || r.op === "lte") {
    const n = Number(v);
    return v !== "" && Number.isFinite(n) ? { value: n } : { error: "a number" };
  }
  if (r.op === "contains") return v ? { value: v } : { error: "some text" };
  if (v === "true" || v === "false") return { value: v === "true" };
  if (v !== "" && /^-?\d+(\.\d+)?$/.test(v)) return { value: Number(v) };
  return { value: v };
}

// The editor's rows as the rule language, or the problems (row index, what to fix).
export function draftToRules(d: RuleDraft): { rules?: Rule; errors: Array<{ row: number; detail: string }> } {
  const errors: Array<{ row: number; detail: string }> = [];
  const conds: Rule[] = [];
  d.rows.forEach((r, i) => {
    if (r.field === "attribute" && !ATTR_KEY.test(r.key)) errors.push({ row: i, detail: "an attribute name: letters, digits, _ or -, at most 64" });
    if (!opsFor(r.field).includes(r.op)) errors.push({ row: i, detail: `${r.op} does not apply to ${r.field}` });
    const v = valueOf(r);
    if (v.error) errors.push({ row: i, detail: v.error });
    const cond: Cond = { field: r.field === "attribute" ? `attributes.${r.key}` : r.field, op: r.op, value: v.value };
    conds.push(r.negate ? { not: cond } : cond);
  });
  if (!d.rows.length) errors.push({ row: -1, detail: "add a condition" });
  if (d.rows.length > 64) errors.push({ row: -1, detail: "at most 64 conditions" });
  if (errors.length) return { errors };
  return { rules: d.match === "all" ? { all: conds } : { any: conds }, errors };
}

function isCond(r: unknown): r is Cond {
  return typeof r === "object" && r !== null && "field" in r && "op" in r;
}

// A saved rule back into the editor, when it has the editor's shape (one all/any of
// conditions, each maybe negated); null for deeper rules (edited as JSON).
export function rulesToDraft(rule: unknown): RuleDraft | null {
  if (typeof rule !== "object" || rule === null) return null;
  const r = rule as Record<string, unknown>;
  let match: "all" | "any";
  let list: unknown[];
  if (Array.isArray(r.all)) [match, list] = ["all", r.all];
  else if (Array.isArray(r.any)) [match, list] = ["any", r.any];
  else if (isCond(r) || "not" in r) [match, list] = ["all", [r]];
  else return null;
  const rows: CondRow[] = [];
  for (const item of list) {
    let negate = false;
    let c: unknown = item;
    if (typeof c === "object" && c !== null && "not" in c) {
      negate = true;
      c = (c as { not: unknown }).not;
    }
    if (!isCond(c)) return null;
    const attr = c.field.startsWith("attributes.");
    const field = (attr ? "attribute" : c.field) as RuleField;
    if (!RULE_FIELDS.includes(field)) return null;
    const value = Array.isArray(c.value) ? c.value.join(", ") : c.value === undefined ? "" : String(c.value);
    rows.push({ field, key: attr ? c.field.slice(11) : "", op: c.op, value, negate });
  }
  return { match, rows };
}

// ------------------------------------------------------------ CSV import

// The records of a CSV text (RFC 4180: quoted fields may hold commas, quotes and line breaks),
// each as its raw text without the line break. The header is record 0.
export function csvRecords(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') quoted = !quoted;
    else if (!quoted && (ch === "\n" || ch === "\r")) {
      out.push(text.slice(start, i));
      if (ch === "\r" && text[i + 1] === "\n") i++;
      start = i + 1;
    }
  }
  if (start < text.length) out.push(text.slice(start));
  return out.filter((r, i) => r !== "" || i === 0);
}

// Data rows in the file (what the progress bar counts up to).
export const csvDataRows = (text: string): number => Math.max(0, csvRecords(text).length - 1);

export interface ImportErrorRow {
  row: number; // data row, 1 = the first after the header
  error: string;
  line: string; // the row as it was in the file ("" when the file is not at hand)
}

// The import's per-row errors with the row's text from the file, in row order.
export function errorReport(errors: Array<{ row: number; error: string }> | undefined, records?: string[]): ImportErrorRow[] {
  return [...(errors ?? [])]
    .filter((e) => Number.isFinite(e.row))
    .sort((a, b) => a.row - b.row)
    .map((e) => ({ row: e.row, error: String(e.error), line: records?.[e.row] ?? "" }));
}

const csvCell = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

// The report as a CSV to download: row, error, the row's text.
export function errorReportCsv(rows: ImportErrorRow[]): string {
  return ["row,error,line", ...rows.map((r) => [String(r.row), csvCell(r.error), csvCell(r.line)].join(","))].join("\n") + "\n";
}

export interface ImportState {
  id: string | null;
  status: "idle" | "uploading" | "running" | "done" | "failed";
  total: number; // data rows in the file
  processed: number;
  inserted: number;
  updated: number;
  skipped: number;
  failed: number;
  error: string;
  liveEvents: number; // progress events received over the stream for this import
  pending: ImportProgressEvent[]; // events that came before the import's id was known
}

export const initialImport: ImportState = {
  id: null,
  status: "idle",
  total: 0,
  processed: 0,
  inserted: 0,
  updated: 0,
  skipped: 0,
  failed: 0,
  error: "",
  liveEvents: 0,
  pending: [],
};

export type ImportAction =
  | { type: "upload"; total: number }
  | { type: "accepted"; id: string }
  | { type: "event"; data: ImportProgressEvent }
  | { type: "record"; data: ImportRecord }
  | { type: "reject" };

function applyCounts(s: ImportState, status: string, c: { processed: number; inserted: number; updated: number; skipped: number; failed: number }, err: string): ImportState {
  const terminal = s.status === "done" || s.status === "failed";
  const st: ImportState["status"] = terminal ? s.status : status === "done" ? "done" : status === "failed" ? "failed" : "running";
  return {
    ...s,
    status: st,
    processed: Math.max(s.processed, c.processed),
    inserted: Math.max(s.inserted, c.inserted),
    updated: Math.max(s.updated, c.updated),
    skipped: Math.max(s.skipped, c.skipped),
    failed: Math.max(s.failed, c.failed),
    error: err || s.error,
  };
}

const evCounts = (d: ImportProgressEvent) => ({
  processed: d.rows_processed,
  inserted: d.rows_inserted,
  updated: d.rows_updated,
  skipped: d.rows_skipped,
  failed: d.rows_failed,
});

// One import's progress from the upload on: the stream (import:*, opened before the upload, so
// a fast import's events may come before the POST answers: kept until the id is known) and the
// import record (GET /api/imports/{id}). Counters only grow, a finished import stays finished.
export function importReducer(s: ImportState, a: ImportAction): ImportState {
  switch (a.type) {
    case "upload":
      return { ...initialImport, status: "uploading", total: a.total };
    case "reject":
      return { ...s, status: "idle", pending: [] };
    case "accepted": {
      let n: ImportState = { ...s, id: a.id, status: s.status === "uploading" ? "running" : s.status, pending: [] };
      for (const e of s.pending) if (e.import_id === a.id) n = importReducer(n, { type: "event", data: e });
      return n;
    }
    case "event": {
      if (s.status === "idle") return s;
      if (!s.id) return { ...s, pending: [...s.pending, a.data].slice(-200) };
      if (a.data.import_id !== s.id) return s;
      return { ...applyCounts(s, a.data.status, evCounts(a.data), a.data.error), liveEvents: s.liveEvents + 1 };
    }
    case "record": {
      if (!s.id || a.data.id !== s.id) return s;
      const d = a.data;
      const processed = d.inserted + d.updated + d.skipped + d.failed;
      return applyCounts(s, d.status, { processed, inserted: d.inserted, updated: d.updated, skipped: d.skipped, failed: d.failed }, "");
    }
  }
}

export function importPercent(s: ImportState): number | null {
  if (s.status === "done") return 100;
  if (!s.total) return null;
  return Math.min(100, Math.floor((s.processed / s.total) * 100));
}

// ------------------------------------------------------------ calls

const enc = encodeURIComponent;

export const listSubscribers = (f: SubscriberFilters, cursor?: string | null, signal?: AbortSignal) =>
  api<Page<Subscriber>>(`/api/subscribers?${subscribersQuery(f, cursor)}`, { signal });
export const getSubscriber = (id: string, signal?: AbortSignal) => api<Subscriber>(`/api/subscribers/${enc(id)}`, { signal });
export const createSubscriber = (body: Record<string, unknown>) => api<Subscriber>("/api/subscribers", { method: "POST", body });
export const listLists = (signal?: AbortSignal) => api<Page<MailList>>("/api/lists", { signal });
export const createList = (body: Record<string, unknown>) => api<MailList>("/api/lists", { method: "POST", body });
export const listSegments = (signal?: AbortSignal) => api<Page<Segment>>("/api/segments", { signal });
export const createSegment = (body: { name: string; rules: Rule }) => api<Segment>("/api/segments", { method: "POST", body });
export const countRules = (rules: Rule, signal?: AbortSignal) =>
  api<{ count: number; duration_ms: number }>("/api/segments/count", { method: "POST", body: { rules }, signal });
export const segmentCount = (id: string, signal?: AbortSignal) =>
  api<{ count: number; duration_ms: number }>(`/api/segments/${enc(id)}/count`, { signal });
export const getImport = (id: string, signal?: AbortSignal) => api<ImportRecord>(`/api/imports/${enc(id)}`, { signal });

// The CSV goes as text/csv (not JSON), with the bearer token.
export async function startImport(csv: string, mode: "upsert" | "skip", listId?: string): Promise<{ id: string }> {
  const p = new URLSearchParams({ mode });
  if (listId) p.set("list_id", listId);
  const headers: Record<string, string> = { "content-type": "text/csv", accept: "application/json" };
  const t = currentAccessToken();
  if (t) headers.authorization = `Bearer ${t}`;
  const res = await fetch(`/api/subscribers/import?${p}`, { method: "POST", headers, body: csv });
  if (!res.ok) throw new ApiError(await problemFromResponse(res));
  const j = (await res.json()) as { id?: string };
  const loc = res.headers.get("location") ?? "";
  const id = j.id ?? loc.split("/").pop() ?? "";
  return { id };
}

export function exportPath(by: { list_id?: string; segment_id?: string }): string {
  const p = new URLSearchParams();
  if (by.list_id) p.set("list_id", by.list_id);
  if (by.segment_id) p.set("segment_id", by.segment_id);
  return `/api/subscribers/export.csv?${p}`;
}

// Downloads the export (a link cannot carry the bearer token): fetch, then a blob URL.
export async function downloadExport(path: string): Promise<{ url: string; bytes: number }> {
  const headers: Record<string, string> = { accept: "text/csv" };
  const t = currentAccessToken();
  if (t) headers.authorization = `Bearer ${t}`;
  const res = await fetch(path, { headers });
  if (!res.ok) throw new ApiError(await problemFromResponse(res));
  const blob = await res.blob();
  return { url: URL.createObjectURL(blob), bytes: blob.size };
}
