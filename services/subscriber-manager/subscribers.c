/*
 * /api/subscribers: create, read, search (by e-mail through the blind index, by status, by
 * list; cursor pagination), update, GDPR export and erase (crypto-shredding). Every change is a
 * SubscriberEvent in the same transaction.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define SUBS "/api/subscribers"

/* clang-format off */
const char sm_subscriber_cols[] =
    "s.id::text AS id, k.email_enc, k.name_enc, k.wrapped_key, s.status, "
    "s.attributes::text AS attributes, s.consent_source, k.consent_ip_enc, s.version, "
    SM_TS("s.consent_at") " AS consent_at, "
    SM_TS("s.created_at") " AS created_at, "
    SM_TS("s.updated_at") " AS updated_at, "
    SM_TS("s.confirmed_at") " AS confirmed_at, "
    SM_TS("s.erased_at") " AS erased_at, "
    "(SELECT json_agg(json_build_object('list_id', l.list_id, 'status', l.status) "
    "ORDER BY l.list_id) FROM subscriptions l WHERE l.subscriber_id = s.id)::text AS lists";
/* clang-format on */

/* ---------------------------------------------------------------- sealing */

void sm_seal_subscriber(sm_app *app, const char *id, const uint8_t *dek, const char *email,
                        const char *name, const char *ip, sm_sealed *out)
{
    memset(out, 0, sizeof *out);
    uint8_t wrapped[SM_WRAPPED_LEN];
    char idx[CORE_UUID_STRLEN + 1];
    if (dek) {
        memcpy(out->dek, dek, SM_KEY_BYTES);
    } else {
        sm_key_new(&app->keys, id, out->dek, wrapped);
        sm_bytea_hex(&out->wrapped, wrapped, sizeof wrapped);
    }
    sm_blind_index_text(&app->keys, email, idx);
    core_buf_puts(&out->index, idx);
    const char *fields[] = {email, name, ip};
    core_buf *bufs[] = {&out->email, &out->name, &out->ip};
    const char *names[] = {"email", "name", "ip"};
    for (int i = 0; i < 3; i++) {
        if (!fields[i]) continue;
        size_t n = strlen(fields[i]);
        uint8_t *sealed = core_xcalloc(1, n + SM_SEAL_OVERHEAD);
        sm_seal(out->dek, id, names[i], fields[i], n, sealed);
        sm_bytea_hex(bufs[i], sealed, n + SM_SEAL_OVERHEAD);
        free(sealed);
    }
}

void sm_sealed_free(sm_sealed *s)
{
    sodium_memzero(s->dek, sizeof s->dek);
    core_buf_free(&s->index);
    core_buf_free(&s->email);
    core_buf_free(&s->name);
    core_buf_free(&s->wrapped);
    core_buf_free(&s->ip);
}

