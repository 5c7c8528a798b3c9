/* The transactional outbox (writing side) and the idempotent consumer's inbox. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "contentengine/v1/platform.pb-c.h"
#include "db_internal.h"

static const char outbox_insert_sql[] =
    "INSERT INTO outbox (topic, kafka_partition, key, ce_id, ce_type, ce_time, ce_subject, "
    "content_type, traceparent, headers, payload) "
    "VALUES ($1, $2::integer, $3, $4, $5, $6::timestamptz, $7, $8, $9, $10::jsonb, $11) "
    "RETURNING id, ce_id";

static const char inbox_claim_sql[] =
    "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/* A call that is wrong before any SQL: fails (and aborts the transaction) on the next
 * iteration, so a transaction never commits without the event its caller meant to write. */
static void fail_txn_call(db_txn *t, const char *msg, db_txn_cb cb, void *data)
{
    core_log_error("invalid database call", CORE_F_STR("error", msg));
    dbi_txn_fail(t, msg, cb, data);
}

/* What is wrong with a record before any SQL, or NULL. */
static const char *record_problem(const struct bus_record *r)
{
    if (!r) return "db_outbox_add: record is NULL";
    if (!r->topic || !*r->topic) return "db_outbox_add: record has no topic";
    if (!r->ce_type || !*r->ce_type) return "db_outbox_add: record has no ce_type";
    if (r->key_len && !r->key) return "db_outbox_add: key_len without key";
    if (r->value_len && !r->value) return "db_outbox_add: value_len without value";
    if (r->key_len > INT32_MAX || r->value_len > INT32_MAX)
        return "db_outbox_add: key or value too large";
    return NULL;
}

/* The 11 parameters of one record; the strings it makes are owned by *owned (free them after
 * the statement is submitted). false when a header cannot be encoded. */
typedef struct record_params {
    char partition[16];
    char ce_id[CORE_UUID_STRLEN + 1];
    char ce_time[CORE_RFC3339_LEN + 1];
    char traceparent[CORE_TRACEPARENT_LEN + 1];
    char *headers;
} record_params;

static bool record_fill(const struct bus_record *r, record_params *rp, const char **vals,
                        int *lengths, int *formats)
{
    static const uint8_t empty[1] = {0};
    snprintf(rp->partition, sizeof rp->partition, "%d", (int)r->partition);
    if (!r->ce_id || !*r->ce_id) core_uuid_v7_string(rp->ce_id);
    core_format_rfc3339(r->ce_time_ms > 0 ? r->ce_time_ms : core_now_unix_ms(), rp->ce_time);
    /* The current trace, so the event carries the request that caused it. */
    if (!r->traceparent || !*r->traceparent) {
        char trace_id[CORE_TRACE_ID_LEN + 1], span_id[CORE_SPAN_ID_LEN + 1];
        const char *cur = core_log_trace();
        if (strlen(cur) == CORE_TRACE_ID_LEN)
            dbi_strlcpy(trace_id, cur, sizeof trace_id);
        else
            core_trace_id_new(trace_id);
        core_span_id_new(span_id);
        core_traceparent_format(rp->traceparent, trace_id, span_id, 1);
    }
    dbi_header *hs = NULL;
    if (r->nheaders) {
        hs = calloc(r->nheaders, sizeof *hs);
        if (!hs) abort();
        for (size_t i = 0; i < r->nheaders; i++)
            hs[i] = (dbi_header){r->headers[i].name, r->headers[i].value, r->headers[i].len};
    }
    rp->headers = dbi_headers_encode(hs, r->nheaders);
    free(hs);
    if (!rp->headers) return false;
    vals[0] = r->topic;
    vals[1] = r->partition >= 0 ? rp->partition : NULL;
    vals[2] = r->key ? (const char *)r->key : NULL;
    vals[3] = (r->ce_id && *r->ce_id) ? r->ce_id : rp->ce_id;
    vals[4] = r->ce_type;
    vals[5] = rp->ce_time;
    vals[6] = r->ce_subject;
    vals[7] = (r->content_type && *r->content_type) ? r->content_type : BUS_CONTENT_TYPE_PROTOBUF;
    vals[8] = (r->traceparent && *r->traceparent) ? r->traceparent : rp->traceparent;
    vals[9] = rp->headers;
    vals[10] = r->value ? (const char *)r->value : (const char *)empty;
    for (int i = 0; i < 11; i++)
        lengths[i] = formats[i] = 0;
    lengths[2] = (int)r->key_len;
    formats[2] = 1;
    lengths[10] = (int)r->value_len;
    formats[10] = 1;
    return true;
}

/* At most this many records per statement (11 parameters each; PostgreSQL allows 65535). */
#define OUTBOX_MAX_BATCH 1000

