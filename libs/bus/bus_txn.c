/*
 * The transactional producer (for outbox relays) and bus_read_last.
 *
 * librdkafka's commit and abort call rd_kafka_flush(), which would serve delivery-report
 * callbacks on the calling thread: the thread pool. So this producer takes delivery reports
 * and errors as events (RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR), which flush() does not
 * serve: the loop keeps serving them while a worker waits in commit.
 *
 * Only failed records get a delivery report (delivery.report.only.error): the commit says
 * whether the transaction's records were written, all of them or none. A report per record
 * was an event per record through the loop: a tenth of subscriber-manager's CPU while its
 * relay published a million-row import. The records of a committed transaction are counted
 * as delivered then (txn_counted).
 */
#include "bus_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum txn_op { TXN_OP_INIT, TXN_OP_COMMIT, TXN_OP_ABORT } txn_op;

struct bus_txn_producer {
    bus_client cl; /* first: librdkafka's opaque points here */
    char source[256];
    int64_t timeout_ms;
    bool busy; /* a blocking call is running on the thread pool */
    bool initialized;
    uv_work_t work;
    txn_op op;
    rd_kafka_error_t *result;
    bus_txn_cb cb;
    void *cb_data;
    bool closing;
    void (*close_done)(void *data);
    void *close_data;
    core_metric *m_produced;
    /* records produced in the open transaction, per topic: counted as delivered when it
     * commits */
    struct txn_topic_count {
        char *topic;
        int64_t n;
    } * counts;
    size_t ncounts;
};

static void txn_count(bus_txn_producer *t, const char *topic)
{
    for (size_t i = 0; i < t->ncounts; i++)
        if (!strcmp(t->counts[i].topic, topic)) {
            t->counts[i].n++;
            return;
        }
    t->counts = core_xrealloc(t->counts, (t->ncounts + 1) * sizeof *t->counts);
    t->counts[t->ncounts++] = (struct txn_topic_count){core_xstrdup(topic), 1};
}

/* The open transaction ended: its records count as delivered when it committed. */
static void txn_counted(bus_txn_producer *t, bool committed)
{
    for (size_t i = 0; i < t->ncounts; i++) {
        if (committed) core_counter_add(t->m_produced, t->counts[i].n, t->counts[i].topic, "ok");
        free(t->counts[i].topic);
    }
    free(t->counts);
    t->counts = NULL;
    t->ncounts = 0;
}

#define TXN_DRAIN_BUDGET 64

static void txn_drain(bus_client *cl)
{
    bus_txn_producer *t = cl->owner;
    int i = 0;
    for (; i < TXN_DRAIN_BUDGET; i++) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(cl->q, 0);
        if (!ev) break;
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_DR: {
            const rd_kafka_message_t *m;
            /* failures only (see the top): a failed record makes the commit fail (abortable) */
            while ((m = rd_kafka_event_message_next(ev))) {
                const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
                core_counter_add(t->m_produced, 1, topic, m->err ? "error" : "ok");
                if (!m->err) cl->connected = !cl->fatal;
            }
            break;
        }
        case RD_KAFKA_EVENT_ERROR:
            bus_client_on_error(cl,
                                rd_kafka_event_error_is_fatal(ev) ? RD_KAFKA_RESP_ERR__FATAL
                                                                  : rd_kafka_event_error(ev),
                                rd_kafka_event_error_string(ev));
            break;
        default:
            break;
        }
        rd_kafka_event_destroy(ev);
    }
    if (i == TXN_DRAIN_BUDGET) bus_client_kick(cl);
}

