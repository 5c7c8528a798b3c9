import { describe, expect, it } from "vitest";
import { emptySourceForm, formatInterval, formField, itemsQuery, mergeRun, parseInterval, runReducer, validateSourceForm, type Run, type RunsBySource } from "./scraper";
import type { ScrapeRunEvent } from "./stream";

const ev = (o: Partial<ScrapeRunEvent>): ScrapeRunEvent => ({
  run_id: "r1",
  source_id: "s1",
  state: "progress",
  fetched: 0,
  new_items: 0,
  unchanged: 0,
  failed: 0,
  error_summary: "",
  ...o,
});

describe("run state reducer", () => {
  it("follows a run from started to finished", () => {
    let s: RunsBySource = {};
    s = runReducer(s, ev({ state: "started" }));
    expect(s.s1.state).toBe("running");
    s = runReducer(s, ev({ fetched: 5, new_items: 2, unchanged: 3 }));
    s = runReducer(s, ev({ state: "finished", fetched: 9, new_items: 4, unchanged: 4, failed: 1 }));
    expect(s.s1).toMatchObject({ state: "finished", fetched: 9, new: 4, unchanged: 4, failed: 1, events: 3 });
  });
  it("never takes counts back and never reopens a finished run", () => {
    let s = runReducer({}, ev({ state: "finished", fetched: 9, new_items: 4 }));
    s = runReducer(s, ev({ state: "progress", fetched: 3, new_items: 1 })); // late / replayed
    expect(s.s1).toMatchObject({ state: "finished", fetched: 9, new: 4 });
  });
  it("a new run replaces the old one, sources stay apart", () => {
    let s = runReducer({}, ev({ state: "failed", error_summary: "boom" }));
    s = runReducer(s, ev({ run_id: "r2", state: "started" }));
    s = runReducer(s, ev({ source_id: "s2", run_id: "r9", state: "started" }));
    expect(s.s1).toMatchObject({ run_id: "r2", state: "running", error_summary: "" });
    expect(s.s2.run_id).toBe("r9");
  });
  it("keeps the error summary of a failed run", () => {
    let s = runReducer({}, ev({ state: "progress" }));
    s = runReducer(s, ev({ state: "failed", error_summary: "refused URL" }));
    expect(s.s1.error_summary).toBe("refused URL");
  });
  it("merges the stream into the API's run when the stream is ahead", () => {
    const r: Run = { id: "r1", source_id: "s1", state: "running", trigger: "manual", resumed_from: null, fetched: 1, new: 0, unchanged: 0, failed: 0, error_summary: null, started_at: "", finished_at: null };
    const live = runReducer({}, ev({ state: "finished", fetched: 4, new_items: 2 })).s1;
    expect(mergeRun(r, live)).toMatchObject({ state: "finished", fetched: 4, new: 2 });
    expect(mergeRun({ ...r, state: "finished", fetched: 7 }, { ...live, state: "running" })).toMatchObject({ state: "finished", fetched: 7 });
    expect(mergeRun(r, { ...live, run_id: "other" })).toBe(r);
  });
});

describe("source form", () => {
  it("parses and formats intervals", () => {
    expect(parseInterval("30m")).toBe(1800);
    expect(parseInterval("1h30m")).toBe(5400);
    expect(parseInterval(" 2D ")).toBe(172800);
    expect(parseInterval("soon")).toBeNull();
    expect(parseInterval("0m")).toBeNull();
    expect(formatInterval(3600)).toBe("1h");
    expect(formatInterval(86400 * 2)).toBe("2d");
    expect(formatInterval(90)).toBe("90s");
  });
  it("builds the request body", () => {
    const { body, errors } = validateSourceForm({ ...emptySourceForm, url: " http://127.0.0.1:8/feed.xml ", interval: "30m", include: "/articles/\n\n", max_items: "10", paused: true });
    expect(errors).toEqual([]);
    expect(body).toEqual({ url: "http://127.0.0.1:8/feed.xml", kind: "feed", max_items: 10, paused: true, interval: "30m", include: ["/articles/"] });
  });
  it("names the fields it refuses", () => {
    const { errors } = validateSourceForm({ ...emptySourceForm, url: "ftp://x", interval: "often", max_items: "0", exclude: "([" });
    expect(errors.map((e) => e.field)).toEqual(["url", "interval", "max_items", "exclude"]);
  });
  it("maps the server's field names to the form's", () => {
    expect(formField("interval_seconds")).toBe("interval");
    expect(formField("include[1]")).toBe("include");
    expect(formField("url")).toBe("url");
  });
  it("pages items by cursor", () => {
    expect(itemsQuery("s1")).toBe("source_id=s1&limit=20");
    expect(itemsQuery("s1", "abc", 5)).toBe("source_id=s1&limit=5&cursor=abc");
  });
});
