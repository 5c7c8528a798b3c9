/*
 * Admin users and tokens: POST /api/auth/login, /refresh, /logout, GET /api/auth/me, and the
 * admin-only /api/users. Access tokens are Ed25519 JWTs (libs/auth); refresh tokens are random,
 * stored as SHA-256, rotated on every use within a family, and a reused one revokes its family.
 * Failed logins are slowed down per account and per client address (auth_throttle).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

#define USER_COLS                                                                                  \
    "id::text AS id, email, name, role, disabled, " SM_TS("created_at") " AS created_at, " SM_TS(  \
        "updated_at") " AS updated_at"

static char dummy_hash[AUTH_PWHASH_MAX];

static json_t *user_json(const db_result *r, int row)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:b,s:s,s:s}", "id", db_result_get(r, row, "id"), "email",
                     db_result_get(r, row, "email"), "name", db_result_get(r, row, "name"), "role",
                     db_result_get(r, row, "role"), "disabled",
                     strcmp(db_result_get(r, row, "disabled"), "t") == 0, "created_at",
                     db_result_get(r, row, "created_at"), "updated_at",
                     db_result_get(r, row, "updated_at"));
}

static void retry_after(http_req *req, int64_t ms)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)((ms + 999) / 1000));
    http_set_header(req, "Retry-After", s);
}

/* ---------------------------------------------------------------- tokens */

typedef struct grant {
    char user_id[CORE_UUID_STRLEN + 1];
    char email[SM_EMAIL_MAX + 1];
    auth_role role;
    char family[CORE_UUID_STRLEN + 1];
    char refresh[AUTH_TOKEN_LEN + 1];
    char refresh_hash[65];
    char old_hash[65];
    char password[AUTH_PASSWORD_MAX + 1];
    char addr[80];
} grant;

static json_t *token_reply(sm_app *app, grant *g)
{
    int64_t now = core_now_unix_ms() / 1000;
    auth_claims c = {.role = g->role, .iat = now, .exp = now + app->access_ttl_s};
    snprintf(c.iss, sizeof c.iss, "%s", SM_ISSUER);
    snprintf(c.sub, sizeof c.sub, "%s", g->user_id);
    snprintf(c.email, sizeof c.email, "%s", g->email);
    core_uuid_v7_string(c.jti);
    char *jwt = auth_jwt_sign(&app->signer, &c);
    json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "access_token", jwt, "refresh_token", g->refresh,
                          "token_type", "Bearer", "expires_in", (json_int_t)app->access_ttl_s);
    free(jwt);
    return o;
}

/* Queues the INSERT of a fresh refresh token of g's family. */
static void new_refresh(sm_op *op, grant *g)
{
    auth_random_token(g->refresh);
    auth_sha256_hex(g->refresh, g->refresh_hash);
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", (long long)op->app->refresh_ttl_s);
    const char *v[] = {g->refresh_hash, g->family, g->user_id, ttl};
    sm_q(op,
         "INSERT INTO refresh_tokens (token_hash, family, user_id, expires_at) "
         "VALUES ($1, $2::uuid, $3::uuid, now() + make_interval(secs => $4::int))",
         4, v);
}

/* ---------------------------------------------------------------- login */

static void login_issue(sm_op *op, const db_result *r)
{
    grant *g = op->ctx;
    (void)r;
    if (op->step == 0) {
        core_uuid_v7_string(g->family);
        new_refresh(op, g);
        return;
    }
    op->status = 200;
    op->reply = token_reply(op->app, g);
    sm_commit(op);
}

typedef struct login_ctx {
    sm_app *app;
    http_req *req;
    grant g;
    bool found;
    bool disabled;
} login_ctx;

static void login_free(login_ctx *lc)
{
    http_req_unref(lc->req);
    memset(&lc->g, 0, sizeof lc->g);
    free(lc);
}

static void on_verified(void *data, bool ok, const char *hash)
{
    (void)hash;
    login_ctx *lc = data;
    sm_app *app = lc->app;
    char acct[300];
    snprintf(acct, sizeof acct, "acct:%s", lc->g.email);
    int64_t now = core_now_unix_ms();
    if (!ok || !lc->found || lc->disabled) {
        auth_throttle_failure(app->throttle_account, acct, now);
        auth_throttle_failure(app->throttle_addr, lc->g.addr, now);
        core_counter_add(app->m_logins, 1, "failed");
        sm_problem(lc->req, 401, "invalid email or password");
        login_free(lc);
        return;
    }
    auth_throttle_success(app->throttle_account, acct);
    core_counter_add(app->m_logins, 1, "ok");
    grant *g = core_xcalloc(1, sizeof *g);
    *g = lc->g;
    sm_op_start(app, lc->req, login_issue, g, free);
    login_free(lc);
}

