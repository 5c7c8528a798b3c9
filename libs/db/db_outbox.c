/* The transactional outbox (writing side) and the idempotent consumer's inbox. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
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

void db_outbox_add(db_txn *t, const struct bus_record *r, db_txn_cb cb, void *data)
{
    if (!t) {
        core_log_error("db_outbox_add: txn is NULL");
        return;
    }
    const char *problem = NULL;
    if (!r)
        problem = "db_outbox_add: record is NULL";
    else if (!r->topic || !*r->topic)
        problem = "db_outbox_add: record has no topic";
    else if (!r->ce_type || !*r->ce_type)
        problem = "db_outbox_add: record has no ce_type";
    else if (r->key_len && !r->key)
        problem = "db_outbox_add: key_len without key";
    else if (r->value_len && !r->value)
        problem = "db_outbox_add: value_len without value";
    else if (r->key_len > INT32_MAX || r->value_len > INT32_MAX)
        problem = "db_outbox_add: key or value too large";
    if (problem) {
        fail_txn_call(t, problem, cb, data);
        return;
    }
    char partition[16];
    snprintf(partition, sizeof partition, "%d", (int)r->partition);
    char ce_id[CORE_UUID_STRLEN + 1];
    if (!r->ce_id || !*r->ce_id) core_uuid_v7_string(ce_id);
    char ce_time[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(r->ce_time_ms > 0 ? r->ce_time_ms : core_now_unix_ms(), ce_time);
    /* The current trace, so the event carries the request that caused it. */
    char traceparent[CORE_TRACEPARENT_LEN + 1];
    if (!r->traceparent || !*r->traceparent) {
        char trace_id[CORE_TRACE_ID_LEN + 1], span_id[CORE_SPAN_ID_LEN + 1];
        const char *cur = core_log_trace();
        if (strlen(cur) == CORE_TRACE_ID_LEN)
            dbi_strlcpy(trace_id, cur, sizeof trace_id);
        else
            core_trace_id_new(trace_id);
        core_span_id_new(span_id);
        core_traceparent_format(traceparent, trace_id, span_id, 1);
    }
    dbi_header *hs = NULL;
    if (r->nheaders) {
        hs = calloc(r->nheaders, sizeof *hs);
        if (!hs) abort();
        for (size_t i = 0; i < r->nheaders; i++)
            hs[i] = (dbi_header){r->headers[i].name, r->headers[i].value, r->headers[i].len};
    }
    char *headers = dbi_headers_encode(hs, r->nheaders);
    free(hs);
    if (!headers) {
        fail_txn_call(t, "db_outbox_add: a header has no name, or a name that is not UTF-8", cb,
                      data);
        return;
    }
    static const uint8_t empty[1] = {0};
    const char *vals[11] = {
        r->topic,
        r->partition >= 0 ? partition : NULL,
        r->key ? (const char *)r->key : NULL,
        (r->ce_id && *r->ce_id) ? r->ce_id : ce_id,
        r->ce_type,
        ce_time,
        r->ce_subject,
        (r->content_type && *r->content_type) ? r->content_type : BUS_CONTENT_TYPE_PROTOBUF,
        (r->traceparent && *r->traceparent) ? r->traceparent : traceparent,
        headers,
        r->value ? (const char *)r->value : (const char *)empty,
    };
    int lengths[11] = {0};
    int formats[11] = {0};
    lengths[2] = (int)r->key_len;
    formats[2] = 1;
    lengths[10] = (int)r->value_len;
    formats[10] = 1;
    db_txn_query_params(t, outbox_insert_sql, 11, vals, lengths, formats, cb, data);
    free(headers);
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
