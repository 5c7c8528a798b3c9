/*
 * ce-bus-perf: libs/bus throughput, measured the way Kafka's own tools measure it.
 *
 *   ce-bus-perf produce --brokers B --topic T --num-records N --record-size S [--acks all]
 *                       [--raw] [--linger-ms MS] [--batch-size BYTES] [--queue-max N]
 *                       [-X key=value ...]
 *   ce-bus-perf consume --brokers B --topic T --num-records N [--group G] [--timeout-ms MS]
 *                       [--handle-ms MS] [-X key=value ...]
 *
 * produce prints ProducerPerformance's summary line ("N records sent, X records/sec (Y MB/sec),
 * A ms avg latency, M ms max latency, p50, p95, p99, p99.9"); consume prints
 * ConsumerPerformance's CSV (start.time, end.time, data.consumed.in.MB, MB.sec,
 * data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec,
 * fetch.nMsg.sec). Both end with one machine-readable line:
 *
 *   RESULT records_per_sec=<x> mb_per_sec=<y>
 *
 * MB is 1024 * 1024 bytes of record values, as in Kafka's tools. The measured path is the one
 * services use: bus_produce with a delivery callback per record, and a bus_consumer handler that
 * answers BUS_OK per message (its offset stored only after that), all on one libuv loop. By
 * default every record carries the CloudEvents envelope (seven headers); --raw sends verbatim
 * records (bus_record.verbatim: value only, no headers), which is what ProducerPerformance
 * sends, for a like-for-like comparison. --handle-ms answers each message only MS milliseconds
 * later (a handler that waits on a database): the consumer then lags behind a backlog, which is
 * how its prefetch settings show in its memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

#define MAX_EXTRA 32

typedef struct opts {
    const char *mode, *brokers, *topic, *group;
    bool raw;
    int64_t num_records, record_size, timeout_ms, handle_ms;
    int linger_ms, batch_size, queue_max;
    const char *extra[2 * MAX_EXTRA + 1];
    char extra_buf[MAX_EXTRA][256];
    int nextra;
} opts;

static void usage(void)
{
    fprintf(stderr,
            "usage: ce-bus-perf produce --brokers B --topic T --num-records N --record-size S\n"
            "                           [--acks all] [--raw] [--linger-ms MS]\n"
            "                           [--batch-size BYTES] [--queue-max N] [-X key=value ...]\n"
            "       ce-bus-perf consume --brokers B --topic T --num-records N [--group G]\n"
            "                           [--handle-ms MS]\n"
            "                           [--timeout-ms MS] [-X key=value ...]\n");
    exit(2);
}

static int64_t parse_int(const char *name, const char *v, int64_t min, int64_t max)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || !end || *end || end == v || x < min || x > max) {
        fprintf(stderr, "ce-bus-perf: %s must be an integer in [%" PRId64 ", %" PRId64 "]\n", name,
                min, max);
        exit(2);
    }
    return x;
}

static void parse(int argc, char **argv, opts *o)
{
    if (argc < 2) usage();
    memset(o, 0, sizeof *o);
    o->mode = argv[1];
    o->timeout_ms = 60000;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--raw") == 0) {
            o->raw = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--brokers") == 0 || strcmp(a, "--bootstrap-server") == 0) {
            o->brokers = v;
        } else if (strcmp(a, "--topic") == 0) {
            o->topic = v;
        } else if (strcmp(a, "--group") == 0) {
            o->group = v;
        } else if (strcmp(a, "--num-records") == 0 || strcmp(a, "--messages") == 0) {
            o->num_records = parse_int(a, v, 1, INT64_C(1) << 40);
        } else if (strcmp(a, "--record-size") == 0) {
            o->record_size = parse_int(a, v, 0, 10 * 1024 * 1024);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            o->timeout_ms = parse_int(a, v, 1, INT64_C(1) << 40);
        } else if (strcmp(a, "--handle-ms") == 0) {
            o->handle_ms = parse_int(a, v, 0, 60000);
        } else if (strcmp(a, "--linger-ms") == 0) {
            o->linger_ms = (int)parse_int(a, v, 0, 900000);
        } else if (strcmp(a, "--batch-size") == 0) {
            o->batch_size = (int)parse_int(a, v, 1, 2147483647);
        } else if (strcmp(a, "--queue-max") == 0) {
            o->queue_max = (int)parse_int(a, v, 1, 2147483647);
        } else if (strcmp(a, "--acks") == 0) {
            /* The bus producer is idempotent, which means acks=all; nothing else is on offer. */
            if (strcmp(v, "all") != 0 && strcmp(v, "-1") != 0) {
                fprintf(stderr,
                        "ce-bus-perf: the bus producer is idempotent: --acks must be all\n");
                exit(2);
            }
        } else if (strcmp(a, "-X") == 0) {
            const char *eq = strchr(v, '=');
            if (!eq || o->nextra >= MAX_EXTRA || strlen(v) >= sizeof o->extra_buf[0]) usage();
            char *b = o->extra_buf[o->nextra];
            memcpy(b, v, strlen(v) + 1);
            b[eq - v] = '\0';
            o->extra[2 * o->nextra] = b;
            o->extra[2 * o->nextra + 1] = b + (eq - v) + 1;
            o->nextra++;
        } else {
            usage();
        }
    }
    if (!o->brokers || !o->topic || !o->num_records) usage();
}

