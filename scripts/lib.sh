# shellcheck shell=bash disable=SC2034 # the variables here are used by the scripts that source it
# Sourced by every script in scripts/: paths, ports, pinned versions and small helpers.
# Everything the local stack writes lives under $VAR (git-ignored) and binds to loopback only.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/var"
CACHE="$VAR/cache"
LOGDIR="$VAR/log"
RUNDIR="$VAR/run"
SECRETS="$VAR/secrets"
BUILD="${BUILD:-build}"
BINDIR="$ROOT/$BUILD/bin"

# Ports can be moved by the environment so two checkouts (or CI and a developer) can coexist.
CE_KAFKA_PORT="${CE_KAFKA_PORT:-9092}"
CE_KAFKA_CONTROLLER_PORT="${CE_KAFKA_CONTROLLER_PORT:-9093}"
CE_PG_PORT="${CE_PG_PORT:-55432}"
CE_HOST=127.0.0.1
KAFKA_BOOTSTRAP="$CE_HOST:$CE_KAFKA_PORT"

# Pinned: the broker comes from Maven Central, so the version must be explicit.
KAFKA_VERSION=3.9.1
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
PG_BIN=/usr/lib/postgresql/15/bin
PG_DB=contentengine
PG_OS_USER=postgres

# Start order; down.sh walks it backwards.
SERVICES="gateway content-manager ai-processor scraper distributor subscriber-manager media-processor realtime"

# Each service's HTTP port on loopback (HTTP_PORT); the gateway's is the one external port.
service_port() {
    case "$1" in
    gateway) echo 8080 ;;
    content-manager) echo 8081 ;;
    ai-processor) echo 8082 ;;
    realtime) echo 8083 ;;
    scraper) echo 8084 ;;
    distributor) echo 8085 ;;
    subscriber-manager) echo 8086 ;;
    media-processor) echo 8087 ;;
    *) return 1 ;;
    esac
}

mkdir -p "$CACHE" "$LOGDIR" "$RUNDIR"
if [[ ! -d "$SECRETS" ]]; then
    mkdir -p "$SECRETS"
fi
chmod 700 "$SECRETS"

# service_env: exports the environment every service binary is started with. Called by up.sh,
# the benchmarks that start services and scripts/test.sh (the tests' spawners inherit it), so
# what is measured is what runs. Documented in README.md ("Service environment").
#   GNUTLS_NO_IMPLICIT_INIT=1: libpq links libldap, which links GnuTLS, whose library
#   constructor initialises GnuTLS (and p11-kit with it) in every process before main, about
#   0.8 MB resident. No service uses GnuTLS (libcurl, librdkafka and libpq use OpenSSL), and
#   libldap initialises it itself should an ldap:// connection-service lookup need TLS.
service_env() {
    export GNUTLS_NO_IMPLICIT_INIT=1
}

# ---------------------------------------------------------------- messages

log() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
# One clear line, then stop.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- processes

pidfile_of() { printf '%s/%s.pid' "$RUNDIR" "$1"; }
# The exact argv we launched, NUL-separated like /proc/<pid>/cmdline, so a stale pidfile whose pid
# was reused by another program never gets that program killed.
argvfile_of() { printf '%s/%s.argv' "$RUNDIR" "$1"; }

# proc_pid NAME: prints the pid and succeeds only if NAME runs and is still what we started.
proc_pid() {
    local pidf argvf pid
    pidf="$(pidfile_of "$1")"
    argvf="$(argvfile_of "$1")"
    [[ -r "$pidf" && -r "$argvf" ]] || return 1
    read -r pid <"$pidf" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    local have want
    have="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
    want="$(tr '\0' '\n' <"$argvf")"
    # Equal, or ending with it: for a '#!' script the kernel puts the interpreter in front.
    [[ -n "$have" && ("$have" == "$want" || "$have" == *$'\n'"$want") ]] || return 1
    printf '%s\n' "$pid"
}

proc_running() { proc_pid "$1" >/dev/null; }

