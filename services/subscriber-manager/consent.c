/*
 * Public consent flows under /api/public (no login; rate-limited per client address):
 *   POST /api/public/subscribe          pending + confirmation_requested event (double opt-in)
 *   GET|POST /api/public/confirm?token  POST confirms (GET only describes: mail scanners GET)
 *   GET|POST /api/public/unsubscribe?token   POST = RFC 8058 one-click, no login
 *   GET|POST /api/public/preferences?token   name and public list memberships
 * Tokens are signed, expiring links (libs/auth auth_link_*) bound to a purpose and subscriber.
 * Answers never reveal whether an address is known.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define PUB "/api/public"

static bool rate_ok(http_req *req, sm_app *app)
{
    int64_t retry = 0;
    if (auth_buckets_take(app->public_buckets, http_remote_addr(req), core_now_unix_ms(), &retry))
        return true;
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)((retry + 999) / 1000));
    http_set_header(req, "Retry-After", s);
    sm_problem(req, 429, "too many requests from this address");
    return false;
}

/* The subscriber id of a link token; answers 400 (malformed, tampered, wrong purpose) or 410
 * (expired) and returns false. */
static bool link_subject(http_req *req, sm_app *app, const char *purpose,
                         char id[CORE_UUID_STRLEN + 1])
{
    const char *token = http_query(req, "token");
    char sub[64];
    auth_status st = auth_link_verify(app->keys.token, token, purpose, core_now_unix_ms() / 1000,
                                      sub, sizeof sub);
    core_uuid u;
    if (st == AUTH_EXPIRED) {
        sm_problem(req, 410, "this link has expired");
        return false;
    }
    if (st != AUTH_OK || !core_uuid_parse(sub, &u)) {
        sm_invalid(req, "token", "the link is not valid");
        return false;
    }
    core_uuid_format(&u, id);
    return true;
}

/* ---------------------------------------------------------------- subscribe */

typedef struct pub_ctx {
    char email[SM_EMAIL_MAX + 1];
    char name[SM_NAME_MAX + 1];
    char ip[64];
    char *lists; /* array literal */
    char **list_ids;
    size_t nlists;
    bool exists, erased, blocked, double_optin;
    char status[16];
    char *wrapped; /* of an existing row, hex */
    sm_sealed sealed;
    char *pii;
    char *confirm_pii;
} pub_ctx;

static void pub_free(void *p)
{
    pub_ctx *c = p;
    free(c->lists);
    sm_ids_free(c->list_ids, c->nlists);
    free(c->wrapped);
    sm_sealed_free(&c->sealed);
    free(c->pii);
    free(c->confirm_pii);
    free(c);
}

static void pub_events(sm_op *op, pub_ctx *c, const char *kind)
{
    sm_event_add(op, &(sm_event){.subscriber_id = op->id,
                                 .kind = kind,
                                 .status = c->status,
                                 .list_ids = (const char *const *)c->list_ids,
                                 .nlists = c->nlists,
                                 .dek = c->sealed.dek,
                                 .pii_json = c->pii});
    if (c->double_optin && strcmp(c->status, "active") != 0) {
        char *ct = sm_link_token(op->app, "confirm", op->id);
        char *ut = sm_link_token(op->app, "unsubscribe", op->id);
        json_t *extra = json_pack("{s:s,s:s}", "confirm_token", ct, "unsubscribe_token", ut);
        c->confirm_pii = sm_pii_json(c->email, c->name, extra);
        json_decref(extra);
        free(ct);
        free(ut);
        sm_event_add(op, &(sm_event){.subscriber_id = op->id,
                                     .kind = "confirmation_requested",
                                     .status = c->status,
                                     .list_ids = (const char *const *)c->list_ids,
                                     .nlists = c->nlists,
                                     .dek = c->sealed.dek,
                                     .pii_json = c->confirm_pii});
    }
}

