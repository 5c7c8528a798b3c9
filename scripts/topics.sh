#!/usr/bin/env bash
# Creates the catalog's topics on the local broker, then proves the broker really works: one record
# produced to platform.readiness and read back (metadata alone can answer before a partition
# accepts writes).
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOL="$BINDIR/ce-topics"
TOPIC=platform.readiness
READY_TIMEOUT="${CE_READY_TIMEOUT:-60}"

[[ -x "$TOOL" ]] || die "$TOOL not built (make $BUILD/bin/ce-topics, or scripts/infra.sh up)"

log "creating topics from proto/topics.catalog on $KAFKA_BOOTSTRAP"
"$TOOL" --bootstrap "$KAFKA_BOOTSTRAP" create | sed 's/^/    /' || die "ce-topics create failed"

log "readiness: producing and consuming one record on $TOPIC"
token="ready-$(date +%s%N)-$$-$RANDOM"
deadline=$((SECONDS + READY_TIMEOUT))
# Retry the produce: right after a start the partition leader may not take writes yet.
until printf '%s\n' "$token" |
    kcat -P -b "$KAFKA_BOOTSTRAP" -t "$TOPIC" -k probe -X message.timeout.ms=10000 2>/dev/null; do
    ((SECONDS < deadline)) || die "readiness: could not produce to $TOPIC on $KAFKA_BOOTSTRAP within ${READY_TIMEOUT}s"
    sleep 1
done
# Read the (single-partition, one-hour) topic until our token shows up. From the beginning, not
# a tail: once retention has deleted old records, a tail offset below the log start makes the
# consumer jump to the end and skip the token.
until kcat -C -b "$KAFKA_BOOTSTRAP" -t "$TOPIC" -o beginning -e -q -f '%s\n' 2>/dev/null |
    grep -qxF "$token"; do
    ((SECONDS < deadline)) || die "readiness: produced to $TOPIC but could not read it back within ${READY_TIMEOUT}s"
    sleep 0.5
done
note "Kafka round trip ok"
