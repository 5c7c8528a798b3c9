/*
 * GET /api/subscribers/export.csv?list_id=... | ?segment_id=... (editor): the members of a list
 * (not unsubscribed from it) or the subscribers a segment matches, not erased, as CSV
 * (id,email,name,status,created_at,attributes), decrypted. Streamed: pages of EXPORT_PAGE rows
 * by id, the next page asked for only once the client has taken the previous one (back-pressure
 * through http_stream_pending). Cells that a spreadsheet would read as a formula (starting with
 * = + - @ tab or CR) get a leading apostrophe (OWASP's CSV injection advice).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define EXPORT_PAGE    2000
#define EXPORT_PENDING (4u << 20) /* bytes queued for the client before we wait */
#define EXPORT_WAIT_MS 20

typedef struct export_ctx {
    sm_app *app;
    http_req *req;
    http_stream *stream;
    sm_sql where; /* the condition and its parameters */
    char after[CORE_UUID_STRLEN + 1];
    char list_id[CORE_UUID_STRLEN + 1];
    bool closed;
    uv_timer_t timer;
} export_ctx;

static void export_free_cb(uv_handle_t *h)
{
    export_ctx *x = h->data;
    sm_sql_free(&x->where);
    http_req_unref(x->req);
    free(x);
}

static void export_end(export_ctx *x)
{
    if (x->stream) http_stream_end(x->stream);
    x->stream = NULL;
    uv_close((uv_handle_t *)&x->timer, export_free_cb);
}

static void on_stream_closed(http_stream *s, void *data)
{
    (void)s;
    export_ctx *x = data;
    x->closed = true;
}

static void cell(core_buf *b, const char *s, bool last)
{
    if (!s) s = "";
    bool formula = strchr("=+-@\t\r", s[0]) && s[0];
    bool quote = formula || strpbrk(s, ",\"\r\n") != NULL;
    if (quote) core_buf_puts(b, "\"");
    if (formula) core_buf_puts(b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '"') core_buf_puts(b, "\"");
        core_buf_append(b, p, 1);
    }
    if (quote) core_buf_puts(b, "\"");
    core_buf_puts(b, last ? "\r\n" : ",");
}

static void next_page(export_ctx *x);

static void on_page(const db_result *r, void *data)
{
    export_ctx *x = data;
    if (!db_result_ok(r)) {
        if (!x->stream) {
            sm_unavailable(x->req, r);
        } else {
            core_log_warn("export stopped", CORE_F_STR("error", db_result_error(r)));
        }
        export_end(x);
        return;
    }
    if (!x->stream) {
        http_set_header(x->req, "Content-Disposition", "attachment; filename=\"subscribers.csv\"");
        x->stream = http_stream_start(x->req, 200, "text/csv; charset=utf-8");
        if (!x->stream) {
            export_end(x);
            return;
        }
        http_stream_on_close(x->stream, on_stream_closed, x);
        const char *head = "id,email,name,status,created_at,attributes\r\n";
        http_stream_write(x->stream, head, strlen(head));
    }
    core_buf out = {0};
    int rows = db_result_rows(r);
    for (int i = 0; i < rows; i++) {
        json_t *s = sm_subscriber_json(x->app, r, i);
        char *attrs = json_dumps(json_object_get(s, "attributes"), JSON_COMPACT);
        cell(&out, json_string_value(json_object_get(s, "id")), false);
        cell(&out, json_string_value(json_object_get(s, "email")), false);
        cell(&out, json_string_value(json_object_get(s, "name")), false);
        cell(&out, json_string_value(json_object_get(s, "status")), false);
        cell(&out, json_string_value(json_object_get(s, "created_at")), false);
        cell(&out, attrs, true);
        free(attrs);
        json_decref(s);
    }
    if (rows) snprintf(x->after, sizeof x->after, "%s", db_result_get(r, rows - 1, "id"));
    if (out.len && !x->closed) http_stream_write(x->stream, out.data, out.len);
    core_buf_free(&out);
    if (rows < EXPORT_PAGE || x->closed) {
        export_end(x);
        return;
    }
    next_page(x);
}

static void on_timer(uv_timer_t *t)
{
    next_page(t->data);
}

static void next_page(export_ctx *x)
{
    if (x->closed || x->app->stopping) {
        export_end(x);
        return;
    }
    if (x->stream && http_stream_pending(x->stream) > EXPORT_PENDING) {
        uv_timer_start(&x->timer, on_timer, EXPORT_WAIT_MS, 0); /* let the client catch up */
        return;
    }
    int n = x->where.nparams;
    const char **vals = core_xcalloc((size_t)n + 1, sizeof *vals);
    for (int i = 0; i < n; i++)
        vals[i] = x->where.params[i];
    vals[n] = x->after[0] ? x->after : NULL;
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "SELECT %s FROM " SM_SUBSCRIBER_FROM " WHERE s.erased_at IS NULL AND (%s) AND "
                    "($%d::uuid IS NULL OR s.id > $%d::uuid) ORDER BY s.id LIMIT %d",
                    sm_subscriber_cols, x->where.sql.data, n + 1, n + 1, EXPORT_PAGE);
    db_query(x->app->db, sql.data, n + 1, vals, on_page, x);
    core_buf_free(&sql);
    free(vals);
}

static void on_rules(const db_result *r, void *data)
{
    export_ctx *x = data;
    char err[256];
    json_t *rules = db_result_ok(r) && db_result_rows(r) == 1
                        ? json_loads(db_result_get(r, 0, "rules"), 0, NULL)
                        : NULL;
    if (!rules || !sm_rule_compile(rules, 1, &x->where, err, sizeof err)) {
        if (!db_result_ok(r))
            sm_unavailable(x->req, r);
        else
            sm_problem(x->req, 404, "no such segment");
        json_decref(rules);
        export_end(x);
        return;
    }
    json_decref(rules);
    next_page(x);
}

static void handle_export(http_req *req, void *data)
{
    sm_app *app = data;
    const char *list = http_query(req, "list_id"), *seg = http_query(req, "segment_id");
    core_uuid u;
    if (!list == !seg) {
        sm_invalid(req, "list_id", "give exactly one of list_id and segment_id");
        return;
    }
    if (!core_uuid_parse(list ? list : seg, &u)) {
        sm_invalid(req, list ? "list_id" : "segment_id", "must be a UUID");
        return;
    }
    export_ctx *x = core_xcalloc(1, sizeof *x);
    x->app = app;
    x->req = http_req_ref(req);
    uv_timer_init(app->loop, &x->timer);
    x->timer.data = x;
    char id[CORE_UUID_STRLEN + 1];
    core_uuid_format(&u, id);
    if (list) {
        json_t *rule = json_pack("{s:s,s:s,s:s}", "field", "list", "op", "in", "value", id);
        char err[128];
        sm_rule_compile(rule, 1, &x->where, err, sizeof err);
        json_decref(rule);
        next_page(x);
    } else {
        const char *v[] = {id};
        db_query(app->db, "SELECT rules::text AS rules FROM segments WHERE id = $1::uuid", 1, v,
                 on_rules, x);
    }
}

void sm_export_register(sm_app *app)
{
    sm_route(app, "GET", "/api/subscribers/export.csv", AUTH_ROLE_EDITOR, handle_export);
}