static void subscribe_step(sm_op *op, const db_result *r)
{
    pub_ctx *c = op->ctx;
    sm_app *app = op->app;
    switch (op->step) {
    case 0: {
        char idx[CORE_UUID_STRLEN + 1];
        sm_blind_index_text(&app->keys, c->email, idx);
        const char *v[] = {idx};
        sm_q(op,
             "SELECT s.id::text AS id, s.status, k.wrapped_key, k.name_enc, s.erased_at IS NOT "
             "NULL AS erased FROM subscriber_secrets k JOIN subscribers s ON s.id = "
             "k.subscriber_id WHERE k.email_index = $1::uuid FOR UPDATE OF s",
             1, v);
        const char *lv[] = {c->lists};
        sm_q(op,
             "SELECT count(*) AS n, bool_or(optin = 'double') AS dbl FROM lists "
             "WHERE id = ANY($1::uuid[]) AND visibility = 'public'",
             1, lv);
        return;
    }
    case 1:
        if (db_result_rows(r) == 1) {
            c->exists = true;
            snprintf(op->id, sizeof op->id, "%s", db_result_get(r, 0, "id"));
            snprintf(c->status, sizeof c->status, "%s", db_result_get(r, 0, "status"));
            c->erased = !strcmp(db_result_get(r, 0, "erased"), "t");
            c->blocked = !strcmp(c->status, "blocklisted");
            if (!c->erased) {
                uint8_t dek[SM_KEY_BYTES];
                size_t len = 0;
                const uint8_t *w = db_result_bytea(r, 0, db_result_column(r, "wrapped_key"), &len);
                if (!w || !sm_key_unwrap(&app->keys, op->id, w, len, dek)) {
                    c->blocked = true; /* unreadable: leave it alone */
                } else {
                    const uint8_t *ne =
                        db_result_bytea(r, 0, db_result_column(r, "name_enc"), &len);
                    char *name = ne ? sm_open(dek, op->id, "name", ne, len, NULL) : NULL;
                    snprintf(c->name, sizeof c->name, "%s", name ? name : "");
                    free(name);
                    memcpy(c->sealed.dek, dek, sizeof dek);
                    sodium_memzero(dek, sizeof dek);
                }
            }
        }
        return;
    case 2: {
        int64_t n = 0;
        db_result_int64(r, 0, 0, &n);
        if ((size_t)n != c->nlists) {
            sm_fail(op, 400, "a list does not exist or is not public");
            return;
        }
        c->double_optin = db_result_get(r, 0, "dbl") && !strcmp(db_result_get(r, 0, "dbl"), "t");
        if (c->blocked) {
            sm_commit(op); /* same answer, nothing changes */
            return;
        }
        if (!c->exists) core_uuid_v7_string(op->id);
        const char *new_status = c->double_optin ? "pending" : "active";
        if (!c->exists || c->erased) {
            /* a new person, or one who was erased and now gives fresh consent: a new key */
            snprintf(c->status, sizeof c->status, "%s", new_status);
            sm_seal_subscriber(app, op->id, NULL, c->email, c->name, c->ip, &c->sealed);
            const char *v[] = {op->id,
                               c->sealed.index.data,
                               c->sealed.email.data,
                               c->sealed.name.data,
                               c->sealed.wrapped.data,
                               c->status,
                               c->sealed.ip.data};
            sm_q(op,
                 "WITH k AS (INSERT INTO subscriber_secrets (subscriber_id, email_index, "
                 "email_enc, name_enc, wrapped_key, consent_ip_enc) VALUES ($1::uuid, $2::uuid, "
                 "$3::bytea, $4::bytea, $5::bytea, $7::bytea) ON CONFLICT (subscriber_id) DO "
                 "UPDATE SET email_enc = EXCLUDED.email_enc, name_enc = EXCLUDED.name_enc, "
                 "wrapped_key = EXCLUDED.wrapped_key, consent_ip_enc = EXCLUDED.consent_ip_enc) "
                 "INSERT INTO subscribers (id, status, consent_source, consent_at, confirmed_at) "
                 "VALUES ($1::uuid, $6, 'public-form', now(), CASE WHEN $6 = 'active' THEN now() "
                 "END) ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, consent_source = "
                 "EXCLUDED.consent_source, consent_at = now(), confirmed_at = "
                 "EXCLUDED.confirmed_at, erased_at = NULL, attributes = '{}', updated_at = now(), "
                 "version = subscribers.version + 1",
                 7, v);
        } else {
            /* known: keep the person's data (a public form must not overwrite it), record the
             * new consent, re-open an unsubscribed address */
            if (!strcmp(c->status, "unsubscribed") || !strcmp(c->status, "bounced"))
                snprintf(c->status, sizeof c->status, "%s", new_status);
            core_buf ip = {0};
            size_t n_ip = strlen(c->ip);
            uint8_t *sealed = core_xcalloc(1, n_ip + SM_SEAL_OVERHEAD);
            sm_seal(c->sealed.dek, op->id, "ip", c->ip, n_ip, sealed);
            sm_bytea_hex(&ip, sealed, n_ip + SM_SEAL_OVERHEAD);
            free(sealed);
            const char *v[] = {op->id, c->status, ip.data};
            sm_q(op,
                 "WITH k AS (UPDATE subscriber_secrets SET consent_ip_enc = $3::bytea WHERE "
                 "subscriber_id = $1::uuid) UPDATE subscribers SET status = $2, consent_source = "
                 "'public-form', consent_at = now(), updated_at = now(), "
                 "version = version + 1 WHERE id = $1::uuid",
                 3, v);
            core_buf_free(&ip);
        }
        const char *lv[] = {c->lists, op->id};
        sm_q(op,
             "INSERT INTO subscriptions (list_id, subscriber_id, status) "
             "SELECT l.id, $2::uuid, CASE WHEN l.optin = 'double' THEN 'unconfirmed' ELSE "
             "'confirmed' END FROM lists l WHERE l.id = ANY($1::uuid[]) "
             "ON CONFLICT (list_id, subscriber_id) DO UPDATE SET status = CASE WHEN "
             "subscriptions.status = 'confirmed' THEN 'confirmed' ELSE EXCLUDED.status END, "
             "updated_at = now()",
             2, lv);
        c->pii = sm_pii_json(c->email, c->name, NULL);
        return;
    }
    case 3:
        return;
    case 4:
        pub_events(op, c, c->exists && !c->erased ? "subscribed" : "created");
        op->step = 100;
        return;
    default:
        if (op->pending == 0) sm_commit(op);
    }
}

