/*
 * /api/segments: saved rules (see the rule language in pii.h and the README), a live count and
 * a paged recipients query (active, not erased subscribers matching the rules, decrypted, by
 * id cursor) that the distributor uses. Rules compile to a parameterized expression.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define SEGS "/api/segments"

#define SEG_COLS                                                                                   \
    "id::text AS id, name, rules::text AS rules, " SM_TS("created_at") " AS created_at, " SM_TS(   \
        "updated_at") " AS updated_at"

static json_t *seg_json(const db_result *r, int row)
{
    json_t *rules = json_loads(db_result_get(r, row, "rules"), 0, NULL);
    return json_pack("{s:s,s:s,s:o,s:s,s:s}", "id", db_result_get(r, row, "id"), "name",
                     db_result_get(r, row, "name"), "rules", rules ? rules : json_null(),
                     "created_at", db_result_get(r, row, "created_at"), "updated_at",
                     db_result_get(r, row, "updated_at"));
}

/* Compiles body.rules; answers 400 naming the problem and returns false when invalid. */
static bool compile_or_400(http_req *req, const json_t *rules, int first, sm_sql *out)
{
    char err[256];
    if (!rules) {
        sm_invalid(req, "rules", "rules are required");
        return false;
    }
    if (!sm_rule_compile(rules, first, out, err, sizeof err)) {
        sm_invalid(req, "rules", err);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- count, recipients */

typedef struct run_ctx {
    sm_app *app;
    http_req *req;
    int64_t start_ns;
    int limit;
    bool recipients;
    char after[CORE_UUID_STRLEN + 1];
    char seg_id[CORE_UUID_STRLEN + 1];
} run_ctx;

static void on_counted(const db_result *r, void *data)
{
    run_ctx *rc = data;
    if (!db_result_ok(r)) {
        sm_unavailable(rc->req, r);
    } else {
        int64_t n = 0;
        db_result_int64(r, 0, 0, &n);
        double ms = (double)(core_mono_ns() - rc->start_ns) / 1e6;
        http_respond_json(rc->req, 200,
                          json_pack("{s:I,s:f}", "count", (json_int_t)n, "duration_ms", ms));
    }
    http_req_unref(rc->req);
    free(rc);
}

static void on_recipients(const db_result *r, void *data)
{
    run_ctx *rc = data;
    if (!db_result_ok(r)) {
        sm_unavailable(rc->req, r);
    } else {
        int rows = db_result_rows(r), n = rows > rc->limit ? rc->limit : rows;
        json_t *items = json_array();
        for (int i = 0; i < n; i++) {
            json_t *s = sm_subscriber_json(rc->app, r, i);
            json_array_append_new(
                items, json_pack("{s:O,s:O,s:O,s:O}", "id", json_object_get(s, "id"), "email",
                                 json_object_get(s, "email"), "name", json_object_get(s, "name"),
                                 "attributes", json_object_get(s, "attributes")));
            json_decref(s);
        }
        json_t *next = rows > rc->limit ? json_string(db_result_get(r, n - 1, "id")) : json_null();
        http_respond_json(rc->req, 200,
                          json_pack("{s:o,s:o}", "items", items, "next_cursor", next));
    }
    http_req_unref(rc->req);
    free(rc);
}

/* Runs the count or the recipients page of compiled rules. */
static void run(run_ctx *rc, sm_sql *q)
{
    core_buf sql = {0};
    char lim[16];
    int n = q->nparams;
    const char **vals = core_xcalloc((size_t)n + 2, sizeof *vals);
    for (int i = 0; i < n; i++)
        vals[i] = q->params[i];
    if (!rc->recipients) {
        core_buf_printf(&sql,
                        "SELECT count(*) FROM subscribers s WHERE s.erased_at IS NULL AND (%s)",
                        q->sql.data);
    } else {
        snprintf(lim, sizeof lim, "%d", rc->limit + 1);
        vals[n] = rc->after[0] ? rc->after : NULL;
        vals[n + 1] = lim;
        core_buf_printf(&sql,
                        "SELECT %s FROM " SM_SUBSCRIBER_FROM
                        " WHERE s.erased_at IS NULL AND s.status = "
                        "'active' AND (%s) AND ($%d::uuid IS NULL OR s.id > $%d::uuid) "
                        "ORDER BY s.id LIMIT $%d::int",
                        sm_subscriber_cols, q->sql.data, n + 1, n + 1, n + 2);
        n += 2;
    }
    rc->start_ns = core_mono_ns();
    db_query(rc->app->db, sql.data, n, vals, rc->recipients ? on_recipients : on_counted, rc);
    free(vals);
    core_buf_free(&sql);
}

static void on_seg_rules(const db_result *r, void *data)
{
    run_ctx *rc = data;
    if (!db_result_ok(r) || db_result_rows(r) == 0) {
        if (!db_result_ok(r))
            sm_unavailable(rc->req, r);
        else
            sm_problem(rc->req, 404, "no such segment");
        http_req_unref(rc->req);
        free(rc);
        return;
    }
    json_t *rules = json_loads(db_result_get(r, 0, "rules"), 0, NULL);
    sm_sql q;
    char err[256];
    if (!rules || !sm_rule_compile(rules, 1, &q, err, sizeof err)) {
        sm_problem(rc->req, 409, "the saved rules no longer compile");
        json_decref(rules);
        http_req_unref(rc->req);
        free(rc);
        return;
    }
    json_decref(rules);
    run(rc, &q);
    sm_sql_free(&q);
}

static void seg_run(http_req *req, sm_app *app, bool recipients)
{
    run_ctx *rc = core_xcalloc(1, sizeof *rc);
    rc->app = app;
    rc->recipients = recipients;
    if (!sm_path_uuid(req, "id", rc->seg_id) || !sm_query_limit(req, 100, 1000, &rc->limit)) {
        free(rc);
        return;
    }
    const char *cursor = http_query(req, "cursor");
    if (cursor) {
        core_uuid u;
        if (!core_uuid_parse(cursor, &u)) {
            sm_invalid(req, "cursor", "the cursor is not one this service returned");
            free(rc);
            return;
        }
        core_uuid_format(&u, rc->after);
    }
    rc->req = http_req_ref(req);
    const char *v[] = {rc->seg_id};
    db_query(app->db, "SELECT rules::text AS rules FROM segments WHERE id = $1::uuid", 1, v,
             on_seg_rules, rc);
}

static void handle_count(http_req *req, void *data)
{
    seg_run(req, data, false);
}

static void handle_recipients(http_req *req, void *data)
{
    seg_run(req, data, true);
}

/* POST /api/segments/count {"rules": ...}: a count without saving (the editor's preview). */
static void handle_preview(http_req *req, void *data)
{
    json_t *body = http_json_body(req);
    if (!body) return;
    sm_sql q;
    bool ok = compile_or_400(req, json_object_get(body, "rules"), 1, &q);
    json_decref(body);
    if (!ok) return;
    run_ctx *rc = core_xcalloc(1, sizeof *rc);
    rc->app = data;
    rc->req = http_req_ref(req);
    run(rc, &q);
    sm_sql_free(&q);
}

/* ---------------------------------------------------------------- CRUD */

static void handle_list(http_req *req, void *data)
{
    sm_app *app = data;
    sm_query_items(app, req, "SELECT " SEG_COLS " FROM segments ORDER BY created_at, id LIMIT 1000",
                   0, NULL, seg_json);
}

static void handle_get(http_req *req, void *data)
{
    sm_get_by_id(data, req, "SELECT " SEG_COLS " FROM segments WHERE id = $1::uuid", seg_json,
                 "no such segment");
}

typedef struct seg_in {
    char *name;
    char *rules;
} seg_in;

static void seg_in_free(void *p)
{
    seg_in *s = p;
    free(s->name);
    free(s->rules);
    free(s);
}

static void seg_write_step(sm_op *op, const db_result *r)
{
    seg_in *s = op->ctx;
    if (op->step == 0) {
        const char *v[] = {op->id, s->name, s->rules};
        if (op->status == 201)
            sm_q(op,
                 "INSERT INTO segments (id, name, rules) VALUES ($1::uuid, $2, $3::jsonb) "
                 "RETURNING " SEG_COLS,
                 3, v);
        else
            sm_q(op,
                 "UPDATE segments SET name = COALESCE($2, name), rules = COALESCE($3::jsonb, "
                 "rules), updated_at = now() WHERE id = $1::uuid RETURNING " SEG_COLS,
                 3, v);
        return;
    }
    if (db_result_rows(r) != 1) {
        sm_fail(op, 404, "no such segment");
        return;
    }
    op->reply = seg_json(r, 0);
    sm_commit(op);
}

static void seg_write(http_req *req, sm_app *app, bool create)
{
    char id[CORE_UUID_STRLEN + 1];
    if (create)
        core_uuid_v7_string(id);
    else if (!sm_path_uuid(req, "id", id))
        return;
    json_t *body = http_json_body(req);
    if (!body) return;
    json_t *name = json_object_get(body, "name"), *rules = json_object_get(body, "rules");
    seg_in *s = core_xcalloc(1, sizeof *s);
    bool ok = true;
    if (name || create) {
        if (!json_is_string(name) || json_string_length(name) == 0 ||
            json_string_length(name) > 200) {
            sm_invalid(req, "name", "name must be 1 to 200 bytes");
            ok = false;
        } else {
            s->name = core_xstrdup(json_string_value(name));
        }
    }
    if (ok && (rules || create)) {
        sm_sql q;
        ok = compile_or_400(req, rules, 1, &q);
        if (ok) {
            sm_sql_free(&q);
            s->rules = json_dumps(rules, JSON_COMPACT);
        }
    }
    json_decref(body);
    if (!ok) {
        seg_in_free(s);
        return;
    }
    sm_op_start_id(app, req, seg_write_step, s, seg_in_free, id, create ? 201 : 200);
}

static void handle_create(http_req *req, void *data)
{
    seg_write(req, data, true);
}

static void handle_patch(http_req *req, void *data)
{
    seg_write(req, data, false);
}

static void handle_delete(http_req *req, void *data)
{
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    sm_delete(data, req, id, "DELETE FROM segments WHERE id = $1::uuid", "no such segment", NULL);
}

void sm_segments_register(sm_app *app)
{
    sm_route(app, "GET", SEGS, AUTH_ROLE_VIEWER, handle_list);
    sm_route(app, "POST", SEGS, AUTH_ROLE_EDITOR, handle_create);
    sm_route(app, "POST", SEGS "/count", AUTH_ROLE_VIEWER, handle_preview);
    sm_route(app, "GET", SEGS "/{id}", AUTH_ROLE_VIEWER, handle_get);
    sm_route(app, "PATCH", SEGS "/{id}", AUTH_ROLE_EDITOR, handle_patch);
    sm_route(app, "DELETE", SEGS "/{id}", AUTH_ROLE_EDITOR, handle_delete);
    sm_route(app, "GET", SEGS "/{id}/count", AUTH_ROLE_VIEWER, handle_count);
    sm_route(app, "GET", SEGS "/{id}/recipients", AUTH_ROLE_EDITOR, handle_recipients);
}
