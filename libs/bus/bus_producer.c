/* The idempotent producer: records go out with CloudEvents headers, delivery reports come back
 * on the loop (librdkafka's main queue is polled only there), one callback per record. */
#include "bus_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-record delivery callback, carried as the message's opaque. */
#define PRODUCER_TOPIC_CACHE 32

typedef struct producer_dr {
    bus_delivery_cb cb;
    void *opaque;
    struct producer_dr *next; /* on the free list */
} producer_dr;

struct bus_producer {
    bus_client cl; /* first: librdkafka's opaque points here */
    char source[256];
    size_t outstanding;

    bool space_armed;
    size_t low_water;
    void (*space_cb)(void *data);
    void *space_data;
    uv_timer_t space_timer;

    /* Topic handles by name: producev by name looks the topic up under a lock every time. */
    struct {
        char *name;
        rd_kafka_topic_t *rkt;
    } topics[PRODUCER_TOPIC_CACHE];
    size_t ntopics;

    /* Spent delivery records, reused: one malloc per record less on the hot path. */
    producer_dr *free_drs;
    size_t nfree_drs;

    bool closing, purged, finishing;
    int64_t close_deadline_ns, purge_deadline_ns;
    size_t remaining;
    uv_timer_t close_timer;
    void (*close_done)(void *data, size_t remaining);
    void *close_data;
    int own_handles;

    /* Delivery counts are added to the registry per run of one topic, not per record. */
    core_metric *m_produced;
    const rd_kafka_topic_t *m_rkt;
    char m_topic[256];
    double m_ok, m_err;
};

/* Serve at most this many batches of events per wake-up, so the loop stays fair. */
#define PRODUCER_DRAIN_BUDGET 64

static void producer_metrics_flush(bus_producer *p)
{
    if (p->m_ok > 0) core_counter_add(p->m_produced, p->m_ok, p->m_topic, "ok");
    if (p->m_err > 0) core_counter_add(p->m_produced, p->m_err, p->m_topic, "error");
    p->m_ok = p->m_err = 0;
}

static void producer_count(bus_producer *p, const rd_kafka_topic_t *rkt, bool ok)
{
    if (rkt != p->m_rkt) {
        producer_metrics_flush(p);
        p->m_rkt = rkt;
        snprintf(p->m_topic, sizeof p->m_topic, "%s", rkt ? rd_kafka_topic_name(rkt) : "");
    }
    if (ok)
        p->m_ok += 1;
    else
        p->m_err += 1;
}

static void producer_space_check(bus_producer *p)
{
    if (p->space_armed && p->outstanding <= p->low_water) {
        p->space_armed = false;
        p->space_cb(p->space_data);
    }
}

static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    bus_producer *p = opaque;
    if (p->outstanding > 0) p->outstanding--;
    producer_count(p, m->rkt, m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
    if (!m->err) p->cl.connected = !p->cl.fatal;
    producer_dr *d = m->_private;
    if (d) {
        bus_delivery_cb cb = d->cb;
        void *o = d->opaque;
        if (p->nfree_drs < 65536) {
            d->next = p->free_drs;
            p->free_drs = d;
            p->nfree_drs++;
        } else {
            free(d);
        }
        cb(o, m->err, m->err ? rd_kafka_err2str(m->err) : NULL, m->partition, m->offset);
    }
}

static void producer_drain(bus_client *cl)
{
    bus_producer *p = cl->owner;
    int i = 0;
    for (; i < PRODUCER_DRAIN_BUDGET; i++)
        if (rd_kafka_poll(cl->rk, 0) == 0) break;
    if (i == PRODUCER_DRAIN_BUDGET) bus_client_kick(cl);
    producer_metrics_flush(p);
    producer_space_check(p);
}

static void producer_space_timer_cb(uv_timer_t *t)
{
    producer_space_check(t->data);
}

