#!/usr/bin/env node
// Browser tests of the dashboard against the real stack, run by make test (installed as
// build/<variant>/tests/integration/dashboard_browser, so it runs after Kafka and PostgreSQL are
// up and their URLs are in the environment). It starts content-manager, ai-processor, realtime
// and a gateway serving build/dashboard from $CE_TEST_BUILD_DIR/bin, drives Debian's Chromium
// headless through playwright-core (no browser download), stops the services, and prints
// cmocka's summary lines for scripts/test.sh. A failing test leaves a screenshot in
// var/log/tests/dashboard-<test>.png.
//
//   DASHBOARD_SCREENSHOTS=<dir>  also save the main pages at 1280 px there (services/dashboard/docs)
//   DASHBOARD_ONLY=<name,...>    run only these tests
//
// The Sources and Subscribers tests (marked `full`) run against a second gateway with the
// default route table and authorization on (GATEWAY_AUTH_FULL=off turns it off), in front of
// the scraper (fetching a test site that an nginx started here serves on loopback) and
// subscriber-manager (a schema of its own, throw-away keys and admin, dropped at the end).
// They need SCRAPER_DATABASE_URL, PLATFORM_TEST_DATABASE_URL, psql and nginx; without them they
// are reported skipped.
import { execFileSync, spawn } from "node:child_process";
import { createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const DASH = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROOT = resolve(DASH, "../..");
const BUILD = process.env.CE_TEST_BUILD_DIR ?? join(ROOT, "build/asan");
const STATIC = process.env.GATEWAY_STATIC_DIR ?? join(ROOT, "build/dashboard");
const LOGS = join(ROOT, "var/log/tests");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.DASHBOARD_SCREENSHOTS;
// axe-core (pinned in package-lock.json), evaluated in the page: the index's CSP allows no
// injected <script>, and the evaluation does not need one
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const WIDE = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

const tests = [];
const test = (name, fn, opts = {}) => tests.push({ name, fn, ...opts });
let needFull = false;

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

// ---------------------------------------------------------------- the stack

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const services = [];

async function waitHttp(port, path, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}${path}`);
      if (r.ok) return true;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function startService(name, port, env, readyPath = "/readyz", bin = name) {
  const log = join(LOGS, `dashboard-${name}.log`);
  const fd = openSync(log, "w");
  const child = spawn(join(BUILD, "bin", bin), [], {
    cwd: ROOT,
    env: { ...process.env, HTTP_PORT: String(port), LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", fd, fd],
  });
  const svc = { name, port, child, exited: null };
  child.on("exit", (code, sig) => (svc.exited = code ?? 128 + (sig === "SIGKILL" ? 9 : 15)));
  services.push(svc);
  if (!(await waitHttp(port, readyPath, 60_000))) throw new Error(`${name} did not become ready; see ${log}`);
  return svc;
}

// SIGTERM, then SIGKILL after 30 s; the exit code
async function stopService(s) {
  if (s.exited === null) {
    s.child.kill("SIGTERM");
    const end = Date.now() + 30_000;
    while (s.exited === null && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    if (s.exited === null) {
      s.child.kill("SIGKILL");
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return s.exited;
}

async function stopServices() {
  const codes = {};
  for (const s of [...services].reverse()) codes[s.name] = await stopService(s);
  return codes;
}

let gw = 0;
let cmEnv = {};
const base = () => `http://127.0.0.1:${gw}`;

async function startStack() {
  const brokers = process.env.KAFKA_BROKERS;
  const ports = { cm: await freePort(), ai: await freePort(), rt: await freePort(), gw: await freePort(), dead: await freePort() };
  const common = { KAFKA_BROKERS: brokers, ASAN_OPTIONS: "detect_leaks=1:abort_on_error=0" };
  cmEnv = {
    ...common,
    DATABASE_URL: process.env.CONTENT_MANAGER_DATABASE_URL,
    MIGRATIONS_DIR: join(ROOT, "services/content-manager/migrations"),
  };
  await startService("content-manager", ports.cm, cmEnv);
  await startService("ai-processor", ports.ai, {
    ...common,
    DATABASE_URL: process.env.AI_PROCESSOR_DATABASE_URL,
    MIGRATIONS_DIR: join(ROOT, "services/ai-processor/migrations"),
  });
  await startService("realtime", ports.rt, common);
  // scraper and subscriber-manager are routed to a port nobody listens on: their pages must
  // say the service is not there, and /readyz must say which upstream is not ready
  await startService(
    "gateway",
    ports.gw,
    {
      GATEWAY_UPSTREAMS: `content-manager=127.0.0.1:${ports.cm} ai-processor=127.0.0.1:${ports.ai} realtime=127.0.0.1:${ports.rt} scraper=127.0.0.1:${ports.dead} subscriber-manager=127.0.0.1:${ports.dead}`,
      GATEWAY_ROUTES:
        "/api/content=content-manager /api/ai=ai-processor /api/realtime=realtime /api/scraper=scraper /api/subscribers=subscriber-manager",
      GATEWAY_STATIC_DIR: STATIC,
      GATEWAY_CONNECT_TIMEOUT_MS: "1000",
      // no auth service (subscriber-manager) in this stack yet: the dashboard's
      // "no sign-in configured" mode; the viewer test plays the auth API in the browser
      GATEWAY_AUTH: "off",
    },
    "/healthz",
  );
  gw = ports.gw;
  full.why = fullStackMissing();
  if (!full.why && needFull) await startFullStack(ports);
}

// ---------------------------------------------------------------- the full stack (Sources, Subscribers)

let gwFull = 0;
const baseFull = () => `http://127.0.0.1:${gwFull}`;
const full = { ready: false, why: "", site: 0, tmp: "", schema: "", nginx: null, admin: { email: "", password: "" } };

function psql(sql) {
  execFileSync("psql", [process.env.PLATFORM_TEST_DATABASE_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], { stdio: ["ignore", "ignore", "pipe"] });
}

function fullStackMissing() {
  const missing = ["SCRAPER_DATABASE_URL", "PLATFORM_TEST_DATABASE_URL"].filter((v) => !process.env[v]);
  if (missing.length) return `no ${missing.join(", ")}`;
  if (!existsSync("/usr/sbin/nginx")) return "no /usr/sbin/nginx (the scraper's test site)";
  try {
    execFileSync("psql", ["--version"], { stdio: "ignore" });
  } catch {
    return "no psql";
  }
  for (const b of ["scraper", "subscriber-manager"]) if (!existsSync(join(BUILD, "bin", b))) return `no ${BUILD}/bin/${b}`;
  return null;
}

// The scraper's fixture site (tests/fixtures/scraper-site) on a free loopback port: the feed
// rendered from its template, everything else as it is.
async function startSite() {
  const fixtures = join(ROOT, "tests/fixtures/scraper-site");
  full.tmp = mkdtempSync(join(tmpdir(), "dash-site-"));
  full.site = await freePort();
  const feed = readFileSync(join(fixtures, "feed.xml.tmpl"), "utf8").replaceAll("SITE", `127.0.0.1:${full.site}`);
  mkdirSync(join(full.tmp, "site"));
  writeFileSync(join(full.tmp, "site/feed.xml"), feed);
  const t = full.tmp;
  writeFileSync(
    join(t, "nginx.conf"),
    `worker_processes 1;\ndaemon off;\nmaster_process off;\nerror_log ${t}/error.log warn;\npid ${t}/nginx.pid;\n` +
      `events { worker_connections 64; }\nhttp {\n  access_log ${t}/access.log;\n` +
      `  client_body_temp_path ${t}/body; proxy_temp_path ${t}/proxy; fastcgi_temp_path ${t}/fcgi; uwsgi_temp_path ${t}/uwsgi; scgi_temp_path ${t}/scgi;\n` +
      `  types { text/html html; application/xml xml; text/plain txt; }\n  default_type application/octet-stream;\n` +
      `  server {\n    listen 127.0.0.1:${full.site};\n    root ${fixtures};\n    location = /feed.xml { root ${t}/site; }\n  }\n}\n`,
  );
  const fd = openSync(join(LOGS, "dashboard-nginx.log"), "w");
  full.nginx = spawn("/usr/sbin/nginx", ["-c", join(t, "nginx.conf"), "-p", t], { stdio: ["ignore", fd, fd] });
  if (!(await waitHttp(full.site, "/robots.txt", 10_000))) throw new Error("nginx did not serve the test site");
}

// An Ed25519 key pair from a random seed: subscriber-manager signs with the seed, the gateway
// verifies with the public half.
function signingKeys() {
  const seed = randomBytes(32);
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const pub = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "der", type: "spki" }).subarray(-32);
  return { seed: seed.toString("base64"), pub: pub.toString("base64") };
}