void db_outbox_add_many(db_txn *t, const struct bus_record *recs, size_t n, db_txn_cb cb,
                        void *data)
{
    if (!t) {
        core_log_error("db_outbox_add: txn is NULL");
        return;
    }
    if (!recs || n == 0 || n > OUTBOX_MAX_BATCH) {
        fail_txn_call(t, "db_outbox_add_many: between 1 and 1000 records", cb, data);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *problem = record_problem(&recs[i]);
        if (problem) {
            fail_txn_call(t, problem, cb, data);
            return;
        }
    }
    record_params *rps = calloc(n, sizeof *rps);
    const char **vals = calloc(n * 11, sizeof *vals);
    int *lengths = calloc(n * 11, sizeof *lengths);
    int *formats = calloc(n * 11, sizeof *formats);
    if (!rps || !vals || !lengths || !formats) abort();
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = record_fill(&recs[i], &rps[i], vals + 11 * i, lengths + 11 * i, formats + 11 * i);
    if (!ok) {
        fail_txn_call(t, "db_outbox_add: a header has no name, or a name that is not UTF-8", cb,
                      data);
    } else {
        core_buf sql = {0};
        core_buf_puts(&sql, "INSERT INTO outbox (topic, kafka_partition, key, ce_id, ce_type, "
                            "ce_time, ce_subject, content_type, traceparent, headers, payload) "
                            "VALUES ");
        for (size_t i = 0; i < n; i++) {
            size_t b = 11 * i;
            core_buf_printf(&sql,
                            "%s($%zu, $%zu::integer, $%zu, $%zu, $%zu, $%zu::timestamptz, $%zu, "
                            "$%zu, $%zu, $%zu::jsonb, $%zu)",
                            i ? ", " : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8,
                            b + 9, b + 10, b + 11);
        }
        core_buf_puts(&sql, " RETURNING id, ce_id");
        db_txn_query_params(t, sql.data, (int)(11 * n), vals, lengths, formats, cb, data);
        core_buf_free(&sql);
    }
    for (size_t i = 0; i < n; i++)
        free(rps[i].headers);
    free(rps);
    free(vals);
    free(lengths);
    free(formats);
}

void db_outbox_add(db_txn *t, const struct bus_record *r, db_txn_cb cb, void *data)
{
    if (!t) {
        core_log_error("db_outbox_add: txn is NULL");
        return;
    }
    const char *problem = record_problem(r);
    if (problem) {
        fail_txn_call(t, problem, cb, data);
        return;
    }
    record_params rp = {0};
    const char *vals[11];
    int lengths[11], formats[11];
    if (!record_fill(r, &rp, vals, lengths, formats)) {
        fail_txn_call(t, "db_outbox_add: a header has no name, or a name that is not UTF-8", cb,
                      data);
        return;
    }
    db_txn_query_params(t, outbox_insert_sql, 11, vals, lengths, formats, cb, data);
    free(rp.headers);
}

typedef struct claim_ctx {
    db_claim_cb cb;
    void *data;
} claim_ctx;

static void claim_done(db_txn *t, const db_result *r, void *data)
{
    claim_ctx ctx = *(claim_ctx *)data;
    free(data);
    bool first = db_result_ok(r) && db_result_affected(r) == 1;
    if (ctx.cb) ctx.cb(t, r, first, ctx.data);
}

void db_inbox_claim(db_txn *t, const char *consumer, const char *event_id, db_claim_cb cb,
                    void *data)
{
    if (!t) {
        core_log_error("db_inbox_claim: txn is NULL");
        return;
    }
    claim_ctx *ctx = malloc(sizeof *ctx);
    if (!ctx) abort();
    ctx->cb = cb;
    ctx->data = data;
    if (!consumer || !*consumer || !event_id || !*event_id) {
        fail_txn_call(t, "db_inbox_claim: consumer and event_id must not be empty", claim_done,
                      ctx);
        return;
    }
    const char *vals[2] = {consumer, event_id};
    db_txn_query(t, inbox_claim_sql, 2, vals, claim_done, ctx);
}

/* A length-delimited field's tag (wire type 2) and length (a varint). */
static void bulk_field_head(core_buf *out, unsigned field, size_t len)
{
    uint8_t head[11] = {(uint8_t)(field << 3 | 2)};
    size_t h = 1;
    for (size_t v = len;; v >>= 7) {
        head[h++] = (uint8_t)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80) break;
    }
    core_buf_append(out, head, h);
}

void db_outbox_bulk_default_type(core_buf *out, const char *ce_type)
{
    size_t n = ce_type ? strlen(ce_type) : 0;
    bulk_field_head(out, 2, n);
    core_buf_append(out, ce_type ? ce_type : "", n);
}

void db_outbox_bulk_entry(core_buf *out, const struct bus_record *r)
{
    Contentengine__V1__OutboxRecord rec = CONTENTENGINE__V1__OUTBOX_RECORD__INIT;
    rec.key.data = (uint8_t *)r->key;
    rec.key.len = r->key ? r->key_len : 0;
    rec.ce_id = (char *)(r->ce_id ? r->ce_id : "");
    rec.ce_type = (char *)(r->ce_type ? r->ce_type : "");
    rec.ce_subject = (char *)(r->ce_subject ? r->ce_subject : "");
    if (r->key && r->key_len && strlen(rec.ce_subject) == r->key_len &&
        !memcmp(rec.ce_subject, r->key, r->key_len)) {
        rec.ce_subject = "";
        rec.subject_is_key = true;
    }
    rec.payload.data = (uint8_t *)r->value;
    rec.payload.len = r->value ? r->value_len : 0;
    size_t len = contentengine__v1__outbox_record__get_packed_size(&rec);
    bulk_field_head(out, 1, len);
    uint8_t small[1024];
    uint8_t *buf = len <= sizeof small ? small : malloc(len);
    if (!buf) abort();
    contentengine__v1__outbox_record__pack(&rec, buf);
    core_buf_append(out, buf, len);
    if (buf != small) free(buf);
}
