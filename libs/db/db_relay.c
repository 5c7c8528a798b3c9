/*
 * The outbox relay: publishes outbox rows to Kafka exactly once.
 *
 * One leader per service: a dedicated connection holds pg_try_advisory_lock (session level)
 * and LISTENs for the outbox trigger's NOTIFY; other replicas retry the lock now and then.
 * The leader's transactional producer (transactional.id "outbox-<name>") fences any earlier
 * instance on init; then recovery reads the relay's last checkpoint (read_committed) and marks
 * the rows it names as sent. Each batch: select unsent rows by id, produce them and an
 * OutboxCheckpoint of their ids in one Kafka transaction, commit, then mark the rows sent. A
 * crash after the commit and before the mark leaves exactly the checkpoint's rows unmarked,
 * which the next leader's recovery marks: no row is published twice, none is lost.
 *
 * One asynchronous step at a time (op_inflight); relay_step() decides the next one from the
 * state, so every completion just updates the state and calls it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "contentengine/v1/platform.pb-c.h"
#include "db_internal.h"

#define RELAY_CHANNEL         "contentengine_outbox"
#define RELAY_CHECKPOINT_TYPE "contentengine.platform.outbox.checkpoint.v1"

static const char relay_lock_sql[] =
    "SELECT pg_try_advisory_lock(hashtextextended('contentengine.outbox-relay:' || "
    "coalesce(current_schema(), '') || ':' || $1, 0)) AS locked, current_schema() AS schema";

static const char relay_listen_sql[] = "LISTEN " RELAY_CHANNEL;

/* At most $1 rows, and no more rows once $2 payload bytes are reached (always at least one):
 * a bulk row holds thousands of records, and the Kafka transaction and this result stay
 * bounded. octet_length of a TOASTed value reads only its header. The result comes in binary
 * format (dbi_query_binary): key and payload as raw bytes rather than hex (a bulk row's
 * payload is megabytes), the numbers as big-endian int8/int4/float8, the text columns as
 * their bytes; headers is cast to text (jsonb's binary form has a version byte). */
static const char relay_select_sql[] =
    "SELECT id, topic, kafka_partition, key, ce_id, ce_type, "
    "(extract(epoch FROM ce_time) * 1000)::bigint AS ce_time_ms, ce_subject, content_type, "
    "traceparent, headers::text AS headers, payload, "
    "extract(epoch FROM clock_timestamp() - created_at)::float8 AS age_s FROM (SELECT o.*, "
    "sum(octet_length(payload)) OVER (ORDER BY id) AS upto FROM outbox o WHERE sent_at IS NULL "
    "ORDER BY id LIMIT $1) b WHERE upto - octet_length(payload) < $2::bigint ORDER BY id";

/* Payload bytes per Kafka transaction before the next row waits for the next one. */
#define RELAY_MAX_BATCH_BYTES (8 * 1024 * 1024)

static const char relay_mark_sql[] =
    "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[]) AND sent_at IS NULL";

static const char relay_pending_sql[] =
    "SELECT count(*) AS n, coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)"
    "::float8 AS age_s FROM outbox WHERE sent_at IS NULL";

/* In chunks, so that a long backlog of sent rows never holds locks for long. */
static const char relay_cleanup_sql[] =
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NOT NULL AND "
    "sent_at < now() - $1::bigint * interval '1 millisecond' ORDER BY id LIMIT 10000)";

struct db_relay {
    uv_loop_t *loop;
    db_pool *pool;
    char *brokers, *name, *source, *ckpt_topic, *txn_id, *app_name;
    int batch;
    int64_t sweep_ms, leader_retry_ms, retention_ms, cleanup_ms, txn_timeout_ms;
    dbi_conn conn; /* dedicated: the leader lock and LISTEN */
    uv_timer_t sweep, retry, cleanup;
    char schema[128];
    /* state */
    bool op_inflight;
    bool leader;    /* the lock is held on the live dedicated connection */
    bool listening; /* LISTEN done on that connection */
    bool follower_logged;
    bus_txn_producer *txp;
    bool recovered;  /* the producer is initialized and the last checkpoint marked */
    bool want_batch; /* NOTIFY, sweep, or the last batch was full */
    unsigned attempt;
    int64_t *batch_ids; /* ids in the Kafka transaction being built / committed */
    size_t nbatch;
    size_t batch_bytes; /* payload bytes in it: at RELAY_MAX_BATCH_BYTES rows may wait behind */
    int64_t *mark_ids;  /* committed to Kafka, not yet marked sent */
    size_t nmark;
    bool mark_full;   /* the marked batch was full: look for more at once */
    int side_queries; /* pending gauge and cleanup statements in flight */
    uint64_t published;
    /* closing */
    bool closing;
    int open_handles;
    void (*close_done)(void *data);
    void *close_data;
    char crash_after[32];
    core_metric *m_published, *m_pending, *m_lag;
};

