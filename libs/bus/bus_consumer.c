/*
 * The consumer: one message with its handler at a time; the offset is stored (and later
 * committed by librdkafka's auto-commit, or by close) only after the handler said BUS_OK, or
 * after the dead letter's delivery report came back without error. Retries wait on a uv timer
 * with full-jitter exponential backoff and redeliver the same message.
 *
 * Messages are pulled from librdkafka in batches (rd_kafka_consume_batch_queue: one call, one
 * poll timestamp, per batch instead of per message) into a small buffer and handed out one at a
 * time from there. Rebalance callbacks run inside that call: they drop buffered messages of
 * revoked partitions, and the messages the call itself returns are checked against the
 * assignment afterwards (consumer_filter_unassigned). The batch size adapts to the handlers: a
 * batch should be handed out within CONSUMER_BATCH_TARGET_MS, so slow handlers get batches of
 * one, as before; a batch that overruns it pulls one more message every CONSUMER_BATCH_TARGET_MS
 * to keep rebalances and max.poll.interval.ms served.
 */
#include "bus_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum cur_state {
    CUR_IDLE,        /* nothing in flight: pull the next message */
    CUR_HANDLER,     /* the handler owns it until bus_done */
    CUR_BACKOFF,     /* BUS_RETRY: waiting on retry_timer to redeliver */
    CUR_DLQ,         /* dead letter produced, waiting for its delivery report */
    CUR_DLQ_BACKOFF, /* the dead letter could not be written: waiting to try again */
} cur_state;

/* One message with its handler (or waiting to be retried, or dead-lettered). */
typedef struct consumer_slot {
    bus_consumer *c;
    cur_state state;
    bus_msg_internal cur;
    rd_kafka_message_t *rkm;
    bool revoked; /* its partition was taken away while in flight: never store its offset */
    bool in_handler;
    uint64_t started_ms; /* loop time: no clock read per message; sub-ms handlers read 0 */
    unsigned dlq_tries;
    char error[512];
    uv_timer_t retry_timer;
} consumer_slot;

struct bus_consumer {
    bus_client cl; /* first: librdkafka's opaque points here */
    bus_consumer_settings s;
    bus_handler handler;
    void *data;
    bus_producer *dlq;
    bool all_partitions;
    bool store_offsets;
    char **topics;

    /* max_in_flight slots; at most one holds a message of any one partition, so each
     * partition's messages are handled one after the other, in offset order. */
    consumer_slot *slots;
    unsigned nslots;
    /* Messages pulled from librdkafka and not yet handed out: buf[head..len), in the order
     * librdkafka returned them (so per partition in offset order). */
    rd_kafka_message_t **buf;
    size_t head, len;
    size_t batch_want; /* size of the next batch pulled while idle */
    size_t batch_n;    /* size of the batch being handed out; 0: not measured */
    uint64_t batch_t0; /* uv_hrtime when it was pulled */
    uint64_t batch_ms; /* loop time of the last pull */
    bool rebalanced;   /* a rebalance callback ran during the current pull */
    bool in_pump;

    /* Offsets whose handlers said BUS_OK (or whose dead letter was written), not yet handed to
     * librdkafka: the next offset per partition. Stored in one rd_kafka_offsets_store call at
     * the end of each pump burst, when a message finishes outside a burst, on revocation
     * (before the partitions go) and before the final commit. */
    struct pending_offset {
        char topic[256];
        int32_t partition;
        int64_t next;
    } * pending;
    size_t npending, pending_cap;

    /* all_partitions: assignment from metadata, fetched on the thread pool */
    uv_work_t assign_work;
    bool assign_running;
    rd_kafka_topic_partition_list_t *assign_list;
    char assign_err[256];
    unsigned assign_tries;
    uv_timer_t assign_timer;

    bool closing, final_started;
    void (*close_done)(void *data);
    void *close_data;
    int own_handles;

    core_metric *m_consumed, *m_dead, *m_seconds;
    /* BUS_OK counts and handler durations reach the registry per run of one topic (and, for
     * durations, of one value: sub-millisecond handlers all read 0), not per message. */
    const char *m_topic;
    char m_topic_buf[256];
    double m_ok;
    uint64_t m_dur_ms, m_dur_n;
};

/* Messages handed out per wake-up before yielding to the rest of the loop. */
#define CONSUMER_PUMP_BUDGET 512
/* Largest batch pulled from librdkafka at once. */
#define CONSUMER_BATCH_MAX 512
/* A batch should be handed out within this time; slower, the next one is smaller. */
#define CONSUMER_BATCH_TARGET_MS 10u
#define CONSUMER_BATCH_TARGET_NS (CONSUMER_BATCH_TARGET_MS * 1000u * 1000u)

