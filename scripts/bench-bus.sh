#!/usr/bin/env bash
# `make bench`: producer and consumer throughput of libs/bus against Kafka's own perf tools
# (org.apache.kafka.tools.ProducerPerformance / ConsumerPerformance from the same 3.9.1 jars, with
# their defaults), same broker, same record size, acks=all; printed as ratios.
#
# Like for like (the figures that count):
#   producer  ce-bus-perf produce --raw (bus_record.verbatim: the value only, no headers, as
#             ProducerPerformance sends) vs ProducerPerformance, each into a fresh topic.
#   consumer  ce-bus-perf consume vs ConsumerPerformance, both reading THE SAME topic (the one
#             ProducerPerformance wrote this round) from the beginning, each with a fresh group.
# Informational: the bus producer with the CloudEvents envelope (seven headers per record) and
# the bus consumer reading those enveloped records; the Kafka tools have no such mode.
#
#   BENCH_RECORDS (default 2000000)  BENCH_RECORD_SIZE (100)  BENCH_PARTITIONS (6)
#   BENCH_ROUNDS (3: every measurement runs this many times, the order alternating between the
#   two sides each round so background noise hits both; the best run counts)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

N="${BENCH_RECORDS:-2000000}"
SIZE="${BENCH_RECORD_SIZE:-100}"
PARTS="${BENCH_PARTITIONS:-6}"
ROUNDS="${BENCH_ROUNDS:-3}"
JAVA_CP="$KAFKA_HOME/libs/*"
PERF="$BINDIR/ce-bus-perf"

make -s -C "$ROOT" all
[[ -x "$PERF" ]] || die "$PERF was not built"

started_infra=0
if ! scripts/infra.sh status >/dev/null 2>&1; then
    scripts/infra.sh up
    started_infra=1
fi
topics=()
errlog="$(mktemp)"
cleanup() {
    for t in "${topics[@]}"; do
        java -cp "$JAVA_CP" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
            --delete --topic "$t" >/dev/null 2>&1 || true
    done
    rm -f "$errlog"
    if [[ "$started_infra" = 1 ]]; then scripts/infra.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# TopicCommand's log4j chatter goes nowhere; its own error is shown if it fails.
new_topic() {
    local t="bench.$1.$(date +%s).$$"
    if ! java -cp "$JAVA_CP" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
        --create --topic "$t" --partitions "$PARTS" --replication-factor 1 >"$errlog" 2>&1; then
        grep -v -e '^log4j' -e 'SLF4J' "$errlog" >&2 || true
        die "cannot create topic $t"
    fi
    topics+=("$t")
    printf '%s' "$t"
}

max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b) ? a : b }'; }

java_produce() {
    # Final line: "N records sent, X records/sec (Y MB/sec), ..."
    java -Xmx1g -cp "$JAVA_CP" org.apache.kafka.tools.ProducerPerformance --topic "$1" \
        --num-records "$N" --record-size "$SIZE" --throughput -1 \
        --producer-props bootstrap.servers="$KAFKA_BOOTSTRAP" acks=all 2>/dev/null |
        tail -n 1 | sed -n 's/.* records sent, \([0-9.]*\) records\/sec.*/\1/p'
}

java_consume() {
    # CSV: start.time, end.time, MB, MB.sec, nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms,
    # fetch.MB.sec, fetch.nMsg.sec. fetch.nMsg.sec leaves out the group join, as ce-bus-perf does.
    java -Xmx1g -cp "$JAVA_CP" org.apache.kafka.tools.ConsumerPerformance \
        --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$1" --messages "$N" \
        --group "bench-java-$RANDOM$RANDOM" --timeout 60000 2>/dev/null |
        tail -n 1 | awk -F', *' '{ print $10 }'
}

bus_run() {
    "$PERF" "$@" 2>/dev/null | sed -n 's/^RESULT records_per_sec=\([0-9.]*\).*/\1/p'
}
bus_produce() { # topic [--raw]
    bus_run produce --brokers "$KAFKA_BOOTSTRAP" --topic "$1" --num-records "$N" \
        --record-size "$SIZE" --acks all "${@:2}"
}
bus_consume() { # topic (a fresh group each run)
    bus_run consume --brokers "$KAFKA_BOOTSTRAP" --topic "$1" --num-records "$N"
}

jp=0 bp=0 ep=0 jc=0 bc=0 ec=0
row() { # round, what, records/s
    if [[ -n "${3:-}" ]]; then
        note "$(printf 'round %s  %-40s %10.0f records/s' "$1" "$2" "$3")"
    else
        note "$(printf 'round %s  %-40s %10s' "$1" "$2" failed)"
    fi
}
m_java_produce() { v="$(java_produce "$tj")"; row "$r" "ProducerPerformance" "$v"; jp="$(max "$jp" "${v:-0}")"; }
m_bus_produce() { v="$(bus_produce "$tb" --raw)"; row "$r" "libs/bus producer (verbatim)" "$v"; bp="$(max "$bp" "${v:-0}")"; }
m_java_consume() { v="$(java_consume "$tj")"; row "$r" "ConsumerPerformance" "$v"; jc="$(max "$jc" "${v:-0}")"; }
m_bus_consume() { v="$(bus_consume "$tj")"; row "$r" "libs/bus consumer (same topic)" "$v"; bc="$(max "$bc" "${v:-0}")"; }

log "bench: $N records of $SIZE bytes, acks=all, $PARTS partitions, best of $ROUNDS (alternating)"
for r in $(seq 1 "$ROUNDS"); do
    tj="$(new_topic java$r)"
    tb="$(new_topic bus$r)"
    te="$(new_topic env$r)"
    if ((r % 2)); then m_java_produce; m_bus_produce; else m_bus_produce; m_java_produce; fi
    v="$(bus_produce "$te")"
    row "$r" "libs/bus producer (CloudEvents)" "$v"
    ep="$(max "$ep" "${v:-0}")"
    if ((r % 2)); then m_java_consume; m_bus_consume; else m_bus_consume; m_java_consume; fi
    v="$(bus_consume "$te")"
    row "$r" "libs/bus consumer (CloudEvents records)" "$v"
    ec="$(max "$ec" "${v:-0}")"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf '\n%-34s %16s %18s %7s\n' "" "libs/bus rec/s" "kafka tool rec/s" "ratio"
printf '%-34s %16.0f %18.0f %7s\n' "producer (bare records)" "$bp" "$jp" "$(ratio "$bp" "$jp")"
printf '%-34s %16.0f %18.0f %7s\n' "consumer (same topic)" "$bc" "$jc" "$(ratio "$bc" "$jc")"
printf '%-34s %16.0f %18.0f %7s\n' "producer, CloudEvents (info)" "$ep" "$jp" "$(ratio "$ep" "$jp")"
printf '%-34s %16.0f %18.0f %7s\n' "consumer, CloudEvents (info)" "$ec" "$jc" "$(ratio "$ec" "$jc")"
echo "(goal: the first two ratios >= 0.90; command: make bench; records=$N size=$SIZE acks=all" \
    "partitions=$PARTS; the info rows carry seven CloudEvents headers per record, the Kafka tools none)"