static void relay_step(db_relay *r);

static void relay_crash_point(const db_relay *r, const char *point)
{
#ifdef CORE_TEST_BUILD
    if (r->crash_after[0] && strcmp(r->crash_after, point) == 0) {
        core_log_warn("outbox relay crash point reached (DB_OUTBOX_CRASH_AFTER)",
                      CORE_F_STR("point", point), CORE_F_STR("relay", r->name));
        _exit(137);
    }
#else
    (void)r;
    (void)point;
#endif
}

/* ---------------------------------------------------------------- timers and backoff */

static void relay_retry_cb(uv_timer_t *t)
{
    relay_step(t->data);
}

static void relay_backoff(db_relay *r, const char *what, const char *err)
{
    int64_t delay = core_backoff_ms(r->attempt, 200, 10000);
    if (delay < 50) delay = 50;
    r->attempt++;
    core_log_warn("outbox relay step failed", CORE_F_STR("relay", r->name),
                  CORE_F_STR("step", what), CORE_F_STR("error", err ? err : ""),
                  CORE_F_INT("retry_in_ms", delay));
    if (!r->closing) uv_timer_start(&r->retry, relay_retry_cb, (uint64_t)delay, 0);
}

static void relay_op_done(db_relay *r)
{
    r->op_inflight = false;
    relay_step(r);
}

/* ---------------------------------------------------------------- dedicated connection */

static void relay_conn_send(db_relay *r, const char *sql, int nparams, const char *const *vals,
                            db_query_cb cb)
{
    char err[DBI_ERRLEN];
    dbi_work *w =
        dbi_work_new(r->pool, DBI_W_QUERY, sql, nparams, vals, NULL, NULL, err, sizeof err);
    w->qcb = cb;
    w->data = r;
    r->op_inflight = true;
    if (w->err || !dbi_conn_idle(&r->conn))
        dbi_defer(r->pool, w, w->err ? w->err : "relay connection busy", DBI_SQLSTATE_CONN_LOST);
    else
        dbi_conn_send(&r->conn, w);
}

static void relay_conn_ready(dbi_conn *c)
{
    db_relay *r = c->owner;
    relay_step(r);
}

static void relay_conn_done(dbi_conn *c, dbi_work *w, PGresult *res)
{
    (void)c;
    dbi_work_finish(w, res, NULL, NULL);
}

static void relay_conn_down(dbi_conn *c, const char *err, bool was_ready)
{
    db_relay *r = c->owner;
    if (was_ready && r->leader)
        core_log_warn("outbox relay lost its leader connection", CORE_F_STR("relay", r->name),
                      CORE_F_STR("error", err));
    /* The session's advisory lock went with it: another replica may lead now. */
    r->leader = false;
    r->listening = false;
}

static void relay_conn_notify(dbi_conn *c, const PGnotify *n)
{
    db_relay *r = c->owner;
    if (!r->leader || (n->extra && strcmp(n->extra, r->schema) != 0)) return;
    r->want_batch = true;
    relay_step(r);
}

static const dbi_conn_ops relay_conn_ops = {
    .ready = relay_conn_ready,
    .done = relay_conn_done,
    .down = relay_conn_down,
    .notify = relay_conn_notify,
};

/* ---------------------------------------------------------------- leadership */

