#!/usr/bin/env bash
# `make bench`: producer and consumer throughput of libs/bus against Kafka's own perf tools
# (org.apache.kafka.tools.ProducerPerformance / ConsumerPerformance from the same 3.9.1 jars),
# same broker, same topic layout, same record size, acks=all; printed as ratios.
#   BENCH_RECORDS (default 2000000)  BENCH_RECORD_SIZE (100)  BENCH_PARTITIONS (6)
#   BENCH_ROUNDS (2: each side runs this many times, alternating; the best run counts)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

N="${BENCH_RECORDS:-2000000}"
SIZE="${BENCH_RECORD_SIZE:-100}"
PARTS="${BENCH_PARTITIONS:-6}"
ROUNDS="${BENCH_ROUNDS:-2}"
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
cleanup() {
    for t in "${topics[@]}"; do
        java -cp "$JAVA_CP" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
            --delete --topic "$t" >/dev/null 2>&1 || true
    done
    if [[ "$started_infra" = 1 ]]; then scripts/infra.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

new_topic() {
    local t="bench.$1.$(date +%s).$$"
    java -cp "$JAVA_CP" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
        --create --topic "$t" --partitions "$PARTS" --replication-factor 1 >/dev/null
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

log "bench: $N records of $SIZE bytes, acks=all, $PARTS partitions, best of $ROUNDS"
jp=0 bp=0 jc=0 bc=0
for r in $(seq 1 "$ROUNDS"); do
    t="$(new_topic java$r)"
    v="$(java_produce "$t")"; note "round $r  kafka-producer-perf-test  ${v:-failed} records/s"
    jp="$(max "$jp" "${v:-0}")"
    v="$(java_consume "$t")"; note "round $r  kafka-consumer-perf-test  ${v:-failed} records/s"
    jc="$(max "$jc" "${v:-0}")"

    t="$(new_topic bus$r)"
    v="$(bus_run produce --brokers "$KAFKA_BOOTSTRAP" --topic "$t" --num-records "$N" --record-size "$SIZE" --acks all)"
    note "round $r  libs/bus producer          ${v:-failed} records/s"
    bp="$(max "$bp" "${v:-0}")"
    v="$(bus_run consume --brokers "$KAFKA_BOOTSTRAP" --topic "$t" --num-records "$N")"
    note "round $r  libs/bus consumer          ${v:-failed} records/s"
    bc="$(max "$bc" "${v:-0}")"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf '\n%-10s %18s %18s %8s\n' "" "libs/bus rec/s" "kafka tool rec/s" "ratio"
printf '%-10s %18.0f %18.0f %8s\n' producer "$bp" "$jp" "$(ratio "$bp" "$jp")"
printf '%-10s %18.0f %18.0f %8s\n' consumer "$bc" "$jc" "$(ratio "$bc" "$jc")"
echo "(goal: ratio >= 0.90; command: make bench; records=$N size=$SIZE acks=all partitions=$PARTS)"
