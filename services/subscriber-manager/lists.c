/*
 * /api/lists: lists (public or private, single or double opt-in) and per-list subscription
 * status (unconfirmed, confirmed, unsubscribed). Subscription changes are SubscriberEvents keyed
 * by the subscriber; changes of a list itself are events keyed by the list id (kind list_*).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define LISTS "/api/lists"

#define LIST_COLS                                                                                  \
    "id::text AS id, name, description, visibility, optin, " SM_TS(                                \
        "created_at") " AS created_at, " SM_TS("updated_at") " AS updated_at, (SELECT count(*) "   \
                                                             "FROM subscriptions x WHERE "         \
                                                             "x.list_id = "                        \
                                                             "lists.id AND x.status <> "           \
                                                             "'unsubscribed') AS subscriber_count"

static json_t *list_json(const db_result *r, int row)
{
    int64_t n = 0;
    db_result_int64(r, row, db_result_column(r, "subscriber_count"), &n);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "id", db_result_get(r, row, "id"), "name",
                     db_result_get(r, row, "name"), "description",
                     db_result_get(r, row, "description"), "visibility",
                     db_result_get(r, row, "visibility"), "optin", db_result_get(r, row, "optin"),
                     "created_at", db_result_get(r, row, "created_at"), "updated_at",
                     db_result_get(r, row, "updated_at"), "subscriber_count", (json_int_t)n);
}

static void handle_lists(http_req *req, void *data)
{
    sm_app *app = data;
    sm_query_items(app, req, "SELECT " LIST_COLS " FROM lists ORDER BY created_at, id LIMIT 1000",
                   0, NULL, list_json);
}

static void handle_list_get(http_req *req, void *data)
{
    sm_get_by_id(data, req, "SELECT " LIST_COLS " FROM lists WHERE id = $1::uuid", list_json,
                 "no such list");
}

typedef struct list_in {
    char *name, *description;
    const char *visibility, *optin;
    char *ids;   /* subscriber ids as an array literal */
    char **sids; /* the same, one by one */
    size_t nsids;
    const char *sub_status;
} list_in;

static void list_in_free(void *p)
{
    list_in *l = p;
    if (!l) return;
    free(l->name);
    free(l->description);
    free(l->ids);
    sm_ids_free(l->sids, l->nsids);
    free(l);
}

static bool one_of(const char *s, const char *a, const char *b, const char **out)
{
    if (!s) return false;
    if (!strcmp(s, a))
        *out = a;
    else if (!strcmp(s, b))
        *out = b;
    else
        return false;
    return true;
}

static bool parse_list(http_req *req, json_t *body, list_in *l, bool create)
{
    json_t *v;
    if ((v = json_object_get(body, "name")) || create) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 200) {
            sm_invalid(req, "name", "name must be 1 to 200 bytes");
            return false;
        }
        l->name = core_xstrdup(json_string_value(v));
    }
    if ((v = json_object_get(body, "description"))) {
        if (!json_is_string(v) || json_string_length(v) > 2000) {
            sm_invalid(req, "description", "description must be at most 2000 bytes");
            return false;
        }
        l->description = core_xstrdup(json_string_value(v));
    }
    if ((v = json_object_get(body, "visibility")) || create) {
        if (!one_of(v ? json_string_value(v) : "private", "public", "private", &l->visibility)) {
            sm_invalid(req, "visibility", "visibility must be public or private");
            return false;
        }
    }
    if ((v = json_object_get(body, "optin")) || create) {
        if (!one_of(v ? json_string_value(v) : "double", "single", "double", &l->optin)) {
            sm_invalid(req, "optin", "optin must be single or double");
            return false;
        }
    }
    return true;
}

static void list_event(sm_op *op, const char *kind)
{
    /* keyed by the list: subscriber_id is empty and list_ids names the list */
    const char *ids[] = {op->id};
    bus_record rec;
    uint8_t *buf;
    sm_event ev = {.subscriber_id = "", .kind = kind, .list_ids = ids, .nlists = 1};
    sm_event_record(&ev, &rec, &buf);
    rec.key = op->id;
    rec.key_len = strlen(op->id);
    rec.ce_subject = op->id;
    sm_outbox(op, &rec);
    free(buf);
}

static void list_write_step(sm_op *op, const db_result *r)
{
    list_in *l = op->ctx;
    bool create = op->status == 201;
    switch (op->step) {
    case 0: {
        const char *v[] = {op->id, l->name, l->description, l->visibility, l->optin};
        if (create)
            sm_q(op,
                 "INSERT INTO lists (id, name, description, visibility, optin) VALUES "
                 "($1::uuid, $2, COALESCE($3, ''), $4, $5) RETURNING " LIST_COLS,
                 5, v);
        else
            sm_q(op,
                 "UPDATE lists SET name = COALESCE($2, name), description = COALESCE($3, "
                 "description), visibility = COALESCE($4, visibility), optin = COALESCE($5, "
                 "optin), updated_at = now() WHERE id = $1::uuid RETURNING " LIST_COLS,
                 5, v);
        return;
    }
    case 1:
        if (db_result_rows(r) != 1) {
            sm_fail(op, 404, "no such list");
            return;
        }
        op->reply = list_json(r, 0);
        list_event(op, create ? "list_created" : "list_updated");
        return;
    default:
        sm_commit(op);
    }
}