static void relay_locked(const db_result *res, void *data)
{
    db_relay *r = data;
    if (!db_result_ok(res)) {
        relay_backoff(r, "leader lock", db_result_error(res));
        relay_op_done(r);
        return;
    }
    const char *locked = db_result_get(res, 0, "locked");
    const char *schema = db_result_get(res, 0, "schema");
    if (!schema) {
        relay_backoff(r, "leader lock", "the search_path names no existing schema");
        relay_op_done(r);
        return;
    }
    dbi_strlcpy(r->schema, schema, sizeof r->schema);
    if (locked && strcmp(locked, "t") == 0) {
        r->leader = true;
        r->follower_logged = false;
        r->attempt = 0;
        core_log_info("outbox relay is the leader", CORE_F_STR("relay", r->name),
                      CORE_F_STR("schema", r->schema));
    } else {
        if (!r->follower_logged)
            core_log_info("outbox relay waits: another replica leads", CORE_F_STR("relay", r->name),
                          CORE_F_STR("schema", r->schema));
        r->follower_logged = true;
        uv_timer_start(&r->retry, relay_retry_cb, (uint64_t)r->leader_retry_ms, 0);
    }
    relay_op_done(r);
}

static void relay_listened(const db_result *res, void *data)
{
    db_relay *r = data;
    if (db_result_ok(res)) {
        r->listening = true;
        r->want_batch = true; /* rows may have come before LISTEN */
    } else {
        relay_backoff(r, "listen", db_result_error(res));
    }
    relay_op_done(r);
}

/* ---------------------------------------------------------------- the producer */

static void relay_producer_closed(void *data)
{
    db_relay *r = data;
    relay_op_done(r);
}

static void relay_close_producer(db_relay *r)
{
    bus_txn_producer *t = r->txp;
    r->txp = NULL;
    r->recovered = false;
    r->op_inflight = true;
    bus_txn_close(t, relay_producer_closed, r);
}

static void relay_initialized(void *data, const char *err, bool abortable)
{
    (void)abortable;
    db_relay *r = data;
    if (err) {
        relay_backoff(r, "init_transactions", err);
        relay_close_producer(r); /* op stays in flight until closed */
        return;
    }
    relay_op_done(r);
}

static void relay_start_producer(db_relay *r)
{
    char err[512];
    bus_txn_config cfg = {
        .brokers = r->brokers,
        .client_id = r->txn_id,
        .source = r->source,
        .transactional_id = r->txn_id,
        .transaction_timeout_ms = r->txn_timeout_ms,
    };
    r->txp = bus_txn_new(r->loop, &cfg, err, sizeof err);
    if (!r->txp) {
        relay_backoff(r, "producer", err);
        return;
    }
    r->op_inflight = true;
    bus_txn_init(r->txp, relay_initialized, r);
}

/* ---------------------------------------------------------------- recovery and marking */

static void relay_marked(const db_result *res, void *data)
{
    db_relay *r = data;
    if (!db_result_ok(res)) {
        /* The ids stay in mark_ids: the next step tries again. */
        relay_backoff(r, "mark sent", db_result_error(res));
        relay_op_done(r);
        return;
    }
    free(r->mark_ids);
    r->mark_ids = NULL;
    r->nmark = 0;
    if (r->mark_full) r->want_batch = true;
    r->mark_full = false;
    r->attempt = 0;
    relay_op_done(r);
}

static void relay_mark(db_relay *r)
{
    core_buf b = {0};
    dbi_int64_array(&b, r->mark_ids, r->nmark);
    const char *vals[1] = {b.data};
    r->op_inflight = true;
    db_query(r->pool, relay_mark_sql, 1, vals, relay_marked, r);
    core_buf_free(&b);
}

