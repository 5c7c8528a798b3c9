/* Unit tests of the gateway's authorization: route access options (parsing, errors, the role a
 * method needs), decisions with tokens minted here (missing, tampered, expired, wrong key,
 * alg none, wrong issuer, too low a role, query tokens), the verified-token cache (hits,
 * expiry on a hit, no confusion between tokens), the public routes' token bucket (429 and
 * Retry-After, per client), removing ?access_token= from a target, and GATEWAY_PUBLIC_RATE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../authz.h"
#include "../routes.h"
#include "auth.h"
#include "test_support.h"

#define NOW_S 1800000000LL

static auth_signer signer, other;
static char pubkey[64];

static gw_table table_of(const char *routes)
{
    gw_table t = {0};
    char err[256];
    assert_int_equal(gw_upstreams_parse(&t, "cm=127.0.0.1:1 rt=127.0.0.1:2", err, sizeof err), 0);
    if (gw_routes_parse(&t, routes, err, sizeof err) != 0) fail_msg("%s: %s", routes, err);
    return t;
}

static void expect_options_error(const char *routes)
{
    gw_table t = {0};
    char err[256];
    assert_int_equal(gw_upstreams_parse(&t, "cm=127.0.0.1:1", err, sizeof err), 0);
    if (gw_routes_parse(&t, routes, err, sizeof err) == 0) fail_msg("%s was accepted", routes);
    assert_non_null(strstr(err, "options are"));
    gw_table_free(&t);
}

static void test_route_access_options(void **state)
{
    (void)state;
    gw_table t = table_of("/api/a=cm /api/b=cm;role=editor /api/c=cm;role=viewer;write=editor "
                          "/api/d=cm;public /api/e=rt;role=viewer;stream /api/f=cm;write=admin");
    const gw_route *a = gw_table_match(&t, "/api/a", 6), *b = gw_table_match(&t, "/api/b", 6),
                   *c = gw_table_match(&t, "/api/c", 6), *d = gw_table_match(&t, "/api/d", 6),
                   *e = gw_table_match(&t, "/api/e", 6), *f = gw_table_match(&t, "/api/f", 6);
    /* no option: any valid token */
    assert_false(a->is_public);
    assert_int_equal(gw_route_need(a, "GET", 3), AUTH_ROLE_VIEWER);
    assert_int_equal(gw_route_need(a, "DELETE", 6), AUTH_ROLE_VIEWER);
    /* ;role= alone: every method */
    assert_int_equal(gw_route_need(b, "GET", 3), AUTH_ROLE_EDITOR);
    assert_int_equal(gw_route_need(b, "POST", 4), AUTH_ROLE_EDITOR);
    /* reads and writes */
    const char *reads[] = {"GET", "HEAD"},
               *writes[] = {"POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(gw_route_need(c, reads[i], strlen(reads[i])), AUTH_ROLE_VIEWER);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(gw_route_need(c, writes[i], strlen(writes[i])), AUTH_ROLE_EDITOR);
    assert_string_equal(c->role, "viewer");
    assert_string_equal(c->write, "editor");
    assert_int_equal(gw_route_need(f, "GET", 3), AUTH_ROLE_VIEWER);
    assert_int_equal(gw_route_need(f, "PUT", 3), AUTH_ROLE_ADMIN);
    /* public */
    assert_true(d->is_public);
    assert_int_equal(gw_route_need(d, "POST", 4), AUTH_ROLE_NONE);
    assert_false(d->stream);
    assert_true(e->stream);
    assert_false(c->stream);
    gw_table_free(&t);

    /* the default table: the public ones are exactly these */
    t = (gw_table){0};
    char err[256];
    assert_int_equal(gw_upstreams_parse(&t, GW_DEFAULT_UPSTREAMS, err, sizeof err), 0);
    assert_int_equal(gw_routes_parse(&t, GW_DEFAULT_ROUTES, err, sizeof err), 0);
    const char *pub[] = {"/api/auth/login",       "/api/auth/refresh",   "/api/auth/logout",
                         "/api/public/subscribe", "/api/public/confirm", "/api/track/o/1"};
    for (size_t i = 0; i < sizeof pub / sizeof pub[0]; i++)
        assert_true(gw_table_match(&t, pub[i], strlen(pub[i]))->is_public);
    struct {
        const char *path, *method;
        auth_role need;
    } need[] = {
        {"/api/auth/me", "GET", AUTH_ROLE_VIEWER},
        {"/api/users", "GET", AUTH_ROLE_ADMIN},
        {"/api/users/1", "PATCH", AUTH_ROLE_ADMIN},
        {"/api/content/items", "GET", AUTH_ROLE_VIEWER},
        {"/api/content/items", "POST", AUTH_ROLE_EDITOR},
        {"/api/segments/count", "POST", AUTH_ROLE_VIEWER},
        {"/api/segments/1", "PATCH", AUTH_ROLE_EDITOR},
        {"/api/subscribers", "POST", AUTH_ROLE_EDITOR},
        {"/api/realtime/events", "GET", AUTH_ROLE_VIEWER},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        const gw_route *r = gw_table_match(&t, need[i].path, strlen(need[i].path));
        assert_false(r->is_public);
        if (gw_route_need(r, need[i].method, strlen(need[i].method)) != need[i].need)
            fail_msg("%s %s", need[i].method, need[i].path);
    }
    const gw_route *ev = gw_table_match(&t, "/api/realtime/events", 20);
    assert_true(ev->stream);
    assert_false(gw_table_match(&t, "/api/realtime/x", 15)->stream);
    assert_false(gw_table_match(&t, "/api/content/items", 18)->stream);
    gw_table_free(&t);

    expect_options_error("/api=cm;role=root");
    expect_options_error("/api=cm;role=Viewer");
    expect_options_error("/api=cm;public;role=viewer");
    expect_options_error("/api=cm;public;stream");
    expect_options_error("/api=cm;role=viewer;role=editor");
    expect_options_error("/api=cm;public;");
    expect_options_error("/api=cm;");
    expect_options_error("/api=cm;write=");
}

