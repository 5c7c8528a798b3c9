#!/usr/bin/env bash
# The README's test command (`make test`): installs what is missing, builds the release and the
# sanitizer (ASan+UBSan) variants, runs every unit test, brings up Kafka and PostgreSQL if they
# are not running (and stops them again afterwards), runs every integration test, and ends with
# one line: "N passed, N failed".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JOBS="$(nproc 2>/dev/null || echo 2)"
TESTLOG="$ROOT/var/log/tests"
mkdir -p "$TESTLOG"

echo "==> installing missing packages"
scripts/install-deps.sh

echo "==> building (release) and (asan+ubsan)"
make -s -j"$JOBS" all
make -s -j"$JOBS" SAN=1 BUILD=build/asan tests

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
export CE_TEST_BUILD_DIR="$ROOT/build/asan"

passed=0
failed=0
skipped=0
failures=()

# Runs one cmocka test binary and adds its counts; a crash or sanitizer report with no failed
# assertion still counts as a failure of that binary.
run_test() {
    local bin="$1" name log rc start secs
    name="${bin#"$ROOT"/build/asan/tests/}"
    log="$TESTLOG/${name//\//_}.log"
    start=$(date +%s%N)
    set +e
    timeout --kill-after=10 900 "$bin" >"$log" 2>&1
    rc=$?
    set -e
    local ms=$((($(date +%s%N) - start) / 1000000))
    secs="$((ms / 1000)).$(((ms % 1000) / 100))"
    local p f s
    p=$(sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    s=$(sed -n 's/.*\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    p=${p:-0}; f=${f:-0}; s=${s:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if [ "$f" -gt 0 ]; then
        failures+=("$name")
        printf 'FAIL  %-40s %3d passed %3d failed  %6ss  (exit %d, log %s)\n' "$name" "$p" "$f" "$secs" "$rc" "${log#"$ROOT"/}"
        # (a log without any such line must not end the run: grep's status is ignored)
        { grep -E '\[  (FAILED|ERROR) +\]|ERROR: |runtime error:|[Ee]rror:|Assertion|SUMMARY' "$log" || true; } |
            head -n 30 | sed 's/^/      /'
    else
        printf 'ok    %-40s %3d passed %3d skipped %6ss\n' "$name" "$p" "$s" "$secs"
    fi
}

echo "==> lint (format, banned functions)"
if scripts/lint.sh >"$TESTLOG/lint.log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %-40s %3d passed\n' lint 1
else
    failed=$((failed + 1))
    failures+=(lint)
    printf 'FAIL  %-40s (log %s)\n' lint "var/log/tests/lint.log"
    sed 's/^/      /' "$TESTLOG/lint.log" | head -n 30 || true
fi

echo "==> unit tests"
for bin in $(find build/asan/tests -mindepth 2 -maxdepth 2 -type f -perm -u+x -path '*/test_*' | grep -v '/integration/' | sort); do
    run_test "$ROOT/$bin"
done

echo "==> infrastructure (Kafka, PostgreSQL)"
started_infra=0
if ! scripts/infra.sh status >/dev/null 2>&1; then
    scripts/infra.sh up
    started_infra=1
fi
stop_infra() {
    if [ "$started_infra" = 1 ]; then
        echo "==> stopping the infrastructure this run started"
        scripts/infra.sh down >/dev/null 2>&1 || true
    fi
}
trap stop_infra EXIT

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
# The environment services run with (the integration tests start the real binaries).
service_env

# The integration tests run the services in their real consumer groups on the real topics, so
# services left running by `make up` would take their messages. Pause those for the run and
# start them again at the end (scripts/up.sh starts only what is not running).
paused=()
for svc in $SERVICES; do
    if proc_running "$svc"; then
        paused+=("$svc")
    fi
done
if ((${#paused[@]} > 0)); then
    echo "==> pausing the services make up started (${paused[*]}): they share consumer groups with the tests"
    for svc in "${paused[@]}"; do
        proc_stop "$svc" 20 >/dev/null
    done
fi
finish() {
    stop_infra
    if ((${#paused[@]} > 0)); then
        echo "==> restarting the paused services"
        scripts/up.sh >"$TESTLOG/restart-services.log" 2>&1 ||
            echo "warning: restarting them failed; see ${TESTLOG#"$ROOT"/}/restart-services.log"
    fi
}
trap finish EXIT

export KAFKA_BROKERS="127.0.0.1:${CE_KAFKA_PORT}"
PLATFORM_TEST_DATABASE_URL="$(scripts/postgres.sh url platform_test)"
export PLATFORM_TEST_DATABASE_URL
# Each service's own role, for the tests that start the real service binaries:
# CONTENT_MANAGER_DATABASE_URL, AI_PROCESSOR_DATABASE_URL, ...
for svc in $SERVICES; do
    role="${svc//-/_}"
    export "${role^^}_DATABASE_URL=$(scripts/postgres.sh url "$role")"
done

echo "==> integration tests (real Kafka and PostgreSQL)"
for bin in $(find build/asan/tests/integration -maxdepth 1 -type f -perm -u+x 2>/dev/null | sort); do
    run_test "$ROOT/$bin"
done

if [ "${#failures[@]}" -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
