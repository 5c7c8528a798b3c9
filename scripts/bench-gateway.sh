#!/usr/bin/env bash
# `make bench` (BENCH_ONLY=gateway): the gateway's proxy path against Debian's nginx doing the
# same job, same load tool, same upstream, in one run.
#
#   upstream   one nginx server (its own instance, access log off) answering `return 200 "ok\n"`:
#              cheap, and identical for both proxies
#   nginx      the reference reverse proxy: Debian's nginx, worker_processes auto, an upstream
#              block with keepalive 64, proxy_http_version 1.1, Connection "", access_log to a
#              file under var/
#   gateway    build/bin/gateway with GATEWAY_ROUTES="/api/bench=bench;public" and
#              GATEWAY_PUBLIC_RATE=off: a public route without rate limiting, because nginx here
#              checks no token and limits nothing (the gateway's authorization is measured by
#              its unit tests, not here); its JSON access log
#              (stdout) redirected to a file under var/; twice: one process (the design brief's
#              model, GATEWAY_WORKERS=1) and GATEWAY_WORKERS=N (nginx's model; N = nginx's
#              worker count unless BENCH_GATEWAY_WORKERS says otherwise)
#   floor      tests/programs/proxy_floor.c: the cheapest proxy that still sends each request on
#              its own upstream exchange (raw epoll, each client connection paired with its own
#              upstream connection, bytes copied verbatim: no parsing, no headers, no log, no
#              timers). No real proxy can beat it on this machine, so floor/nginx is the ceiling
#              for the gateway's ratio here; it is printed next to the goal
#
# Each round runs wrk against the three (the order rotates between rounds so background noise
# hits all); the figures that count are the medians over the rounds: requests/s, p99 latency,
# CPU time per request of the proxy's processes, and the ratios gateway/nginx (the ratio of the
# medians, and the median of each round's ratio).
#
#   BENCH_ROUNDS (3)  BENCH_DURATION (10s)  BENCH_CONNECTIONS (64)  BENCH_THREADS (2)
#   BENCH_GATEWAY_WORKERS (nginx's worker count)
#   BENCH_PORT_BASE (18480: the upstream, nginx, the gateways and the floor use it, +1 ... +4)
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
service_env
cd "$ROOT" || exit 1

ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
BASE="${BENCH_PORT_BASE:-18480}"
UP_PORT="$BASE"
NGX_PORT=$((BASE + 1))
GW_PORT=$((BASE + 2))
GWN_PORT=$((BASE + 3))
FLOOR_PORT=$((BASE + 4))
DIR="$VAR/bench-gateway"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
PATH_UNDER_TEST="/api/bench/ok"

command -v wrk >/dev/null 2>&1 || die "wrk is not installed (Debian package wrk)"
[[ -x "$NGINX" ]] || die "nginx is not installed (Debian package nginx-light or nginx)"

# Everything, like the other benchmarks; when some other part of the tree does not build right
# now, the gateway alone is enough for this one.
if ! make -s -C "$ROOT" all; then
    warn "make all failed: building the gateway alone"
    make -s -C "$ROOT" "$BUILD/bin/gateway" || die "the gateway does not build"
fi
GATEWAY="$BINDIR/gateway"
[[ -x "$GATEWAY" ]] || die "$GATEWAY was not built"
FLOOR="$BUILD/tests/programs/proxy_floor"
make -s -C "$ROOT" "$FLOOR" || die "tests/programs/proxy_floor.c does not build"

for p in "$UP_PORT" "$NGX_PORT" "$GW_PORT" "$GWN_PORT" "$FLOOR_PORT"; do
    if port_listening "$p"; then die "port $p is in use (set BENCH_PORT_BASE)"; fi
done

rm -rf "$DIR"
mkdir -p "$DIR/up" "$DIR/nginx"

# ---------------------------------------------------------------- configuration

nginx_common() { # $1: prefix directory
    cat <<CONF
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
CONF
}

temp_paths() { # $1: prefix directory
    cat <<CONF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
CONF
}

{
    echo "worker_processes 1;"
    nginx_common "$DIR/up"
    echo "http {"
    temp_paths "$DIR/up"
    cat <<CONF
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { return 200 "ok\n"; }
    }
}
CONF
} >"$DIR/up/nginx.conf"

