/*
 * The JSON API under /api/scraper (the paths the gateway forwards, prefix included):
 *
 *   POST   /api/scraper/sources              register a source (201)
 *   GET    /api/scraper/sources              list
 *   GET    /api/scraper/sources/{id}
 *   DELETE /api/scraper/sources/{id}         (204; its items and runs go with it)
 *   POST   /api/scraper/sources/{id}/pause   no more scheduled runs
 *   POST   /api/scraper/sources/{id}/resume
 *   POST   /api/scraper/sources/{id}/run     run now (202 with the run; 409 when one runs)
 *   GET    /api/scraper/sources/{id}/runs    its runs, newest first
 *   GET    /api/scraper/runs/{id}
 *   GET    /api/scraper/items?source_id=&limit=&cursor=
 *   GET    /api/scraper/items/{id}
 *
 * Every error is application/problem+json (RFC 9457); bad input changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

#define API "/api/scraper"

static void respond_invalid(http_req *req, const char *detail, json_t *errors)
{
    http_respond_problem_ext(req, 400, NULL, "Invalid request", detail,
                             json_pack("{s:o}", "errors", errors));
}

static void invalid_field(http_req *req, const char *field, const char *detail)
{
    respond_invalid(req, detail, json_pack("[{s:s,s:s}]", "field", field, "detail", detail));
}

static void add_error(json_t *errors, const char *field, const char *detail)
{
    json_array_append_new(errors, json_pack("{s:s,s:s}", "field", field, "detail", detail));
}

static void unavailable(http_req *req, const db_result *r)
{
    core_log_warn("database error", CORE_F_STR("error", db_result_error(r)));
    http_set_header(req, "Retry-After", "1");
    http_respond_problem(req, 503, "Service Unavailable", "the database is unavailable");
}

static bool path_id(http_req *req, char out[CORE_UUID_STRLEN + 1])
{
    core_uuid u;
    const char *id = http_param(req, "id");
    if (!id || !core_uuid_parse(id, &u)) {
        invalid_field(req, "id", "the id must be a UUID");
        return false;
    }
    core_uuid_format(&u, out);
    return true;
}

/* ---------------------------------------------------------------- generic row answers */

typedef json_t *(*row_json_fn)(const db_result *r, int row);

typedef struct row_ctx {
    http_req *req;
    row_json_fn fn;
    int status;
    const char *what; /* "source", "run", "item" for 404 */
    int limit;        /* lists: page size (the query asked for one more) */
    const char *list_key;
} row_ctx;

static row_ctx *row_ctx_new(http_req *req, row_json_fn fn, int status, const char *what)
{
    row_ctx *c = core_xcalloc(1, sizeof *c);
    c->req = http_req_ref(req);
    c->fn = fn;
    c->status = status;
    c->what = what;
    return c;
}

static void on_row(const db_result *r, void *data)
{
    row_ctx *c = data;
    if (!db_result_ok(r)) {
        if (strcmp(db_result_sqlstate(r), "22P02") == 0 ||
            strcmp(db_result_sqlstate(r), "23503") == 0)
            http_respond_problem(c->req, 404, "Not Found", "no such source");
        else
            unavailable(c->req, r);
    } else if (db_result_rows(r) == 0) {
        char detail[64];
        snprintf(detail, sizeof detail, "no such %s", c->what);
        http_respond_problem(c->req, 404, "Not Found", detail);
    } else if (c->status == 204) {
        http_respond(c->req, 204, NULL, NULL, 0);
    } else {
        http_respond_json(c->req, c->status, c->fn(r, 0));
    }
    http_req_unref(c->req);
    free(c);
}

static void on_rows(const db_result *r, void *data)
{
    row_ctx *c = data;
    if (!db_result_ok(r)) {
        unavailable(c->req, r);
    } else {
        json_t *arr = json_array();
        int rows = db_result_rows(r);
        int n = c->limit && rows > c->limit ? c->limit : rows;
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, c->fn(r, i));
        json_t *next = json_null();
        if (c->limit && rows > c->limit) {
            json_decref(next);
            next = json_string(db_result_get(r, n - 1, "id"));
        }
        http_respond_json(c->req, 200,
                          json_pack("{s:o,s:o}", c->list_key, arr, "next_cursor", next));
    }
    http_req_unref(c->req);
    free(c);
}

