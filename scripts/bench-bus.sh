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
#   BENCH_RECORDS (5000000: long enough that JVM warm-up does not decide the result)
#   BENCH_RECORD_SIZE (100)  BENCH_PARTITIONS (6)
#   BENCH_ROUNDS (3: every measurement runs this many times, the order alternating between the
#   two sides each round so background noise hits both). The ratio that counts compares medians:
#   ConsumerPerformance swings by 2x between identical runs here (JIT, GC), and a best-of ratio
#   would compare our typical run with its luckiest one. The best-of ratio is printed beside it.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

N="${BENCH_RECORDS:-5000000}"
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
    # the broker removes deleted topics' files a second later (file.delete.delay.ms): let it
    if [[ "$started_infra" = 1 ]]; then
        sleep 3
        scripts/infra.sh down >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# new_topic VAR NAME: creates a fresh topic, stores its name in VAR and remembers it for the
# cleanup (not in a $(...) subshell: the cleanup list must be this shell's, or every run leaves
# its topics, gigabytes of them, behind). TopicCommand's log4j chatter goes nowhere; its own error
# is shown if it fails.
new_topic() {
    local -n out="$1"
    local t
    t="bench.$2.$(date +%s).$$"
    if ! java -cp "$JAVA_CP" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
        --create --topic "$t" --partitions "$PARTS" --replication-factor 1 >"$errlog" 2>&1; then
        grep -v -e '^log4j' -e 'SLF4J' "$errlog" >&2 || true
        die "cannot create topic $t"
    fi
    topics+=("$t")
    out="$t"
}

# median / best of the numbers given (0 when none)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
best() { printf '%s\n' "$@" | sort -g | tail -n 1 | awk '{ print $1 + 0 }'; }

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

JP=() BP=() EP=() JC=() BC=() EC=()
tj="" tb="" te="" # this round's topics (set by new_topic)
row() { # round, what, records/s
    if [[ -n "${3:-}" ]]; then
        note "$(printf 'round %s  %-40s %10.0f records/s' "$1" "$2" "$3")"
    else
        note "$(printf 'round %s  %-40s %10s' "$1" "$2" failed)"
    fi
}
# A failed run counts as 0: it pulls that side's median down instead of vanishing.
m_java_produce() { v="$(java_produce "$tj")"; row "$r" "ProducerPerformance" "$v"; JP+=("${v:-0}"); }
m_bus_produce() { v="$(bus_produce "$tb" --raw)"; row "$r" "libs/bus producer (verbatim)" "$v"; BP+=("${v:-0}"); }
m_java_consume() { v="$(java_consume "$tj")"; row "$r" "ConsumerPerformance" "$v"; JC+=("${v:-0}"); }
m_bus_consume() { v="$(bus_consume "$tj")"; row "$r" "libs/bus consumer (same topic)" "$v"; BC+=("${v:-0}"); }

log "bench: $N records of $SIZE bytes, acks=all, $PARTS partitions, $ROUNDS rounds (alternating)"
for r in $(seq 1 "$ROUNDS"); do
    new_topic tj "java$r"
    new_topic tb "bus$r"
    new_topic te "env$r"
    if ((r % 2)); then m_java_produce; m_bus_produce; else m_bus_produce; m_java_produce; fi
    v="$(bus_produce "$te")"
    row "$r" "libs/bus producer (CloudEvents)" "$v"
    EP+=("${v:-0}")
    if ((r % 2)); then m_java_consume; m_bus_consume; else m_bus_consume; m_java_consume; fi
    v="$(bus_consume "$te")"
    row "$r" "libs/bus consumer (CloudEvents records)" "$v"
    EC+=("${v:-0}")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
line() { # label, ours[], theirs[] (as "name" of arrays)
    local -n ours="$2" theirs="$3"
    local mo mt bo bt
    mo="$(median "${ours[@]}")" mt="$(median "${theirs[@]}")"
    bo="$(best "${ours[@]}")" bt="$(best "${theirs[@]}")"
    printf '%-32s %12.0f %12.0f %7s   %12.0f %12.0f %7s\n' "$1" "$mo" "$mt" "$(ratio "$mo" "$mt")" \
        "$bo" "$bt" "$(ratio "$bo" "$bt")"
}
printf '\n%-32s %12s %12s %7s   %12s %12s %7s\n' "records/s" "bus median" "kafka median" "ratio" \
    "bus best" "kafka best" "ratio"
line "producer (bare records)" BP JP
line "consumer (same topic)" BC JC
line "producer, CloudEvents (info)" EP JP
line "consumer, CloudEvents (info)" EC JC
echo "(goal: the median ratios of the first two rows >= 0.90; command: make bench; records=$N" \
    "size=$SIZE acks=all partitions=$PARTS rounds=$ROUNDS; the info rows carry seven CloudEvents" \
    "headers per record, the Kafka tools none)"
