// The gateway's /readyz (one check per routed upstream: that upstream's own /readyz) and
// /metrics, for the System page.
import { problemFromResponse, ApiError } from "./problem";

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface Readiness {
  status: string; // "ready", "not ready", "draining"
  checks: Check[];
}

export function parseReadiness(j: unknown): Readiness {
  const o = (typeof j === "object" && j !== null ? j : {}) as Record<string, unknown>;
  const checks = (typeof o.checks === "object" && o.checks !== null ? o.checks : {}) as Record<string, unknown>;
  return {
    status: typeof o.status === "string" ? o.status : "unknown",
    checks: Object.entries(checks)
      .map(([name, v]) => {
        const c = (typeof v === "object" && v !== null ? v : {}) as Record<string, unknown>;
        return { name, ok: c.ok === true, detail: typeof c.detail === "string" ? c.detail : "" };
      })
      .sort((a, b) => a.name.localeCompare(b.name)),
  };
}

// 200 and 503 both carry the report; anything else is an error.
export async function fetchReadiness(signal?: AbortSignal): Promise<Readiness> {
  const res = await fetch("/readyz", { signal, headers: { accept: "application/json" } });
  if (res.status !== 200 && res.status !== 503) throw new ApiError(await problemFromResponse(res));
  return parseReadiness(await res.json());
}