/* ------------------------------------------------------------ decisions */

static char *mint(const auth_signer *s, const char *role, int64_t exp, const char *iss)
{
    auth_claims c = {.iat = NOW_S - 10, .exp = exp};
    snprintf(c.iss, sizeof c.iss, "%s", iss);
    snprintf(c.sub, sizeof c.sub, "user-%s", role);
    snprintf(c.email, sizeof c.email, "%s@example.test", role);
    snprintf(c.jti, sizeof c.jti, "jti-%s", role);
    assert_true(auth_role_parse(role, &c.role));
    return auth_jwt_sign(s, &c);
}

static char *bearer(const char *token)
{
    core_buf b = {0};
    core_buf_printf(&b, "Bearer %s", token);
    return core_buf_steal(&b, NULL);
}

static gw_authz *authz_with(size_t cache, double rate, double burst)
{
    char err[128];
    gw_authz *a = gw_authz_new(&(gw_authz_config){.public_key = pubkey,
                                                  .issuer = "subscriber-manager",
                                                  .rate_per_s = rate,
                                                  .burst = burst,
                                                  .max_clients = 16,
                                                  .cache_slots = cache},
                               err, sizeof err);
    assert_non_null(a);
    return a;
}

static int decide(gw_authz *a, const gw_route *r, const char *method, const char *authz,
                  const char *qtok, gw_authz_result *out)
{
    gw_authz_check(a, r, method, strlen(method), authz, qtok, "10.0.0.1", NOW_S * 1000, out);
    return out->status;
}