static void relay_checkpoint_read(void *data, const char *err, bool found, const void *value,
                                  size_t len)
{
    db_relay *r = data;
    if (err) {
        relay_backoff(r, "read checkpoint", err);
        relay_op_done(r);
        return;
    }
    if (found) {
        Contentengine__V1__OutboxCheckpoint *ck =
            contentengine__v1__outbox_checkpoint__unpack(NULL, len, value);
        if (!ck) {
            core_log_error("outbox checkpoint does not decode: ignored",
                           CORE_F_STR("relay", r->name), CORE_F_STR("topic", r->ckpt_topic));
        } else {
            if (ck->relay && strcmp(ck->relay, r->name) == 0 && ck->n_outbox_ids > 0) {
                r->mark_ids = calloc(ck->n_outbox_ids, sizeof *r->mark_ids);
                if (!r->mark_ids) abort();
                for (size_t i = 0; i < ck->n_outbox_ids; i++)
                    r->mark_ids[i] = ck->outbox_ids[i];
                r->nmark = ck->n_outbox_ids;
                r->mark_full = true;
            }
            core_log_info("outbox relay recovered from its checkpoint",
                          CORE_F_STR("relay", r->name), CORE_F_INT("ids", (long)r->nmark),
                          CORE_F_INT("committed_unix_ms", ck->committed_unix_ms));
            contentengine__v1__outbox_checkpoint__free_unpacked(ck, NULL);
        }
    }
    r->recovered = true;
    r->want_batch = true;
    relay_op_done(r);
}

/* ---------------------------------------------------------------- a batch */

static void relay_aborted(void *data, const char *err, bool abortable)
{
    (void)abortable;
    db_relay *r = data;
    r->nbatch = 0;
    r->want_batch = true;
    if (err) {
        relay_backoff(r, "abort_transaction", err);
        relay_close_producer(r);
        return;
    }
    relay_op_done(r);
}

static void relay_abort(db_relay *r, const char *what, const char *err)
{
    relay_backoff(r, what, err);
    bus_txn_abort(r->txp, relay_aborted, r);
}

static void relay_committed(void *data, const char *err, bool abortable)
{
    db_relay *r = data;
    if (err) {
        if (abortable) {
            relay_abort(r, "commit_transaction", err);
            return;
        }
        /* Whether the commit took effect is unknown: a new producer fences this one, and
         * its recovery marks the rows if the checkpoint committed. */
        r->nbatch = 0;
        relay_backoff(r, "commit_transaction", err);
        relay_close_producer(r);
        return;
    }
    relay_crash_point(r, "kafka_commit");
    r->published += r->nbatch;
    core_counter_add(r->m_published, (double)r->nbatch, r->name);
    r->mark_ids = r->batch_ids;
    r->nmark = r->nbatch;
    /* A full batch, or one cut short by RELAY_MAX_BATCH_BYTES (the select stops adding rows
     * once the payload reaches it, so a cut batch holds at least that much), may have rows
     * behind it: look again at once. Otherwise NOTIFY or the sweep brings the next. */
    r->mark_full = (int)r->nbatch >= r->batch || r->batch_bytes >= RELAY_MAX_BATCH_BYTES;
    r->batch_ids = NULL;
    r->nbatch = 0;
    relay_op_done(r);
}

/* A decoded bulk row is thousands of small allocations (a record, its strings and bytes
 * each): an arena takes them from a few large blocks, freed at once after producing. */
typedef struct relay_arena {
    uint8_t **blocks;
    size_t n, used, size; /* blocks, bytes used of the last one, its size */
    size_t next;          /* size of the next block */
} relay_arena;

static void *relay_arena_alloc(void *data, size_t size)
{
    relay_arena *a = data;
    size = (size + 15) & ~(size_t)15;
    if (!a->n || size > a->size - a->used) {
        size_t bs = size > a->next ? size : a->next;
        a->blocks = core_xrealloc(a->blocks, (a->n + 1) * sizeof *a->blocks);
        a->blocks[a->n] = malloc(bs);
        if (!a->blocks[a->n]) abort();
        a->n++;
        a->size = bs;
        a->used = 0;
    }
    void *p = a->blocks[a->n - 1] + a->used;
    a->used += size;
    return p;
}

static void relay_arena_free(void *data, void *p)
{
    (void)data;
    (void)p; /* all at once: relay_arena_release */
}

static void relay_arena_release(relay_arena *a)
{
    for (size_t b = 0; b < a->n; b++)
        free(a->blocks[b]);
    free(a->blocks);
}

/* A bulk row (DB_OUTBOX_BULK_TYPE): each record as its own message, with the row's topic,
 * partition, time, content type, traceparent and headers (in base). */
