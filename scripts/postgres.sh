#!/usr/bin/env bash
# The local PostgreSQL 15 cluster: Debian's server binaries, run as the unprivileged `postgres` OS
# user, data under var/pg, listening on 127.0.0.1:$CE_PG_PORT only. The system cluster (main on
# 5432) is never touched.
#   scripts/postgres.sh start       initdb once, start, then database, roles and schemas
#   scripts/postgres.sh stop        pg_ctl stop -m fast
#   scripts/postgres.sh status      exit 0 when running
#   scripts/postgres.sh url ROLE    the role's connection URL (the only place a password shows;
#                                   no TLS, no GSSAPI: loopback)
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGROOT="$VAR/pg"
PGDATA_DIR="$PGROOT/data"
PGSOCK="$PGROOT/run"
PGLOG="$LOGDIR/postgres.log"
SUPERUSER=postgres
# One role and schema per service, plus one for the libraries' integration tests.
ROLES="$(for s in $SERVICES platform-test; do printf '%s\n' "${s//-/_}"; done | paste -sd' ')"

as_pg() { runuser -u "$PG_OS_USER" -- "$@"; }

ensure_os_user() {
    if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        log "creating system user $PG_OS_USER"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash \
            "$PG_OS_USER"
    fi
}

# The server runs as postgres but lives in a root-owned checkout: it needs to traverse every
# directory above var/pg. Add o+x (search only, no listing) where that is missing.
ensure_traversable() {
    local d="$PGROOT"
    while [[ "$d" != / ]]; do
        d="$(dirname "$d")"
        if ! as_pg test -x "$d"; then
            note "granting search permission (o+x) on $d so $PG_OS_USER can reach var/pg"
            chmod o+x "$d"
        fi
    done
}

pg_running() {
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

init_cluster() {
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] && return 0
    [[ -x "$PG_BIN/initdb" ]] || die "$PG_BIN/initdb not found; run scripts/install-deps.sh"
    log "initdb ${PGDATA_DIR#"$ROOT"/} (superuser $SUPERUSER, scram-sha-256)"
    local supw pwtmp
    supw="$(secret_file pg-superuser)"
    rm -rf "$PGDATA_DIR"
    mkdir -p "$PGDATA_DIR"
    chown "$PG_OS_USER:" "$PGDATA_DIR"
    chmod 700 "$PGDATA_DIR"
    # initdb reads the password from a file the postgres user can open; $SECRETS is root-only,
    # so hand it a private copy next to the data dir and remove it right after.
    pwtmp="$PGROOT/.pwfile.$$"
    install -m 600 -o "$PG_OS_USER" "$supw" "$pwtmp"
    if ! as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$SUPERUSER" --auth=scram-sha-256 \
        --pwfile="$pwtmp" -E UTF8 --locale=C.UTF-8 >>"$PGLOG" 2>&1; then
        rm -f "$pwtmp"
        die "initdb failed; see ${PGLOG#"$ROOT"/}"
    fi
    rm -f "$pwtmp"
    echo "include_if_exists 'contentengine.conf'" >>"$PGDATA_DIR/postgresql.conf"
}

write_config() {
    # Rewritten on every start so port and paths follow the environment.
    as_pg tee "$PGDATA_DIR/contentengine.conf" >/dev/null <<CONF
# Written by scripts/postgres.sh; edit the script, not this file.
listen_addresses = '$CE_HOST'
port = $CE_PG_PORT
unix_socket_directories = '$PGSOCK'
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = off
log_min_messages = warning
# Bulk writes: with the defaults (128MB buffers, 1GB of WAL between checkpoints) a
# million-row import (~1.5GB of WAL) forces two checkpoints ~20 s apart, after each of which
# every index page touched is written whole into the WAL again; with these, none. Throughput
# did not change measurably on the shared 2-core machine (subscriber-manager README); the
# indexes of a million subscribers fit in the buffers. Durability is unchanged: fsync and
# synchronous_commit stay on.
shared_buffers = 1GB
wal_buffers = 64MB
max_wal_size = 4GB
min_wal_size = 1GB
checkpoint_timeout = 15min
wal_compression = lz4
CONF
}

# Superuser SQL over TCP; the password reaches psql through its environment, never argv or logs.
psql_super() {
    PGPASSWORD="$(<"$SECRETS/pg-superuser")" psql -X -q -v ON_ERROR_STOP=1 \
        -h "$CE_HOST" -p "$CE_PG_PORT" -U "$SUPERUSER" "$@"
}

ensure_roles() {
    local role pwf
    {
        # The statements carry passwords: keep them out of the server log even if one fails.
        echo "SET log_statement = 'none'; SET log_min_error_statement = 'panic';"
        echo "SELECT 'CREATE DATABASE $PG_DB' WHERE NOT EXISTS"
        echo "  (SELECT FROM pg_database WHERE datname = '$PG_DB') \\gexec"
        for role in $ROLES; do
            pwf="$(secret_file "pg-$role")"
            # Passwords are base64url: no quote can appear in them.
            cat <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role;
  END IF;
END \$\$;
ALTER ROLE $role WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD '$(<"$pwf")';
ALTER ROLE $role SET search_path = $role;
SQL
        done
    } | psql_super -d postgres >/dev/null
    {
        echo "SET client_min_messages = warning;" # no "already exists, skipping" on reruns
        echo "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        for role in $ROLES; do
            echo "CREATE SCHEMA IF NOT EXISTS $role AUTHORIZATION $role;"
            echo "ALTER SCHEMA $role OWNER TO $role;"
        done
        # The libraries' integration tests isolate each run in a schema of its own.
        echo "GRANT CREATE ON DATABASE $PG_DB TO platform_test;"
    } | psql_super -d "$PG_DB" >/dev/null
}

cmd_start() {
    ensure_os_user
    mkdir -p "$PGROOT" "$PGSOCK"
    chown "$PG_OS_USER:" "$PGSOCK"
    chmod 700 "$PGSOCK"
    ensure_traversable
    touch "$PGLOG"
    chown "$PG_OS_USER:" "$PGLOG"
    init_cluster
    if pg_running; then
        log "postgres already running on $CE_HOST:$CE_PG_PORT"
    else
        port_listening "$CE_PG_PORT" &&
            die "port $CE_PG_PORT is taken by a process that is not our PostgreSQL (ss -ltnp 'sport = :$CE_PG_PORT')"
        write_config
        log "starting postgres on $CE_HOST:$CE_PG_PORT"
        local tries=0
        until as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t 60 start >/dev/null; do
            # 55432 lies in Linux's ephemeral port range: an outgoing connection of some other
            # program can hold it for a while (nothing listens, yet the bind fails).
            if ((++tries < 20)) && ! port_listening "$CE_PG_PORT" &&
                tail -n 5 "$PGLOG" | grep -q 'Address already in use'; then
                note "port $CE_PG_PORT is held by an outgoing connection for now; retrying"
                sleep 1
                continue
            fi
            tail -n 20 "$PGLOG" >&2
            die "postgres did not start; see ${PGLOG#"$ROOT"/}"
        done
    fi
    ensure_roles
    note "database $PG_DB with roles: $ROLES"
}

cmd_stop() {
    if pg_running; then
        log "stopping postgres"
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null
    else
        log "postgres not running"
    fi
}

cmd_status() {
    if pg_running; then
        echo "postgres: running on $CE_HOST:$CE_PG_PORT, database $PG_DB"
    else
        echo "postgres: stopped"
        return 1
    fi
}

cmd_url() {
    local role="${1:-}"
    [[ -n "$role" ]] || die "usage: scripts/postgres.sh url ROLE (one of: $ROLES)"
    role="${role//-/_}"
    [[ " $ROLES " == *" $role "* ]] || die "unknown role '$role' (one of: $ROLES)"
    [[ -s "$SECRETS/pg-$role" ]] || die "no password for $role yet; run scripts/postgres.sh start"
    # Loopback, and the local server has no TLS or Kerberos: without these libpq would try GSSAPI
    # encryption (initialising Kerberos) and then TLS (an OpenSSL context) on every connection
    # before falling back, about 1 MB resident per service for nothing. Production URLs keep
    # their own settings.
    printf 'postgresql://%s:%s@%s:%s/%s?sslmode=disable&gssencmode=disable\n' "$role" \
        "$(<"$SECRETS/pg-$role")" "$CE_HOST" "$CE_PG_PORT" "$PG_DB"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) cmd_url "${2:-}" ;;
*) die "usage: scripts/postgres.sh {start|stop|status|url ROLE}" ;;
esac