char *sm_pii_json(const char *email, const char *name, json_t *extra)
{
    if (!extra) { /* written directly: an import makes one per row */
        core_buf b = {0};
        email = email ? email : "";
        name = name ? name : "";
        core_buf_puts(&b, "{\"email\":\"");
        core_buf_json_escape(&b, email, strlen(email));
        core_buf_puts(&b, "\",\"name\":\"");
        core_buf_json_escape(&b, name, strlen(name));
        core_buf_puts(&b, "\"}");
        return core_buf_steal(&b, NULL);
    }
    json_t *o = json_pack("{s:s,s:s}", "email", email ? email : "", "name", name ? name : "");
    if (extra) json_object_update(o, extra);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

char *sm_link_token(sm_app *app, const char *purpose, const char *id)
{
    int64_t ttl = strcmp(purpose, "confirm") == 0 ? app->link_ttl_s : app->unsub_ttl_s;
    return auth_link_sign(app->keys.token, purpose, id, core_now_unix_ms() / 1000 + ttl);
}

/* The decrypted field of column col, or NULL (shredded, absent). */
static char *open_col(const uint8_t *dek, const db_result *r, int row, const char *id,
                      const char *col, const char *field)
{
    int c = db_result_column(r, col);
    if (c < 0 || db_result_isnull(r, row, c)) return NULL;
    size_t len = 0;
    const uint8_t *b = db_result_bytea(r, row, c, &len);
    return sm_open(dek, id, field, b, len, NULL);
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Unwraps the subscriber key of row; false when shredded. */
static bool row_dek(sm_app *app, const db_result *r, int row, uint8_t dek[SM_KEY_BYTES])
{
    int c = db_result_column(r, "wrapped_key");
    if (c < 0 || db_result_isnull(r, row, c)) return false;
    size_t len = 0;
    const uint8_t *w = db_result_bytea(r, row, c, &len);
    return sm_key_unwrap(&app->keys, db_result_get(r, row, "id"), w, len, dek);
}

json_t *sm_subscriber_json(sm_app *app, const db_result *r, int row)
{
    const char *id = db_result_get(r, row, "id");
    uint8_t dek[SM_KEY_BYTES];
    char *email = NULL, *name = NULL, *ip = NULL;
    if (row_dek(app, r, row, dek)) {
        email = open_col(dek, r, row, id, "email_enc", "email");
        name = open_col(dek, r, row, id, "name_enc", "name");
        ip = open_col(dek, r, row, id, "consent_ip_enc", "ip");
        sodium_memzero(dek, sizeof dek);
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "email", str_or_null(email));
    json_object_set_new(o, "name", str_or_null(name));
    json_object_set_new(o, "status", json_string(db_result_get(r, row, "status")));
    json_t *attrs = json_loads(db_result_get(r, row, "attributes"), 0, NULL);
    json_object_set_new(o, "attributes", attrs ? attrs : json_object());
    json_t *lists =
        json_loads(db_result_get(r, row, "lists") ? db_result_get(r, row, "lists") : "[]", 0, NULL);
    json_object_set_new(o, "lists", lists ? lists : json_array());
    json_object_set_new(
        o, "consent",
        json_pack("{s:o,s:o,s:o}", "source", str_or_null(db_result_get(r, row, "consent_source")),
                  "time", str_or_null(db_result_get(r, row, "consent_at")), "ip", str_or_null(ip)));
    json_object_set_new(o, "created_at", json_string(db_result_get(r, row, "created_at")));
    json_object_set_new(o, "updated_at", json_string(db_result_get(r, row, "updated_at")));
    json_object_set_new(o, "confirmed_at", str_or_null(db_result_get(r, row, "confirmed_at")));
    json_object_set_new(o, "erased", json_boolean(db_result_get(r, row, "erased_at") != NULL));
    int64_t v = 0;
    db_result_int64(r, row, db_result_column(r, "version"), &v);
    json_object_set_new(o, "version", json_integer(v));
    if (email) sodium_memzero(email, strlen(email));
    free(email);
    free(name);
    free(ip);
    return o;
}

/* ---------------------------------------------------------------- input */

static const char *const statuses[] = {"pending",     "active",  "unsubscribed",
                                       "blocklisted", "bounced", NULL};

static bool is_status(const char *s)
{
    for (int i = 0; s && statuses[i]; i++)
        if (!strcmp(s, statuses[i])) return true;
    return false;
}

typedef struct sub_input {
    char email[SM_EMAIL_MAX + 1];
    char name[SM_NAME_MAX + 1];
    bool has_email, has_name;
    const char *status;
    char *attributes; /* JSON text or NULL */
    char *lists;      /* {uuid,...} array literal or NULL */
    size_t nlists;
    char **list_ids;
} sub_input;

static void input_free(sub_input *in)
{
    free(in->attributes);
    free(in->lists);
    sm_ids_free(in->list_ids, in->nlists);
}

/* Parses the members of a subscriber body; answers 400 and returns false when invalid. */
static bool parse_input(http_req *req, json_t *body, sub_input *in, bool create)
{
    const char *why = NULL;
    json_t *v;
    memset(in, 0, sizeof *in);
    if (!json_is_object(body)) {
        sm_invalid(req, "body", "the body must be a JSON object");
        return false;
    }
    const char *key;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "email") && strcmp(key, "name") && strcmp(key, "status") &&
            strcmp(key, "attributes") && strcmp(key, "lists") && strcmp(key, "version")) {
            sm_invalid(req, key, "unknown member");
            return false;
        }
    }
    if ((v = json_object_get(body, "email")) || create) {
        if (!json_is_string(v) ||
            !sm_email_normalize(json_string_value(v), json_string_length(v), in->email, &why)) {
            sm_invalid(req, "email", why ? why : "email must be a string");
            return false;
        }
        in->has_email = true;
    }
    if ((v = json_object_get(body, "name"))) {
        if (!json_is_string(v) ||
            !sm_name_normalize(json_string_value(v), json_string_length(v), in->name, &why)) {
            sm_invalid(req, "name", why ? why : "name must be a string");
            return false;
        }
        in->has_name = true;
    }
    if (create && !in->name[0]) {
        /* listmonk's default: the local part of the address */
        const char *at = strchr(in->email, '@');
        snprintf(in->name, sizeof in->name, "%.*s", (int)(at - in->email), in->email);
        in->has_name = true;
    }
    if ((v = json_object_get(body, "status"))) {
        if (!is_status(json_string_value(v))) {
            sm_invalid(req, "status",
                       "status must be pending, active, unsubscribed, blocklisted or bounced");
            return false;
        }
        for (int i = 0; statuses[i]; i++)
            if (!strcmp(statuses[i], json_string_value(v))) in->status = statuses[i];
    }
    if ((v = json_object_get(body, "attributes"))) {
        if (!json_is_object(v)) {
            sm_invalid(req, "attributes", "attributes must be a JSON object");
            return false;
        }
        in->attributes = json_dumps(v, JSON_COMPACT);
        if (strlen(in->attributes) > 65536) {
            sm_invalid(req, "attributes", "attributes are larger than 64 KiB");
            return false;
        }
    }
    if ((v = json_object_get(body, "lists")) &&
        !sm_uuid_list(v, 1000, &in->lists, &in->list_ids, &in->nlists)) {
        sm_invalid(req, "lists", "lists must be an array of list ids");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- create */

typedef struct sub_op {
    sub_input in;
    sm_sealed sealed;
    char *pii;
    const char *ip;
} sub_op;

static void sub_op_free(void *p)
{
    sub_op *so = p;
    input_free(&so->in);
    sm_sealed_free(&so->sealed);
    free(so->pii);
    free(so);
}

static void select_subscriber(sm_op *op)
{
    core_buf sql = {0};
    core_buf_printf(&sql, "SELECT %s FROM " SM_SUBSCRIBER_FROM " WHERE s.id = $1::uuid",
                    sm_subscriber_cols);
    const char *v[] = {op->id};
    sm_q(op, sql.data, 1, v);
    core_buf_free(&sql);
}

static void create_step(sm_op *op, const db_result *r)
{
    sub_op *so = op->ctx;
    switch (op->step) {
    case 0: {
        const char *status = so->in.status ? so->in.status : "active";
        const char *v[] = {op->id,
                           so->sealed.index.data,
                           so->sealed.email.data,
                           so->sealed.name.data,
                           so->sealed.wrapped.data,
                           status,
                           so->in.attributes ? so->in.attributes : "{}"};
        sm_q(op,
             "WITH k AS (INSERT INTO subscriber_secrets (subscriber_id, email_index, email_enc, "
             "name_enc, wrapped_key) VALUES ($1::uuid, $2::uuid, $3::bytea, $4::bytea, "
             "$5::bytea)) INSERT INTO subscribers (id, status, attributes, consent_source, "
             "consent_at, confirmed_at) VALUES ($1::uuid, $6, $7::jsonb, 'admin', now(), "
             "CASE WHEN $6 = 'active' THEN now() END)",
             7, v);
        const char *lv[] = {so->in.lists ? so->in.lists : "{}", op->id, status};
        sm_q(op,
             "INSERT INTO subscriptions (list_id, subscriber_id, status) SELECT l, $2::uuid, "
             "CASE WHEN $3 = 'active' THEN 'confirmed' ELSE 'unconfirmed' END "
             "FROM unnest($1::uuid[]) AS l",
             3, lv);
        sm_event_add(op, &(sm_event){.subscriber_id = op->id,
                                     .kind = "created",
                                     .status = status,
                                     .list_ids = (const char *const *)so->in.list_ids,
                                     .nlists = so->in.nlists,
                                     .dek = so->sealed.dek,
                                     .pii_json = so->pii});
        select_subscriber(op);
        return;
    }
    case 4:
        op->status = 201;
        op->reply = sm_subscriber_json(op->app, r, 0);
        {
            char loc[128];
            snprintf(loc, sizeof loc, SUBS "/%s", op->id);
            http_set_header(op->req, "Location", loc);
        }
        sm_commit(op);
        return;
    default:
        return;
    }
}

/* ---------------------------------------------------------------- read, search */

typedef struct read_ctx {
    sm_app *app;
    http_req *req;
    int limit;
} read_ctx;

static void on_read(const db_result *r, void *data)
{
    read_ctx *rc = data;
    http_req *req = rc->req;
    if (!db_result_ok(r)) {
        sm_unavailable(req, r);
    } else if (rc->limit == 0) {
        if (db_result_rows(r) == 0)
            sm_problem(req, 404, "no such subscriber");
        else
            http_respond_json(req, 200, sm_subscriber_json(rc->app, r, 0));
    } else {
        int rows = db_result_rows(r), n = rows > rc->limit ? rc->limit : rows;
        json_t *items = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(items, sm_subscriber_json(rc->app, r, i));
        json_t *next = rows > rc->limit ? json_string(db_result_get(r, n - 1, "id")) : json_null();
        http_respond_json(req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next));
    }
    http_req_unref(req);
    free(rc);
}