static void check_decisions(size_t cache)
{
    gw_table t = table_of("/api/items=cm;role=viewer;write=editor /api/users=cm;role=admin "
                          "/api/live=rt;role=viewer;stream /api/login=cm;public");
    const gw_route *items = gw_table_match(&t, "/api/items", 10);
    const gw_route *users = gw_table_match(&t, "/api/users", 10);
    const gw_route *live = gw_table_match(&t, "/api/live", 9);
    const gw_route *login = gw_table_match(&t, "/api/login", 10);
    gw_authz *a = authz_with(cache, 0, 0);
    gw_authz_result res;
    char *viewer = mint(&signer, "viewer", NOW_S + 600, "subscriber-manager");
    char *editor = mint(&signer, "editor", NOW_S + 600, "subscriber-manager");
    char *admin = mint(&signer, "admin", NOW_S + 600, "subscriber-manager");
    char *hv = bearer(viewer), *he = bearer(editor), *ha = bearer(admin);

    for (int round = 0; round < 2; round++) { /* the second round hits the cache */
        assert_int_equal(decide(a, items, "GET", hv, NULL, &res), 0);
        assert_true(res.identified);
        assert_string_equal(res.claims.sub, "user-viewer");
        assert_int_equal(res.claims.role, AUTH_ROLE_VIEWER);
        assert_string_equal(res.claims.email, "viewer@example.test");
        assert_int_equal(decide(a, items, "POST", hv, NULL, &res), 403);
        assert_false(res.identified);
        assert_non_null(strstr(res.why, "editor"));
        assert_int_equal(decide(a, items, "POST", he, NULL, &res), 0);
        assert_string_equal(res.claims.sub, "user-editor");
        assert_int_equal(decide(a, users, "GET", he, NULL, &res), 403);
        assert_int_equal(decide(a, users, "DELETE", ha, NULL, &res), 0);
        assert_int_equal(decide(a, items, "PATCH", ha, NULL, &res), 0);
    }
    /* missing: 401 without error=invalid_token */
    assert_int_equal(decide(a, items, "GET", NULL, NULL, &res), 401);
    assert_false(res.token_invalid);
    assert_string_equal(res.why, "no bearer token");
    assert_int_equal(decide(a, items, "GET", "Basic dXNlcjpwdw==", NULL, &res), 401);
    assert_true(res.token_invalid);

    /* tampered: every part */
    size_t len = strlen(viewer);
    char *bad = core_xstrdup(viewer);
    char *d1 = strchr(bad, '.');
    size_t cuts[] = {3, (size_t)(d1 - bad) + 5, len - 3};
    for (size_t i = 0; i < 3; i++) {
        memcpy(bad, viewer, len);
        bad[cuts[i]] = bad[cuts[i]] == 'A' ? 'B' : 'A';
        char *hb = bearer(bad);
        assert_int_equal(decide(a, items, "GET", hb, NULL, &res), 401);
        assert_true(res.token_invalid);
        assert_null(strstr(res.why, bad));
        free(hb);
    }
    /* a forged payload (admin) with the viewer's real signature */
    {
        const char *payload = "{\"sub\":\"user-viewer\",\"role\":\"admin\",\"exp\":1900000000,"
                              "\"iss\":\"subscriber-manager\"}";
        char enc[512];
        auth_b64url_encode(payload, strlen(payload), enc, sizeof enc);
        const char *d2 = strrchr(viewer, '.');
        core_buf f = {0};
        core_buf_printf(&f, "Bearer %.*s.%s%s", (int)(strchr(viewer, '.') - viewer), viewer, enc,
                        d2);
        assert_int_equal(decide(a, users, "GET", f.data, NULL, &res), 401);
        core_buf_free(&f);
    }
    /* expired, wrong key, wrong issuer, alg none */
    char *expired = mint(&signer, "admin", NOW_S - 1, "subscriber-manager");
    char *wrongkey = mint(&other, "admin", NOW_S + 600, "subscriber-manager");
    char *wrongiss = mint(&signer, "admin", NOW_S + 600, "somebody-else");
    char none[512];
    {
        const char *h = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
        const char *p = "{\"sub\":\"x\",\"role\":\"admin\",\"exp\":1900000000,"
                        "\"iss\":\"subscriber-manager\"}";
        char eh[128], ep[256];
        auth_b64url_encode(h, strlen(h), eh, sizeof eh);
        auth_b64url_encode(p, strlen(p), ep, sizeof ep);
        snprintf(none, sizeof none, "%s.%s.", eh, ep);
    }
    const char *refused[] = {expired, wrongkey, wrongiss, none, "x.y.z", "not-a-jwt"};
    const char *whys[] = {"token expired", "invalid token signature", NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < 6; i++) {
        char *h = bearer(refused[i]);
        if (decide(a, items, "GET", h, NULL, &res) != 401) fail_msg("token %zu accepted", i);
        assert_true(res.token_invalid);
        if (whys[i]) assert_string_equal(res.why, whys[i]);
        free(h);
    }

    /* the query token counts only when the caller passes it (;stream routes) */
    assert_int_equal(decide(a, live, "GET", NULL, viewer, &res), 0);
    assert_string_equal(res.claims.sub, "user-viewer");
    assert_int_equal(decide(a, live, "GET", NULL, expired, &res), 401);
    assert_int_equal(decide(a, live, "GET", NULL, "", &res), 401);
    /* a header wins over the query */
    assert_int_equal(decide(a, live, "GET", ha, viewer, &res), 0);
    assert_string_equal(res.claims.sub, "user-admin");

    /* public: no token needed, a bad one does not matter, no identity */
    assert_int_equal(decide(a, login, "POST", NULL, NULL, &res), 0);
    assert_false(res.identified);
    assert_int_equal(decide(a, login, "POST", "Bearer garbage", NULL, &res), 0);
    assert_false(res.identified);

    free(expired);
    free(wrongkey);
    free(wrongiss);
    free(bad);
    free(viewer);
    free(editor);
    free(admin);
    free(hv);
    free(he);
    free(ha);
    gw_authz_free(a);
    gw_table_free(&t);
}