async function startFullStack(ports) {
  await startSite();
  const common = { KAFKA_BROKERS: process.env.KAFKA_BROKERS, ASAN_OPTIONS: "detect_leaks=1:abort_on_error=0" };
  const sc = await freePort();
  await startService("scraper", sc, {
    ...common,
    DATABASE_URL: process.env.SCRAPER_DATABASE_URL,
    MIGRATIONS_DIR: join(ROOT, "services/scraper/migrations"),
    SCRAPER_ALLOW_PRIVATE: "127.0.0.1/32",
    SCRAPER_DELAY: "0",
    SCRAPER_PROGRESS_INTERVAL: "300ms",
    SCRAPER_SCHEDULER_TICK: "200ms",
    SCRAPER_TIMEOUT: "5s",
  });
  full.schema = `dash_${uniq}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  psql(`CREATE SCHEMA ${full.schema}`);
  const keys = signingKeys();
  full.admin = { email: `admin-${uniq}@example.test`.toLowerCase(), password: randomBytes(12).toString("base64url") };
  const sm = await freePort();
  await startService("subscriber-manager", sm, {
    ...common,
    DATABASE_URL: process.env.PLATFORM_TEST_DATABASE_URL,
    DB_SEARCH_PATH: full.schema,
    MIGRATIONS_DIR: join(ROOT, "services/subscriber-manager/migrations"),
    SERVICE_NAME: `subscriber-manager-${full.schema}`,
    AUTH_SIGNING_KEY: keys.seed,
    SUBSCRIBER_DATA_KEY: randomBytes(32).toString("base64"),
    SUBSCRIBER_INDEX_KEY: randomBytes(32).toString("base64"),
    TOKEN_SIGNING_KEY: randomBytes(32).toString("base64"),
    ADMIN_EMAIL: full.admin.email,
    ADMIN_PASSWORD: full.admin.password,
    IMPORT_BATCH_ROWS: "50", // several progress events for a small file
    AUTH_ACCESS_TTL: "40s", // the dashboard refreshes it 30 s early: silently, during the tests
  });
  const gp = await freePort();
  await startService(
    "gateway-full",
    gp,
    {
      GATEWAY_UPSTREAMS: `content-manager=127.0.0.1:${ports.cm} ai-processor=127.0.0.1:${ports.ai} realtime=127.0.0.1:${ports.rt} scraper=127.0.0.1:${sc} subscriber-manager=127.0.0.1:${sm} distributor=127.0.0.1:${ports.dead} media-processor=127.0.0.1:${ports.dead}`,
      // the default route table (roles per route, /api/auth, the ;stream token)
      GATEWAY_STATIC_DIR: STATIC,
      GATEWAY_CONNECT_TIMEOUT_MS: "1000",
      GATEWAY_AUTH: process.env.GATEWAY_AUTH_FULL ?? "on",
      AUTH_PUBLIC_KEY: keys.pub,
    },
    "/healthz",
    "gateway",
  );
  gwFull = gp;
  full.ready = true;
}

async function stopFullStack() {
  if (full.nginx && full.nginx.exitCode === null) {
    full.nginx.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
  }
  if (full.schema)
    try {
      psql(`DROP SCHEMA IF EXISTS ${full.schema} CASCADE`);
    } catch (e) {
      console.log(`could not drop schema ${full.schema}: ${e.message}`);
    }
  if (full.tmp) rmSync(full.tmp, { recursive: true, force: true });
}

// API calls on the full stack, as a signed-in user.
async function login(email, password) {
  const r = await fetch(`${baseFull()}/api/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password }) });
  assert(r.status === 200, `login ${email}: ${r.status}`);
  return (await r.json()).access_token;
}
async function fullApi(token, method, path, body) {
  const r = await fetch(baseFull() + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, json: text && /json/.test(r.headers.get("content-type") ?? "") ? JSON.parse(text) : text };
}

async function signIn(page, path, email, password) {
  await page.goto(baseFull() + path);
  await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("role").waitFor();
}

// ---------------------------------------------------------------- helpers

async function apiJson(method, path, body) {
  const r = await fetch(base() + path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null, headers: r.headers };
}

const uniq = `t${process.pid}x${Date.now().toString(36)}`;
const SOURCES = [
  "Solar power is getting cheaper every year. Installers report record demand in the spring.",
  "Battery storage is the missing piece for solar power. Prices for home batteries fell again.",
  "Grid operators now schedule around the midday peak. Evening demand is met from storage.",
];

async function shot(page, name, fullPage = false) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

// Runs axe-core on the page as it is: WCAG 2.x A and AA (contrast included) and the best
// practices. Returns the serious and critical violations as lines; prints the others.
async function axeViolations(page, label) {
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(AXE_SOURCE);
  const res = await page.evaluate(() =>
    window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
      resultTypes: ["violations"],
    }),
  );
  const lines = [];
  for (const v of res.violations) {
    const where = v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ");
    const line = `${label}: ${v.impact} ${v.id} (${v.help}) at ${where}${v.nodes.length > 3 ? ` and ${v.nodes.length - 3} more` : ""}`;
    if (v.impact === "serious" || v.impact === "critical") lines.push(line);
    else console.log(`    axe (not failing) ${line}`);
  }
  const contrast = [...res.passes, ...res.violations].some((r) => r.id === "color-contrast");
  return { lines, rules: res.passes.length + res.violations.length, contrast };
}

// What sticks out past the right edge (for a page that scrolls sideways).
async function overflowing(page) {
  return page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const out = [];
    for (const e of document.querySelectorAll("body *")) {
      if (e.closest(".scroll-x") && !e.classList.contains("scroll-x")) continue; // scrolls by itself
      const r = e.getBoundingClientRect();
      if (r.right > w + 0.5 && !(e.parentElement && e.parentElement.getBoundingClientRect().right > w + 0.5))
        out.push(`${e.tagName.toLowerCase()}${e.className ? `.${String(e.className).split(" ").join(".")}` : ""} to ${Math.round(r.right)}px`);
    }
    return out.slice(0, 5).join(", ") || "nothing visible";
  });
}