static void handle_get(http_req *req, void *data)
{
    sm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    read_ctx *rc = core_xcalloc(1, sizeof *rc);
    rc->app = app;
    rc->req = http_req_ref(req);
    core_buf sql = {0};
    core_buf_printf(&sql, "SELECT %s FROM " SM_SUBSCRIBER_FROM " WHERE s.id = $1::uuid",
                    sm_subscriber_cols);
    const char *v[] = {id};
    db_query(app->db, sql.data, 1, v, on_read, rc);
    core_buf_free(&sql);
}

static void handle_list(http_req *req, void *data)
{
    sm_app *app = data;
    const char *email = http_query(req, "email");
    const char *status = http_query(req, "status");
    const char *list = http_query(req, "list_id");
    const char *cursor = http_query(req, "cursor");
    int limit;
    if (!sm_query_limit(req, 50, 500, &limit)) return;
    char norm[SM_EMAIL_MAX + 1], listc[CORE_UUID_STRLEN + 1], after[CORE_UUID_STRLEN + 1];
    const char *why;
    core_buf idx = {0};
    if (email) {
        if (!sm_email_normalize(email, strlen(email), norm, &why)) {
            sm_invalid(req, "email", why);
            return;
        }
        char h[CORE_UUID_STRLEN + 1];
        sm_blind_index_text(&app->keys, norm, h);
        core_buf_puts(&idx, h);
    }
    if (status && !is_status(status)) {
        sm_invalid(req, "status",
                   "status must be pending, active, unsubscribed, blocklisted or "
                   "bounced");
        return;
    }
    core_uuid u;
    if (list) {
        if (!core_uuid_parse(list, &u)) {
            sm_invalid(req, "list_id", "must be a UUID");
            return;
        }
        core_uuid_format(&u, listc);
    }
    if (cursor) {
        if (!core_uuid_parse(cursor, &u)) {
            sm_invalid(req, "cursor", "the cursor is not one this service returned");
            return;
        }
        core_uuid_format(&u, after);
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "SELECT %s FROM " SM_SUBSCRIBER_FROM
                    " WHERE ($1::uuid IS NULL OR k.email_index = "
                    "$1::uuid) AND ($2::text IS NULL OR s.status = $2) AND ($3::uuid IS NULL OR "
                    "EXISTS (SELECT 1 FROM subscriptions l WHERE l.subscriber_id = s.id AND "
                    "l.list_id = $3::uuid)) AND ($4::uuid IS NULL OR s.id < $4::uuid) "
                    "ORDER BY s.id DESC LIMIT $5::int",
                    sm_subscriber_cols);
    const char *v[] = {email ? idx.data : NULL, status, list ? listc : NULL, cursor ? after : NULL,
                       lim};
    read_ctx *rc = core_xcalloc(1, sizeof *rc);
    rc->app = app;
    rc->req = http_req_ref(req);
    rc->limit = limit;
    db_query(app->db, sql.data, 5, v, on_read, rc);
    core_buf_free(&sql);
    core_buf_free(&idx);
}

