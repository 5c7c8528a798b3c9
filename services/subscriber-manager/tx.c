/* Helpers the handlers share: problems, parameters, identity, routes, the op step machine, the
 * SubscriberEvent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contentengine/v1/people.pb-c.h"
#include "sm.h"

void sm_problem(http_req *req, int status, const char *detail)
{
    const char *title = status == 400   ? "Invalid request"
                        : status == 401 ? "Unauthorized"
                        : status == 403 ? "Forbidden"
                        : status == 404 ? "Not Found"
                        : status == 409 ? "Conflict"
                        : status == 429 ? "Too Many Requests"
                        : status == 503 ? "Service Unavailable"
                                        : "Error";
    if (status == 401) http_set_header(req, "WWW-Authenticate", "Bearer");
    http_respond_problem(req, status, title, detail);
}

void sm_invalid(http_req *req, const char *field, const char *detail)
{
    json_t *errors = json_pack("[{s:s,s:s}]", "field", field, "detail", detail);
    http_respond_problem_ext(req, 400, NULL, "Invalid request", detail,
                             json_pack("{s:o}", "errors", errors));
}

void sm_unavailable(http_req *req, const db_result *r)
{
    if (r)
        core_log_warn("database error", CORE_F_STR("sqlstate", db_result_sqlstate(r)),
                      CORE_F_STR("error", db_result_error(r)));
    http_set_header(req, "Retry-After", "1");
    http_respond_problem(req, 503, "Service Unavailable", "the database is unavailable");
}

bool sm_path_uuid(http_req *req, const char *name, char out[CORE_UUID_STRLEN + 1])
{
    core_uuid u;
    const char *id = http_param(req, name);
    if (!id || !core_uuid_parse(id, &u)) {
        sm_invalid(req, name, "must be a UUID");
        return false;
    }
    core_uuid_format(&u, out);
    return true;
}

bool sm_uuid_list(const json_t *arr, size_t max, char **literal, char ***ids, size_t *n)
{
    *literal = NULL;
    *ids = NULL;
    *n = 0;
    if (!json_is_array(arr) || json_array_size(arr) > max) return false;
    core_buf b = {0};
    core_buf_puts(&b, "{");
    char **out = core_xcalloc(json_array_size(arr) + 1, sizeof *out);
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        core_uuid u;
        if (!json_is_string(e) || !core_uuid_parse(json_string_value(e), &u)) {
            core_buf_free(&b);
            sm_ids_free(out, i);
            return false;
        }
        out[i] = core_xcalloc(1, CORE_UUID_STRLEN + 1);
        core_uuid_format(&u, out[i]);
        core_buf_printf(&b, "%s%s", i ? "," : "", out[i]);
    }
    core_buf_puts(&b, "}");
    *literal = core_buf_steal(&b, NULL);
    *ids = out;
    *n = json_array_size(arr);
    return true;
}

void sm_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
}

typedef struct rows_ctx {
    http_req *req;
    sm_row_fn fn;
    const char *not_found; /* NULL: all rows as items */
} rows_ctx;

static void on_rows(const db_result *r, void *data)
{
    rows_ctx *c = data;
    if (!db_result_ok(r)) {
        sm_unavailable(c->req, r);
    } else if (c->not_found) {
        if (db_result_rows(r) == 0)
            sm_problem(c->req, 404, c->not_found);
        else
            http_respond_json(c->req, 200, c->fn(r, 0));
    } else {
        json_t *a = json_array();
        for (int i = 0; i < db_result_rows(r); i++)
            json_array_append_new(a, c->fn(r, i));
        http_respond_json(c->req, 200, json_pack("{s:o}", "items", a));
    }
    http_req_unref(c->req);
    free(c);
}

static void query_rows(sm_app *app, http_req *req, const char *sql, int n, const char *const *vals,
                       sm_row_fn fn, const char *not_found)
{
    rows_ctx *c = core_xcalloc(1, sizeof *c);
    c->req = http_req_ref(req);
    c->fn = fn;
    c->not_found = not_found;
    db_query(app->db, sql, n, vals, on_rows, c);
}