static double now_s(void)
{
    return (double)core_mono_ns() / 1e9;
}

/* ---------------------------------------------------------------- produce */

typedef struct producer_run {
    uv_loop_t *loop;
    bus_producer *p;
    uv_idle_t idle;
    bool idle_on;
    bus_record rec;
    int64_t n, sent, done, failed;
    size_t low_water;
    int64_t *sent_ns;    /* per record, for latencies */
    int32_t *latency_us; /* per record */
    int64_t t0_ns, t_end_ns;
    bool closed;
    char first_error[256];
} producer_run;

/* The one run of this process: delivery callbacks carry the record's number as opaque. */
static producer_run prun;

/* Records produced per loop turn before the loop serves delivery reports again. */
#define PRODUCE_BURST 2000

static void produce_some(uv_idle_t *h);

static void on_delivery(void *opaque, int err, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)partition;
    (void)offset;
    producer_run *r = &prun;
    int64_t i = (int64_t)(uintptr_t)opaque;
    int64_t now = core_mono_ns();
    r->latency_us[i] = (int32_t)((now - r->sent_ns[i]) / 1000);
    if (err) {
        if (!r->failed) snprintf(r->first_error, sizeof r->first_error, "%s", errstr);
        r->failed++;
    }
    if (++r->done == r->n) r->t_end_ns = now;
}

static void on_space(void *data)
{
    producer_run *r = data;
    if (!r->idle_on && r->sent < r->n) {
        r->idle_on = true;
        uv_idle_start(&r->idle, produce_some);
    }
}

static void produce_some(uv_idle_t *h)
{
    producer_run *r = h->data;
    int64_t until = r->sent + PRODUCE_BURST;
    if (until > r->n) until = r->n;
    while (r->sent < until) {
        r->sent_ns[r->sent] = core_mono_ns();
        int rc = bus_produce(r->p, &r->rec, on_delivery, (void *)(uintptr_t)r->sent);
        if (rc == BUS_ERR_QUEUE_FULL) {
            /* Back-pressure: wait until half the queue is delivered. */
            uv_idle_stop(&r->idle);
            r->idle_on = false;
            bus_producer_on_space(r->p, r->low_water, on_space, r);
            return;
        }
        if (rc) {
            fprintf(stderr, "ce-bus-perf: produce failed: %s\n", bus_strerror(rc));
            exit(1);
        }
        r->sent++;
    }
    if (r->sent == r->n) {
        uv_idle_stop(&r->idle);
        r->idle_on = false;
    }
}

