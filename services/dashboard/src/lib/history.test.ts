import { describe, expect, it } from "vitest";
import { eventText, mergeHistory, type ItemEvent } from "./history";
import { initialLive, liveReducer, type LiveEvent } from "./live";

const ev = (what: ItemEvent["what"], status: string, version: number, more: Partial<ItemEvent> = {}): ItemEvent => ({
  at: "2026-01-01T00:00:00.000Z",
  what,
  status,
  from_status: null,
  version,
  stage: null,
  percent: null,
  detail: null,
  ...more,
});
const item = (id: string, status: string, version: number): LiveEvent => ({ type: "content.item", id, at: 1, data: { item_id: "x", status, version } });
const progress = (id: string, stage: string, percent: number): LiveEvent => ({ type: "generation.progress", id, at: 1, data: { item_id: "x", stage, percent } });
const liveOf = (events: LiveEvent[]) => events.reduce(liveReducer, initialLive).history;

// a whole generation as the stream shows it
const generation = liveOf([
  item("e1", "generating", 1),
  progress("e2", "queued", 0),
  progress("e3", "ranking", 25),
  progress("e4", "composing", 75),
  progress("e5", "done", 100),
  item("e6", "generated", 2),
]);

describe("eventText", () => {
  it("says what each kind of event was", () => {
    expect(eventText(ev("created", "generating", 1))).toBe("created: generating (version 1)");
    expect(eventText(ev("status", "failed", 2, { from_status: "generating", detail: "provider x is not configured" }))).toBe(
      "failed (version 2), was generating: provider x is not configured",
    );
    expect(eventText(ev("edited", "draft", 3))).toBe("draft edited (version 3)");
    expect(eventText(ev("progress", "generating", 1, { stage: "ranking", percent: 25 }))).toBe("ranking 25%");
  });
});

describe("mergeHistory", () => {
  it("shows the live entries alone until the server answers", () => {
    const rows = mergeHistory(undefined, generation, 2);
    expect(rows.map((r) => r.text)).toEqual(["generating (version 1)", "queued 0%", "ranking 25%", "composing 75%", "done 100%", "generated (version 2)"]);
    expect(rows.every((r) => r.live)).toBe(true);
  });

  it("keeps only what the server does not hold yet", () => {
    const server = [ev("created", "generating", 1), ev("progress", "generating", 1, { stage: "queued", percent: 0 })];
    const rows = mergeHistory(server, generation, 1);
    expect(rows.map((r) => [r.text, r.live])).toEqual([
      ["created: generating (version 1)", false],
      ["queued 0%", false],
      ["ranking 25%", true],
      ["composing 75%", true],
      ["done 100%", true],
      ["generated (version 2)", true],
    ]);
  });

  it("drops a generation's stages once the server has the version that ended it", () => {
    const server = [ev("created", "generating", 1), ev("status", "generated", 2, { from_status: "generating" })];
    expect(mergeHistory(server, generation, 2).map((r) => r.text)).toEqual(["created: generating (version 1)", "generated (version 2), was generating"]);
  });

  it("keeps resets and reconnects, which only the stream saw", () => {
    const live = liveOf([item("e1", "generating", 1), { type: "reset", at: 2, reason: "history no longer reaches back" }, { type: "overflow", at: 3 }]);
    const rows = mergeHistory([ev("created", "generating", 1)], live, 1);
    expect(rows.map((r) => r.kind)).toEqual(["created", "reset", "overflow"]);
  });

  it("places a stage seen before any item event at the item's current version", () => {
    const live = liveOf([progress("e1", "ranking", 25)]);
    expect(live[0].version).toBeNull();
    const server = [ev("status", "generating", 3), ev("progress", "generating", 3, { stage: "ranking", percent: 25 })];
    expect(mergeHistory(server, live, 3).filter((r) => r.live)).toEqual([]);
    expect(mergeHistory([ev("status", "generating", 3)], live, 3).filter((r) => r.live).map((r) => r.text)).toEqual(["ranking 25%"]);
  });

  it("an empty server history (an item older than it) still shows what the stream saw", () => {
    expect(mergeHistory([], liveOf([item("e1", "approved", 5)]), 5).map((r) => r.text)).toEqual(["approved (version 5)"]);
  });
});
