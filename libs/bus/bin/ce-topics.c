/*
 * ce-topics: creates the Kafka topics of proto/topics.catalog, or lists the catalog.
 *
 *   ce-topics [--bootstrap HOST:PORT] [--replication-factor N] [--timeout-ms MS] create
 *   ce-topics list
 *
 * create: every catalog topic that is missing is created with its partitions, retention.ms and
 * cleanup.policy; existing topics whose retention or cleanup policy drifted are brought back to
 * the catalog; existing topics with a different partition count are reported (not changed:
 * adding partitions moves keys to other partitions and breaks per-key ordering). It then waits
 * until every catalog topic has a leader for each partition, so producers can start at once.
 *
 * A CLI, not a service: it blocks on librdkafka's admin queue, which the event loop rule allows
 * for tools. Exit status: 0 done, 1 failure, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "topics.h"

#define DEFAULT_BOOTSTRAP "127.0.0.1:9092"

typedef struct options {
    const char *bootstrap;
    int replication_factor; /* -1: the broker's default */
    int timeout_ms;
} options;

/* What the broker said about one catalog topic. */
typedef struct topic_state {
    int exists;
    int partitions;
} topic_state;

static void usage(FILE *out)
{
    fprintf(out, "usage: ce-topics [--bootstrap HOST:PORT] [--replication-factor N] "
                 "[--timeout-ms MS] create\n"
                 "       ce-topics list\n"
                 "The bootstrap defaults to $KAFKA_BROKERS, else " DEFAULT_BOOTSTRAP ".\n");
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return -1;
    *out = (int)v;
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "30d", "1h", "forever": roughly the catalog's spelling, back from milliseconds. */
static void format_retention(int64_t ms, char *buf, size_t len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    if (ms < 0) {
        snprintf(buf, len, "forever");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms > 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%" PRId64 "ms", ms);
}

static int cmd_list(void)
{
    int w = (int)strlen("TOPIC");
    for (size_t i = 0; i < bus_catalog_len; i++) {
        int l = (int)strlen(bus_catalog[i].name);
        if (l > w) w = l;
    }
    printf("%-*s  %4s  %-9s  %-8s  %-14s  %-36s  %s\n", w, "TOPIC", "PART", "RETENTION", "CLEANUP",
           "KEY", "PAYLOAD", "PRODUCERS -> CONSUMERS");
    for (size_t i = 0; i < bus_catalog_len; i++) {
        const bus_topic_spec *t = &bus_catalog[i];
        char ret[32];
        format_retention(t->retention_ms, ret, sizeof ret);
        printf("%-*s  %4d  %-9s  %-8s  %-14s  %-36s  %s -> %s\n", w, t->name, t->partitions, ret,
               t->cleanup_policy, t->key, t->payload, t->producers[0] ? t->producers : "-",
               t->consumers[0] ? t->consumers : "-");
    }
    return 0;
}

static rd_kafka_t *connect_producer(const options *opt)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Only critical librdkafka logs: a refused connection becomes one error line of ours. */
    if (rd_kafka_conf_set(conf, "bootstrap.servers", opt->bootstrap, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "ce-topics", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "2", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "ce-topics: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "ce-topics: cannot create Kafka client: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Fills state[i] for every catalog topic from the cluster's metadata. When ready is not NULL it
 * is set to whether every catalog topic exists and each of its partitions has a leader. */
static int read_metadata(rd_kafka_t *rk, const options *opt, topic_state *state, int *ready)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, opt->timeout_ms);
    if (err) {
        fprintf(stderr,
                "ce-topics: cannot read metadata from Kafka at %s: %s "
                "(is the broker running? scripts/kafka.sh start)\n",
                opt->bootstrap, rd_kafka_err2str(err));
        return -1;
    }
    int all_ready = 1;
    for (size_t i = 0; i < bus_catalog_len; i++) {
        state[i].exists = 0;
        state[i].partitions = 0;
        for (int j = 0; j < md->topic_cnt; j++) {
            const struct rd_kafka_metadata_topic *mt = &md->topics[j];
            if (strcmp(mt->topic, bus_catalog[i].name) != 0) continue;
            if (mt->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) break;
            state[i].exists = 1;
            state[i].partitions = mt->partition_cnt;
            if (mt->err || mt->partition_cnt == 0) all_ready = 0;
            for (int p = 0; p < mt->partition_cnt; p++)
                if (mt->partitions[p].err || mt->partitions[p].leader < 0) all_ready = 0;
            break;
        }
        if (!state[i].exists) all_ready = 0;
    }
    rd_kafka_metadata_destroy(md);
    if (ready) *ready = all_ready;
    return 0;
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op,
                                              const options *opt)
{
    char errstr[256];
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, op);
    rd_kafka_AdminOptions_set_request_timeout(ao, opt->timeout_ms, errstr, sizeof errstr);
    if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS)
        rd_kafka_AdminOptions_set_operation_timeout(ao, opt->timeout_ms, errstr, sizeof errstr);
    return ao;
}

