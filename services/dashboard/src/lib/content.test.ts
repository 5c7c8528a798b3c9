import { describe, expect, it } from "vitest";
import { allowedActions, flattenPages, listQuery, nextCursor, validateBrief, type Item } from "./content";

const it_ = (id: string) => ({ id, title: id }) as Item;

describe("cursor paging", () => {
  it("builds the list query with only the filters set", () => {
    expect(listQuery({})).toBe("limit=20");
    expect(listQuery({ status: "generated", kind: "", q: "  solar  " }, "abc", 10)).toBe("status=generated&q=solar&limit=10&cursor=abc");
    expect(listQuery({ q: "a&b=c" })).toBe("q=a%26b%3Dc&limit=20");
  });
  it("flattens pages, each item once, in order", () => {
    const pages = [
      { items: [it_("3"), it_("2")], next_cursor: "c1" },
      { items: [it_("2"), it_("1")], next_cursor: null },
    ];
    expect(flattenPages(pages).map((i) => i.id)).toEqual(["3", "2", "1"]);
    expect(flattenPages(undefined)).toEqual([]);
    expect(nextCursor(pages[0])).toBe("c1");
    expect(nextCursor(pages[1])).toBeUndefined();
    expect(nextCursor(undefined)).toBeUndefined();
  });
});

describe("allowedActions", () => {
  it("follows the lifecycle's transition table", () => {
    expect(allowedActions("generated")).toEqual({ edit: true, approve: true, regenerate: true, archive: true });
    expect(allowedActions("generating")).toEqual({ edit: false, approve: false, regenerate: false, archive: true });
    expect(allowedActions("approved")).toEqual({ edit: false, approve: false, regenerate: false, archive: true });
    expect(allowedActions("archived")).toEqual({ edit: false, approve: false, regenerate: false, archive: false });
    expect(allowedActions("failed").regenerate).toBe(true);
    expect(allowedActions("draft").approve).toBe(false);
  });
});

describe("validateBrief", () => {
  const ok = { title: "Solar", kind: "article" as const, sources: [{ text: "Some text." }] };
  it("accepts a good brief", () => {
    expect(validateBrief(ok)).toEqual([]);
  });
  it("names each bad field", () => {
    expect(validateBrief({ ...ok, title: "  " }).map((e) => e.field)).toEqual(["title"]);
    expect(validateBrief({ ...ok, title: "x".repeat(301) })[0].detail).toMatch(/300/);
    expect(validateBrief({ ...ok, kind: "poem" as never })[0].field).toBe("kind");
    expect(validateBrief({ ...ok, topic: "t".repeat(501) })[0].field).toBe("topic");
    expect(validateBrief({ ...ok, instructions: "i".repeat(4001) })[0].field).toBe("instructions");
    expect(validateBrief({ ...ok, sources: [{ text: "a" }, { text: " " }] })[0].field).toBe("sources[1]");
    expect(validateBrief({ ...ok, sources: Array.from({ length: 21 }, () => ({ text: "a" })) })[0].field).toBe("sources");
    expect(validateBrief({ ...ok, sources: [{ text: "é".repeat(50_001) }] })[0].detail).toMatch(/100 KB/);
  });
  it("lets scraped item references through", () => {
    expect(validateBrief({ ...ok, sources: [{ item_id: "0192-..." }] })).toEqual([]);
  });
});
