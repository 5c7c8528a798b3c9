/*
 * subscriber-manager seen from outside: the real binary on the real Kafka and PostgreSQL.
 *
 * Isolation: the service runs on a schema of its own (created with PLATFORM_TEST_DATABASE_URL,
 * the role the library tests use for per-run schemas, and dropped at the end: a million-row
 * import must not stay behind), publishes to Kafka topics of its own and gets throw-away keys
 * from this test, which therefore can check at-rest encryption and decrypt the events itself.
 * Needs KAFKA_BROKERS and PLATFORM_TEST_DATABASE_URL (skips without).
 *
 * The million-row import runs against the release build of the same sources (build/bin, which
 * `make test` builds first) when it exists: under ASan the import is several times slower and
 * would not fit the suite's time budget. Every other test runs the sanitizer build.
 * SM_TEST_IMPORT_ROWS (1000000) sizes that test, SM_TEST_RELEASE_BIN names another release
 * binary, SM_TEST_IMPORT_ASAN=1 keeps the sanitizer build for it too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "bus.h"
#include "bus_test.h"
#include "contentengine/v1/people.pb-c.h"
#include "core.h"
#include "test_support.h"

/* ---------------------------------------------------------------- state */

typedef struct ev {
    char topic[128];
    char key[64];
    char ce_type[128];
    char subject[64]; /* the ce_subject header */
    char subscriber_id[64];
    char kind[64];
    char status[32];
    uint8_t *pii;
    size_t pii_len;
} ev;

static uv_loop_t loop;
static bool have_infra;
static ts_child svc;
static bool svc_running;
static int port;
static char unique[96], schema[96], t_events[128], t_imports[128], svc_name[128];
static char log_path[4200], svc_bin[4200];
static auth_signer signer;
static uint8_t k_data[32], k_index[32], k_token[32];
static char admin_email[128], admin_pw[64];
static PGconn *pg;
static bus_consumer *consumer;
static ev *evs;
static size_t nevs, capevs;
static char *env[40];
static size_t nenv;

/* ---------------------------------------------------------------- HTTP */

typedef struct resp {
    long status;
    core_buf body;
    char ctype[128];
    char retry_after[32];
    json_t *json;
} resp;

static void resp_free(resp *r)
{
    core_buf_free(&r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    resp *r = data;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        size_t v = 12;
        while (v < len && p[v] == ' ')
            v++;
        size_t e = len;
        while (e > v && (p[e - 1] == '\r' || p[e - 1] == '\n'))
            e--;
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)(e - v), p + v);
    }
    return len;
}

/* One request; token may be NULL; extra is a NULL-terminated list of header lines. */
static void call(resp *out, const char *method, const char *path, const char *token,
                 const void *body, size_t len, const char *ctype, const char *const *extra)
{
    resp_free(out);
    char url[8192], hdr[2048];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    snprintf(hdr, sizeof hdr, "Content-Type: %s", ctype ? ctype : "application/json");
    struct curl_slist *hs = curl_slist_append(NULL, hdr);
    hs = curl_slist_append(hs, "Expect:");
    if (token) {
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", token);
        hs = curl_slist_append(hs, hdr);
    }
    for (size_t i = 0; extra && extra[i]; i++)
        hs = curl_slist_append(hs, extra[i]);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ts_curl_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 120000L);
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
        char *t = NULL;
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &t);
        if (t) snprintf(out->ctype, sizeof out->ctype, "%s", t);
        if (out->body.len) out->json = json_loadb(out->body.data, out->body.len, 0, NULL);
    }
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
}

static void jcall(resp *out, const char *method, const char *path, const char *token,
                  const char *json)
{
    call(out, method, path, token, json, json ? strlen(json) : 0, NULL, NULL);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void expect(const resp *r, long status)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body.data ? r->body.data : "");
}

static void expect_problem(const resp *r, long status)
{
    expect(r, status);
    assert_non_null(strstr(r->ctype, "application/problem+json"));
    assert_int_equal(json_integer_value(json_object_get(r->json, "status")), status);
}

/* ---------------------------------------------------------------- database */

static PGresult *sql(const char *q, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(pg, q, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) fail_msg("%s: %s", q, PQerrorMessage(pg));
    return r;
}

static long long sql_count(const char *q, int n, const char *const *vals)
{
    PGresult *r = sql(q, n, vals);
    char *end = NULL;
    long long v = strtoll(PQgetvalue(r, 0, 0), &end, 10);
    PQclear(r);
    return v;
}

/* The subscriber's key, unwrapped with the test's master key; false when shredded. */
static bool subscriber_key(const char *id, uint8_t dek[32])
{
    const char *v[] = {id};
    PGresult *r =
        sql("SELECT encode(wrapped_key, 'hex') FROM subscriber_secrets WHERE subscriber_id = "
            "$1::uuid",
            1, v);
    bool ok = false;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        uint8_t w[128];
        size_t wl = 0;
        const char *hex = PQgetvalue(r, 0, 0);
        if (sodium_hex2bin(w, sizeof w, hex, strlen(hex), NULL, &wl, NULL) == 0 && wl == 73) {
            char ad[128];
            snprintf(ad, sizeof ad, "%s|dek", id);
            unsigned long long n = 0;
            ok = crypto_aead_xchacha20poly1305_ietf_decrypt(dek, &n, NULL, w + 25, wl - 25,
                                                            (const uint8_t *)ad, strlen(ad), w + 1,
                                                            k_data) == 0 &&
                 n == 32;
        }
    }
    PQclear(r);
    return ok;
}

/* The plaintext of an event's encrypted_pii, or NULL. */
static json_t *open_pii(const ev *e, const uint8_t dek[32])
{
    if (e->pii_len < 41 || e->pii[0] != 1) return NULL;
    char ad[128];
    snprintf(ad, sizeof ad, "%s|event", e->subscriber_id);
    uint8_t *out = malloc(e->pii_len);
    unsigned long long n = 0;
    json_t *j = NULL;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &n, NULL, e->pii + 25, e->pii_len - 25,
                                                   (const uint8_t *)ad, strlen(ad), e->pii + 1,
                                                   dek) == 0)
        j = json_loadb((const char *)out, (size_t)n, 0, NULL);
    free(out);
    return j;
}

/* ---------------------------------------------------------------- Kafka */

static void on_message(bus_consumer *c, const bus_message *m, void *data)
{
    (void)data;
    if (nevs == capevs) {
        capevs = capevs ? capevs * 2 : 1024;
        evs = realloc(evs, capevs * sizeof *evs);
    }
    ev *e = &evs[nevs];
    memset(e, 0, sizeof *e);
    snprintf(e->topic, sizeof e->topic, "%s", m->topic);
    snprintf(e->key, sizeof e->key, "%.*s", (int)(m->key_len < 60 ? m->key_len : 60),
             m->key ? (const char *)m->key : "");
    snprintf(e->ce_type, sizeof e->ce_type, "%s", m->ce_type);
    size_t sl = 0;
    const void *subject = bus_message_header(m, "ce_subject", &sl);
    snprintf(e->subject, sizeof e->subject, "%.*s", subject ? (int)sl : 0,
             subject ? (const char *)subject : "");
    if (!strcmp(m->topic, t_events)) {
        Contentengine__V1__SubscriberEvent *se =
            contentengine__v1__subscriber_event__unpack(NULL, m->value_len, m->value);
        if (se) {
            snprintf(e->subscriber_id, sizeof e->subscriber_id, "%s", se->subscriber_id);
            snprintf(e->kind, sizeof e->kind, "%s", se->kind);
            snprintf(e->status, sizeof e->status, "%s", se->status);
            if (se->encrypted_pii.len) {
                e->pii = malloc(se->encrypted_pii.len);
                memcpy(e->pii, se->encrypted_pii.data, se->encrypted_pii.len);
                e->pii_len = se->encrypted_pii.len;
            }
            contentengine__v1__subscriber_event__free_unpacked(se, NULL);
        }
    }
    nevs++;
    bus_done(c, m, BUS_OK, NULL);
}

static const ev *find_ev(const char *subscriber, const char *kind)
{
    for (size_t i = 0; i < nevs; i++)
        if (!strcmp(evs[i].topic, t_events) && !strcmp(evs[i].subscriber_id, subscriber) &&
            !strcmp(evs[i].kind, kind))
            return &evs[i];
    return NULL;
}

static const ev *wait_ev(const char *subscriber, const char *kind, int64_t ms)
{
    int64_t deadline = core_mono_ns() + ms * 1000000;
    const ev *e;
    while (!(e = find_ev(subscriber, kind)) && core_mono_ns() < deadline)
        ts_run_for(&loop, 100);
    if (!e) fail_msg("no %s event for %s", kind, subscriber);
    char type[128]; /* the CloudEvents type names the kind (a bulk row's default included) */
    snprintf(type, sizeof type, "contentengine.subscriber.%s.v1", kind);
    assert_string_equal(e->ce_type, type);
    assert_string_equal(e->subject, subscriber); /* a bulk row's entries store it as the key */
    return e;
}