// Client-side navigation (a reload would sign out: tokens live in memory).
async function navigate(page, path) {
  await page.evaluate((p) => {
    window.history.pushState({}, "", p);
    window.dispatchEvent(new PopStateEvent("popstate"));
  }, path);
}

// What has the keyboard focus: its accessible text and whether a focus indicator shows (an
// outline at least 2 px wide, or a box shadow).
async function focused(page) {
  return page.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body) return { text: "", id: "", ring: false };
    const st = getComputedStyle(e);
    const outline = st.outlineStyle !== "none" && parseFloat(st.outlineWidth) >= 2;
    return {
      text: (e.getAttribute("aria-label") || e.textContent || "").trim(),
      id: e.id,
      tag: e.tagName.toLowerCase(),
      ring: outline || (st.boxShadow !== "none" && st.boxShadow !== ""),
      outline: `${st.outlineStyle} ${st.outlineWidth} ${st.outlineColor}`,
    };
  });
}

// Tab (or Shift+Tab) until the focused element matches; fails after max presses.
async function tabTo(page, match, { back = false, max = 40 } = {}) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(back ? "Shift+Tab" : "Tab");
    const f = await focused(page);
    if (typeof match === "function" ? match(f) : f.text === match || f.id === match) return f;
  }
  throw new Error(`assertion failed: ${String(match)} not reached with ${back ? "Shift+" : ""}Tab`);
}

async function waitStatus(id, status, api = apiJson) {
  for (let i = 0; i < 300; i++) {
    const r = await api("GET", `/api/content/items/${id}`);
    if (r.json?.status === status) return r.json;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`assertion failed: item ${id} never reached ${status}`);
}

// ---------------------------------------------------------------- tests

test("app_is_served_with_spa_fallback_and_cache_headers", async ({ page }) => {
  const res = await page.goto(`${base()}/content/not-a-real-route-but-an-app-route`);
  assert(res.status() === 200, `index.html for an app route, got ${res.status()}`);
  assert(res.headers()["cache-control"] === "no-cache", "index.html is no-cache");
  const asset = await page.evaluate(() => document.querySelector("script[type=module]")?.getAttribute("src"));
  assert(asset && asset.startsWith("/assets/"), `hashed asset ${asset}`);
  const a = await fetch(base() + asset);
  assert(a.headers.get("cache-control") === "public, max-age=31536000, immutable", "assets are immutable");
  assert(/javascript/.test(a.headers.get("content-type") ?? ""), "JavaScript content type");
  // no auth service here: the banner says so, and the app still works
  await page.getByTestId("no-auth-banner").waitFor();
  const api404 = await fetch(`${base()}/api/nothing-here`);
  assert(api404.status === 404 && api404.headers.get("content-type") === "application/problem+json", "API paths never fall back");
});

test("brief_generates_live_then_edit_and_approve", async ({ page }) => {
  await page.goto(`${base()}/content`);
  await page.evaluate(() => (window.__sameDocument = true)); // gone if the page ever reloads
  await page.getByRole("link", { name: "New brief" }).first().click();
  await page.getByLabel("Title").fill(`Solar in 2026 ${uniq}`);
  await page.getByLabel("Kind").selectOption("article");
  await page.getByLabel("Topic").fill("solar power");
  await page.getByLabel("Source 1").fill(SOURCES[0]);
  for (let i = 1; i < SOURCES.length; i++) {
    await page.getByRole("button", { name: "Add a source text" }).click();
    await page.getByLabel(`Source ${i + 1}`).fill(SOURCES[i]);
  }
  await shot(page, "new-brief");
  const t0 = Date.now();
  await page.getByRole("button", { name: "Create and generate" }).click();
  await page.waitForURL(/\/content\/[0-9a-f-]{36}$/);
  const id = page.url().split("/").pop();
  const t1 = Date.now();
  // the live stream is connected, and the item reaches "generated" without a reload
  await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
  const t2 = Date.now();
  await page.locator(".badge", { hasText: /^generated$/ }).waitFor({ timeout: 60_000 });
  console.log(`    created after ${t1 - t0} ms, live after ${t2 - t0} ms, generated after ${Date.now() - t0} ms`);
  const draft = page.getByLabel("Draft");
  const body = await draft.inputValue();
  assert(body.includes("Solar"), `a generated draft, got ${JSON.stringify(body.slice(0, 80))}`);
  const history = await page.getByTestId("history").innerText();
  assert(/generated \(version/.test(history), `the status change came live: ${history}`);
  await shot(page, "content-detail");
  // edit and save (If-Match), then approve
  await draft.fill(`${body}\n\nEdited in the browser ${uniq}.`);
  await page.getByRole("button", { name: "Save draft" }).click();
  await page.getByRole("button", { name: "Save draft" }).and(page.locator(":disabled")).waitFor();
  await page.getByRole("button", { name: "Approve" }).click();
  await page.locator(".badge", { hasText: /^approved$/ }).waitFor({ timeout: 10_000 });
  assert((await page.getByRole("button", { name: "Approve" }).count()) === 0, "approved: no approve button");
  assert(await page.evaluate(() => window.__sameDocument === true), "the page was never reloaded");
  const it = await apiJson("GET", `/api/content/items/${id}`);
  assert(it.json.status === "approved", `API says ${it.json.status}`);
  assert(it.json.body.includes(`Edited in the browser ${uniq}.`), "the edit was saved");
});

test("stale_edit_shows_the_problem_detail", async ({ page }) => {
  const c = await apiJson("POST", "/api/content/items", {
    title: `Draft ${uniq}`,
    kind: "social",
    sources: [{ text: SOURCES[0] }],
    generate: false,
  });
  assert(c.status === 201, `created ${c.status}`);
  await page.goto(`${base()}/content/${c.json.id}`);
  await page.getByLabel("Draft").fill("My edit");
  // someone else edits meanwhile: our If-Match is stale
  const other = await fetch(`${base()}/api/content/items/${c.json.id}`, {
    method: "PATCH",
    headers: { "content-type": "application/json", "if-match": `"${c.json.version}"` },
    body: JSON.stringify({ body: "Their edit" }),
  });
  assert(other.status === 200, `other edit ${other.status}`);
  await page.getByRole("button", { name: "Save draft" }).click();
  const alert = page.getByRole("alert").filter({ hasText: "Saving failed" });
  await alert.waitFor();
  assert(/412/.test(await alert.innerText()), `the 412 problem is shown: ${await alert.innerText()}`);
  const it = await apiJson("GET", `/api/content/items/${c.json.id}`);
  assert(it.json.body === "Their edit", `their edit stands: ${it.json.body}`);
  await page.getByRole("button", { name: "Discard my edit and show the latest" }).click();
  assert((await page.getByLabel("Draft").inputValue()) === "Their edit", "the latest body is shown");
});

test("regenerate_archive_and_the_history_from_the_server", async ({ page }) => {
  const c = await apiJson("POST", "/api/content/items", { title: `Regenerate ${uniq}`, kind: "article", sources: SOURCES.map((text) => ({ text })) });
  assert(c.status === 201, `created ${c.status}`);
  const id = c.json.id;
  await waitStatus(id, "generated");
  await page.goto(`${base()}/content/${id}`);
  await page.evaluate(() => (window.__sameDocument = true));
  await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
  const history = page.getByTestId("history");
  await history.getByText(/generated \(version 2\)/).waitFor();
  // regenerate: a new job, generating then generated again, live
  await page.getByRole("button", { name: "Regenerate" }).click();
  await history.getByText(/generating \(version 3\), was generated/).waitFor({ timeout: 20_000 });
  await history.getByText(/generated \(version 4\)/).waitFor({ timeout: 60_000 });
  await page.locator(".badge", { hasText: /^generated$/ }).waitFor();
  // archive, after confirming: no action is left
  let asked = "";
  page.once("dialog", (d) => {
    asked = d.message();
    void d.accept();
  });
  await page.getByRole("button", { name: "Archive" }).click();
  await page.locator(".badge", { hasText: /^archived$/ }).waitFor({ timeout: 10_000 });
  assert(/cannot be edited/.test(asked), `archiving asks first: ${asked}`);
  assert((await page.getByTestId("edit-controls").getByRole("button").count()) === 0, "an archived item has no actions");
  assert(await page.getByLabel("Draft").evaluate((e) => e.readOnly), "an archived draft is read-only");
  assert(await page.evaluate(() => window.__sameDocument === true), "the page was never reloaded");
  assert((await apiJson("GET", `/api/content/items/${id}`)).json.status === "archived", "the API says archived");
  // after a reload the history is the server's, whole and in order
  await page.reload();
  await history.getByText(/archived \(version 5\)/).waitFor();
  const text = await history.innerText();
  const order = ["created: generating (version 1)", "generated (version 2)", "generating (version 3)", "generated (version 4)", "archived (version 5)"].map((t) => text.indexOf(t));
  assert(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1])), `the history, in order: ${text}`);
  assert(/composing 75%/.test(text), `the stages too: ${text}`);
  assert((await history.locator("[data-live]").count()) === 0, "every entry is the server's");
});