void sm_query_items(sm_app *app, http_req *req, const char *sql, int n, const char *const *vals,
                    sm_row_fn fn)
{
    query_rows(app, req, sql, n, vals, fn, NULL);
}

void sm_query_one(sm_app *app, http_req *req, const char *sql, int n, const char *const *vals,
                  sm_row_fn fn, const char *not_found)
{
    query_rows(app, req, sql, n, vals, fn, not_found);
}

void sm_get_by_id(sm_app *app, http_req *req, const char *sql, sm_row_fn fn, const char *not_found)
{
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    const char *v[] = {id};
    query_rows(app, req, sql, 1, v, fn, not_found);
}

bool sm_query_limit(http_req *req, int def, int max, int *out)
{
    const char *s = http_query(req, "limit");
    *out = def;
    if (!s) return true;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > max) {
        char msg[64];
        snprintf(msg, sizeof msg, "limit must be an integer from 1 to %d", max);
        sm_invalid(req, "limit", msg);
        return false;
    }
    *out = (int)v;
    return true;
}

bool sm_identity(http_req *req, sm_app *app, auth_claims *out)
{
    return auth_authorize(&app->signer.pub, http_header(req, "Authorization"), NULL,
                          AUTH_ROLE_VIEWER, core_now_unix_ms() / 1000, SM_ISSUER, out, NULL) == 0;
}

/* Every route with a "role" meta needs a valid access token of at least that role. Identity
 * headers a client (or the gateway) sends are never trusted here: only the signature is. */
static bool auth_middleware(http_req *req, void *data)
{
    sm_app *app = data;
    const char *need = http_endpoint_meta(http_req_endpoint(req), "role");
    if (!need) return true;
    auth_role role = AUTH_ROLE_ADMIN;
    auth_role_parse(need, &role);
    auth_claims c;
    const char *why = NULL;
    int st = auth_authorize(&app->signer.pub, http_header(req, "Authorization"), NULL, role,
                            core_now_unix_ms() / 1000, SM_ISSUER, &c, &why);
    if (st == 0) return true;
    sm_problem(req, st, why);
    return false;
}

void sm_route(sm_app *app, const char *method, const char *pattern, auth_role role,
              http_handler_fn fn)
{
    static bool installed;
    if (!installed) {
        http_server_use(app->http, auth_middleware, app);
        installed = true;
    }
    http_endpoint *ep = http_route(app->http, method, pattern, fn, app);
    if (ep && role != AUTH_ROLE_NONE) http_endpoint_set_meta(ep, "role", auth_role_name(role));
}

/* ---------------------------------------------------------------- ops */

static void op_free(sm_op *op)
{
    if (op->ctx_free) op->ctx_free(op->ctx);
    json_decref(op->reply);
    if (op->req) http_req_unref(op->req);
    free(op);
}

static void op_end(sm_op *op, bool ok, int status, const char *detail)
{
    if (op->done) op->done(op, ok);
    if (op->req) {
        if (ok) {
            if (op->reply)
                http_respond_json(op->req, op->status ? op->status : 200, json_incref(op->reply));
            else
                http_respond(op->req, 204, NULL, NULL, 0);
        } else if (status == 503) {
            sm_unavailable(op->req, NULL);
        } else {
            sm_problem(op->req, status, detail);
        }
    }
    op_free(op);
}

static void on_rolled_back(const db_result *r, void *data)
{
    (void)r;
    sm_op *op = data;
    op_end(op, false, op->status, op->detail);
}

void sm_fail(sm_op *op, int status, const char *detail)
{
    op->status = status;
    snprintf(op->detail, sizeof op->detail, "%s", detail ? detail : "");
    if (op->txn) {
        db_txn *t = op->txn;
        op->txn = NULL;
        db_rollback(t, on_rolled_back, op);
    } else {
        op_end(op, false, status, op->detail);
    }
}

