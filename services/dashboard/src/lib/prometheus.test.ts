import { describe, expect, it } from "vitest";
import { histogramQuantile, parseLine, parsePrometheus, ratePerSecond, routeStats, sampleValue } from "./prometheus";

const GATEWAY = `# HELP gateway_requests_total Proxied requests by route prefix, upstream and status class
# TYPE gateway_requests_total counter
gateway_requests_total{route="/api/content",upstream="content-manager",code="2xx"} 40
gateway_requests_total{route="/api/content",upstream="content-manager",code="4xx"} 3
gateway_requests_total{route="/api/content",upstream="content-manager",code="5xx"} 1
gateway_requests_total{route="/api/realtime",upstream="realtime",code="2xx"} 2
# TYPE gateway_request_duration_seconds histogram
gateway_request_duration_seconds_bucket{route="/api/content",upstream="content-manager",le="0.005"} 20
gateway_request_duration_seconds_bucket{route="/api/content",upstream="content-manager",le="0.01"} 40
gateway_request_duration_seconds_bucket{route="/api/content",upstream="content-manager",le="0.1"} 44
gateway_request_duration_seconds_bucket{route="/api/content",upstream="content-manager",le="+Inf"} 44
gateway_request_duration_seconds_sum{route="/api/content",upstream="content-manager"} 0.44
gateway_request_duration_seconds_count{route="/api/content",upstream="content-manager"} 44
process_resident_memory_bytes 1.2e+07
`;

describe("parseLine", () => {
  it("reads names, labels and values", () => {
    expect(parseLine('a_total{x="1",y="two"} 3')).toEqual({ name: "a_total", labels: { x: "1", y: "two" }, value: 3 });
    expect(parseLine("up 1 1700000000000")).toEqual({ name: "up", labels: {}, value: 1 });
    expect(parseLine('h_bucket{le="+Inf"} +Inf')?.value).toBe(Infinity);
  });
  it("unescapes label values", () => {
    expect(parseLine('m{path="a\\"b\\\\c\\nd"} 1')?.labels.path).toBe('a"b\\c\nd');
    expect(parseLine('m{l="x,y}"} 2')?.labels.l).toBe("x,y}");
  });
  it("skips comments, blanks and garbage", () => {
    expect(parseLine("# HELP x y")).toBeNull();
    expect(parseLine("   ")).toBeNull();
    expect(parseLine('m{l="unterminated} 1')).toBeNull();
    expect(parseLine("m{} notanumber")).toBeNull();
    expect(parseLine("9bad 1")).toBeNull();
  });
});

describe("routeStats", () => {
  const samples = parsePrometheus(GATEWAY);
  it("sums requests per route and class", () => {
    const [content, realtime] = routeStats(samples);
    expect(content.route).toBe("/api/content");
    expect(content.requests).toBe(44);
    expect(content.byClass).toEqual({ "2xx": 40, "4xx": 3, "5xx": 1 });
    expect(content.errors).toBe(1);
    expect(content.meanSeconds).toBeCloseTo(0.01);
    expect(realtime.requests).toBe(2);
    expect(realtime.meanSeconds).toBeNull();
  });
  it("estimates p95 from the buckets", () => {
    const [content] = routeStats(samples);
    // rank 41.8 lies in (0.01, 0.1]: 0.01 + 0.09 * (1.8 / 4)
    expect(content.p95Seconds).toBeCloseTo(0.0505);
  });
  it("finds single values", () => {
    expect(sampleValue(samples, "process_resident_memory_bytes")).toBe(12_000_000);
    expect(sampleValue(samples, "nope")).toBeUndefined();
  });
});

describe("histogramQuantile", () => {
  it("handles empty and beyond-the-last-bound cases", () => {
    expect(histogramQuantile(0.5, [])).toBeNull();
    expect(histogramQuantile(0.5, [{ le: Infinity, count: 0 }])).toBeNull();
    expect(histogramQuantile(0.99, [{ le: 1, count: 1 }, { le: Infinity, count: 10 }])).toBe(1);
    expect(histogramQuantile(0.5, [{ le: Infinity, count: 4 }, { le: 2, count: 4 }])).toBeCloseTo(1);
  });
});

describe("ratePerSecond", () => {
  it("is the counter's growth per second, unknown at first and after a reset", () => {
    expect(ratePerSecond(undefined, 10, 5)).toBeNull();
    expect(ratePerSecond(10, 20, 5)).toBe(2);
    expect(ratePerSecond(20, 5, 5)).toBeNull();
    expect(ratePerSecond(1, 2, 0)).toBeNull();
  });
});
