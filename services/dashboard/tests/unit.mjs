#!/usr/bin/env node
// make test's runner for the vitest unit tests (installed as build/<variant>/tests/dashboard/
// test_unit): runs vitest in services/dashboard and prints cmocka's summary lines, which
// scripts/test.sh counts. Exit status: vitest's (non-zero when a test failed).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dash = join(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = mkdtempSync(join(tmpdir(), "dash-vitest-"));
const out = join(tmp, "report.json");
const r = spawnSync(
  process.execPath,
  [join(dash, "node_modules/vitest/vitest.mjs"), "run", "--reporter=default", "--reporter=json", `--outputFile.json=${out}`],
  { cwd: dash, stdio: "inherit", env: { ...process.env, CI: "1", NO_COLOR: "1" } },
);
let passed = 0;
let failed = 0;
const failures = [];
try {
  const rep = JSON.parse(readFileSync(out, "utf8"));
  for (const f of rep.testResults ?? [])
    for (const t of f.assertionResults ?? []) {
      if (t.status === "passed") passed++;
      else if (t.status === "failed") {
        failed++;
        failures.push(`${t.ancestorTitles.join(" > ")} > ${t.title}`);
      }
    }
} catch (e) {
  console.error(`no vitest report: ${e.message}`);
  failed = Math.max(failed, 1);
}
rmSync(tmp, { recursive: true, force: true });
console.log(`[==========] dashboard vitest: ${passed + failed} test(s) run.`);
console.log(`[  PASSED  ] ${passed} test(s).`);
if (failed) {
  console.log(`[  FAILED  ] ${failed} test(s), listed below:`);
  for (const f of failures) console.log(`[  FAILED  ] ${f}`);
}
process.exit(r.status === 0 && failed === 0 ? 0 : 1);