static void db_failed(sm_op *op, const db_result *r)
{
    const char *st = db_result_sqlstate(r);
    if (strcmp(st, "23505") == 0)
        sm_fail(op, 409, "it already exists");
    else if (strcmp(st, "23503") == 0)
        sm_fail(op, 404, "a referenced list or subscriber does not exist");
    else if (strncmp(st, "22", 2) == 0 || strcmp(st, "23514") == 0)
        sm_fail(op, 400, "a value is not valid");
    else {
        core_log_warn("operation failed", CORE_F_STR("sqlstate", st),
                      CORE_F_STR("error", db_result_error(r)));
        sm_fail(op, 503, "the database is unavailable");
    }
}

static void on_stmt(db_txn *t, const db_result *r, void *data)
{
    (void)t;
    sm_op *op = data;
    op->pending--;
    if (!op->txn) return; /* already failed */
    if (!db_result_ok(r)) {
        db_failed(op, r);
        return;
    }
    op->step++;
    op->step_fn(op, r);
}

static void on_begin(db_txn *t, const db_result *r, void *data)
{
    sm_op *op = data;
    if (!t) {
        op->status = 503;
        core_log_warn("begin failed", CORE_F_STR("error", db_result_error(r)));
        op_end(op, false, 503, "the database is unavailable");
        return;
    }
    op->txn = t;
    op->step_fn(op, NULL);
}

sm_op *sm_op_start(sm_app *app, http_req *req, sm_step_fn fn, void *ctx, void (*ctx_free)(void *))
{
    sm_op *op = core_xcalloc(1, sizeof *op);
    op->app = app;
    op->req = req ? http_req_ref(req) : NULL;
    op->step_fn = fn;
    op->ctx = ctx;
    op->ctx_free = ctx_free;
    db_begin(app->db, on_begin, op);
    return op;
}

sm_op *sm_op_start_id(sm_app *app, http_req *req, sm_step_fn fn, void *ctx,
                      void (*ctx_free)(void *), const char *id, int status)
{
    sm_op *op = sm_op_start(app, req, fn, ctx, ctx_free);
    snprintf(op->id, sizeof op->id, "%s", id);
    op->status = status;
    return op;
}

void sm_q(sm_op *op, const char *sql, int n, const char *const *vals)
{
    op->pending++;
    db_txn_query(op->txn, sql, n, vals, on_stmt, op);
}

void sm_qb(sm_op *op, const char *sql, int n, const char *const *vals, const int *lengths,
           const int *formats)
{
    op->pending++;
    db_txn_query_params(op->txn, sql, n, vals, lengths, formats, on_stmt, op);
}

void sm_copy(sm_op *op, const char *sql, const void *data, size_t len)
{
    op->pending++;
    db_txn_copy_in(op->txn, sql, data, len, on_stmt, op);
}

void sm_outbox(sm_op *op, const bus_record *rec)
{
    op->pending++;
    db_outbox_add(op->txn, rec, on_stmt, op);
}

static void on_committed(const db_result *r, void *data)
{
    sm_op *op = data;
    if (!db_result_ok(r)) {
        core_log_warn("commit failed", CORE_F_STR("error", db_result_error(r)));
        op_end(op, false, 503, "the database is unavailable");
        return;
    }
    if (op->fail_status)
        op_end(op, false, op->fail_status, op->detail);
    else
        op_end(op, true, op->status, NULL);
}

void sm_commit(sm_op *op)
{
    db_txn *t = op->txn;
    op->txn = NULL;
    db_commit(t, on_committed, op);
}

/* ---------------------------------------------------------------- delete */

typedef struct delete_spec {
    const char *sql;
    const char *what;
    void (*after)(sm_op *op);
} delete_spec;

static void delete_step(sm_op *op, const db_result *r)
{
    delete_spec *d = op->ctx;
    switch (op->step) {
    case 0: {
        const char *v[] = {op->id};
        sm_q(op, d->sql, 1, v);
        return;
    }
    case 1:
        if (db_result_affected(r) != 1) {
            sm_fail(op, 404, d->what);
            return;
        }
        if (d->after) {
            d->after(op);
            return;
        }
        /* fall through */
    default:
        sm_commit(op);
    }
}