test("a_dropped_stream_resumes_with_last_event_id", async ({ page }) => {
  const c = await apiJson("POST", "/api/content/items", { title: `Resume ${uniq}`, kind: "social", sources: [{ text: SOURCES[2] }], generate: false });
  assert(c.status === 201, `created ${c.status}`);
  const id = c.json.id;
  const since = `t${Date.now()}`;
  const stream = new RegExp(`/api/realtime/events\\?channels=content%3A${id}`);
  const resumedWith = new Promise((res) =>
    page.on("request", async (req) => {
      if (!stream.test(req.url())) return;
      const h = await req.allHeaders();
      if (h["last-event-id"]) res(h["last-event-id"]);
    }),
  );
  // The page's first stream gives one position and ends, as a dropped connection does; the
  // item is edited while it is down. The browser comes back by itself with Last-Event-ID, and
  // realtime replays what was missed.
  await page.route(
    stream,
    async (route) => {
      const e = await fetch(`${base()}/api/content/items/${id}`, {
        method: "PATCH",
        headers: { "content-type": "application/json", "if-match": '"1"' },
        body: JSON.stringify({ body: `Edited while the stream was down ${uniq}` }),
      });
      assert(e.status === 200, `edit ${e.status}`);
      await route.fulfill({ status: 200, headers: { "content-type": "text/event-stream", "cache-control": "no-cache" }, body: `retry: 1000\nid: ${since}\n\n` });
    },
    { times: 1 },
  );
  await page.goto(`${base()}/content/${id}`);
  await page.evaluate(() => (window.__sameDocument = true));
  const sent = await Promise.race([resumedWith, new Promise((res) => setTimeout(() => res(null), 20_000))]);
  assert(sent === since, `the reconnect sent Last-Event-ID ${since}, got ${sent}`);
  // the replayed event (realtime's id, not the one the dropped stream gave)
  await page.waitForFunction(
    (t) => {
      const v = document.querySelector("[data-testid=live]")?.getAttribute("data-last-event-id") ?? "";
      return v !== "" && v !== t;
    },
    since,
    { timeout: 20_000 },
  );
  const last = await page.getByTestId("live").getAttribute("data-last-event-id");
  assert(/^t\d+\.c\d+:\d+/.test(last), `a content event was replayed: ${last}`);
  await page.getByTestId("live").filter({ hasText: /^live$/ }).waitFor();
  assert((await page.getByLabel("Draft").inputValue()).includes("Edited while the stream was down"), "the edit shows");
  await page.getByTestId("history").getByText(/draft edited \(version 2\)/).waitFor();
  assert(await page.evaluate(() => window.__sameDocument === true), "the page was never reloaded");
});

test("a_failed_generation_shows_its_reason", async ({ page }) => {
  // a second content-manager whose briefs name a provider the ai-processor does not have
  const port = await freePort();
  const other = await startService("content-manager-other-provider", port, { ...cmEnv, GENERATION_PROVIDER: "elsewhere" }, "/readyz", "content-manager");
  try {
    const r = await fetch(`http://127.0.0.1:${port}/api/content/items`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: `Fails ${uniq}`, kind: "article", sources: [{ text: SOURCES[0] }] }),
    });
    assert(r.status === 201, `created ${r.status}`);
    const { id } = await r.json();
    await page.goto(`${base()}/content/${id}`);
    const alert = page.getByRole("alert").filter({ hasText: "Generation failed" });
    await alert.waitFor({ timeout: 60_000 });
    assert(/elsewhere/.test(await alert.innerText()), `the reason: ${await alert.innerText()}`);
    await page.getByTestId("history").getByText(/failed \(version 2\), was generating: .*elsewhere/).waitFor();
    await page.getByRole("button", { name: "Regenerate" }).waitFor(); // a failed item can be tried again
  } finally {
    assert((await stopService(other)) === 0, "the second content-manager exits 0");
  }
});

test("content_list_filters_and_load_more", async ({ page }) => {
  const tag = `page${uniq}`;
  for (let i = 0; i < 23; i++) {
    const r = await apiJson("POST", "/api/content/items", {
      title: `${tag} item ${i}`,
      kind: i % 2 ? "newsletter" : "article",
      sources: [{ text: SOURCES[i % 3] }],
      generate: false,
    });
    assert(r.status === 201, `create ${r.status}`);
  }
  await page.goto(`${base()}/content`);
  await page.getByLabel("Search titles").fill(tag);
  await page.waitForURL(new RegExp(`q=${tag}`));
  const rows = page.locator("table.list tbody tr");
  await page.waitForFunction(() => document.querySelectorAll("table.list tbody tr").length === 20);
  await page.getByRole("button", { name: "Load more" }).click();
  await page.waitForFunction(() => document.querySelectorAll("table.list tbody tr").length === 23);
  assert((await page.getByRole("button", { name: "Load more" }).count()) === 0, "no more pages");
  await page.getByLabel("Kind").selectOption("newsletter");
  await page.waitForFunction(() => document.querySelectorAll("table.list tbody tr").length === 11);
  assert((await rows.first().innerText()).includes("newsletter"), "kind filter");
  await page.getByLabel("Status").selectOption("approved");
  await page.getByText("Nothing matches these filters").waitFor();
});

