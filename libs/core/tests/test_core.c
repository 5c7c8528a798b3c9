/* Unit tests for libs/core: buffer, config, logging, metrics, ids, clocks, backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"

/* ------------------------------------------------------------ buffer */

static void test_buf_append_printf_escape(void **state)
{
    (void)state;
    core_buf b = {0};
    core_buf_puts(&b, "a");
    core_buf_printf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.data, "a42-x");
    core_buf_reset(&b);
    const char raw[] = "q\"b\\n\n\x01\x7f";
    core_buf_json_escape(&b, raw, sizeof raw - 1);
    assert_string_equal(b.data, "q\\\"b\\\\n\\n\\u0001\\u007f");
    size_t len = 0;
    char *p = core_buf_steal(&b, &len);
    assert_int_equal(len, strlen(p));
    assert_null(b.data);
    free(p);
    /* growth across many appends keeps content intact */
    for (int i = 0; i < 1000; i++)
        core_buf_printf(&b, "%04d", i);
    assert_int_equal(b.len, 4000);
    assert_memory_equal(b.data + 3996, "0999", 4);
    core_buf_free(&b);
}

static void test_allocations(void **state)
{
    (void)state;
    char *a = core_xstrndup("hello world", 5);
    assert_string_equal(a, "hello");
    char *b = core_xstrdup(NULL);
    assert_string_equal(b, "");
    char *c = core_xstrndup(NULL, 0);
    assert_string_equal(c, "");
    int *z = core_xcalloc(0, sizeof(int)); /* still a pointer that can be freed */
    assert_non_null(z);
    int *n = core_xcalloc(4, sizeof(int));
    assert_int_equal(n[0] | n[1] | n[2] | n[3], 0);
    n = core_xrealloc(n, 8 * sizeof(int));
    assert_int_equal(n[3], 0);
    free(a);
    free(b);
    free(c);
    free(z);
    free(n);
}

/* ------------------------------------------------------------ config */

static void test_config_values(void **state)
{
    (void)state;
    core_config cfg;
    core_config_init(&cfg, "svc");
    setenv("T_STR", "hello", 1);
    setenv("T_INT", "42", 1);
    setenv("T_BOOL", "off", 1);
    setenv("T_DUR", "1.5s", 1);
    setenv("T_ENUM", "warn", 1);
    unsetenv("T_MISSING");
    static const char *const levels[] = {"debug", "info", "warn", NULL};
    assert_string_equal(core_config_string(&cfg, "T_STR", NULL), "hello");
    assert_string_equal(core_config_string(&cfg, "T_MISSING", "dflt"), "dflt");
    assert_int_equal(core_config_int(&cfg, "T_INT", 0, 1, 100), 42);
    assert_false(core_config_bool(&cfg, "T_BOOL", true));
    assert_int_equal(core_config_duration_ms(&cfg, "T_DUR", "1s"), 1500);
    assert_int_equal(core_config_duration_ms(&cfg, "T_MISSING", "5m"), 300000);
    assert_string_equal(core_config_enum(&cfg, "T_ENUM", "info", levels), "warn");
    assert_int_equal(cfg.errors, 0);
}

