/*
 * Item operations: each change of an item, the events it causes (ContentEvent on content.items,
 * GenerationRequest on ai.generation.requests) and, for consumed events, the inbox claim are
 * written in ONE transaction; the outbox relay publishes the events.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "contentengine/v1/content.pb-c.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS " col

const char cm_item_cols[] =
    "id::text AS id, title, kind, topic, instructions, sources::text AS sources, status, body, "
    "failure_reason, job_id::text AS job_id, stage, percent, version, " TS("created_at") ", " TS(
        "updated_at") ", (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms";

void cm_metrics_init(cm_app *app)
{
    core_metrics *m = core_metrics_default();
    app->m_created = core_metric_counter(m, "items_created_total", "Content items created", NULL);
    app->m_transitions =
        core_metric_counter(m, "transitions_total", "Content item status transitions", "from,to");
    app->m_progress = core_metric_counter(
        m, "generation_progress_total", "Generation progress events consumed by outcome", "result");
    app->m_scraped = core_metric_counter(
        m, "scraped_items_total", "Scraped items received from the scraper by outcome", "result");
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *cm_item_json(const db_result *r, int row)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(db_result_get(r, row, "id")));
    json_object_set_new(o, "title", json_string(db_result_get(r, row, "title")));
    json_object_set_new(o, "kind", json_string(db_result_get(r, row, "kind")));
    json_object_set_new(o, "topic", json_string(db_result_get(r, row, "topic")));
    json_object_set_new(o, "instructions", json_string(db_result_get(r, row, "instructions")));
    json_t *src = json_loads(db_result_get(r, row, "sources"), 0, NULL);
    json_object_set_new(o, "sources", src ? src : json_array());
    json_object_set_new(o, "status", json_string(db_result_get(r, row, "status")));
    json_object_set_new(o, "body", json_string(db_result_get(r, row, "body")));
    json_object_set_new(o, "failure_reason", str_or_null(db_result_get(r, row, "failure_reason")));
    json_object_set_new(o, "job_id", str_or_null(db_result_get(r, row, "job_id")));
    json_object_set_new(o, "stage", str_or_null(db_result_get(r, row, "stage")));
    int64_t v = 0;
    if (db_result_int64(r, row, db_result_column(r, "percent"), &v))
        json_object_set_new(o, "percent", json_integer(v));
    else
        json_object_set_new(o, "percent", json_null());
    v = 0;
    db_result_int64(r, row, db_result_column(r, "version"), &v);
    json_object_set_new(o, "version", json_integer(v));
    json_object_set_new(o, "created_at", json_string(db_result_get(r, row, "created_at")));
    json_object_set_new(o, "updated_at", json_string(db_result_get(r, row, "updated_at")));
    return o;
}

/* ---------------------------------------------------------------- events */

static void outbox_content_event(db_txn *t, const db_result *r, const char *ce_type, db_txn_cb cb,
                                 void *data)
{
    Contentengine__V1__ContentEvent ev = CONTENTENGINE__V1__CONTENT_EVENT__INIT;
    cm_status st = CM_DRAFT;
    cm_kind kind = CM_KIND_ARTICLE;
    cm_status_parse(db_result_get(r, 0, "status"), &st);
    cm_kind_parse(db_result_get(r, 0, "kind"), &kind);
    ev.item_id = (char *)db_result_get(r, 0, "id");
    ev.title = (char *)db_result_get(r, 0, "title");
    ev.kind = (Contentengine__V1__ContentKind)kind;
    ev.status = (Contentengine__V1__ContentStatus)cm_status_proto(st);
    ev.body = (char *)db_result_get(r, 0, "body");
    const char *reason = db_result_get(r, 0, "failure_reason");
    ev.failure_reason = (char *)(reason ? reason : "");
    db_result_int64(r, 0, db_result_column(r, "version"), &ev.version);
    db_result_int64(r, 0, db_result_column(r, "updated_ms"), &ev.updated_unix_ms);
    ev.actor = (char *)CM_SERVICE;
    size_t len = contentengine__v1__content_event__get_packed_size(&ev);
    uint8_t *buf = malloc(len ? len : 1);
    contentengine__v1__content_event__pack(&ev, buf);
    bus_record rec = {.topic = TOPIC_CONTENT_ITEMS,
                      .partition = BUS_PARTITION_ANY,
                      .key = ev.item_id,
                      .key_len = strlen(ev.item_id),
                      .value = buf,
                      .value_len = len,
                      .ce_type = ce_type,
                      .ce_subject = ev.item_id};
    db_outbox_add(t, &rec, cb, data);
    free(buf);
}

