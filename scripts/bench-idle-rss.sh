#!/usr/bin/env bash
# `make bench`: each service's resident memory at idle, against the issue's goal (8 MB or less).
#
# Builds, starts Kafka and PostgreSQL if they are not running (and stops them afterwards only
# then), then one service at a time: starts it the way scripts/up.sh does (service_env from
# scripts/lib.sh, its secrets from scripts/secrets.sh, KAFKA_BROKERS, its role's DATABASE_URL,
# SERVICE_NAME, MIGRATIONS_DIR) on a free port, waits for /readyz, lets it
# sit idle BENCH_IDLE_S seconds, reads /proc/<pid>/status (VmRSS; RssAnon: heap, stacks, private
# data; RssFile: the mapped binary and shared libraries) and /proc/<pid>/smaps_rollup (Pss: shared
# pages divided among the processes that map them; USS, Private_Clean + Private_Dirty: what only
# this process holds), stops it with SIGTERM and checks it exits 0.
# Services: content-manager, ai-processor, realtime, gateway, scraper, subscriber-manager (those
# built).
#
# Consumers join their service's real consumer group, like a second replica would: run it with
# `make up` stopped to measure without a rebalance, and with nothing unread on the topics the
# services consume: a lagging group is measured fetching, not idle (content-manager was 110 MB
# with 600 MB of scraper.items unread, which librdkafka prefetches up to
# queued.max.messages.kbytes, 64 MB by default).
#
#   BENCH_IDLE_S (5)   BENCH_IDLE_SERVICES (the six above)
#   BENCH_IDLE_ENV: extra NAME=value words for every service, to try a setting, e.g.
#   "GNUTLS_NO_IMPLICIT_INIT=0" (what service_env saves: README.md, "Service environment")
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

IDLE="${BENCH_IDLE_S:-5}"
LIST="${BENCH_IDLE_SERVICES:-content-manager ai-processor realtime gateway scraper subscriber-manager}"
GOAL_KB=$((8 * 1024))

make -s -C "$ROOT" BUILD="$BUILD" all
service_env

started_infra=0
if ! scripts/infra.sh status >/dev/null 2>&1; then
    scripts/infra.sh up
    started_infra=1
fi