/* ---------------------------------------------------------------- update */

static void update_step(sm_op *op, const db_result *r)
{
    sub_op *so = op->ctx;
    sm_app *app = op->app;
    switch (op->step) {
    case 0: {
        const char *v[] = {op->id};
        sm_q(op,
             "SELECT s.id::text AS id, k.wrapped_key, k.email_enc, k.name_enc, s.status, "
             "s.erased_at FROM " SM_SUBSCRIBER_FROM " WHERE s.id = $1::uuid FOR UPDATE OF s",
             1, v);
        return;
    }
    case 1: {
        if (db_result_rows(r) != 1) {
            sm_fail(op, 404, "no such subscriber");
            return;
        }
        uint8_t dek[SM_KEY_BYTES];
        if (db_result_get(r, 0, "erased_at") || !row_dek(app, r, 0, dek)) {
            sm_fail(op, 409, "the subscriber was erased");
            return;
        }
        char *email = so->in.has_email ? NULL : open_col(dek, r, 0, op->id, "email_enc", "email");
        char *name = so->in.has_name ? NULL : open_col(dek, r, 0, op->id, "name_enc", "name");
        const char *e = so->in.has_email ? so->in.email : email;
        const char *n = so->in.has_name ? so->in.name : name;
        sm_seal_subscriber(app, op->id, dek, e ? e : "", n ? n : "", NULL, &so->sealed);
        so->pii = sm_pii_json(e, n, NULL);
        free(email);
        free(name);
        sodium_memzero(dek, sizeof dek);
        const char *status = so->in.status;
        const char *v[] = {op->id,
                           so->in.has_email ? so->sealed.index.data : NULL,
                           so->in.has_email ? so->sealed.email.data : NULL,
                           so->in.has_name ? so->sealed.name.data : NULL,
                           status,
                           so->in.attributes};
        sm_q(op,
             "WITH k AS (UPDATE subscriber_secrets SET email_index = COALESCE($2::uuid, "
             "email_index), email_enc = COALESCE($3::bytea, email_enc), name_enc = "
             "COALESCE($4::bytea, name_enc) WHERE subscriber_id = $1::uuid) "
             "UPDATE subscribers SET status = COALESCE($5, status), attributes = "
             "COALESCE($6::jsonb, "
             "attributes), confirmed_at = CASE WHEN $5 = 'active' AND confirmed_at IS NULL THEN "
             "now() ELSE confirmed_at END, updated_at = now(), version = version + 1 "
             "WHERE id = $1::uuid",
             6, v);
        if (so->in.lists) {
            const char *lv[] = {so->in.lists, op->id};
            sm_q(op,
                 "INSERT INTO subscriptions (list_id, subscriber_id, status) SELECT l, $2::uuid, "
                 "'confirmed' FROM unnest($1::uuid[]) AS l ON CONFLICT (list_id, subscriber_id) "
                 "DO UPDATE SET status = 'confirmed', updated_at = now()",
                 2, lv);
        } else {
            sm_q(op, "SELECT 1", 0, NULL);
        }
        sm_event_add(op, &(sm_event){.subscriber_id = op->id,
                                     .kind = "updated",
                                     .status = status ? status : db_result_get(r, 0, "status"),
                                     .list_ids = (const char *const *)so->in.list_ids,
                                     .nlists = so->in.nlists,
                                     .dek = so->sealed.dek,
                                     .pii_json = so->pii});
        select_subscriber(op);
        return;
    }
    case 5:
        op->status = 200;
        op->reply = sm_subscriber_json(app, r, 0);
        sm_commit(op);
        return;
    default:
        return;
    }
}