static void test_decisions_without_cache(void **state)
{
    (void)state;
    check_decisions(0);
}

static void test_decisions_with_cache(void **state)
{
    (void)state;
    check_decisions(1024);
    check_decisions(1); /* one slot: every token evicts the one before */
}

/* A cached token still expires: the hit checks exp against the clock of the request. */
static void test_cached_token_expires(void **state)
{
    (void)state;
    gw_table t = table_of("/api/items=cm;role=viewer");
    const gw_route *items = gw_table_match(&t, "/api/items", 10);
    gw_authz *a = authz_with(64, 0, 0);
    char *tok = mint(&signer, "viewer", NOW_S + 5, "subscriber-manager");
    char *h = bearer(tok);
    gw_authz_result res;
    gw_authz_check(a, items, "GET", 3, h, NULL, "c", NOW_S * 1000, &res);
    assert_int_equal(res.status, 0);
    gw_authz_check(a, items, "GET", 3, h, NULL, "c", (NOW_S + 4) * 1000, &res);
    assert_int_equal(res.status, 0);
    gw_authz_check(a, items, "GET", 3, h, NULL, "c", (NOW_S + 5) * 1000, &res);
    assert_int_equal(res.status, 401);
    assert_string_equal(res.why, "token expired");
    gw_authz_check(a, items, "GET", 3, h, NULL, "c", (NOW_S + 6) * 1000, &res);
    assert_int_equal(res.status, 401);
    free(h);
    free(tok);
    gw_authz_free(a);
    gw_table_free(&t);
}

static void test_public_rate_limit(void **state)
{
    (void)state;
    gw_table t = table_of("/api/login=cm;public /api/items=cm;role=viewer");
    const gw_route *login = gw_table_match(&t, "/api/login", 10);
    const gw_route *items = gw_table_match(&t, "/api/items", 10);
    gw_authz *a = authz_with(0, 0.5, 3); /* one every 2 s, burst 3 */
    gw_authz_result res;
    int64_t now = NOW_S * 1000;
    for (int i = 0; i < 3; i++) {
        gw_authz_check(a, login, "POST", 4, NULL, NULL, "10.0.0.1", now, &res);
        assert_int_equal(res.status, 0);
    }
    gw_authz_check(a, login, "POST", 4, NULL, NULL, "10.0.0.1", now, &res);
    assert_int_equal(res.status, 429);
    assert_int_equal(res.retry_after, 2);
    /* another client has its own bucket */
    gw_authz_check(a, login, "POST", 4, NULL, NULL, "10.0.0.2", now, &res);
    assert_int_equal(res.status, 0);
    /* protected routes are not limited here (the token is the limit) */
    gw_authz_check(a, items, "GET", 3, NULL, NULL, "10.0.0.1", now, &res);
    assert_int_equal(res.status, 401);
    /* refilled after the wait */
    gw_authz_check(a, login, "POST", 4, NULL, NULL, "10.0.0.1", now + 2000, &res);
    assert_int_equal(res.status, 0);
    /* bounded: many clients, the table stays at max_clients (16) */
    char addr[32];
    for (int i = 0; i < 200; i++) {
        snprintf(addr, sizeof addr, "10.1.%d.%d", i / 250, i % 250);
        gw_authz_check(a, login, "POST", 4, NULL, NULL, addr, now, &res);
        assert_int_equal(res.status, 0);
    }
    gw_authz_free(a);
    /* GATEWAY_AUTH=off: no key needed, nothing checked, public routes still limited */
    char err[128];
    a = gw_authz_new(&(gw_authz_config){.off = true, .rate_per_s = 1, .burst = 1}, err, sizeof err);
    assert_non_null(a);
    assert_true(gw_authz_is_off(a));
    gw_authz_check(a, items, "DELETE", 6, NULL, NULL, "c", now, &res);
    assert_int_equal(res.status, 0);
    assert_false(res.identified);
    gw_authz_check(a, login, "POST", 4, NULL, NULL, "c", now, &res);
    assert_int_equal(res.status, 0);
    gw_authz_check(a, login, "POST", 4, NULL, NULL, "c", now, &res);
    assert_int_equal(res.status, 429);
    gw_authz_free(a);
    /* a key that does not decode */
    assert_null(gw_authz_new(&(gw_authz_config){.public_key = "bm90IGEga2V5"}, err, sizeof err));
    assert_non_null(strstr(err, "Ed25519"));
    assert_null(gw_authz_new(&(gw_authz_config){.public_key = NULL}, err, sizeof err));
    gw_table_free(&t);
}