test("system_page_shows_each_upstreams_readiness", async ({ page }) => {
  await page.goto(`${base()}/content`); // some proxied traffic for the metrics table
  await page.getByRole("link", { name: "System" }).click();
  const checks = page.getByTestId("checks");
  await checks.waitFor();
  for (const svc of ["content-manager", "ai-processor", "realtime"])
    await checks.locator(`li.ok[data-service="${svc}"]`).waitFor();
  await checks.locator('li.bad[data-service="scraper"]').waitFor();
  assert((await page.getByTestId("ready-status").innerText()) === "not ready", "overall not ready");
  await page.getByTestId("routes").locator("td code", { hasText: "/api/content" }).first().waitFor();
  await shot(page, "system");
});

test("sources_and_subscribers_say_the_service_is_not_there", async ({ page }) => {
  await page.goto(`${base()}/sources`);
  await page.getByText("The scraper service is not available yet").waitFor();
  assert(/502/.test(await page.locator(".empty").innerText()), "names what the API answered");
  await page.getByRole("link", { name: "Subscribers" }).click();
  await page.getByText("The subscriber-manager service is not available yet").waitFor();
});

test("viewer_sees_no_edit_controls", async ({ page }) => {
  // The auth API (subscriber-manager) is still being written: it is played here, in the
  // browser, by the documented contract; everything else is the real stack.
  const c = await apiJson("POST", "/api/content/items", {
    title: `Viewer ${uniq}`,
    kind: "article",
    sources: [{ text: SOURCES[1] }],
    generate: false,
  });
  let signedIn = false;
  await page.route("**/api/auth/**", async (route) => {
    const url = new URL(route.request().url());
    const json = (status, body) => route.fulfill({ status, contentType: status < 400 ? "application/json" : "application/problem+json", body: JSON.stringify(body) });
    if (url.pathname === "/api/auth/login") {
      const b = route.request().postDataJSON();
      if (b.password !== "correct horse") return json(401, { type: "about:blank", title: "Unauthorized", status: 401, detail: "wrong email or password" });
      signedIn = true;
      return json(200, { access_token: "a1", refresh_token: "r1", expires_in: 900 });
    }
    if (url.pathname === "/api/auth/me") {
      const ok = signedIn && route.request().headers().authorization === "Bearer a1";
      return ok ? json(200, { email: "viewer@example.test", role: "viewer" }) : json(401, { type: "about:blank", title: "Unauthorized", status: 401 });
    }
    return json(204, {});
  });
  await page.goto(`${base()}/content`);
  await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
  await page.getByLabel("Email").fill("viewer@example.test");
  await page.getByLabel("Password").fill("wrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("wrong email or password").waitFor();
  await page.getByLabel("Password").fill("correct horse");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("role").filter({ hasText: "viewer" }).waitFor();
  await page.getByRole("heading", { name: "Content", exact: true }).waitFor();
  assert((await page.getByRole("link", { name: "New brief" }).count()) === 0, "a viewer gets no New brief");
  await page.goto(`${base()}/content/${c.json.id}`); // a reload signs out: tokens live in memory
  await page.getByLabel("Email").fill("viewer@example.test");
  await page.getByLabel("Password").fill("correct horse");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByLabel("Draft").waitFor();
  assert((await page.getByTestId("edit-controls").count()) === 0, "a viewer gets no edit controls");
  assert(await page.getByLabel("Draft").evaluate((e) => e.readOnly), "the draft is read-only");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
});

test("phone_width_has_no_horizontal_scroll", async ({ page }) => {
  await page.setViewportSize(PHONE);
  for (const path of ["/content", "/content/new", "/system"]) {
    await page.goto(base() + path);
    await page.locator("main h1").first().waitFor();
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= PHONE.width, `${path}: ${w}px wide at ${PHONE.width}px`);
  }
  // keyboard: the skip link is the first stop and shows itself
  await page.keyboard.press("Tab");
  assert((await page.evaluate(() => document.activeElement?.textContent)) === "Skip to content", "skip link first");
});

test("keyboard_only_navigation_and_a_primary_action", async ({ page }) => {
  await page.goto(`${base()}/content`);
  await page.getByRole("heading", { name: "Content", exact: true }).waitFor();
  const ring = (f) => assert(f.ring, `a visible focus indicator on ${f.tag} "${f.text}": ${f.outline}`);
  let f = await tabTo(page, "Skip to content", { max: 1 });
  ring(f);
  const box = await page.locator(".skip").boundingBox();
  assert(box && box.x >= 0 && box.y >= 0, "the focused skip link is on screen");
  // the main navigation
  ring(await tabTo(page, "Content", { max: 3 }));
  ring(await tabTo(page, "System", { max: 5 }));
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/system$/);
  await page.getByRole("heading", { name: "System", exact: true }).waitFor();
  assert(await page.evaluate(() => document.activeElement?.id === "main"), "focus moves to the new page");
  ring(await tabTo(page, "Content", { back: true, max: 10 }));
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/content$/);
  // a primary action: a new brief, created and approved with the keyboard alone
  ring(await tabTo(page, "New brief", { max: 15 }));
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "New brief", exact: true }).waitFor();
  ring(await tabTo(page, "b-title", { max: 5 }));
  await page.keyboard.type(`Keyboard ${uniq}`);
  ring(await tabTo(page, "b-src-0", { max: 10 }));
  await page.keyboard.type(SOURCES[1]);
  ring(await tabTo(page, "Create and generate", { max: 10 }));
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/content\/[0-9a-f-]{36}$/);
  await page.locator(".badge", { hasText: /^generated$/ }).waitFor({ timeout: 60_000 });
  ring(await tabTo(page, "Approve", { max: 15 }));
  await page.keyboard.press("Space");
  await page.locator(".badge", { hasText: /^approved$/ }).waitFor({ timeout: 10_000 });
});

// ---------------------------------------------------------------- Sources and Subscribers (full stack)

