#!/usr/bin/env bash
# `make up`: the whole local stack on loopback. Installs what is missing, builds, starts Kafka and
# PostgreSQL, creates topics, proves Kafka works, creates the local secrets once (scripts/secrets.sh:
# keys, the first admin's e-mail and password), starts every service that is built with the
# secrets it needs, and prints where the dashboard is and how to log in.
# Safe to run again: what already runs is left alone, and the summary says nothing changed.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S="$ROOT/scripts"
changed=0

"$S/install-deps.sh"

log "building (release) into $BUILD/"
if make -C "$ROOT" --no-print-directory -q >/dev/null 2>&1; then
    note "build up to date"
else
    make -C "$ROOT" --no-print-directory || die "build failed (make -C $ROOT)"
    changed=1
fi

"$S/kafka.sh" status >/dev/null 2>&1 || changed=1
"$S/kafka.sh" fetch
"$S/kafka.sh" start
"$S/postgres.sh" status >/dev/null 2>&1 || changed=1
"$S/postgres.sh" start
"$S/topics.sh"
# Hook for service migrations, once scripts/migrate.sh exists.
if [[ -x "$S/migrate.sh" ]]; then
    "$S/migrate.sh"
fi

# The scraper refuses private and loopback addresses unless allowlisted: locally, loopback is
# allowed so that a test site on this machine can be scraped (said again in the summary).
SCRAPER_ALLOW_PRIVATE="${SCRAPER_ALLOW_PRIVATE-127.0.0.1/32,::1}"

# Keys and the first admin's login, generated once under var/secrets (kept on later runs).
"$S/secrets.sh"

service_env
started=() running=() missing=()
# Services not built yet are still routed by the gateway (502 until they exist) but must not
# hold its /readyz at 503.
not_built=()
for svc in $SERVICES; do
    [[ -x "$BINDIR/$svc" ]] || not_built+=("$svc")
done
for svc in $SERVICES; do
    bin="$BINDIR/$svc"
    if [[ ! -x "$bin" ]]; then
        missing+=("$svc")
        continue
    fi
    if proc_running "$svc"; then
        running+=("$svc")
        continue
    fi
    log "starting $svc"
    url="$("$S/postgres.sh" url "$svc")"
    # The service's secrets (AUTH_PUBLIC_KEY for the gateway; the keys and the first admin for
    # subscriber-manager) go to its environment only, read from var/secrets by the eval.
    secrets_env="$("$S/secrets.sh" env "$svc")" || die "scripts/secrets.sh env $svc failed"
    (
        eval "$secrets_env"
        KAFKA_BROKERS="$KAFKA_BOOTSTRAP" DATABASE_URL="$url" SERVICE_NAME="$svc" \
            HTTP_HOST=127.0.0.1 HTTP_PORT="$(service_port "$svc")" \
            MIGRATIONS_DIR="$ROOT/services/$svc/migrations" GATEWAY_STATIC_DIR="$ROOT/build/dashboard" \
            SCRAPER_ALLOW_PRIVATE="$SCRAPER_ALLOW_PRIVATE" HTTP_TRUSTED_PROXIES="127.0.0.1/32,::1" \
            GATEWAY_OPTIONAL_UPSTREAMS="${not_built[*]}" \
            proc_start "$svc" "$LOGDIR/$svc.log" "$bin"
    )
    started+=("$svc")
    changed=1
done
((${#missing[@]} == 0)) || note "not built, skipped: ${missing[*]}"

# A service that dies right away (bad config) should fail `make up`, not hide in its log.
if ((${#started[@]} > 0)); then
    sleep 1
    for svc in "${started[@]}"; do
        if ! proc_running "$svc"; then
            tail -n 20 "$LOGDIR/$svc.log" >&2 || true
            die "$svc exited right after start; see ${LOGDIR#"$ROOT"/}/$svc.log"
        fi
    done
fi

echo
if ((changed)); then
    log "local stack up"
else
    log "local stack was already up: nothing changed"
fi
note "Kafka       $KAFKA_BOOTSTRAP (controller $CE_HOST:$CE_KAFKA_CONTROLLER_PORT)"
note "PostgreSQL  $CE_HOST:$CE_PG_PORT, database $PG_DB (a role's URL: scripts/postgres.sh url ROLE)"
if [[ -x "$BINDIR/gateway" ]]; then
    note "gateway     http://127.0.0.1:8080/ (the dashboard; the API under /api)"
fi
if [[ -x "$BINDIR/subscriber-manager" ]]; then
    # A generated, local-only default, printed so that the walkthrough (README.md) can log in.
    note "admin login $(cat "$SECRETS/admin-email") / $(cat "$SECRETS/admin-password")" \
        "(kept in ${SECRETS#"$ROOT"/}/admin-email and admin-password)"
fi
if [[ -x "$BINDIR/scraper" && -n "$SCRAPER_ALLOW_PRIVATE" ]]; then
    note "scraper     may fetch $SCRAPER_ALLOW_PRIVATE (local test sites; SCRAPER_ALLOW_PRIVATE= to refuse)"
fi
services_running=("${running[@]}" "${started[@]}")
note "services    ${services_running[*]:-none built yet}"
note "logs        ${LOGDIR#"$ROOT"/}/ (kafka.log, postgres.log, <service>.log)"
note "stop with   make down"