/* GET of one row by the {id} of the path. */
static void get_one(http_req *req, sc_app *app, const char *table, const char *cols, row_json_fn fn,
                    const char *what)
{
    char id[CORE_UUID_STRLEN + 1];
    if (!path_id(req, id)) return;
    core_buf sql = {0};
    core_buf_printf(&sql, "SELECT %s FROM %s WHERE id = $1", cols, table);
    const char *p[] = {id};
    db_query(app->db, sql.data, 1, p, on_row, row_ctx_new(req, fn, 200, what));
    core_buf_free(&sql);
}

/* ---------------------------------------------------------------- sources */

typedef struct source_in {
    const char *name, *url, *kind;
    int64_t interval_ms, max_items;
    char *include, *exclude; /* JSON text */
    bool paused;
} source_in;

static bool validate_source(json_t *body, source_in *in, json_t *errors)
{
    memset(in, 0, sizeof *in);
    in->interval_ms = 3600000;
    in->max_items = 100;
    in->name = "";
    if (!json_is_object(body)) {
        add_error(errors, "", "the body must be a JSON object");
        return false;
    }
    static const char *const known[] = {
        "name",    "url",     "kind",      "interval", "interval_seconds",
        "include", "exclude", "max_items", "paused",   NULL};
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        bool ok = false;
        for (int i = 0; known[i]; i++)
            if (strcmp(key, known[i]) == 0) ok = true;
        if (!ok) {
            char d[160];
            snprintf(d, sizeof d, "unknown field \"%.100s\"", key);
            add_error(errors, key, d);
        }
    }
    v = json_object_get(body, "url");
    const char *url = json_string_value(v);
    char *norm = url ? sc_url_normalize(NULL, url) : NULL;
    if (!url || !*url)
        add_error(errors, "url", "url is required: the page, feed or sitemap URL");
    else if (strlen(url) > 2048)
        add_error(errors, "url", "url must be at most 2048 characters");
    else if (!norm)
        add_error(errors, "url", "url must be an absolute http:// or https:// URL");
    free(norm);
    in->url = url;
    in->kind = json_string_value(json_object_get(body, "kind"));
    if (!in->kind ||
        (strcmp(in->kind, "page") && strcmp(in->kind, "feed") && strcmp(in->kind, "sitemap")))
        add_error(errors, "kind", "kind must be one of page, feed, sitemap");
    v = json_object_get(body, "name");
    if (v && (!json_is_string(v) || strlen(json_string_value(v)) > 200))
        add_error(errors, "name", "name must be a string of at most 200 characters");
    else if (v)
        in->name = json_string_value(v);
    v = json_object_get(body, "interval");
    json_t *secs = json_object_get(body, "interval_seconds");
    if (v) {
        int64_t ms;
        if (!json_is_string(v) || !core_parse_duration_ms(json_string_value(v), &ms) || ms < 1000 ||
            ms > 30LL * 86400000)
            add_error(errors, "interval",
                      "interval must be a duration such as \"30m\" or \"6h\", from 1s to 30 days");
        else
            in->interval_ms = ms;
    } else if (secs) {
        double s = json_number_value(secs);
        if (!json_is_number(secs) || s < 1 || s > 30.0 * 86400)
            add_error(errors, "interval_seconds",
                      "interval_seconds must be a number from 1 to 2592000");
        else
            in->interval_ms = (int64_t)(s * 1000);
    }
    v = json_object_get(body, "max_items");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100000)
            add_error(errors, "max_items", "max_items must be an integer from 1 to 100000");
        else
            in->max_items = json_integer_value(v);
    }
    v = json_object_get(body, "paused");
    if (v && !json_is_boolean(v)) add_error(errors, "paused", "paused must be true or false");
    in->paused = json_is_true(v);
    const char *lists[] = {"include", "exclude"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(body, lists[i]);
        char err[256];
        sc_patterns *p = sc_patterns_new(v, err, sizeof err);
        if (!p) {
            char d[320];
            snprintf(d, sizeof d, "%s: %s", lists[i], err);
            add_error(errors, lists[i], d);
        }
        sc_patterns_free(p);
        char *txt = v && json_is_array(v) ? json_dumps(v, JSON_COMPACT) : core_xstrdup("[]");
        if (i == 0)
            in->include = txt;
        else
            in->exclude = txt;
    }
    if (json_array_size(errors) == 0) return true;
    free(in->include);
    free(in->exclude);
    in->include = in->exclude = NULL;
    return false;
}

