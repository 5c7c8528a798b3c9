/*
 * Shared by the httpc tests (each test_*.c is its own program, so everything here is static
 * inline): starts fixture_server.py, captures responses, asks the server how often it was hit.
 */
#ifndef HTTPC_FIXTURE_H
#define HTTPC_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core.h"
#include "httpc.h"
#include "test_support.h"

/* ---------------------------------------------------------------- the server process */

typedef struct fx_server {
    pid_t pid;
    int stdin_fd; /* closing it makes the server exit */
    int port;
} fx_server;

static inline bool fx_try(char *out, size_t size, const char *dir)
{
    int n = snprintf(out, size, "%s/fixture_server.py", dir);
    return n > 0 && (size_t)n < size && access(out, R_OK) == 0;
}

/* $HTTPC_FIXTURE_SERVER, next to this file as compiled, or libs/httpc/tests above the binary. */
static inline bool fx_find_script(char *out, size_t size)
{
    const char *env = getenv("HTTPC_FIXTURE_SERVER");
    if (env && access(env, R_OK) == 0) {
        snprintf(out, size, "%s", env);
        return true;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    if (slash && fx_try(out, size, dir)) return true;
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) return false;
    dir[n] = '\0';
    while ((slash = strrchr(dir, '/')) != NULL) {
        *slash = '\0';
        char cand[PATH_MAX + 32];
        int k = snprintf(cand, sizeof cand, "%s/libs/httpc/tests", dir);
        if (k > 0 && (size_t)k < sizeof cand && fx_try(out, size, cand)) return true;
    }
    return false;
}

static inline void fx_start(fx_server *s)
{
    char script[PATH_MAX];
    assert_true(fx_find_script(script, sizeof script));
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execlp("python3", "python3", "-u", script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    char line[32] = {0};
    size_t got = 0;
    while (got < sizeof line - 1 && !memchr(line, '\n', got)) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 15000) <= 0) break;
        ssize_t n = read(out[0], line + got, sizeof line - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(out[0]);
    char *end = NULL;
    long port = strtol(line, &end, 10);
    if (port <= 0 || port > 65535 || end == line) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("fixture server did not start (%s)", script);
    }
    s->pid = pid;
    s->stdin_fd = in[1];
    s->port = (int)port;
    curl_global_init(CURL_GLOBAL_DEFAULT); /* for fx_stats' blocking easy handle */
}

static inline void fx_stop(fx_server *s)
{
    if (s->pid <= 0) return;
    close(s->stdin_fd);
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    curl_global_cleanup();
}

static inline void fx_url(char *out, size_t size, const fx_server *s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void fx_url(char *out, size_t size, const fx_server *s, const char *fmt, ...)
{
    int n = snprintf(out, size, "http://127.0.0.1:%d", s->port);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, size - (size_t)n, fmt, ap);
    va_end(ap);
}

static inline void fx_origin(char *out, size_t size, const fx_server *s)
{
    snprintf(out, size, "http://127.0.0.1:%d", s->port);
}

static inline void fx_host(char *out, size_t size, const fx_server *s)
{
    snprintf(out, size, "127.0.0.1:%d", s->port);
}

static inline void fx_key(char *out, size_t size)
{
    ts_unique_name(out, size, "k");
}

/* A port nobody listens on (bound, then released). */
static inline int fx_unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* What the server saw, fetched with a plain blocking easy handle (test code only). */
static inline json_t *fx_stats(const fx_server *s, const char *param, const char *value)
{
    char url[512];
    fx_url(url, sizeof url, s, "/stats?%s=%s", param, value);
    CURL *e = curl_easy_init();
    assert_non_null(e);
    core_buf b = {0};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ts_curl_collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    curl_easy_cleanup(e);
    json_t *doc = json_loadb(b.data, b.len, 0, NULL);
    core_buf_free(&b);
    assert_non_null(doc);
    return doc;
}

static inline int fx_hits(const fx_server *s, const char *key)
{
    json_t *doc = fx_stats(s, "key", key);
    int n = (int)json_integer_value(json_object_get(doc, "count"));
    json_decref(doc);
    return n;
}

/* Milliseconds between the server's first and second hit for key. */
static inline double fx_gap_ms(const fx_server *s, const char *key)
{
    json_t *doc = fx_stats(s, "key", key);
    json_t *t = json_object_get(doc, "times_ms");
    assert_true(json_array_size(t) >= 2);
    double gap = json_real_value(json_array_get(t, 1)) - json_real_value(json_array_get(t, 0));
    json_decref(doc);
    return gap;
}

/* ---------------------------------------------------------------- capturing a response */

#define FX_LOOKUPS 4