static void consumer_pump(bus_consumer *c);
static void consumer_maybe_final(bus_consumer *c);
static void consumer_dead_letter(consumer_slot *sl);

/* ---------------------------------------------------------------- metrics */

static void consumer_metrics_flush(bus_consumer *c)
{
    if (!c->m_topic) return;
    if (c->m_ok > 0) core_counter_add(c->m_consumed, c->m_ok, c->m_topic_buf, "ok");
    if (c->m_dur_n > 0)
        core_histogram_observe_n(c->m_seconds, (double)c->m_dur_ms / 1e3, c->m_dur_n,
                                 c->m_topic_buf);
    c->m_ok = 0;
    c->m_dur_n = 0;
    c->m_topic = NULL; /* the next burst copies the name again: never a stale pointer */
}

/* Makes topic the one the tallies are for. */
static void consumer_metrics_topic(bus_consumer *c, const char *topic)
{
    if (topic == c->m_topic) return;
    consumer_metrics_flush(c);
    c->m_topic = topic;
    snprintf(c->m_topic_buf, sizeof c->m_topic_buf, "%s", topic);
}

static void consumer_observe_duration(bus_consumer *c, const char *topic, uint64_t ms)
{
    consumer_metrics_topic(c, topic);
    if (c->m_dur_n > 0 && c->m_dur_ms != ms) {
        core_histogram_observe_n(c->m_seconds, (double)c->m_dur_ms / 1e3, c->m_dur_n,
                                 c->m_topic_buf);
        c->m_dur_n = 0;
    }
    c->m_dur_ms = ms;
    c->m_dur_n++;
}

/* ---------------------------------------------------------------- the message in flight */

/* Hands the pending offsets to librdkafka (which commits them with the next auto commit, or
 * the final commit). */