static void handle_create(http_req *req, void *data)
{
    sc_app *app = data;
    json_t *body = http_json_body(req);
    if (!body) return;
    json_t *errors = json_array();
    source_in in;
    if (!validate_source(body, &in, errors)) {
        respond_invalid(req, "the source is not valid", errors);
        json_decref(body);
        return;
    }
    json_decref(errors);
    char id[CORE_UUID_STRLEN + 1], ms[24], max[24];
    core_uuid_v7_string(id);
    snprintf(ms, sizeof ms, "%lld", (long long)in.interval_ms);
    snprintf(max, sizeof max, "%lld", (long long)in.max_items);
    char *url = sc_url_normalize(NULL, in.url);
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "INSERT INTO sources (id, name, url, kind, interval_ms, include_patterns, "
                    "exclude_patterns, max_items, status) VALUES ($1, $2, $3, $4, $5::bigint, "
                    "$6::jsonb, $7::jsonb, $8::int, $9) RETURNING %s",
                    sc_source_cols);
    const char *p[] = {id,         in.name, url,
                       in.kind,    ms,      in.include,
                       in.exclude, max,     in.paused ? "paused" : "active"};
    char loc[128];
    snprintf(loc, sizeof loc, API "/sources/%s", id);
    http_set_header(req, "Location", loc);
    db_query(app->db, sql.data, 9, p, on_row, row_ctx_new(req, sc_source_json, 201, "source"));
    core_buf_free(&sql);
    free(url);
    free(in.include);
    free(in.exclude);
    json_decref(body);
}

static void handle_list_sources(http_req *req, void *data)
{
    sc_app *app = data;
    core_buf sql = {0};
    core_buf_printf(&sql, "SELECT %s FROM sources ORDER BY id DESC LIMIT 1000", sc_source_cols);
    row_ctx *c = row_ctx_new(req, sc_source_json, 200, "source");
    c->list_key = "sources";
    db_query(app->db, sql.data, 0, NULL, on_rows, c);
    core_buf_free(&sql);
}

static void source_query(http_req *req, sc_app *app, const char *fmt, int status)
{
    char id[CORE_UUID_STRLEN + 1];
    if (!path_id(req, id)) return;
    core_buf sql = {0};
    core_buf_printf(&sql, fmt, sc_source_cols);
    const char *p[] = {id};
    db_query(app->db, sql.data, 1, p, on_row, row_ctx_new(req, sc_source_json, status, "source"));
    core_buf_free(&sql);
}

static void handle_get_source(http_req *req, void *data)
{
    get_one(req, data, "sources", sc_source_cols, sc_source_json, "source");
}

static void handle_pause(http_req *req, void *data)
{
    source_query(req, data,
                 "UPDATE sources SET status = 'paused', updated_at = now() WHERE id = $1 "
                 "RETURNING %s",
                 200);
}

static void handle_resume(http_req *req, void *data)
{
    source_query(req, data,
                 "UPDATE sources SET status = 'active', updated_at = now() WHERE id = $1 "
                 "RETURNING %s",
                 200);
}

static void handle_delete(http_req *req, void *data)
{
    sc_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!path_id(req, id)) return;
    sc_run_cancel_source(app, id);
    const char *p[] = {id};
    db_query(app->db, "DELETE FROM sources WHERE id = $1 RETURNING id::text AS id", 1, p, on_row,
             row_ctx_new(req, sc_source_json, 204, "source"));
}

static void on_run_started(sc_start_outcome outcome, json_t *run, void *data)
{
    http_req *req = data;
    switch (outcome) {
    case SC_START_OK: {
        char loc[128];
        snprintf(loc, sizeof loc, API "/runs/%s", json_string_value(json_object_get(run, "id")));
        http_set_header(req, "Location", loc);
        http_respond_json(req, 202, run);
        break;
    }
    case SC_START_NOT_FOUND:
        http_respond_problem(req, 404, "Not Found", "no such source");
        break;
    case SC_START_RUNNING:
        http_respond_problem(req, 409, "Conflict",
                             "a run of this source is in progress; wait for it to end");
        break;
    default:
        http_set_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, "Service Unavailable", "the database is unavailable");
        break;
    }
    http_req_unref(req);
}