static void outbox_generation_request(db_txn *t, const db_result *r, const char *provider,
                                      db_txn_cb cb, void *data)
{
    Contentengine__V1__GenerationRequest req = CONTENTENGINE__V1__GENERATION_REQUEST__INIT;
    cm_kind kind = CM_KIND_ARTICLE;
    cm_kind_parse(db_result_get(r, 0, "kind"), &kind);
    req.job_id = (char *)db_result_get(r, 0, "job_id");
    req.item_id = (char *)db_result_get(r, 0, "id");
    req.kind = (Contentengine__V1__ContentKind)kind;
    req.title = (char *)db_result_get(r, 0, "title");
    req.topic = (char *)db_result_get(r, 0, "topic");
    req.instructions = (char *)db_result_get(r, 0, "instructions");
    req.provider = (char *)provider;
    /* Sources: texts as given; scraped items by reference (their text is resolved once the
     * scraper's events are consumed; until then the id travels alone). */
    json_t *src = json_loads(db_result_get(r, 0, "sources"), 0, NULL);
    size_t n = json_array_size(src);
    Contentengine__V1__SourceText *st = calloc(n ? n : 1, sizeof *st);
    Contentengine__V1__SourceText **sp = calloc(n ? n : 1, sizeof *sp);
    for (size_t i = 0; i < n; i++) {
        contentengine__v1__source_text__init(&st[i]);
        json_t *e = json_array_get(src, i);
        const char *text = json_string_value(json_object_get(e, "text"));
        const char *item = json_string_value(json_object_get(e, "item_id"));
        if (text) st[i].text = (char *)text;
        if (item) st[i].item_id = (char *)item;
        sp[i] = &st[i];
    }
    req.n_sources = n;
    req.sources = sp;
    size_t len = contentengine__v1__generation_request__get_packed_size(&req);
    uint8_t *buf = malloc(len ? len : 1);
    contentengine__v1__generation_request__pack(&req, buf);
    bus_record rec = {.topic = TOPIC_AI_GENERATION_REQUESTS,
                      .partition = BUS_PARTITION_ANY,
                      .key = req.item_id,
                      .key_len = strlen(req.item_id),
                      .value = buf,
                      .value_len = len,
                      .ce_type = "contentengine.ai.generation.requested.v1",
                      .ce_subject = req.item_id};
    db_outbox_add(t, &rec, cb, data);
    free(buf);
    free(sp);
    free(st);
    json_decref(src);
}

/* ---------------------------------------------------------------- op plumbing */

cm_op *cm_op_new(cm_app *app, cm_action action, cm_op_done done, void *data)
{
    cm_op *op = calloc(1, sizeof *op);
    op->app = app;
    op->action = action;
    op->done = done;
    op->data = data;
    return op;
}

void cm_op_free(cm_op *op)
{
    if (!op) return;
    free(op->text);
    json_decref(op->item);
    json_decref(op->brief.sources);
    free(op);
}

static void finish(cm_op *op, cm_outcome outcome)
{
    if (outcome == CM_OK && op->from != op->to) {
        core_counter_add(op->app->m_transitions, 1, cm_status_name(op->from),
                         cm_status_name(op->to));
    }
    if (outcome == CM_OK && op->create) core_counter_add(op->app->m_created, 1);
    op->done(op, outcome);
}

static bool failed(cm_op *op, const db_result *r)
{
    if (db_result_ok(r)) return false;
    snprintf(op->detail, sizeof op->detail, "database: %s", db_result_error(r));
    core_log_warn("item operation failed", CORE_F_STR("item_id", op->id),
                  CORE_F_STR("action", cm_action_name(op->action)),
                  CORE_F_STR("sqlstate", db_result_sqlstate(r)),
                  CORE_F_STR("error", db_result_error(r)));
    return true;
}

static void on_committed(const db_result *r, void *data)
{
    cm_op *op = data;
    op->txn = NULL;
    if (failed(op, r)) {
        json_decref(op->item);
        op->item = NULL;
        finish(op, CM_UNAVAILABLE);
        return;
    }
    finish(op, CM_OK);
}

typedef struct early {
    cm_op *op;
    cm_outcome outcome;
} early;

static void on_early_end(const db_result *r, void *data)
{
    early *e = data;
    cm_op *op = e->op;
    cm_outcome outcome = e->outcome;
    free(e);
    op->txn = NULL;
    if (!db_result_ok(r) && op->event_id[0]) outcome = CM_UNAVAILABLE; /* claim not recorded */
    finish(op, outcome);
}

/* Ends the transaction without the change: a consumed event's claim is committed (so a stale
 * or unknown-item event is not handled again), anything else rolls back. */
static void end_early(cm_op *op, cm_outcome outcome)
{
    early *e = malloc(sizeof *e);
    e->op = op;
    e->outcome = outcome;
    if (op->event_id[0] && outcome != CM_UNAVAILABLE && outcome != CM_DUPLICATE)
        db_commit(op->txn, on_early_end, e);
    else
        db_rollback(op->txn, on_early_end, e);
}

