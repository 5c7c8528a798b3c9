#!/usr/bin/env bash
# The local Apache Kafka broker: one KRaft node (broker + controller) on loopback.
#   scripts/kafka.sh fetch    assemble the broker's jars from Maven Central into var/cache
#   scripts/kafka.sh start    format storage once, start detached, wait until it answers
#   scripts/kafka.sh stop     SIGTERM via the pidfile (SIGKILL after 30 s)
#   scripts/kafka.sh status   exit 0 when running and answering
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KDIR="$VAR/kafka"
KLIBS="$KAFKA_HOME/libs"
KMARKER="$KAFKA_HOME/.complete"
KPROPS="$KDIR/server.properties"
KLOG4J="$KDIR/log4j.properties"
KDATA="$KDIR/data"
KLOG="$LOGDIR/kafka.log"
KOUT="$LOGDIR/kafka.out"
START_TIMEOUT="${CE_KAFKA_START_TIMEOUT:-90}"

# Classes the stack relies on: broker, storage formatter, and the perf tools `make bench` uses.
REQUIRED_CLASSES=(kafka.Kafka kafka.tools.StorageTool org.apache.kafka.tools.ProducerPerformance
    org.apache.kafka.tools.ConsumerPerformance org.apache.kafka.tools.TopicCommand)

# The JRE has no javap/jar, so look into the jars with python's zipfile.
check_classes() {
    python3 - "$KLIBS" "${REQUIRED_CLASSES[@]}" <<'PY'
import glob, sys, zipfile
libs, wanted = sys.argv[1], sys.argv[2:]
names = set()
for jar in glob.glob(libs + "/*.jar"):
    with zipfile.ZipFile(jar) as z:
        names.update(z.namelist())
missing = [c for c in wanted if c.replace(".", "/") + ".class" not in names]
if missing:
    print("missing on the classpath: " + " ".join(missing), file=sys.stderr)
    sys.exit(1)
PY
}