static void test_config_errors_name_the_variable(void **state)
{
    (void)state;
    core_config cfg;
    core_config_init(&cfg, "svc");
    setenv("T_PORT", "80x", 1);
    assert_int_equal(core_config_int(&cfg, "T_PORT", 8080, 1, 65535), 8080);
    assert_int_equal(cfg.errors, 1);
    assert_non_null(strstr(cfg.first_error, "T_PORT"));
    assert_non_null(strstr(cfg.first_error, "not an integer"));

    core_config_init(&cfg, "svc");
    setenv("T_PORT", "70000", 1);
    core_config_int(&cfg, "T_PORT", 8080, 1, 65535);
    assert_non_null(strstr(cfg.first_error, "out of range"));

    core_config_init(&cfg, "svc");
    unsetenv("T_REQ");
    assert_null(core_config_string(&cfg, "T_REQ", NULL));
    assert_non_null(strstr(cfg.first_error, "T_REQ is required"));

    core_config_init(&cfg, "svc");
    setenv("T_DUR", "soon", 1);
    setenv("T_BOOL", "maybe", 1);
    core_config_duration_ms(&cfg, "T_DUR", "1s");
    core_config_bool(&cfg, "T_BOOL", false);
    assert_int_equal(cfg.errors, 2);
    assert_non_null(strstr(cfg.first_error, "T_DUR")); /* the first problem is reported */

    core_config_init(&cfg, "svc");
    static const char *const modes[] = {"a", "b", NULL};
    setenv("T_ENUM", "c", 1);
    core_config_enum(&cfg, "T_ENUM", "a", modes);
    assert_non_null(strstr(cfg.first_error, "a|b"));

    /* a service's own check counts like the getters': the first one is the one reported */
    core_config_init(&cfg, "svc");
    core_config_fail(&cfg, "T_LIST: entry %d is not an address", 3);
    setenv("T_PORT", "80x", 1);
    core_config_int(&cfg, "T_PORT", 8080, 1, 65535);
    assert_int_equal(cfg.errors, 2);
    assert_string_equal(cfg.first_error, "T_LIST: entry 3 is not an address");

    int64_t ms;
    assert_true(core_parse_duration_ms("250ms", &ms) && ms == 250);
    assert_true(core_parse_duration_ms("2h", &ms) && ms == 7200000);
    assert_false(core_parse_duration_ms("-1s", &ms));
    assert_false(core_parse_duration_ms("", &ms));
    assert_false(core_parse_duration_ms("5 parsecs", &ms));
}

static void test_config_finish_exits_78_with_one_line(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        core_config cfg;
        core_config_init(&cfg, "probe");
        setenv("T_BAD", "nope", 1);
        core_config_int(&cfg, "T_BAD", 1, 0, 10);
        core_config_finish(&cfg);
        _exit(0); /* not reached when the config is bad */
    }
    close(fds[1]);
    char out[1024] = {0};
    ssize_t n = read(fds[0], out, sizeof out - 1);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), CORE_CONFIG_EXIT_CODE);
    assert_true(n > 0);
    assert_string_equal(out, "probe: configuration error: T_BAD=\"nope\" is not an integer "
                             "(expected 0..10)\n");
}

/* ------------------------------------------------------------ logging */

static char *capture_log(void (*emit)(void))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    core_log_set_fd(fds[1]);
    emit();
    core_log_set_fd(1);
    close(fds[1]);
    core_buf b = {0};
    char chunk[512];
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
        core_buf_append(&b, chunk, (size_t)n);
    close(fds[0]);
    return core_buf_steal(&b, NULL);
}

static void emit_sample(void)
{
    core_log_set_trace("4bf92f3577b34da6a3ce929d0e0e4736");
    core_log_info("hello \"world\"", CORE_F_STR("path", "/a\nb"), CORE_F_INT("n", -7),
                  CORE_F_BOOL("ok", true), CORE_F_STR("password", "hunter2"),
                  CORE_F_STR("Authorization", "Bearer x"), CORE_F_DBL("ratio", 0.5),
                  CORE_F_JSON("obj", "{\"k\":1}"));
    core_log_set_trace(NULL);
    core_log_debug("filtered out");
    core_log_warn("second");
}

/* Batching: info lines wait for core_log_flush; a warning flushes them first, in order; a
 * batch larger than PIPE_BUF reaches a pipe in whole lines. */