static bool relay_produce_bulk(db_relay *r, const bus_record *base, const uint8_t *value,
                               size_t value_len, int64_t id, char *err, size_t errlen)
{
    /* decoded, the records take about their encoded size plus their structs */
    relay_arena arena = {.next = value_len * 2 + 65536};
    ProtobufCAllocator alloc = {relay_arena_alloc, relay_arena_free, &arena};
    Contentengine__V1__OutboxBulk *bulk = contentengine__v1__outbox_bulk__unpack(
        &alloc, value_len, value ? value : (const uint8_t *)"");
    if (!bulk) {
        relay_arena_release(&arena);
        snprintf(err, errlen, "outbox row %lld: bulk payload does not decode", (long long)id);
        return false;
    }
    bool ok = true;
    for (size_t k = 0; ok && k < bulk->n_records; k++) {
        const Contentengine__V1__OutboxRecord *e = bulk->records[k];
        bus_record rec = *base;
        rec.key = e->key.len ? e->key.data : NULL;
        rec.key_len = e->key.len;
        rec.value = e->payload.len ? (const void *)e->payload.data : (const void *)"";
        rec.value_len = e->payload.len;
        rec.ce_id = e->ce_id;
        rec.ce_type = e->ce_type[0] ? e->ce_type : bulk->default_ce_type;
        rec.ce_subject = e->ce_subject[0] ? e->ce_subject : NULL;
        if (e->subject_is_key && e->key.len) {
            char *subject = relay_arena_alloc(&arena, e->key.len + 1);
            memcpy(subject, e->key.data, e->key.len);
            subject[e->key.len] = '\0';
            rec.ce_subject = subject;
        }
        ok = bus_txn_produce(r->txp, &rec, err, errlen) == 0;
    }
    relay_arena_release(&arena);
    return ok;
}

/* Row i of the select (binary format): columns by their position in relay_select_sql. */
static bool relay_produce_row(db_relay *r, const db_result *res, int i, int64_t id, char *err,
                              size_t errlen)
{
    size_t key_len = 0, value_len = 0;
    const uint8_t *key = db_result_bytea(res, i, 3, &key_len);
    const uint8_t *value = db_result_bytea(res, i, 11, &value_len);
    r->batch_bytes += value_len;
    int64_t partition = BUS_PARTITION_ANY, ce_time_ms = 0;
    if (!db_result_isnull(res, i, 2)) db_result_int64(res, i, 2, &partition);
    db_result_int64(res, i, 6, &ce_time_ms);
    dbi_header *hs = NULL;
    size_t nh = 0;
    if (!dbi_headers_decode(db_result_value(res, i, 10), &hs, &nh)) {
        snprintf(err, errlen, "outbox row %lld: headers do not decode", (long long)id);
        return false;
    }
    bus_header *bh = nh ? calloc(nh, sizeof *bh) : NULL;
    if (nh && !bh) abort();
    for (size_t k = 0; k < nh; k++)
        bh[k] = (bus_header){hs[k].name, hs[k].value, hs[k].len};
    bus_record rec = {
        .topic = db_result_value(res, i, 1),
        .partition = (int32_t)partition,
        .key = key,
        .key_len = key_len,
        .value = value ? (const void *)value : (const void *)"",
        .value_len = value_len,
        .ce_type = db_result_value(res, i, 5),
        .ce_id = db_result_value(res, i, 4),
        .ce_subject = db_result_value(res, i, 7),
        .ce_time_ms = ce_time_ms,
        .content_type = db_result_value(res, i, 8),
        .traceparent = db_result_value(res, i, 9),
        .headers = bh,
        .nheaders = nh,
    };
    bool ok;
    if (rec.ce_type && strcmp(rec.ce_type, DB_OUTBOX_BULK_TYPE) == 0)
        ok = relay_produce_bulk(r, &rec, value, value_len, id, err, errlen);
    else
        ok = bus_txn_produce(r->txp, &rec, err, errlen) == 0;
    free(bh);
    free(hs);
    return ok;
}