void sm_delete(sm_app *app, http_req *req, const char *id, const char *sql, const char *what,
               void (*after)(sm_op *op))
{
    delete_spec *d = core_xcalloc(1, sizeof *d);
    *d = (delete_spec){.sql = sql, .what = what, .after = after};
    sm_op_start_id(app, req, delete_step, d, free, id, 0);
}

/* ---------------------------------------------------------------- events */

const char *sm_topic_events = TOPIC_SUBSCRIBER_EVENTS;
const char *sm_topic_imports = TOPIC_SUBSCRIBER_IMPORTS;

/* The kinds this service emits are constants; another kind is formatted into a per-thread ring
 * (the import's seal phase runs on the thread pool). */
const char *sm_event_type(const char *kind)
{
    static const char *const known[][2] = {
        {"created", SM_EVENT_TYPE("created")},
        {"updated", SM_EVENT_TYPE("updated")},
        {"confirmation_requested", SM_EVENT_TYPE("confirmation_requested")},
        {"confirmed", SM_EVENT_TYPE("confirmed")},
        {"unsubscribed", SM_EVENT_TYPE("unsubscribed")},
        {"erased", SM_EVENT_TYPE("erased")},
        {"export_requested", SM_EVENT_TYPE("export_requested")},
        {"preferences_updated", SM_EVENT_TYPE("preferences_updated")},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(kind, known[i][0])) return known[i][1];
    static _Thread_local char types[16][96];
    static _Thread_local int next;
    char *type = types[next++ % 16];
    snprintf(type, 96, SM_EVENT_TYPE("%s"), kind);
    return type;
}

void sm_event_record(const sm_event *ev, bus_record *rec, uint8_t **buf)
{
    Contentengine__V1__SubscriberEvent e = CONTENTENGINE__V1__SUBSCRIBER_EVENT__INIT;
    e.subscriber_id = (char *)ev->subscriber_id;
    e.kind = (char *)ev->kind;
    e.status = (char *)(ev->status ? ev->status : "");
    e.list_ids = (char **)ev->list_ids;
    e.n_list_ids = ev->nlists;
    e.occurred_unix_ms = core_now_unix_ms();
    uint8_t small[512], *sealed = NULL;
    if ((ev->dek || ev->sealer) && ev->pii_json) {
        size_t n = strlen(ev->pii_json);
        sealed =
            n + SM_SEAL_OVERHEAD <= sizeof small ? small : core_xcalloc(1, n + SM_SEAL_OVERHEAD);
        if (ev->sealer)
            sm_sealer_seal(ev->sealer, ev->subscriber_id, "event", ev->pii_json, n, sealed);
        else
            sm_seal(ev->dek, ev->subscriber_id, "event", ev->pii_json, n, sealed);
        e.encrypted_pii.data = sealed;
        e.encrypted_pii.len = n + SM_SEAL_OVERHEAD;
        e.key_id = (char *)ev->subscriber_id;
    }
    size_t len = contentengine__v1__subscriber_event__get_packed_size(&e);
    *buf = core_xcalloc(1, len ? len : 1);
    contentengine__v1__subscriber_event__pack(&e, *buf);
    if (sealed != small) free(sealed);
    *rec = (bus_record){.topic = sm_topic_events,
                        .partition = BUS_PARTITION_ANY,
                        .key = ev->subscriber_id,
                        .key_len = strlen(ev->subscriber_id),
                        .value = *buf,
                        .value_len = len,
                        .ce_type = sm_event_type(ev->kind),
                        .ce_subject = ev->subscriber_id};
}

void sm_event_add(sm_op *op, const sm_event *ev)
{
    bus_record rec;
    uint8_t *buf;
    sm_event_record(ev, &rec, &buf);
    sm_outbox(op, &rec);
    free(buf);
    core_counter_add(op->app->m_events, 1, ev->kind);
}