static void handle_subscribe(http_req *req, void *data)
{
    sm_app *app = data;
    if (!rate_ok(req, app)) return;
    json_t *body = http_json_body(req);
    if (!body) return;
    pub_ctx *c = core_xcalloc(1, sizeof *c);
    const char *why = NULL;
    json_t *email = json_object_get(body, "email"), *name = json_object_get(body, "name");
    json_t *lists = json_object_get(body, "lists");
    bool ok = true;
    if (!json_is_string(email) ||
        !sm_email_normalize(json_string_value(email), json_string_length(email), c->email, &why)) {
        sm_invalid(req, "email", why ? why : "email is required");
        ok = false;
    } else if (name && (!json_is_string(name) ||
                        !sm_name_normalize(json_string_value(name), json_string_length(name),
                                           c->name, &why))) {
        sm_invalid(req, "name", why ? why : "name must be a string");
        ok = false;
    } else if (!json_is_array(lists) || json_array_size(lists) == 0 ||
               json_array_size(lists) > 50) {
        sm_invalid(req, "lists", "lists must name 1 to 50 public lists");
        ok = false;
    }
    if (ok) {
        if (!c->name[0]) {
            const char *at = strchr(c->email, '@');
            snprintf(c->name, sizeof c->name, "%.*s", (int)(at - c->email), c->email);
        }
        if (!sm_uuid_list(lists, 50, &c->lists, &c->list_ids, &c->nlists)) {
            sm_invalid(req, "lists", "lists must be list ids");
            ok = false;
        }
    }
    json_decref(body);
    if (!ok) {
        pub_free(c);
        return;
    }
    snprintf(c->ip, sizeof c->ip, "%s", http_remote_addr(req));
    sm_op *op = sm_op_start(app, req, subscribe_step, c, pub_free);
    op->status = 202;
    op->reply = json_pack("{s:s,s:s}", "status", "accepted", "detail",
                          "if the address can receive mail, a confirmation is on its way");
}

/* ---------------------------------------------------------------- confirm, unsubscribe */

static void confirm_step(sm_op *op, const db_result *r)
{
    switch (op->step) {
    case 0: {
        const char *v[] = {op->id};
        sm_q(op,
             "UPDATE subscribers SET status = 'active', confirmed_at = COALESCE(confirmed_at, "
             "now()), updated_at = now(), version = version + 1 WHERE id = $1::uuid AND "
             "erased_at IS NULL AND status IN ('pending', 'active')",
             1, v);
        return;
    }
    case 1: {
        if (db_result_affected(r) != 1) {
            sm_fail(op, 409, "this subscription cannot be confirmed any more");
            return;
        }
        const char *v[] = {op->id};
        sm_q(op,
             "UPDATE subscriptions SET status = 'confirmed', updated_at = now() WHERE "
             "subscriber_id = $1::uuid AND status = 'unconfirmed' RETURNING list_id::text",
             1, v);
        return;
    }
    case 2: {
        int n = db_result_rows(r);
        const char **ids = core_xcalloc((size_t)n + 1, sizeof *ids);
        for (int i = 0; i < n; i++)
            ids[i] = db_result_value(r, i, 0);
        sm_event_add(op, &(sm_event){.subscriber_id = op->id,
                                     .kind = "confirmed",
                                     .status = "active",
                                     .list_ids = ids,
                                     .nlists = (size_t)n});
        free(ids);
        return;
    }
    default:
        op->status = 200;
        op->reply = json_pack("{s:s}", "status", "active");
        sm_commit(op);
    }
}

