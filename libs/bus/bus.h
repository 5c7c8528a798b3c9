/*
 * bus: Apache Kafka (librdkafka) on the service's libuv loop.
 *
 *   bus_producer_*  idempotent producer (acks=all) with delivery reports on the loop
 *   bus_consumer_*  group consumer: one message at a time per consumer, handler may finish
 *                   asynchronously, offsets stored only after the handler says its effect is
 *                   durable, bounded retries with backoff, then the dead-letter topic
 *   bus_txn_*       transactional producer for the outbox relay; the blocking transactional
 *                   calls run on libuv's thread pool, never on the loop
 *   bus_read_last   reads the latest value of a key from a (compacted) topic
 *
 * Every record carries CloudEvents binary-mode headers (ce_specversion, ce_id, ce_source,
 * ce_type, ce_time, optional ce_subject), content-type and W3C traceparent, unless it is sent
 * verbatim (bus_record.verbatim: key, value and the caller's headers only). librdkafka's queues
 * are forwarded to an eventfd watched by uv_poll (see EVENT-LOOP-NOTES.md); nothing blocks the
 * loop except the explicit shutdown paths, which say so.
 */
#ifndef BUS_H
#define BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core.h"
#include "topics.h" /* generated from proto/topics.catalog: bus_catalog[], TOPIC_* names */

#define BUS_PARTITION_ANY         (-1)
#define BUS_CE_SPECVERSION        "1.0"
#define BUS_CONTENT_TYPE_PROTOBUF "application/protobuf"

/* Headers the dead-letter topic adds to the original record's headers. */
#define BUS_DLQ_H_TOPIC     "dlq_original_topic"
#define BUS_DLQ_H_PARTITION "dlq_original_partition"
#define BUS_DLQ_H_OFFSET    "dlq_original_offset"
#define BUS_DLQ_H_GROUP     "dlq_consumer_group"
#define BUS_DLQ_H_ERROR     "dlq_error"
#define BUS_DLQ_H_ATTEMPTS  "dlq_attempts"
#define BUS_DLQ_H_TIME      "dlq_time"

/* The librdkafka error codes callers need to tell apart, without including rdkafka.h
 * (RD_KAFKA_RESP_ERR__QUEUE_FULL, __INVALID_ARG, __STATE; checked at compile time). */
#define BUS_ERR_QUEUE_FULL  (-184)
#define BUS_ERR_INVALID_ARG (-186)
#define BUS_ERR_STATE       (-172)
/* Text for an error code from bus_produce or a delivery callback. */
const char *bus_strerror(int err);

const bus_topic_spec *bus_catalog_find(const char *name);

typedef struct bus_header {
    const char *name;
    const void *value;
    size_t len;
} bus_header;

/* ------------------------------------------------------------------ producing */

/* An outgoing record. Unset CloudEvents fields are filled in: ce_id a fresh UUIDv7, ce_time
 * now, ce_source the producer's source, content_type application/protobuf, traceparent the
 * current log trace (core_log_trace) with a new span id, or a new trace.
 *
 * verbatim: the record goes out exactly as given: key, value and the caller's own headers (in
 * their order, duplicates kept), nothing added: no CloudEvents envelope, no content-type, no
 * traceparent; ce_* fields, content_type and traceparent are ignored and ce_type is not
 * required. For re-publishing a record unchanged (replaying a dead letter with its original
 * headers), for probes and for bare records other tools expect. Delivery, idempotence, acks=all
 * and back-pressure are the same as for any record. */
typedef struct bus_record {
    const char *topic;
    int32_t partition; /* BUS_PARTITION_ANY: by key (murmur2, like the Java client) */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const char *ce_type; /* required, e.g. "contentengine.content.item.created.v1" */
    const char *ce_id;
    const char *ce_subject;
    int64_t ce_time_ms;
    const char *content_type;
    const char *traceparent;
    const bus_header *headers; /* extra headers, copied */
    size_t nheaders;
    bool verbatim; /* see above: send key, value and headers only */
} bus_record;

