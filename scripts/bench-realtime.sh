#!/usr/bin/env bash
# `make bench`: the realtime service's memory per idle SSE connection, against the issue's goal
# (under 8 KB per connection) and Centrifugo's default (about 27 KB per connection).
#
# Builds, starts Kafka and PostgreSQL if they are not running (and stops them afterwards only
# then), starts one realtime instance on a free port with a raised fd limit, opens
# BENCH_SSE_CONNECTIONS (20000) idle SSE connections, each on an item channel of its own, with
# services/realtime/bench/idle_rss.py, lets them sit idle past one heartbeat (SSE_HEARTBEAT, 15 s
# by default), and reports the SERVER's VmRSS growth between no connection and all of them,
# divided by the number of connections (the client's own memory is not counted).
#
#   BENCH_SSE_CONNECTIONS (20000)  BENCH_SSE_IDLE_S (16: past the 15 s heartbeat)
#
# The server needs one descriptor per connection plus about 40 (Kafka, the listener, epoll): the
# script raises `ulimit -n` to 65536 where it may; where the hard limit is lower (a container
# without CAP_SYS_RESOURCE) it measures with as many connections as that limit allows and says
# so.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
service_env
cd "$ROOT"

N="${BENCH_SSE_CONNECTIONS:-20000}"
IDLE="${BENCH_SSE_IDLE_S:-16}"
GOAL_KB=8
CENTRIFUGO_KB=27

make -s -C "$ROOT" BUILD="$BUILD" all
RT="$BINDIR/realtime"
[[ -x "$RT" ]] || die "$RT was not built"

started_infra=0
if ! scripts/infra.sh status >/dev/null 2>&1; then
    scripts/infra.sh up
    started_infra=1
fi

rt_pid=""
rt_log="$(mktemp)"
cleanup() {
    if [[ -n "$rt_pid" ]] && kill -0 "$rt_pid" 2>/dev/null; then
        kill -TERM "$rt_pid" 2>/dev/null || true
        wait "$rt_pid" 2>/dev/null || true
    fi
    rm -f "$rt_log"
    if [[ "$started_infra" = 1 ]]; then scripts/infra.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# One descriptor per connection, plus the server's own (or the client's: stdio, /metrics).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fds="$(ulimit -n)"
if ((fds < N + 64)); then
    warn "the fd limit is $fds (hard limit; raising it needs CAP_SYS_RESOURCE): measuring $((fds - 100)) connections instead of $N"
    N=$((fds - 100))
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
KAFKA_BROKERS="$KAFKA_BOOTSTRAP" HTTP_HOST=127.0.0.1 HTTP_PORT="$port" SERVICE_NAME=realtime-bench \
    LOG_LEVEL=warn "$RT" >"$rt_log" 2>&1 &
rt_pid=$!

log "bench: $N idle SSE connections to realtime (pid $rt_pid, port $port), idle ${IDLE}s"
if ! out="$(python3 services/realtime/bench/idle_rss.py --pid "$rt_pid" --port "$port" --idle "$IDLE" "$N")"; then
    tail -n 20 "$rt_log" >&2 || true
    die "the realtime benchmark failed"
fi
printf '%s\n' "$out" | grep -v '^RESULT' | sed 's/^/    /'
result="$(printf '%s\n' "$out" | grep '^RESULT')"
kb="$(sed -n 's/.* kb_per_connection=\([0-9.]*\).*/\1/p' <<<"$result")"
conns="$(sed -n 's/.*RESULT connections=\([0-9]*\).*/\1/p' <<<"$result")"
[[ -n "$kb" ]] || die "no result from the client: $out"

printf '\n%-40s %10s %10s %12s\n' "server RSS per idle SSE connection" "KB" "goal KB" "Centrifugo"
printf '%-40s %10.2f %10d %12d\n' "realtime, $conns connections" "$kb" "$GOAL_KB" "$CENTRIFUGO_KB"
awk -v k="$kb" -v g="$GOAL_KB" -v c="$CENTRIFUGO_KB" 'BEGIN {
    printf "ratio to the goal: %.2f (under 1 meets it)   ratio to Centrifugo: %.2f (%.1fx less memory)\n", k / g, k / c, c / k
}'
echo "(command: make bench or scripts/bench-realtime.sh; server VmRSS delta between 0 and $conns" \
    "connections after ${IDLE}s idle, each client on its own item channel, HTTP/1.1, SSE_HEARTBEAT 15s)"
