// Sign-in against the auth API (subscriber-manager, through the gateway):
//   POST /api/auth/login   {email, password}   -> {access_token, refresh_token, expires_in}
//   POST /api/auth/refresh {refresh_token}     -> the same
//   POST /api/auth/logout  {refresh_token}
//   GET  /api/auth/me                          -> {email, role, ...}
// Tokens live in memory only (a reload signs out; nothing for a script on the page to find in
// storage). The access token is refreshed silently before it expires.
//
// When /api/auth is not there (404: no route, 502/503/504: no service) the dashboard runs in
// "no sign-in configured" mode: the API itself decides what is allowed, the UI shows a banner.
import { ApiError, isUnavailable } from "./problem";
import { api, setTokenSource, type TokenSource } from "./api";

export type Role = "admin" | "editor" | "viewer";

export interface User {
  email: string;
  role: Role;
}

export type AuthState =
  | { mode: "checking" }
  | { mode: "disabled"; reason: string }
  | { mode: "signed-out"; error?: string }
  | { mode: "signed-in"; user: User };

export interface TokenResponse {
  access_token: string;
  refresh_token: string;
  expires_in: number; // seconds
}

// When to refresh an access token that lives expiresIn seconds: a fifth of its life early, at
// least 30 s early, never sooner than a second from now.
export function refreshDelayMs(expiresIn: number): number {
  const life = Math.max(0, expiresIn) * 1000;
  const early = Math.max(30_000, life * 0.2);
  return Math.max(1000, life - early);
}

export function canEdit(state: AuthState): boolean {
  if (state.mode === "disabled") return true; // no sign-in: the API is the judge
  return state.mode === "signed-in" && (state.user.role === "admin" || state.user.role === "editor");
}

export function parseRole(v: unknown): Role {
  return v === "admin" || v === "editor" ? v : "viewer";
}

type Timer = ReturnType<typeof setTimeout>;

export interface AuthDeps {
  request: typeof api;
  setTimer: (fn: () => void, ms: number) => Timer;
  clearTimer: (t: Timer) => void;
}

export class AuthClient implements TokenSource {
  private state: AuthState = { mode: "checking" };
  private access: string | null = null;
  private refreshTok: string | null = null;
  private timer: Timer | null = null;
  private inflight: Promise<boolean> | null = null;
  private listeners = new Set<() => void>();
  private deps: AuthDeps;

  constructor(deps?: Partial<AuthDeps>) {
    this.deps = {
      request: deps?.request ?? api,
      setTimer: deps?.setTimer ?? ((fn, ms) => setTimeout(fn, ms)),
      clearTimer: deps?.clearTimer ?? ((t) => clearTimeout(t)),
    };
  }

  getState = (): AuthState => this.state;

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  private set(s: AuthState): void {
    this.state = s;
    this.listeners.forEach((fn) => fn());
  }

  accessToken(): string | null {
    return this.access;
  }

  // Is sign-in configured? Asks /api/auth/me without a token.
  async probe(): Promise<AuthState> {
    try {
      const me = await this.deps.request<Record<string, unknown>>("/api/auth/me", { auth: false });
      // answered without a token: an auth service that lets anonymous callers in
      this.set({ mode: "signed-in", user: { email: String(me.email ?? ""), role: parseRole(me.role) } });
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) this.set({ mode: "signed-out" });
      else if (isUnavailable(e))
        this.set({
          mode: "disabled",
          reason: e instanceof ApiError ? `${e.status} ${e.problem.title}` : "no answer",
        });
      else this.set({ mode: "signed-out", error: e instanceof Error ? e.message : String(e) });
    }
    return this.state;
  }

  private accept(t: TokenResponse): void {
    this.access = t.access_token;
    this.refreshTok = t.refresh_token;
    if (this.timer) this.deps.clearTimer(this.timer);
    this.timer = this.deps.setTimer(() => void this.refresh(), refreshDelayMs(t.expires_in));
  }

  private clear(): void {
    this.access = null;
    this.refreshTok = null;
    if (this.timer) this.deps.clearTimer(this.timer);
    this.timer = null;
  }

  async login(email: string, password: string): Promise<void> {
    const t = await this.deps.request<TokenResponse>("/api/auth/login", {
      method: "POST",
      body: { email, password },
      auth: false,
    });
    this.accept(t);
    const me = await this.deps.request<Record<string, unknown>>("/api/auth/me");
    this.set({ mode: "signed-in", user: { email: String(me.email ?? email), role: parseRole(me.role) } });
  }

  // One refresh at a time: concurrent 401s share it.
  refresh(): Promise<boolean> {
    if (!this.refreshTok) return Promise.resolve(false);
    if (this.inflight) return this.inflight;
    const tok = this.refreshTok;
    this.inflight = this.deps
      .request<TokenResponse>("/api/auth/refresh", { method: "POST", body: { refresh_token: tok }, auth: false })
      .then((t) => {
        this.accept(t);
        return true;
      })
      .catch(() => {
        this.clear();
        this.set({ mode: "signed-out", error: "Your session ended. Sign in again." });
        return false;
      })
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }

  async logout(): Promise<void> {
    const tok = this.refreshTok;
    this.clear();
    this.set({ mode: "signed-out" });
    if (tok) {
      try {
        await this.deps.request("/api/auth/logout", { method: "POST", body: { refresh_token: tok }, auth: false });
      } catch {
        /* the tokens are gone here either way */
      }
    }
  }
}

export const auth = new AuthClient();
setTokenSource(auth);