static void on_login_user(const db_result *r, void *data)
{
    login_ctx *lc = data;
    if (!db_result_ok(r)) {
        sm_unavailable(lc->req, r);
        login_free(lc);
        return;
    }
    const char *hash = dummy_hash;
    if (db_result_rows(r) == 1) {
        lc->found = true;
        hash = db_result_get(r, 0, "password_hash");
        lc->disabled = strcmp(db_result_get(r, 0, "disabled"), "t") == 0;
        snprintf(lc->g.user_id, sizeof lc->g.user_id, "%s", db_result_get(r, 0, "id"));
        auth_role_parse(db_result_get(r, 0, "role"), &lc->g.role);
    }
    /* Unknown users cost the same argon2id run as known ones. */
    auth_password_verify_async(lc->app->loop, hash, lc->g.password, on_verified, lc);
}

static void handle_login(http_req *req, void *data)
{
    sm_app *app = data;
    json_t *body = http_json_body(req);
    if (!body) return;
    const char *email = json_string_value(json_object_get(body, "email"));
    const char *password = json_string_value(json_object_get(body, "password"));
    char norm[SM_EMAIL_MAX + 1];
    const char *why;
    if (!email || !sm_email_normalize(email, strlen(email), norm, &why)) {
        sm_invalid(req, "email", "email must be a valid address");
        json_decref(body);
        return;
    }
    if (!password || !*password || strlen(password) > AUTH_PASSWORD_MAX) {
        sm_invalid(req, "password", "password is required");
        json_decref(body);
        return;
    }
    char acct[300];
    snprintf(acct, sizeof acct, "acct:%s", norm);
    char addr[80];
    snprintf(addr, sizeof addr, "addr:%s", http_remote_addr(req));
    int64_t now = core_now_unix_ms();
    int64_t wait_a = auth_throttle_wait_ms(app->throttle_account, acct, now);
    int64_t wait_b = auth_throttle_wait_ms(app->throttle_addr, addr, now);
    if (wait_a || wait_b) {
        core_counter_add(app->m_logins, 1, "throttled");
        retry_after(req, wait_a > wait_b ? wait_a : wait_b);
        sm_problem(req, 429, "too many failed logins; try again later");
        json_decref(body);
        return;
    }
    login_ctx *lc = core_xcalloc(1, sizeof *lc);
    lc->app = app;
    lc->req = http_req_ref(req);
    snprintf(lc->g.email, sizeof lc->g.email, "%s", norm);
    snprintf(lc->g.password, sizeof lc->g.password, "%s", password);
    snprintf(lc->g.addr, sizeof lc->g.addr, "%s", addr);
    json_decref(body);
    const char *v[] = {norm};
    db_query(app->db,
             "SELECT id::text AS id, role, password_hash, disabled FROM users WHERE email = $1", 1,
             v, on_login_user, lc);
}

/* ---------------------------------------------------------------- refresh, logout */