/* ---------------------------------------------------------------- service */

static void env_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void env_add(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    env[nenv++] = strdup(buf);
    env[nenv] = NULL;
}

static bool readyz(void)
{
    resp r = {0};
    jcall(&r, "GET", "/readyz", NULL, NULL);
    bool ok = r.status == 200;
    resp_free(&r);
    return ok;
}

static bool start_service(const char *bin)
{
    if (!ts_spawn_logged(&svc, bin, NULL, (const char *const *)env, log_path)) return false;
    svc_running = true;
    int64_t deadline = core_mono_ns() + 60 * 1000000000LL;
    while (!readyz()) {
        if (core_mono_ns() > deadline) {
            fprintf(stderr, "subscriber-manager never became ready (log %s)\n", log_path);
            return false;
        }
        ts_run_for(&loop, 200);
    }
    return true;
}

static int stop_service(void)
{
    kill(svc.pid, SIGTERM);
    int st = ts_wait_or_kill(&svc, 60000);
    svc_running = false;
    return st;
}

static void key_b64(uint8_t key[32], char *out, size_t cap)
{
    core_random_bytes(key, 32);
    sodium_bin2base64(out, cap, key, 32, sodium_base64_VARIANT_ORIGINAL);
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&loop);
    if (sodium_init() < 0) return -1;
    const char *brokers = ts_env("KAFKA_BROKERS");
    const char *db = ts_env("PLATFORM_TEST_DATABASE_URL");
    if (!brokers || !db) return 0;
    core_log_init("subscriber-manager-test", CORE_LOG_WARN);
    ts_unique_name(unique, sizeof unique, "smit");
    snprintf(schema, sizeof schema, "%s", unique);
    for (char *c = schema; *c; c++)
        if (*c == '-') *c = '_';
    snprintf(t_events, sizeof t_events, "%s-events", unique);
    snprintf(t_imports, sizeof t_imports, "%s-imports", unique);
    snprintf(svc_name, sizeof svc_name, "sm-%s", unique);

    pg = PQconnectdb(db);
    if (PQstatus(pg) != CONNECTION_OK) return -1;
    char q[256];
    snprintf(q, sizeof q, "CREATE SCHEMA %s", schema);
    PQclear(sql(q, 0, NULL));
    snprintf(q, sizeof q, "SET search_path TO %s", schema);
    PQclear(sql(q, 0, NULL));
    PQclear(sql("SET client_min_messages = warning", 0, NULL));
    if (!ts_bus_create_topic(&loop, brokers, t_events, 3, NULL) ||
        !ts_bus_create_topic(&loop, brokers, t_imports, 1, NULL))
        return -1;
    const char *topics[] = {t_events, t_imports, NULL};
    /* the million-row test reads 990,000 events as fast as it can: librdkafka's deep queue */
    static const char *const deep[] = {"queued.max.messages.kbytes", "65536", "fetch.max.bytes",
                                       "52428800", NULL};
    char err[256];
    consumer = bus_consumer_new(&loop,
                                &(bus_consumer_config){.brokers = brokers,
                                                       .group_id = unique,
                                                       .client_id = unique,
                                                       .topics = topics,
                                                       .auto_offset_reset = "earliest",
                                                       .extra = deep},
                                on_message, NULL, err, sizeof err);
    if (!consumer) return -1;

    auth_signer_generate(&signer);
    char b64[128];
    auth_signer_seed_base64(&signer, b64);
    env_add("AUTH_SIGNING_KEY=%s", b64);
    key_b64(k_data, b64, sizeof b64);
    env_add("SUBSCRIBER_DATA_KEY=%s", b64);
    key_b64(k_index, b64, sizeof b64);
    env_add("SUBSCRIBER_INDEX_KEY=%s", b64);
    key_b64(k_token, b64, sizeof b64);
    env_add("TOKEN_SIGNING_KEY=%s", b64);
    snprintf(admin_email, sizeof admin_email, "admin-%d@sm-test.example", (int)getpid());
    char pw[AUTH_TOKEN_LEN + 1];
    auth_random_token(pw);
    snprintf(admin_pw, sizeof admin_pw, "%s", pw);
    env_add("ADMIN_EMAIL=%s", admin_email);
    env_add("ADMIN_PASSWORD=%s", admin_pw);
    port = ts_free_port();
    env_add("HTTP_PORT=%d", port);
    env_add("KAFKA_BROKERS=%s", brokers);
    env_add("DATABASE_URL=%s", db);
    env_add("DB_SEARCH_PATH=%s", schema);
    env_add("SERVICE_NAME=%s", svc_name);
    env_add("SUBSCRIBER_EVENTS_TOPIC=%s", t_events);
    env_add("IMPORT_PROGRESS_TOPIC=%s", t_imports);
    /* more than one bulk outbox row's worth of events per batch (import.c: 5,000 per row) */
    env_add("IMPORT_BATCH_ROWS=12000");
    char mig[4096];
    ts_repo_path(mig, sizeof mig, "services/subscriber-manager/migrations");
    env_add("MIGRATIONS_DIR=%s", mig);
    env_add("LOGIN_FREE_FAILURES=3");
    env_add("LOGIN_LOCK_BASE=2s");
    env_add("LOGIN_LOCK_MAX=4s");
    env_add("LOGIN_ADDR_FREE_FAILURES=25");
    env_add("PUBLIC_RATE_PER_MIN=3000");
    env_add("PUBLIC_RATE_BURST=60");
    env_add("LOG_LEVEL=info");
    ts_repo_path(log_path, sizeof log_path, "var/log/tests");
    mkdir(log_path, 0755);
    size_t n = strlen(log_path);
    snprintf(log_path + n, sizeof log_path - n, "/%s.service.log", unique);
    ts_bin_path(svc_bin, sizeof svc_bin, "subscriber-manager");
    if (!start_service(svc_bin)) return -1;
    have_infra = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (svc_running) stop_service();
    const char *brokers = ts_env("KAFKA_BROKERS");
    if (consumer) ts_bus_close_consumer(&loop, consumer, 60000);
    if (brokers && have_infra) {
        ts_bus_delete_topic(&loop, brokers, t_events);
        ts_bus_delete_topic(&loop, brokers, t_imports);
    }
    if (pg) {
        char q[256];
        snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS %s CASCADE", schema);
        PQclear(PQexec(pg, q));
        PQfinish(pg);
    }
    ts_loop_close_all(&loop);
    uv_loop_close(&loop);
    for (size_t i = 0; i < nevs; i++)
        free(evs[i].pii);
    free(evs);
    for (size_t i = 0; i < nenv; i++)
        free(env[i]);
    auth_signer_wipe(&signer);
    curl_global_cleanup();
    return 0;
}

/* ---------------------------------------------------------------- auth helpers */

typedef struct tokens {
    char access[2048];
    char refresh[128];
} tokens;

static long login(tokens *t, const char *email, const char *password)
{
    json_t *b = json_pack("{s:s,s:s}", "email", email, "password", password);
    char *s = json_dumps(b, JSON_COMPACT);
    resp r = {0};
    jcall(&r, "POST", "/api/auth/login", NULL, s);
    free(s);
    json_decref(b);
    long st = r.status;
    if (st == 200 && t) {
        snprintf(t->access, sizeof t->access, "%s", jstr(r.json, "access_token"));
        snprintf(t->refresh, sizeof t->refresh, "%s", jstr(r.json, "refresh_token"));
        assert_true(json_integer_value(json_object_get(r.json, "expires_in")) > 0);
    }
    resp_free(&r);
    return st;
}

static tokens admin;

static void admin_token(void)
{
    if (!admin.access[0]) assert_int_equal(login(&admin, admin_email, admin_pw), 200);
}

/* Creates a user with role; returns its tokens. */
static void make_user(tokens *t, const char *role, char *email_out, size_t cap)
{
    admin_token();
    snprintf(email_out, cap, "%s-%d-%u@sm-test.example", role, (int)getpid(),
             (unsigned)randombytes_random());
    char body[512];
    snprintf(body, sizeof body,
             "{\"email\":\"%s\",\"name\":\"A %s\",\"role\":\"%s\",\"password\":\"pass-%s-123\"}",
             email_out, role, role, role);
    resp r = {0};
    jcall(&r, "POST", "/api/users", admin.access, body);
    expect(&r, 201);
    resp_free(&r);
    char pw[64];
    snprintf(pw, sizeof pw, "pass-%s-123", role);
    assert_int_equal(login(t, email_out, pw), 200);
}

