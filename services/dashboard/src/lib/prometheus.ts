// Prometheus text exposition format (version 0.0.4), as the gateway's /metrics writes it, and
// the per-route figures the System page shows.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(s: string): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  return Number(s);
}

// Parses one sample line; null for comments, blank and malformed lines.
export function parseLine(line: string): Sample | null {
  const l = line.trim();
  if (!l || l.startsWith("#")) return null;
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(l);
  if (!m) return null;
  const name = m[1];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (l[i] === "{") {
    i++;
    for (;;) {
      while (l[i] === " " || l[i] === ",") i++;
      if (l[i] === "}") {
        i++;
        break;
      }
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(l.slice(i));
      if (!lm) return null;
      i += lm[0].length;
      let v = "";
      for (;;) {
        const c = l[i];
        if (c === undefined) return null;
        if (c === "\\") {
          const n = l[i + 1];
          v += n === "n" ? "\n" : (n ?? "");
          i += 2;
          continue;
        }
        i++;
        if (c === '"') break;
        v += c;
      }
      labels[lm[1]] = v;
    }
  }
  const rest = l.slice(i).trim().split(/\s+/);
  if (!rest[0]) return null;
  const value = parseValue(rest[0]);
  if (Number.isNaN(value) && rest[0] !== "NaN") return null;
  return { name, labels, value };
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const s = parseLine(line);
    if (s) out.push(s);
  }
  return out;
}

// The q-quantile (0..1) from cumulative histogram buckets (upper bound -> count), linear
// inside the bucket as Prometheus' histogram_quantile does; null when there is no observation.
export function histogramQuantile(q: number, buckets: Array<{ le: number; count: number }>): number | null {
  const b = [...buckets].sort((x, y) => x.le - y.le);
  if (!b.length) return null;
  const total = b[b.length - 1].count;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const { le, count } of b) {
    if (count >= rank) {
      if (le === Infinity) return prevLe; // beyond the last finite bound: its bound
      const inBucket = count - prevCount;
      return inBucket > 0 ? prevLe + (le - prevLe) * ((rank - prevCount) / inBucket) : le;
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

export interface RouteStats {
  route: string;
  upstream: string;
  requests: number;
  byClass: Record<string, number>; // "2xx" -> count
  errors: number; // 5xx
  meanSeconds: number | null;
  p95Seconds: number | null;
}

// gateway_requests_total{route,upstream,code} and gateway_request_duration_seconds{route,upstream}
// per route, sorted by route.
export function routeStats(samples: Sample[]): RouteStats[] {
  const rows = new Map<string, RouteStats>();
  const buckets = new Map<string, Array<{ le: number; count: number }>>();
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  const row = (route: string, upstream: string): RouteStats => {
    const k = `${route}\u0000${upstream}`;
    let r = rows.get(k);
    if (!r) {
      r = { route, upstream, requests: 0, byClass: {}, errors: 0, meanSeconds: null, p95Seconds: null };
      rows.set(k, r);
    }
    return r;
  };
  for (const s of samples) {
    const { route, upstream } = s.labels;
    if (route === undefined || upstream === undefined) continue;
    const k = `${route}\u0000${upstream}`;
    if (s.name === "gateway_requests_total") {
      const r = row(route, upstream);
      const code = s.labels.code ?? "other";
      r.byClass[code] = (r.byClass[code] ?? 0) + s.value;
      r.requests += s.value;
      if (code === "5xx") r.errors += s.value;
    } else if (s.name === "gateway_request_duration_seconds_bucket") {
      row(route, upstream);
      const list = buckets.get(k) ?? [];
      list.push({ le: parseValue(s.labels.le ?? "+Inf"), count: s.value });
      buckets.set(k, list);
    } else if (s.name === "gateway_request_duration_seconds_sum") {
      sums.set(k, s.value);
    } else if (s.name === "gateway_request_duration_seconds_count") {
      counts.set(k, s.value);
    }
  }
  for (const [k, r] of rows) {
    const c = counts.get(k) ?? 0;
    r.meanSeconds = c > 0 ? (sums.get(k) ?? 0) / c : null;
    r.p95Seconds = histogramQuantile(0.95, buckets.get(k) ?? []);
  }
  return [...rows.values()].sort((a, b) => a.route.localeCompare(b.route) || a.upstream.localeCompare(b.upstream));
}

// Requests per second between two scrapes of a counter; null when unknown or reset.
export function ratePerSecond(prev: number | undefined, cur: number, seconds: number): number | null {
  if (prev === undefined || seconds <= 0 || cur < prev) return null;
  return (cur - prev) / seconds;
}

// A single value by name (and optional labels), e.g. process metrics; undefined if absent.
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
