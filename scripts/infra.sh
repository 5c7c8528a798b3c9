#!/usr/bin/env bash
# Just the infrastructure the tests need: Kafka, PostgreSQL with roles and schemas, the catalog's
# topics, and a real produce/consume round trip. No services.
#   scripts/infra.sh up       start what is not running (a no-op when all is up)
#   scripts/infra.sh down     stop Kafka and PostgreSQL
#   scripts/infra.sh status   exit 0 only when both run; a test runner can call this first
#                             and `down` at the end only if it had to start them
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S="$ROOT/scripts"

case "${1:-}" in
up)
    "$S/install-deps.sh"
    "$S/kafka.sh" fetch
    "$S/kafka.sh" start
    "$S/postgres.sh" start
    ensure_ce_topics
    "$S/topics.sh"
    log "infra up: Kafka $KAFKA_BOOTSTRAP, PostgreSQL $CE_HOST:$CE_PG_PORT db $PG_DB (logs in ${LOGDIR#"$ROOT"/})"
    ;;
down)
    "$S/kafka.sh" stop
    "$S/postgres.sh" stop
    # shellcheck disable=SC2086 # a list of ports
    ports_free $INFRA_PORTS || die "something still listens on our ports (above)"
    log "infra down: nothing listens on $INFRA_PORTS"
    ;;
status)
    rc=0
    "$S/kafka.sh" status || rc=1
    "$S/postgres.sh" status || rc=1
    exit "$rc"
    ;;
*) die "usage: scripts/infra.sh {up|down|status}" ;;
esac