svc_pid=""
svc_log="$(mktemp)"
cleanup() {
    if [[ -n "$svc_pid" ]] && kill -0 "$svc_pid" 2>/dev/null; then
        kill -TERM "$svc_pid" 2>/dev/null || true
        wait "$svc_pid" 2>/dev/null || true
    fi
    rm -f "$svc_log"
    if [[ "$started_infra" = 1 ]]; then scripts/infra.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# field FILE NAME: the number (kB) after "NAME:" in a /proc file; 0 when absent.
field() { awk -v k="$2:" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' "$1"; }

# measure NAME PID: appends NAME's row (VmRSS, RssAnon, RssFile, PSS, USS in MB, threads, the
# ratio to the goal) to rows and leaves VmRSS (kB) in last_rss.
measure() {
    local st="/proc/$2/status" sr="/proc/$2/smaps_rollup" anon file thr pss uss
    last_rss="$(field "$st" VmRSS)" anon="$(field "$st" RssAnon)" file="$(field "$st" RssFile)"
    thr="$(field "$st" Threads)" pss="$(field "$sr" Pss)"
    uss=$(($(field "$sr" Private_Clean) + $(field "$sr" Private_Dirty)))
    rows+=("$(printf '%-22s %8.1f %8.1f %8.1f %8.1f %8.1f %7d %7.2f' "$1" "$(bc -l <<<"$last_rss/1024")" \
        "$(bc -l <<<"$anon/1024")" "$(bc -l <<<"$file/1024")" "$(bc -l <<<"$pss/1024")" \
        "$(bc -l <<<"$uss/1024")" "$thr" "$(bc -l <<<"$last_rss/$GOAL_KB")")")
}

rows=() over=0 failed=()
for svc in $LIST; do
    bin="$BINDIR/$svc"
    if [[ ! -x "$bin" ]]; then
        note "$svc: not built ($bin), skipped"
        continue
    fi
    port="$(free_port)"
    url="$(scripts/postgres.sh url "$svc" 2>/dev/null)" || url="" # as up.sh; unused by some
    secrets_env="$(scripts/secrets.sh env "$svc")" || die "scripts/secrets.sh env $svc failed"
    : >"$svc_log"
    read -r -a extra <<<"${BENCH_IDLE_ENV:-}"
    # exec in the subshell: $! is the service's own pid
    (
        eval "$secrets_env"
        exec env ${extra[@]+"${extra[@]}"} KAFKA_BROKERS="$KAFKA_BOOTSTRAP" DATABASE_URL="$url" \
            SERVICE_NAME="$svc" HTTP_HOST=127.0.0.1 HTTP_PORT="$port" \
            MIGRATIONS_DIR="$ROOT/services/$svc/migrations" LOG_LEVEL=warn "$bin"
    ) >"$svc_log" 2>&1 &
    svc_pid=$!
    # The gateway is ready when its upstreams are, and none runs here: it is idle once it serves.
    probe=readyz
    [[ "$svc" != gateway ]] || probe=healthz
    ready=0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$svc_pid" 2>/dev/null || break
        if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/$probe" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.2
    done
    if ((!ready)); then
        warn "$svc did not become ready on port $port; its log:"
        tail -n 20 "$svc_log" >&2 || true
        kill -TERM "$svc_pid" 2>/dev/null || true
        wait "$svc_pid" 2>/dev/null || true
        svc_pid=""
        failed+=("$svc")
        continue
    fi
    sleep "$IDLE"
    measure "$svc" "$svc_pid"
    kill -TERM "$svc_pid" 2>/dev/null || true
    rc=0
    wait "$svc_pid" || rc=$?
    svc_pid=""
    if ((rc != 0)); then
        warn "$svc exited with $rc after SIGTERM"
        failed+=("$svc")
    fi
    ((last_rss <= GOAL_KB)) || over=1
done

# The floor: tests/programs/idle_floor.c holds one SCRAM connection to PostgreSQL (as
# content-manager's role) and one connected librdkafka producer, and nothing else. Every service
# on both holds at least this much.
floor="$BUILD/tests/programs/idle_floor"
if make -s -C "$ROOT" "$floor"; then
    : >"$svc_log"
    KAFKA_BROKERS="$KAFKA_BOOTSTRAP" DATABASE_URL="$(scripts/postgres.sh url content-manager)" \
        "$floor" >"$svc_log" 2>&1 &
    svc_pid=$!
    for ((i = 0; i < 300; i++)); do
        grep -q '^ready$' "$svc_log" 2>/dev/null && break
        kill -0 "$svc_pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q '^ready$' "$svc_log"; then
        sleep "$IDLE"
        measure "floor: libpq+rdkafka" "$svc_pid"
    else
        warn "idle_floor did not get ready: $(tail -n 3 "$svc_log")"
    fi
    kill -TERM "$svc_pid" 2>/dev/null || true
    wait "$svc_pid" 2>/dev/null || true
    svc_pid=""
else
    warn "tests/programs/idle_floor.c does not build: no floor row"
fi

printf '\n%-22s %8s %8s %8s %8s %8s %7s %7s\n' "idle, MB" "VmRSS" "RssAnon" "RssFile" "PSS" \
    "USS" "threads" "RSS/8MB"
printf '%s\n' "${rows[@]}"
echo "(goal: VmRSS <= 8 MB each, ratio <= 1; RssAnon = heap, stacks and private data; RssFile = the" \
    "binary and shared libraries, mostly shared with other processes (PSS divides them among" \
    "the processes mapping them, USS counts only the pages no other process maps); after" \
    "${IDLE}s idle past /readyz (gateway: /healthz); the floor row is a program that holds only a" \
    "libpq connection and a librdkafka producer: no service using both can go below it;" \
    "command: make bench or scripts/bench-idle-rss.sh)"
((over == 0)) || note "over the goal: see the RSS/8MB column"
((${#failed[@]} == 0)) || die "services that failed: ${failed[*]}"
