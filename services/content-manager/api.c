/*
 * The JSON API under /api/content/items (the paths the gateway forwards, prefix included).
 * Every error is application/problem+json (RFC 9457); bad input changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define ITEMS "/api/content/items"

typedef struct api_ctx {
    http_req *req;
    json_t *json; /* the request body, kept while an op points into it */
    int ok_status;
} api_ctx;

static void respond_invalid(http_req *req, const char *detail, json_t *errors)
{
    http_respond_problem_ext(req, 400, NULL, "Invalid request", detail,
                             json_pack("{s:o}", "errors", errors));
}

static void invalid_field(http_req *req, const char *field, const char *detail)
{
    json_t *errors = json_pack("[{s:s,s:s}]", "field", field, "detail", detail);
    respond_invalid(req, detail, errors);
}

static void set_etag(http_req *req, int64_t version)
{
    char etag[32];
    snprintf(etag, sizeof etag, "\"%lld\"", (long long)version);
    http_set_header(req, "ETag", etag);
}

static void on_op_done(cm_op *op, cm_outcome outcome)
{
    api_ctx *ctx = op->data;
    http_req *req = ctx->req;
    switch (outcome) {
    case CM_OK:
        set_etag(req, op->version);
        if (ctx->ok_status == 201) {
            char loc[128];
            snprintf(loc, sizeof loc, ITEMS "/%s", op->id);
            http_set_header(req, "Location", loc);
        }
        http_respond_json(req, ctx->ok_status, json_incref(op->item));
        break;
    case CM_NOT_FOUND:
        http_respond_problem(req, 404, "Not Found", "no such item");
        break;
    case CM_CONFLICT:
        http_respond_problem(req, 409, "Conflict", op->detail);
        break;
    case CM_UNKNOWN_SOURCE:
        http_respond_problem(req, 422, "Unprocessable Content", op->detail);
        break;
    case CM_VERSION:
        set_etag(req, op->version);
        if (http_header(req, "If-Match"))
            http_respond_problem(req, 412, "Precondition Failed", op->detail);
        else
            http_respond_problem(req, 409, "Conflict", op->detail);
        break;
    default:
        http_set_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, "Service Unavailable", "the database is unavailable");
        break;
    }
    json_decref(ctx->json);
    http_req_unref(req);
    free(ctx);
    cm_op_free(op);
}

static api_ctx *ctx_new(http_req *req, json_t *json, int ok_status)
{
    api_ctx *ctx = calloc(1, sizeof *ctx);
    ctx->req = http_req_ref(req);
    ctx->json = json;
    ctx->ok_status = ok_status;
    return ctx;
}

/* The {id} segment as a canonical UUID; answers 400 and returns false when malformed. */
static bool item_id(http_req *req, char out[CORE_UUID_STRLEN + 1])
{
    core_uuid u;
    const char *id = http_param(req, "id");
    if (!id || !core_uuid_parse(id, &u)) {
        invalid_field(req, "id", "the item id must be a UUID");
        return false;
    }
    core_uuid_format(&u, out);
    return true;
}

/* If-Match, when present: false after answering 400 when malformed. */
static bool if_match(http_req *req, int64_t *version)
{
    const char *h = http_header(req, "If-Match");
    *version = 0;
    if (!h) return true;
    if (!cm_parse_if_match(h, version)) {
        invalid_field(req, "If-Match", "If-Match must be the item's version, e.g. \"3\"");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- create */

static void handle_create(http_req *req, void *data)
{
    cm_app *app = data;
    json_t *body = http_json_body(req);
    if (!body) return;
    json_t *errors = json_array();
    cm_brief brief;
    if (!cm_brief_validate(body, &brief, errors)) {
        respond_invalid(req, "the brief is not valid", errors);
        json_decref(body);
        return;
    }
    json_decref(errors);
    cm_op *op = cm_op_new(app, CM_ACT_GENERATE, on_op_done, ctx_new(req, body, 201));
    op->brief = brief;
    cm_op_create(op);
}

/* ---------------------------------------------------------------- read */

typedef struct list_ctx {
    http_req *req;
    int limit;
} list_ctx;

static void on_listed(const db_result *r, void *data)
{
    list_ctx *lc = data;
    http_req *req = lc->req;
    if (!db_result_ok(r)) {
        core_log_warn("list failed", CORE_F_STR("error", db_result_error(r)));
        http_set_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, "Service Unavailable", "the database is unavailable");
    } else {
        json_t *items = json_array();
        int rows = db_result_rows(r);
        int n = rows > lc->limit ? lc->limit : rows;
        for (int i = 0; i < n; i++)
            json_array_append_new(items, cm_item_json(r, i));
        json_t *next = json_null();
        if (rows > lc->limit) {
            char cursor[CM_CURSOR_MAX];
            if (cm_cursor_encode(db_result_get(r, n - 1, "id"), cursor)) {
                json_decref(next);
                next = json_string(cursor);
            }
        }
        http_respond_json(req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next));
    }
    http_req_unref(req);
    free(lc);
}