static void handle_confirm(http_req *req, void *data)
{
    sm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!rate_ok(req, app) || !link_subject(req, app, "confirm", id)) return;
    sm_op_start_id(app, req, confirm_step, NULL, NULL, id, 0);
}

static void handle_unsubscribe(http_req *req, void *data)
{
    sm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (rate_ok(req, app) && link_subject(req, app, "unsubscribe", id))
        sm_subscriber_leave(app, req, id, false);
}

/* GET of a confirm or unsubscribe link: says what POST will do, changes nothing (link
 * scanners and prefetchers GET every link in a mail). */
static void describe(http_req *req, sm_app *app, const char *purpose)
{
    if (!rate_ok(req, app)) return;
    char id[CORE_UUID_STRLEN + 1];
    if (!link_subject(req, app, purpose, id)) return;
    http_respond_json(req, 200,
                      json_pack("{s:s,s:s}", "action", purpose, "how",
                                "POST to this same URL to confirm the action"));
}

static void handle_confirm_get(http_req *req, void *data)
{
    describe(req, data, "confirm");
}

static void handle_unsubscribe_get(http_req *req, void *data)
{
    describe(req, data, "unsubscribe");
}

/* ---------------------------------------------------------------- preferences */

typedef struct pref_ctx {
    sm_app *app;
    http_req *req;
    char id[CORE_UUID_STRLEN + 1];
    bool has_name;
    char name[SM_NAME_MAX + 1];
    char *lists; /* public lists wanted, array literal; NULL: unchanged */
    sm_sealed sealed;
    char *pii;
} pref_ctx;

static void pref_free(void *p)
{
    pref_ctx *c = p;
    free(c->lists);
    sm_sealed_free(&c->sealed);
    free(c->pii);
    free(c);
}

static void on_prefs(const db_result *r, void *data)
{
    pref_ctx *c = data;
    if (!db_result_ok(r)) {
        sm_unavailable(c->req, r);
    } else if (db_result_rows(r) == 0) {
        sm_problem(c->req, 404, "no such subscriber");
    } else {
        json_t *s = sm_subscriber_json(c->app, r, 0);
        json_t *lists = json_loads(db_result_get(r, 0, "public_lists"), 0, NULL);
        http_respond_json(c->req, 200,
                          json_pack("{s:O,s:O,s:O,s:o}", "name", json_object_get(s, "name"),
                                    "email", json_object_get(s, "email"), "status",
                                    json_object_get(s, "status"), "lists",
                                    lists ? lists : json_array()));
        json_decref(s);
    }
    http_req_unref(c->req);
    pref_free(c);
}

static void handle_prefs_get(http_req *req, void *data)
{
    sm_app *app = data;
    if (!rate_ok(req, app)) return;
    pref_ctx *c = core_xcalloc(1, sizeof *c);
    if (!link_subject(req, app, "preferences", c->id)) {
        pref_free(c);
        return;
    }
    c->app = app;
    c->req = http_req_ref(req);
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "SELECT %s, (SELECT json_agg(json_build_object('id', x.id, 'name', x.name, "
                    "'subscribed', COALESCE(y.status <> 'unsubscribed', false)) ORDER BY x.name) "
                    "FROM lists x LEFT JOIN subscriptions y ON y.list_id = x.id AND "
                    "y.subscriber_id = s.id WHERE x.visibility = 'public')::text AS public_lists "
                    "FROM " SM_SUBSCRIBER_FROM " WHERE s.id = $1::uuid AND s.erased_at IS NULL",
                    sm_subscriber_cols);
    const char *v[] = {c->id};
    db_query(app->db, sql.data, 1, v, on_prefs, c);
    core_buf_free(&sql);
}