static bool relay_produce_checkpoint(db_relay *r, char *err, size_t errlen)
{
    Contentengine__V1__OutboxCheckpoint ck = CONTENTENGINE__V1__OUTBOX_CHECKPOINT__INIT;
    ck.relay = r->name;
    ck.outbox_ids = r->batch_ids;
    ck.n_outbox_ids = r->nbatch;
    ck.committed_unix_ms = core_now_unix_ms();
    size_t len = contentengine__v1__outbox_checkpoint__get_packed_size(&ck);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) abort();
    contentengine__v1__outbox_checkpoint__pack(&ck, buf);
    bus_record rec = {
        .topic = r->ckpt_topic,
        .partition = 0, /* the catalog gives the topic one partition; bus_read_last reads 0 */
        .key = r->name,
        .key_len = strlen(r->name),
        .value = buf,
        .value_len = len,
        .ce_type = RELAY_CHECKPOINT_TYPE,
    };
    int rc = bus_txn_produce(r->txp, &rec, err, errlen);
    free(buf);
    return rc == 0;
}

static void relay_selected(const db_result *res, void *data)
{
    db_relay *r = data;
    if (!db_result_ok(res)) {
        r->want_batch = true;
        relay_backoff(r, "select outbox", db_result_error(res));
        relay_op_done(r);
        return;
    }
    int n = db_result_rows(res);
    if (n == 0 || !r->txp || !r->recovered) {
        if (n == 0) core_gauge_set(r->m_lag, 0, r->name);
        relay_op_done(r);
        return;
    }
    double age = 0;
    dbi_result_double(res, 0, db_result_column(res, "age_s"), &age);
    core_gauge_set(r->m_lag, age, r->name);
    free(r->batch_ids);
    r->batch_ids = calloc((size_t)n, sizeof *r->batch_ids);
    if (!r->batch_ids) abort();
    r->nbatch = 0;
    r->batch_bytes = 0;
    for (int i = 0; i < n; i++) {
        if (!db_result_int64(res, i, 0, &r->batch_ids[i])) {
            /* Never checkpoint a row under a wrong id: it would be published again. */
            r->want_batch = true;
            relay_backoff(r, "select outbox", "an outbox id does not decode");
            relay_op_done(r);
            return;
        }
    }
    r->nbatch = (size_t)n;
    char err[512];
    if (bus_txn_begin(r->txp, err, sizeof err) != 0) {
        r->nbatch = 0;
        r->want_batch = true;
        relay_backoff(r, "begin_transaction", err);
        relay_close_producer(r);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (!relay_produce_row(r, res, i, r->batch_ids[i], err, sizeof err)) {
            r->want_batch = true;
            relay_abort(r, "produce", err);
            return;
        }
    }
    if (!relay_produce_checkpoint(r, err, sizeof err)) {
        r->want_batch = true;
        relay_abort(r, "produce checkpoint", err);
        return;
    }
    relay_crash_point(r, "kafka_produce");
    bus_txn_commit(r->txp, relay_committed, r);
}

/* ---------------------------------------------------------------- the state machine */

static void relay_finish_close(db_relay *r);

static void relay_step(db_relay *r)
{
    if (r->op_inflight) return;
    if (r->closing) {
        relay_finish_close(r);
        return;
    }
    if (uv_is_active((uv_handle_t *)&r->retry)) return; /* backing off, or a follower */
    if (!r->leader) {
        if (r->txp) {
            relay_close_producer(r);
        } else if (dbi_conn_idle(&r->conn)) {
            const char *vals[1] = {r->name};
            relay_conn_send(r, relay_lock_sql, 1, vals, relay_locked);
        }
        return;
    }
    if (!r->listening) {
        relay_conn_send(r, relay_listen_sql, 0, NULL, relay_listened);
    } else if (!r->txp) {
        relay_start_producer(r);
    } else if (!r->recovered) {
        r->op_inflight = true;
        bus_read_last(r->loop, r->brokers, r->ckpt_topic, 0, r->name, strlen(r->name),
                      relay_checkpoint_read, r);
    } else if (r->nmark > 0) {
        relay_mark(r);
    } else if (r->want_batch) {
        r->want_batch = false;
        char limit[16];
        snprintf(limit, sizeof limit, "%d", r->batch);
        char bytes[24];
        snprintf(bytes, sizeof bytes, "%d", RELAY_MAX_BATCH_BYTES);
        const char *vals[2] = {limit, bytes};
        r->op_inflight = true;
        dbi_query_binary(r->pool, relay_select_sql, 2, vals, relay_selected, r);
    }
}