test(
  "sources_register_a_feed_and_see_items_arrive_live",
  async ({ page }) => {
    page.on("dialog", (d) => void d.accept());
    await signIn(page, "/sources", full.admin.email, full.admin.password);
    await page.getByRole("heading", { name: "Sources", exact: true }).waitFor();
    await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await page.evaluate(() => (window.__sameDocument = true));
    const feed = `http://127.0.0.1:${full.site}/feed.xml`;
    await page.getByRole("button", { name: "Register a source" }).click();
    // the server's problem+json field errors show at their fields
    await page.getByLabel("URL", { exact: true }).fill(feed);
    await page.getByLabel("Kind", { exact: true }).selectOption("feed");
    await page.getByLabel("Name (optional)", { exact: true }).fill(`Test site ${uniq}`);
    await page.getByLabel("Every", { exact: true }).fill("60d");
    await page.getByLabel("Max items a run", { exact: true }).fill("200000");
    await page.getByLabel(/Start paused/).check();
    await page.getByRole("button", { name: "Register", exact: true }).click();
    await page.getByTestId("err-max_items").waitFor();
    assert(/100000/.test(await page.getByTestId("err-max_items").innerText()), "max_items error at its field");
    assert(/30 days/.test(await page.getByTestId("err-interval").innerText()), "interval error at its field");
    assert(/source is not valid/.test(await page.getByRole("alert").first().innerText()), "the problem's detail");
    await page.getByLabel("Every", { exact: true }).fill("1h");
    await page.getByLabel("Max items a run", { exact: true }).fill("20");
    await page.getByRole("button", { name: "Register", exact: true }).click();
    const row = page.locator("tr", { hasText: `Test site ${uniq}` });
    await row.waitFor();
    assert(/paused/.test(await row.innerText()), "registered paused");
    // its page: run it, and watch the run and the items come in over SSE
    await row.getByRole("link", { name: `Test site ${uniq}` }).click();
    await page.getByRole("heading", { name: `Test site ${uniq}` }).waitFor();
    await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await page.getByText("No items yet").waitFor();
    const t0 = Date.now();
    await page.getByRole("button", { name: /^Run now / }).click();
    await page.getByTestId("run-state").filter({ hasText: "finished" }).waitFor({ timeout: 60_000 });
    console.log(`    run finished after ${Date.now() - t0} ms`);
    const state = await page.getByTestId("run-state").innerText();
    assert(/new 2/.test(state), `the run's counts: ${state}`);
    const liveEvents = Number(await page.getByTestId("run-state").getAttribute("data-live-events"));
    assert(liveEvents >= 2, `the run's state came over SSE (${liveEvents} scrape.run events)`);
    const items = page.getByTestId("scraped-items");
    await items.getByText("Lighthouse Lamp Restored").waitFor();
    await items.getByText("Orchestra Moves Into the Restored Market Hall").waitFor();
    assert((await page.getByTestId("runs").locator("tbody tr").count()) === 1, "one run in the history");
    assert(await page.evaluate(() => window.__sameDocument === true), "the page was never reloaded");
    await shot(page, "source-detail");
    // an item, then into a new brief
    await items.getByRole("button", { name: "Lighthouse Lamp Restored" }).click();
    await page.getByTestId("item-view").getByText("lit again at dusk", { exact: false }).waitFor();
    await page.getByRole("link", { name: "Use in a new brief" }).click();
    await page.getByRole("heading", { name: "New brief", exact: true }).waitFor();
    const picked = page.getByTestId("scraped-picker").getByLabel("Lighthouse Lamp Restored", { exact: true });
    await picked.waitFor();
    assert(await picked.isChecked(), "the item is picked in the new brief");
    // the list shows the run live too; then delete the source
    await page.getByRole("link", { name: "Sources" }).click();
    const row2 = page.locator("tr", { hasText: `Test site ${uniq}` });
    await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await row2.getByRole("button", { name: /^Run now / }).click(); // a second run: nothing new
    await row2.getByTestId("run-state").filter({ hasText: "finished" }).waitFor({ timeout: 60_000 });
    const again = await row2.getByTestId("run-state").innerText();
    assert(/new 0/.test(again), `the second run finds nothing new: ${again}`);
    await shot(page, "sources");
    await row2.getByRole("button", { name: /^Delete / }).click();
    await row2.waitFor({ state: "detached" });
  },
  { full: true },
);

// 400 rows, 4 bad ones: a bad address, a bad status, a wrong field count, a duplicate
function importCsv(tag) {
  const rows = ["email,name,city,status"];
  for (let i = 1; i <= 400; i++) {
    if (i === 7) rows.push(`not-an-address-${i},Bad ${i},Paris,active`);
    else if (i === 150) rows.push(`p${i}-${tag}@example.test,Bad ${i},Paris,sleeping`);
    else if (i === 222) rows.push(`p${i}-${tag}@example.test,too,many,fields,here`);
    else if (i === 300) rows.push(`p1-${tag}@example.test,Duplicate,Paris,active`);
    else rows.push(`p${i}-${tag}@example.test,Person ${i},${i % 4 === 0 ? "Paris" : "Lyon"},active`);
  }
  return rows.join("\n") + "\n";
}