cmd_fetch() {
    if [[ -f "$KMARKER" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found; run scripts/install-deps.sh"
    log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into ${KLIBS#"$ROOT"/}"
    local pom="$ROOT/scripts/kafka/pom.xml" t0=$SECONDS
    grep -q "<kafka.version>$KAFKA_VERSION</kafka.version>" "$pom" ||
        die "$pom does not pin kafka.version $KAFKA_VERSION (scripts/lib.sh KAFKA_VERSION)"
    # A fresh directory each time, so jars of an interrupted or older fetch never linger.
    rm -rf "$KLIBS.tmp"
    mkdir -p "$KLIBS.tmp"
    # Maven's own output goes to a log (it is only interesting when the fetch fails).
    if ! mvn -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
        -DoutputDirectory="$KLIBS.tmp" -DincludeScope=runtime >"$LOGDIR/kafka-fetch.log" 2>&1; then
        grep -E 'ERROR' "$LOGDIR/kafka-fetch.log" | head -n 5 >&2 || true
        die "maven could not fetch Kafka $KAFKA_VERSION (is Maven Central reachable?); see ${LOGDIR#"$ROOT"/}/kafka-fetch.log"
    fi
    rm -rf "$KLIBS"
    mv "$KLIBS.tmp" "$KLIBS"
    check_classes || die "Kafka classpath in $KLIBS is incomplete"
    date -u +%FT%TZ >"$KMARKER"
    note "$(find "$KLIBS" -name '*.jar' | wc -l) jars in $((SECONDS - t0))s"
}

write_config() {
    mkdir -p "$KDIR" "$KDATA"
    cat >"$KPROPS" <<PROPS
# Written by scripts/kafka.sh on every start; edit the script, not this file.
# One KRaft node that is both broker and controller, on loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$CE_HOST:$CE_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$CE_HOST:$CE_KAFKA_PORT,CONTROLLER://$CE_HOST:$CE_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$CE_HOST:$CE_KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KDATA
# Topics come from proto/topics.catalog (scripts/topics.sh), never from a typo in a producer.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
# Single node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
# Fewer internal partitions than the default 50: the first group join or transaction creates
# them, and on 2 cores 50 partitions cost seconds that tests would wait for.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# Tests join consumer groups often; don't make each join wait 3 s for more members.
group.initial.rebalance.delay.ms=0
# Deleted topics (tests and benchmarks create and drop many, some of gigabytes) leave the disk
# within seconds instead of the default minute, which a stop right after would stretch forever.
file.delete.delay.ms=1000
PROPS
    cat >"$KLOG4J" <<LOG4J
# Broker logs go to var/log/kafka.log (rolled), not to stdout.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$KLOG
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
# The noisiest loggers at startup and on every segment roll.
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage=WARN
log4j.logger.kafka.log=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
LOG4J
}

# JVM flags for every Kafka JVM we start: small heap, our log4j config, no GC log files.
java_opts() {
    printf '%s\n' -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        "-Dlog4j.configuration=file:$KLOG4J" "-Dkafka.logs.dir=$LOGDIR"
}

format_storage() {
    # meta.properties exists once the log dir is formatted; formatting again would fail.
    [[ -f "$KDATA/meta.properties" ]] && return 0
    local cid_file="$KDIR/cluster.id" cid
    if [[ ! -s "$cid_file" ]]; then
        java -cp "$KLIBS/*" "-Dlog4j.configuration=file:$KLOG4J" kafka.tools.StorageTool \
            random-uuid >"$cid_file.tmp" 2>>"$KOUT" || die "StorageTool random-uuid failed; see $KOUT"
        mv "$cid_file.tmp" "$cid_file"
    fi
    read -r cid <"$cid_file"
    log "formatting Kafka storage (cluster id $cid)"
    java -cp "$KLIBS/*" "-Dlog4j.configuration=file:$KLOG4J" kafka.tools.StorageTool \
        format -t "$cid" -c "$KPROPS" >>"$KOUT" 2>&1 ||
        die "StorageTool format failed; see ${KOUT#"$ROOT"/}"
}

broker_answers() {
    kcat -L -b "$KAFKA_BOOTSTRAP" -m 3 2>/dev/null | grep -q "broker 1 at $CE_HOST:$CE_KAFKA_PORT"
}

wait_ready() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until broker_answers; do
        if ! proc_running kafka; then
            tail -n 30 "$KLOG" "$KOUT" >&2 2>/dev/null || true
            die "Kafka exited during startup; see ${KLOG#"$ROOT"/} and ${KOUT#"$ROOT"/}"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$KLOG" >&2 2>/dev/null || true
            die "Kafka did not answer on $KAFKA_BOOTSTRAP within ${START_TIMEOUT}s; see ${KLOG#"$ROOT"/}"
        fi
        sleep 0.5
    done
}

cmd_start() {
    if proc_running kafka; then
        wait_ready
        log "kafka already running on $KAFKA_BOOTSTRAP (pid $(proc_pid kafka))"
        return 0
    fi
    local p
    for p in "$CE_KAFKA_PORT" "$CE_KAFKA_CONTROLLER_PORT"; do
        port_listening "$p" && die "port $p is taken by a process that is not our Kafka (ss -ltnp 'sport = :$p')"
    done
    cmd_fetch
    command -v java >/dev/null || die "java not found; run scripts/install-deps.sh"
    command -v kcat >/dev/null || die "kcat not found; run scripts/install-deps.sh"
    write_config
    format_storage
    log "starting kafka on $KAFKA_BOOTSTRAP (controller $CE_HOST:$CE_KAFKA_CONTROLLER_PORT)"
    local t0=$SECONDS opts
    mapfile -t opts < <(java_opts)
    proc_start kafka "$KOUT" java "${opts[@]}" -cp "$KLIBS/*" kafka.Kafka "$KPROPS"
    wait_ready
    note "kafka ready in $((SECONDS - t0))s (pid $(proc_pid kafka)), log ${KLOG#"$ROOT"/}"
}

cmd_stop() {
    if ! proc_running kafka; then
        proc_stop kafka # removes a stale pidfile, if any
        log "kafka not running"
        return 0
    fi
    proc_stop kafka 30
}

cmd_status() {
    if proc_running kafka && broker_answers; then
        echo "kafka: running on $KAFKA_BOOTSTRAP (pid $(proc_pid kafka))"
    elif proc_running kafka; then
        echo "kafka: process $(proc_pid kafka) runs but $KAFKA_BOOTSTRAP does not answer"
        return 1
    else
        echo "kafka: stopped"
        return 1
    fi
}

case "${1:-}" in
fetch) cmd_fetch ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) die "usage: scripts/kafka.sh {fetch|start|stop|status}" ;;
esac