static char *signed_token(auth_role role, int64_t exp_offset, const auth_signer *with)
{
    int64_t now = core_now_unix_ms() / 1000;
    auth_claims c = {.role = role, .iat = now - 10, .exp = now + exp_offset};
    snprintf(c.iss, sizeof c.iss, "subscriber-manager");
    snprintf(c.sub, sizeof c.sub, "01900000-0000-7000-8000-000000000001");
    return auth_jwt_sign(with, &c);
}

/* ---------------------------------------------------------------- tests: auth */

static void test_bootstrap_login_me(void **state)
{
    (void)state;
    if (!have_infra) skip();
    /* the first admin came from ADMIN_EMAIL / ADMIN_PASSWORD (created just after start) */
    tokens t;
    long st = 0;
    for (int i = 0; i < 100 && (st = login(&t, admin_email, admin_pw)) != 200; i++)
        ts_run_for(&loop, 100);
    assert_int_equal(st, 200);
    resp r = {0};
    jcall(&r, "GET", "/api/auth/me", t.access, NULL);
    expect(&r, 200);
    assert_string_equal(jstr(r.json, "email"), admin_email);
    assert_string_equal(jstr(r.json, "role"), "admin");
    /* the stored hash is argon2id, never the password */
    const char *v[] = {admin_email};
    PGresult *pr = sql("SELECT password_hash FROM users WHERE email = $1", 1, v);
    assert_int_equal(strncmp(PQgetvalue(pr, 0, 0), "$argon2id$", 10), 0);
    assert_null(strstr(PQgetvalue(pr, 0, 0), admin_pw));
    PQclear(pr);
    /* wrong password, unknown user: the same 401 */
    assert_int_equal(login(NULL, admin_email, "wrong-password"), 401);
    assert_int_equal(login(NULL, "nobody@sm-test.example", "wrong-password"), 401);
    jcall(&r, "POST", "/api/auth/login", NULL, "{\"email\":\"not an address\",\"password\":\"x\"}");
    expect_problem(&r, 400);
    jcall(&r, "POST", "/api/auth/login", NULL, "{\"email\":");
    expect_problem(&r, 400);
    resp_free(&r);
}

static void test_refresh_rotation_and_logout(void **state)
{
    (void)state;
    if (!have_infra) skip();
    tokens t;
    assert_int_equal(login(&t, admin_email, admin_pw), 200);
    char body[256], old[128];
    snprintf(old, sizeof old, "%s", t.refresh);
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", t.refresh);
    resp r = {0};
    jcall(&r, "POST", "/api/auth/refresh", NULL, body);
    expect(&r, 200);
    char next[128];
    snprintf(next, sizeof next, "%s", jstr(r.json, "refresh_token"));
    assert_string_not_equal(next, old);
    char access[2048];
    snprintf(access, sizeof access, "%s", jstr(r.json, "access_token"));
    jcall(&r, "GET", "/api/auth/me", access, NULL);
    expect(&r, 200);
    /* only hashes are stored */
    const char *v[] = {next};
    assert_int_equal(sql_count("SELECT count(*) FROM refresh_tokens WHERE token_hash = $1", 1, v),
                     0);
    /* reusing the old token: refused, and the whole family is revoked */
    jcall(&r, "POST", "/api/auth/refresh", NULL, body);
    expect_problem(&r, 401);
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", next);
    jcall(&r, "POST", "/api/auth/refresh", NULL, body);
    expect_problem(&r, 401);
    /* logout revokes */
    assert_int_equal(login(&t, admin_email, admin_pw), 200);
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", t.refresh);
    jcall(&r, "POST", "/api/auth/logout", NULL, body);
    expect(&r, 204);
    jcall(&r, "POST", "/api/auth/refresh", NULL, body);
    expect_problem(&r, 401);
    jcall(&r, "POST", "/api/auth/refresh", NULL, "{\"refresh_token\":\"short\"}");
    expect_problem(&r, 400);
    resp_free(&r);
}

static void test_roles_and_bad_tokens(void **state)
{
    (void)state;
    if (!have_infra) skip();
    tokens viewer, editor;
    char ve[160], ee[160];
    make_user(&viewer, "viewer", ve, sizeof ve);
    make_user(&editor, "editor", ee, sizeof ee);
    resp r = {0};
    const char *sub = "{\"email\":\"role-check@sm-test.example\",\"name\":\"Role Check\"}";
    jcall(&r, "GET", "/api/subscribers", viewer.access, NULL);
    expect(&r, 200);
    jcall(&r, "POST", "/api/subscribers", viewer.access, sub);
    expect_problem(&r, 403);
    jcall(&r, "POST", "/api/users", editor.access,
          "{\"email\":\"x@sm-test.example\",\"role\":\"admin\",\"password\":\"12345678\"}");
    expect_problem(&r, 403);
    jcall(&r, "GET", "/api/users", viewer.access, NULL);
    expect_problem(&r, 403);
    /* identity headers are never trusted: only a verified token is */
    const char *forged[] = {"X-Auth-User: 01900000-0000-7000-8000-000000000001",
                            "X-Auth-Role: admin", "X-Auth-Email: root@sm-test.example", NULL};
    call(&r, "POST", "/api/subscribers", NULL, sub, strlen(sub), NULL, forged);
    expect_problem(&r, 401);
    call(&r, "POST", "/api/subscribers", viewer.access, sub, strlen(sub), NULL, forged);
    expect_problem(&r, 403);
    /* tampered, expired, wrong key, alg none */
    char tampered[2048];
    snprintf(tampered, sizeof tampered, "%s", viewer.access);
    char *dot = strchr(tampered, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    jcall(&r, "GET", "/api/subscribers", tampered, NULL);
    expect_problem(&r, 401);
    char *expired = signed_token(AUTH_ROLE_ADMIN, -5, &signer);
    jcall(&r, "GET", "/api/subscribers", expired, NULL);
    expect_problem(&r, 401);
    assert_non_null(strstr(jstr(r.json, "detail"), "expired"));
    auth_signer other;
    auth_signer_generate(&other);
    char *wrong = signed_token(AUTH_ROLE_ADMIN, 600, &other);
    jcall(&r, "GET", "/api/subscribers", wrong, NULL);
    expect_problem(&r, 401);
    char *good = signed_token(AUTH_ROLE_ADMIN, 600, &signer); /* control: the same, right key */
    jcall(&r, "GET", "/api/subscribers", good, NULL);
    expect(&r, 200);
    const char *none_hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    char h64[128], none_tok[2048];
    auth_b64url_encode(none_hdr, strlen(none_hdr), h64, sizeof h64);
    const char *p1 = strchr(good, '.'), *p2 = strrchr(good, '.');
    snprintf(none_tok, sizeof none_tok, "%s%.*s.", h64, (int)(p2 - p1), p1);
    jcall(&r, "GET", "/api/subscribers", none_tok, NULL);
    expect_problem(&r, 401);
    const char *basic[] = {"Authorization: Basic YWRtaW46YWRtaW4=", NULL};
    call(&r, "GET", "/api/subscribers", NULL, NULL, 0, NULL, basic);
    expect_problem(&r, 401);
    free(expired);
    free(wrong);
    free(good);
    /* a changed role ends the user's sessions */
    char body[256];
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", viewer.refresh);
    resp u = {0};
    jcall(&u, "GET", "/api/users", admin.access, NULL);
    expect(&u, 200);
    const char *vid = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(u.json, "items"), i, it)
    {
        if (!strcmp(jstr(it, "email"), ve)) vid = jstr(it, "id");
    }
    assert_non_null(vid);
    char path[128];
    snprintf(path, sizeof path, "/api/users/%s", vid);
    jcall(&r, "PATCH", path, admin.access, "{\"role\":\"editor\"}");
    expect(&r, 200);
    jcall(&r, "POST", "/api/auth/refresh", NULL, body);
    expect_problem(&r, 401);
    resp_free(&u);
    resp_free(&r);
}

/* ---------------------------------------------------------------- tests: subscribers */

static void create_subscriber(resp *r, const char *email, const char *name, const char *extra)
{
    admin_token();
    char body[1024];
    snprintf(body, sizeof body, "{\"email\":\"%s\",\"name\":\"%s\"%s%s}", email, name,
             extra ? "," : "", extra ? extra : "");
    jcall(r, "POST", "/api/subscribers", admin.access, body);
}