/* POST (create) or PATCH: the body is validated whole before the transaction starts. */
static void sub_write(http_req *req, sm_app *app, bool create)
{
    char id[CORE_UUID_STRLEN + 1];
    if (create)
        core_uuid_v7_string(id);
    else if (!sm_path_uuid(req, "id", id))
        return;
    json_t *body = http_json_body(req);
    if (!body) return;
    sub_op *so = core_xcalloc(1, sizeof *so);
    bool ok = parse_input(req, body, &so->in, create);
    json_decref(body);
    if (!ok) {
        sub_op_free(so);
        return;
    }
    if (create) {
        sm_seal_subscriber(app, id, NULL, so->in.email, so->in.name, NULL, &so->sealed);
        so->pii = sm_pii_json(so->in.email, so->in.name, NULL);
    }
    sm_op_start_id(app, req, create ? create_step : update_step, so, sub_op_free, id, 0);
}

static void handle_create(http_req *req, void *data)
{
    sub_write(req, data, true);
}

static void handle_patch(http_req *req, void *data)
{
    sub_write(req, data, false);
}

/* ---------------------------------------------------------------- erase, export */

/* Leaving: unsubscribe (status unsubscribed unless blocklisted) or erase (crypto-shredding:
 * the wrapped key, the sealed fields and the attributes go; the row stays as an anonymous
 * tombstone keeping only the blind index, so an import cannot resurrect consent; the shredded
 * key made every sealed copy, rows and events on Kafka, unreadable). Either way every
 * membership is unsubscribed and an event written, in one transaction. */