static void test_log_batch(void **state)
{
    (void)state;
    core_log_init("unit", CORE_LOG_INFO);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    core_log_set_fd(fds[1]);
    core_log_batch(true);
    core_log_info("one", CORE_F_STR("secret_token", "x"), CORE_F_INT("n", 1234567890123LL));
    core_log_info("two");
    char buf[65536];
    assert_int_equal(read(fds[0], buf, sizeof buf), -1); /* nothing yet */
    core_log_warn("three");
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    char *one = strstr(buf, "\"msg\":\"one\""), *two = strstr(buf, "\"msg\":\"two\""),
         *three = strstr(buf, "\"msg\":\"three\"");
    assert_true(one && two && three && one < two && two < three);
    assert_non_null(strstr(buf, "\"secret_token\":\"[redacted]\",\"n\":1234567890123}"));
    /* 100 lines of ~150 bytes: more than PIPE_BUF, read back as whole lines */
    for (int i = 0; i < 100; i++)
        core_log_info("line", CORE_F_INT("i", i),
                      CORE_F_STR("pad", "................................"));
    core_log_flush();
    core_buf all = {0};
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
        core_buf_append(&all, buf, (size_t)n);
    int lines = 0;
    for (const char *p = all.data; p && *p; lines++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_true(p[0] == '{' && nl[-1] == '}');
        p = nl + 1;
    }
    assert_int_equal(lines, 100);
    core_buf_free(&all);
    core_log_batch(false);
    core_log_info("unbatched");
    n = read(fds[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    core_log_set_fd(1);
    close(fds[0]);
    close(fds[1]);
}

static void test_log_json_lines(void **state)
{
    (void)state;
    core_log_init("unit", CORE_LOG_INFO);
    char *out = capture_log(emit_sample);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    *nl = '\0';
    const char *line1 = out, *line2 = nl + 1;
    assert_non_null(strstr(line1, "\"level\":\"info\",\"service\":\"unit\""));
    assert_non_null(strstr(line1, "\"msg\":\"hello \\\"world\\\"\""));
    assert_non_null(strstr(line1, "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""));
    assert_non_null(strstr(line1, "\"path\":\"/a\\nb\""));
    assert_non_null(strstr(line1, "\"n\":-7,\"ok\":true"));
    assert_non_null(strstr(line1, "\"password\":\"[redacted]\""));
    assert_non_null(strstr(line1, "\"Authorization\":\"[redacted]\""));
    assert_null(strstr(line1, "hunter2"));
    assert_non_null(strstr(line1, "\"ratio\":0.5,\"obj\":{\"k\":1}}"));
    assert_true(line1[0] == '{');
    assert_non_null(strstr(line2, "\"msg\":\"second\""));
    assert_null(strstr(line2, "trace_id"));
    assert_null(strstr(out, "filtered out"));
    assert_null(strstr(line2, "filtered"));
    free(out);
    core_log_level lvl;
    assert_true(core_log_parse_level("WARN", &lvl) && lvl == CORE_LOG_WARN);
    assert_false(core_log_parse_level("loud", &lvl));
}

/* ------------------------------------------------------------ metrics */

static void test_metrics_render(void **state)
{
    (void)state;
    core_metrics *reg = core_metrics_new();
    core_metric *c = core_metric_counter(reg, "http_requests_total", "Requests.", "method,status");
    assert_ptr_equal(core_metric_counter(reg, "http_requests_total", "again", "method,status"), c);
    assert_null(core_metric_gauge(reg, "http_requests_total", "kind clash", NULL));
    core_counter_add(c, 1, "GET", "200");
    core_counter_add(c, 2, "GET", "200");
    core_counter_add(c, 1, "POST", "5\"00\n");
    core_counter_add(c, -5, "GET", "200"); /* ignored: counters only go up */
    core_metric *g = core_metric_gauge(reg, "queue_depth", "Depth.", NULL);
    core_gauge_set(g, 7);
    core_gauge_add(g, -2.5);
    const double buckets[] = {0.1, 1};
    core_metric *h = core_metric_histogram(reg, "latency_seconds", "Latency.", "route", buckets, 2);
    core_histogram_observe(h, 0.05, "/a");
    core_histogram_observe(h, 0.5, "/a");
    core_histogram_observe(h, 3, "/a");
    assert_true(core_metric_value(c, "GET", "200") == 3);
    assert_true(isnan(core_metric_value(c, "PUT", "200")));
    assert_true(core_metric_value(h, "/a") == 3);

    core_buf out = {0};
    core_metrics_render(reg, &out);
    const char *expect = "# HELP http_requests_total Requests.\n"
                         "# TYPE http_requests_total counter\n"
                         "http_requests_total{method=\"GET\",status=\"200\"} 3\n"
                         "http_requests_total{method=\"POST\",status=\"5\\\"00\\n\"} 1\n"
                         "# HELP queue_depth Depth.\n"
                         "# TYPE queue_depth gauge\n"
                         "queue_depth 4.5\n"
                         "# HELP latency_seconds Latency.\n"
                         "# TYPE latency_seconds histogram\n"
                         "latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"
                         "latency_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"
                         "latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"
                         "latency_seconds_sum{route=\"/a\"} 3.55\n"
                         "latency_seconds_count{route=\"/a\"} 3\n";
    assert_string_equal(out.data, expect);
    core_buf_free(&out);
    core_metrics_free(reg);

    /* observe_n: the same as n single observations. */
    reg = core_metrics_new();
    h = core_metric_histogram(reg, "latency_seconds", "Latency.", "route", buckets, 2);
    core_histogram_observe_n(h, 0.5, 3, "/a");
    core_histogram_observe_n(h, 0.05, 0, "/a"); /* nothing */
    core_histogram_observe(h, 0.05, "/a");
    assert_true(core_metric_value(h, "/a") == 4);
    out = (core_buf){0};
    core_metrics_render(reg, &out);
    assert_non_null(strstr(out.data, "latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"
                                     "latency_seconds_bucket{route=\"/a\",le=\"1\"} 4\n"
                                     "latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
                                     "latency_seconds_sum{route=\"/a\"} 1.55\n"));
    core_buf_free(&out);
    core_metrics_free(reg);
}

/* ------------------------------------------------------------ ids */

static void test_uuid_v7(void **state)
{
    (void)state;
    int64_t before = core_now_unix_ms();
    char prev[CORE_UUID_STRLEN + 1] = "";
    for (int i = 0; i < 20000; i++) {
        char s[CORE_UUID_STRLEN + 1];
        core_uuid_v7_string(s);
        assert_int_equal(strlen(s), 36);
        assert_true(s[14] == '7');                                                 /* version */
        assert_true(s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b'); /* variant */
        assert_true(strcmp(prev, s) < 0); /* strictly increasing, even within a millisecond */
        memcpy(prev, s, sizeof s);
    }
    core_uuid u;
    assert_true(core_uuid_parse(prev, &u));
    int64_t ms = core_uuid_v7_unix_ms(&u);
    assert_true(ms >= before && ms <= core_now_unix_ms() + 1000);
    char back[CORE_UUID_STRLEN + 1];
    core_uuid_format(&u, back);
    assert_string_equal(back, prev);
    assert_false(core_uuid_parse("not-a-uuid", &u));
    assert_false(core_uuid_parse("0189e8a0-7b1c-7xyz-8000-000000000000", &u));
}

/* core_random_bytes hands out a buffered block: no byte twice, large requests too, and a forked
 * child must not replay the parent's buffered bytes. */
static void test_random_bytes_unique_and_fork_safe(void **state)
{
    (void)state;
    uint8_t a[16], b[16], big[5000];
    core_random_bytes(a, sizeof a); /* the block is now buffered in this thread */
    core_random_bytes(b, sizeof b);
    assert_memory_not_equal(a, b, sizeof a);
    core_random_bytes(big, sizeof big);
    assert_memory_not_equal(big, big + 16, 16);
    for (int i = 0; i < 1000; i++) { /* across refills */
        core_random_bytes(a, sizeof a);
        assert_memory_not_equal(a, b, sizeof a);
        memcpy(b, a, sizeof a);
    }

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    core_random_bytes(a, 1); /* leave a partly used block behind */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t c[32];
        core_random_bytes(c, sizeof c);
        _exit(write(fds[1], c, sizeof c) == (ssize_t)sizeof c ? 0 : 1);
    }
    close(fds[1]);
    uint8_t child[32], parent[32];
    assert_int_equal(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    core_random_bytes(parent, sizeof parent);
    assert_memory_not_equal(child, parent, sizeof parent);

    /* Ids made on both sides of a fork differ too. */
    char id_parent[CORE_UUID_STRLEN + 1], id_child[CORE_UUID_STRLEN + 1] = {0};
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[CORE_UUID_STRLEN + 1];
        core_span_id_new(id); /* same shape of draws as the parent's below */
        core_uuid_v7_string(id);
        _exit(write(fds[1], id, sizeof id) == (ssize_t)sizeof id ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], id_child, sizeof id_child), (ssize_t)sizeof id_child);
    close(fds[0]);
    waitpid(pid, &status, 0);
    core_span_id_new(id_parent);
    core_uuid_v7_string(id_parent);
    assert_string_not_equal(id_parent + 19, id_child + 19); /* the random tail */
}

static void test_traceparent(void **state)
{
    (void)state;
    char t[CORE_TRACE_ID_LEN + 1], s[CORE_SPAN_ID_LEN + 1];
    uint8_t flags = 0;
    assert_true(core_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t,
                                       s, &flags));
    assert_string_equal(t, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(s, "00f067aa0ba902b7");
    assert_int_equal(flags, 1);
    /* all-zero ids, upper case, version ff, wrong length, trailing data on version 00 */
    assert_false(core_traceparent_parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                                        t, s, &flags));
    assert_false(core_traceparent_parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                                        t, s, &flags));
    assert_false(core_traceparent_parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                        t, s, &flags));
    assert_false(core_traceparent_parse("00-4bf92f35-00f067aa0ba902b7-01", t, s, &flags));
    assert_false(core_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                                        t, s, &flags));
    assert_true(core_traceparent_parse(
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", t, s, &flags));
    char nt[CORE_TRACE_ID_LEN + 1], ns[CORE_SPAN_ID_LEN + 1], tp[CORE_TRACEPARENT_LEN + 1];
    core_trace_id_new(nt);
    core_span_id_new(ns);
    core_traceparent_format(tp, nt, ns, 1);
    assert_int_equal(strlen(tp), CORE_TRACEPARENT_LEN);
    assert_true(core_traceparent_parse(tp, t, s, &flags));
    assert_string_equal(t, nt);
    assert_string_equal(s, ns);
}

/* ------------------------------------------------------------ clocks, backoff */

static void test_rfc3339(void **state)
{
    (void)state;
    char out[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    core_format_rfc3339(1795290603123, out);
    assert_string_equal(out, "2026-11-21T19:50:03.123Z");
    int64_t ms = 0;
    assert_true(core_parse_rfc3339("2026-11-21T19:50:03.123Z", &ms));
    assert_int_equal(ms, 1795290603123);
    assert_true(core_parse_rfc3339("2026-11-21T20:50:03.1+01:00", &ms));
    assert_int_equal(ms, 1795290603100);
    assert_true(core_parse_rfc3339("2024-02-29T00:00:00Z", &ms));
    core_format_rfc3339(ms, out);
    assert_string_equal(out, "2024-02-29T00:00:00.000Z");
    assert_false(core_parse_rfc3339("2026-13-01T00:00:00Z", &ms));
    assert_false(core_parse_rfc3339("2026-11-21 19:50", &ms));
    assert_false(core_parse_rfc3339("2026-11-21T19:50:03.Z", &ms));
    assert_false(core_parse_rfc3339("2026-11-21T19:50:03Zjunk", &ms));
    int64_t a = core_mono_ns();
    int64_t b = core_mono_ns();
    assert_true(b >= a);
}

static void test_backoff_full_jitter(void **state)
{
    (void)state;
    int64_t max_seen = 0;
    for (int i = 0; i < 2000; i++) {
        int64_t d = core_backoff_ms(3, 100, 10000);
        assert_true(d >= 0 && d <= 800);
        if (d > max_seen) max_seen = d;
        int64_t capped = core_backoff_ms(30, 100, 5000);
        assert_true(capped >= 0 && capped <= 5000);
    }
    assert_true(max_seen > 400); /* jitter spreads over the range, not a constant */
    assert_int_equal(core_backoff_ms(0, 0, 100), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_printf_escape),
        cmocka_unit_test(test_allocations),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_errors_name_the_variable),
        cmocka_unit_test(test_config_finish_exits_78_with_one_line),
        cmocka_unit_test(test_log_json_lines),
        cmocka_unit_test(test_log_batch),
        cmocka_unit_test(test_metrics_render),
        cmocka_unit_test(test_uuid_v7),
        cmocka_unit_test(test_random_bytes_unique_and_fork_safe),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_backoff_full_jitter),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