/* Waits for the one result event of an admin call; NULL (after a message) on timeout or error. */
static rd_kafka_event_t *wait_result(rd_kafka_queue_t *q, const options *opt, const char *what)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, opt->timeout_ms + 5000);
    if (!ev) {
        fprintf(stderr, "ce-topics: %s: no answer from %s within %d ms\n", what, opt->bootstrap,
                opt->timeout_ms + 5000);
        return NULL;
    }
    if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "ce-topics: %s failed: %s\n", what, rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

static int create_missing(rd_kafka_t *rk, rd_kafka_queue_t *q, const options *opt,
                          const topic_state *state, int *created)
{
    char errstr[512];
    rd_kafka_NewTopic_t **nts = calloc(bus_catalog_len, sizeof *nts);
    size_t n = 0;
    int rc = 0;
    if (!nts) {
        fprintf(stderr, "ce-topics: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < bus_catalog_len; i++) {
        const bus_topic_spec *t = &bus_catalog[i];
        if (state[i].exists) continue;
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
            t->name, t->partitions, opt->replication_factor, errstr, sizeof errstr);
        if (!nt) {
            fprintf(stderr, "ce-topics: %s: %s\n", t->name, errstr);
            rc = -1;
            goto out;
        }
        nts[n++] = nt;
        char ms[32];
        snprintf(ms, sizeof ms, "%" PRId64, t->retention_ms);
        if (rd_kafka_NewTopic_set_config(nt, "retention.ms", ms) ||
            rd_kafka_NewTopic_set_config(nt, "cleanup.policy", t->cleanup_policy)) {
            fprintf(stderr, "ce-topics: %s: cannot set topic config\n", t->name);
            rc = -1;
            goto out;
        }
    }
    if (n == 0) goto out;

    rd_kafka_AdminOptions_t *ao = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, opt);
    rd_kafka_CreateTopics(rk, nts, n, ao, q);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_event_t *ev = wait_result(q, opt, "CreateTopics");
    if (!ev) {
        rc = -1;
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        const char *name = rd_kafka_topic_result_name(res[i]);
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            printf("created  %s\n", name);
            (*created)++;
        } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            /* someone else created it between our metadata read and now */
            printf("exists   %s\n", name);
        } else {
            const char *msg = rd_kafka_topic_result_error_string(res[i]);
            fprintf(stderr, "ce-topics: cannot create %s: %s\n", name,
                    msg ? msg : rd_kafka_err2str(err));
            rc = -1;
        }
    }
    rd_kafka_event_destroy(ev);
out:
    for (size_t i = 0; i < n; i++)
        rd_kafka_NewTopic_destroy(nts[i]);
    free(nts);
    return rc;
}

static const char *config_value(const rd_kafka_ConfigResource_t *res, const char *name)
{
    size_t cnt = 0;
    const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(res, &cnt);
    for (size_t i = 0; i < cnt; i++)
        if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), name) == 0)
            return rd_kafka_ConfigEntry_value(entries[i]);
    return NULL;
}

static const bus_topic_spec *find_spec(const char *name)
{
    for (size_t i = 0; i < bus_catalog_len; i++)
        if (strcmp(bus_catalog[i].name, name) == 0) return &bus_catalog[i];
    return NULL;
}

/* Existing catalog topics whose retention.ms or cleanup.policy differ from the catalog get them
 * set again. AlterConfigs (not the incremental kind, which needs librdkafka >= 2.2) replaces the
 * topic's whole dynamic config, which is exactly the catalog's two entries. */
static int fix_config_drift(rd_kafka_t *rk, rd_kafka_queue_t *q, const options *opt,
                            const topic_state *state, int *altered)
{
    rd_kafka_ConfigResource_t **rs = calloc(bus_catalog_len, sizeof *rs);
    rd_kafka_ConfigResource_t **fix = calloc(bus_catalog_len, sizeof *fix);
    size_t n = 0, nfix = 0;
    int rc = 0;
    if (!rs || !fix) {
        fprintf(stderr, "ce-topics: out of memory\n");
        free(rs);
        free(fix);
        return -1;
    }
    for (size_t i = 0; i < bus_catalog_len; i++)
        if (state[i].exists)
            rs[n++] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, bus_catalog[i].name);
    if (n == 0) goto out;

    rd_kafka_AdminOptions_t *ao = admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, opt);
    rd_kafka_DescribeConfigs(rk, rs, n, ao, q);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_event_t *ev = wait_result(q, opt, "DescribeConfigs");
    if (!ev) {
        rc = -1;
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_ConfigResource_t **res =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        const char *name = rd_kafka_ConfigResource_name(res[i]);
        const bus_topic_spec *t = find_spec(name);
        if (!t) continue;
        if (rd_kafka_ConfigResource_error(res[i])) {
            fprintf(stderr, "ce-topics: cannot describe %s: %s\n", name,
                    rd_kafka_ConfigResource_error_string(res[i]));
            rc = -1;
            continue;
        }
        char want_ms[32];
        snprintf(want_ms, sizeof want_ms, "%" PRId64, t->retention_ms);
        const char *ms = config_value(res[i], "retention.ms");
        const char *cp = config_value(res[i], "cleanup.policy");
        if (ms && cp && strcmp(ms, want_ms) == 0 && strcmp(cp, t->cleanup_policy) == 0) continue;
        printf("drift    %s: retention.ms=%s cleanup.policy=%s, catalog says %s and %s\n", name,
               ms ? ms : "?", cp ? cp : "?", want_ms, t->cleanup_policy);
        rd_kafka_ConfigResource_t *r = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name);
        rd_kafka_ConfigResource_set_config(r, "retention.ms", want_ms);
        rd_kafka_ConfigResource_set_config(r, "cleanup.policy", t->cleanup_policy);
        fix[nfix++] = r;
    }
    rd_kafka_event_destroy(ev);
    if (nfix == 0 || rc != 0) goto out;

    ao = admin_options(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS, opt);
    rd_kafka_AlterConfigs(rk, fix, nfix, ao, q);
    rd_kafka_AdminOptions_destroy(ao);
    ev = wait_result(q, opt, "AlterConfigs");
    if (!ev) {
        rc = -1;
        goto out;
    }
    res = rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        if (rd_kafka_ConfigResource_error(res[i])) {
            fprintf(stderr, "ce-topics: cannot update %s: %s\n",
                    rd_kafka_ConfigResource_name(res[i]),
                    rd_kafka_ConfigResource_error_string(res[i]));
            rc = -1;
        } else {
            printf("updated  %s\n", rd_kafka_ConfigResource_name(res[i]));
            (*altered)++;
        }
    }
    rd_kafka_event_destroy(ev);