static void consumer_store_pending(bus_consumer *c)
{
    if (c->npending == 0) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)c->npending);
    for (size_t i = 0; i < c->npending; i++)
        rd_kafka_topic_partition_list_add(l, c->pending[i].topic, c->pending[i].partition)->offset =
            c->pending[i].next;
    c->npending = 0;
    if (rd_kafka_offsets_store(c->cl.rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++) {
            if (!l->elems[i].err) continue;
            /* The partition went away under us: its new owner gets the messages again. */
            core_log_warn("bus consumer: offset not stored", CORE_F_STR("topic", l->elems[i].topic),
                          CORE_F_INT("partition", l->elems[i].partition),
                          CORE_F_INT("offset", l->elems[i].offset - 1),
                          CORE_F_STR("error", rd_kafka_err2str(l->elems[i].err)));
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Remembers that the slot's message is done with: its partition's next offset. */
static void consumer_store_later(bus_consumer *c, const consumer_slot *sl)
{
    const char *topic = sl->cur.msg.topic;
    int32_t part = sl->rkm->partition;
    for (size_t i = 0; i < c->npending; i++) {
        struct pending_offset *po = &c->pending[i];
        if (po->partition == part && strcmp(po->topic, topic) == 0) {
            po->next = sl->rkm->offset + 1;
            return;
        }
    }
    if (strlen(topic) >= sizeof c->pending[0].topic) { /* cannot happen: Kafka allows 249 */
        rd_kafka_offset_store(sl->rkm->rkt, part, sl->rkm->offset);
        return;
    }
    if (c->npending == c->pending_cap) {
        size_t cap = c->pending_cap ? 2 * c->pending_cap : 8;
        struct pending_offset *np = realloc(c->pending, cap * sizeof *np);
        if (!np) abort();
        c->pending = np;
        c->pending_cap = cap;
    }
    struct pending_offset *po = &c->pending[c->npending++];
    memcpy(po->topic, topic, strlen(topic) + 1);
    po->partition = part;
    po->next = sl->rkm->offset + 1;
}

static consumer_slot *consumer_free_slot(bus_consumer *c)
{
    for (unsigned i = 0; i < c->nslots; i++)
        if (c->slots[i].state == CUR_IDLE) return &c->slots[i];
    return NULL;
}

static bool consumer_all_idle(const bus_consumer *c)
{
    for (unsigned i = 0; i < c->nslots; i++)
        if (c->slots[i].state != CUR_IDLE || c->slots[i].in_handler) return false;
    return true;
}

/* Whether a slot holds a message of m's partition: m must wait for it. */
static bool consumer_partition_busy(const bus_consumer *c, const rd_kafka_message_t *m)
{
    for (unsigned i = 0; i < c->nslots; i++) {
        const consumer_slot *sl = &c->slots[i];
        if (sl->state != CUR_IDLE && sl->rkm->partition == m->partition &&
            strcmp(sl->cur.msg.topic, rd_kafka_topic_name(m->rkt)) == 0)
            return true;
    }
    return false;
}

static void consumer_finish(consumer_slot *sl, bool store)
{
    bus_consumer *c = sl->c;
    if (store && c->store_offsets && !sl->revoked) {
        consumer_store_later(c, sl);
        if (!c->in_pump) consumer_store_pending(c);
    }
    if (!c->in_pump) consumer_metrics_flush(c); /* a pump flushes once, at its end */
    rd_kafka_message_destroy(sl->rkm);
    sl->rkm = NULL;
    sl->cur.hdrs = NULL;
    sl->cur.magic = 0;
    sl->state = CUR_IDLE;
    sl->revoked = false;
    if (c->closing)
        consumer_maybe_final(c);
    else if (!c->in_pump)
        bus_client_kick(&c->cl); /* next message on the next loop turn, not in this stack */
}

static void consumer_call_handler(consumer_slot *sl)
{
    bus_consumer *c = sl->c;
    char prev[CORE_TRACE_ID_LEN + 1];
    const char *t = core_log_trace();
    size_t tl = strlen(t);
    bool had = tl > 0 && tl < sizeof prev;
    if (had) memcpy(prev, t, tl + 1);
    core_log_set_trace(sl->cur.msg.trace_id);
    sl->state = CUR_HANDLER;
    sl->started_ms = uv_now(c->cl.loop);
    sl->in_handler = true;
    c->handler(c, &sl->cur.msg, c->data);
    sl->in_handler = false;
    core_log_set_trace(had ? prev : NULL);
    /* bus_done inside the handler while closing: the close continues here. */
    if (c->closing) consumer_maybe_final(c);
}

static void consumer_dispatch(consumer_slot *sl, rd_kafka_message_t *rkm)
{
    sl->rkm = rkm;
    sl->revoked = false;
    sl->dlq_tries = 0;
    sl->error[0] = '\0';
    bus_message_from_rkm(&sl->cur, rkm);
    sl->cur.msg.attempt = 1;
    consumer_call_handler(sl);
}

static void consumer_retry_timer_cb(uv_timer_t *t)
{
    consumer_slot *sl = t->data;
    if (sl->state == CUR_BACKOFF) {
        sl->cur.msg.attempt++;
        consumer_call_handler(sl);
    } else if (sl->state == CUR_DLQ_BACKOFF) {
        consumer_dead_letter(sl);
    }
}

static void consumer_dlq_retry_later(consumer_slot *sl)
{
    bus_consumer *c = sl->c;
    if (c->closing) {
        /* Not stored: the message comes back after the restart. */
        core_log_warn("bus consumer closing: dead letter abandoned, message will be redelivered",
                      CORE_F_STR("topic", sl->cur.msg.topic),
                      CORE_F_INT("partition", sl->cur.msg.partition),
                      CORE_F_INT("offset", sl->cur.msg.offset));
        consumer_finish(sl, false);
        return;
    }
    sl->state = CUR_DLQ_BACKOFF;
    int64_t d = bus_retry_delay_ms(sl->dlq_tries, c->s.backoff_base_ms, c->s.backoff_max_ms);
    uv_timer_start(&sl->retry_timer, consumer_retry_timer_cb, (uint64_t)d, 0);
}

static void consumer_dlq_delivered(void *opaque, int err, const char *errstr, int32_t partition,
                                   int64_t offset)
{
    consumer_slot *sl = opaque;
    bus_consumer *c = sl->c;
    if (sl->state != CUR_DLQ) return; /* cannot happen: one dead letter per slot at a time */
    if (err == 0) {
        core_counter_add(c->m_dead, 1, sl->cur.msg.topic);
        core_log_warn("bus consumer: message dead-lettered", CORE_F_STR("topic", sl->cur.msg.topic),
                      CORE_F_INT("partition", sl->cur.msg.partition),
                      CORE_F_INT("offset", sl->cur.msg.offset),
                      CORE_F_STR("dlq_topic", c->s.dlq_topic),
                      CORE_F_INT("dlq_partition", partition), CORE_F_INT("dlq_offset", offset),
                      CORE_F_INT("attempts", sl->cur.msg.attempt), CORE_F_STR("error", sl->error));
        consumer_finish(sl, true);
        return;
    }
    core_log_error("bus consumer: dead letter not written; will retry",
                   CORE_F_STR("topic", sl->cur.msg.topic), CORE_F_STR("dlq_topic", c->s.dlq_topic),
                   CORE_F_STR("error", errstr ? errstr : ""));
    consumer_dlq_retry_later(sl);
}

static void consumer_dead_letter(consumer_slot *sl)
{
    bus_consumer *c = sl->c;
    sl->dlq_tries++;
    if (!c->dlq) {
        core_log_error("bus consumer: a message needs the dead-letter topic but the consumer has "
                       "no dlq_producer; holding it",
                       CORE_F_STR("topic", sl->cur.msg.topic),
                       CORE_F_INT("offset", sl->cur.msg.offset), CORE_F_STR("error", sl->error));
        consumer_dlq_retry_later(sl);
        return;
    }
    rd_kafka_headers_t *orig = NULL;
    if (rd_kafka_message_headers(sl->rkm, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR) orig = NULL;
    bus_dlq_info info = {
        .topic = sl->cur.msg.topic,
        .partition = sl->rkm->partition,
        .offset = sl->rkm->offset,
        .group = c->s.group,
        .error = sl->error,
        .attempts = sl->cur.msg.attempt,
        .time_ms = core_now_unix_ms(),
    };
    rd_kafka_headers_t *h = bus_dlq_headers(orig, &info);
    sl->state = CUR_DLQ;
    int rc = bus_producer_send_raw(c->dlq, c->s.dlq_topic, BUS_PARTITION_ANY, sl->rkm->key,
                                   sl->rkm->key_len, sl->rkm->payload, sl->rkm->len, h,
                                   consumer_dlq_delivered, sl);
    if (rc) {
        rd_kafka_headers_destroy(h);
        core_log_error("bus consumer: dead letter not accepted; will retry",
                       CORE_F_STR("dlq_topic", c->s.dlq_topic),
                       CORE_F_STR("error", rd_kafka_err2str((rd_kafka_resp_err_t)rc)));
        consumer_dlq_retry_later(sl);
    }
}

void bus_done(bus_consumer *c, const bus_message *m, bus_result result, const char *error)
{
    consumer_slot *sl = NULL;
    for (unsigned i = 0; c && i < c->nslots; i++)
        if (m == &c->slots[i].cur.msg && c->slots[i].state == CUR_HANDLER) sl = &c->slots[i];
    if (!sl) {
        core_log_error("bus_done for a message the consumer is not handling");
        return;
    }
    const char *topic = sl->cur.msg.topic;
    consumer_observe_duration(c, topic, uv_now(c->cl.loop) - sl->started_ms);
    if (result == BUS_OK) {
        c->m_ok += 1; /* for c->m_topic, which consumer_observe_duration just made topic */
        consumer_finish(sl, true);
        return;
    }
    snprintf(sl->error, sizeof sl->error, "%s", error && error[0] ? error : "handler failed");
    bool retry = result == BUS_RETRY;
    core_counter_add(c->m_consumed, 1, topic, retry ? "retry" : "fail");
    if (sl->revoked) {
        consumer_finish(sl, false); /* the partition's new owner takes it from here */
        return;
    }
    if (retry && sl->cur.msg.attempt < c->s.max_attempts) {
        if (c->closing) {
            consumer_finish(sl, false); /* redelivered after the restart */
            return;
        }
        sl->state = CUR_BACKOFF;
        int64_t d =
            bus_retry_delay_ms(sl->cur.msg.attempt, c->s.backoff_base_ms, c->s.backoff_max_ms);
        core_log_info("bus consumer: handler asked to retry", CORE_F_STR("topic", topic),
                      CORE_F_INT("offset", sl->cur.msg.offset),
                      CORE_F_INT("attempt", sl->cur.msg.attempt), CORE_F_INT("delay_ms", d),
                      CORE_F_STR("error", sl->error));
        uv_timer_start(&sl->retry_timer, consumer_retry_timer_cb, (uint64_t)d, 0);
        return;
    }
    if (retry) {
        size_t n = strlen(sl->error);
        snprintf(sl->error + n, sizeof sl->error - n, " (gave up after %u attempts)",
                 sl->cur.msg.attempt);
    }
    consumer_dead_letter(sl);
}

/* ---------------------------------------------------------------- pulling */

static void consumer_log_error_message(const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
    bool serious = m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                   m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                   m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    core_log_emit(serious ? CORE_LOG_ERROR : CORE_LOG_WARN, "bus consumer: consume error",
                  CORE_F_STR("topic", m->rkt ? rd_kafka_topic_name(m->rkt) : ""),
                  CORE_F_INT("partition", m->partition),
                  CORE_F_STR("error", rd_kafka_message_errstr(m)), CORE_LOG_END);
}

/* Destroys a pulled message that will not be handed out. */
static void consumer_drop(rd_kafka_message_t *m)
{
    if (m->err) consumer_log_error_message(m);
    rd_kafka_message_destroy(m);
}

/* After a fill during which a rebalance callback ran: librdkafka 2.0's batch API can return
 * messages of partitions revoked during the call (2.0.0 release notes, "Known Issues"). Keep
 * only those of partitions assigned now; a partition taken away and given back within the
 * call keeps its messages, which librdkafka's version barrier has already sorted out. */
static void consumer_filter_unassigned(bus_consumer *c)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(c->cl.rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR) a = NULL;
    size_t kept = c->head;
    for (size_t i = c->head; i < c->len; i++) {
        rd_kafka_message_t *m = c->buf[i];
        if (!a || !rd_kafka_topic_partition_list_find(a, rd_kafka_topic_name(m->rkt), m->partition))
            rd_kafka_message_destroy(m);
        else
            c->buf[kept++] = m;
    }
    c->len = kept;
    if (a) rd_kafka_topic_partition_list_destroy(a);
}

/* Pulls up to max messages onto the end of the buffer (serving callbacks on the way); error
 * events are logged and dropped. Returns how many librdkafka gave, dropped ones included. */
static size_t consumer_pull(bus_consumer *c, size_t max)
{
    if (c->head == c->len) {
        c->head = c->len = 0;
    } else if (c->head > 0) {
        memmove(c->buf, c->buf + c->head, (c->len - c->head) * sizeof *c->buf);
        c->len -= c->head;
        c->head = 0;
    }
    if (max > CONSUMER_BATCH_MAX - c->len) max = CONSUMER_BATCH_MAX - c->len;
    if (max == 0) return 0;
    /* librdkafka writes buf[start..]; a rebalance callback during the call may compact
     * buf[0..len) meanwhile, so len can end up below start. */
    size_t start = c->len;
    c->rebalanced = false;
    c->batch_ms = uv_now(c->cl.loop);
    ssize_t n = rd_kafka_consume_batch_queue(c->cl.q, 0, c->buf + start, max);
    size_t kept = c->len;
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = c->buf[start + (size_t)i];
        if (m->err || c->closing)
            consumer_drop(m);
        else
            c->buf[kept++] = m;
    }
    c->len = kept;
    if (c->rebalanced && c->len > 0 && c->store_offsets) consumer_filter_unassigned(c);
    return n > 0 ? (size_t)n : 0;
}

/* Called once the last message of a measured batch has been handed out: a batch handed out
 * well within the target doubles the next one (when it was full), a slow one halves it. */
static void consumer_batch_drained(bus_consumer *c)
{
    if (c->batch_n == 0) return;
    uint64_t took = uv_hrtime() - c->batch_t0;
    if (took > CONSUMER_BATCH_TARGET_NS) {
        c->batch_want = c->batch_want > 1 ? c->batch_want / 2 : 1;
    } else if (c->batch_n >= c->batch_want && took < CONSUMER_BATCH_TARGET_NS / 4 &&
               c->batch_want < CONSUMER_BATCH_MAX) {
        c->batch_want *= 2;
        if (c->batch_want > CONSUMER_BATCH_MAX) c->batch_want = CONSUMER_BATCH_MAX;
    }
    c->batch_n = 0;
}

/* The index of the first buffered message whose partition has no message in flight (c->len
 * when there is none). Taking the first of each partition keeps each partition in order. */
static size_t consumer_next_ready(const bus_consumer *c)
{
    if (c->nslots == 1) return c->head; /* the one slot is free: nothing is in flight */
    for (size_t i = c->head; i < c->len; i++)
        if (!consumer_partition_busy(c, c->buf[i])) return i;
    return c->len;
}

/* Takes buf[i] out of the buffer, keeping the others in order. */
static rd_kafka_message_t *consumer_take(bus_consumer *c, size_t i)
{
    rd_kafka_message_t *m = c->buf[i];
    memmove(c->buf + c->head + 1, c->buf + c->head, (i - c->head) * sizeof *c->buf);
    c->head++;
    return m;
}

static void consumer_pump(bus_consumer *c)
{
    if (c->in_pump || c->closing || c->cl.shutting_down) return;
    c->in_pump = true;
    int budget = CONSUMER_PUMP_BUDGET;
    while (budget > 0 && !c->closing) {
        consumer_slot *sl = consumer_free_slot(c);
        if (!sl) {
            /* Busy: keep one message ahead so rebalance callbacks and the poll interval are
             * served, then stop pulling until a handler is done. */
            if (c->head == c->len) {
                consumer_batch_drained(c); /* the last of the batch is out: measure it */
                consumer_pull(c, 1);       /* not a measured batch */
                /* The revocation of a busy message's partition may have freed a slot. */
                if (consumer_free_slot(c)) continue;
            }
            break;
        }
        if (c->head == c->len) {
            consumer_batch_drained(c);
            size_t got = consumer_pull(c, c->batch_want);
            if (c->head == c->len) {
                if (got == 0) break; /* librdkafka's queue is empty: its wake-up comes next */
                budget -= (int)got;  /* all dropped (errors, revoked): there may be more */
                continue;
            }
            c->batch_n = c->len;
            c->batch_t0 = uv_hrtime();
            /* A callback served by the pull may have started closing. */
            continue;
        }
        if (uv_now(c->cl.loop) - c->batch_ms >= CONSUMER_BATCH_TARGET_MS) {
            /* This batch overruns (slow handlers after fast ones): serve librdkafka's queue
             * (rebalances, max.poll.interval.ms) by pulling one more, as the busy path does. */
            c->batch_ms = uv_now(c->cl.loop);
            consumer_pull(c, 1);
            continue;
        }
        size_t i = consumer_next_ready(c);
        if (i == c->len) {
            /* Every buffered message waits for its partition's message in flight: other
             * partitions' messages may be next in librdkafka's queue. */
            size_t got = consumer_pull(c, c->batch_want);
            if (got == 0) break;
            budget -= (int)got;
            continue;
        }
        rd_kafka_message_t *m = consumer_take(c, i);
        budget--;
        consumer_dispatch(sl, m);
    }
    if (budget <= 0 && consumer_free_slot(c) && !c->closing) bus_client_kick(&c->cl);
    consumer_store_pending(c);
    consumer_metrics_flush(c);
    c->in_pump = false;
}

static void consumer_drain(bus_client *cl)
{
    consumer_pump(cl->owner);
}

/* ---------------------------------------------------------------- rebalancing */

static void consumer_revoke(bus_consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
    c->rebalanced = true;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        /* Buffered messages of the partition are not ours any more. */
        size_t kept = c->head;
        for (size_t j = c->head; j < c->len; j++) {
            rd_kafka_message_t *m = c->buf[j];
            if (m->partition == tp->partition &&
                strcmp(rd_kafka_topic_name(m->rkt), tp->topic) == 0)
                rd_kafka_message_destroy(m);
            else
                c->buf[kept++] = m;
        }
        c->len = kept;
        for (unsigned k = 0; k < c->nslots; k++) {
            consumer_slot *sl = &c->slots[k];
            if (sl->state == CUR_IDLE || sl->rkm->partition != tp->partition ||
                strcmp(sl->cur.msg.topic, tp->topic) != 0)
                continue;
            sl->revoked = true;
            if (sl->state == CUR_BACKOFF || sl->state == CUR_DLQ_BACKOFF) {
                uv_timer_stop(&sl->retry_timer);
                consumer_finish(sl, false);
            }
            /* CUR_HANDLER, CUR_DLQ: wait for them; the offset will not be stored. */
        }
    }
}