typedef struct fx_result {
    const char *lookup[FX_LOOKUPS]; /* header names to look up inside the callback */
    bool found[FX_LOOKUPS];
    char looked[FX_LOOKUPS][256];
    int calls;
    long status;
    httpc_error error;
    int curl_code;
    char message[256];
    core_buf body;
    unsigned attempts;
    int64_t elapsed_ms;
    int64_t retry_after_ms;
    char effective_url[512];
    core_buf headers; /* "name: value\n" for each, in order */
    size_t nheaders;
    httpc_req *req;            /* set by the test, for cancel-from-callback checks */
    httpc_client *close_on_cb; /* httpc_close from inside the callback */
    int64_t done_ns;
    size_t active_seen; /* httpc_active when the callback ran */
    httpc_client *client;
    char trace[CORE_TRACE_ID_LEN + 1]; /* core_log_trace() inside the callback */
} fx_result;

static inline void fx_done(httpc_response *resp, void *data)
{
    fx_result *r = data;
    r->calls++;
    r->done_ns = core_mono_ns();
    snprintf(r->trace, sizeof r->trace, "%s", core_log_trace());
    r->status = resp->status;
    r->error = resp->error;
    r->curl_code = resp->curl_code;
    snprintf(r->message, sizeof r->message, "%s", resp->message);
    core_buf_free(&r->body);
    r->body.data = core_buf_steal(&resp->body, &r->body.len);
    r->body.cap = r->body.len + 1;
    r->attempts = resp->attempts;
    r->elapsed_ms = resp->elapsed_ms;
    r->retry_after_ms = resp->retry_after_ms;
    snprintf(r->effective_url, sizeof r->effective_url, "%s", resp->effective_url);
    core_buf_reset(&r->headers);
    for (size_t i = 0; i < resp->nheaders; i++)
        core_buf_printf(&r->headers, "%s: %s\n", resp->headers[i].name, resp->headers[i].value);
    r->nheaders = resp->nheaders;
    for (int i = 0; i < FX_LOOKUPS; i++) {
        const char *v = r->lookup[i] ? httpc_response_header(resp, r->lookup[i]) : NULL;
        r->found[i] = v != NULL;
        snprintf(r->looked[i], sizeof r->looked[i], "%s", v ? v : "");
    }
    if (r->client) r->active_seen = httpc_active(r->client);
    if (r->req) httpc_cancel(r->req); /* must be a no-op from inside the callback */
    if (r->close_on_cb) httpc_close(r->close_on_cb, NULL, NULL);
}

static inline bool fx_is_done(void *data)
{
    return ((fx_result *)data)->calls > 0;
}

static inline void fx_result_free(fx_result *r)
{
    core_buf_free(&r->body);
    core_buf_free(&r->headers);
}

static inline const char *fx_body(const fx_result *r)
{
    return r->body.data ? r->body.data : "";
}

static inline void fx_fetch(uv_loop_t *loop, httpc_client *c, const httpc_request_opts *o,
                            fx_result *res)
{
    httpc_req *req = httpc_request(c, o, fx_done, res);
    assert_non_null(req);
    assert_int_equal(res->calls, 0); /* never called from inside httpc_request */
    assert_true(ts_run_until(loop, fx_is_done, res, 20000));
}

/* ---------------------------------------------------------------- client and loop */

static inline void fx_set_flag(void *data)
{
    (*(int *)data)++;
}

static inline bool fx_flag(void *data)
{
    return *(int *)data > 0;
}

static inline void fx_close_client(uv_loop_t *loop, httpc_client *c)
{
    int closed = 0;
    httpc_close(c, fx_set_flag, &closed);
    assert_true(ts_run_until(loop, fx_flag, &closed, 10000));
    assert_int_equal(closed, 1);
}

/* Every handle must be gone: a leaked uv handle fails the test (and is then closed for ASan). */
static inline void fx_loop_done(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(loop);
    if (rc != 0) {
        ts_loop_close_all(loop);
        uv_loop_close(loop);
    }
    assert_int_equal(rc, 0);
}

static inline void fx_log_init(void)
{
    core_log_level lvl = CORE_LOG_ERROR;
    const char *env = getenv("LOG_LEVEL");
    if (env) core_log_parse_level(env, &lvl);
    core_log_init("httpc-test", lvl);
}

/* A metric series' value, 0 when the series does not exist yet. */
static inline double fx_nz(double v)
{
    return isnan(v) ? 0.0 : v;
}

/* ---------------------------------------------------------------- per-program setup */

/* The server every test of the program talks to: one per program (started by the group setup),
 * so Python's start-up is paid once and the tests tell their requests apart by key. */
static fx_server fx_srv;

static inline int fx_group_setup(void **state)
{
    (void)state;
    fx_log_init();
    fx_start(&fx_srv);
    return 0;
}

static inline int fx_group_teardown(void **state)
{
    (void)state;
    fx_stop(&fx_srv);
    return 0;
}

/* A loop with one client on it, for tests that need nothing more. */
typedef struct fx_env {
    uv_loop_t loop;
    httpc_client *c;
} fx_env;

static inline void fx_env_open(fx_env *e, const httpc_config *cfg)
{
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->c = httpc_new(&e->loop, cfg);
    assert_non_null(e->c);
}

/* Closes the client and fails the test if it or any other handle is left on the loop. */
static inline void fx_env_close(fx_env *e)
{
    fx_close_client(&e->loop, e->c);
    fx_loop_done(&e->loop);
}

#endif