static void refresh_step(sm_op *op, const db_result *r)
{
    grant *g = op->ctx;
    switch (op->step) {
    case 0: {
        const char *v[] = {g->old_hash};
        sm_q(op,
             "SELECT r.family::text AS family, r.user_id::text AS user_id, "
             "(r.used_at IS NOT NULL OR r.revoked_at IS NOT NULL) AS spent, "
             "r.expires_at <= now() AS expired, u.role, u.email, u.disabled "
             "FROM refresh_tokens r JOIN users u ON u.id = r.user_id "
             "WHERE r.token_hash = $1 FOR UPDATE OF r",
             1, v);
        return;
    }
    case 1:
        if (db_result_rows(r) != 1) {
            sm_fail(op, 401, "unknown refresh token");
            return;
        }
        snprintf(g->family, sizeof g->family, "%s", db_result_get(r, 0, "family"));
        snprintf(g->user_id, sizeof g->user_id, "%s", db_result_get(r, 0, "user_id"));
        snprintf(g->email, sizeof g->email, "%s", db_result_get(r, 0, "email"));
        auth_role_parse(db_result_get(r, 0, "role"), &g->role);
        if (strcmp(db_result_get(r, 0, "spent"), "t") == 0 ||
            strcmp(db_result_get(r, 0, "disabled"), "t") == 0) {
            /* Reuse of a rotated token: someone else may hold the family; end it. */
            const char *v[] = {g->family};
            sm_q(op,
                 "UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1::uuid AND "
                 "revoked_at IS NULL",
                 1, v);
            op->fail_status = 401;
            snprintf(op->detail, sizeof op->detail, "refresh token already used or revoked");
            core_log_warn("refresh token reuse: family revoked", CORE_F_STR("user_id", g->user_id));
            return;
        }
        if (strcmp(db_result_get(r, 0, "expired"), "t") == 0) {
            sm_fail(op, 401, "refresh token expired");
            return;
        }
        {
            const char *v[] = {g->old_hash};
            sm_q(op, "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", 1, v);
        }
        new_refresh(op, g);
        return;
    case 2:
        if (op->fail_status) sm_commit(op);
        return;
    case 3:
        op->status = 200;
        op->reply = token_reply(op->app, g);
        sm_commit(op);
        return;
    }
}

static bool refresh_body(http_req *req, grant *g)
{
    json_t *body = http_json_body(req);
    if (!body) return false;
    const char *t = json_string_value(json_object_get(body, "refresh_token"));
    bool ok = t && strlen(t) == AUTH_TOKEN_LEN;
    if (ok)
        auth_sha256_hex(t, g->old_hash);
    else
        sm_invalid(req, "refresh_token", "refresh_token is required");
    json_decref(body);
    return ok;
}

static void handle_refresh(http_req *req, void *data)
{
    grant *g = core_xcalloc(1, sizeof *g);
    if (!refresh_body(req, g)) {
        free(g);
        return;
    }
    sm_op_start(data, req, refresh_step, g, free);
}

static void logout_step(sm_op *op, const db_result *r)
{
    (void)r;
    grant *g = op->ctx;
    if (op->step == 0) {
        const char *v[] = {g->old_hash};
        sm_q(op,
             "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND family = "
             "(SELECT family FROM refresh_tokens WHERE token_hash = $1)",
             1, v);
        return;
    }
    sm_commit(op); /* 204, whether or not the token was known */
}

static void handle_logout(http_req *req, void *data)
{
    grant *g = core_xcalloc(1, sizeof *g);
    if (!refresh_body(req, g)) {
        free(g);
        return;
    }
    sm_op_start(data, req, logout_step, g, free);
}

/* ---------------------------------------------------------------- me, users */

static void get_user(sm_app *app, http_req *req, const char *id)
{
    const char *v[] = {id};
    sm_query_one(app, req, "SELECT " USER_COLS " FROM users WHERE id = $1::uuid", 1, v, user_json,
                 "no such user");
}

static void handle_me(http_req *req, void *data)
{
    sm_app *app = data;
    auth_claims c;
    if (!sm_identity(req, app, &c)) {
        sm_problem(req, 401, "invalid token");
        return;
    }
    get_user(app, req, c.sub);
}

static void handle_user_get(http_req *req, void *data)
{
    sm_get_by_id(data, req, "SELECT " USER_COLS " FROM users WHERE id = $1::uuid", user_json,
                 "no such user");
}

static void handle_users_list(http_req *req, void *data)
{
    sm_app *app = data;
    sm_query_items(app, req, "SELECT " USER_COLS " FROM users ORDER BY created_at, id LIMIT 1000",
                   0, NULL, user_json);
}

/* A user's fields from a body; password hashing happens after validation, off the loop. */
typedef struct user_edit {
    sm_app *app;
    http_req *req;
    bool create;
    char id[CORE_UUID_STRLEN + 1];
    char email[SM_EMAIL_MAX + 1];
    char name[SM_NAME_MAX + 1];
    const char *role;
    char *password;
    int disabled; /* -1: unchanged */
    bool has_name;
    char hash[AUTH_PWHASH_MAX];
} user_edit;

static void user_edit_free(void *p)
{
    user_edit *e = p;
    if (e->password) {
        memset(e->password, 0, strlen(e->password));
        free(e->password);
    }
    free(e);
}