out:
    for (size_t i = 0; i < n; i++)
        rd_kafka_ConfigResource_destroy(rs[i]);
    for (size_t i = 0; i < nfix; i++)
        rd_kafka_ConfigResource_destroy(fix[i]);
    free(rs);
    free(fix);
    return rc;
}

static int cmd_create(const options *opt)
{
    int rc = 1, created = 0, altered = 0, mismatched = 0, ready = 0;
    topic_state *state = calloc(bus_catalog_len, sizeof *state);
    if (!state) {
        fprintf(stderr, "ce-topics: out of memory\n");
        return 1;
    }
    rd_kafka_t *rk = connect_producer(opt);
    if (!rk) goto out_state;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);

    if (read_metadata(rk, opt, state, NULL) != 0) goto out;
    for (size_t i = 0; i < bus_catalog_len; i++) {
        if (!state[i].exists || state[i].partitions == bus_catalog[i].partitions) continue;
        fprintf(stderr,
                "warning: %s has %d partitions, the catalog says %d (not changed: adding "
                "partitions would break per-key ordering; recreate it to apply)\n",
                bus_catalog[i].name, state[i].partitions, bus_catalog[i].partitions);
        mismatched++;
    }
    if (create_missing(rk, q, opt, state, &created) != 0) goto out;
    if (fix_config_drift(rk, q, opt, state, &altered) != 0) goto out;

    /* The controller has accepted the topics; wait until the broker serves them. */
    long long deadline = now_ms() + opt->timeout_ms;
    for (;;) {
        if (read_metadata(rk, opt, state, &ready) != 0) goto out;
        if (ready) break;
        if (now_ms() >= deadline) {
            for (size_t i = 0; i < bus_catalog_len; i++)
                if (!state[i].exists)
                    fprintf(stderr, "ce-topics: %s still missing\n", bus_catalog[i].name);
            fprintf(stderr, "ce-topics: topics have no leader after %d ms\n", opt->timeout_ms);
            goto out;
        }
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
    }
    printf("topics: %zu in catalog, %d created, %d reconfigured, %zu already as cataloged",
           bus_catalog_len, created, altered, bus_catalog_len - (size_t)created - (size_t)altered);
    if (mismatched) printf(", %d with a different partition count", mismatched);
    printf("\n");
    rc = 0;
out:
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
out_state:
    free(state);
    return rc;
}

int main(int argc, char **argv)
{
    options opt = {.bootstrap = NULL, .replication_factor = -1, .timeout_ms = 30000};
    const char *cmd = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--bootstrap") == 0 && i + 1 < argc) {
            opt.bootstrap = argv[++i];
        } else if (strcmp(a, "--replication-factor") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], -1, 32, &opt.replication_factor) != 0) {
                fprintf(stderr, "ce-topics: --replication-factor wants -1..32\n");
                return 2;
            }
        } else if (strcmp(a, "--timeout-ms") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 100, 600000, &opt.timeout_ms) != 0) {
                fprintf(stderr, "ce-topics: --timeout-ms wants 100..600000\n");
                return 2;
            }
        } else if (a[0] != '-' && !cmd) {
            cmd = a;
        } else {
            fprintf(stderr, "ce-topics: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!opt.bootstrap) {
        const char *env = getenv("KAFKA_BROKERS");
        opt.bootstrap = env && *env ? env : DEFAULT_BOOTSTRAP;
    }
    if (cmd && strcmp(cmd, "list") == 0) return cmd_list();
    if (cmd && strcmp(cmd, "create") == 0) return cmd_create(&opt);
    usage(stderr);
    return 2;
}