static void handle_list(http_req *req, void *data)
{
    cm_app *app = data;
    const char *status = http_query(req, "status");
    const char *kind = http_query(req, "kind");
    const char *q = http_query(req, "q");
    if (!q) q = http_query(req, "title");
    const char *cursor = http_query(req, "cursor");
    cm_status st;
    cm_kind k;
    int limit;
    char after[CORE_UUID_STRLEN + 1];
    if (status && !cm_status_parse(status, &st)) {
        invalid_field(req, "status",
                      "status must be one of draft, generating, generated, "
                      "approved, failed, archived");
        return;
    }
    if (kind && !cm_kind_parse(kind, &k)) {
        invalid_field(req, "kind", "kind must be one of article, newsletter, social");
        return;
    }
    if (!cm_parse_limit(http_query(req, "limit"), &limit)) {
        invalid_field(req, "limit", "limit must be an integer from 1 to 100");
        return;
    }
    if (cursor && !cm_cursor_decode(cursor, after)) {
        invalid_field(req, "cursor", "the cursor is not one this service returned");
        return;
    }
    if (q && strlen(q) > CM_TITLE_MAX * 4) {
        invalid_field(req, "q", "the search text is too long");
        return;
    }
    core_buf pattern = {0};
    if (q && *q) cm_like_contains(q, &pattern);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "SELECT %s FROM items WHERE ($1::text IS NULL OR status = $1) "
                    "AND ($2::text IS NULL OR kind = $2) "
                    "AND ($3::text IS NULL OR title ILIKE $3 ESCAPE '\\') "
                    "AND ($4::uuid IS NULL OR id < $4::uuid) ORDER BY id DESC LIMIT $5::int",
                    cm_item_cols);
    const char *params[] = {status && *status ? status : NULL, kind && *kind ? kind : NULL,
                            pattern.len ? pattern.data : NULL, cursor ? after : NULL, lim};
    list_ctx *lc = malloc(sizeof *lc);
    lc->req = http_req_ref(req);
    lc->limit = limit;
    db_query(app->db, sql.data, 5, params, on_listed, lc);
    core_buf_free(&sql);
    core_buf_free(&pattern);
}

static void on_got(const db_result *r, void *data)
{
    http_req *req = data;
    if (!db_result_ok(r)) {
        http_set_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, "Service Unavailable", "the database is unavailable");
    } else if (db_result_rows(r) == 0) {
        http_respond_problem(req, 404, "Not Found", "no such item");
    } else {
        int64_t v = 0;
        db_result_int64(r, 0, db_result_column(r, "version"), &v);
        set_etag(req, v);
        http_respond_json(req, 200, cm_item_json(r, 0));
    }
    http_req_unref(req);
}

static void handle_get(http_req *req, void *data)
{
    cm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!item_id(req, id)) return;
    core_buf sql = {0};
    core_buf_printf(&sql, "SELECT %s FROM items WHERE id = $1", cm_item_cols);
    const char *params[] = {id};
    db_query(app->db, sql.data, 1, params, on_got, http_req_ref(req));
    core_buf_free(&sql);
}

/* The item's history (migrations/003_item_events.sql): its newest HISTORY_MAX events, oldest
 * first. The item's own row comes with them, so an unknown id is a 404, not an empty list. */
#define HISTORY_MAX "500"

static json_t *opt_str(const db_result *r, int row, const char *col)
{
    const char *v = db_result_get(r, row, col);
    return v ? json_string(v) : json_null();
}