static void test_subscriber_crud_and_bad_input(void **state)
{
    (void)state;
    if (!have_infra) skip();
    admin_token();
    resp r = {0};
    char email[160], path[256];
    snprintf(email, sizeof email, "Crud.%s@Example.org", unique);
    create_subscriber(&r, email, "Crud Person", "\"attributes\":{\"city\":\"Oslo\",\"age\":41}");
    expect(&r, 201);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    assert_string_equal(jstr(r.json, "status"), "active");
    char lower[160];
    for (size_t i = 0; i <= strlen(email); i++)
        lower[i] = (char)tolower((unsigned char)email[i]);
    assert_string_equal(jstr(r.json, "email"), lower);
    /* lookup by email through the blind index, any case */
    snprintf(path, sizeof path, "/api/subscribers?email=%s", email);
    jcall(&r, "GET", path, admin.access, NULL);
    expect(&r, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"), id);
    /* update */
    snprintf(path, sizeof path, "/api/subscribers/%s", id);
    jcall(&r, "PATCH", path, admin.access, "{\"name\":\"Crud Renamed\",\"status\":\"bounced\"}");
    expect(&r, 200);
    assert_string_equal(jstr(r.json, "name"), "Crud Renamed");
    assert_string_equal(jstr(r.json, "status"), "bounced");
    wait_ev(id, "updated", 30000);
    /* bad input: 4xx problem, nothing changes */
    long long before = sql_count("SELECT count(*) FROM subscribers", 0, NULL);
    long long vbefore = sql_count("SELECT sum(version) FROM subscribers", 0, NULL);
    const char *bad[] = {"{\"email\":\"no-at-sign\"}",
                         "{\"email\":\"a@b.com\",\"status\":\"vip\"}",
                         "{\"email\":\"a@b.com\",\"attributes\":[1]}",
                         "{\"email\":\"a@b.com\",\"lists\":[\"x\"]}",
                         "{\"email\":\"a@b.com\",\"unknown\":1}",
                         "{\"email\":\"a@b.com\",\"name\":\"bad\\u0001name\"}",
                         "[]",
                         "{\"email\":"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jcall(&r, "POST", "/api/subscribers", admin.access, bad[i]);
        if (r.status != 400) fail_msg("%s answered %ld", bad[i], r.status);
        expect_problem(&r, 400);
    }
    jcall(&r, "PATCH", path, admin.access, "{\"status\":\"gone\"}");
    expect_problem(&r, 400);
    jcall(&r, "PATCH", "/api/subscribers/not-a-uuid", admin.access, "{}");
    expect_problem(&r, 400);
    call(&r, "POST", "/api/subscribers", admin.access, "x", 1, "text/plain", NULL);
    expect(&r, 415);
    create_subscriber(&r, lower, "Duplicate", NULL);
    expect_problem(&r, 409);
    jcall(&r, "GET", "/api/subscribers/01900000-0000-7000-8000-00000000dead", admin.access, NULL);
    expect_problem(&r, 404);
    assert_int_equal(sql_count("SELECT count(*) FROM subscribers", 0, NULL), before);
    assert_int_equal(sql_count("SELECT sum(version) FROM subscribers", 0, NULL), vbefore);
    /* cursor pagination visits everything once */
    for (int i = 0; i < 5; i++) {
        char e[160];
        snprintf(e, sizeof e, "page%d.%s@example.org", i, unique);
        create_subscriber(&r, e, "Pager", NULL);
        expect(&r, 201);
    }
    long long total = sql_count("SELECT count(*) FROM subscribers", 0, NULL);
    long long seen = 0;
    char cursor[64] = "";
    for (int guard = 0; guard < 1000; guard++) {
        snprintf(path, sizeof path, "/api/subscribers?limit=2%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        jcall(&r, "GET", path, admin.access, NULL);
        expect(&r, 200);
        seen += (long long)json_array_size(json_object_get(r.json, "items"));
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        if (!next) break;
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    assert_int_equal(seen, total);
    resp_free(&r);
}

/* ---------------------------------------------------------------- tests: consent */

static char public_list[64];

static void make_list(char *out, const char *visibility, const char *optin)
{
    admin_token();
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"List %s\",\"visibility\":\"%s\",\"optin\":\"%s\"}",
             unique, visibility, optin);
    resp r = {0};
    jcall(&r, "POST", "/api/lists", admin.access, body);
    expect(&r, 201);
    snprintf(out, 64, "%s", jstr(r.json, "id"));
    resp_free(&r);
}

static void find_by_email(const char *email, char id[64])
{
    char path[512];
    snprintf(path, sizeof path, "/api/subscribers?email=%s", email);
    resp r = {0};
    jcall(&r, "GET", path, admin.access, NULL);
    expect(&r, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    snprintf(id, 64, "%s", jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"));
    resp_free(&r);
}

static void get_subscriber(resp *r, const char *id)
{
    char path[256];
    snprintf(path, sizeof path, "/api/subscribers/%s", id);
    jcall(r, "GET", path, admin.access, NULL);
    expect(r, 200);
}

static void test_double_opt_in_unsubscribe_erase(void **state)
{
    (void)state;
    if (!have_infra) skip();
    admin_token();
    make_list(public_list, "public", "double");
    char email[160], body[512], id[64], path[1024];
    snprintf(email, sizeof email, "optin.%s@example.org", unique);
    snprintf(body, sizeof body, "{\"email\":\"%s\",\"name\":\"Opt In\",\"lists\":[\"%s\"]}", email,
             public_list);
    resp r = {0};
    jcall(&r, "POST", "/api/public/subscribe", NULL, body);
    expect(&r, 202);
    /* an unknown list is refused, a private one too */
    char priv[64];
    make_list(priv, "private", "single");
    snprintf(body, sizeof body, "{\"email\":\"%s\",\"lists\":[\"%s\"]}", email, priv);
    jcall(&r, "POST", "/api/public/subscribe", NULL, body);
    expect_problem(&r, 400);
    find_by_email(email, id);
    get_subscriber(&r, id);
    assert_string_equal(jstr(r.json, "status"), "pending");
    assert_string_equal(jstr(json_object_get(r.json, "consent"), "source"), "public-form");
    assert_string_equal(jstr(json_object_get(r.json, "consent"), "ip"), "127.0.0.1");

    /* the event asks for a confirmation mail; its PII opens only with the subscriber's key */
    const ev *e = wait_ev(id, "confirmation_requested", 30000);
    assert_string_equal(e->key, id);
    assert_null(memmem(e->pii, e->pii_len, "optin.", 6));
    uint8_t dek[32];
    assert_true(subscriber_key(id, dek));
    json_t *pii = open_pii(e, dek);
    assert_non_null(pii);
    assert_string_equal(jstr(pii, "email"), email);
    char confirm[512], unsub[512];
    snprintf(confirm, sizeof confirm, "%s", jstr(pii, "confirm_token"));
    snprintf(unsub, sizeof unsub, "%s", jstr(pii, "unsubscribe_token"));
    json_decref(pii);
    assert_true(strlen(confirm) > 20);

    /* tampered and expired links are refused; GET changes nothing */
    char bad[512];
    snprintf(bad, sizeof bad, "%s", confirm);
    bad[5] = bad[5] == 'A' ? 'B' : 'A';
    snprintf(path, sizeof path, "/api/public/confirm?token=%s", bad);
    jcall(&r, "POST", path, NULL, NULL);
    expect_problem(&r, 400);
    char *expired = auth_link_sign(k_token, "confirm", id, core_now_unix_ms() / 1000 - 5);
    snprintf(path, sizeof path, "/api/public/confirm?token=%s", expired);
    free(expired);
    jcall(&r, "POST", path, NULL, NULL);
    expect_problem(&r, 410);
    snprintf(path, sizeof path, "/api/public/confirm?token=%s", unsub); /* wrong purpose */
    jcall(&r, "POST", path, NULL, NULL);
    expect_problem(&r, 400);
    snprintf(path, sizeof path, "/api/public/confirm?token=%s", confirm);
    jcall(&r, "GET", path, NULL, NULL);
    expect(&r, 200);
    get_subscriber(&r, id);
    assert_string_equal(jstr(r.json, "status"), "pending");
    /* confirm */
    jcall(&r, "POST", path, NULL, NULL);
    expect(&r, 200);
    get_subscriber(&r, id);
    assert_string_equal(jstr(r.json, "status"), "active");
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "lists"), 0), "status"),
                        "confirmed");
    wait_ev(id, "confirmed", 30000);

    /* RFC 8058 one-click unsubscribe: a POST without login */
    snprintf(path, sizeof path, "/api/public/unsubscribe?token=%s", unsub);
    const char *oc = "List-Unsubscribe=One-Click";
    call(&r, "POST", path, NULL, oc, strlen(oc), "application/x-www-form-urlencoded", NULL);
    expect(&r, 200);
    get_subscriber(&r, id);
    assert_string_equal(jstr(r.json, "status"), "unsubscribed");
    wait_ev(id, "unsubscribed", 30000);

    /* preferences by signed link */
    char *pt = auth_link_sign(k_token, "preferences", id, core_now_unix_ms() / 1000 + 600);
    snprintf(path, sizeof path, "/api/public/preferences?token=%s", pt);
    free(pt);
    jcall(&r, "GET", path, NULL, NULL);
    expect(&r, 200);
    assert_string_equal(jstr(r.json, "email"), email);
    jcall(&r, "POST", path, NULL, "{\"name\":\"New Name\"}");
    expect(&r, 200);
    get_subscriber(&r, id);
    assert_string_equal(jstr(r.json, "name"), "New Name");

    /* GDPR export, then erase */
    snprintf(path, sizeof path, "/api/subscribers/%s/export", id);
    jcall(&r, "GET", path, admin.access, NULL);
    expect(&r, 200);
    assert_string_equal(jstr(json_object_get(r.json, "subscriber"), "email"), email);
    wait_ev(id, "export_requested", 30000);
    snprintf(path, sizeof path, "/api/subscribers/%s/erase", id);
    jcall(&r, "POST", path, admin.access, NULL);
    expect(&r, 200);
    get_subscriber(&r, id);
    assert_true(json_is_null(json_object_get(r.json, "email")));
    assert_true(json_is_null(json_object_get(r.json, "name")));
    assert_true(json_is_true(json_object_get(r.json, "erased")));
    const char *v[] = {id};
    assert_int_equal(sql_count("SELECT count(*) FROM subscriber_secrets WHERE subscriber_id = "
                               "$1::uuid AND wrapped_key IS NULL AND email_enc IS NULL AND "
                               "name_enc IS NULL AND consent_ip_enc IS NULL AND email_index IS "
                               "NOT NULL",
                               1, v),
                     1);
    assert_int_equal(sql_count("SELECT count(*) FROM subscribers WHERE id = $1::uuid AND "
                               "attributes = '{}' AND erased_at IS NOT NULL",
                               1, v),
                     1);
    const ev *erased = wait_ev(id, "erased", 30000);
    assert_int_equal(erased->pii_len, 0);
    /* the key is gone: the earlier events cannot be opened any more */
    assert_false(subscriber_key(id, dek));
    /* an import of the same address does not resurrect the erased subscriber */
    char csv[512];
    snprintf(csv, sizeof csv, "email,name\n%s,Back Again\n", email);
    call(&r, "POST", "/api/subscribers/import?mode=upsert", admin.access, csv, strlen(csv),
         "text/csv", NULL);
    expect(&r, 202);
    char ip[256];
    snprintf(ip, sizeof ip, "/api/imports/%s", jstr(r.json, "id"));
    for (int i = 0; i < 300; i++) {
        jcall(&r, "GET", ip, admin.access, NULL);
        if (strcmp(jstr(r.json, "status"), "running") != 0) break;
        ts_run_for(&loop, 100);
    }
    assert_string_equal(jstr(r.json, "status"), "done");
    assert_int_equal(json_integer_value(json_object_get(r.json, "skipped")), 1);
    assert_int_equal(json_integer_value(json_object_get(r.json, "inserted")), 0);
    get_subscriber(&r, id);
    assert_true(json_is_true(json_object_get(r.json, "erased")));
    resp_free(&r);
}

