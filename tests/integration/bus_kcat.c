/*
 * An independent client checks the bus: kcat (librdkafka's CLI, its own process) reads what
 * bus_produce wrote and must see the keys, values and CloudEvents / traceparent headers; and
 * kcat writes records (with CloudEvents headers given on its command line) that a bus consumer
 * must parse. Needs KAFKA_BROKERS and kcat on PATH.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bus.h"
#include "bus_test.h"
#include "test_support.h"

extern char **environ;

static const char *brokers;
static uv_loop_t loop;
static char topic[128], topic_in[128];

static ts_bus_topics created; /* deleted by group_teardown */

static void make_topic(char *name, size_t size, const char *prefix)
{
    ts_bus_make_topic(&loop, brokers, name, size, prefix, 2, NULL, &created);
}

/* Runs argv, feeding `input` (may be NULL) to its stdin; returns its stdout (free it). */
static char *run(char *const argv[], const char *input, int *status)
{
    int out[2], in[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(in), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) fail_msg("cannot run %s: %s", argv[0], strerror(rc));
    close(in[0]);
    close(out[1]);
    if (input) {
        size_t left = strlen(input);
        const char *p = input;
        while (left > 0) {
            ssize_t n = write(in[1], p, left);
            if (n < 0 && errno == EINTR) continue;
            assert_true(n > 0);
            p += n;
            left -= (size_t)n;
        }
    }
    close(in[1]);
    core_buf b = {0};
    char chunk[4096];
    for (;;) {
        ssize_t n = read(out[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        core_buf_append(&b, chunk, (size_t)n);
    }
    close(out[0]);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
    }
    core_buf_puts(&b, "");
    return core_buf_steal(&b, NULL);
}

static void on_dr(void *opaque, int err, const char *errstr, int32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    if (err) fprintf(stderr, "delivery failed: %s\n", errstr);
    (*(int *)opaque)++;
}

static bool five_delivered(void *data)
{
    return *(int *)data >= 5;
}

/* kcat -J gives headers as a flat array: name, value, name, value, ... */
static const char *json_header(json_t *rec, const char *name)
{
    json_t *h = json_object_get(rec, "headers");
    if (!json_is_array(h)) return NULL;
    const char *found = NULL;
    for (size_t i = 0; i + 1 < json_array_size(h); i += 2)
        if (strcmp(json_string_value(json_array_get(h, i)), name) == 0)
            found = json_string_value(json_array_get(h, i + 1));
    return found;
}

static void test_kcat_reads_what_the_bus_wrote(void **state)
{
    (void)state;
    char err[256];
    bus_producer_config cfg = {
        .brokers = brokers, .client_id = "bus-kcat", .source = "/tests/kcat"};
    bus_producer *p = bus_producer_new(&loop, &cfg, err, sizeof err);
    assert_non_null(p);
    char trace[CORE_TRACE_ID_LEN + 1];
    core_trace_id_new(trace);
    core_log_set_trace(trace);
    int delivered = 0;
    for (int i = 0; i < 5; i++) {
        char key[32], value[64], subject[32];
        snprintf(key, sizeof key, "item-%d", i);
        snprintf(value, sizeof value, "value number %d", i);
        snprintf(subject, sizeof subject, "items/%d", i);
        bus_record r = {.topic = topic,
                        .partition = BUS_PARTITION_ANY,
                        .key = key,
                        .key_len = strlen(key),
                        .value = value,
                        .value_len = strlen(value),
                        .ce_type = "contentengine.test.kcat.v1",
                        .ce_subject = subject,
                        .content_type = "text/plain"};
        assert_int_equal(bus_produce(p, &r, on_dr, &delivered), 0);
    }
    core_log_set_trace(NULL);
    assert_true(ts_run_until(&loop, five_delivered, &delivered, 30000));

    char *argv[] = {"kcat", "-C", "-b", (char *)brokers, "-t", topic, "-o", "beginning", "-e",
                    "-q",   "-J", NULL};
    int status = 0;
    char *out = run(argv, NULL, &status);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    bool seen[5] = {false};
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *rec = json_loads(line, 0, &je);
        if (!rec) fail_msg("kcat printed something that is not JSON: %s", line);
        const char *key = json_string_value(json_object_get(rec, "key"));
        const char *payload = json_string_value(json_object_get(rec, "payload"));
        assert_non_null(key);
        assert_non_null(payload);
        int i = -1;
        assert_int_equal(sscanf(key, "item-%d", &i), 1);
        assert_true(i >= 0 && i < 5);
        assert_false(seen[i]);
        seen[i] = true;
        char want[64];
        snprintf(want, sizeof want, "value number %d", i);
        assert_string_equal(payload, want);

        assert_string_equal(json_header(rec, "ce_specversion"), "1.0");
        assert_string_equal(json_header(rec, "ce_type"), "contentengine.test.kcat.v1");
        assert_string_equal(json_header(rec, "ce_source"), "/tests/kcat");
        snprintf(want, sizeof want, "items/%d", i);
        assert_string_equal(json_header(rec, "ce_subject"), want);
        assert_string_equal(json_header(rec, "content-type"), "text/plain");
        core_uuid u;
        assert_non_null(json_header(rec, "ce_id"));
        assert_true(core_uuid_parse(json_header(rec, "ce_id"), &u));
        int64_t t;
        assert_non_null(json_header(rec, "ce_time"));
        assert_true(core_parse_rfc3339(json_header(rec, "ce_time"), &t));
        char tr[CORE_TRACE_ID_LEN + 1], sp[CORE_SPAN_ID_LEN + 1];
        uint8_t flags;
        assert_non_null(json_header(rec, "traceparent"));
        assert_true(core_traceparent_parse(json_header(rec, "traceparent"), tr, sp, &flags));
        assert_string_equal(tr, trace); /* the producing code's trace continues */
        json_decref(rec);
        n++;
    }
    assert_int_equal(n, 5);
    free(out);

    ts_bus_close_producer(&loop, p);
}