{
    echo "worker_processes auto;"
    nginx_common "$DIR/nginx"
    echo "http {"
    temp_paths "$DIR/nginx"
    cat <<CONF
    access_log $DIR/nginx/access.log;
    keepalive_requests 1000000;
    upstream bench { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
} >"$DIR/nginx/nginx.conf"

# ---------------------------------------------------------------- processes (all stopped on exit)

gw_pids=()
cleanup() {
    for pid in "${gw_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    for d in nginx up; do
        if [[ -s "$DIR/$d/nginx.pid" ]]; then
            "$NGINX" -q -p "$DIR/$d" -c "$DIR/$d/nginx.conf" -s stop 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT

"$NGINX" -q -p "$DIR/up" -c "$DIR/up/nginx.conf" || die "the upstream nginx did not start"
"$NGINX" -q -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" || die "the proxy nginx did not start"
wait_port "$CE_HOST" "$UP_PORT" 10 "the upstream nginx"
wait_port "$CE_HOST" "$NGX_PORT" 10 "the proxy nginx"
ngx_master="$(cat "$DIR/nginx/nginx.pid")"
nginx_workers="$(pgrep -c -P "$ngx_master")"
GW_WORKERS="${BENCH_GATEWAY_WORKERS:-$nginx_workers}"

# start_gateway PORT WORKERS LOG: prints the pid.
start_gateway() {
    # AUTH_PUBLIC_KEY: required even though the one route is public
    (
        eval "$("$ROOT/scripts/secrets.sh" env gateway)"
        HTTP_PORT="$1" GATEWAY_WORKERS="$2" GATEWAY_UPSTREAMS="bench=127.0.0.1:$UP_PORT" \
            GATEWAY_ROUTES="/api/bench=bench;public" GATEWAY_PUBLIC_RATE=off LOG_LEVEL=info \
            exec "$GATEWAY" >"$3" 2>&1
    ) &
    echo $!
}
gw1_pid="$(start_gateway "$GW_PORT" 1 "$DIR/gateway-1.log")"
gw_pids+=("$gw1_pid")
gwn_pid="$(start_gateway "$GWN_PORT" "$GW_WORKERS" "$DIR/gateway-$GW_WORKERS.log")"
gw_pids+=("$gwn_pid")
"$FLOOR" "$FLOOR_PORT" "$UP_PORT" >"$DIR/floor.log" 2>&1 &
floor_pid=$!
gw_pids+=("$floor_pid")
wait_port "$CE_HOST" "$FLOOR_PORT" 10 "the floor proxy (see $DIR/floor.log)"
wait_port "$CE_HOST" "$GW_PORT" 10 "the gateway (see $DIR/gateway-1.log)"
wait_port "$CE_HOST" "$GWN_PORT" 10 "the gateway (see $DIR/gateway-$GW_WORKERS.log)"

for p in "$NGX_PORT" "$GW_PORT" "$GWN_PORT" "$FLOOR_PORT"; do
    body="$(curl -fsS "http://127.0.0.1:$p$PATH_UNDER_TEST")" || die "GET $PATH_UNDER_TEST on $p failed"
    [[ "$body" == "ok" ]] || die "GET $PATH_UNDER_TEST on $p answered '$body'"
done

# ---------------------------------------------------------------- measuring

# wrk's latency figures come as 850.00us, 1.20ms or 1.02s: in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
        printf "%.3f", n }'
}

# CPU time (clock ticks) used so far by a process and its children (nginx's workers, the
# gateway's workers).
cpu_ticks() {
    local pids total=0 p f
    pids="$1 $(pgrep -P "$1" | tr '\n' ' ')"
    for p in $pids; do
        [[ -r "/proc/$p/stat" ]] || continue
        f="$(sed 's/^.*) //' "/proc/$p/stat")"
        # fields after the command: utime and stime are the 12th and 13th
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$f")))
    done
    echo "$total"
}
HZ="$(getconf CLK_TCK)"

