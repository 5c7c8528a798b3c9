import { describe, expect, it } from "vitest";
import {
  csvDataRows,
  csvRecords,
  draftToRules,
  errorReport,
  errorReportCsv,
  exportPath,
  importPercent,
  importReducer,
  initialImport,
  newRow,
  rulesToDraft,
  subscribersQuery,
  type ImportRecord,
  type ImportState,
} from "./subscribers";
import type { ImportProgressEvent } from "./stream";

const pe = (o: Partial<ImportProgressEvent>): ImportProgressEvent => ({
  import_id: "i1",
  status: "running",
  rows_processed: 0,
  rows_inserted: 0,
  rows_updated: 0,
  rows_skipped: 0,
  rows_failed: 0,
  occurred_unix_ms: 0,
  error: "",
  ...o,
});

describe("CSV reading", () => {
  it("counts records, with quoted commas, quotes and line breaks", () => {
    const t = 'email,name\r\na@x.io,"Doe, Jane"\r\nb@x.io,"multi\nline ""quoted"""\nc@x.io,C\n';
    expect(csvRecords(t)).toEqual(["email,name", 'a@x.io,"Doe, Jane"', 'b@x.io,"multi\nline ""quoted"""', "c@x.io,C"]);
    expect(csvDataRows(t)).toBe(3);
  });
  it("has no data rows in an empty file or a header alone", () => {
    expect(csvDataRows("")).toBe(0);
    expect(csvDataRows("email\n")).toBe(0);
    expect(csvDataRows("email\nx@y.io")).toBe(1);
  });
});

describe("error report", () => {
  const records = ["email,name", "ok@x.io,A", "not-an-address,B", "ok2@x.io,C", "ok@x.io,dup"];
  it("puts the row's text next to each error, in row order", () => {
    const r = errorReport(
      [
        { row: 4, error: "duplicate of row 1" },
        { row: 2, error: "bad address" },
      ],
      records,
    );
    expect(r).toEqual([
      { row: 2, error: "bad address", line: "not-an-address,B" },
      { row: 4, error: "duplicate of row 1", line: "ok@x.io,dup" },
    ]);
    expect(errorReport(undefined)).toEqual([]);
    expect(errorReport([{ row: 9, error: "x" }], records)[0].line).toBe("");
  });
  it("downloads as CSV with quoting", () => {
    expect(errorReportCsv([{ row: 2, error: 'bad "address", really', line: "a,b" }])).toBe('row,error,line\n2,"bad ""address"", really","a,b"\n');
  });
});

describe("import progress reducer", () => {
  it("keeps events that arrive before the id, and applies them when it is known", () => {
    let s = importReducer(initialImport, { type: "upload", total: 10 });
    s = importReducer(s, { type: "event", data: pe({ rows_processed: 5, rows_inserted: 4, rows_failed: 1 }) });
    s = importReducer(s, { type: "event", data: pe({ import_id: "other", rows_processed: 99 }) });
    expect(s.processed).toBe(0);
    s = importReducer(s, { type: "accepted", id: "i1" });
    expect(s).toMatchObject({ id: "i1", status: "running", processed: 5, inserted: 4, failed: 1, liveEvents: 1, pending: [] });
    expect(importPercent(s)).toBe(50);
  });
  it("runs to done; counters never go back, done stays done", () => {
    let s: ImportState = importReducer(importReducer(initialImport, { type: "upload", total: 4 }), { type: "accepted", id: "i1" });
    s = importReducer(s, { type: "event", data: pe({ status: "done", rows_processed: 4, rows_inserted: 3, rows_failed: 1 }) });
    s = importReducer(s, { type: "event", data: pe({ status: "running", rows_processed: 2 }) });
    expect(s).toMatchObject({ status: "done", processed: 4, inserted: 3, failed: 1 });
    expect(importPercent(s)).toBe(100);
  });
  it("takes the import record too (the stream may have missed events)", () => {
    let s = importReducer(importReducer(initialImport, { type: "upload", total: 3 }), { type: "accepted", id: "i1" });
    const rec: ImportRecord = { id: "i1", mode: "upsert", status: "done", rows: 3, inserted: 2, updated: 0, skipped: 0, failed: 1, errors: [{ row: 2, error: "bad" }], created_at: "", finished_at: "", seconds: 0.1 };
    s = importReducer(s, { type: "record", data: rec });
    expect(s).toMatchObject({ status: "done", processed: 3, inserted: 2, failed: 1, liveEvents: 0 });
    expect(importReducer(s, { type: "record", data: { ...rec, id: "x", inserted: 50 } })).toBe(s);
  });
  it("a failed import says why; events without an upload are ignored", () => {
    let s = importReducer(importReducer(initialImport, { type: "upload", total: 3 }), { type: "accepted", id: "i1" });
    s = importReducer(s, { type: "event", data: pe({ status: "failed", error: "database went away" }) });
    expect(s).toMatchObject({ status: "failed", error: "database went away" });
    expect(importReducer(initialImport, { type: "event", data: pe({}) })).toBe(initialImport);
    expect(importPercent({ ...initialImport, status: "running" })).toBeNull();
  });
});