static void prefs_step(sm_op *op, const db_result *r)
{
    pref_ctx *c = op->ctx;
    switch (op->step) {
    case 0: {
        const char *v[] = {op->id};
        sm_q(
            op,
            "SELECT s.id::text AS id, k.wrapped_key, k.email_enc, s.status FROM " SM_SUBSCRIBER_FROM
            " WHERE s.id = $1::uuid AND s.erased_at IS NULL FOR UPDATE OF s",
            1, v);
        return;
    }
    case 1: {
        uint8_t dek[SM_KEY_BYTES];
        size_t len = 0;
        const uint8_t *w = db_result_rows(r) == 1
                               ? db_result_bytea(r, 0, db_result_column(r, "wrapped_key"), &len)
                               : NULL;
        if (!w || !sm_key_unwrap(&op->app->keys, op->id, w, len, dek)) {
            sm_fail(op, 404, "no such subscriber");
            return;
        }
        const uint8_t *ee = db_result_bytea(r, 0, db_result_column(r, "email_enc"), &len);
        char *email = ee ? sm_open(dek, op->id, "email", ee, len, NULL) : NULL;
        sm_seal_subscriber(op->app, op->id, dek, email ? email : "", c->name, NULL, &c->sealed);
        c->pii = c->has_name ? sm_pii_json(email, c->name, NULL) : NULL;
        free(email);
        const char *v[] = {op->id, c->has_name ? c->sealed.name.data : NULL};
        sm_q(op,
             "WITH k AS (UPDATE subscriber_secrets SET name_enc = COALESCE($2::bytea, name_enc) "
             "WHERE subscriber_id = $1::uuid) UPDATE subscribers SET updated_at = "
             "now(), version = version + 1 WHERE id = $1::uuid",
             2, v);
        /* public lists: wanted ones confirmed (the link proves the address), others left */
        const char *lv[] = {op->id, c->lists};
        sm_q(op,
             "WITH wanted AS (SELECT id FROM lists WHERE visibility = 'public' AND id = "
             "ANY(COALESCE($2::uuid[], '{}'))), up AS (INSERT INTO subscriptions (list_id, "
             "subscriber_id, status) SELECT id, $1::uuid, 'confirmed' FROM wanted ON CONFLICT "
             "(list_id, subscriber_id) DO UPDATE SET status = 'confirmed', updated_at = now()) "
             "UPDATE subscriptions SET status = 'unsubscribed', updated_at = now() WHERE "
             "$2::uuid[] IS NOT NULL AND subscriber_id = $1::uuid AND list_id IN (SELECT id FROM "
             "lists WHERE visibility = 'public') AND list_id NOT IN (SELECT id FROM wanted)",
             2, lv);
        sm_event_add(op, &(sm_event){.subscriber_id = op->id,
                                     .kind = "preferences_updated",
                                     .status = db_result_get(r, 0, "status"),
                                     .dek = c->pii ? dek : NULL,
                                     .pii_json = c->pii});
        sodium_memzero(dek, sizeof dek);
        return;
    }
    case 4:
        op->status = 200;
        op->reply = json_pack("{s:s}", "status", "saved");
        sm_commit(op);
        return;
    default:
        return;
    }
}

static void handle_prefs_post(http_req *req, void *data)
{
    sm_app *app = data;
    if (!rate_ok(req, app)) return;
    char id[CORE_UUID_STRLEN + 1];
    if (!link_subject(req, app, "preferences", id)) return;
    json_t *body = http_json_body(req);
    if (!body) return;
    pref_ctx *c = core_xcalloc(1, sizeof *c);
    json_t *name = json_object_get(body, "name"), *lists = json_object_get(body, "lists");
    const char *why = NULL;
    bool ok = true;
    if (name) {
        if (!json_is_string(name) ||
            !sm_name_normalize(json_string_value(name), json_string_length(name), c->name, &why)) {
            sm_invalid(req, "name", why ? why : "name must be a string");
            ok = false;
        }
        c->has_name = true;
    }
    char **ids = NULL;
    size_t nids = 0;
    if (ok && lists && !sm_uuid_list(lists, 100, &c->lists, &ids, &nids)) {
        sm_invalid(req, "lists", "lists must be an array of list ids");
        ok = false;
    }
    sm_ids_free(ids, nids);
    json_decref(body);
    if (!ok) {
        pref_free(c);
        return;
    }
    sm_op_start_id(app, req, prefs_step, c, pref_free, id, 0);
}

void sm_consent_register(sm_app *app)
{
    sm_route(app, "POST", PUB "/subscribe", AUTH_ROLE_NONE, handle_subscribe);
    sm_route(app, "GET", PUB "/confirm", AUTH_ROLE_NONE, handle_confirm_get);
    sm_route(app, "POST", PUB "/confirm", AUTH_ROLE_NONE, handle_confirm);
    sm_route(app, "GET", PUB "/unsubscribe", AUTH_ROLE_NONE, handle_unsubscribe_get);
    sm_route(app, "POST", PUB "/unsubscribe", AUTH_ROLE_NONE, handle_unsubscribe);
    sm_route(app, "GET", PUB "/preferences", AUTH_ROLE_NONE, handle_prefs_get);
    sm_route(app, "POST", PUB "/preferences", AUTH_ROLE_NONE, handle_prefs_post);
}