typedef struct leave_spec {
    const char *sql;
    const char *kind;
    bool erase;
} leave_spec;

static const leave_spec leave_erase = {
    .sql = "WITH k AS (UPDATE subscriber_secrets SET email_enc = NULL, name_enc = NULL, "
           "consent_ip_enc = NULL, wrapped_key = NULL WHERE subscriber_id = $1::uuid) "
           "UPDATE subscribers SET attributes = '{}', status = 'unsubscribed', "
           "erased_at = COALESCE(erased_at, now()), updated_at = now(), version = version + 1 "
           "WHERE id = $1::uuid",
    .kind = "erased",
    .erase = true,
};
static const leave_spec leave_unsubscribe = {
    .sql = "UPDATE subscribers SET status = CASE WHEN status = 'blocklisted' THEN status ELSE "
           "'unsubscribed' END, updated_at = now(), version = version + 1 WHERE id = $1::uuid",
    .kind = "unsubscribed",
};

static void leave_step(sm_op *op, const db_result *r)
{
    const leave_spec *l = op->ctx;
    switch (op->step) {
    case 0: {
        const char *v[] = {op->id};
        sm_q(op, l->sql, 1, v);
        sm_q(op,
             "UPDATE subscriptions SET status = 'unsubscribed', updated_at = now() "
             "WHERE subscriber_id = $1::uuid",
             1, v);
        return;
    }
    case 1:
        if (db_result_affected(r) != 1) sm_fail(op, 404, "no such subscriber");
        return;
    case 2:
        sm_event_add(
            op, &(sm_event){.subscriber_id = op->id, .kind = l->kind, .status = "unsubscribed"});
        return;
    default:
        op->status = 200;
        op->reply =
            json_pack("{s:s,s:s,s:b}", "id", op->id, "status", "unsubscribed", "erased", l->erase);
        sm_commit(op);
    }
}

