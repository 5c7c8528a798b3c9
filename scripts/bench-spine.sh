#!/usr/bin/env bash
# The content spine end to end, through the gateway: briefs per second and the latency from
# POST /api/content/items to the item's `generated` event on /api/realtime/events, at 50
# concurrent clients (each posts its next brief when the previous one is generated), after a
# warm-up; then one client alone, which is the pipeline's latency without queueing. The goal
# (issue 3) is p99 under 50 ms at 50 clients with the local provider.
#
#   BENCH_SPINE_CLIENTS (50)  BENCH_SPINE_BRIEFS (2000)  BENCH_SPINE_WARMUP (200)
#
# Uses the running stack (`make up`) when the gateway answers; otherwise brings the stack up and
# takes it down again afterwards.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

CLIENTS="${BENCH_SPINE_CLIENTS:-50}"
BRIEFS="${BENCH_SPINE_BRIEFS:-2000}"
WARMUP="${BENCH_SPINE_WARMUP:-200}"
GW="http://$CE_HOST:$(service_port gateway)"

started=0
if ! curl -fsS -o /dev/null "$GW/readyz" 2>/dev/null; then
    scripts/up.sh >"$LOGDIR/bench-spine-up.log" 2>&1 || {
        tail -n 20 "$LOGDIR/bench-spine-up.log" >&2
        die "make up failed (log: ${LOGDIR#"$ROOT"/}/bench-spine-up.log)"
    }
    started=1
fi
cleanup() {
    if ((started)); then
        scripts/down.sh >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

for _ in $(seq 1 60); do
    curl -fsS -o /dev/null "$GW/readyz" 2>/dev/null && break
    sleep 1
done
curl -fsS -o /dev/null "$GW/readyz" || die "the gateway's /readyz is not 200 (are all upstreams up?)"

# The gateway wants a token: log in as the local admin (scripts/secrets.sh made it); the token
# goes to a private file, never to the terminal.
tokfile="$(mktemp)"
chmod 600 "$tokfile"
trap 'rm -f "$tokfile"; cleanup' EXIT
python3 - "$GW" "$SECRETS/admin-email" "$SECRETS/admin-password" >"$tokfile" <<'PY' ||
import json, sys, urllib.request
gw, email, password = sys.argv[1], open(sys.argv[2]).read().strip(), open(sys.argv[3]).read().strip()
req = urllib.request.Request(gw + "/api/auth/login", method="POST",
                             data=json.dumps({"email": email, "password": password}).encode(),
                             headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=30))["access_token"])
PY
    die "cannot log in as the local admin through $GW/api/auth/login"

log "spine: $CLIENTS concurrent clients, $BRIEFS briefs ($WARMUP warm-up) through $GW"
python3 tests/bench/spine_latency.py --api "$GW" --events "$GW" --clients "$CLIENTS" \
    --briefs "$BRIEFS" --warmup "$WARMUP" --token-file "$tokfile"
log "spine: one client alone (latency without queueing)"
python3 tests/bench/spine_latency.py --api "$GW" --events "$GW" --clients 1 --briefs 300 \
    --warmup 20 --token-file "$tokfile"
