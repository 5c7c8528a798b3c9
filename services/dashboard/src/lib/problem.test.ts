import { describe, expect, it } from "vitest";
import { ApiError, isUnavailable, problemFromBody, problemFromResponse, toProblem } from "./problem";

describe("problemFromBody", () => {
  it("keeps an RFC 9457 body as sent, field errors included", () => {
    const sent = {
      type: "about:blank",
      title: "Bad Request",
      status: 400,
      detail: "the brief is invalid",
      instance: "/api/content/items",
      request_id: "r1",
      errors: [{ field: "title", detail: "required" }],
    };
    expect(problemFromBody(400, "Bad Request", "application/problem+json", JSON.stringify(sent))).toEqual(sent);
  });
  it("fills what is missing from the status line", () => {
    const p = problemFromBody(409, "Conflict", "application/problem+json", "{}");
    expect(p.title).toBe("Conflict");
    expect(p.status).toBe(409);
    expect(p.errors).toBeUndefined();
  });
  it("turns text and broken JSON into the detail", () => {
    expect(problemFromBody(502, "Bad Gateway", "text/plain", "upstream refused\n")).toMatchObject({
      title: "Bad Gateway",
      status: 502,
      detail: "upstream refused",
    });
    expect(problemFromBody(500, "", "application/json", "{oops").detail).toBe("{oops");
    expect(problemFromBody(500, "", null, "").title).toBe("HTTP 500");
  });
});

describe("problemFromResponse", () => {
  it("takes the request id from the header when the body has none", async () => {
    const res = new Response("nope", { status: 503, statusText: "Service Unavailable", headers: { "x-request-id": "abc" } });
    const p = await problemFromResponse(res);
    expect(p).toMatchObject({ status: 503, title: "Service Unavailable", detail: "nope", request_id: "abc" });
  });
});

describe("toProblem and isUnavailable", () => {
  it("describes thrown values", () => {
    const e = new ApiError({ type: "about:blank", title: "Not Found", status: 404 });
    expect(toProblem(e).status).toBe(404);
    expect(e.message).toBe("Not Found");
    expect(toProblem(new TypeError("Failed to fetch"))).toMatchObject({ status: 0, title: "Network error", detail: "Failed to fetch" });
  });
  it("knows a missing service from a refusal", () => {
    for (const s of [404, 502, 503, 504]) expect(isUnavailable(new ApiError({ type: "", title: "", status: s }))).toBe(true);
    expect(isUnavailable(new ApiError({ type: "", title: "", status: 400 }))).toBe(false);
    expect(isUnavailable(new ApiError({ type: "", title: "", status: 401 }))).toBe(false);
    expect(isUnavailable(new TypeError("network"))).toBe(true);
  });
});