# proc_start NAME LOGFILE CMD [ARGS...]: run CMD detached (own session, no terminal, stdin from
# /dev/null, stdout+stderr appended to LOGFILE) and record its pid in $RUNDIR/NAME.pid.
# Environment variables set by the caller (e.g. `FOO=1 proc_start ...`) are passed on.
proc_start() {
    local name="$1" logfile="$2"
    shift 2
    local pidf argvf i
    pidf="$(pidfile_of "$name")"
    argvf="$(argvfile_of "$name")"
    rm -f "$pidf" "$argvf"
    printf '%s\0' "$@" >"$argvf"
    mkdir -p "$(dirname "$logfile")"
    # setsid --fork always forks, so the pid is written by the child itself just before exec:
    # that pid is the final program's, whatever the caller's job control does.
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
    setsid --fork bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@" \
        </dev/null >>"$logfile" 2>&1
    for ((i = 0; i < 50; i++)); do
        [[ -s "$pidf" ]] && return 0
        sleep 0.1
    done
    die "$name did not start (no pidfile after 5 s); see $logfile"
}

# proc_stop NAME [TIMEOUT_S]: SIGTERM, wait, then SIGKILL. Only touches a pid that still runs
# what we started; a stale pidfile is just removed.
proc_stop() {
    local name="$1" timeout="${2:-30}" pid i
    if ! pid="$(proc_pid "$name")"; then
        if [[ -e "$(pidfile_of "$name")" ]]; then
            note "$name: stale pidfile removed (process gone or not ours)"
        fi
        rm -f "$(pidfile_of "$name")" "$(argvfile_of "$name")"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && proc_running "$name"; then
        warn "$name did not stop within ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$(pidfile_of "$name")" "$(argvfile_of "$name")"
}

# ---------------------------------------------------------------- ports

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
    # shellcheck disable=SC2016 # $0 and $1 belong to the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# port_listening PORT: some process listens on that TCP port (any address).
port_listening() {
    [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
}

# wait_port HOST PORT TIMEOUT_S [WHAT]: wait until the port accepts connections.
wait_port() {
    local host="$1" port="$2" timeout="$3" what="${4:-$1:$2}" deadline
    deadline=$((SECONDS + timeout))
    until port_open "$host" "$port"; do
        ((SECONDS < deadline)) || die "$what: nothing accepts connections on $host:$port after ${timeout}s"
        sleep 0.5
    done
}

# A URL-safe random secret (base64url, 32 chars, 192 bits): needs no escaping in URLs or SQL.
random_secret() {
    head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

# secret_file NAME: path of $SECRETS/NAME, created with a fresh random value the first time.
secret_file() {
    local f="$SECRETS/$1"
    if [[ ! -s "$f" ]]; then
        (umask 077 && random_secret >"$f.tmp" && mv "$f.tmp" "$f")
    fi
    chmod 600 "$f"
    printf '%s' "$f"
}

# ports_free PORT...: true when none listens; otherwise names each busy port and its process.
ports_free() {
    local p free=0
    for p in "$@"; do
        if port_listening "$p"; then
            warn "port $p still has a listener: $(ss -Hltnp "sport = :$p" | awk '{print $4, $6}' | head -n 1)"
            free=1
        fi
    done
    return "$free"
}
INFRA_PORTS="$CE_KAFKA_PORT $CE_KAFKA_CONTROLLER_PORT $CE_PG_PORT"

# ensure_ce_topics: build/bin/ce-topics through make; if the libraries it links do not build yet,
# fall back to compiling the tool alone (it needs only the generated catalog and librdkafka).
ensure_ce_topics() {
    local tool="$BINDIR/ce-topics" out
    if out="$(make -C "$ROOT" --no-print-directory -s "$BUILD/bin/ce-topics" 2>&1)"; then
        return 0
    fi
    warn "make $BUILD/bin/ce-topics failed (the libraries it links do not build); compiling the tool alone"
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/    make: /' >&2
    make -C "$ROOT" --no-print-directory -s "$BUILD/gen/topics.h" ||
        die "cannot generate $BUILD/gen/topics.h from proto/topics.catalog"
    mkdir -p "$BINDIR"
    gcc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$ROOT/$BUILD/gen" \
        "$ROOT/libs/bus/bin/ce-topics.c" "$ROOT/$BUILD/gen/catalog.c" -lrdkafka -o "$tool" ||
        die "cannot compile ce-topics"
}