describe("segment rule editor", () => {
  it("turns rows into the rule language", () => {
    const { rules, errors } = draftToRules({
      match: "all",
      rows: [
        newRow(),
        { field: "attribute", key: "city", op: "eq", value: "Paris", negate: false },
        { field: "attribute", key: "age", op: "gte", value: "30", negate: false },
        { field: "list", key: "", op: "in", value: "L1", negate: true },
        { field: "status", key: "", op: "in", value: "active, pending", negate: false },
        { field: "created_at", key: "", op: "after", value: "2026-01-31", negate: false },
        { field: "created_at", key: "", op: "within_days", value: "30", negate: false },
        { field: "attribute", key: "vip", op: "eq", value: "true", negate: false },
      ],
    });
    expect(errors).toEqual([]);
    expect(rules).toEqual({
      all: [
        { field: "status", op: "eq", value: "active" },
        { field: "attributes.city", op: "eq", value: "Paris" },
        { field: "attributes.age", op: "gte", value: 30 },
        { not: { field: "list", op: "in", value: "L1" } },
        { field: "status", op: "in", value: ["active", "pending"] },
        { field: "created_at", op: "after", value: "2026-01-31T00:00:00Z" },
        { field: "created_at", op: "within_days", value: 30 },
        { field: "attributes.vip", op: "eq", value: true },
      ],
    });
  });
  it("names the row to fix", () => {
    const { rules, errors } = draftToRules({
      match: "any",
      rows: [
        { field: "attribute", key: "bad key!", op: "eq", value: "x", negate: false },
        { field: "attribute", key: "age", op: "gt", value: "old", negate: false },
        { field: "updated_at", key: "", op: "within_days", value: "0", negate: false },
        { field: "status", key: "", op: "contains", value: "a", negate: false },
      ],
    });
    expect(rules).toBeUndefined();
    expect(errors.map((e) => e.row)).toEqual([0, 1, 2, 3]);
    expect(draftToRules({ match: "all", rows: [] }).errors[0]).toEqual({ row: -1, detail: "add a condition" });
  });
  it("reads a saved rule back, or says it is too deep for the editor", () => {
    const rules = { any: [{ field: "attributes.city", op: "eq", value: "Paris" }, { not: { field: "status", op: "in", value: ["blocklisted"] } }] };
    const d = rulesToDraft(rules)!;
    expect(d.match).toBe("any");
    expect(d.rows[1]).toEqual({ field: "status", key: "", op: "in", value: "blocklisted", negate: true });
    expect(draftToRules(d).rules).toEqual(rules);
    expect(rulesToDraft({ all: [{ any: [] }] })).toBeNull();
    expect(rulesToDraft({ field: "status", op: "eq", value: "active" })!.rows).toHaveLength(1);
  });
});

describe("queries", () => {
  it("search and export", () => {
    expect(subscribersQuery({ email: " A@x.io ", status: "", list_id: "L" }, "c1", 10)).toBe("email=A%40x.io&list_id=L&limit=10&cursor=c1");
    expect(exportPath({ segment_id: "s" })).toBe("/api/subscribers/export.csv?segment_id=s");
  });
});
