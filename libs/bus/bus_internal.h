/*
 * bus internals: shared by the bus sources and the bus unit tests, not part of the public API.
 */
#ifndef BUS_INTERNAL_H
#define BUS_INTERNAL_H

#include <librdkafka/rdkafka.h>

#include "bus.h"

/* ------------------------------------------------------------------ ids and headers */

/* Randomness for ids (ce_id, trace and span ids): core_random_bytes (buffered getrandom). */
void bus_rand_bytes(void *buf, size_t len);
/* A UUIDv7 like core_uuid_v7_string, drawing from the pool (no system call per id). */
void bus_uuid_v7_string(char out[CORE_UUID_STRLEN + 1]);
void bus_uuid_v7_at(int64_t now_ms, char out[CORE_UUID_STRLEN + 1]);
void bus_span_id_new(char out[CORE_SPAN_ID_LEN + 1]);
void bus_trace_id_new(char out[CORE_TRACE_ID_LEN + 1]);
void bus_trace_id_from_position(char out[CORE_TRACE_ID_LEN + 1], const char *topic,
                                int32_t partition, int64_t offset);
/* core_format_rfc3339 with the per-second part cached. */
void bus_format_time(int64_t unix_ms, char out[CORE_RFC3339_LEN + 1]);

/* Header names (CloudEvents Kafka binding, binary mode). */
#define BUS_H_SPECVERSION  "ce_specversion"
#define BUS_H_ID           "ce_id"
#define BUS_H_SOURCE       "ce_source"
#define BUS_H_TYPE         "ce_type"
#define BUS_H_TIME         "ce_time"
#define BUS_H_SUBJECT      "ce_subject"
#define BUS_H_CONTENT_TYPE "content-type"
#define BUS_H_TRACEPARENT  "traceparent"

/* Appends the CloudEvents, content-type and traceparent headers for r, then r's extra
 * headers (only the extra headers for a verbatim record). Missing fields are filled in as bus.h
 * says. 0, or RD_KAFKA_RESP_ERR__INVALID_ARG
 * with a message when the record cannot be sent (no topic, no ce_type). */
int bus_headers_build(rd_kafka_headers_t *h, const bus_record *r, const char *source,
                      int64_t now_ms, char *err, size_t errlen);

/* What the consumer knows about a record, behind the public bus_message. */
typedef struct bus_msg_internal {
    bus_message msg; /* first: handlers get &msg */
    uint32_t magic;
    const rd_kafka_headers_t *hdrs; /* NULL when the record has none */
} bus_msg_internal;

#define BUS_MSG_MAGIC 0x62757347u

/* Fills the CloudEvents fields of m from hdrs (NULL allowed): absent or oversized headers
 * become "" (oversized ones are cut), a traceparent that does not parse is dropped, and
 * trace_id is the traceparent's or a new one. Never fails. */
void bus_headers_parse(bus_msg_internal *mi, const rd_kafka_headers_t *hdrs);
/* Fills m from a consumed record (topic, partition, offset, key, value, timestamp, headers). */
void bus_message_from_rkm(bus_msg_internal *mi, const rd_kafka_message_t *rkm);

/* The dead letter's headers: a copy of orig (NULL allowed) plus the BUS_DLQ_H_* headers. */
typedef struct bus_dlq_info {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *group;
    const char *error;
    unsigned attempts;
    int64_t time_ms;
} bus_dlq_info;
rd_kafka_headers_t *bus_dlq_headers(const rd_kafka_headers_t *orig, const bus_dlq_info *info);

/* ------------------------------------------------------------------ configuration */

/* Applies key/value to conf; false with a message naming the key on error. */
bool bus_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                  size_t errlen);
/* Applies a NULL-terminated list of pairs (NULL allowed). */
bool bus_conf_set_pairs(rd_kafka_conf_t *conf, const char *const *pairs, char *err, size_t errlen);
/* The librdkafka configuration of a producer / consumer, validated; NULL with a message.
 * The callbacks and opaque are set by the caller. */
