/*
 * The platform wired as a service, seen from outside: tests/programs/platform_probe is started
 * as a real process against the real Kafka and PostgreSQL, and probed over HTTP and signals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "test_support.h"

static char probe_path[4096];

/* GET http://127.0.0.1:port/path; returns the status (0 when nothing answered). */
static long http_get(int port, const char *path, core_buf *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ts_curl_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    long status = 0;
    core_buf_reset(body);
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

/* Runs the probe with a bad environment and checks the exit status and the single line. */
static void expect_config_error(const char *const *env, const char *needle)
{
    ts_child c;
    assert_true(ts_spawn(&c, probe_path, NULL, env));
    int status = ts_wait_or_kill(&c, 10000);
    char err[4096] = "";
    ts_drain_fd(c.err_fd, err, sizeof err);
    ts_close_pipes(&c);
    assert_int_equal(status, CORE_CONFIG_EXIT_CODE);
    assert_non_null(strstr(err, needle));
    assert_non_null(strstr(err, "configuration error"));
    char *nl = strchr(err, '\n');
    assert_non_null(nl);
    assert_true(nl[1] == '\0'); /* exactly one line */
}

static void test_bad_config_exits_with_one_clear_line(void **state)
{
    (void)state;
    const char *db = ts_env("PLATFORM_TEST_DATABASE_URL");
    char dbenv[1024];
    snprintf(dbenv, sizeof dbenv, "DATABASE_URL=%s", db ? db : "postgresql://x@127.0.0.1:1/x");
    expect_config_error(
        (const char *const[]){"HTTP_PORT=80a", "KAFKA_BROKERS=127.0.0.1:9092", dbenv, NULL},
        "HTTP_PORT=\"80a\" is not an integer");
    expect_config_error(
        (const char *const[]){"HTTP_PORT=70000", "KAFKA_BROKERS=127.0.0.1:9092", dbenv, NULL},
        "HTTP_PORT=70000 is out of range");
    expect_config_error((const char *const[]){"KAFKA_BROKERS=", dbenv, NULL},
                        "KAFKA_BROKERS is required");
    expect_config_error(
        (const char *const[]){"LOG_LEVEL=loud", "KAFKA_BROKERS=127.0.0.1:9092", dbenv, NULL},
        "LOG_LEVEL=\"loud\" is not one of debug|info|warn|error");
    expect_config_error(
        (const char *const[]){"KAFKA_BROKERS=127.0.0.1:9092", "DATABASE_URL=", NULL},
        "DATABASE_URL");
}

static bool wait_status(int port, const char *path, long want, core_buf *body, int64_t ms)
{
    int64_t deadline = core_mono_ns() + ms * 1000000;
    while (core_mono_ns() < deadline) {
        if (http_get(port, path, body) == want) return true;
        usleep(200000);
    }
    return false;
}

static void test_ready_metrics_and_sigterm_drain(void **state)
{
    (void)state;
    const char *brokers = ts_env("KAFKA_BROKERS");
    const char *db = ts_env("PLATFORM_TEST_DATABASE_URL");
    if (!brokers || !db) skip();
    int port = ts_free_port();
    char portenv[64], kenv[256], dbenv[1024];
    snprintf(portenv, sizeof portenv, "HTTP_PORT=%d", port);
    snprintf(kenv, sizeof kenv, "KAFKA_BROKERS=%s", brokers);
    snprintf(dbenv, sizeof dbenv, "DATABASE_URL=%s", db);
    ts_child c;
    assert_true(ts_spawn(&c, probe_path, NULL, (const char *const[]){portenv, kenv, dbenv, NULL}));

    core_buf body = {0};
    assert_true(wait_status(port, "/readyz", 200, &body, 30000));
    assert_non_null(strstr(body.data, "\"kafka\""));
    assert_non_null(strstr(body.data, "\"database\""));
    assert_int_equal(http_get(port, "/healthz", &body), 200);
    assert_int_equal(http_get(port, "/no/such/route", &body), 404);
    assert_non_null(strstr(body.data, "\"status\":404"));
    assert_int_equal(http_get(port, "/metrics", &body), 200);
    assert_non_null(strstr(body.data, "# TYPE http_requests_total counter"));
    assert_non_null(strstr(body.data, "route=\"/healthz\""));

    assert_int_equal(kill(c.pid, SIGTERM), 0);
    int status = ts_wait_or_kill(&c, 30000);
    char out[65536] = "";
    ts_drain_fd(c.out_fd, out, sizeof out);
    ts_close_pipes(&c);
    assert_int_equal(status, 0);
    /* every line on stdout is one JSON object; the drain is logged */
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_true(line[0] == '{' && nl[-1] == '}');
        line = nl + 1;
    }
    assert_non_null(strstr(out, "\"msg\":\"drained\""));
    assert_non_null(strstr(out, "\"msg\":\"access\""));
    core_buf_free(&body);
}

static void test_readyz_names_the_unreachable_dependency(void **state)
{
    (void)state;
    const char *db = ts_env("PLATFORM_TEST_DATABASE_URL");
    if (!db) skip();
    int port = ts_free_port();
    char portenv[64], dbenv[1024];
    snprintf(portenv, sizeof portenv, "HTTP_PORT=%d", port);
    snprintf(dbenv, sizeof dbenv, "DATABASE_URL=%s", db);
    ts_child c;
    /* nothing listens on port 1: Kafka is unreachable, the database is fine */
    assert_true(ts_spawn(&c, probe_path, NULL,
                         (const char *const[]){portenv, "KAFKA_BROKERS=127.0.0.1:1", dbenv, NULL}));
    core_buf body = {0};
    assert_true(wait_status(port, "/readyz", 503, &body, 20000));
    assert_non_null(strstr(body.data, "kafka"));
    assert_int_equal(http_get(port, "/healthz", &body), 200); /* alive, just not ready */
    kill(c.pid, SIGTERM);
    int status = ts_wait_or_kill(&c, 30000);
    ts_close_pipes(&c);
    assert_int_equal(status, 0);
    core_buf_free(&body);
}

int main(void)
{
    ts_program_path(probe_path, sizeof probe_path, "platform_probe");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config_exits_with_one_clear_line),
        cmocka_unit_test(test_ready_metrics_and_sigterm_drain),
        cmocka_unit_test(test_readyz_names_the_unreachable_dependency),
    };
    int rc = cmocka_run_group_tests_name("platform_service", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
