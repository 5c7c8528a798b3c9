/* Configuration: librdkafka settings from the bus configs, validated before any handle exists;
 * the catalog lookup; librdkafka's log lines into core_log. */
#include "bus_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

_Static_assert(BUS_ERR_QUEUE_FULL == RD_KAFKA_RESP_ERR__QUEUE_FULL, "BUS_ERR_QUEUE_FULL");
_Static_assert(BUS_ERR_INVALID_ARG == RD_KAFKA_RESP_ERR__INVALID_ARG, "BUS_ERR_INVALID_ARG");
_Static_assert(BUS_ERR_STATE == RD_KAFKA_RESP_ERR__STATE, "BUS_ERR_STATE");

const char *bus_strerror(int err)
{
    return rd_kafka_err2str((rd_kafka_resp_err_t)err);
}

const bus_topic_spec *bus_catalog_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < bus_catalog_len; i++)
        if (strcmp(bus_catalog[i].name, name) == 0) return &bus_catalog[i];
    return NULL;
}

bool bus_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                  size_t errlen)
{
    char e[256];
    if (rd_kafka_conf_set(conf, key, value, e, sizeof e) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka setting %s: %s", key, e);
        return false;
    }
    return true;
}

/* Settings the guarantees rest on: an "extra" pair may not change them. */
static const char *const bus_locked_keys[] = {"enable.idempotence", "enable.auto.offset.store",
                                              "transactional.id", NULL};

bool bus_conf_set_pairs(rd_kafka_conf_t *conf, const char *const *pairs, char *err, size_t errlen)
{
    if (!pairs) return true;
    for (size_t i = 0; pairs[i]; i += 2) {
        if (!pairs[i + 1]) {
            snprintf(err, errlen, "kafka setting %s: no value (extra must hold key, value pairs)",
                     pairs[i]);
            return false;
        }
        for (size_t k = 0; bus_locked_keys[k]; k++) {
            if (strcmp(pairs[i], bus_locked_keys[k]) == 0) {
                snprintf(err, errlen, "kafka setting %s is managed by the bus and cannot be set",
                         pairs[i]);
                return false;
            }
        }
        if (!bus_conf_set(conf, pairs[i], pairs[i + 1], err, errlen)) return false;
    }
    return true;
}

static bool bus_conf_int(rd_kafka_conf_t *conf, const char *key, long long v, char *err,
                         size_t errlen)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    return bus_conf_set(conf, key, num, err, errlen);
}

rd_kafka_conf_t *bus_producer_conf(const bus_producer_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->brokers || !cfg->brokers[0]) {
        snprintf(err, errlen, "producer: brokers is required");
        return NULL;
    }
    if (cfg->linger_ms < 0 || cfg->batch_size < 0 || cfg->queue_max_messages < 0) {
        snprintf(err, errlen,
                 "producer: linger_ms, batch_size and queue_max_messages must be >= 0");
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bool ok =
        bus_conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen) &&
        (!cfg->client_id || !cfg->client_id[0] ||
         bus_conf_set(conf, "client.id", cfg->client_id, err, errlen)) &&
        /* acks=all, bounded in-flight, retries without duplicates or reordering */
        bus_conf_set(conf, "enable.idempotence", "true", err, errlen) &&
        /* the Java client's key hashing, so keys land on the same partitions */
        bus_conf_set(conf, "partitioner", "murmur2_random", err, errlen) &&
        (!cfg->linger_ms || bus_conf_int(conf, "linger.ms", cfg->linger_ms, err, errlen)) &&
        (!cfg->batch_size || bus_conf_int(conf, "batch.size", cfg->batch_size, err, errlen)) &&
        (!cfg->queue_max_messages || bus_conf_int(conf, "queue.buffering.max.messages",
                                                  cfg->queue_max_messages, err, errlen)) &&
        bus_conf_set_pairs(conf, cfg->extra, err, errlen);
    if (!ok) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

bool bus_consumer_settings_resolve(const bus_consumer_config *cfg, bus_consumer_settings *s,
                                   char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!cfg || !cfg->brokers || !cfg->brokers[0]) {
        snprintf(err, errlen, "consumer: brokers is required");
        return false;
    }
    if (!cfg->topics || !cfg->topics[0]) {
        snprintf(err, errlen, "consumer: topics must list at least one topic");
        return false;
    }
    for (size_t i = 0; cfg->topics[i]; i++) {
        if (!cfg->topics[i][0]) {
            snprintf(err, errlen, "consumer: topic %zu is empty", i);
            return false;
        }
        s->ntopics++;
    }
    const char *group = cfg->group_id;
    if (!group || !group[0]) {
        if (!cfg->all_partitions) {
            snprintf(err, errlen, "consumer: group_id is required");
            return false;
        }
        group = "all-partitions"; /* never joined, never committed: see bus_consumer_new */
    }
    if (strlen(group) >= sizeof s->group) {
        snprintf(err, errlen, "consumer: group_id is too long");
        return false;
    }
    memcpy(s->group, group, strlen(group) + 1);
    int n = cfg->dlq_topic && cfg->dlq_topic[0]
                ? snprintf(s->dlq_topic, sizeof s->dlq_topic, "%s", cfg->dlq_topic)
                : snprintf(s->dlq_topic, sizeof s->dlq_topic, "dlq.%s", s->group);
    if (n < 0 || (size_t)n >= sizeof s->dlq_topic) {
        snprintf(err, errlen, "consumer: dlq_topic is too long");
        return false;
    }
    s->max_in_flight = cfg->max_in_flight ? cfg->max_in_flight : 1;
    if (s->max_in_flight > 64) {
        snprintf(err, errlen, "consumer: max_in_flight must be between 1 and 64");
        return false;
    }
    s->max_attempts = cfg->max_attempts ? cfg->max_attempts : 5;
    if (s->max_attempts > 1000) {
        snprintf(err, errlen, "consumer: max_attempts must be between 1 and 1000");
        return false;
    }
    s->backoff_base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : 200;
    s->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 30000;
    if (s->backoff_base_ms < 0 || s->backoff_max_ms < 0 || s->backoff_base_ms > s->backoff_max_ms) {
        snprintf(err, errlen,
                 "consumer: backoff must satisfy 0 <= backoff_base_ms <= backoff_max_ms");
        return false;
    }
    if (cfg->auto_offset_reset && strcmp(cfg->auto_offset_reset, "earliest") != 0 &&
        strcmp(cfg->auto_offset_reset, "latest") != 0) {
        snprintf(err, errlen, "consumer: auto_offset_reset must be earliest or latest, not %s",
                 cfg->auto_offset_reset);
        return false;
    }
    return true;
}