static void user_write_step(sm_op *op, const db_result *r)
{
    user_edit *e = op->ctx;
    switch (op->step) {
    case 0:
        if (e->create) {
            const char *v[] = {e->id, e->email, e->name, e->role, e->hash};
            sm_q(op,
                 "INSERT INTO users (id, email, name, role, password_hash) "
                 "VALUES ($1::uuid, $2, $3, $4, $5) RETURNING " USER_COLS,
                 5, v);
        } else {
            const char *v[] = {e->id, e->has_name ? e->name : NULL, e->role,
                               e->hash[0] ? e->hash : NULL,
                               e->disabled < 0 ? NULL : (e->disabled ? "t" : "f")};
            sm_q(op,
                 "UPDATE users SET name = COALESCE($2, name), role = COALESCE($3, role), "
                 "password_hash = COALESCE($4, password_hash), "
                 "disabled = COALESCE($5::boolean, disabled), updated_at = now() "
                 "WHERE id = $1::uuid RETURNING " USER_COLS,
                 5, v);
        }
        return;
    case 1:
        if (db_result_rows(r) != 1) {
            sm_fail(op, 404, "no such user");
            return;
        }
        op->reply = user_json(r, 0);
        op->status = e->create ? 201 : 200;
        if (!e->create && (e->role || e->hash[0] || e->disabled == 1)) {
            /* a changed role, password or a disabled account ends every session */
            const char *v[] = {e->id};
            sm_q(op,
                 "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1::uuid AND "
                 "revoked_at IS NULL",
                 1, v);
            return;
        }
        sm_commit(op);
        return;
    default:
        sm_commit(op);
    }
}

static void on_user_hashed(void *data, bool ok, const char *hash)
{
    user_edit *e = data;
    http_req *req = e->req;
    if (!ok) {
        sm_problem(req, 503, "cannot hash the password");
        http_req_unref(req);
        user_edit_free(e);
        return;
    }
    if (hash) snprintf(e->hash, sizeof e->hash, "%s", hash);
    sm_op_start(e->app, req, user_write_step, e, user_edit_free);
    http_req_unref(req);
}

static bool parse_user(http_req *req, json_t *body, user_edit *e)
{
    const char *why = NULL;
    json_t *v;
    if (e->create || json_object_get(body, "email")) {
        const char *email = json_string_value(json_object_get(body, "email"));
        if (!e->create) {
            sm_invalid(req, "email", "email cannot be changed");
            return false;
        }
        if (!email || !sm_email_normalize(email, strlen(email), e->email, &why)) {
            sm_invalid(req, "email", why ? why : "email must be a string");
            return false;
        }
    }
    if ((v = json_object_get(body, "name"))) {
        if (!json_is_string(v) ||
            !sm_name_normalize(json_string_value(v), json_string_length(v), e->name, &why)) {
            sm_invalid(req, "name", why ? why : "name must be a string");
            return false;
        }
        e->has_name = true;
    }
    auth_role role;
    if ((v = json_object_get(body, "role")) || e->create) {
        if (!auth_role_parse(json_string_value(v), &role)) {
            sm_invalid(req, "role", "role must be admin, editor or viewer");
            return false;
        }
        e->role = auth_role_name(role);
    }
    if ((v = json_object_get(body, "password")) || e->create) {
        const char *pw = json_string_value(v);
        if (!pw || strlen(pw) < AUTH_PASSWORD_MIN || strlen(pw) > AUTH_PASSWORD_MAX) {
            sm_invalid(req, "password", "password must be 8 to 1024 characters");
            return false;
        }
        e->password = core_xstrdup(pw);
    }
    e->disabled = -1;
    if ((v = json_object_get(body, "disabled"))) {
        if (!json_is_boolean(v)) {
            sm_invalid(req, "disabled", "disabled must be true or false");
            return false;
        }
        e->disabled = json_is_true(v);
    }
    return true;
}

static void user_write(http_req *req, sm_app *app, bool create)
{
    json_t *body = http_json_body(req);
    if (!body) return;
    user_edit *e = core_xcalloc(1, sizeof *e);
    e->app = app;
    e->create = create;
    if (create)
        core_uuid_v7_string(e->id);
    else if (!sm_path_uuid(req, "id", e->id)) {
        json_decref(body);
        user_edit_free(e);
        return;
    }
    bool ok = parse_user(req, body, e);
    json_decref(body);
    if (!ok) {
        user_edit_free(e);
        return;
    }
    if (e->password) {
        e->req = http_req_ref(req);
        auth_password_hash_async(app->loop, e->password, &app->pwhash, on_user_hashed, e);
    } else {
        sm_op_start(app, req, user_write_step, e, user_edit_free);
    }
}