static void handle_run(http_req *req, void *data)
{
    sc_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!path_id(req, id)) return;
    if (app->stopping || !app->started) {
        http_set_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, "Service Unavailable",
                             app->stopping ? "the scraper is shutting down"
                                           : "the scraper is starting");
        return;
    }
    sc_run_start(app, id, "manual", on_run_started, http_req_ref(req));
}

/* ---------------------------------------------------------------- runs */

static void handle_source_runs(http_req *req, void *data)
{
    sc_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!path_id(req, id)) return;
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "SELECT %s FROM runs WHERE source_id = $1 ORDER BY started_at DESC, id DESC "
                    "LIMIT 100",
                    sc_run_cols);
    const char *p[] = {id};
    row_ctx *c = row_ctx_new(req, sc_run_json, 200, "run");
    c->list_key = "runs";
    db_query(app->db, sql.data, 1, p, on_rows, c);
    core_buf_free(&sql);
}

static void handle_get_run(http_req *req, void *data)
{
    get_one(req, data, "runs", sc_run_cols, sc_run_json, "run");
}

/* ---------------------------------------------------------------- items */

static void handle_list_items(http_req *req, void *data)
{
    sc_app *app = data;
    const char *source = http_query(req, "source_id");
    const char *cursor = http_query(req, "cursor");
    const char *limit_s = http_query(req, "limit");
    core_uuid u;
    char sid[CORE_UUID_STRLEN + 1] = "", after[CORE_UUID_STRLEN + 1] = "";
    if (source && !core_uuid_parse(source, &u)) {
        invalid_field(req, "source_id", "source_id must be a UUID");
        return;
    }
    if (source) core_uuid_format(&u, sid);
    if (cursor && !core_uuid_parse(cursor, &u)) {
        invalid_field(req, "cursor", "the cursor is not one this service returned");
        return;
    }
    if (cursor) core_uuid_format(&u, after);
    long limit = 50;
    if (limit_s) {
        char *e;
        limit = strtol(limit_s, &e, 10);
        if (e == limit_s || *e || limit < 1 || limit > 500) {
            invalid_field(req, "limit", "limit must be an integer from 1 to 500");
            return;
        }
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%ld", limit + 1);
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "SELECT %s FROM items WHERE ($1::uuid IS NULL OR source_id = $1::uuid) AND "
                    "($2::uuid IS NULL OR id < $2::uuid) ORDER BY id DESC LIMIT $3::int",
                    sc_item_cols);
    const char *p[] = {sid[0] ? sid : NULL, after[0] ? after : NULL, lim};
    row_ctx *c = row_ctx_new(req, sc_item_row_json, 200, "item");
    c->limit = (int)limit;
    c->list_key = "items";
    db_query(app->db, sql.data, 3, p, on_rows, c);
    core_buf_free(&sql);
}

static void handle_get_item(http_req *req, void *data)
{
    get_one(req, data, "items", sc_item_cols, sc_item_row_json, "item");
}

void sc_api_register(sc_app *app)
{
    http_route(app->http, "POST", API "/sources", handle_create, app);
    http_route(app->http, "GET", API "/sources", handle_list_sources, app);
    http_route(app->http, "GET", API "/sources/{id}", handle_get_source, app);
    http_route(app->http, "DELETE", API "/sources/{id}", handle_delete, app);
    http_route(app->http, "POST", API "/sources/{id}/pause", handle_pause, app);
    http_route(app->http, "POST", API "/sources/{id}/resume", handle_resume, app);
    http_route(app->http, "POST", API "/sources/{id}/run", handle_run, app);
    http_route(app->http, "GET", API "/sources/{id}/runs", handle_source_runs, app);
    http_route(app->http, "GET", API "/runs/{id}", handle_get_run, app);
    http_route(app->http, "GET", API "/items", handle_list_items, app);
    http_route(app->http, "GET", API "/items/{id}", handle_get_item, app);
}