bus_producer *bus_producer_new(uv_loop_t *loop, const bus_producer_config *cfg, char *err,
                               size_t errlen)
{
    rd_kafka_conf_t *conf = bus_producer_conf(cfg, err, errlen);
    if (!conf) return NULL;
    bus_producer *p = calloc(1, sizeof *p);
    if (!p) abort();
    if (cfg->source && cfg->source[0])
        snprintf(p->source, sizeof p->source, "%s", cfg->source);
    else
        snprintf(p->source, sizeof p->source, "/services/%s",
                 cfg->client_id && cfg->client_id[0] ? cfg->client_id : "unknown");
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, producer_dr_cb);
    rd_kafka_conf_set_error_cb(conf, bus_client_error_cb);
    rd_kafka_conf_set_log_cb(conf, bus_log_cb);

    char e[256];
    rd_kafka_t *rk = bus_rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "producer: %s", e);
        free(p);
        return NULL;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(rk);
    if (!bus_client_start(&p->cl, loop, rk, q, producer_drain, p, 100, err, errlen)) {
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        free(p);
        return NULL;
    }
    uv_timer_init(loop, &p->space_timer);
    p->space_timer.data = p;
    uv_timer_init(loop, &p->close_timer);
    p->close_timer.data = p;
    p->own_handles = 2;
    p->m_produced = core_metric_counter(core_metrics_default(), "bus_produced_total",
                                        "Records the bus producer finished, by delivery result.",
                                        "topic,result");
    return p;
}

static rd_kafka_topic_t *producer_topic(bus_producer *p, const char *topic)
{
    for (size_t i = 0; i < p->ntopics; i++)
        if (strcmp(p->topics[i].name, topic) == 0) return p->topics[i].rkt;
    if (p->ntopics == PRODUCER_TOPIC_CACHE) return NULL; /* by name, then */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->cl.rk, topic, NULL);
    if (!rkt) return NULL;
    char *name = strdup(topic);
    if (!name) abort();
    p->topics[p->ntopics].name = name;
    p->topics[p->ntopics].rkt = rkt;
    p->ntopics++;
    return rkt;
}

int bus_producer_send_raw(bus_producer *p, const char *topic, int32_t partition, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          rd_kafka_headers_t *h, bus_delivery_cb cb, void *opaque)
{
    if (p->closing || p->cl.shutting_down) return RD_KAFKA_RESP_ERR__STATE;
    producer_dr *d = NULL;
    if (cb) {
        if (p->free_drs) {
            d = p->free_drs;
            p->free_drs = d->next;
            p->nfree_drs--;
        } else {
            d = malloc(sizeof *d);
            if (!d) abort();
        }
        d->cb = cb;
        d->opaque = opaque;
    }
    rd_kafka_topic_t *rkt = producer_topic(p, topic);
    rd_kafka_resp_err_t e;
    if (rkt)
        e = rd_kafka_producev(p->cl.rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key, key ? key_len : 0),
                              RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    else
        e = rd_kafka_producev(p->cl.rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key, key ? key_len : 0),
                              RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (e) {
        if (d) {
            d->next = p->free_drs;
            p->free_drs = d;
            p->nfree_drs++;
        }
        return e;
    }
    p->outstanding++;
    return 0;
}