rd_kafka_conf_t *bus_consumer_conf(const bus_consumer_config *cfg, const char *group, char *err,
                                   size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *reset = cfg->auto_offset_reset ? cfg->auto_offset_reset : "earliest";
    bool ok = bus_conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen) &&
              bus_conf_set(conf, "group.id", group, err, errlen) &&
              (!cfg->client_id || !cfg->client_id[0] ||
               bus_conf_set(conf, "client.id", cfg->client_id, err, errlen)) &&
              /* an offset is stored only once its handler's effect is durable */
              bus_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) &&
              /* all_partitions readers never commit: every instance starts at the end */
              bus_conf_set(conf, "enable.auto.commit", cfg->all_partitions ? "false" : "true", err,
                           errlen) &&
              bus_conf_set(conf, "auto.offset.reset", reset, err, errlen) &&
              bus_conf_set(conf, "enable.partition.eof", "false", err, errlen) &&
              /* Bounded prefetch. librdkafka's defaults queue up to 64 MB and fetch 50 MB at
               * once: a consumer whose handler waits on its database, behind a backlog, grew to
               * 85 MB (110 MB for content-manager behind 600 MB of scraped items); with these
               * it stays at 10 MB and handles as fast (ce-bus-perf --handle-ms, README). */
              bus_conf_set(conf, "queued.max.messages.kbytes", "2048", err, errlen) &&
              bus_conf_set(conf, "fetch.max.bytes", "1048576", err, errlen) &&
              bus_conf_set_pairs(conf, cfg->extra, err, errlen);
    if (!ok) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int64_t bus_retry_delay_ms(unsigned attempt, int64_t base_ms, int64_t max_ms)
{
    /* Full jitter over an exponentially growing window: attempt 1 waits up to base_ms,
     * attempt 2 up to 2 * base_ms, ... never more than max_ms. */
    int64_t d = core_backoff_ms(attempt ? attempt - 1 : 0, base_ms, max_ms);
    return d < 1 ? 1 : d;
}

/* librdkafka calls sasl_client_init() when the first handle of the process is made, whatever the
 * configuration, and Cyrus SASL then dlopens every plugin in its directory (eight with Debian's
 * libsasl2-modules, Berkeley DB with sasldb): about 0.6 MB resident for nothing, as librdkafka
 * does PLAIN, SCRAM and OAUTHBEARER itself and needs Cyrus only for GSSAPI (Kerberos). Unless
 * that is configured (or the operator chose a plugin path), an empty SASL_PATH makes Cyrus load
 * none. Cyrus reads it only in that first sasl_client_init, before any librdkafka thread runs. */
rd_kafka_t *bus_rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    static atomic_bool decided;
    if (!atomic_exchange(&decided, true) && !getenv("SASL_PATH")) {
        char proto[64] = "", mech[64] = "";
        size_t n = sizeof proto;
        if (rd_kafka_conf_get(conf, "security.protocol", proto, &n) != RD_KAFKA_CONF_OK)
            proto[0] = 0;
        n = sizeof mech;
        if (rd_kafka_conf_get(conf, "sasl.mechanisms", mech, &n) != RD_KAFKA_CONF_OK) mech[0] = 0;
        if (strncasecmp(proto, "sasl", 4) != 0 || strcasecmp(mech, "GSSAPI") != 0)
            setenv("SASL_PATH", "", 0);
    }
    return rd_kafka_new(type, conf, err, errlen);
}

void bus_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    core_log_level l = level <= 3   ? CORE_LOG_ERROR
                       : level == 4 ? CORE_LOG_WARN
                       : level <= 6 ? CORE_LOG_INFO
                                    : CORE_LOG_DEBUG;
    if (l < core_log_min_level()) return;
    core_log_emit(l, "librdkafka", CORE_F_STR("client", rd_kafka_name(rk)),
                  CORE_F_STR("facility", fac), CORE_F_STR("detail", buf), CORE_LOG_END);
}