static void fail_txn(cm_op *op)
{
    if (op->txn)
        end_early(op, CM_UNAVAILABLE);
    else
        finish(op, CM_UNAVAILABLE);
}

static void on_outbox_last(db_txn *t, const db_result *r, void *data)
{
    cm_op *op = data;
    if (failed(op, r)) {
        fail_txn(op);
        return;
    }
    db_commit(t, on_committed, op);
}

static void on_outbox_request(db_txn *t, const db_result *r, void *data)
{
    (void)t;
    (void)data;
    (void)r; /* errors surface at the next statement's result (25P02) */
}

/* The changed row is in r: remember it and write its events. */
static void write_events(cm_op *op, db_txn *t, const db_result *r)
{
    op->item = cm_item_json(r, 0);
    db_result_int64(r, 0, db_result_column(r, "version"), &op->version);
    const char *ce_type = op->create ? "contentengine.content.item.created.v1"
                          : op->action == CM_ACT_EDIT
                              ? "contentengine.content.item.updated.v1"
                              : "contentengine.content.item.status_changed.v1";
    if (op->to == CM_GENERATING && op->from != CM_GENERATING)
        outbox_generation_request(t, r, op->app->provider, on_outbox_request, op);
    outbox_content_event(t, r, ce_type, on_outbox_last, op);
}

/* ---------------------------------------------------------------- create */

/* The INSERT of a brief or the UPDATE of a change returned the item's row. */
static void on_row_written(db_txn *t, const db_result *r, void *data)
{
    cm_op *op = data;
    if (failed(op, r) || db_result_rows(r) != 1) {
        fail_txn(op);
        return;
    }
    write_events(op, t, r);
}

static void insert_item(cm_op *op, db_txn *t)
{
    char *sources = json_dumps(op->brief.sources, JSON_COMPACT);
    bool gen = op->to == CM_GENERATING;
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "INSERT INTO items (id, title, kind, topic, instructions, sources, status, "
                    "job_id, stage, percent) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, "
                    "$10::int) RETURNING %s",
                    cm_item_cols);
    const char *params[] = {op->id,
                            op->brief.title,
                            cm_kind_name(op->brief.kind),
                            op->brief.topic,
                            op->brief.instructions,
                            sources,
                            cm_status_name(op->to),
                            gen ? op->new_job : NULL,
                            gen ? "requested" : NULL,
                            gen ? "0" : NULL};
    db_txn_query(t, sql.data, 10, params, on_row_written, op);
    core_buf_free(&sql);
    free(sources);
}

/* The scraped items the brief names, from the projection: each {"item_id"} source becomes
 * {"item_id", "text", "title", "url"}, so the request (and any regeneration) carries the text.
 * A brief naming an item this service has not received is refused. */
static void on_sources_resolved(db_txn *t, const db_result *r, void *data)
{
    cm_op *op = data;
    if (failed(op, r)) {
        fail_txn(op);
        return;
    }
    json_t *src = op->brief.sources;
    for (size_t i = 0; i < json_array_size(src); i++) {
        json_t *e = json_array_get(src, i);
        const char *want = json_string_value(json_object_get(e, "item_id"));
        if (!want) continue;
        int row = -1;
        for (int k = 0; k < db_result_rows(r) && row < 0; k++)
            if (strcmp(db_result_get(r, k, "id"), want) == 0) row = k;
        if (row < 0) {
            snprintf(op->detail, sizeof op->detail,
                     "sources[%zu].item_id: no scraped item %s (not scraped, or not received yet)",
                     i, want);
            end_early(op, CM_UNKNOWN_SOURCE);
            return;
        }
        json_object_set_new(e, "text", json_string(db_result_get(r, row, "text")));
        json_object_set_new(e, "title", json_string(db_result_get(r, row, "title")));
        json_object_set_new(e, "url", json_string(db_result_get(r, row, "url")));
    }
    insert_item(op, t);
}

/* db_begin's answer: keeps the transaction, or ends op as unavailable (false). */
static bool txn_started(cm_op *op, db_txn *t, const db_result *r)
{
    op->txn = t;
    if (t) return true;
    failed(op, r);
    finish(op, CM_UNAVAILABLE);
    return false;
}

