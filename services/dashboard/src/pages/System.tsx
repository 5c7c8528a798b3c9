import { useRef } from "react";
import { useQuery } from "@tanstack/react-query";
import { apiText } from "../lib/api";
import { parsePrometheus, ratePerSecond, routeStats, sampleValue, type RouteStats } from "../lib/prometheus";
import { fetchReadiness } from "../lib/system";
import { Table } from "../components/bits";
import { ProblemView } from "../components/ProblemView";

const REFRESH_MS = 5000;

function ms(seconds: number | null): string {
  return seconds === null ? "–" : `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
}

export function SystemPage() {
  const ready = useQuery({ queryKey: ["readyz"], queryFn: ({ signal }) => fetchReadiness(signal), refetchInterval: REFRESH_MS });
  const prev = useRef<{ at: number; totals: Map<string, number> } | null>(null);
  const metrics = useQuery({
    queryKey: ["metrics"],
    queryFn: async ({ signal }) => {
      const samples = parsePrometheus(await apiText("/metrics", signal));
      const routes = routeStats(samples);
      const at = Date.now();
      const rates = new Map<string, number | null>();
      const totals = new Map<string, number>();
      for (const r of routes) {
        const k = `${r.route} ${r.upstream}`;
        totals.set(k, r.requests);
        rates.set(k, prev.current ? ratePerSecond(prev.current.totals.get(k), r.requests, (at - prev.current.at) / 1000) : null);
      }
      prev.current = { at, totals };
      return {
        routes,
        rates,
        rss: sampleValue(samples, "process_resident_memory_bytes"),
        at,
      };
    },
    refetchInterval: REFRESH_MS,
  });

  return (
    <section>
      <h1>System</h1>
      <p className="muted small">
        From the gateway's <code>/readyz</code> and <code>/metrics</code>, every {REFRESH_MS / 1000} s.
      </p>
      <h2>
        Readiness{" "}
        {ready.data && (
          <span className={`badge ${ready.data.status === "ready" ? "badge-approved" : "badge-failed"}`} data-testid="ready-status">
            {ready.data.status}
          </span>
        )}
      </h2>
      {ready.isPending ? (
        <p className="muted">Asking the gateway…</p>
      ) : ready.isError ? (
        <ProblemView error={ready.error} action="Readiness" />
      ) : ready.data.checks.length === 0 ? (
        <p>No upstream is routed.</p>
      ) : (
        <ul className="checks" data-testid="checks">
          {ready.data.checks.map((c) => (
            <li key={c.name} className={c.ok ? "ok" : "bad"} data-service={c.name}>
              <span className="dot" aria-hidden="true" />
              <strong>{c.name}</strong> <span className="sr-only">{c.ok ? "ready" : "not ready"}</span>
              <span className="small muted">{c.ok ? "ready" : c.detail || "not ready"}</span>
            </li>
          ))}
        </ul>
      )}
      <h2>Requests by route</h2>
      {metrics.isPending ? (
        <p className="muted">Reading metrics…</p>
      ) : metrics.isError ? (
        <ProblemView error={metrics.error} action="Metrics" />
      ) : metrics.data.routes.length === 0 ? (
        <p>No request has been proxied yet: open Content to make some.</p>
      ) : (
        <Table label="Requests by route" testId="routes" cols={["Route", "Upstream", { label: "Requests", className: "num" }, { label: "req/s", className: "num" }, { label: "4xx", className: "num" }, { label: "5xx", className: "num" }, { label: "mean", className: "num" }, { label: "p95", className: "num" }]}>
          {metrics.data.routes.map((r: RouteStats) => {
            const rate = metrics.data.rates.get(`${r.route} ${r.upstream}`);
            return (
              <tr key={`${r.route} ${r.upstream}`}>
                <td>
                  <code>{r.route}</code>
                </td>
                <td>{r.upstream}</td>
                <td className="num">{r.requests}</td>
                <td className="num">{rate === null || rate === undefined ? "–" : rate.toFixed(2)}</td>
                <td className="num">{r.byClass["4xx"] ?? 0}</td>
                <td className={`num ${r.errors ? "bad-text" : ""}`}>{r.errors}</td>
                <td className="num">{ms(r.meanSeconds)}</td>
                <td className="num">{ms(r.p95Seconds)}</td>
              </tr>
            );
          })}
        </Table>
      )}
      {metrics.data?.rss !== undefined && (
        <p className="small muted">Gateway memory: {(metrics.data.rss / 1048576).toFixed(1)} MiB</p>
      )}
    </section>
  );
}
