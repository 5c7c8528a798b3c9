#!/usr/bin/env bash
# What PostgreSQL alone can ingest of an import's exact rows: the ceiling of the CSV import.
#
#   BENCH_KEEP_SCHEMA=ceilsrc scripts/bench-subscribers.sh    # a real import, schema kept
#   scripts/pg-ingest-ceiling.sh ceilsrc                       # then this; drops nothing of it
#
# Dumps that import's subscribers and subscriber_secrets rows (binary COPY), then loads them
# with binary COPY straight into copies of the tables (same columns and checks) in a scratch
# schema: with this schema's indexes (keys, the blind index, GIN on attributes) in one session
# and in two concurrent sessions (half the rows each); with what migration 004 dropped (the
# deferred foreign key, the status and created_at indexes) to show what it cost; with the keys
# and the blind index only. Last, the least any schema can do: the subscriber and its secrets as
# one row in one table with only the two keys the features need (the id, and the blind index
# that finds an e-mail and makes a re-run skip). Prints wall rows/s and the backends' CPU seconds (from /proc: needs root, as the local
# stack runs PostgreSQL as its own user on this machine). No service, no Kafka, no validation,
# no encryption: only the writes the import cannot avoid.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
src="${1:-}"
[[ "$src" =~ ^[a-z_][a-z0-9_]*$ ]] || die "usage: scripts/pg-ingest-ceiling.sh SCHEMA (kept by BENCH_KEEP_SCHEMA)"
URL="$(scripts/postgres.sh url platform_test)"
S=ceiling_$$
D="$(mktemp -d)"
trap 'rm -rf "$D"; psql -X -q "$URL" -c "DROP SCHEMA IF EXISTS $S CASCADE" >/dev/null 2>&1 || true' EXIT

n="$(psql -X -At "$URL" -c "SELECT count(*) FROM $src.subscribers")" || die "no $src.subscribers"
# A subscriber and its secrets as one row: the one-table variant's rows.
one_row="SELECT s.*, x.email_index, x.email_enc, x.name_enc, x.consent_ip_enc, x.wrapped_key FROM $src.subscribers s JOIN $src.subscriber_secrets x ON x.subscriber_id = s.id"
half="$(psql -X -At "$URL" -c "SELECT id FROM $src.subscribers ORDER BY id OFFSET $((n / 2)) LIMIT 1")"
psql -X -q -v ON_ERROR_STOP=1 "$URL" <<SQL
\\copy (SELECT * FROM $src.subscribers ORDER BY id) TO '$D/subs.bin' (FORMAT binary)
\\copy (SELECT * FROM $src.subscriber_secrets ORDER BY subscriber_id) TO '$D/secrets.bin' (FORMAT binary)
\\copy (SELECT * FROM $src.subscribers WHERE id < '$half' ORDER BY id) TO '$D/subs1.bin' (FORMAT binary)
\\copy (SELECT * FROM $src.subscribers WHERE id >= '$half' ORDER BY id) TO '$D/subs2.bin' (FORMAT binary)
\\copy ($one_row WHERE s.id < '$half' ORDER BY s.id) TO '$D/one1.bin' (FORMAT binary)
\\copy ($one_row WHERE s.id >= '$half' ORDER BY s.id) TO '$D/one2.bin' (FORMAT binary)
\\copy ($one_row ORDER BY s.id) TO '$D/one.bin' (FORMAT binary)
\\copy (SELECT * FROM $src.subscriber_secrets WHERE subscriber_id < '$half' ORDER BY subscriber_id) TO '$D/secrets1.bin' (FORMAT binary)
\\copy (SELECT * FROM $src.subscriber_secrets WHERE subscriber_id >= '$half' ORDER BY subscriber_id) TO '$D/secrets2.bin' (FORMAT binary)
SQL