static void test_query_without_token(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"/api/x", "/api/x"},
        {"/api/x?", "/api/x?"},
        {"/api/x?a=1", "/api/x?a=1"},
        {"/api/x?access_token=abc", "/api/x"},
        {"/api/x?channels=content:*&access_token=abc", "/api/x?channels=content:*"},
        {"/api/x?access_token=abc&channels=a", "/api/x?channels=a"},
        {"/api/x?a=1&access_token=abc&b=2", "/api/x?a=1&b=2"},
        {"/api/x?access_token=1&access_token=2&b", "/api/x?b"},
        {"/api/x?access%5Ftoken=abc&b=2", "/api/x?b=2"},
        {"/api/x?%61ccess_token=abc", "/api/x"},
        {"/api/x?access_token", "/api/x"},
        {"/api/x?access_tokens=abc", "/api/x?access_tokens=abc"},
        {"/api/x?xaccess_token=abc", "/api/x?xaccess_token=abc"},
        {"/api/x?a=access_token", "/api/x?a=access_token"},
        {"/api/x?a=1&&access_token=z", "/api/x?a=1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        char out[256];
        size_t n = gw_query_without(cases[i].in, len, "access_token", out);
        assert_int_equal(n, strlen(out));
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("%s -> %s, want %s", cases[i].in, out, cases[i].out);
    }
}

static void test_rate_parse(void **state)
{
    (void)state;
    double r, b;
    assert_true(gw_rate_parse("10/s burst 20", &r, &b));
    assert_true(r == 10 && b == 20);
    assert_true(gw_rate_parse("600/min burst 5", &r, &b));
    assert_true(r == 10 && b == 5);
    assert_true(gw_rate_parse("60/m", &r, &b));
    assert_true(r == 1 && b == 1);
    assert_true(gw_rate_parse("7200/h", &r, &b));
    assert_true(r == 2 && b == 2);
    assert_true(gw_rate_parse("off", &r, &b));
    assert_true(r == 0);
    const char *bad[] = {"",      "10",   "10/s burst",    "10/s burst 0", "0/s",
                         "-1/s",  "10/d", "10/s bursts 2", "ten/s",        "10/s burst 2 x",
                         "nan/s", "inf/s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_rate_parse(bad[i], &r, &b)) fail_msg("\"%s\" accepted", bad[i]);
}

static int setup(void **state)
{
    (void)state;
    auth_signer_generate(&signer);
    auth_signer_generate(&other);
    auth_verifier_base64(&signer.pub, pubkey);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_access_options), cmocka_unit_test(test_decisions_without_cache),
        cmocka_unit_test(test_decisions_with_cache), cmocka_unit_test(test_cached_token_expires),
        cmocka_unit_test(test_public_rate_limit),    cmocka_unit_test(test_query_without_token),
        cmocka_unit_test(test_rate_parse),
    };
    return cmocka_run_group_tests_name("gateway_authz", tests, setup, NULL);
}
