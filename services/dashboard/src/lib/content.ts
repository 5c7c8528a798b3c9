// The content API (services/content-manager/README.md), through the gateway.
import { api, apiRequest } from "./api";

export type Status = "draft" | "generating" | "generated" | "failed" | "approved" | "archived";
export type Kind = "article" | "newsletter" | "social";
export const STATUSES: Status[] = ["draft", "generating", "generated", "failed", "approved", "archived"];
export const KINDS: Kind[] = ["article", "newsletter", "social"];

export type Source = { text: string } | { item_id: string };

export interface Item {
  id: string;
  title: string;
  kind: Kind;
  topic: string;
  instructions: string;
  sources: Source[];
  status: Status;
  body: string;
  failure_reason: string;
  job_id: string;
  stage: string;
  percent: number;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface ItemPage {
  items: Item[];
  next_cursor: string | null;
}

export interface Filters {
  status?: string;
  kind?: string;
  q?: string;
}

export interface Brief {
  title: string;
  kind: Kind;
  topic?: string;
  instructions?: string;
  sources: Source[];
  generate?: boolean;
}

// The list's query string: empty filters left out, the cursor last.
export function listQuery(f: Filters, cursor?: string | null, limit = 20): string {
  const p = new URLSearchParams();
  if (f.status) p.set("status", f.status);
  if (f.kind) p.set("kind", f.kind);
  const q = f.q?.trim();
  if (q) p.set("q", q);
  p.set("limit", String(limit));
  if (cursor) p.set("cursor", cursor);
  return p.toString();
}

// Pages of a cursor-paged list as one list: each id once, in page order.
export function flattenPages(pages: ItemPage[] | undefined): Item[] {
  const seen = new Set<string>();
  const out: Item[] = [];
  for (const page of pages ?? [])
    for (const it of page.items)
      if (!seen.has(it.id)) {
        seen.add(it.id);
        out.push(it);
      }
  return out;
}

export function nextCursor(last: ItemPage | undefined): string | undefined {
  return last?.next_cursor ?? undefined;
}

// What may be done with an item in its status (the server's transition table; it refuses
// the rest with 409 anyway).
export function allowedActions(status: Status): { edit: boolean; approve: boolean; regenerate: boolean; archive: boolean } {
  return {
    edit: status === "draft" || status === "generated" || status === "failed",
    approve: status === "generated",
    regenerate: status === "draft" || status === "generated" || status === "failed",
    archive: status !== "archived",
  };
}

// The server's limits, checked before sending so the form can point at the field.
export function validateBrief(b: Brief): Array<{ field: string; detail: string }> {
  const errs: Array<{ field: string; detail: string }> = [];
  const title = b.title.trim();
  if (!title) errs.push({ field: "title", detail: "a title is required" });
  else if ([...title].length > 300) errs.push({ field: "title", detail: "at most 300 characters" });
  if (!KINDS.includes(b.kind)) errs.push({ field: "kind", detail: "article, newsletter or social" });
  if ((b.topic ?? "").length > 500) errs.push({ field: "topic", detail: "at most 500 characters" });
  if ((b.instructions ?? "").length > 4000) errs.push({ field: "instructions", detail: "at most 4000 characters" });
  if (b.sources.length > 20) errs.push({ field: "sources", detail: "at most 20 sources" });
  b.sources.forEach((s, i) => {
    if ("text" in s) {
      if (!s.text.trim()) errs.push({ field: `sources[${i}]`, detail: "empty source text" });
      else if (new TextEncoder().encode(s.text).length > 100_000)
        errs.push({ field: `sources[${i}]`, detail: "at most 100 KB" });
    }
  });
  return errs;
}

export const listItems = (f: Filters, cursor?: string | null, signal?: AbortSignal) =>
  api<ItemPage>(`/api/content/items?${listQuery(f, cursor)}`, { signal });

export const getItem = (id: string, signal?: AbortSignal) =>
  api<Item>(`/api/content/items/${encodeURIComponent(id)}`, { signal });

export const createItem = (b: Brief) => api<Item>("/api/content/items", { method: "POST", body: b });

export const saveBody = (id: string, body: string, version: number) =>
  apiRequest<Item>(`/api/content/items/${encodeURIComponent(id)}`, {
    method: "PATCH",
    body: { body },
    headers: { "if-match": `"${version}"` },
  }).then((r) => r.data);

export type Action = "approve" | "regenerate" | "archive";
export const itemAction = (id: string, action: Action, version: number) =>
  api<Item>(`/api/content/items/${encodeURIComponent(id)}/${action}`, {
    method: "POST",
    headers: { "if-match": `"${version}"` },
  });