typedef struct bus_producer_config {
    const char *brokers;      /* "127.0.0.1:9092" */
    const char *client_id;    /* service name */
    const char *source;       /* ce_source, e.g. "/services/content-manager" */
    int linger_ms;            /* 0 = librdkafka default (5 ms) */
    int batch_size;           /* bytes; 0 = default */
    int queue_max_messages;   /* 0 = default (100000) */
    const char *const *extra; /* NULL-terminated "key", "value" pairs of librdkafka config */
} bus_producer_config;

/* Called on the loop once per record: err 0 means written to all in-sync replicas. */
typedef void (*bus_delivery_cb)(void *opaque, int err, const char *errstr, int32_t partition,
                                int64_t offset);

typedef struct bus_producer bus_producer;

/* NULL with a message in err on a bad configuration; brokers unreachable is not an error here
 * (librdkafka reconnects), see bus_producer_connected. */
bus_producer *bus_producer_new(uv_loop_t *loop, const bus_producer_config *cfg, char *err,
                               size_t errlen);
/* 0, or a librdkafka error code: BUS_ERR_QUEUE_FULL (wait for deliveries and retry;
 * bus_producer_on_space tells when), BUS_ERR_INVALID_ARG (no topic or ce_type), BUS_ERR_STATE
 * (closing). cb may be NULL; when 0 is returned it is called exactly once. */
int bus_produce(bus_producer *p, const bus_record *r, bus_delivery_cb cb, void *opaque);
size_t bus_producer_outstanding(const bus_producer *p);
/* Calls cb once the outstanding count falls to low_water (for back-pressure). */
void bus_producer_on_space(bus_producer *p, size_t low_water, void (*cb)(void *data), void *data);
/* True once a broker answered and no "all brokers down" since: for /readyz. */
bool bus_producer_connected(const bus_producer *p);
/* Non-blocking drain: waits on the loop until nothing is outstanding (or timeout_ms), calls
 * done(data, remaining), then frees the producer. */
void bus_producer_close(bus_producer *p, int64_t timeout_ms,
                        void (*done)(void *data, size_t remaining), void *data);

/* ------------------------------------------------------------------ consuming */

typedef struct bus_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    int64_t timestamp_ms;
    /* Parsed CloudEvents headers ("" when absent). */
    char ce_id[128];
    char ce_type[128];
    char ce_source[128];
    char ce_time[40];
    char traceparent[CORE_TRACEPARENT_LEN + 1];
    char trace_id[CORE_TRACE_ID_LEN + 1]; /* from traceparent, or a new one */
    unsigned attempt;                     /* 1 on first delivery to this handler */
} bus_message;

/* Raw header lookup (last occurrence); NULL when absent. m must be a message the consumer
 * handed to a handler, and is valid until bus_done. */
const void *bus_message_header(const bus_message *m, const char *name, size_t *len);

typedef enum bus_result {
    BUS_OK,    /* effect is durable: store the offset, move on */
    BUS_RETRY, /* transient: try again after backoff, up to max_attempts, then dead-letter */
    BUS_FAIL,  /* permanent (malformed, rejected): dead-letter at once */
} bus_result;

typedef struct bus_consumer bus_consumer;

/* The handler owns the message until it calls bus_done (now or from a later callback). While
 * a message is with its handler, the consumer hands out no other message of its partition, so
 * per-partition (per-key) order holds; by default (max_in_flight 1) it hands out no other
 * message at all, so at most one effect is in flight. */
typedef void (*bus_handler)(bus_consumer *c, const bus_message *m, void *data);
void bus_done(bus_consumer *c, const bus_message *m, bus_result result, const char *error);