static void consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    bus_consumer *c = opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    bool coop = proto && strcmp(proto, "COOPERATIVE") == 0;
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            re = rd_kafka_assign(rk, parts);
        if (!c->cl.shutting_down) c->cl.connected = !c->cl.fatal;
        core_log_info("bus consumer: partitions assigned", CORE_F_STR("group", c->s.group),
                      CORE_F_INT("count", parts->cnt));
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            core_log_error("bus consumer: rebalance failed", CORE_F_STR("group", c->s.group),
                           CORE_F_STR("error", rd_kafka_err2str(err)));
        /* During close this runs on the thread pool, where the loop's state is not ours (and
         * nothing is pending: it was stored before the final commit). */
        if (!c->cl.shutting_down) {
            consumer_store_pending(c); /* while the partitions are still ours */
            consumer_revoke(c, parts);
        }
        if (coop)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            re = rd_kafka_assign(rk, NULL);
        core_log_info("bus consumer: partitions revoked", CORE_F_STR("group", c->s.group),
                      CORE_F_INT("count", parts->cnt));
    }
    if (e) {
        core_log_error("bus consumer: assignment failed",
                       CORE_F_STR("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
    } else if (re) {
        core_log_error("bus consumer: assignment failed",
                       CORE_F_STR("error", rd_kafka_err2str(re)));
    }
}

/* ---------------------------------------------------------------- all_partitions */

static void consumer_assign_start(bus_consumer *c);

static void consumer_assign_work(uv_work_t *w)
{
    bus_consumer *c = w->data;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    c->assign_err[0] = '\0';
    for (size_t i = 0; c->topics[i] && !c->assign_err[0]; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->cl.rk, c->topics[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(c->cl.rk, 0, rkt, &md, 3000);
        if (e) {
            snprintf(c->assign_err, sizeof c->assign_err, "%s: %s", c->topics[i],
                     rd_kafka_err2str(e));
        } else if (md->topic_cnt != 1 || md->topics[0].err) {
            snprintf(c->assign_err, sizeof c->assign_err, "%s: %s", c->topics[i],
                     rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
                                                    : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        } else {
            for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(list, c->topics[i],
                                                  md->topics[0].partitions[p].id)
                    ->offset = RD_KAFKA_OFFSET_END;
        }
        if (md) rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    c->assign_list = list;
}

static void consumer_assign_timer_cb(uv_timer_t *t)
{
    consumer_assign_start(t->data);
}

static void consumer_assign_after(uv_work_t *w, int status)
{
    (void)status;
    bus_consumer *c = w->data;
    c->assign_running = false;
    rd_kafka_topic_partition_list_t *list = c->assign_list;
    c->assign_list = NULL;
    if (c->closing) {
        rd_kafka_topic_partition_list_destroy(list);
        consumer_maybe_final(c);
        return;
    }
    if (c->assign_err[0]) {
        int64_t d = bus_retry_delay_ms(++c->assign_tries, 500, 10000);
        core_log_warn("bus consumer: cannot read topic metadata; retrying",
                      CORE_F_STR("error", c->assign_err), CORE_F_INT("delay_ms", d));
        rd_kafka_topic_partition_list_destroy(list);
        uv_timer_start(&c->assign_timer, consumer_assign_timer_cb, (uint64_t)d, 0);
        return;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(c->cl.rk, list);
    if (e) {
        core_log_error("bus consumer: assign failed", CORE_F_STR("error", rd_kafka_err2str(e)));
    } else {
        c->cl.connected = !c->cl.fatal;
        core_log_info("bus consumer: reading every partition from the end",
                      CORE_F_INT("partitions", list->cnt));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void consumer_assign_start(bus_consumer *c)
{
    if (c->assign_running || c->closing) return;
    c->assign_running = true;
    c->assign_work.data = c;
    if (uv_queue_work(c->cl.loop, &c->assign_work, consumer_assign_work, consumer_assign_after))
        c->assign_running = false;
}

/* ---------------------------------------------------------------- life cycle */

static void consumer_buffer_clear(bus_consumer *c)
{
    for (size_t i = c->head; i < c->len; i++)
        rd_kafka_message_destroy(c->buf[i]);
    c->head = c->len = 0;
}

/* The buffer is emptied by bus_consumer_close, before the handle is destroyed. */
static void consumer_free(bus_consumer *c)
{
    free(c->buf);
    free(c->slots);
    free(c->pending);
    if (c->topics) {
        for (size_t i = 0; c->topics[i]; i++)
            free(c->topics[i]);
        free(c->topics);
    }
    free(c);
}

bus_consumer *bus_consumer_new(uv_loop_t *loop, const bus_consumer_config *cfg, bus_handler handler,
                               void *data, char *err, size_t errlen)
{
    if (!handler) {
        snprintf(err, errlen, "consumer: a handler is required");
        return NULL;
    }
    bus_consumer *c = calloc(1, sizeof *c);
    if (!c) abort();
    if (!bus_consumer_settings_resolve(cfg, &c->s, err, errlen)) {
        free(c);
        return NULL;
    }
    rd_kafka_conf_t *conf = bus_consumer_conf(cfg, c->s.group, err, errlen);
    if (!conf) {
        free(c);
        return NULL;
    }
    c->handler = handler;
    c->data = data;
    c->buf = calloc(CONSUMER_BATCH_MAX, sizeof *c->buf);
    if (!c->buf) abort();
    c->batch_want = 1;
    c->nslots = c->s.max_in_flight;
    c->slots = calloc(c->nslots, sizeof *c->slots);
    if (!c->slots) abort();
    for (unsigned i = 0; i < c->nslots; i++)
        c->slots[i].c = c;
    c->dlq = cfg->dlq_producer;
    c->all_partitions = cfg->all_partitions;
    c->store_offsets = !cfg->all_partitions;
    c->topics = calloc(c->s.ntopics + 1, sizeof *c->topics);
    if (!c->topics) abort();
    for (size_t i = 0; i < c->s.ntopics; i++) {
        c->topics[i] = strdup(cfg->topics[i]);
        if (!c->topics[i]) abort();
    }

    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_error_cb(conf, bus_client_error_cb);
    rd_kafka_conf_set_log_cb(conf, bus_log_cb);
    if (!cfg->all_partitions) rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance_cb);

    char e[256];
    rd_kafka_t *rk = bus_rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "consumer: %s", e);
        consumer_free(c);
        return NULL;
    }
    /* Errors, rebalances and stats now come through the consumer queue. */
    rd_kafka_poll_set_consumer(rk);

    if (!cfg->all_partitions) {
        rd_kafka_topic_partition_list_t *subs =
            rd_kafka_topic_partition_list_new((int)c->s.ntopics);
        for (size_t i = 0; i < c->s.ntopics; i++)
            rd_kafka_topic_partition_list_add(subs, c->topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t se = rd_kafka_subscribe(rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (se) {
            snprintf(err, errlen, "consumer: subscribe: %s", rd_kafka_err2str(se));
            rd_kafka_destroy(rk);
            consumer_free(c);
            return NULL;
        }
    }

    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    if (!bus_client_start(&c->cl, loop, rk, q, consumer_drain, c, 100, err, errlen)) {
        rd_kafka_queue_destroy(q);
        rd_kafka_consumer_close(rk); /* nothing joined yet: returns at once */
        rd_kafka_destroy(rk);
        consumer_free(c);
        return NULL;
    }
    for (unsigned i = 0; i < c->nslots; i++) {
        uv_timer_init(loop, &c->slots[i].retry_timer);
        c->slots[i].retry_timer.data = &c->slots[i];
    }
    uv_timer_init(loop, &c->assign_timer);
    c->assign_timer.data = c;
    c->own_handles = 1 + (int)c->nslots;

    core_metrics *reg = core_metrics_default();
    c->m_consumed = core_metric_counter(reg, "bus_consumed_total",
                                        "Messages handled by bus consumers, by handler result.",
                                        "topic,result");
    c->m_dead = core_metric_counter(reg, "bus_dead_letters_total",
                                    "Messages written to the dead-letter topic.", "topic");
    c->m_seconds = core_metric_histogram(reg, "bus_handler_seconds",
                                         "Time from handing a message to its handler to bus_done.",
                                         "topic", NULL, 0);
    if (cfg->all_partitions) consumer_assign_start(c);
    return c;
}

bool bus_consumer_connected(const bus_consumer *c)
{
    return c && bus_client_connected(&c->cl);
}

static void consumer_handle_release(bus_consumer *c)
{
    if (--c->own_handles > 0) return;
    void (*done)(void *) = c->close_done;
    void *data = c->close_data;
    consumer_free(c);
    if (done) done(data);
}

static void consumer_assign_timer_closed(uv_handle_t *h)
{
    consumer_handle_release(h->data);
}

static void consumer_retry_timer_closed(uv_handle_t *h)
{
    consumer_handle_release(((consumer_slot *)h->data)->c);
}

static void consumer_closed(bus_client *cl)
{
    bus_consumer *c = cl->owner;
    for (unsigned i = 0; i < c->nslots; i++)
        uv_close((uv_handle_t *)&c->slots[i].retry_timer, consumer_retry_timer_closed);
    uv_close((uv_handle_t *)&c->assign_timer, consumer_assign_timer_closed);
}

/* On the thread pool: each of these blocks. */
static void consumer_final(bus_client *cl)
{
    bus_consumer *c = cl->owner;
    if (c->store_offsets) {
        rd_kafka_resp_err_t e = rd_kafka_commit(cl->rk, NULL, 0 /* sync */);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            core_log_warn("bus consumer: final commit failed", CORE_F_STR("group", c->s.group),
                          CORE_F_STR("error", rd_kafka_err2str(e)));
    }
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(cl->rk);
    if (e)
        core_log_warn("bus consumer: close failed", CORE_F_STR("group", c->s.group),
                      CORE_F_STR("error", rd_kafka_err2str(e)));
    rd_kafka_destroy(cl->rk);
}

static void consumer_maybe_final(bus_consumer *c)
{
    if (!c->closing || c->final_started || c->assign_running) return;
    /* A slot in use, or bus_done from inside a handler: finish after it returns. */
    if (!consumer_all_idle(c)) return;
    c->final_started = true;
    consumer_store_pending(c);
    consumer_metrics_flush(c);
    bus_client_shutdown(&c->cl, consumer_final, consumer_closed);
}

void bus_consumer_close(bus_consumer *c, void (*done)(void *data), void *data)
{
    if (!c || c->closing) return;
    c->closing = true;
    c->close_done = done;
    c->close_data = data;
    uv_timer_stop(&c->assign_timer);
    consumer_buffer_clear(c);
    for (unsigned i = 0; i < c->nslots; i++) {
        consumer_slot *sl = &c->slots[i];
        if (sl->state == CUR_BACKOFF || sl->state == CUR_DLQ_BACKOFF) {
            /* Waiting to retry: give it back (not stored, so redelivered after the restart). */
            uv_timer_stop(&sl->retry_timer);
            consumer_finish(sl, false);
        }
    }
    /* CUR_HANDLER and CUR_DLQ finish through bus_done / the delivery report. */
    consumer_maybe_final(c);
}
