/*
 * libs/bus against the real broker: produce and consume with CloudEvents headers, retries and
 * the dead-letter topic, malformed input, graceful close and resume, all_partitions.
 * Needs KAFKA_BROKERS; every test makes its own topics (deleted at the end).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "contentengine/v1/platform.pb-c.h"
#include "bus_test.h"
#include "test_support.h"

static const char *brokers;
static uv_loop_t loop;

/* ---------------------------------------------------------------- helpers */

static ts_bus_topics created; /* deleted by group_teardown */

static void make_topic(char *name, size_t size, const char *prefix, int partitions)
{
    ts_bus_make_topic(&loop, brokers, name, size, prefix, partitions, NULL, &created);
}

static bus_producer *new_producer(void)
{
    char err[256];
    bus_producer_config cfg = {
        .brokers = brokers, .client_id = "bus-it", .source = "/tests/bus", .linger_ms = 5};
    bus_producer *p = bus_producer_new(&loop, &cfg, err, sizeof err);
    assert_non_null(p);
    return p;
}

typedef struct dr_counts {
    int ok, failed;
} dr_counts;

static void on_dr(void *opaque, int err, const char *errstr, int32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    dr_counts *d = opaque;
    if (err) {
        fprintf(stderr, "delivery failed: %s\n", errstr);
        d->failed++;
    } else {
        d->ok++;
    }
}

typedef struct dr_wait {
    dr_counts *d;
    int n;
} dr_wait;

static bool dr_all(void *data)
{
    dr_wait *w = data;
    return w->d->ok + w->d->failed >= w->n;
}

static void produce_text(bus_producer *p, const char *topic, const char *key, const char *value,
                         dr_counts *d)
{
    bus_record r = {.topic = topic,
                    .partition = BUS_PARTITION_ANY,
                    .key = key,
                    .key_len = key ? strlen(key) : 0,
                    .value = value,
                    .value_len = strlen(value),
                    .ce_type = "contentengine.test.text.v1",
                    .content_type = "text/plain"};
    assert_int_equal(bus_produce(p, &r, on_dr, d), 0);
}

static void wait_delivered(dr_counts *d, int n)
{
    dr_wait w = {d, n};
    assert_true(ts_run_until(&loop, dr_all, &w, 30000));
    assert_int_equal(d->failed, 0);
}

static void close_consumer(bus_consumer *c)
{
    ts_bus_close_consumer(&loop, c, 60000);
}

static void close_producer(bus_producer *p)
{
    ts_bus_close_producer(&loop, p);
}

/* The sum of the group's committed offsets over partitions 0..partitions-1 of topic (a
 * partition without one counts 0), read with a plain client. */
static int64_t committed_total(const char *group, const char *topic, int partitions)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[256];
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof e), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group, e, sizeof e), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(l, topic, i);
    assert_int_equal(rd_kafka_committed(rk, l, 10000), 0);
    int64_t total = 0;
    for (int i = 0; i < partitions; i++)
        total += l->elems[i].offset > 0 ? l->elems[i].offset : 0;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return total;
}

/* The group's committed offset for partition 0 of topic. */
static int64_t committed_offset(const char *group, const char *topic)
{
    return committed_total(group, topic, 1);
}

/* n records "v0".."v<n-1>" keyed "key<i % keys>", all delivered. */
static void produce_numbered(bus_producer *p, const char *topic, int n, int keys)
{
    dr_counts d = {0};
    for (int i = 0; i < n; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "key%d", i % keys);
        snprintf(v, sizeof v, "v%d", i);
        produce_text(p, topic, k, v, &d);
    }
    wait_delivered(&d, n);
}

static void produce_foreign(const char *topic, const void *key, size_t key_len, const void *value,
                            size_t len)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[256];
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof e), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_KEY(key, key_len),
                                       RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_END),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);
}

/* A record as a handler saw it. */
typedef struct seen {
    char key[64];
    char value[256];
    size_t value_len;
    char ce_id[128], ce_type[128], ce_source[128], ce_time[40], trace_id[33], traceparent[56];
    char log_trace[33];
    int32_t partition;
    int64_t offset;
    unsigned attempt;
    /* dead letters */
    char dlq_error[256], dlq_attempts[16], dlq_topic[128], dlq_partition[16], dlq_offset[32],
        dlq_group[128], dlq_time[40];
} seen;

#define MAX_SEEN 2048