# setup FK(0|1) SECONDARY_INDEXES(0 none | 1 GIN on attributes | 2 and status, created_at):
# fresh copies of the two tables
setup() {
    local sql="SET client_min_messages = warning; DROP SCHEMA IF EXISTS $S CASCADE; CREATE SCHEMA $S;
      CREATE TABLE $S.subscribers (LIKE $src.subscribers INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
      ALTER TABLE $S.subscribers ADD PRIMARY KEY (id);
      CREATE TABLE $S.subscriber_secrets (LIKE $src.subscriber_secrets INCLUDING DEFAULTS);
      ALTER TABLE $S.subscriber_secrets ADD PRIMARY KEY (subscriber_id);
      ALTER TABLE $S.subscriber_secrets ADD UNIQUE (email_index);"
    [[ "$1" == 1 ]] && sql+="ALTER TABLE $S.subscriber_secrets ADD FOREIGN KEY (subscriber_id)
      REFERENCES $S.subscribers (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;"
    [[ "$2" -ge 1 ]] && sql+="CREATE INDEX ON $S.subscribers USING gin (attributes jsonb_path_ops);"
    [[ "$2" == 2 ]] && sql+="CREATE INDEX ON $S.subscribers (status); CREATE INDEX ON $S.subscribers (created_at);"
    psql -X -q -v ON_ERROR_STOP=1 "$URL" -c "$sql" >/dev/null
}

# setup_one: one table holding the subscriber and its secrets, keyed by id and the blind index
setup_one() {
    psql -X -q -v ON_ERROR_STOP=1 "$URL" -c "SET client_min_messages = warning;
      DROP SCHEMA IF EXISTS $S CASCADE; CREATE SCHEMA $S;
      CREATE TABLE $S.one AS $one_row WITH NO DATA;
      ALTER TABLE $S.one ADD PRIMARY KEY (id); ALTER TABLE $S.one ADD UNIQUE (email_index);" >/dev/null
}

ONE=0
# load SUFFIX: one session, one transaction, both COPYs; writes its backend's CPU ticks to $D/cpu.SUFFIX
load() {
    {
        echo "SELECT pg_backend_pid() AS bp \\gset"
        echo "\\setenv BP :bp"
        echo "\\! awk '{print \$14 + \$15}' /proc/\$BP/stat > $D/cpu0.$1"
        echo "BEGIN;"
        if [[ "$ONE" == 1 ]]; then
            echo "\\copy $S.one FROM '$D/one$1.bin' (FORMAT binary)"
        else
            echo "\\copy $S.subscribers FROM '$D/subs$1.bin' (FORMAT binary)"
            echo "\\copy $S.subscriber_secrets FROM '$D/secrets$1.bin' (FORMAT binary)"
        fi
        echo "COMMIT;"
        echo "\\! awk '{print \$14 + \$15}' /proc/\$BP/stat > $D/cpu1.$1"
    } | psql -X -q -v ON_ERROR_STOP=1 "$URL"
    echo $(($(cat "$D/cpu1.$1") - $(cat "$D/cpu0.$1"))) >"$D/cpu.$1"
}

# run LABEL FK INDEXES SESSIONS
run() {
    local t0 t1 cpu=0 f
    if [[ "$2" == one ]]; then
        ONE=1
        setup_one
    else
        ONE=0
        setup "$2" "$3"
    fi
    rm -f "$D"/cpu.*
    t0="$(date +%s.%N)"
    if [[ "$4" == 2 ]]; then
        load 1 &
        load 2 &
        wait
    else
        load ""
    fi
    t1="$(date +%s.%N)"
    for f in "$D"/cpu.*; do cpu=$((cpu + $(cat "$f"))); done
    python3 -c 'import sys; n, w, c = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]), int(sys.argv[4]) / int(sys.argv[5])
print(f"{sys.argv[6]:52s} {n / w:9,.0f} rows/s wall ({w:5.1f} s)   backend CPU {c:5.1f} s = {n / c:9,.0f} rows per CPU-second")' \
        "$n" "$t0" "$t1" "$cpu" "$(getconf CLK_TCK)" "$1"
}

log "binary COPY of $n subscribers (+ their secrets) into the real tables (load: $(uptime | sed 's/.*average: //'))"
run "this schema, 1 session" 0 1 1
run "this schema, 2 sessions" 0 1 2
run "before 004 (+ deferred FK, status, created_at), 1 session" 1 2 1
run "primary keys + email_index only, 1 session" 0 0 1
run "primary keys + email_index only, 2 sessions" 0 0 2
run "one table, id + email_index only, 1 session" one - 1
run "one table, id + email_index only, 2 sessions" one - 2
note "load at the end: $(uptime | sed 's/.*average: //')"