static void on_producer_closed(void *data, size_t remaining)
{
    producer_run *r = data;
    r->closed = true;
    if (remaining) fprintf(stderr, "ce-bus-perf: %zu records undelivered at close\n", remaining);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int run_produce(const opts *o)
{
    uv_loop_t *loop = uv_default_loop();
    producer_run *r = &prun;
    r->loop = loop;
    r->n = o->num_records;
    /* Measured here (2 cores shared with the broker): a short queue and a short linger beat
     * the usual bulk advice (linger 50-100 ms, deep queues). Every record carries seven
     * CloudEvents headers, each a heap object that librdkafka allocates, serializes on its
     * broker thread and frees after the delivery report; keeping the records in flight few
     * keeps them in cache. */
    int queue_max = o->queue_max ? o->queue_max : 10000;
    r->low_water = (size_t)queue_max / 2;
    bus_producer_config cfg = {
        .brokers = o->brokers,
        .client_id = "ce-bus-perf",
        .source = "/tools/ce-bus-perf",
        .linger_ms = o->linger_ms ? o->linger_ms : 5,
        .batch_size = o->batch_size ? o->batch_size : 1000000,
        .queue_max_messages = queue_max,
        .extra = o->extra,
    };
    char err[512];
    r->p = bus_producer_new(loop, &cfg, err, sizeof err);
    if (!r->p) {
        fprintf(stderr, "ce-bus-perf: %s\n", err);
        return 2;
    }
    /* ProducerPerformance sends one random payload of record-size bytes, without a key. */
    size_t size = (size_t)o->record_size;
    char *payload = malloc(size ? size : 1);
    if (!payload) abort();
    uint8_t rnd[64];
    core_random_bytes(rnd, sizeof rnd);
    for (size_t i = 0; i < size; i++)
        payload[i] = (char)('A' + rnd[i % sizeof rnd] % 26);
    r->rec = (bus_record){.topic = o->topic,
                          .partition = BUS_PARTITION_ANY,
                          .value = payload,
                          .value_len = size,
                          .ce_type = "contentengine.perf.record.v1",
                          .verbatim = o->raw};
    r->sent_ns = calloc((size_t)r->n, sizeof *r->sent_ns);
    r->latency_us = calloc((size_t)r->n, sizeof *r->latency_us);
    if (!r->sent_ns || !r->latency_us) abort();

    uv_idle_init(loop, &r->idle);
    r->idle.data = r;
    r->t0_ns = core_mono_ns();
    r->idle_on = true;
    uv_idle_start(&r->idle, produce_some);
    double last_report = now_s();
    int64_t last_done = 0;
    while (r->done < r->n) {
        uv_run(loop, UV_RUN_ONCE);
        double t = now_s();
        if (t - last_report >= 5.0) {
            double rate = (double)(r->done - last_done) / (t - last_report);
            fprintf(stderr, "%" PRId64 " records sent, %.1f records/sec (%.2f MB/sec)\n",
                    r->done - last_done, rate, rate * (double)size / (1024.0 * 1024.0));
            last_report = t;
            last_done = r->done;
        }
    }
    bus_producer_close(r->p, 30000, on_producer_closed, r);
    while (!r->closed)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&r->idle, NULL);
    uv_run(loop, UV_RUN_DEFAULT);

    double secs = (double)(r->t_end_ns - r->t0_ns) / 1e9;
    double rps = (double)r->n / secs;
    double mbps = rps * (double)size / (1024.0 * 1024.0);
    qsort(r->latency_us, (size_t)r->n, sizeof *r->latency_us, cmp_i32);
    double sum = 0;
    for (int64_t i = 0; i < r->n; i++)
        sum += r->latency_us[i];
#define PCT(p) (r->latency_us[(int64_t)((double)(r->n - 1) * (p))] / 1000)
    printf("%" PRId64 " records sent, %.1f records/sec (%.2f MB/sec), %.2f ms avg latency, "
           "%.2f ms max latency, %d ms 50th, %d ms 95th, %d ms 99th, %d ms 99.9th.\n",
           r->n, rps, mbps, sum / (double)r->n / 1000.0, (double)r->latency_us[r->n - 1] / 1000.0,
           PCT(0.50), PCT(0.95), PCT(0.99), PCT(0.999));
#undef PCT
    int status = 0;
    if (r->failed) {
        fprintf(stderr, "ce-bus-perf: %" PRId64 " records failed, first: %s\n", r->failed,
                r->first_error);
        status = 1;
    }
    printf("RESULT records_per_sec=%.1f mb_per_sec=%.2f\n", status ? 0.0 : rps,
           status ? 0.0 : mbps);
    free(payload);
    free(r->sent_ns);
    free(r->latency_us);
    uv_loop_close(loop);
    return status;
}

/* ---------------------------------------------------------------- consume */

typedef struct consumer_run {
    bus_consumer *c;
    int64_t n, got, bytes;
    int64_t t_first_ns, t_end_ns;
    bool closed;
    int64_t handle_ms;
    uv_timer_t handling; /* --handle-ms: the one message in flight is answered when it fires */
    const bus_message *in_flight;
} consumer_run;

static void count_and_answer(consumer_run *r, const bus_message *m)
{
    if (r->got == 0) r->t_first_ns = core_mono_ns();
    r->bytes += (int64_t)m->value_len;
    if (++r->got == r->n) r->t_end_ns = core_mono_ns();
    bus_done(r->c, m, BUS_OK, NULL);
}

static void on_handled(uv_timer_t *t)
{
    consumer_run *r = t->data;
    const bus_message *m = r->in_flight;
    r->in_flight = NULL;
    count_and_answer(r, m);
}

static void handler(bus_consumer *c, const bus_message *m, void *data)
{
    consumer_run *r = data;
    r->c = c;
    if (r->handle_ms <= 0) {
        count_and_answer(r, m);
        return;
    }
    r->in_flight = m;
    uv_timer_start(&r->handling, on_handled, (uint64_t)r->handle_ms, 0);
}

static void on_consumer_closed(void *data)
{
    ((consumer_run *)data)->closed = true;
}