static void test_public_rate_limit(void **state)
{
    (void)state;
    if (!have_infra) skip();
    resp r = {0};
    int limited = 0;
    for (int i = 0; i < 120 && !limited; i++) {
        jcall(&r, "GET", "/api/public/confirm?token=x", NULL, NULL);
        if (r.status == 429) limited = 1;
    }
    assert_true(limited);
    expect_problem(&r, 429);
    assert_true(r.retry_after[0] != '\0');
    ts_run_for(&loop, 1500); /* 50 tokens/s refill: later tests are not affected */
    resp_free(&r);
}

/* ---------------------------------------------------------------- tests: at rest */

/* Bytes of needle found in any regular file under dir (recursively). */
static bool file_has(const char *path, const char *needle)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    size_t nl = strlen(needle);
    static char buf[1 << 20];
    size_t keep = 0;
    bool found = false;
    for (;;) {
        ssize_t n = read(fd, buf + keep, sizeof buf - keep);
        if (n <= 0) break;
        size_t have = keep + (size_t)n;
        if (memmem(buf, have, needle, nl)) {
            found = true;
            break;
        }
        keep = have < nl ? have : nl - 1;
        memmove(buf, buf + have - keep, keep);
    }
    close(fd);
    return found;
}

static int tree_has(const char *dir, const char *needle, const char *only_prefix, char *where,
                    size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int hits = 0;
    while ((de = readdir(d)) && !hits) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (only_prefix && strncmp(de->d_name, only_prefix, strlen(only_prefix)) != 0) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            hits += tree_has(p, needle, NULL, where, cap);
        else if (S_ISREG(st.st_mode) && file_has(p, needle)) {
            snprintf(where, cap, "%s", p);
            hits++;
        }
    }
    closedir(d);
    return hits;
}

/* var/pg (data files and WAL), our topics' Kafka log segments, var/log (service logs). */
static int at_rest_has(const char *needle, char *where, size_t cap)
{
    char pgdir[4096], kdir[4096], logdir[4096];
    ts_repo_path(pgdir, sizeof pgdir, "var/pg");
    ts_repo_path(kdir, sizeof kdir, "var/kafka/data");
    ts_repo_path(logdir, sizeof logdir, "var/log");
    return tree_has(pgdir, needle, NULL, where, cap) + tree_has(kdir, needle, unique, where, cap) +
           tree_has(logdir, needle, NULL, where, cap);
}

static void test_no_plaintext_at_rest(void **state)
{
    (void)state;
    if (!have_infra) skip();
    admin_token();
    char email[160], name[160];
    snprintf(email, sizeof email, "zz.plain.%s@example.org", unique);
    snprintf(name, sizeof name, "Quillon Zebedee %s", unique);
    resp r = {0};
    create_subscriber(&r, email, name, NULL);
    expect(&r, 201);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    char sub[512];
    snprintf(sub, sizeof sub, "{\"email\":\"pub.%s\",\"name\":\"%s\",\"lists\":[\"%s\"]}", email,
             name, public_list);
    jcall(&r, "POST", "/api/public/subscribe", NULL, sub);
    expect(&r, 202);
    /* the events reached Kafka's log; PostgreSQL wrote the WAL at commit */
    wait_ev(id, "created", 30000);
    char pub_email[200], pid[64];
    snprintf(pub_email, sizeof pub_email, "pub.%s", email);
    find_by_email(pub_email, pid);
    wait_ev(pid, "confirmation_requested", 30000);
    /* lookup by email still works */
    char found[64];
    find_by_email(email, found);
    assert_string_equal(found, id);
    /* the search works: a planted copy is found (so a miss below means something) */
    char plant[4096], where[4096] = "";
    ts_repo_path(plant, sizeof plant, "var/log/tests");
    size_t n = strlen(plant);
    snprintf(plant + n, sizeof plant - n, "/%s.plant", unique);
    FILE *f = fopen(plant, "w");
    assert_non_null(f);
    fprintf(f, "xx%syy", name);
    fclose(f);
    assert_true(at_rest_has(name, where, sizeof where) >= 1);
    unlink(plant);
    where[0] = '\0';
    int hits = at_rest_has(email, where, sizeof where);
    if (hits) fail_msg("plaintext email found in %s", where);
    hits = at_rest_has(name, where, sizeof where);
    if (hits) fail_msg("plaintext name found in %s", where);
    resp_free(&r);
}

/* ---------------------------------------------------------------- tests: segments */

#define NSEG 10000
static const char *const cities[] = {"Paris", "Berlin", "Oslo", "Lisbon", "Rome"};
static const char *const st4[] = {"active", "pending", "unsubscribed", "bounced"};

typedef struct gen {
    int status, city, age;
    int vip; /* -1: no vip attribute */
    bool in_list;
} gen;
static gen g[NSEG];
static char seg_list[64];

static bool wait_import(const char *id, resp *r, int64_t ms)
{
    char path[256];
    snprintf(path, sizeof path, "/api/imports/%s", id);
    int64_t deadline = core_mono_ns() + ms * 1000000;
    while (core_mono_ns() < deadline) {
        jcall(r, "GET", path, admin.access, NULL);
        if (r->status == 200 && strcmp(jstr(r->json, "status"), "running") != 0) return true;
        ts_run_for(&loop, 200);
    }
    return false;
}

static void import_csv(const core_buf *csv, const char *query, resp *r, int64_t ms)
{
    char path[512];
    snprintf(path, sizeof path, "/api/subscribers/import?%s", query);
    call(r, "POST", path, admin.access, csv->data, csv->len, "text/csv", NULL);
    expect(r, 202);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r->json, "id"));
    if (!wait_import(id, r, ms)) fail_msg("import %s did not finish", id);
    assert_string_equal(jstr(r->json, "status"), "done");
}