/* ---------------------------------------------------------------- periodic work */

static void relay_pending_done(const db_result *res, void *data)
{
    db_relay *r = data;
    r->side_queries--;
    if (db_result_ok(res)) {
        int64_t n = 0;
        db_result_int64(res, 0, 0, &n);
        core_gauge_set(r->m_pending, (double)n, r->name);
        double age = 0;
        if (!r->op_inflight && dbi_result_double(res, 0, db_result_column(res, "age_s"), &age))
            core_gauge_set(r->m_lag, age, r->name);
    }
    relay_step(r);
}

static void relay_sweep_cb(uv_timer_t *t)
{
    db_relay *r = t->data;
    if (!r->leader || r->closing) return;
    r->want_batch = true;
    r->side_queries++;
    db_query(r->pool, relay_pending_sql, 0, NULL, relay_pending_done, r);
    relay_step(r);
}

static void relay_cleanup_done(const db_result *res, void *data)
{
    db_relay *r = data;
    r->side_queries--;
    if (!db_result_ok(res))
        core_log_warn("outbox cleanup failed", CORE_F_STR("relay", r->name),
                      CORE_F_STR("error", db_result_error(res)));
    else if (db_result_affected(res) > 0)
        core_log_info("outbox cleanup", CORE_F_STR("relay", r->name),
                      CORE_F_INT("deleted", db_result_affected(res)));
    relay_step(r);
}

static void relay_cleanup_cb(uv_timer_t *t)
{
    db_relay *r = t->data;
    if (!r->leader || r->closing) return;
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)r->retention_ms);
    const char *vals[1] = {ms};
    r->side_queries++;
    db_query(r->pool, relay_cleanup_sql, 1, vals, relay_cleanup_done, r);
}

/* ---------------------------------------------------------------- lifecycle */

db_relay *db_outbox_relay_new(uv_loop_t *loop, db_pool *pool, const db_relay_config *cfg, char *err,
                              size_t errlen)
{
    const char *problem = NULL;
    if (!loop || !pool || !cfg)
        problem = "outbox relay: loop, pool and config are required";
    else if (!cfg->brokers || !*cfg->brokers)
        problem = "outbox relay: brokers is required";
    else if (!cfg->name || !*cfg->name)
        problem = "outbox relay: name is required";
    else if (strlen(cfg->name) > 200)
        problem = "outbox relay: name is too long";
    else if (cfg->batch_size < 0 || cfg->batch_size > 10000)
        problem = "outbox relay: batch_size must be between 1 and 10000";
    else if (cfg->sweep_interval_ms < 0 || cfg->leader_retry_ms < 0 || cfg->retention_ms < 0 ||
             cfg->cleanup_interval_ms < 0 || cfg->transaction_timeout_ms < 0)
        problem = "outbox relay: intervals must not be negative";
    if (problem) {
        if (err && errlen) snprintf(err, errlen, "%s", problem);
        return NULL;
    }
    db_relay *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->loop = loop;
    r->pool = pool;
    r->brokers = core_xstrdup(cfg->brokers);
    r->name = core_xstrdup(cfg->name);
    core_buf b = {0};
    if (cfg->source && *cfg->source)
        core_buf_puts(&b, cfg->source);
    else
        core_buf_printf(&b, "/services/%s", cfg->name);
    r->source = core_buf_steal(&b, NULL);
    r->ckpt_topic = core_xstrdup(cfg->checkpoint_topic && *cfg->checkpoint_topic
                                     ? cfg->checkpoint_topic
                                     : TOPIC_PLATFORM_OUTBOX_CHECKPOINTS);
    core_buf_printf(&b, "outbox-%s", cfg->name);
    r->txn_id = core_buf_steal(&b, NULL);
    core_buf_printf(&b, "%s-outbox-relay", dbi_pool_config(pool)->application_name);
    r->app_name = core_buf_steal(&b, NULL);
    r->batch = cfg->batch_size ? cfg->batch_size : 100;
    r->sweep_ms = cfg->sweep_interval_ms ? cfg->sweep_interval_ms : 1000;
    r->leader_retry_ms = cfg->leader_retry_ms ? cfg->leader_retry_ms : 5000;
    r->retention_ms = cfg->retention_ms ? cfg->retention_ms : (int64_t)7 * 24 * 3600 * 1000;
    r->cleanup_ms = cfg->cleanup_interval_ms ? cfg->cleanup_interval_ms : 60000;
    r->txn_timeout_ms = cfg->transaction_timeout_ms;
#ifdef CORE_TEST_BUILD
    const char *crash = getenv("DB_OUTBOX_CRASH_AFTER");
    if (crash) dbi_strlcpy(r->crash_after, crash, sizeof r->crash_after);
#endif
    core_metrics *reg = core_metrics_default();
    r->m_published = core_metric_counter(reg, "outbox_published_total",
                                         "Outbox rows published to Kafka (committed)", "relay");
    r->m_pending =
        core_metric_gauge(reg, "outbox_pending", "Outbox rows not yet published", "relay");
    r->m_lag = core_metric_gauge(reg, "outbox_relay_lag_seconds",
                                 "Age of the oldest unpublished outbox row", "relay");
    uv_timer_init(loop, &r->sweep);
    r->sweep.data = r;
    uv_timer_init(loop, &r->retry);
    r->retry.data = r;
    uv_timer_init(loop, &r->cleanup);
    r->cleanup.data = r;
    uv_timer_start(&r->sweep, relay_sweep_cb, (uint64_t)r->sweep_ms, (uint64_t)r->sweep_ms);
    uv_timer_start(&r->cleanup, relay_cleanup_cb, (uint64_t)r->cleanup_ms, (uint64_t)r->cleanup_ms);
    dbi_conn_init(&r->conn, pool, &relay_conn_ops, r, r->app_name);
    dbi_conn_start(&r->conn);
    return r;
}

