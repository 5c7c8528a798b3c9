import { describe, expect, it } from "vitest";
import { parseReadiness } from "./system";

describe("parseReadiness", () => {
  it("lists each upstream's check, sorted", () => {
    const r = parseReadiness({
      status: "not ready",
      failing: ["scraper"],
      checks: {
        scraper: { ok: false, detail: "connect: connection refused" },
        "content-manager": { ok: true, detail: "200" },
      },
    });
    expect(r).toEqual({
      status: "not ready",
      checks: [
        { name: "content-manager", ok: true, detail: "200" },
        { name: "scraper", ok: false, detail: "connect: connection refused" },
      ],
    });
  });
  it("copes with a draining gateway and garbage", () => {
    expect(parseReadiness({ status: "draining" })).toEqual({ status: "draining", checks: [] });
    expect(parseReadiness(null)).toEqual({ status: "unknown", checks: [] });
    expect(parseReadiness({ checks: { x: "weird" } }).checks).toEqual([{ name: "x", ok: false, detail: "" }]);
  });
});