test(
  "subscribers_import_csv_with_progress_and_error_rows",
  async ({ page }) => {
    const tag = uniq.toLowerCase();
    await signIn(page, "/subscribers", full.admin.email, full.admin.password);
    await page.getByText("No subscribers yet").waitFor();
    // a list to import into
    await page.getByRole("navigation", { name: "Subscribers" }).getByRole("link", { name: "Lists" }).click();
    await page.getByText("No lists yet").waitFor();
    await page.getByLabel("Name", { exact: true }).fill(`Readers ${tag}`);
    await page.getByRole("button", { name: "Create list" }).click();
    await page.getByTestId("lists").getByText(`Readers ${tag}`).waitFor();
    // the import
    await page.getByRole("navigation", { name: "Subscribers" }).getByRole("link", { name: "Import" }).click();
    await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    await page.getByLabel("CSV file", { exact: true }).setInputFiles({ name: "people.csv", mimeType: "text/csv", buffer: Buffer.from(importCsv(tag)) });
    await page.getByTestId("rows-in-file").filter({ hasText: "400 rows" }).waitFor();
    await page.getByLabel("Add to list", { exact: true }).selectOption({ label: `Readers ${tag}` });
    // the progress bar's values as they change
    await page.evaluate(() => {
      window.__progress = [];
      new MutationObserver(() => {
        const v = document.querySelector("[data-testid=import-progress] [role=progressbar]")?.getAttribute("aria-valuenow");
        if (v && window.__progress.at(-1) !== v) window.__progress.push(v);
      }).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    await page.getByRole("button", { name: "Import", exact: true }).click();
    const card = page.getByTestId("import-progress");
    await card.getByRole("heading", { name: /Import done/ }).waitFor({ timeout: 60_000 });
    const bar = card.getByRole("progressbar");
    assert((await bar.getAttribute("aria-valuenow")) === "100", "the bar is full");
    const counts = await page.getByTestId("import-counts").innerText();
    assert(/inserted 396/.test(counts) && /failed 4/.test(counts), `counts: ${counts}`);
    const live = Number(/(\d+) live updates/.exec(counts)?.[1] ?? 0);
    const seen = await page.evaluate(() => window.__progress);
    console.log(`    ${live} progress events over SSE; bar values ${seen.join(",")}`);
    assert(live >= 2, `progress came live (${live} events)`);
    // the per-row error report, with each row's text from the file
    const errs = page.getByTestId("import-errors");
    await errs.waitFor();
    const rows = errs.locator("tbody tr");
    assert((await rows.count()) === 4, `4 error rows, got ${await rows.count()}`);
    const text = await errs.innerText();
    for (const r of ["not-an-address-7", "sleeping", "too,many,fields", "Duplicate"]) assert(text.includes(r), `error report shows ${r}: ${text}`);
    assert((await rows.first().locator("td").first().innerText()) === "7", "rows in order, numbered from the first data row");
    await shot(page, "subscribers-import", true);
    // the people: exact search, then one of them decrypted
    await page.getByRole("navigation", { name: "Subscribers" }).getByRole("link", { name: "People" }).click();
    await page.getByLabel("E-mail address (exact)", { exact: true }).fill(`P12-${tag}@EXAMPLE.test`);
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByTestId("subscribers").locator("tbody tr").first().waitFor();
    assert((await page.getByTestId("subscribers").locator("tbody tr").count()) === 1, "exact match");
    await page.getByRole("link", { name: `p12-${tag}@example.test` }).click();
    const sub = page.getByTestId("subscriber");
    await sub.getByText("Person 12").waitFor();
    assert((await sub.innerText()).includes(`Readers ${tag}`), "its list");
    // lists count; a segment with a live count; export
    await page.getByRole("navigation", { name: "Subscribers" }).getByRole("link", { name: "Lists" }).click();
    const listRow = page.getByTestId("lists").locator("tr", { hasText: `Readers ${tag}` });
    await listRow.locator("td.num", { hasText: "396" }).waitFor();
    await listRow.getByRole("button", { name: /^Export/ }).click();
    await listRow.getByTestId("export-link").waitFor();
    await page.getByRole("navigation", { name: "Subscribers" }).getByRole("link", { name: "Segments" }).click();
    await page.getByText("No segments yet").waitFor();
    await page.getByRole("button", { name: "Add a condition" }).click();
    await page.getByLabel("Field", { exact: true }).nth(1).selectOption("attribute");
    await page.getByLabel("Attribute", { exact: true }).fill("city");
    await page.getByLabel("Value", { exact: true }).nth(1).fill("Paris");
    // active and city = Paris: every fourth row (p4, p8, ... p400) but the duplicate at 300
    await page.getByTestId("live-count").filter({ hasText: "99 subscribers match" }).waitFor();
    await page.getByLabel("Value", { exact: true }).nth(1).fill("");
    await page.getByLabel("Value", { exact: true }).nth(1).fill("Lyon");
    await page.getByTestId("live-count").filter({ hasText: "297 subscribers match" }).waitFor();
    await page.getByLabel("Segment name", { exact: true }).fill(`Lyon ${tag}`);
    await page.getByRole("button", { name: "Save segment" }).click();
    await page.getByTestId("segments").locator("tr", { hasText: `Lyon ${tag}` }).locator("td.num", { hasText: "297" }).waitFor();
    await shot(page, "subscribers-segments", true);
  },
  { full: true },
);

test(
  "viewer_signs_in_for_real_and_sees_no_edit_controls",
  async ({ page }) => {
    const admin = await login(full.admin.email, full.admin.password);
    const viewer = { email: `viewer-${uniq}@example.test`.toLowerCase(), password: randomBytes(12).toString("base64url") };
    const u = await fullApi(admin, "POST", "/api/users", { email: viewer.email, name: "Viewer", role: "viewer", password: viewer.password });
    assert(u.status === 201, `viewer created: ${u.status} ${JSON.stringify(u.json)}`);
    // a wrong password shows the problem
    await page.goto(`${baseFull()}/sources`);
    await page.getByLabel("Email", { exact: true }).fill(viewer.email);
    await page.getByLabel("Password", { exact: true }).fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
    await page.getByLabel("Password", { exact: true }).fill(viewer.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByTestId("role").filter({ hasText: "viewer" }).waitFor();
    await page.getByRole("heading", { name: "Sources", exact: true }).waitFor();
    await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 20_000 }); // the token on the SSE URL
    assert((await page.getByRole("button", { name: "Register a source" }).count()) === 0, "no Register for a viewer");
    assert((await page.getByRole("button", { name: /^Run now/ }).count()) === 0, "no Run now for a viewer");
    await page.getByRole("link", { name: "Subscribers" }).click();
    await page.getByRole("navigation", { name: "Subscribers" }).getByRole("link", { name: "Lists" }).click();
    await page.getByRole("heading", { name: "Subscribers", exact: true }).waitFor();
    await page.waitForLoadState("networkidle");
    assert((await page.getByRole("button", { name: "Create list" }).count()) === 0, "no New list for a viewer");
    await page.getByRole("navigation", { name: "Subscribers" }).getByRole("link", { name: "Import" }).click();
    await page.getByText("Your role cannot import subscribers.").waitFor();
    // the access token (40 s here) is refreshed before it expires, without a word
    const refreshed = await page.waitForResponse((r) => r.url().endsWith("/api/auth/refresh"), { timeout: 40_000 });
    assert(refreshed.status() === 200, `silent refresh: ${refreshed.status()}`);
    await page.getByRole("link", { name: "Content", exact: true }).click();
    await page.getByRole("heading", { name: "Content", exact: true }).waitFor();
    assert((await page.getByTestId("role").innerText()) === "viewer", "still signed in");
    // sign out: back to the sign-in form, and the server has revoked the refresh token
    const logout = page.waitForRequest((r) => r.url().endsWith("/api/auth/logout"));
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
    const { refresh_token } = (await logout).postDataJSON();
    await new Promise((r) => setTimeout(r, 500)); // the logout's answer
    const again = await fetch(`${baseFull()}/api/auth/refresh`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refresh_token }) });
    assert(again.status === 401, `the signed-out refresh token is refused: ${again.status}`);
    // and the API agrees: the gateway refuses a viewer's write
    const tok = await login(viewer.email, viewer.password);
    const w = await fullApi(tok, "POST", "/api/lists", { name: "nope" });
    assert(w.status === 403, `a viewer's write is refused: ${w.status}`);
  },
  { full: true },
);

test(
  "sources_and_subscribers_at_phone_width",
  async ({ page }) => {
    await signIn(page, "/sources", full.admin.email, full.admin.password);
    await page.setViewportSize(PHONE);
    for (const path of ["/sources", "/subscribers", "/subscribers/lists", "/subscribers/segments", "/subscribers/import"]) {
      await page.getByRole("link", { name: path === "/sources" ? "Sources" : "Subscribers" }).first().click();
      if (path.split("/").length > 2)
        await page
          .getByRole("navigation", { name: "Subscribers" })
          .getByRole("link", { name: { lists: "Lists", segments: "Segments", import: "Import" }[path.split("/")[2]] })
          .click();
      await page.locator("main h1").first().waitFor();
      await page.waitForLoadState("networkidle");
      const w = await page.evaluate(() => document.documentElement.scrollWidth);
      assert(w <= PHONE.width, `${path}: ${w}px wide at ${PHONE.width}px`);
    }
  },
  { full: true },
);