typedef struct bus_consumer_config {
    const char *brokers;
    const char *group_id; /* one per service */
    const char *client_id;
    const char *const *topics; /* NULL-terminated */
    /* Dead letters go to dlq_topic (default "dlq.<group_id>") through dlq_producer (required
     * unless every handler only ever answers BUS_OK). */
    const char *dlq_topic;
    bus_producer *dlq_producer;
    unsigned max_attempts;   /* default 5 */
    int64_t backoff_base_ms; /* default 200 */
    int64_t backoff_max_ms;  /* default 30000 */
    /* Messages with their handlers at once, at most one per partition (default 1, at most
     * 64): handlers that wait on I/O (a database transaction) overlap across partitions
     * instead of queueing behind each other. */
    unsigned max_in_flight;
    /* realtime: every instance reads every partition (no group rebalancing), from the end. */
    bool all_partitions;
    const char *auto_offset_reset; /* "earliest" (default) or "latest" */
    const char *const *extra;      /* NULL-terminated librdkafka config pairs */
} bus_consumer_config;

bus_consumer *bus_consumer_new(uv_loop_t *loop, const bus_consumer_config *cfg, bus_handler handler,
                               void *data, char *err, size_t errlen);
/* Graceful drain: stop handing out messages, wait for the ones in flight (and their dead letters),
 * commit stored offsets, leave the group, free. The final commit and close run on libuv's
 * thread pool; done runs on the loop. */
void bus_consumer_close(bus_consumer *c, void (*done)(void *data), void *data);
bool bus_consumer_connected(const bus_consumer *c);

/* ------------------------------------------------------------------ transactions */

typedef struct bus_txn_producer bus_txn_producer;

typedef struct bus_txn_config {
    const char *brokers;
    const char *client_id;
    const char *source;
    const char *transactional_id;   /* stable per relay: a restarted relay fences its zombie */
    int64_t transaction_timeout_ms; /* default 60000 */
} bus_txn_config;

/* err NULL on success. abortable: the transaction must be aborted and retried. err set and
 * not abortable: the producer is unusable (fenced, fatal, or still failing after retrying
 * retriable errors); close it and start a new one, whose init fences this one. Whether a failed
 * commit took effect is then unknown: that is what the relay's checkpoint record is for. */
typedef void (*bus_txn_cb)(void *data, const char *err, bool abortable);

bus_txn_producer *bus_txn_new(uv_loop_t *loop, const bus_txn_config *cfg, char *err, size_t errlen);
/* init_transactions: fences an earlier instance with the same id and aborts its open
 * transaction. Runs on the thread pool; cb on the loop. */
void bus_txn_init(bus_txn_producer *t, bus_txn_cb cb, void *data);
int bus_txn_begin(bus_txn_producer *t, char *err, size_t errlen);
int bus_txn_produce(bus_txn_producer *t, const bus_record *r, char *err, size_t errlen);
void bus_txn_commit(bus_txn_producer *t, bus_txn_cb cb, void *data);
void bus_txn_abort(bus_txn_producer *t, bus_txn_cb cb, void *data);
void bus_txn_close(bus_txn_producer *t, void (*done)(void *data), void *data);
/* The brokers answered its last request or probe (as bus_producer_connected). */
bool bus_txn_connected(const bus_txn_producer *t);

/* Reads partition `partition` of topic from the beginning to its high watermark (read
 * committed) and reports the value of the last record whose key equals key (found false when
 * none). For checkpoints in compacted topics; runs without blocking the loop. */
typedef void (*bus_read_last_cb)(void *data, const char *err, bool found, const void *value,
                                 size_t len);
void bus_read_last(uv_loop_t *loop, const char *brokers, const char *topic, int32_t partition,
                   const void *key, size_t key_len, bus_read_last_cb cb, void *data);

/* ------------------------------------------------------------------ administration */

/* For tools and tests (services' topics come from the catalog via ce-topics): create a topic
 * (replication factor: the broker's default; config: NULL-terminated "key", "value" pairs or
 * NULL; an existing topic counts as success) or delete one. The Admin API calls run on the
 * thread pool; cb runs on the loop with err NULL on success. */
typedef void (*bus_admin_cb)(void *data, const char *err);
void bus_admin_create_topic(uv_loop_t *loop, const char *brokers, const char *topic, int partitions,
                            const char *const *config, bus_admin_cb cb, void *data);
void bus_admin_delete_topic(uv_loop_t *loop, const char *brokers, const char *topic,
                            bus_admin_cb cb, void *data);

#endif
