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
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const DASH = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROOT = resolve(DASH, "../..");
const BUILD = process.env.CE_TEST_BUILD_DIR ?? join(ROOT, "build/asan");
const STATIC = process.env.GATEWAY_STATIC_DIR ?? join(ROOT, "build/dashboard");
const LOGS = join(ROOT, "var/log/tests");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.DASHBOARD_SCREENSHOTS;
const WIDE = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

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

async function startService(name, port, env, readyPath = "/readyz") {
  const log = join(LOGS, `dashboard-${name}.log`);
  const fd = openSync(log, "w");
  const child = spawn(join(BUILD, "bin", name), [], {
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

async function stopServices() {
  const codes = {};
  for (const s of [...services].reverse()) {
    if (s.exited === null) {
      s.child.kill("SIGTERM");
      const end = Date.now() + 30_000;
      while (s.exited === null && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      if (s.exited === null) {
        s.child.kill("SIGKILL");
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    codes[s.name] = s.exited;
  }
  return codes;
}

let gw = 0;
const base = () => `http://127.0.0.1:${gw}`;

async function startStack() {
  const brokers = process.env.KAFKA_BROKERS;
  const ports = { cm: await freePort(), ai: await freePort(), rt: await freePort(), gw: await freePort(), dead: await freePort() };
  const common = { KAFKA_BROKERS: brokers, ASAN_OPTIONS: "detect_leaks=1:abort_on_error=0" };
  await startService("content-manager", ports.cm, {
    ...common,
    DATABASE_URL: process.env.CONTENT_MANAGER_DATABASE_URL,
    MIGRATIONS_DIR: join(ROOT, "services/content-manager/migrations"),
  });
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

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
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
  await shot(page, "sources");
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
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByLabel("Email").fill("viewer@example.test");
  await page.getByLabel("Password").fill("wrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("wrong email or password").waitFor();
  await page.getByLabel("Password").fill("correct horse");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("role").filter({ hasText: "viewer" }).waitFor();
  await page.getByRole("heading", { name: "Content" }).waitFor();
  assert((await page.getByRole("link", { name: "New brief" }).count()) === 0, "a viewer gets no New brief");
  await page.goto(`${base()}/content/${c.json.id}`); // a reload signs out: tokens live in memory
  await page.getByLabel("Email").fill("viewer@example.test");
  await page.getByLabel("Password").fill("correct horse");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByLabel("Draft").waitFor();
  assert((await page.getByTestId("edit-controls").count()) === 0, "a viewer gets no edit controls");
  assert(await page.getByLabel("Draft").evaluate((e) => e.readOnly), "the draft is read-only");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
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
  const failures = [];
  let browser;
  try {
    await startStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    for (const t of selected) {
      console.log(`[ RUN      ] ${t.name}`);
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
  summary(passed, failures.length, 0, failures);
  return failures.length ? 1 : 0;
}

process.exitCode = await main();