static void on_create_begun(db_txn *t, const db_result *r, void *data)
{
    cm_op *op = data;
    if (!txn_started(op, t, r)) return;
    core_buf ids = {0};
    core_buf_append(&ids, "{", 1);
    json_t *src = op->brief.sources;
    for (size_t i = 0; i < json_array_size(src); i++) {
        const char *id = json_string_value(json_object_get(json_array_get(src, i), "item_id"));
        if (!id) continue;
        if (ids.len > 1) core_buf_append(&ids, ",", 1);
        core_buf_append(&ids, id, strlen(id)); /* canonical UUIDs (validated): no quoting */
    }
    core_buf_append(&ids, "}", 2); /* with the NUL */
    if (ids.len > 3) {
        const char *params[] = {ids.data};
        db_txn_query(t,
                     "SELECT id::text AS id, title, url, text FROM scraped_items "
                     "WHERE id = ANY($1::uuid[])",
                     1, params, on_sources_resolved, op);
    } else {
        insert_item(op, t);
    }
    core_buf_free(&ids);
}

void cm_op_create(cm_op *op)
{
    op->create = true;
    op->action = CM_ACT_GENERATE;
    op->from = CM_DRAFT;
    op->to = op->brief.generate ? CM_GENERATING : CM_DRAFT;
    core_uuid_v7_string(op->id);
    core_uuid_v7_string(op->new_job);
    db_begin(op->app->db, on_create_begun, op);
}

/* ---------------------------------------------------------------- changes */

static void on_selected(db_txn *t, const db_result *r, void *data)
{
    cm_op *op = data;
    if (failed(op, r)) {
        fail_txn(op);
        return;
    }
    if (db_result_rows(r) == 0) {
        end_early(op, CM_NOT_FOUND);
        return;
    }
    if (!cm_status_parse(db_result_value(r, 0, 0), &op->from)) {
        fail_txn(op);
        return;
    }
    int64_t version = 0;
    db_result_int64(r, 0, 1, &version);
    op->version = version;
    const char *job = db_result_value(r, 0, 2);
    if (op->action == CM_ACT_COMPLETE || op->action == CM_ACT_FAIL) {
        if (op->from != CM_GENERATING || !job || strcmp(job, op->job_id) != 0) {
            end_early(op, CM_STALE);
            return;
        }
    }
    if (!cm_transition(op->from, op->action, &op->to)) {
        snprintf(op->detail, sizeof op->detail, "cannot %s an item that is %s",
                 cm_action_name(op->action), cm_status_name(op->from));
        {
            end_early(op, CM_CONFLICT);
            return;
        }
    }
    if (op->expect_version && op->expect_version != version) {
        snprintf(op->detail, sizeof op->detail, "the item is at version %lld, not %lld",
                 (long long)version, (long long)op->expect_version);
        {
            end_early(op, CM_VERSION);
            return;
        }
    }
    const char *body = NULL, *reason = NULL, *job_id = NULL, *stage = NULL, *percent = NULL;
    switch (op->action) {
    case CM_ACT_COMPLETE:
        body = op->text ? op->text : "";
        stage = "done";
        percent = "100";
        break;
    case CM_ACT_FAIL:
        reason = op->text ? op->text : "generation failed";
        stage = "failed";
        break;
    case CM_ACT_GENERATE:
    case CM_ACT_REGENERATE:
        core_uuid_v7_string(op->new_job);
        job_id = op->new_job;
        stage = "requested";
        percent = "0";
        break;
    case CM_ACT_EDIT:
        body = op->text ? op->text : "";
        break;
    default:
        break;
    }
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "UPDATE items SET status = $2, body = COALESCE($3, body), "
                    "failure_reason = CASE WHEN $2 = 'failed' THEN COALESCE($4, failure_reason) "
                    "ELSE NULL END, job_id = COALESCE($5::uuid, job_id), "
                    "stage = COALESCE($6, stage), percent = COALESCE($7::int, percent), "
                    "version = version + 1, updated_at = now() WHERE id = $1 RETURNING %s",
                    cm_item_cols);
    const char *params[] = {op->id, cm_status_name(op->to), body, reason, job_id, stage, percent};
    db_txn_query(t, sql.data, 7, params, on_row_written, op);
    core_buf_free(&sql);
}

static void select_for_update(cm_op *op, db_txn *t)
{
    const char *params[] = {op->id};
    db_txn_query(t, "SELECT status, version, job_id::text FROM items WHERE id = $1 FOR UPDATE", 1,
                 params, on_selected, op);
}

static void on_claimed(db_txn *t, const db_result *r, bool first, void *data)
{
    cm_op *op = data;
    if (failed(op, r)) {
        fail_txn(op);
        return;
    }
    if (!first) {
        end_early(op, CM_DUPLICATE);
        return;
    }
    select_for_update(op, t);
}

static void on_begun(db_txn *t, const db_result *r, void *data)
{
    cm_op *op = data;
    if (!txn_started(op, t, r)) return;
    if (op->event_id[0])
        db_inbox_claim(t, CM_CONSUMER, op->event_id, on_claimed, op);
    else
        select_for_update(op, t);
}

void cm_op_run(cm_op *op)
{
    db_begin(op->app->db, on_begun, op);
}