typedef struct recorder {
    seen s[MAX_SEEN];
    int n;
    /* behaviour */
    const char *retry_value; /* answer BUS_RETRY for this value */
    const char *fail_value;  /* answer BUS_FAIL for this value */
    bool fail_foreign;       /* BUS_FAIL for records without ce_type */
    bool async;              /* bus_done from a timer */
    int hold_at;             /* with async: do not finish message number hold_at (1-based) */
    bool holding;
    bus_consumer *held_c;
    const bus_message *held_m;
    uv_timer_t timer;
    bus_consumer *pending_c;
    const bus_message *pending_m;
} recorder;

static void hcopy(const bus_message *m, const char *name, char *out, size_t size)
{
    size_t n = 0;
    const char *v = bus_message_header(m, name, &n);
    out[0] = '\0';
    if (!v) return;
    if (n >= size) n = size - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

static void record_message(recorder *r, const bus_message *m)
{
    assert_true(r->n < MAX_SEEN);
    seen *s = &r->s[r->n++];
    memset(s, 0, sizeof *s);
    size_t kl = m->key_len < sizeof s->key - 1 ? m->key_len : sizeof s->key - 1;
    if (m->key) memcpy(s->key, m->key, kl);
    size_t vl = m->value_len < sizeof s->value - 1 ? m->value_len : sizeof s->value - 1;
    if (m->value) memcpy(s->value, m->value, vl);
    s->value_len = m->value_len;
    snprintf(s->ce_id, sizeof s->ce_id, "%s", m->ce_id);
    snprintf(s->ce_type, sizeof s->ce_type, "%s", m->ce_type);
    snprintf(s->ce_source, sizeof s->ce_source, "%s", m->ce_source);
    snprintf(s->ce_time, sizeof s->ce_time, "%s", m->ce_time);
    snprintf(s->trace_id, sizeof s->trace_id, "%s", m->trace_id);
    snprintf(s->traceparent, sizeof s->traceparent, "%s", m->traceparent);
    snprintf(s->log_trace, sizeof s->log_trace, "%s", core_log_trace());
    s->partition = m->partition;
    s->offset = m->offset;
    s->attempt = m->attempt;
    hcopy(m, BUS_DLQ_H_ERROR, s->dlq_error, sizeof s->dlq_error);
    hcopy(m, BUS_DLQ_H_ATTEMPTS, s->dlq_attempts, sizeof s->dlq_attempts);
    hcopy(m, BUS_DLQ_H_TOPIC, s->dlq_topic, sizeof s->dlq_topic);
    hcopy(m, BUS_DLQ_H_PARTITION, s->dlq_partition, sizeof s->dlq_partition);
    hcopy(m, BUS_DLQ_H_OFFSET, s->dlq_offset, sizeof s->dlq_offset);
    hcopy(m, BUS_DLQ_H_GROUP, s->dlq_group, sizeof s->dlq_group);
    hcopy(m, BUS_DLQ_H_TIME, s->dlq_time, sizeof s->dlq_time);
}

static void recorder_timer_cb(uv_timer_t *t)
{
    recorder *r = t->data;
    bus_consumer *c = r->pending_c;
    const bus_message *m = r->pending_m;
    r->pending_c = NULL;
    r->pending_m = NULL;
    if (c) bus_done(c, m, BUS_OK, NULL);
}

static void recorder_handler(bus_consumer *c, const bus_message *m, void *data)
{
    recorder *r = data;
    record_message(r, m);
    const seen *s = &r->s[r->n - 1];
    if (r->retry_value && strcmp(s->value, r->retry_value) == 0) {
        char why[64];
        snprintf(why, sizeof why, "transient failure %u", m->attempt);
        bus_done(c, m, BUS_RETRY, why);
        return;
    }
    if (r->fail_value && strcmp(s->value, r->fail_value) == 0) {
        bus_done(c, m, BUS_FAIL, "poison record");
        return;
    }
    if (r->fail_foreign && !m->ce_type[0]) {
        bus_done(c, m, BUS_FAIL, "not a CloudEvent");
        return;
    }
    if (r->async) {
        if (r->hold_at && r->n == r->hold_at) {
            r->holding = true;
            r->held_c = c;
            r->held_m = m;
            return;
        }
        r->pending_c = c;
        r->pending_m = m;
        uv_timer_start(&r->timer, recorder_timer_cb, 2, 0);
        return;
    }
    bus_done(c, m, BUS_OK, NULL);
}

static recorder *recorder_new(void)
{
    recorder *r = calloc(1, sizeof *r);
    assert_non_null(r);
    uv_timer_init(&loop, &r->timer);
    r->timer.data = r;
    return r;
}

static void recorder_free(recorder *r)
{
    uv_close((uv_handle_t *)&r->timer, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    free(r);
}

typedef struct count_wait {
    recorder *r;
    int n;
} count_wait;

static bool seen_at_least(void *data)
{
    count_wait *w = data;
    return w->r->n >= w->n;
}

static void wait_seen(recorder *r, int n, int64_t ms)
{
    count_wait w = {r, n};
    assert_true(ts_run_until(&loop, seen_at_least, &w, ms));
}

static bus_consumer *new_consumer(const char *group, const char *topic, recorder *r,
                                  bus_producer *dlq, const char *dlq_topic)
{
    char err[256];
    const char *topics[] = {topic, NULL};
    bus_consumer_config cfg = {.brokers = brokers,
                               .group_id = group,
                               .client_id = "bus-it",
                               .topics = topics,
                               .dlq_topic = dlq_topic,
                               .dlq_producer = dlq,
                               .max_attempts = 3,
                               .backoff_base_ms = 10,
                               .backoff_max_ms = 50};
    bus_consumer *c = bus_consumer_new(&loop, &cfg, recorder_handler, r, err, sizeof err);
    if (!c) fail_msg("bus_consumer_new: %s", err);
    return c;
}

/* ---------------------------------------------------------------- tests */

#define N_RECORDS 300

static void test_produce_and_consume_with_headers(void **state)
{
    (void)state;
    char topic[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-pc", 3);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    dr_counts d = {0};
    char trace[CORE_TRACE_ID_LEN + 1];
    core_trace_id_new(trace);
    for (int i = 0; i < N_RECORDS; i++) {
        Contentengine__V1__Probe probe = CONTENTENGINE__V1__PROBE__INIT;
        char id[32], key[32];
        snprintf(id, sizeof id, "probe-%d", i);
        snprintf(key, sizeof key, "k%d", i % 7);
        probe.id = id;
        probe.sequence = i;
        uint8_t buf[128];
        size_t len = contentengine__v1__probe__pack(&probe, buf);
        /* Even records are written while a trace is being logged: they continue it. */
        core_log_set_trace(i % 2 == 0 ? trace : NULL);
        bus_record rec = {.topic = topic,
                          .partition = BUS_PARTITION_ANY,
                          .key = key,
                          .key_len = strlen(key),
                          .value = buf,
                          .value_len = len,
                          .ce_type = "contentengine.test.probe.v1",
                          .ce_subject = id};
        assert_int_equal(bus_produce(p, &rec, on_dr, &d), 0);
    }
    core_log_set_trace(NULL);
    wait_delivered(&d, N_RECORDS);
    assert_true(bus_producer_connected(p));
    assert_int_equal(bus_producer_outstanding(p), 0);

    recorder *r = recorder_new();
    bus_consumer *c = new_consumer(group, topic, r, p, NULL);
    wait_seen(r, N_RECORDS, 60000);
    ts_run_for(&loop, 300); /* nothing more arrives */
    assert_int_equal(r->n, N_RECORDS);
    assert_true(bus_consumer_connected(c));

    int64_t last_seq[7];
    for (int k = 0; k < 7; k++)
        last_seq[k] = -1;
    bool got[N_RECORDS] = {false};
    for (int i = 0; i < r->n; i++) {
        const seen *s = &r->s[i];
        Contentengine__V1__Probe *probe =
            contentengine__v1__probe__unpack(NULL, s->value_len, (const uint8_t *)s->value);
        assert_non_null(probe);
        int seq = (int)probe->sequence;
        assert_true(seq >= 0 && seq < N_RECORDS);
        assert_false(got[seq]); /* exactly once */
        got[seq] = true;
        char key[32];
        snprintf(key, sizeof key, "k%d", seq % 7);
        assert_string_equal(s->key, key);
        /* per key order holds */
        assert_true(seq > last_seq[seq % 7]);
        last_seq[seq % 7] = seq;
        contentengine__v1__probe__free_unpacked(probe, NULL);

        assert_string_equal(s->ce_type, "contentengine.test.probe.v1");
        assert_string_equal(s->ce_source, "/tests/bus");
        core_uuid u;
        assert_true(core_uuid_parse(s->ce_id, &u));
        int64_t t;
        assert_true(core_parse_rfc3339(s->ce_time, &t));
        assert_int_equal(strlen(s->traceparent), CORE_TRACEPARENT_LEN);
        assert_memory_equal(s->traceparent + 3, s->trace_id, CORE_TRACE_ID_LEN);
        if (seq % 2 == 0)
            assert_string_equal(s->trace_id, trace);
        else
            assert_string_not_equal(s->trace_id, trace);
        /* the handler ran with the message's trace id in the log context */
        assert_string_equal(s->log_trace, s->trace_id);
        assert_int_equal(s->attempt, 1);
    }
    assert_string_equal(core_log_trace(), ""); /* restored after each handler */

    core_metrics *reg = core_metrics_default();
    core_metric *consumed = core_metric_counter(reg, "bus_consumed_total", "", "topic,result");
    core_metric *produced = core_metric_counter(reg, "bus_produced_total", "", "topic,result");
    assert_true(core_metric_value(consumed, topic, "ok") == N_RECORDS);
    assert_true(core_metric_value(produced, topic, "ok") == N_RECORDS);

    close_consumer(c);
    close_producer(p);
    recorder_free(r);
}

static bool dead_letters_at_least(void *data)
{
    const char **a = data;
    core_metric *m =
        core_metric_counter(core_metrics_default(), "bus_dead_letters_total", "", "topic");
    double v = core_metric_value(m, a[0]);
    return v == v && v >= 1; /* not NaN */
}

/* Reads every record of a dead-letter topic with a fresh group. */
static recorder *read_all(const char *topic, int expect)
{
    char group[128];
    ts_unique_name(group, sizeof group, "bus-it-reader");
    recorder *r = recorder_new();
    bus_consumer *c = new_consumer(group, topic, r, NULL, NULL);
    wait_seen(r, expect, 30000);
    ts_run_for(&loop, 300);
    close_consumer(c);
    return r;
}

static void test_retry_until_dead_letter_then_move_on(void **state)
{
    (void)state;
    char topic[128], dlq[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-retry", 1);
    make_topic(dlq, sizeof dlq, "bus-it-retry-dlq", 1);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    dr_counts d = {0};
    produce_text(p, topic, "k", "good-1", &d);
    produce_text(p, topic, "k", "bad", &d);
    produce_text(p, topic, "k", "good-2", &d);
    wait_delivered(&d, 3);

    recorder *r = recorder_new();
    r->retry_value = "bad";
    bus_consumer *c = new_consumer(group, topic, r, p, dlq);
    /* good-1, bad x3 (max_attempts), good-2 */
    wait_seen(r, 5, 30000);
    ts_run_for(&loop, 300);
    assert_int_equal(r->n, 5);
    assert_string_equal(r->s[0].value, "good-1");
    for (int i = 1; i <= 3; i++) {
        assert_string_equal(r->s[i].value, "bad");
        assert_int_equal(r->s[i].attempt, (unsigned)i);
        assert_int_equal(r->s[i].offset, 1);
        assert_string_equal(r->s[i].ce_id, r->s[1].ce_id); /* the same message again */
    }
    assert_string_equal(r->s[4].value, "good-2");
    const char *args[] = {topic};
    assert_true(ts_run_until(&loop, dead_letters_at_least, args, 10000));
    close_consumer(c);

    /* The committed offset passed the bad record. */
    assert_int_equal(committed_offset(group, topic), 3);

    /* The dead letter: original key, value and headers, plus the story. */
    recorder *dl = read_all(dlq, 1);
    assert_int_equal(dl->n, 1);
    const seen *s = &dl->s[0];
    assert_string_equal(s->key, "k");
    assert_string_equal(s->value, "bad");
    assert_string_equal(s->ce_type, "contentengine.test.text.v1");
    assert_string_equal(s->ce_id, r->s[1].ce_id);
    assert_string_equal(s->traceparent, r->s[1].traceparent);
    assert_non_null(strstr(s->dlq_error, "transient failure 3"));
    assert_non_null(strstr(s->dlq_error, "3 attempts"));
    assert_string_equal(s->dlq_attempts, "3");
    assert_string_equal(s->dlq_topic, topic);
    assert_string_equal(s->dlq_partition, "0");
    assert_string_equal(s->dlq_offset, "1");
    assert_string_equal(s->dlq_group, group);
    int64_t t;
    assert_true(core_parse_rfc3339(s->dlq_time, &t));
    recorder_free(dl);

    /* A restarted consumer in the same group does not see the bad record again. */
    produce_text(p, topic, "k", "good-3", &d);
    wait_delivered(&d, 4);
    recorder *r2 = recorder_new();
    bus_consumer *c2 = new_consumer(group, topic, r2, p, dlq);
    wait_seen(r2, 1, 30000);
    ts_run_for(&loop, 500);
    assert_int_equal(r2->n, 1);
    assert_string_equal(r2->s[0].value, "good-3");
    close_consumer(c2);
    close_producer(p);
    recorder_free(r);
    recorder_free(r2);
}

static void test_fail_dead_letters_at_once(void **state)
{
    (void)state;
    char topic[128], dlq[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-fail", 1);
    make_topic(dlq, sizeof dlq, "bus-it-fail-dlq", 1);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    dr_counts d = {0};
    produce_text(p, topic, "a", "poison", &d);
    produce_text(p, topic, "b", "fine", &d);
    wait_delivered(&d, 2);
    recorder *r = recorder_new();
    r->fail_value = "poison";
    bus_consumer *c = new_consumer(group, topic, r, p, dlq);
    wait_seen(r, 2, 30000);
    ts_run_for(&loop, 300);
    assert_int_equal(r->n, 2); /* no retries for BUS_FAIL */
    assert_string_equal(r->s[0].value, "poison");
    assert_string_equal(r->s[1].value, "fine");
    close_consumer(c);
    assert_int_equal(committed_offset(group, topic), 2);
    recorder *dl = read_all(dlq, 1);
    assert_int_equal(dl->n, 1);
    assert_string_equal(dl->s[0].value, "poison");
    assert_string_equal(dl->s[0].key, "a");
    assert_string_equal(dl->s[0].dlq_error, "poison record");
    assert_string_equal(dl->s[0].dlq_attempts, "1");
    recorder_free(dl);
    close_producer(p);
    recorder_free(r);
}

static void test_garbage_without_headers_reaches_the_handler(void **state)
{
    (void)state;
    char topic[128], dlq[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-garbage", 1);
    make_topic(dlq, sizeof dlq, "bus-it-garbage-dlq", 1);
    ts_unique_name(group, sizeof group, "bus-it-g");
    static const uint8_t junk[] = {0xff, 0x00, 0x13, 0x37, 'x', 0x80, 0xfe};
    produce_foreign(topic, NULL, 0, junk, sizeof junk); /* no key, no headers */
    produce_foreign(topic, "kk", 2, NULL, 0);           /* a tombstone */
    bus_producer *p = new_producer();
    recorder *r = recorder_new();
    r->fail_foreign = true;
    bus_consumer *c = new_consumer(group, topic, r, p, dlq);
    wait_seen(r, 2, 30000);
    assert_int_equal(r->s[0].value_len, sizeof junk);
    assert_memory_equal(r->s[0].value, junk, sizeof junk);
    assert_string_equal(r->s[0].key, "");
    assert_string_equal(r->s[0].ce_type, "");
    assert_string_equal(r->s[0].ce_id, "");
    assert_string_equal(r->s[0].traceparent, "");
    assert_int_equal(strlen(r->s[0].trace_id), CORE_TRACE_ID_LEN); /* one made up for logs */
    assert_int_equal(r->s[1].value_len, 0);
    assert_string_equal(r->s[1].key, "kk");
    close_consumer(c);
    assert_int_equal(committed_offset(group, topic), 2);
    recorder *dl = read_all(dlq, 2);
    assert_int_equal(dl->n, 2);
    assert_int_equal(dl->s[0].value_len, sizeof junk);
    assert_memory_equal(dl->s[0].value, junk, sizeof junk);
    assert_string_equal(dl->s[0].dlq_error, "not a CloudEvent");
    recorder_free(dl);
    close_producer(p);
    recorder_free(r);
}

static void test_graceful_close_commits_and_resumes(void **state)
{
    (void)state;
    char topic[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-close", 1);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    dr_counts d = {0};
    for (int i = 0; i < 10; i++) {
        char v[32];
        snprintf(v, sizeof v, "m%d", i);
        produce_text(p, topic, "k", v, &d);
    }
    wait_delivered(&d, 10);

    recorder *r = recorder_new();
    r->async = true;
    r->hold_at = 6; /* m5 stays with its handler while we close */
    bus_consumer *c = new_consumer(group, topic, r, NULL, NULL);
    wait_seen(r, 6, 30000);
    assert_true(r->holding);
    ts_run_for(&loop, 200);
    assert_int_equal(r->n, 6); /* one message at a time: nothing while m5 is held */

    bool closed = false;
    bus_consumer_close(c, ts_set_flag, &closed);
    ts_run_for(&loop, 300);
    assert_false(closed); /* waits for the handler */
    bus_done(r->held_c, r->held_m, BUS_OK, NULL);
    assert_true(ts_run_until(&loop, ts_flag_set, &closed, 60000));
    assert_int_equal(r->n, 6);
    assert_int_equal(committed_offset(group, topic), 6);

    recorder *r2 = recorder_new();
    bus_consumer *c2 = new_consumer(group, topic, r2, NULL, NULL);
    wait_seen(r2, 4, 30000);
    ts_run_for(&loop, 300);
    assert_int_equal(r2->n, 4);
    assert_string_equal(r2->s[0].value, "m6");
    assert_string_equal(r2->s[3].value, "m9");
    close_consumer(c2);
    assert_int_equal(committed_offset(group, topic), 10);
    close_producer(p);
    recorder_free(r);
    recorder_free(r2);
}

static void test_close_while_retry_waits_redelivers_later(void **state)
{
    (void)state;
    char topic[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-closeretry", 1);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    dr_counts d = {0};
    produce_text(p, topic, "k", "ok-0", &d);
    produce_text(p, topic, "k", "flaky", &d);
    wait_delivered(&d, 2);
    char err[256];
    const char *topics[] = {topic, NULL};
    recorder *r = recorder_new();
    r->retry_value = "flaky";
    bus_consumer_config cfg = {.brokers = brokers,
                               .group_id = group,
                               .topics = topics,
                               .max_attempts = 10,
                               .backoff_base_ms = 5000,
                               .backoff_max_ms = 5000};
    bus_consumer *c = bus_consumer_new(&loop, &cfg, recorder_handler, r, err, sizeof err);
    assert_non_null(c);
    wait_seen(r, 2, 30000);
    close_consumer(c); /* the retry is waiting on its timer: given back, not stored */
    assert_int_equal(committed_offset(group, topic), 1);

    recorder *r2 = recorder_new();
    bus_consumer *c2 = new_consumer(group, topic, r2, NULL, NULL);
    wait_seen(r2, 1, 30000);
    assert_string_equal(r2->s[0].value, "flaky");
    assert_int_equal(r2->s[0].attempt, 1);
    close_consumer(c2);
    close_producer(p);
    recorder_free(r);
    recorder_free(r2);
}

static void test_all_partitions_reads_from_the_end(void **state)
{
    (void)state;
    char topic[128];
    make_topic(topic, sizeof topic, "bus-it-all", 3);
    bus_producer *p = new_producer();
    dr_counts d = {0};
    for (int i = 0; i < 6; i++)
        produce_text(p, topic, i % 2 ? "a" : "b", "old", &d);
    wait_delivered(&d, 6);

    recorder *ra = recorder_new(), *rb = recorder_new();
    const char *topics[] = {topic, NULL};
    char err[256];
    bus_consumer_config cfg = {.brokers = brokers,
                               .group_id = "bus-it-realtime",
                               .topics = topics,
                               .all_partitions = true};
    /* Two instances of the same "service": both get everything. */
    bus_consumer *ca = bus_consumer_new(&loop, &cfg, recorder_handler, ra, err, sizeof err);
    bus_consumer *cb = bus_consumer_new(&loop, &cfg, recorder_handler, rb, err, sizeof err);
    assert_non_null(ca);
    assert_non_null(cb);
    ts_run_for(&loop, 1500); /* assignment, then the end offsets */
    assert_true(bus_consumer_connected(ca));
    for (int i = 0; i < 30; i++) {
        char k[32];
        snprintf(k, sizeof k, "n%d", i);
        produce_text(p, topic, k, "new", &d);
    }
    wait_delivered(&d, 36);
    wait_seen(ra, 30, 30000);
    wait_seen(rb, 30, 30000);
    ts_run_for(&loop, 300);
    assert_int_equal(ra->n, 30);
    assert_int_equal(rb->n, 30);
    bool parts[3] = {false};
    for (int i = 0; i < ra->n; i++) {
        assert_string_equal(ra->s[i].value, "new");
        parts[ra->s[i].partition] = true;
    }
    assert_true(parts[0] && parts[1] && parts[2]);
    close_consumer(ca);
    close_consumer(cb);
    close_producer(p);
    recorder_free(ra);
    recorder_free(rb);
}

static void test_two_consumers_share_a_group(void **state)
{
    (void)state;
    char topic[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-share", 4);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    recorder *ra = recorder_new(), *rb = recorder_new();
    ra->async = rb->async = true;
    bus_consumer *ca = new_consumer(group, topic, ra, NULL, NULL);
    bus_consumer *cb = new_consumer(group, topic, rb, NULL, NULL);
    int n = 200;
    produce_numbered(p, topic, n, 13);
    int64_t deadline = core_mono_ns() + 60 * (int64_t)1000000000;
    while (ra->n + rb->n < n && core_mono_ns() < deadline)
        ts_run_for(&loop, 50);
    /* The rebalance may hand a message to both (at-least-once), never lose one. */
    bool got[200] = {false};
    for (int i = 0; i < ra->n; i++)
        got[strtol(ra->s[i].value + 1, NULL, 10)] = true;
    for (int i = 0; i < rb->n; i++)
        got[strtol(rb->s[i].value + 1, NULL, 10)] = true;
    for (int i = 0; i < n; i++)
        assert_true(got[i]);
    close_consumer(ca);
    close_consumer(cb);
    close_producer(p);
    recorder_free(ra);
    recorder_free(rb);
}

/* A rebalance takes the partition of the message a handler still holds: its offset must not
 * be stored by the old owner, the message is delivered again, and nothing is lost. */
static void test_revocation_while_a_message_is_in_flight(void **state)
{
    (void)state;
    char topic[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-revoke", 2);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    dr_counts d = {0};
    bus_record rec = {.topic = topic,
                      .partition = 0,
                      .key = "k",
                      .key_len = 1,
                      .value = "m0",
                      .value_len = 2,
                      .ce_type = "contentengine.test.text.v1"};
    assert_int_equal(bus_produce(p, &rec, on_dr, &d), 0);
    wait_delivered(&d, 1);

    recorder *ra = recorder_new(), *rb = recorder_new();
    ra->async = true;
    ra->hold_at = 1; /* A keeps m0 */
    rb->async = true;
    bus_consumer *ca = new_consumer(group, topic, ra, NULL, NULL);
    wait_seen(ra, 1, 30000);
    assert_true(ra->holding);

    /* B joins: the group rebalances while A's handler still has m0. */
    bus_consumer *cb = new_consumer(group, topic, rb, NULL, NULL);
    ts_run_for(&loop, 5000);
    /* A finishes late: the offset of a message from a revoked partition is not stored, so
     * m0 comes again, to whichever consumer owns partition 0 now (A once it is free). */
    bus_done(ra->held_c, ra->held_m, BUS_OK, NULL);
    int64_t deadline = core_mono_ns() + 30 * (int64_t)1000000000;
    while (ra->n + rb->n < 2 && core_mono_ns() < deadline)
        ts_run_for(&loop, 50);
    assert_int_equal(ra->n + rb->n, 2);
    ts_run_for(&loop, 300);
    close_consumer(ca);
    close_consumer(cb);
    assert_int_equal(committed_offset(group, topic), 1);
    int copies = 0;
    for (int i = 0; i < ra->n; i++)
        copies += strcmp(ra->s[i].value, "m0") == 0;
    for (int i = 0; i < rb->n; i++)
        copies += strcmp(rb->s[i].value, "m0") == 0;
    assert_int_equal(copies, 2);
    close_producer(p);
    recorder_free(ra);
    recorder_free(rb);
}

/* max_in_flight: handlers of different partitions overlap, never two of one partition. */

#define PAR_RECORDS  600
#define PAR_SLOTS    4
#define PAR_PARTS    6
#define PAR_HOLD_MAX 8

typedef struct par_job {
    uv_timer_t timer;
    bus_consumer *c;
    const bus_message *m;
    bool used;
    struct par_state *st;
} par_job;

typedef struct par_state {
    par_job jobs[PAR_SLOTS];
    int in_flight, max_in_flight, busy_partition_clash;
    int busy[PAR_PARTS];
    int64_t last_offset[PAR_PARTS]; /* of the latest message handed out, per partition */
    int order_violations;
    int done_ok, retried;
    int handled[PAR_RECORDS];
    unsigned seed;
} par_state;

static void par_timer_cb(uv_timer_t *t)
{
    par_job *j = t->data;
    par_state *st = j->st;
    const bus_message *m = j->m;
    st->busy[m->partition]--;
    st->in_flight--;
    j->used = false;
    char text[32] = {0};
    memcpy(text, m->value, m->value_len < sizeof text - 1 ? m->value_len : sizeof text - 1);
    int v = (int)strtol(text + 1, NULL, 10);
    /* Every seventh record fails once: its retry waits in its slot while the others go on. */
    if (v % 7 == 0 && m->attempt == 1) {
        st->retried++;
        bus_done(j->c, m, BUS_RETRY, "transient");
        return;
    }
    st->handled[v]++;
    st->done_ok++;
    bus_done(j->c, m, BUS_OK, NULL);
}

static void par_handler(bus_consumer *c, const bus_message *m, void *data)
{
    par_state *st = data;
    assert_true(m->partition >= 0 && m->partition < PAR_PARTS);
    if (st->busy[m->partition]) st->busy_partition_clash++;
    st->busy[m->partition]++;
    /* A retry hands out the same offset again; anything else moves forward. */
    if (m->attempt == 1 && m->offset <= st->last_offset[m->partition]) st->order_violations++;
    st->last_offset[m->partition] = m->offset;
    if (++st->in_flight > st->max_in_flight) st->max_in_flight = st->in_flight;
    par_job *j = NULL;
    for (int i = 0; i < PAR_SLOTS && !j; i++)
        if (!st->jobs[i].used) j = &st->jobs[i];
    assert_non_null(j); /* more than max_in_flight handed out */
    j->used = true;
    j->c = c;
    j->m = m;
    uv_timer_start(&j->timer, par_timer_cb, 1 + rand_r(&st->seed) % PAR_HOLD_MAX, 0);
}

static bool par_all_done(void *data)
{
    return ((par_state *)data)->done_ok >= PAR_RECORDS;
}

static void test_max_in_flight_overlaps_partitions_never_within_one(void **state)
{
    (void)state;
    char topic[128], group[128];
    make_topic(topic, sizeof topic, "bus-it-par", PAR_PARTS);
    ts_unique_name(group, sizeof group, "bus-it-g");
    bus_producer *p = new_producer();
    produce_numbered(p, topic, PAR_RECORDS, 17);

    par_state *st = calloc(1, sizeof *st);
    assert_non_null(st);
    st->seed = 7;
    for (int i = 0; i < PAR_PARTS; i++)
        st->last_offset[i] = -1;
    for (int i = 0; i < PAR_SLOTS; i++) {
        uv_timer_init(&loop, &st->jobs[i].timer);
        st->jobs[i].timer.data = &st->jobs[i];
        st->jobs[i].st = st;
    }
    char err[256];
    const char *topics[] = {topic, NULL};
    bus_consumer_config cfg = {.brokers = brokers,
                               .group_id = group,
                               .client_id = "bus-it",
                               .topics = topics,
                               .max_attempts = 3,
                               .backoff_base_ms = 5,
                               .backoff_max_ms = 20,
                               .max_in_flight = PAR_SLOTS};
    bus_consumer *c = bus_consumer_new(&loop, &cfg, par_handler, st, err, sizeof err);
    if (!c) fail_msg("bus_consumer_new: %s", err);
    assert_true(ts_run_until(&loop, par_all_done, st, 60000));
    ts_run_for(&loop, 200);
    close_consumer(c);

    assert_int_equal(st->busy_partition_clash, 0);
    assert_int_equal(st->order_violations, 0);
    assert_true(st->max_in_flight >= 2); /* they did overlap */
    assert_true(st->max_in_flight <= PAR_SLOTS);
    assert_true(st->retried > 0);
    for (int i = 0; i < PAR_RECORDS; i++)
        assert_int_equal(st->handled[i], 1);
    assert_int_equal(committed_total(group, topic, PAR_PARTS), PAR_RECORDS);
    for (int i = 0; i < PAR_SLOTS; i++)
        uv_close((uv_handle_t *)&st->jobs[i].timer, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    free(st);
    close_producer(p);
}

static void test_max_in_flight_out_of_range_is_refused(void **state)
{
    (void)state;
    char err[256];
    const char *topics[] = {"t", NULL};
    bus_consumer_config cfg = {
        .brokers = brokers, .group_id = "g", .topics = topics, .max_in_flight = 65};
    assert_null(bus_consumer_new(&loop, &cfg, par_handler, NULL, err, sizeof err));
    assert_non_null(strstr(err, "max_in_flight"));
}

/* ---------------------------------------------------------------- setup */

static int group_setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
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
    if (!brokers) return ts_bus_skip_all("bus_consume");
    core_log_init("bus_consume", CORE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_produce_and_consume_with_headers),
        cmocka_unit_test(test_retry_until_dead_letter_then_move_on),
        cmocka_unit_test(test_fail_dead_letters_at_once),
        cmocka_unit_test(test_garbage_without_headers_reaches_the_handler),
        cmocka_unit_test(test_graceful_close_commits_and_resumes),
        cmocka_unit_test(test_close_while_retry_waits_redelivers_later),
        cmocka_unit_test(test_all_partitions_reads_from_the_end),
        cmocka_unit_test(test_two_consumers_share_a_group),
        cmocka_unit_test(test_revocation_while_a_message_is_in_flight),
        cmocka_unit_test(test_max_in_flight_overlaps_partitions_never_within_one),
        cmocka_unit_test(test_max_in_flight_out_of_range_is_refused),
    };
    return cmocka_run_group_tests_name("bus_consume", tests, group_setup, group_teardown);
}