typedef struct got {
    int n;
    char ce_type[5][128], ce_id[5][128], trace_id[5][33], value[5][64], key[5][32];
} got;

static void handler(bus_consumer *c, const bus_message *m, void *data)
{
    got *g = data;
    if (g->n < 5) {
        snprintf(g->ce_type[g->n], sizeof g->ce_type[0], "%s", m->ce_type);
        snprintf(g->ce_id[g->n], sizeof g->ce_id[0], "%s", m->ce_id);
        snprintf(g->trace_id[g->n], sizeof g->trace_id[0], "%s", m->trace_id);
        snprintf(g->value[g->n], sizeof g->value[0], "%.*s", (int)m->value_len,
                 (const char *)m->value);
        snprintf(g->key[g->n], sizeof g->key[0], "%.*s", (int)m->key_len, (const char *)m->key);
    }
    g->n++;
    bus_done(c, m, BUS_OK, NULL);
}

static bool got_two(void *data)
{
    return ((got *)data)->n >= 2;
}

static void test_bus_reads_what_kcat_wrote(void **state)
{
    (void)state;
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    char h1[128];
    snprintf(h1, sizeof h1, "traceparent=%s", tp);
    char *argv[] = {"kcat", "-P",
                    "-b",   (char *)brokers,
                    "-t",   topic_in,
                    "-p",   "0",
                    "-K",   ":",
                    "-H",   "ce_specversion=1.0",
                    "-H",   "ce_id=kcat-1",
                    "-H",   "ce_type=contentengine.test.fromkcat.v1",
                    "-H",   "ce_source=/kcat",
                    "-H",   h1,
                    NULL};
    int status = 0;
    char *out = run(argv, "k1:hello\nk2:world\n", &status);
    free(out);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    got g = {0};
    char group[128], err[256];
    ts_unique_name(group, sizeof group, "bus-kcat-g");
    const char *topics[] = {topic_in, NULL};
    bus_consumer_config cfg = {.brokers = brokers, .group_id = group, .topics = topics};
    bus_consumer *c = bus_consumer_new(&loop, &cfg, handler, &g, err, sizeof err);
    assert_non_null(c);
    assert_true(ts_run_until(&loop, got_two, &g, 30000));
    assert_string_equal(g.key[0], "k1");
    assert_string_equal(g.value[0], "hello");
    assert_string_equal(g.key[1], "k2");
    assert_string_equal(g.value[1], "world");
    for (int i = 0; i < 2; i++) {
        assert_string_equal(g.ce_type[i], "contentengine.test.fromkcat.v1");
        assert_string_equal(g.ce_id[i], "kcat-1");
        assert_string_equal(g.trace_id[i], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    ts_bus_close_consumer(&loop, c, 30000);
}

static int group_setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
    make_topic(topic, sizeof topic, "bus-kcat");
    make_topic(topic_in, sizeof topic_in, "bus-kcat-in");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_bus_teardown(&loop, brokers, &created);
    return 0;
}

int main(void)
{
    brokers = ts_env("KAFKA_BROKERS");
    if (!brokers) return ts_bus_skip_all("bus_kcat");
    core_log_init("bus_kcat", CORE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kcat_reads_what_the_bus_wrote),
        cmocka_unit_test(test_bus_reads_what_kcat_wrote),
    };
    return cmocka_run_group_tests_name("bus_kcat", tests, group_setup, group_teardown);
}