test(
  "accessibility_axe_on_every_main_page_at_both_widths",
  async ({ page }) => {
    const admin = await login(full.admin.email, full.admin.password);
    const as = (m, p, b) => fullApi(admin, m, p, b);
    const c = await as("POST", "/api/content/items", { title: `Axe ${uniq}`, kind: "article", topic: "energy", sources: SOURCES.map((text) => ({ text })) });
    assert(c.status === 201, `item: ${c.status}`);
    await waitStatus(c.json.id, "generated", as);
    const src = await as("POST", "/api/scraper/sources", { url: `http://127.0.0.1:${full.site}/feed.xml`, kind: "feed", name: `Axe site ${uniq}`, interval: "1h", max_items: 20, paused: true });
    assert(src.status === 201, `source: ${src.status} ${JSON.stringify(src.json)}`);
    const main = (p) => p.locator("main h1").first().waitFor();
    const pages = [
      ["content list", "/content", (p) => p.locator("table.list tbody tr").first().waitFor()],
      ["content detail", `/content/${c.json.id}`, (p) => p.getByTestId("live").filter({ hasText: /^live$/ }).waitFor({ timeout: 20_000 })],
      ["new brief", "/content/new", main],
      ["sources", "/sources", (p) => p.locator("tr", { hasText: `Axe site ${uniq}` }).waitFor()],
      ["source", `/sources/${src.json.id}`, (p) => p.getByText("No runs yet").waitFor()],
      ["subscribers", "/subscribers", (p) => p.locator("[data-testid=subscribers], .empty").first().waitFor()],
      ["lists", "/subscribers/lists", (p) => p.locator("[data-testid=lists], .empty").first().waitFor()],
      ["segments", "/subscribers/segments", (p) => p.getByTestId("live-count").filter({ hasText: /match|Fix/ }).waitFor()],
      ["import", "/subscribers/import", (p) => p.getByTestId("live").filter({ hasText: /^live$/ }).waitFor({ timeout: 20_000 })],
      ["system", "/system", (p) => p.getByTestId("routes").waitFor()],
    ];
    const found = [];
    let checked = 0;
    let contrast = 0;
    const check = async (label) => {
      const r = await axeViolations(page, label);
      found.push(...r.lines);
      checked++;
      if (r.contrast) contrast++;
    };
    for (const vp of [WIDE, PHONE]) {
      await page.setViewportSize(vp);
      await page.goto(`${baseFull()}/content`);
      await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
      await check(`sign-in ${vp.width}px`);
      await page.getByLabel("Email").fill(full.admin.email);
      await page.getByLabel("Password").fill("not the password");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("alert").waitFor();
      await check(`sign-in refused ${vp.width}px`);
      await page.getByLabel("Password").fill(full.admin.password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByTestId("role").waitFor();
      for (const [name, path, ready] of pages) {
        await navigate(page, path);
        await ready(page);
        await check(`${name} ${vp.width}px`);
        if (vp === PHONE && (name === "content detail" || name === "lists")) await shot(page, `phone-${name.replace(/ /g, "-")}`);
        const w = await page.evaluate(() => document.documentElement.scrollWidth);
        if (w > vp.width) found.push(`${name} ${vp.width}px: ${w}px wide, it scrolls sideways (${await overflowing(page)})`);
      }
    }
    console.log(`    axe: ${checked} page states checked (color contrast on ${contrast}), ${found.length} serious or critical violations`);
    assert(found.length === 0, `accessibility:\n      ${found.join("\n      ")}`);
    await as("DELETE", `/api/scraper/sources/${src.json.id}`);
  },
  { full: true },
);

// The README's picture of the list: a few briefs in several states, newest first.
if (SHOTS)
  test("screenshot_of_the_content_list", async ({ page }) => {
    const briefs = [
      ["Solar in 2026: what changes for homeowners", "article", "approve"],
      ["Battery storage, explained", "article", "generate"],
      ["The grid's new midday peak", "social", "generate"],
      ["Weekly energy digest #12", "newsletter", "draft"],
      ["Heat pumps after the subsidy", "article", "archive"],
      ["Five numbers from the solar report", "social", "generate"],
    ];
    for (const [title, kind, what] of briefs) {
      const r = await apiJson("POST", "/api/content/items", {
        title,
        kind,
        topic: "energy",
        sources: SOURCES.map((text) => ({ text })),
        generate: what !== "draft",
      });
      if (what === "approve" || what === "archive") {
        let it = r.json;
        for (let i = 0; i < 50 && it.status === "generating"; i++) {
          await new Promise((res) => setTimeout(res, 100));
          it = (await apiJson("GET", `/api/content/items/${it.id}`)).json;
        }
        await apiJson("POST", `/api/content/items/${it.id}/${what}`);
      }
    }
    await page.setViewportSize({ width: 1280, height: 640 });
    await page.goto(`${base()}/content`);
    await page.getByText("Five numbers from the solar report").waitFor();
    await page.waitForTimeout(1500); // the generated ones settle (live refresh)
    await shot(page, "content-list");
  });

// ---------------------------------------------------------------- runner

function summary(passed, failed, skipped, failures) {
  console.log(`[==========] dashboard_browser: ${passed + failed + skipped} test(s) run.`);
  console.log(`[  PASSED  ] ${passed} test(s).`);
  if (skipped) console.log(`[  SKIPPED ] ${skipped} test(s).`);
  if (failed) {
    console.log(`[  FAILED  ] ${failed} test(s), listed below:`);
    for (const f of failures) console.log(`[  FAILED  ] ${f}`);
  }
}

async function main() {
  mkdirSync(LOGS, { recursive: true });
  const only = process.env.DASHBOARD_ONLY?.split(",").filter(Boolean);
  const selected = only ? tests.filter((t) => only.includes(t.name)) : tests;
  needFull = selected.some((t) => t.full);
  const missing = ["KAFKA_BROKERS", "CONTENT_MANAGER_DATABASE_URL", "AI_PROCESSOR_DATABASE_URL"].filter((v) => !process.env[v]);
  const why = missing.length
    ? `no ${missing.join(", ")} (run through make test)`
    : !existsSync(CHROMIUM)
      ? `no ${CHROMIUM} (scripts/install-deps.sh installs Debian's chromium)`
      : !existsSync(join(STATIC, "index.html"))
        ? `no ${STATIC}/index.html (make builds the dashboard)`
        : null;
  if (why) {
    console.log(`dashboard browser tests skipped: ${why}`);
    summary(0, 0, selected.length, []);
    return 0;
  }
  console.log(`[==========] Running ${selected.length} test(s).`);
  let passed = 0;
  let skipped = 0;
  const failures = [];
  let browser;
  try {
    await startStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    if (needFull && !full.ready) console.log(`Sources and Subscribers tests skipped: ${full.why}`);
    for (const t of selected) {
      console.log(`[ RUN      ] ${t.name}`);
      if (t.full && !full.ready) {
        console.log(`[  SKIPPED ] ${t.name}`);
        skipped++;
        continue;
      }
      const ctx = await browser.newContext({ viewport: WIDE });
      ctx.setDefaultTimeout(30_000); // a shared 2-core machine under make test
      const page = await ctx.newPage();
      const consoleErrors = [];
      page.on("pageerror", (e) => consoleErrors.push(String(e)));
      const t0 = Date.now();
      try {
        await t.fn({ page, ctx });
        assert(consoleErrors.length === 0, `uncaught errors in the page: ${consoleErrors.join("; ")}`);
        passed++;
        console.log(`[       OK ] ${t.name} (${Date.now() - t0} ms)`);
      } catch (e) {
        const png = join(LOGS, `dashboard-${t.name}.png`);
        await page.screenshot({ path: png, fullPage: true }).catch(() => {});
        console.log(`${e.stack ?? e}\n    at ${page.url()}; screenshot ${png}`);
        console.log(`[  FAILED  ] ${t.name}`);
        failures.push(t.name);
      }
      await ctx.close();
    }
  } catch (e) {
    console.log(`the stack did not start: ${e.stack ?? e}`);
    failures.push("stack_start");
  } finally {
    if (browser) await browser.close();
    const codes = await stopServices();
    await stopFullStack();
    const bad = Object.entries(codes).filter(([, c]) => c !== 0);
    if (bad.length) {
      console.log(`services did not exit 0 on SIGTERM: ${bad.map(([n, c]) => `${n} ${c}`).join(", ")} (logs var/log/tests/dashboard-*.log)`);
      failures.push("services_exit_0");
    }
    // a sanitizer report in a service's log fails the run, as scripts/test.sh does for tests
    for (const svc of services) {
      const log = join(LOGS, `dashboard-${svc.name}.log`);
      const text = existsSync(log) ? readFileSync(log, "utf8") : "";
      if (/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.test(text)) {
        console.log(`sanitizer report in ${log}`);
        failures.push(`sanitizer_${svc.name}`);
      }
    }
  }
  summary(passed, failures.length, skipped, failures);
  return failures.length ? 1 : 0;
}

process.exitCode = await main();