# run NAME PORT DURATION PID: prints "rps p99_ms cpu_us_per_request" and keeps wrk's output.
run() {
    local out="$DIR/wrk-$1-$RANDOM.txt" before after
    before="$(cpu_ticks "$4")"
    wrk -t"$THREADS" -c"$CONNS" -d"$3" --latency "http://127.0.0.1:$2$PATH_UNDER_TEST" >"$out" 2>&1 ||
        die "wrk failed against $1 (see $out)"
    after="$(cpu_ticks "$4")"
    local rps p99 errors reqs
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
    p99="$(awk '$1 == "99%" { print $2 }' "$out")"
    reqs="$(awk '/requests in/ { print $1 }' "$out")"
    errors="$(awk '/Non-2xx|Socket errors/' "$out")"
    [[ -n "$rps" && -n "$p99" && -n "$reqs" ]] || die "cannot read wrk's output ($out)"
    [[ -z "$errors" ]] || warn "$1: $errors"
    printf '%s %s %s\n' "$rps" "$(to_ms "$p99")" \
        "$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
med() { printf '%s\n' "$@" | median; }

names=(nginx gateway-1 "gateway-$GW_WORKERS" floor)
ports=("$NGX_PORT" "$GW_PORT" "$GWN_PORT" "$FLOOR_PORT")
pids=("$ngx_master" "$gw1_pid" "$gwn_pid" "$floor_pid")
workers=("$nginx_workers" 1 "$GW_WORKERS" 1)
NP=${#names[@]}

log "warm-up (2s each)"
for ((i = 0; i < NP; i++)); do run "${names[$i]}" "${ports[$i]}" 2s "${pids[$i]}" >/dev/null; done

# Measurements by "<proxy index>,<round>".
# shellcheck disable=SC2034 # read through the nameref in med_of
declare -A RPS P99 CPU
for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < NP; k++)); do
        i=$(((r + k) % NP)) # the order rotates
        read -r a b c < <(run "${names[$i]}" "${ports[$i]}" "$DURATION" "${pids[$i]}")
        [[ -n "${c:-}" ]] || die "measuring ${names[$i]} failed (see $DIR)"
        # shellcheck disable=SC2034 # CPU is read through the nameref in med_of
        RPS[$i,$r]="$a" P99[$i,$r]="$b" CPU[$i,$r]="$c"
        note "round $((r + 1)) ${names[$i]}: $a req/s, p99 $b ms, $c us CPU per request"
    done
done

# med_of ARRAY_NAME I: the median over the rounds of proxy I.
med_of() {
    local -n arr="$1"
    local vals=() r
    for ((r = 0; r < ROUNDS; r++)); do vals+=("${arr[$2,$r]}"); done
    med "${vals[@]}"
}

echo
echo "gateway vs nginx: wrk -t$THREADS -c$CONNS -d$DURATION --latency, GET $PATH_UNDER_TEST," \
    "$ROUNDS rounds (medians), $(nproc) CPUs"
declare -a M_RPS M_P99 M_CPU
for ((i = 0; i < NP; i++)); do
    M_RPS[i]="$(med_of RPS "$i")" M_P99[i]="$(med_of P99 "$i")" M_CPU[i]="$(med_of CPU "$i")"
    printf '  %-10s %2s worker(s)  %9.0f req/s  p99 %7.2f ms  %6.1f us CPU/request\n' \
        "${names[$i]}" "${workers[$i]}" "${M_RPS[i]}" "${M_P99[i]}" "${M_CPU[i]}"
done
for ((i = 1; i < NP; i++)); do
    rr=() rp=()
    for ((r = 0; r < ROUNDS; r++)); do
        rr+=("$(awk -v g="${RPS[$i,$r]}" -v n="${RPS[0,$r]}" 'BEGIN { print g / n }')")
        rp+=("$(awk -v g="${P99[$i,$r]}" -v n="${P99[0,$r]}" 'BEGIN { print g / n }')")
    done
    awk -v name="${names[$i]}" -v g="${M_RPS[i]}" -v n="${M_RPS[0]}" -v gp="${M_P99[i]}" \
        -v np="${M_P99[0]}" -v rr="$(med "${rr[@]}")" -v rp="$(med "${rp[@]}")" \
        -v gc="${M_CPU[i]}" -v nc="${M_CPU[0]}" 'BEGIN {
        printf "  %s/nginx: throughput %.2fx (median of rounds %.2fx; goal >= 1.25x), p99 %.2fx (%.2fx; goal <= 1.00x), CPU/request %.2fx\n",
            name, g / n, rr, gp / np, rp, gc / nc }'
done
echo "  (floor: no parsing, headers, log or timers; the most any proxy sending each request on its" \
    "own upstream exchange reaches here, so the gateway's ratio cannot pass floor/nginx)"