static void print_time(FILE *f, int64_t unix_ms)
{
    char t[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(unix_ms, t);
    /* ConsumerPerformance's "yyyy-MM-dd HH:mm:ss:SSS" */
    fprintf(f, "%.10s %.8s:%.3s", t, t + 11, t + 20);
}

static int run_consume(const opts *o)
{
    uv_loop_t *loop = uv_default_loop();
    consumer_run r = {.n = o->num_records, .handle_ms = o->handle_ms};
    uv_timer_init(loop, &r.handling);
    r.handling.data = &r;
    char group[128];
    if (o->group) {
        snprintf(group, sizeof group, "%s", o->group);
    } else {
        char id[CORE_UUID_STRLEN + 1];
        core_uuid_v7_string(id);
        snprintf(group, sizeof group, "ce-bus-perf-%s", id);
    }
    /* A deep local queue and librdkafka's own fetch size (libs/bus bounds both for services):
     * librdkafka 2.0.x stops fetching once queued.min.messages are waiting and looks again
     * only when its broker thread wakes (up to 1 s later), which starves a handler that is
     * faster than that. Settings given with -X come last and win. */
    const char *extra[2 * MAX_EXTRA + 16];
    size_t ne = 0;
    static const char *const tuned[] = {"queued.min.messages",
                                        "1000000",
                                        "queued.max.messages.kbytes",
                                        "1048576",
                                        "fetch.max.bytes",
                                        "52428800",
                                        NULL};
    for (size_t i = 0; tuned[i]; i++)
        extra[ne++] = tuned[i];
    for (int i = 0; i < 2 * o->nextra; i++)
        extra[ne++] = o->extra[i];
    extra[ne] = NULL;
    const char *topics[] = {o->topic, NULL};
    bus_consumer_config cfg = {.brokers = o->brokers,
                               .group_id = group,
                               .client_id = "ce-bus-perf",
                               .topics = topics,
                               .auto_offset_reset = "earliest",
                               .extra = extra};
    char err[512];
    int64_t start_ms = core_now_unix_ms();
    int64_t t0 = core_mono_ns();
    r.c = bus_consumer_new(loop, &cfg, handler, &r, err, sizeof err);
    if (!r.c) {
        fprintf(stderr, "ce-bus-perf: %s\n", err);
        return 2;
    }
    int64_t deadline = t0 + o->timeout_ms * 1000000;
    while (r.got < r.n && core_mono_ns() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    int64_t end_ns = r.got == r.n ? r.t_end_ns : core_mono_ns();
    int64_t end_ms = start_ms + (end_ns - t0) / 1000000;
    uv_timer_stop(&r.handling);
    if (r.in_flight) bus_done(r.c, r.in_flight, BUS_OK, NULL);
    r.in_flight = NULL;
    uv_close((uv_handle_t *)&r.handling, NULL);
    bus_consumer_close(r.c, on_consumer_closed, &r);
    while (!r.closed)
        uv_run(loop, UV_RUN_ONCE);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);

    double total_s = (double)(end_ns - t0) / 1e9;
    /* Like ConsumerPerformance's fetch.* figures, leave out joining the group: from the first
     * message to the last. */
    double rebalance_s = r.got ? (double)(r.t_first_ns - t0) / 1e9 : total_s;
    double fetch_s = total_s - rebalance_s;
    double mb = (double)r.bytes / (1024.0 * 1024.0);
    double fetch_rps = fetch_s > 0 ? (double)r.got / fetch_s : 0;
    double fetch_mbps = fetch_s > 0 ? mb / fetch_s : 0;
    printf("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, "
           "nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n");
    print_time(stdout, start_ms);
    printf(", ");
    print_time(stdout, end_ms);
    printf(", %.4f, %.4f, %" PRId64 ", %.4f, %.0f, %.0f, %.4f, %.4f\n", mb, mb / total_s, r.got,
           (double)r.got / total_s, rebalance_s * 1000, fetch_s * 1000, fetch_mbps, fetch_rps);
    if (r.got < r.n) {
        fprintf(stderr, "ce-bus-perf: timed out after %" PRId64 " of %" PRId64 " records\n", r.got,
                r.n);
        printf("RESULT records_per_sec=0 mb_per_sec=0\n");
        return 1;
    }
    printf("RESULT records_per_sec=%.1f mb_per_sec=%.2f\n", fetch_rps, fetch_mbps);
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    parse(argc, argv, &o);
    core_log_init("ce-bus-perf", CORE_LOG_WARN);
    core_log_set_fd(2); /* stdout is for the figures */
    if (strcmp(o.mode, "produce") == 0) {
        if (o.record_size <= 0) usage();
        return run_produce(&o);
    }
    if (strcmp(o.mode, "consume") == 0) return run_consume(&o);
    usage();
}