static void handle_user_create(http_req *req, void *data)
{
    user_write(req, data, true);
}

static void handle_user_patch(http_req *req, void *data)
{
    user_write(req, data, false);
}

static void handle_user_delete(http_req *req, void *data)
{
    sm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    auth_claims c;
    if (!sm_path_uuid(req, "id", id)) return;
    if (sm_identity(req, app, &c) && strcmp(c.sub, id) == 0) {
        sm_problem(req, 409, "you cannot delete your own account");
        return;
    }
    sm_delete(app, req, id, "DELETE FROM users WHERE id = $1::uuid", "no such user", NULL);
}

/* ---------------------------------------------------------------- bootstrap */

static void bootstrap_step(sm_op *op, const db_result *r)
{
    user_edit *e = op->ctx;
    switch (op->step) {
    case 0: {
        const char *v[] = {e->id, e->email, e->name, e->hash};
        sm_q(op,
             "INSERT INTO users (id, email, name, role, password_hash) "
             "SELECT $1::uuid, $2, $3, 'admin', $4 "
             "WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled) "
             "ON CONFLICT (email) DO NOTHING",
             4, v);
        return;
    }
    default:
        if (db_result_affected(r) == 1) core_log_info("first admin user created");
        sm_commit(op);
    }
}

static void on_bootstrap_hashed(void *data, bool ok, const char *hash)
{
    user_edit *e = data;
    if (!ok) {
        core_log_error("cannot hash the admin password");
        user_edit_free(e);
        return;
    }
    snprintf(e->hash, sizeof e->hash, "%s", hash);
    sm_op_start(e->app, NULL, bootstrap_step, e, user_edit_free);
}

static void on_admin_count(const db_result *r, void *data)
{
    sm_app *app = data;
    if (!db_result_ok(r)) {
        core_log_error("cannot look for an admin user", CORE_F_STR("error", db_result_error(r)));
        return;
    }
    if (db_result_rows(r) > 0) return;
    if (!app->admin_email || !app->admin_password) {
        core_log_warn("no admin user exists and ADMIN_EMAIL / ADMIN_PASSWORD are not set");
        return;
    }
    user_edit *e = core_xcalloc(1, sizeof *e);
    e->app = app;
    core_uuid_v7_string(e->id);
    const char *why;
    if (!sm_email_normalize(app->admin_email, strlen(app->admin_email), e->email, &why)) {
        core_log_error("ADMIN_EMAIL is not a valid address", CORE_F_STR("reason", why));
        user_edit_free(e);
        return;
    }
    snprintf(e->name, sizeof e->name, "Administrator");
    auth_password_hash_async(app->loop, app->admin_password, &app->pwhash, on_bootstrap_hashed, e);
}

void sm_auth_bootstrap(sm_app *app)
{
    db_query(app->db, "SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled LIMIT 1", 0, NULL,
             on_admin_count, app);
}

void sm_auth_register(sm_app *app)
{
    /* A hash of a random password: unknown accounts take as long as known ones. */
    char pw[AUTH_TOKEN_LEN + 1];
    auth_random_token(pw);
    if (!auth_password_hash(pw, &app->pwhash, dummy_hash)) abort();
    sm_route(app, "POST", "/api/auth/login", AUTH_ROLE_NONE, handle_login);
    sm_route(app, "POST", "/api/auth/refresh", AUTH_ROLE_NONE, handle_refresh);
    sm_route(app, "POST", "/api/auth/logout", AUTH_ROLE_NONE, handle_logout);
    sm_route(app, "GET", "/api/auth/me", AUTH_ROLE_VIEWER, handle_me);
    sm_route(app, "GET", "/api/users", AUTH_ROLE_ADMIN, handle_users_list);
    sm_route(app, "POST", "/api/users", AUTH_ROLE_ADMIN, handle_user_create);
    sm_route(app, "GET", "/api/users/{id}", AUTH_ROLE_ADMIN, handle_user_get);
    sm_route(app, "PATCH", "/api/users/{id}", AUTH_ROLE_ADMIN, handle_user_patch);
    sm_route(app, "DELETE", "/api/users/{id}", AUTH_ROLE_ADMIN, handle_user_delete);
}