bus_txn_producer *bus_txn_new(uv_loop_t *loop, const bus_txn_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->brokers || !cfg->brokers[0]) {
        snprintf(err, errlen, "transactional producer: brokers is required");
        return NULL;
    }
    if (!cfg->transactional_id || !cfg->transactional_id[0]) {
        snprintf(err, errlen, "transactional producer: transactional_id is required");
        return NULL;
    }
    if (cfg->transaction_timeout_ms < 0) {
        snprintf(err, errlen, "transactional producer: transaction_timeout_ms must be >= 0");
        return NULL;
    }
    bus_txn_producer *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->timeout_ms = cfg->transaction_timeout_ms ? cfg->transaction_timeout_ms : 60000;
    if (cfg->source && cfg->source[0])
        snprintf(t->source, sizeof t->source, "%s", cfg->source);
    else
        snprintf(t->source, sizeof t->source, "/services/%s",
                 cfg->client_id && cfg->client_id[0] ? cfg->client_id : "unknown");

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)t->timeout_ms);
    bool ok = bus_conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen) &&
              (!cfg->client_id || !cfg->client_id[0] ||
               bus_conf_set(conf, "client.id", cfg->client_id, err, errlen)) &&
              bus_conf_set(conf, "transactional.id", cfg->transactional_id, err, errlen) &&
              bus_conf_set(conf, "transaction.timeout.ms", num, err, errlen) &&
              bus_conf_set(conf, "enable.idempotence", "true", err, errlen) &&
              bus_conf_set(conf, "partitioner", "murmur2_random", err, errlen) &&
              /* a relay's batch should leave at once: the commit waits for it anyway */
              bus_conf_set(conf, "linger.ms", "5", err, errlen) &&
              bus_conf_set(conf, "delivery.report.only.error", "true", err, errlen);
    if (!ok) {
        rd_kafka_conf_destroy(conf);
        free(t);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, t);
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
    rd_kafka_conf_set_log_cb(conf, bus_log_cb);

    char e[256];
    rd_kafka_t *rk = bus_rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "transactional producer: %s", e);
        free(t);
        return NULL;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(rk);
    if (!bus_client_start(&t->cl, loop, rk, q, txn_drain, t, 100, err, errlen)) {
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        free(t);
        return NULL;
    }
    t->m_produced = core_metric_counter(core_metrics_default(), "bus_produced_total",
                                        "Records the bus producer finished, by delivery result.",
                                        "topic,result");
    return t;
}

/* ---------------------------------------------------------------- blocking calls */

static void txn_close_now(bus_txn_producer *t);

static void txn_work(uv_work_t *w)
{
    bus_txn_producer *t = w->data;
    rd_kafka_error_t *e = NULL;
    /* Retriable errors of commit and abort (timeouts, a coordinator moving) are resumable:
     * try a few times. init reports them: the caller calls it again. */
    int tries = t->op == TXN_OP_INIT ? 1 : 3;
    for (int i = 0; i < tries; i++) {
        if (e) {
            rd_kafka_error_destroy(e);
            usleep(200 * 1000);
        }
        switch (t->op) {
        case TXN_OP_INIT:
            e = rd_kafka_init_transactions(t->cl.rk, (int)t->timeout_ms);
            break;
        case TXN_OP_COMMIT:
            e = rd_kafka_commit_transaction(t->cl.rk, -1);
            break;
        case TXN_OP_ABORT:
            e = rd_kafka_abort_transaction(t->cl.rk, -1);
            break;
        }
        if (!e || !rd_kafka_error_is_retriable(e) || rd_kafka_error_txn_requires_abort(e)) break;
    }
    t->result = e;
}

static void txn_after(uv_work_t *w, int status)
{
    (void)status;
    bus_txn_producer *t = w->data;
    t->busy = false;
    rd_kafka_error_t *e = t->result;
    t->result = NULL;
    static const char *const names[] = {"init_transactions", "commit_transaction",
                                        "abort_transaction"};
    char msg[512] = "";
    bool abortable = false;
    if (e) {
        abortable = rd_kafka_error_txn_requires_abort(e) && !rd_kafka_error_is_fatal(e);
        snprintf(msg, sizeof msg, "%s: %s%s", names[t->op], rd_kafka_error_string(e),
                 rd_kafka_error_is_fatal(e) ? " (fatal)" : "");
        core_log_warn("bus transaction call failed", CORE_F_STR("error", msg),
                      CORE_F_BOOL("abortable", abortable));
        rd_kafka_error_destroy(e);
    } else if (t->op == TXN_OP_INIT) {
        t->initialized = true;
    } else if (t->op == TXN_OP_COMMIT) {
        t->cl.connected = !t->cl.fatal; /* the brokers took the transaction */
    }
    if (t->op != TXN_OP_INIT) txn_counted(t, !e && t->op == TXN_OP_COMMIT);
    bus_txn_cb cb = t->cb;
    void *data = t->cb_data;
    t->cb = NULL;
    if (cb) cb(data, e ? msg : NULL, abortable);
    if (t->closing) txn_close_now(t);
}

static void txn_start(bus_txn_producer *t, txn_op op, bus_txn_cb cb, void *data)
{
    if (t->busy || t->closing) {
        if (cb)
            cb(data,
               t->closing ? "transactional producer is closing"
                          : "another transactional call is still running",
               false);
        return;
    }
    t->busy = true;
    t->op = op;
    t->cb = cb;
    t->cb_data = data;
    t->work.data = t;
    if (uv_queue_work(t->cl.loop, &t->work, txn_work, txn_after) != 0) {
        t->busy = false;
        if (cb) cb(data, "uv_queue_work failed", false);
    }
}