int bus_produce(bus_producer *p, const bus_record *r, bus_delivery_cb cb, void *opaque)
{
    if (!p || !r) return RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (p->closing) return RD_KAFKA_RESP_ERR__STATE;
    char err[256];
    int rc = 0;
    rd_kafka_headers_t *h = NULL;
    if (!r->topic || !r->topic[0]) {
        snprintf(err, sizeof err, "bus_record without a topic");
        rc = RD_KAFKA_RESP_ERR__INVALID_ARG;
    } else if (!r->verbatim || r->nheaders) {
        /* A verbatim record without headers goes out without a header list at all. */
        h = rd_kafka_headers_new(r->verbatim ? r->nheaders : 8 + r->nheaders);
        rc = bus_headers_build(h, r, p->source, r->verbatim ? 0 : core_now_unix_ms(), err,
                               sizeof err);
    }
    if (rc) {
        core_log_error("bus_produce: invalid record", CORE_F_STR("error", err));
    } else {
        rc = bus_producer_send_raw(p, r->topic, r->partition, r->key, r->key_len, r->value,
                                   r->value_len, h, cb, opaque);
    }
    if (rc) {
        if (h) rd_kafka_headers_destroy(h);
        if (rc != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            core_counter_add(p->m_produced, 1, r->topic ? r->topic : "", "rejected");
    }
    return rc;
}

size_t bus_producer_outstanding(const bus_producer *p)
{
    return p ? p->outstanding : 0;
}

void bus_producer_on_space(bus_producer *p, size_t low_water, void (*cb)(void *data), void *data)
{
    p->space_armed = cb != NULL;
    p->low_water = low_water;
    p->space_cb = cb;
    p->space_data = data;
    /* Already there: call back from the loop, not from inside this call. */
    if (cb && p->outstanding <= low_water)
        uv_timer_start(&p->space_timer, producer_space_timer_cb, 0, 0);
}

bool bus_producer_connected(const bus_producer *p)
{
    return p && bus_client_connected(&p->cl);
}

/* ---------------------------------------------------------------- close */

static void producer_handle_closed(uv_handle_t *h)
{
    bus_producer *p = h->data;
    if (--p->own_handles > 0) return;
    void (*done)(void *, size_t) = p->close_done;
    void *data = p->close_data;
    size_t remaining = p->remaining;
    for (size_t i = 0; i < p->ntopics; i++)
        free(p->topics[i].name);
    while (p->free_drs) {
        producer_dr *d = p->free_drs;
        p->free_drs = d->next;
        free(d);
    }
    free(p);
    if (done) done(data, remaining);
}

static void producer_closed(bus_client *cl)
{
    bus_producer *p = cl->owner;
    uv_close((uv_handle_t *)&p->space_timer, producer_handle_closed);
    uv_close((uv_handle_t *)&p->close_timer, producer_handle_closed);
}

static void producer_final(bus_client *cl)
{
    bus_producer *p = cl->owner;
    for (size_t i = 0; i < p->ntopics; i++)
        rd_kafka_topic_destroy(p->topics[i].rkt);
    rd_kafka_destroy(cl->rk); /* blocks until librdkafka's threads are gone */
}

static void producer_finish(bus_producer *p)
{
    if (p->finishing) return;
    p->finishing = true;
    uv_timer_stop(&p->close_timer);
    uv_timer_stop(&p->space_timer);
    if (p->outstanding > 0) {
        core_log_error("bus producer closed with records undelivered",
                       CORE_F_INT("outstanding", p->outstanding));
    }
    bus_client_shutdown(&p->cl, producer_final, producer_closed);
}

static void producer_close_tick(uv_timer_t *t)
{
    bus_producer *p = t->data;
    producer_drain(&p->cl);
    if (p->outstanding == 0) {
        producer_finish(p);
        return;
    }
    int64_t now = core_mono_ns();
    if (!p->purged && now >= p->close_deadline_ns) {
        /* Out of time: fail what is left so every record's callback still runs once. */
        p->remaining = p->outstanding;
        core_log_warn("bus producer close timed out; purging",
                      CORE_F_INT("outstanding", p->outstanding));
        rd_kafka_purge(p->cl.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        p->purged = true;
        p->purge_deadline_ns = now + 5 * (int64_t)1000000000;
        return;
    }
    if (p->purged && now >= p->purge_deadline_ns) {
        producer_finish(p);
        return;
    }
    /* Non-blocking: tells the broker threads not to wait for linger.ms. */
    rd_kafka_flush(p->cl.rk, 0);
}

void bus_producer_close(bus_producer *p, int64_t timeout_ms,
                        void (*done)(void *data, size_t remaining), void *data)
{
    if (!p || p->closing) return;
    p->closing = true;
    p->space_armed = false;
    p->close_done = done;
    p->close_data = data;
    if (timeout_ms < 0) timeout_ms = 0;
    p->close_deadline_ns = core_mono_ns() + timeout_ms * 1000000;
    uv_timer_start(&p->close_timer, producer_close_tick, 0, 10);
}