static long count_lines(const core_buf *b)
{
    long n = 0;
    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

typedef bool (*pred)(const gen *x);
static bool p_active(const gen *x)
{
    return x->status == 0;
}
static bool p_act_pend(const gen *x)
{
    return x->status <= 1;
}
static bool p_age40(const gen *x)
{
    return x->age >= 40;
}
static bool p_paris_vip(const gen *x)
{
    return x->city == 0 || x->vip == 1;
}
static bool p_not_list(const gen *x)
{
    return !x->in_list;
}
static bool p_list_young(const gen *x)
{
    return x->in_list && x->age < 30 && x->status != 3;
}
static bool p_contains(const gen *x)
{
    return x->city == 0;
}
static bool p_no_vip(const gen *x)
{
    return x->vip < 0;
}
static bool p_all(const gen *x)
{
    (void)x;
    return true;
}
static bool p_nested(const gen *x)
{
    return (x->status == 0 && x->age > 70) || !(x->city == 2 || x->in_list);
}
static bool p_vip_false(const gen *x)
{
    return x->vip == 0;
}

static void test_segments_match_brute_force(void **state)
{
    (void)state;
    if (!have_infra) skip();
    admin_token();
    make_list(seg_list, "private", "single");
    core_buf a = {0}, b = {0};
    core_buf_puts(&a, "email,name,status,city,run,attributes\n");
    core_buf_puts(&b, "email,name,status,city,run,attributes\n");
    for (int i = 0; i < NSEG; i++) {
        gen *x = &g[i];
        x->status = (i * 7) % 4;
        x->city = (i * 3) % 5;
        x->age = (i * 13) % 90;
        x->vip = i % 3 == 0 ? -1 : (i % 3 == 1);
        x->in_list = i < NSEG / 2;
        core_buf *c = x->in_list ? &a : &b;
        core_buf_printf(c, "seg%d.%s@example.org,Seg %d,%s,%s,%s,\"{\"\"age\"\": %d", i, unique, i,
                        st4[x->status], cities[x->city], unique, x->age);
        if (x->vip >= 0) core_buf_printf(c, ", \"\"vip\"\": %s", x->vip ? "true" : "false");
        core_buf_puts(c, "}\"\n");
    }
    resp r = {0};
    char q[128];
    snprintf(q, sizeof q, "mode=skip&list_id=%s", seg_list);
    import_csv(&a, q, &r, 120000);
    assert_int_equal(json_integer_value(json_object_get(r.json, "inserted")), NSEG / 2);
    import_csv(&b, "mode=skip", &r, 120000);
    assert_int_equal(json_integer_value(json_object_get(r.json, "inserted")), NSEG / 2);
    core_buf_free(&a);
    core_buf_free(&b);

    struct {
        const char *rule;
        pred p;
    } cases[] = {
        {"{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\"}", p_active},
        {"{\"field\":\"status\",\"op\":\"in\",\"value\":[\"active\",\"pending\"]}", p_act_pend},
        {"{\"field\":\"attributes.age\",\"op\":\"gte\",\"value\":40}", p_age40},
        {"{\"any\":[{\"field\":\"attributes.city\",\"op\":\"eq\",\"value\":\"Paris\"},"
         "{\"field\":\"attributes.vip\",\"op\":\"eq\",\"value\":true}]}",
         p_paris_vip},
        {"{\"not\":{\"field\":\"list\",\"op\":\"in\",\"value\":\"%L\"}}", p_not_list},
        {"{\"all\":[{\"field\":\"list\",\"op\":\"in\",\"value\":\"%L\"},{\"field\":"
         "\"attributes.age\",\"op\":\"lt\",\"value\":30},{\"field\":\"status\",\"op\":\"ne\","
         "\"value\":\"bounced\"}]}",
         p_list_young},
        {"{\"field\":\"attributes.city\",\"op\":\"contains\",\"value\":\"ARI\"}", p_contains},
        {"{\"field\":\"attributes.vip\",\"op\":\"exists\",\"value\":false}", p_no_vip},
        {"{\"field\":\"attributes.vip\",\"op\":\"eq\",\"value\":false}", p_vip_false},
        {"{\"field\":\"created_at\",\"op\":\"after\",\"value\":\"2000-01-01T00:00:00Z\"}", p_all},
        {"{\"any\":[{\"all\":[{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\"},"
         "{\"field\":\"attributes.age\",\"op\":\"gt\",\"value\":70}]},{\"not\":{\"any\":["
         "{\"field\":\"attributes.city\",\"op\":\"eq\",\"value\":\"Oslo\"},{\"field\":\"list\","
         "\"op\":\"in\",\"value\":\"%L\"}]}}]}",
         p_nested},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        core_buf rule = {0};
        for (const char *p = cases[c].rule; *p; p++) {
            if (p[0] == '%' && p[1] == 'L') {
                core_buf_puts(&rule, seg_list);
                p++;
            } else {
                core_buf_append(&rule, p, 1);
            }
        }
        long want = 0;
        for (int i = 0; i < NSEG; i++)
            want += cases[c].p(&g[i]);
        core_buf body = {0};
        core_buf_printf(&body,
                        "{\"rules\":{\"all\":[{\"field\":\"attributes.run\",\"op\":\"eq\","
                        "\"value\":\"%s\"},%s]}}",
                        unique, rule.data);
        jcall(&r, "POST", "/api/segments/count", admin.access, body.data);
        expect(&r, 200);
        long got = (long)json_integer_value(json_object_get(r.json, "count"));
        if (got != want) fail_msg("rule %s: service %ld, brute force %ld", rule.data, got, want);
        if (c == 5) {
            /* saved, counted again, and the recipients paged: active matches, each once */
            core_buf seg = {0};
            core_buf_printf(&seg, "{\"name\":\"young in list\",%s", body.data + 1);
            jcall(&r, "POST", "/api/segments", admin.access, seg.data);
            expect(&r, 201);
            char sid[64], path[512], cursor[64] = "";
            snprintf(sid, sizeof sid, "%s", jstr(r.json, "id"));
            snprintf(path, sizeof path, "/api/segments/%s/count", sid);
            jcall(&r, "GET", path, admin.access, NULL);
            expect(&r, 200);
            assert_int_equal(json_integer_value(json_object_get(r.json, "count")), want);
            long active = 0, seen = 0;
            for (int i = 0; i < NSEG; i++)
                active += cases[c].p(&g[i]) && g[i].status == 0;
            for (int guard = 0; guard < 100; guard++) {
                snprintf(path, sizeof path, "/api/segments/%s/recipients?limit=97%s%s", sid,
                         cursor[0] ? "&cursor=" : "", cursor);
                jcall(&r, "GET", path, admin.access, NULL);
                expect(&r, 200);
                json_t *items = json_object_get(r.json, "items");
                seen += (long)json_array_size(items);
                if (json_array_size(items))
                    assert_non_null(strstr(jstr(json_array_get(items, 0), "email"), unique));
                const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
                if (!next) break;
                snprintf(cursor, sizeof cursor, "%s", next);
            }
            assert_int_equal(seen, active);
            /* the same segment as CSV: one line per match (erased excluded), decrypted */
            snprintf(path, sizeof path, "/api/subscribers/export.csv?segment_id=%s", sid);
            call(&r, "GET", path, admin.access, NULL, 0, NULL, NULL);
            expect(&r, 200);
            assert_non_null(strstr(r.ctype, "text/csv"));
            assert_int_equal(count_lines(&r.body), want + 1);
            assert_non_null(strstr(r.body.data, unique));
            core_buf_free(&seg);
        }
        core_buf_free(&body);
        core_buf_free(&rule);
    }
    /* CSV export of a list: every member, spreadsheet formulas defused */
    {
        char fpath[512];
        char e[160], extra[256];
        snprintf(e, sizeof e, "formula.%s@example.org", unique);
        snprintf(extra, sizeof extra, "\"lists\":[\"%s\"]", seg_list);
        create_subscriber(&r, e, "=HYPERLINK(\\\"http://x\\\")", extra);
        expect(&r, 201);
        snprintf(fpath, sizeof fpath, "/api/subscribers/export.csv?list_id=%s", seg_list);
        call(&r, "GET", fpath, admin.access, NULL, 0, NULL, NULL);
        expect(&r, 200);
        assert_int_equal(count_lines(&r.body), NSEG / 2 + 2);
        assert_non_null(strstr(r.body.data, "\"'=HYPERLINK"));
        assert_non_null(strstr(r.body.data, "id,email,name,status,created_at,attributes\r\n"));
        jcall(&r, "GET", "/api/subscribers/export.csv", admin.access, NULL);
        expect_problem(&r, 400);
    }
    /* injection: rejected, or harmless as a parameter */
    const char *evil[] = {
        "{\"rules\":{\"field\":\"status; DROP TABLE subscribers; --\",\"op\":\"eq\",\"value\":"
        "\"active\"}}",
        "{\"rules\":{\"field\":\"attributes.a') OR 1=1 --\",\"op\":\"eq\",\"value\":\"x\"}}",
        "{\"rules\":{\"field\":\"status\",\"op\":\"=\",\"value\":\"active' OR '1'='1\"}}",
        "{\"rules\":{\"field\":\"list\",\"op\":\"in\",\"value\":\"1' OR '1'='1\"}}",
    };
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        jcall(&r, "POST", "/api/segments/count", admin.access, evil[i]);
        expect_problem(&r, 400);
    }
    jcall(&r, "POST", "/api/segments/count", admin.access,
          "{\"rules\":{\"field\":\"attributes.city\",\"op\":\"eq\",\"value\":\"x' OR '1'='1'; "
          "DROP TABLE subscribers; --\"}}");
    expect(&r, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "count")), 0);
    char rq[256];
    snprintf(rq, sizeof rq, "SELECT count(*) FROM subscribers WHERE attributes->>'run' = '%s'",
             unique);
    assert_int_equal(sql_count(rq, 0, NULL), NSEG);
    resp_free(&r);
}

