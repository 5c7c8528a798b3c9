/*
 * idle_floor: for scripts/bench-idle-rss.sh only. The least a service on PostgreSQL and Kafka
 * can hold at idle with the libraries the design builds on, as Debian ships them: it opens one
 * libpq connection (DATABASE_URL, SCRAM like the services) and one connected librdkafka
 * producer (KAFKA_BROKERS), prints "ready", and waits for SIGTERM. No loop, no HTTP server, no
 * consumer, no JSON: whatever it holds, every such service holds too.
 */
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    const char *url = getenv("DATABASE_URL"), *brokers = getenv("KAFKA_BROKERS");
    if (!url || !*url || !brokers || !*brokers) {
        fprintf(stderr, "idle_floor: DATABASE_URL and KAFKA_BROKERS are required\n");
        return 2;
    }
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "idle_floor: PostgreSQL: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return 1;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "idle_floor: %s\n", err);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "idle_floor: %s\n", err);
        return 1;
    }
    /* a metadata answer: a broker connection is up, as in a ready service */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, 10000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "idle_floor: Kafka: %s\n", rd_kafka_err2str(e));
        return 1;
    }
    rd_kafka_metadata_destroy(md);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    printf("ready\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    rd_kafka_destroy(rk);
    PQfinish(pg);
    return 0;
}
