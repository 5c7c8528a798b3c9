import { describe, expect, it, vi } from "vitest";
import { AuthClient, canEdit, parseRole, refreshDelayMs } from "./auth";
import { ApiError } from "./problem";

const problem = (status: number) => new ApiError({ type: "about:blank", title: `HTTP ${status}`, status });

// A fake auth API and fake timers: what was requested, which timers are pending.
function harness(handlers: Record<string, (body: unknown, headers?: Record<string, string>) => unknown>) {
  const calls: string[] = [];
  const timers: Array<{ fn: () => void; ms: number; cleared: boolean }> = [];
  const request = vi.fn(async (path: string, o: { body?: unknown; headers?: Record<string, string> } = {}) => {
    calls.push(path);
    const h = handlers[path];
    if (!h) throw problem(404);
    return h(o.body, o.headers);
  });
  const client = new AuthClient({
    request: request as never,
    setTimer: (fn, ms) => {
      const t = { fn, ms, cleared: false };
      timers.push(t);
      return t as never;
    },
    clearTimer: (t) => {
      (t as unknown as { cleared: boolean }).cleared = true;
    },
  });
  const pending = () => timers.filter((t) => !t.cleared);
  return { client, calls, pending };
}

describe("refreshDelayMs", () => {
  it("refreshes a fifth of the lifetime early, at least 30 s early, never under 1 s", () => {
    expect(refreshDelayMs(900)).toBe(720_000);
    expect(refreshDelayMs(60)).toBe(30_000);
    expect(refreshDelayMs(20)).toBe(1000);
    expect(refreshDelayMs(-5)).toBe(1000);
  });
});

describe("roles", () => {
  it("lets editors and admins edit, viewers not; without sign-in the API decides", () => {
    expect(canEdit({ mode: "signed-in", user: { email: "a", role: "admin" } })).toBe(true);
    expect(canEdit({ mode: "signed-in", user: { email: "a", role: "editor" } })).toBe(true);
    expect(canEdit({ mode: "signed-in", user: { email: "a", role: "viewer" } })).toBe(false);
    expect(canEdit({ mode: "signed-out" })).toBe(false);
    expect(canEdit({ mode: "disabled", reason: "404" })).toBe(true);
    expect(parseRole("superuser")).toBe("viewer");
  });
});

describe("AuthClient", () => {
  it("runs without sign-in when the auth API is not there", async () => {
    for (const status of [404, 502, 503, 504]) {
      const { client } = harness({
        "/api/auth/me": () => {
          throw problem(status);
        },
      });
      expect((await client.probe()).mode).toBe("disabled");
    }
  });

  it("asks for sign-in when the API answers 401", async () => {
    const { client } = harness({
      "/api/auth/me": () => {
        throw problem(401);
      },
    });
    expect((await client.probe()).mode).toBe("signed-out");
  });

  it("signs in, schedules the refresh, refreshes silently and signs out", async () => {
    let n = 0;
    const { client, calls, pending } = harness({
      "/api/auth/login": () => ({ access_token: "a0", refresh_token: "r0", expires_in: 900 }),
      "/api/auth/me": () => ({ email: "ed@example.test", role: "editor" }),
      "/api/auth/refresh": (body) => {
        expect(body).toEqual({ refresh_token: n === 0 ? "r0" : "r1" });
        n++;
        return { access_token: `a${n}`, refresh_token: `r${n}`, expires_in: 60 };
      },
      "/api/auth/logout": () => null,
    });
    const seen: string[] = [];
    client.subscribe(() => seen.push(client.getState().mode));
    await client.login("ed@example.test", "pw");
    expect(client.getState()).toEqual({ mode: "signed-in", user: { email: "ed@example.test", role: "editor" } });
    expect(client.accessToken()).toBe("a0");
    expect(pending().map((t) => t.ms)).toEqual([720_000]);
    pending()[0].fn(); // the timer fires
    await vi.waitFor(() => expect(client.accessToken()).toBe("a1"));
    expect(pending().map((t) => t.ms)).toEqual([30_000]); // the new lifetime's schedule, one timer
    await client.logout();
    expect(client.accessToken()).toBeNull();
    expect(pending()).toEqual([]);
    expect(calls).toContain("/api/auth/logout");
    expect(seen).toEqual(["signed-in", "signed-out"]);
  });

  it("shares one refresh among concurrent callers and signs out when it fails", async () => {
    let refreshes = 0;
    const { client } = harness({
      "/api/auth/login": () => ({ access_token: "a0", refresh_token: "r0", expires_in: 900 }),
      "/api/auth/me": () => ({ email: "v@example.test", role: "viewer" }),
      "/api/auth/refresh": async () => {
        refreshes++;
        throw problem(401);
      },
    });
    await client.login("v@example.test", "pw");
    const [a, b] = await Promise.all([client.refresh(), client.refresh()]);
    expect([a, b]).toEqual([false, false]);
    expect(refreshes).toBe(1);
    expect(client.getState().mode).toBe("signed-out");
    expect(await client.refresh()).toBe(false); // no refresh token left: no request
    expect(refreshes).toBe(1);
  });
});