static void on_history(const db_result *r, void *data)
{
    http_req *req = data;
    if (!db_result_ok(r)) {
        core_log_warn("history failed", CORE_F_STR("error", db_result_error(r)));
        http_set_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, "Service Unavailable", "the database is unavailable");
    } else if (db_result_rows(r) == 0) {
        http_respond_problem(req, 404, "Not Found", "no such item");
    } else {
        json_t *events = json_array();
        for (int i = 0; i < db_result_rows(r); i++) {
            if (!db_result_get(r, i, "what")) continue; /* an item older than its history */
            int64_t version = 0, percent = 0;
            db_result_int64(r, i, db_result_column(r, "version"), &version);
            json_t *e = json_pack("{s:s,s:s,s:s,s:o,s:I}", "at", db_result_get(r, i, "at"), "what",
                                  db_result_get(r, i, "what"), "status",
                                  db_result_get(r, i, "status"), "from_status",
                                  opt_str(r, i, "from_status"), "version", (json_int_t)version);
            json_object_set_new(e, "stage", opt_str(r, i, "stage"));
            if (db_result_int64(r, i, db_result_column(r, "percent"), &percent))
                json_object_set_new(e, "percent", json_integer(percent));
            else
                json_object_set_new(e, "percent", json_null());
            json_object_set_new(e, "detail", opt_str(r, i, "detail"));
            json_array_append_new(events, e);
        }
        http_respond_json(req, 200, json_pack("{s:o}", "events", events));
    }
    http_req_unref(req);
}

static void handle_history(http_req *req, void *data)
{
    cm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!item_id(req, id)) return;
    const char *params[] = {id};
    db_query(app->db,
             "SELECT e.what, e.status, e.from_status, e.version, e.stage, e.percent, e.detail, "
             "to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at "
             "FROM items i LEFT JOIN LATERAL (SELECT * FROM item_events WHERE item_id = i.id "
             "ORDER BY id DESC LIMIT " HISTORY_MAX ") e ON true WHERE i.id = $1 ORDER BY e.id",
             1, params, on_history, http_req_ref(req));
}

/* ---------------------------------------------------------------- changes */

static void handle_patch(http_req *req, void *data)
{
    cm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    int64_t header_version;
    if (!item_id(req, id) || !if_match(req, &header_version)) return;
    json_t *body = http_json_body(req);
    if (!body) return;
    json_t *errors = json_array();
    const char *text;
    int64_t body_version;
    if (!cm_edit_validate(body, &text, &body_version, errors)) {
        respond_invalid(req, "the edit is not valid", errors);
        json_decref(body);
        return;
    }
    json_decref(errors);
    if (!header_version && !body_version) {
        http_respond_problem(req, 428, "Precondition Required",
                             "send the version you edited as If-Match or a \"version\" field");
        json_decref(body);
        return;
    }
    cm_op *op = cm_op_new(app, CM_ACT_EDIT, on_op_done, ctx_new(req, body, 200));
    memcpy(op->id, id, sizeof op->id);
    op->text = strdup(text);
    op->expect_version = header_version ? header_version : body_version;
    cm_op_run(op);
}

static void run_action(http_req *req, cm_app *app, cm_action action)
{
    char id[CORE_UUID_STRLEN + 1];
    int64_t version;
    if (!item_id(req, id) || !if_match(req, &version)) return;
    cm_op *op = cm_op_new(app, action, on_op_done, ctx_new(req, NULL, 200));
    memcpy(op->id, id, sizeof op->id);
    op->expect_version = version;
    cm_op_run(op);
}

static void handle_approve(http_req *req, void *data)
{
    run_action(req, data, CM_ACT_APPROVE);
}

static void handle_regenerate(http_req *req, void *data)
{
    run_action(req, data, CM_ACT_REGENERATE);
}

static void handle_archive(http_req *req, void *data)
{
    run_action(req, data, CM_ACT_ARCHIVE);
}

void cm_api_register(cm_app *app)
{
    http_route(app->http, "POST", ITEMS, handle_create, app);
    http_route(app->http, "GET", ITEMS, handle_list, app);
    http_route(app->http, "GET", ITEMS "/{id}", handle_get, app);
    http_route(app->http, "GET", ITEMS "/{id}/history", handle_history, app);
    http_route(app->http, "PATCH", ITEMS "/{id}", handle_patch, app);
    http_route(app->http, "POST", ITEMS "/{id}/approve", handle_approve, app);
    http_route(app->http, "POST", ITEMS "/{id}/regenerate", handle_regenerate, app);
    http_route(app->http, "POST", ITEMS "/{id}/archive", handle_archive, app);
}