void bus_txn_init(bus_txn_producer *t, bus_txn_cb cb, void *data)
{
    txn_start(t, TXN_OP_INIT, cb, data);
}

void bus_txn_commit(bus_txn_producer *t, bus_txn_cb cb, void *data)
{
    txn_start(t, TXN_OP_COMMIT, cb, data);
}

void bus_txn_abort(bus_txn_producer *t, bus_txn_cb cb, void *data)
{
    txn_start(t, TXN_OP_ABORT, cb, data);
}

int bus_txn_begin(bus_txn_producer *t, char *err, size_t errlen)
{
    if (t->busy || t->closing || !t->initialized) {
        snprintf(err, errlen, "begin_transaction: %s",
                 t->closing ? "closing"
                 : t->busy  ? "a transactional call is running"
                            : "bus_txn_init has not succeeded");
        return RD_KAFKA_RESP_ERR__STATE;
    }
    rd_kafka_error_t *e = rd_kafka_begin_transaction(t->cl.rk);
    if (!e) return 0;
    int code = rd_kafka_error_code(e);
    snprintf(err, errlen, "begin_transaction: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return code;
}

int bus_txn_produce(bus_txn_producer *t, const bus_record *r, char *err, size_t errlen)
{
    if (!t || !r) {
        snprintf(err, errlen, "produce: no producer or record");
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    if (t->busy || t->closing) {
        snprintf(err, errlen, "produce: %s",
                 t->closing ? "closing" : "a transactional call is running");
        return RD_KAFKA_RESP_ERR__STATE;
    }
    rd_kafka_headers_t *h = rd_kafka_headers_new(8 + r->nheaders);
    int rc = bus_headers_build(h, r, t->source, r->verbatim ? 0 : core_now_unix_ms(), err, errlen);
    if (rc) {
        rd_kafka_headers_destroy(h);
        return rc;
    }
    if (r->verbatim && !r->nheaders) {
        rd_kafka_headers_destroy(h); /* bare: no header list at all */
        h = NULL;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        t->cl.rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_PARTITION(r->partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(r->key, r->key ? r->key_len : 0),
        RD_KAFKA_V_VALUE((void *)r->value, r->value ? r->value_len : 0), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_END);
    if (e) {
        if (h) rd_kafka_headers_destroy(h);
        snprintf(err, errlen, "produce to %s: %s", r->topic, rd_kafka_err2str(e));
        return e;
    }
    txn_count(t, r->topic);
    return 0;
}

/* ---------------------------------------------------------------- close */

static void txn_closed(bus_client *cl)
{
    bus_txn_producer *t = cl->owner;
    void (*done)(void *) = t->close_done;
    void *data = t->close_data;
    txn_counted(t, false);
    free(t);
    if (done) done(data);
}

static void txn_final(bus_client *cl)
{
    /* An open transaction is aborted by the broker (timeout) or by the next instance's
     * init_transactions, which fences this one. */
    rd_kafka_destroy(cl->rk);
}

static void txn_close_now(bus_txn_producer *t)
{
    bus_client_shutdown(&t->cl, txn_final, txn_closed);
}

void bus_txn_close(bus_txn_producer *t, void (*done)(void *data), void *data)
{
    if (!t || t->closing) return;
    t->closing = true;
    t->close_done = done;
    t->close_data = data;
    if (!t->busy) txn_close_now(t);
    /* else txn_after closes once the running call returns */
}

bool bus_txn_connected(const bus_txn_producer *t)
{
    return t && bus_client_connected(&t->cl);
}

/* ---------------------------------------------------------------- bus_read_last */

typedef struct read_last_job {
    uv_work_t work;
    char *brokers, *topic;
    int32_t partition;
    void *key;
    size_t key_len;
    char group[64];
    bus_read_last_cb cb;
    void *data;
    char err[512];
    bool found;
    void *value;
    size_t value_len;
} read_last_job;

static void read_last_keep(read_last_job *j, const rd_kafka_message_t *m)
{
    free(j->value);
    j->value = NULL;
    j->value_len = 0;
    j->found = m->payload != NULL; /* a tombstone deletes the key */
    if (!j->found) return;
    j->value = malloc(m->len ? m->len : 1);
    if (!j->value) abort();
    memcpy(j->value, m->payload, m->len);
    j->value_len = m->len;
}

/* On the thread pool, start to end: a temporary consumer without a group membership. */
static void read_last_work(uv_work_t *w)
{
    read_last_job *j = w->data;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bool ok = bus_conf_set(conf, "bootstrap.servers", j->brokers, j->err, sizeof j->err) &&
              bus_conf_set(conf, "group.id", j->group, j->err, sizeof j->err) &&
              bus_conf_set(conf, "enable.auto.commit", "false", j->err, sizeof j->err) &&
              bus_conf_set(conf, "enable.auto.offset.store", "false", j->err, sizeof j->err) &&
              bus_conf_set(conf, "isolation.level", "read_committed", j->err, sizeof j->err) &&
              bus_conf_set(conf, "enable.partition.eof", "true", j->err, sizeof j->err) &&
              bus_conf_set(conf, "auto.offset.reset", "earliest", j->err, sizeof j->err);
    if (!ok) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_conf_set_log_cb(conf, bus_log_cb);
    char e[256];
    rd_kafka_t *rk = bus_rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(j->err, sizeof j->err, "read_last: %s", e);
        return;
    }
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t qe =
        rd_kafka_query_watermark_offsets(rk, j->topic, j->partition, &lo, &hi, 10000);
    if (qe) {
        snprintf(j->err, sizeof j->err, "read_last %s [%d]: watermarks: %s", j->topic,
                 (int)j->partition, rd_kafka_err2str(qe));
    } else if (hi > lo) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, j->topic, j->partition)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_resp_err_t ae = rd_kafka_assign(rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (ae) {
            snprintf(j->err, sizeof j->err, "read_last: assign: %s", rd_kafka_err2str(ae));
        } else {
            int64_t deadline = core_mono_ns() + (int64_t)60 * 1000000000;
            for (;;) {
                if (core_mono_ns() > deadline) {
                    snprintf(j->err, sizeof j->err,
                             "read_last %s [%d]: timed out before the end of the partition",
                             j->topic, (int)j->partition);
                    break;
                }
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m) continue;
                bool end = false;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    end = true; /* read_committed: the last stable offset */
                } else if (m->err) {
                    bool fatal = m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                                 m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                                 m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                                 m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
                    if (fatal) {
                        snprintf(j->err, sizeof j->err, "read_last %s [%d]: %s", j->topic,
                                 (int)j->partition, rd_kafka_message_errstr(m));
                        end = true;
                    }
                } else {
                    if (m->key_len == j->key_len &&
                        (j->key_len == 0 || (m->key && memcmp(m->key, j->key, j->key_len) == 0)))
                        read_last_keep(j, m);
                    end = m->offset >= hi - 1;
                }
                rd_kafka_message_destroy(m);
                if (end) break;
            }
        }
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void read_last_noop(uv_work_t *w)
{
    (void)w;
}

static void read_last_after(uv_work_t *w, int status)
{
    (void)status;
    read_last_job *j = w->data;
    if (j->err[0]) {
        j->cb(j->data, j->err, false, NULL, 0);
    } else {
        j->cb(j->data, NULL, j->found, j->found ? j->value : NULL, j->found ? j->value_len : 0);
    }
    free(j->value);
    free(j->brokers);
    free(j->topic);
    free(j->key);
    free(j);
}

void bus_read_last(uv_loop_t *loop, const char *brokers, const char *topic, int32_t partition,
                   const void *key, size_t key_len, bus_read_last_cb cb, void *data)
{
    read_last_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->cb = cb;
    j->data = data;
    if (!brokers || !brokers[0] || !topic || !topic[0] || partition < 0 || (!key && key_len)) {
        snprintf(j->err, sizeof j->err, "read_last: brokers, topic and partition are required");
    }
    j->brokers = strdup(brokers ? brokers : "");
    j->topic = strdup(topic ? topic : "");
    j->key = malloc(key_len ? key_len : 1);
    if (!j->brokers || !j->topic || !j->key) abort();
    if (key_len) memcpy(j->key, key, key_len);
    j->key_len = key_len;
    j->partition = partition;
    /* A group id only to satisfy the consumer API: never joined, nothing committed. */
    char id[CORE_UUID_STRLEN + 1];
    bus_uuid_v7_string(id);
    snprintf(j->group, sizeof j->group, "bus-read-last-%s", id);
    j->work.data = j;
    /* Even a bad argument is reported from the loop, not from inside this call. */
    if (uv_queue_work(loop, &j->work, j->err[0] ? read_last_noop : read_last_work,
                      read_last_after) != 0) {
        if (!j->err[0]) snprintf(j->err, sizeof j->err, "read_last: uv_queue_work failed");
        read_last_after(&j->work, 0);
    }
}