rd_kafka_conf_t *bus_producer_conf(const bus_producer_config *cfg, char *err, size_t errlen);
rd_kafka_conf_t *bus_consumer_conf(const bus_consumer_config *cfg, const char *group, char *err,
                                   size_t errlen);
/* Consumer settings after defaults: what bus_consumer_new works with. */
typedef struct bus_consumer_settings {
    unsigned max_attempts;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    unsigned max_in_flight;
    char group[256];
    char dlq_topic[256];
    size_t ntopics;
} bus_consumer_settings;
bool bus_consumer_settings_resolve(const bus_consumer_config *cfg, bus_consumer_settings *s,
                                   char *err, size_t errlen);

/* Delay before redelivery number `attempt` (1-based: the delay after attempt 1 failed). */
int64_t bus_retry_delay_ms(unsigned attempt, int64_t base_ms, int64_t max_ms);

/* rd_kafka_new, after keeping Cyrus SASL from loading plugins nobody uses (see bus_config.c).
 * Every handle of the bus is made through it. */
rd_kafka_t *bus_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *err, size_t errlen);

/* Routes librdkafka's log lines to core_log (safe from its threads). */
void bus_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* ------------------------------------------------------------------ loop glue */

/*
 * A librdkafka client on the loop: its final queue signals a non-blocking eventfd that a
 * uv_poll watches; a periodic timer polls too (max.poll.interval safety, lost wake-ups) and
 * probes the brokers with a metadata request on the thread pool while not connected.
 */
typedef struct bus_client bus_client;
struct bus_client {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int efd;
    uv_poll_t poll;
    uv_timer_t tick;
    void (*drain)(bus_client *cl); /* serve the queue (timeout 0) until empty or budget */
    void *owner;
    bool connected;
    bool fatal; /* librdkafka raised a fatal error: the handle is done for */
    bool probe_running;
    bool probe_ok;
    bool shutting_down;
    unsigned ticks;
    uv_work_t probe_work;
    uv_work_t final_work;
    void (*final_fn)(bus_client *cl); /* on the thread pool: commit, close, destroy */
    void (*closed)(bus_client *cl);   /* on the loop, every handle closed */
    int open_handles;
    int64_t tick_ms;
};

/* Takes ownership of rk. q is the queue to watch (the main queue of a producer, the consumer
 * queue of a consumer); the client keeps the reference. false with a message. */
bool bus_client_start(bus_client *cl, uv_loop_t *loop, rd_kafka_t *rk, rd_kafka_queue_t *q,
                      void (*drain)(bus_client *), void *owner, int64_t tick_ms, char *err,
                      size_t errlen);
/* Makes the loop call drain again soon (after a budget-limited drain left work behind). */
void bus_client_kick(bus_client *cl);
/* Stops watching, waits for a running probe, runs final_fn (which must destroy cl->rk) on the
 * thread pool, closes the handles, then calls closed on the loop. */
void bus_client_shutdown(bus_client *cl, void (*final_fn)(bus_client *),
                         void (*closed)(bus_client *));
/* The error callback shared by every handle: logs, tracks all-brokers-down and fatal errors.
 * Its opaque is the handle's owner, whose first member is its bus_client. */
void bus_client_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);
void bus_client_on_error(bus_client *cl, int err, const char *reason);
/* The brokers answered its last request or probe, and no fatal error ended the handle: what
 * bus_producer_connected, bus_consumer_connected and bus_txn_connected report. */
bool bus_client_connected(const bus_client *cl);

/* ------------------------------------------------------------------ producer internals */

/* Produces a record with ready-made headers (ownership of h passes on success; on failure
 * the caller still owns it). The dead-letter path uses it: the original headers stay as
 * they were. */
int bus_producer_send_raw(bus_producer *p, const char *topic, int32_t partition, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          rd_kafka_headers_t *h, bus_delivery_cb cb, void *opaque);

#endif