void sm_subscriber_leave(sm_app *app, http_req *req, const char *id, bool erase)
{
    sm_op_start_id(app, req, leave_step, (void *)(erase ? &leave_erase : &leave_unsubscribe), NULL,
                   id, 0);
}

static void handle_erase(http_req *req, void *data)
{
    char id[CORE_UUID_STRLEN + 1];
    if (sm_path_uuid(req, "id", id)) sm_subscriber_leave(data, req, id, true);
}

static void export_step(sm_op *op, const db_result *r)
{
    switch (op->step) {
    case 0:
        select_subscriber(op);
        return;
    case 1:
        if (db_result_rows(r) != 1) {
            sm_fail(op, 404, "no such subscriber");
            return;
        }
        op->reply = json_pack("{s:o,s:s,s:s}", "subscriber", sm_subscriber_json(op->app, r, 0),
                              "exported_at", "", "note",
                              "other services answer the export_requested event with their own "
                              "data about this subscriber");
        {
            char ts[CORE_RFC3339_LEN + 1];
            core_format_rfc3339(core_now_unix_ms(), ts);
            json_object_set_new(op->reply, "exported_at", json_string(ts));
        }
        sm_event_add(op, &(sm_event){.subscriber_id = op->id,
                                     .kind = "export_requested",
                                     .status = db_result_get(r, 0, "status")});
        return;
    default:
        op->status = 200;
        sm_commit(op);
    }
}

static void handle_export(http_req *req, void *data)
{
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    sm_op_start_id(data, req, export_step, NULL, NULL, id, 0);
}

/* Signed links for a subscriber, for editors (and tests): what the distributor puts in mail. */
static void handle_links(http_req *req, void *data)
{
    sm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    char *c = sm_link_token(app, "confirm", id), *u = sm_link_token(app, "unsubscribe", id),
         *p = sm_link_token(app, "preferences", id);
    http_respond_json(req, 200,
                      json_pack("{s:s,s:s,s:s}", "confirm_token", c, "unsubscribe_token", u,
                                "preferences_token", p));
    free(c);
    free(u);
    free(p);
}

void sm_subscribers_register(sm_app *app)
{
    sm_route(app, "GET", SUBS, AUTH_ROLE_VIEWER, handle_list);
    sm_route(app, "POST", SUBS, AUTH_ROLE_EDITOR, handle_create);
    sm_route(app, "GET", SUBS "/{id}", AUTH_ROLE_VIEWER, handle_get);
    sm_route(app, "PATCH", SUBS "/{id}", AUTH_ROLE_EDITOR, handle_patch);
    sm_route(app, "DELETE", SUBS "/{id}", AUTH_ROLE_ADMIN, handle_erase);
    sm_route(app, "POST", SUBS "/{id}/erase", AUTH_ROLE_ADMIN, handle_erase);
    sm_route(app, "GET", SUBS "/{id}/export", AUTH_ROLE_ADMIN, handle_export);
    sm_route(app, "GET", SUBS "/{id}/links", AUTH_ROLE_EDITOR, handle_links);
}