static void list_write(http_req *req, sm_app *app, bool create)
{
    char id[CORE_UUID_STRLEN + 1];
    if (create)
        core_uuid_v7_string(id);
    else if (!sm_path_uuid(req, "id", id))
        return;
    json_t *body = http_json_body(req);
    if (!body) return;
    list_in *l = core_xcalloc(1, sizeof *l);
    bool ok = json_is_object(body) && parse_list(req, body, l, create);
    if (!json_is_object(body)) sm_invalid(req, "body", "the body must be a JSON object");
    json_decref(body);
    if (!ok) {
        list_in_free(l);
        return;
    }
    sm_op_start_id(app, req, list_write_step, l, list_in_free, id, create ? 201 : 200);
}

static void handle_list_create(http_req *req, void *data)
{
    list_write(req, data, true);
}

static void handle_list_patch(http_req *req, void *data)
{
    list_write(req, data, false);
}

static void list_deleted_event(sm_op *op)
{
    list_event(op, "list_deleted");
}

static void handle_list_delete(http_req *req, void *data)
{
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    sm_delete(data, req, id, "DELETE FROM lists WHERE id = $1::uuid", "no such list",
              list_deleted_event);
}

/* ---------------------------------------------------------------- memberships */

static void members_step(sm_op *op, const db_result *r)
{
    list_in *l = op->ctx;
    switch (op->step) {
    case 0: {
        const char *v[] = {op->id, l->ids, l->sub_status};
        sm_q(op,
             "INSERT INTO subscriptions (list_id, subscriber_id, status) "
             "SELECT $1::uuid, s.id, $3 FROM subscribers s WHERE s.id = ANY($2::uuid[]) "
             "AND s.erased_at IS NULL "
             "ON CONFLICT (list_id, subscriber_id) DO UPDATE SET status = EXCLUDED.status, "
             "updated_at = now() RETURNING subscriber_id::text AS id",
             3, v);
        return;
    }
    case 1: {
        int n = db_result_rows(r);
        if (n == 0) {
            sm_fail(op, 404, "none of these subscribers exists");
            return;
        }
        const char *ids[] = {op->id};
        json_t *done = json_array();
        for (int i = 0; i < n; i++) {
            const char *sid = db_result_get(r, i, "id");
            json_array_append_new(done, json_string(sid));
            sm_event_add(op, &(sm_event){.subscriber_id = sid,
                                         .kind = !strcmp(l->sub_status, "unsubscribed")
                                                     ? "list_unsubscribed"
                                                     : "list_subscribed",
                                         .list_ids = ids,
                                         .nlists = 1});
        }
        op->reply = json_pack("{s:o,s:s}", "subscribers", done, "status", l->sub_status);
        op->status = 200;
        op->step = 1000 - n; /* commit after the n events */
        return;
    }
    default:
        if (op->step >= 1000) sm_commit(op);
    }
}

static void handle_members(http_req *req, void *data)
{
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    json_t *body = http_json_body(req);
    if (!body) return;
    list_in *l = core_xcalloc(1, sizeof *l);
    json_t *ids = json_object_get(body, "subscriber_ids");
    const char *st = json_string_value(json_object_get(body, "status"));
    bool ok = json_is_array(ids) && json_array_size(ids) > 0 && json_array_size(ids) <= 1000;
    if (!ok) sm_invalid(req, "subscriber_ids", "subscriber_ids must be 1 to 1000 ids");
    if (ok && st && strcmp(st, "confirmed") && strcmp(st, "unconfirmed") &&
        strcmp(st, "unsubscribed")) {
        sm_invalid(req, "status", "status must be confirmed, unconfirmed or unsubscribed");
        ok = false;
    }
    if (ok) {
        l->sub_status = !st                           ? "confirmed"
                        : !strcmp(st, "unconfirmed")  ? "unconfirmed"
                        : !strcmp(st, "unsubscribed") ? "unsubscribed"
                                                      : "confirmed";
        if (!sm_uuid_list(ids, 1000, &l->ids, &l->sids, &l->nsids)) {
            sm_invalid(req, "subscriber_ids", "subscriber_ids must be UUIDs");
            ok = false;
        }
    }
    json_decref(body);
    if (!ok) {
        list_in_free(l);
        return;
    }
    sm_op_start_id(data, req, members_step, l, list_in_free, id, 0);
}

void sm_lists_register(sm_app *app)
{
    sm_route(app, "GET", LISTS, AUTH_ROLE_VIEWER, handle_lists);
    sm_route(app, "POST", LISTS, AUTH_ROLE_EDITOR, handle_list_create);
    sm_route(app, "GET", LISTS "/{id}", AUTH_ROLE_VIEWER, handle_list_get);
    sm_route(app, "PATCH", LISTS "/{id}", AUTH_ROLE_EDITOR, handle_list_patch);
    sm_route(app, "DELETE", LISTS "/{id}", AUTH_ROLE_EDITOR, handle_list_delete);
    sm_route(app, "POST", LISTS "/{id}/subscribers", AUTH_ROLE_EDITOR, handle_members);
}
