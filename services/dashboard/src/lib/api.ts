// fetch for the API behind the gateway: same origin, JSON in and out, problem+json errors as
// ApiError, the bearer token when signed in, one silent refresh and retry on 401.
import { ApiError, problemFromResponse } from "./problem";

export interface TokenSource {
  accessToken(): string | null;
  // true when a new access token is in place (retry), false when signed out
  refresh(): Promise<boolean>;
}

let tokens: TokenSource | null = null;
export function setTokenSource(t: TokenSource | null): void {
  tokens = t;
}
export function currentAccessToken(): string | null {
  return tokens?.accessToken() ?? null;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  auth?: boolean; // default true
}

export interface ApiResponse<T> {
  data: T;
  status: number;
  etag: string | null;
}

async function send(path: string, o: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json", ...o.headers };
  let body: string | undefined;
  if (o.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(o.body);
  }
  const token = o.auth === false ? null : tokens?.accessToken();
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(path, { method: o.method ?? "GET", headers, body, signal: o.signal });
}

export async function apiRequest<T>(path: string, o: RequestOptions = {}): Promise<ApiResponse<T>> {
  let res = await send(path, o);
  if (res.status === 401 && o.auth !== false && tokens && (await tokens.refresh())) {
    res = await send(path, o);
  }
  if (!res.ok) throw new ApiError(await problemFromResponse(res));
  const text = res.status === 204 ? "" : await res.text();
  const data = (text ? JSON.parse(text) : null) as T;
  return { data, status: res.status, etag: res.headers.get("etag") };
}

export async function api<T>(path: string, o: RequestOptions = {}): Promise<T> {
  return (await apiRequest<T>(path, o)).data;
}

// Text endpoints (/metrics).
export async function apiText(path: string, signal?: AbortSignal): Promise<string> {
  const res = await fetch(path, { signal, headers: { accept: "text/plain" } });
  if (!res.ok) throw new ApiError(await problemFromResponse(res));
  return res.text();
}