/* ---------------------------------------------------------------- tests: import */

static int cmp_id(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

/* Counts the created events received so far of each subscriber in ids (sorted ids, one
 * column) into seen, until every one has at least one or ms pass; returns how many have one. */
static long created_events(PGresult *ids, int *seen, int64_t ms)
{
    long n = PQntuples(ids);
    const char **sorted = calloc((size_t)n, sizeof *sorted);
    for (long k = 0; k < n; k++)
        sorted[k] = PQgetvalue(ids, (int)k, 0);
    int64_t deadline = core_mono_ns() + ms * 1000000;
    size_t scanned = 0;
    long have = 0;
    for (;;) {
        for (; scanned < nevs; scanned++) {
            const ev *e = &evs[scanned];
            if (strcmp(e->topic, t_events) || strcmp(e->kind, "created")) continue;
            const char **hit = bsearch(e->subscriber_id, sorted, (size_t)n, sizeof *sorted, cmp_id);
            if (!hit) continue;
            if (seen[hit - sorted]++ == 0) have++;
            if (strcmp(e->key, e->subscriber_id) != 0) fail_msg("event keyed %s", e->key);
        }
        if (have == n || core_mono_ns() >= deadline) break;
        ts_run_for(&loop, 500);
    }
    free(sorted);
    return have;
}

/* A writer that adds an address the import takes as new (a public subscribe, another import,
 * between the import's lookup, if any, and its write): the batch's COPY breaks the unique blind
 * index, and the batch is looked up and written again, so that address is skipped and nothing
 * is lost or doubled. The other writer here is a transaction of the test, held open until the
 * import's COPY waits for it. */
static void test_import_race_rewrites_batch(void **state)
{
    (void)state;
    if (!have_infra) skip();
    admin_token();
    char race[128], a[128], c[128];
    snprintf(race, sizeof race, "race.%s@race.example", unique);
    snprintf(a, sizeof a, "a.%s@race.example", unique);
    snprintf(c, sizeof c, "c.%s@race.example", unique);
    for (char *p = race; *p; p++) /* the stored index is of the normalized (lower-case) address */
        *p = (char)tolower((unsigned char)*p);
    char msg[160];
    int ml = snprintf(msg, sizeof msg, "email:%s", race);
    uint8_t mac[32]; /* the blind index: its first 16 bytes, as a uuid */
    crypto_auth_hmacsha256(mac, (const uint8_t *)msg, (unsigned long long)ml, k_index);
    core_uuid u;
    memcpy(u.b, mac, sizeof u.b);
    char idx[CORE_UUID_STRLEN + 1];
    core_uuid_format(&u, idx);

    PGconn *other = PQconnectdb(ts_env("PLATFORM_TEST_DATABASE_URL"));
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    char q[256];
    snprintf(q, sizeof q, "SET search_path TO %s", schema);
    PQclear(PQexec(other, q));
    PQclear(PQexec(other, "BEGIN"));
    const char *v[] = {idx};
    PGresult *ins = PQexecParams(other,
                                 "WITH s AS (INSERT INTO subscribers (id, status) VALUES "
                                 "(gen_random_uuid(), 'pending') RETURNING id) INSERT INTO "
                                 "subscriber_secrets (subscriber_id, email_index) SELECT id, "
                                 "$1::uuid FROM s",
                                 1, NULL, v, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(ins), PGRES_COMMAND_OK);
    PQclear(ins);

    core_buf csv = {0};
    core_buf_printf(&csv, "email,name\n%s,A\n%s,Race\n%s,C\n", a, race, c);
    resp r = {0};
    call(&r, "POST", "/api/subscribers/import?mode=skip", admin.access, csv.data, csv.len,
         "text/csv", NULL);
    expect(&r, 202);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    /* the import's COPY waits for the open transaction's index entry */
    bool waiting = false;
    for (int i = 0; i < 100 && !waiting; i++) {
        waiting = sql_count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND query LIKE 'COPY subscriber_secrets%'",
                            0, NULL) > 0;
        if (!waiting) ts_run_for(&loop, 100);
    }
    assert_true(waiting);
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    if (!wait_import(id, &r, 20000)) fail_msg("import %s did not finish", id);
    assert_string_equal(jstr(r.json, "status"), "done");
    assert_int_equal(json_integer_value(json_object_get(r.json, "inserted")), 2);
    assert_int_equal(json_integer_value(json_object_get(r.json, "skipped")), 1);
    assert_int_equal(json_integer_value(json_object_get(r.json, "failed")), 0);
    assert_int_equal(sql_count("SELECT count(*) FROM subscriber_secrets WHERE email_index = "
                               "$1::uuid",
                               1, v),
                     1);
    /* the two others were written once each, with their created events */
    char addr_q[192];
    snprintf(addr_q, sizeof addr_q, "/api/subscribers?email=%s", a);
    jcall(&r, "GET", addr_q, admin.access, NULL);
    expect(&r, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    const char *aid = jstr(json_array_get(json_object_get(r.json, "items"), 0), "id");
    assert_non_null(wait_ev(aid, "created", 10000));
    core_buf_free(&csv);
    resp_free(&r);
}

static void test_import_million_idempotent(void **state)
{
    (void)state;
    if (!have_infra) skip();
    const char *rows_env = ts_env("SM_TEST_IMPORT_ROWS");
    long rows = rows_env ? strtol(rows_env, NULL, 10) : 1000000;
    if (rows < 100) rows = 100;
    /* the release build for this test, when there is one (see the top of the file) */
    char release[4200];
    if (ts_env("SM_TEST_RELEASE_BIN"))
        snprintf(release, sizeof release, "%s", ts_env("SM_TEST_RELEASE_BIN"));
    else
        ts_repo_path(release, sizeof release, "build/bin/subscriber-manager");
    bool swap = access(release, X_OK) == 0 && !ts_env("SM_TEST_IMPORT_ASAN");
    if (swap) {
        assert_int_equal(stop_service(), 0);
        assert_true(start_service(release));
    }
    admin_token();
    core_buf csv = {0};
    core_buf_puts(&csv, "email,name,status,plan\n");
    long bad = 0;
    for (long i = 0; i < rows; i++) {
        if (i % 100 == 57) {
            bad++;
            switch ((i / 100) % 5) {
            case 4: /* an earlier row's address: in the same batch or thousands of rows back */
                core_buf_printf(&csv, "m%ld.%s@million.example,Again,active,x\n",
                                (i / 100) % 10 == 4 || i < 25050 ? i - 50 : i - 25050, unique);
                break;
            case 0:
                core_buf_printf(&csv, "missing-at-%ld.example.org,Bad,active,x\n", i);
                break;
            case 1:
                core_buf_printf(&csv, "m%ld.%s@million.example,Bad,unknown-status,x\n", i, unique);
                break;
            case 2:
                core_buf_printf(&csv, "m%ld.%s@million.example,too,few\n", i, unique);
                break;
            default:
                core_buf_printf(&csv, "m%ld.%s@million..example,Bad,active,x\n", i, unique);
            }
            continue;
        }
        core_buf_printf(&csv, "m%ld.%s@million.example,Member %ld,active,p%ld\n", i, unique, i,
                        i % 4);
    }
    resp r = {0};
    int64_t t0 = core_mono_ns();
    import_csv(&csv, "mode=skip", &r, 170000);
    double secs = (double)(core_mono_ns() - t0) / 1e9;
    fprintf(stderr, "import of %ld rows: %.1f s, %.0f rows/s\n", rows, secs, (double)rows / secs);
    assert_int_equal(json_integer_value(json_object_get(r.json, "rows")), rows);
    assert_int_equal(json_integer_value(json_object_get(r.json, "inserted")), rows - bad);
    assert_int_equal(json_integer_value(json_object_get(r.json, "failed")), bad);
    /* every bad row is reported by its number (1 = the first data row) with a reason */
    json_t *errors = json_object_get(r.json, "errors");
    assert_int_equal(json_array_size(errors), bad);
    size_t i;
    json_t *e;
    long prev = 0;
    json_array_foreach(errors, i, e)
    {
        long row = (long)json_integer_value(json_object_get(e, "row"));
        if ((row - 1) % 100 != 57) fail_msg("row %ld reported, it was good", row);
        if ((row - 1) / 100 % 5 == 4 && !strstr(jstr(e, "error"), "duplicate"))
            fail_msg("row %ld: %s", row, jstr(e, "error"));
        /* batches commit in any order (IMPORT_WRITERS): the list is still by row */
        if (row <= prev) fail_msg("row %ld listed after row %ld", row, prev);
        prev = row;
        assert_true(strlen(jstr(e, "error")) > 3);
    }
    /* every imported subscriber is announced exactly once (a batch's events are one bulk
     * outbox row that the relay expands), keyed by its id, the PII sealed with its key */
    PGresult *ids = sql("SELECT id::text FROM subscribers WHERE attributes->>'plan' LIKE 'p%' "
                        "ORDER BY id",
                        0, NULL);
    long nids = PQntuples(ids);
    assert_int_equal(nids, rows - bad);
    int *seen = calloc((size_t)nids, sizeof *seen);
    long announced = created_events(ids, seen, 170000);
    assert_int_equal(announced, nids);
    for (long k = 0; k < nids; k++)
        if (seen[k] != 1) fail_msg("%s announced %d times", PQgetvalue(ids, (int)k, 0), seen[k]);
    const ev *e0 = wait_ev(PQgetvalue(ids, 0, 0), "created", 1000);
    assert_string_equal(e0->key, PQgetvalue(ids, 0, 0));
    assert_string_equal(e0->status, "active");
    uint8_t dek[32];
    assert_true(subscriber_key(PQgetvalue(ids, 0, 0), dek));
    json_t *pii = open_pii(e0, dek);
    assert_non_null(pii);
    long num = -1;
    assert_int_equal(sscanf(jstr(pii, "email"), "m%ld.", &num), 1);
    char want[64];
    snprintf(want, sizeof want, "Member %ld", num);
    assert_string_equal(jstr(pii, "name"), want);
    assert_non_null(strstr(jstr(pii, "email"), "@million.example"));
    json_decref(pii);
    /* again: idempotent */
    import_csv(&csv, "mode=skip", &r, 170000);
    assert_int_equal(json_integer_value(json_object_get(r.json, "inserted")), 0);
    assert_int_equal(json_integer_value(json_object_get(r.json, "skipped")), rows - bad);
    assert_int_equal(json_integer_value(json_object_get(r.json, "failed")), bad);
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM subscribers WHERE attributes->>'plan' LIKE 'p%%'");
    assert_int_equal(sql_count(q, 0, NULL), rows - bad);
    /* and the re-run announced nothing new */
    ts_run_for(&loop, 3000);
    memset(seen, 0, (size_t)nids * sizeof *seen);
    assert_int_equal(created_events(ids, seen, 1000), nids);
    for (long k = 0; k < nids; k++)
        if (seen[k] != 1) fail_msg("%s announced %d times", PQgetvalue(ids, (int)k, 0), seen[k]);
    free(seen);
    PQclear(ids);
    /* bad requests change nothing */
    long long before = sql_count("SELECT count(*) FROM imports", 0, NULL);
    const char *nohdr = "name,status\nx,active\n";
    call(&r, "POST", "/api/subscribers/import", admin.access, nohdr, strlen(nohdr), "text/csv",
         NULL);
    expect_problem(&r, 400);
    call(&r, "POST", "/api/subscribers/import?mode=merge", admin.access, csv.data, 100, "text/csv",
         NULL);
    expect_problem(&r, 400);
    assert_int_equal(sql_count("SELECT count(*) FROM imports", 0, NULL), before);
    core_buf_free(&csv);
    resp_free(&r);
    if (swap) {
        assert_int_equal(stop_service(), 0);
        assert_true(start_service(svc_bin));
    }
}

/* ---------------------------------------------------------------- tests: throttling */

static void test_failed_logins_slow_down_account(void **state)
{
    (void)state;
    if (!have_infra) skip();
    tokens t;
    char email[160];
    make_user(&t, "viewer", email, sizeof email);
    for (int i = 0; i < 3; i++)
        assert_int_equal(login(NULL, email, "not-the-password"), 401);
    assert_int_equal(login(NULL, email, "not-the-password"), 401); /* 4th: locks 2 s */
    /* now even the right password waits */
    json_t *b = json_pack("{s:s,s:s}", "email", email, "password", "pass-viewer-123");
    char *s = json_dumps(b, JSON_COMPACT);
    resp r = {0};
    jcall(&r, "POST", "/api/auth/login", NULL, s);
    expect_problem(&r, 429);
    assert_true(strtol(r.retry_after, NULL, 10) >= 1);
    /* other accounts from the same address are not locked */
    assert_int_equal(login(NULL, admin_email, admin_pw), 200);
    ts_run_for(&loop, 2100);
    jcall(&r, "POST", "/api/auth/login", NULL, s);
    expect(&r, 200);
    free(s);
    json_decref(b);
    resp_free(&r);
}

/* Last: it locks this client address out. */
static void test_failed_logins_slow_down_address(void **state)
{
    (void)state;
    if (!have_infra) skip();
    int limited = 0;
    for (int i = 0; i < 40 && !limited; i++) {
        char email[128];
        snprintf(email, sizeof email, "guess%d@sm-test.example", i);
        long st = login(NULL, email, "guess-password");
        if (st == 429)
            limited = i;
        else
            assert_int_equal(st, 401);
    }
    /* LOGIN_ADDR_FREE_FAILURES=25 counts every failure from this address, earlier tests' too */
    assert_true(limited >= 1 && limited <= 25);
    assert_int_equal(login(NULL, admin_email, admin_pw), 429);
}

/* A malformed or missing key stops the service at once: exit 78, one line naming the variable,
 * never the value. */
static void test_bad_keys_are_config_errors(void **state)
{
    (void)state;
    if (!have_infra) skip();
    struct {
        const char *set;
        const char *name;
    } cases[] = {
        {"SUBSCRIBER_DATA_KEY=c2VjcmV0LXZhbHVl", "SUBSCRIBER_DATA_KEY"},
        {"AUTH_SIGNING_KEY=", "AUTH_SIGNING_KEY"},
        {"TOKEN_SIGNING_KEY=not base64 at all!", "TOKEN_SIGNING_KEY"},
        {"SUBSCRIBER_INDEX_KEY=", "SUBSCRIBER_INDEX_KEY"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *extra[] = {cases[i].set, "HTTP_PORT=0", NULL};
        /* the group's environment first, then the bad value (later entries win) */
        const char *all[48];
        size_t n = 0;
        for (size_t k = 0; k < nenv; k++)
            all[n++] = env[k];
        for (size_t k = 0; extra[k]; k++)
            all[n++] = extra[k];
        all[n] = NULL;
        ts_child c;
        assert_true(ts_spawn(&c, svc_bin, NULL, all));
        int st = ts_wait_or_kill(&c, 30000);
        char err[4096] = "";
        ts_drain_fd(c.err_fd, err, sizeof err);
        ts_close_pipes(&c);
        assert_int_equal(st, 78);
        if (!strstr(err, cases[i].name))
            fail_msg("stderr does not name %s: %s", cases[i].name, err);
        assert_null(strstr(err, "c2VjcmV0LXZhbHVl"));
        assert_null(strstr(err, "not base64 at all"));
    }
}

/* Really last: SIGTERM drains and exits 0, and the sanitizer build's log has no report. */
static void test_drain_and_clean_exit(void **state)
{
    (void)state;
    if (!have_infra) skip();
    assert_int_equal(stop_service(), 0);
    assert_false(file_has(log_path, "ERROR: AddressSanitizer"));
    assert_false(file_has(log_path, "ERROR: LeakSanitizer"));
    assert_false(file_has(log_path, "runtime error:"));
    assert_true(file_has(log_path, "\"drained\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bootstrap_login_me),
        cmocka_unit_test(test_refresh_rotation_and_logout),
        cmocka_unit_test(test_roles_and_bad_tokens),
        cmocka_unit_test(test_subscriber_crud_and_bad_input),
        cmocka_unit_test(test_double_opt_in_unsubscribe_erase),
        cmocka_unit_test(test_public_rate_limit),
        cmocka_unit_test(test_no_plaintext_at_rest),
        cmocka_unit_test(test_segments_match_brute_force),
        cmocka_unit_test(test_import_race_rewrites_batch),
        cmocka_unit_test(test_import_million_idempotent),
        cmocka_unit_test(test_failed_logins_slow_down_account),
        cmocka_unit_test(test_failed_logins_slow_down_address),
        cmocka_unit_test(test_bad_keys_are_config_errors),
        cmocka_unit_test(test_drain_and_clean_exit),
    };
    return cmocka_run_group_tests_name("subscriber-manager service", tests, group_setup,
                                       group_teardown);
}
