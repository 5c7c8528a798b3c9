#!/usr/bin/env bash
# `make down`: stops what `make up` started, each only through its own pidfile or data dir:
# services in reverse order, then Kafka, then PostgreSQL. Safe to run when already down.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S="$ROOT/scripts"

reversed=()
for svc in $SERVICES; do
    reversed=("$svc" "${reversed[@]}")
done
for svc in "${reversed[@]}"; do
    # Services drain on SIGTERM (flush producer, commit offsets); give them time to.
    proc_stop "$svc" 20
done
"$S/kafka.sh" stop
"$S/postgres.sh" stop

# shellcheck disable=SC2086 # a list of ports
ports_free $INFRA_PORTS || die "something still listens on our ports (above)"
log "local stack down: nothing listens on $INFRA_PORTS"