static void relay_free(db_relay *r)
{
    void (*done)(void *) = r->close_done;
    void *data = r->close_data;
    free(r->brokers);
    free(r->name);
    free(r->source);
    free(r->ckpt_topic);
    free(r->txn_id);
    free(r->app_name);
    free(r->batch_ids);
    free(r->mark_ids);
    free(r);
    if (done) done(data);
}

static void relay_handle_closed(uv_handle_t *h)
{
    db_relay *r = h->data;
    if (--r->open_handles == 0) relay_free(r);
}

static void relay_conn_closed(dbi_conn *c)
{
    db_relay *r = c->owner;
    if (--r->open_handles == 0) relay_free(r);
}

static void relay_finish_close(db_relay *r)
{
    if (r->side_queries > 0 || r->open_handles > 0) return;
    if (r->txp) {
        relay_close_producer(r); /* relay_step comes back here when it is closed */
        return;
    }
    r->open_handles = 4;
    /* Closing the session releases the advisory lock: a waiting replica takes over. */
    dbi_conn_close(&r->conn, relay_conn_closed);
    uv_close((uv_handle_t *)&r->sweep, relay_handle_closed);
    uv_close((uv_handle_t *)&r->retry, relay_handle_closed);
    uv_close((uv_handle_t *)&r->cleanup, relay_handle_closed);
}

void db_outbox_relay_close(db_relay *r, void (*done)(void *data), void *data)
{
    if (!r || r->closing) return;
    r->closing = true;
    r->close_done = done;
    r->close_data = data;
    uv_timer_stop(&r->sweep);
    uv_timer_stop(&r->retry);
    uv_timer_stop(&r->cleanup);
    relay_step(r);
}

bool db_outbox_relay_leader(const db_relay *r)
{
    return r && r->leader && r->recovered;
}

bool db_outbox_relay_ready(const db_relay *r, const char **detail)
{
    const char *why;
    bool ok;
    if (!r) {
        ok = false;
        why = "the outbox relay is not started";
    } else if (!r->leader) {
        ok = true;
        why = "relay following: another replica publishes";
    } else if (!r->recovered || !bus_txn_connected(r->txp)) {
        ok = false;
        why = "relay leading, no broker reachable";
    } else {
        ok = true;
        why = "relay leading, broker reachable";
    }
    if (detail) *detail = why;
    return ok;
}

uint64_t db_outbox_relay_published(const db_relay *r)
{
    return r ? r->published : 0;
}
