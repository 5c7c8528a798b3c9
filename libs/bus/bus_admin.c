/* Topic administration for tools and tests: each call runs a short-lived client on the thread
 * pool (the Admin API waits for the controller) and reports on the loop. */
#include "bus_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum admin_op { ADMIN_CREATE, ADMIN_DELETE } admin_op;

typedef struct admin_job {
    uv_work_t work;
    admin_op op;
    char *brokers, *topic;
    int partitions;
    char **config; /* NULL-terminated pairs */
    bus_admin_cb cb;
    void *data;
    char err[512];
} admin_job;

static void admin_work(uv_work_t *w)
{
    admin_job *j = w->data;
    if (j->err[0]) return;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!bus_conf_set(conf, "bootstrap.servers", j->brokers, j->err, sizeof j->err)) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_conf_set_log_cb(conf, bus_log_cb);
    char e[256];
    rd_kafka_t *rk = bus_rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(j->err, sizeof j->err, "admin: %s", e);
        return;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(rk, j->op == ADMIN_CREATE ? RD_KAFKA_ADMIN_OP_CREATETOPICS
                                                            : RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, 15000, e, sizeof e);
    rd_kafka_AdminOptions_set_request_timeout(opts, 20000, e, sizeof e);

    rd_kafka_event_t *ev = NULL;
    if (j->op == ADMIN_CREATE) {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(j->topic, j->partitions, -1, e, sizeof e);
        if (!nt) {
            snprintf(j->err, sizeof j->err, "create %s: %s", j->topic, e);
        } else {
            for (size_t i = 0; j->config && j->config[i]; i += 2) {
                rd_kafka_resp_err_t ce =
                    rd_kafka_NewTopic_set_config(nt, j->config[i], j->config[i + 1]);
                if (ce) {
                    snprintf(j->err, sizeof j->err, "create %s: config %s: %s", j->topic,
                             j->config[i], rd_kafka_err2str(ce));
                    break;
                }
            }
            if (!j->err[0]) {
                rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
                ev = rd_kafka_queue_poll(q, 30000);
            }
            rd_kafka_NewTopic_destroy(nt);
        }
    } else {
        rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(j->topic);
        rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
        ev = rd_kafka_queue_poll(q, 30000);
        rd_kafka_DeleteTopic_destroy(dt);
    }

    if (!j->err[0]) {
        if (!ev) {
            snprintf(j->err, sizeof j->err, "%s %s: no answer in time",
                     j->op == ADMIN_CREATE ? "create" : "delete", j->topic);
        } else if (rd_kafka_event_error(ev)) {
            snprintf(j->err, sizeof j->err, "%s %s: %s",
                     j->op == ADMIN_CREATE ? "create" : "delete", j->topic,
                     rd_kafka_event_error_string(ev));
        } else {
            const rd_kafka_topic_result_t **res;
            size_t n = 0;
            if (j->op == ADMIN_CREATE)
                res =
                    rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
            else
                res =
                    rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
            for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t te = rd_kafka_topic_result_error(res[i]);
                /* Creating what exists is success: callers ensure, they do not race. */
                if (te &&
                    !(j->op == ADMIN_CREATE && te == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)) {
                    const char *es = rd_kafka_topic_result_error_string(res[i]);
                    snprintf(j->err, sizeof j->err, "%s %s: %s",
                             j->op == ADMIN_CREATE ? "create" : "delete", j->topic,
                             es ? es : rd_kafka_err2str(te));
                }
            }
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void admin_after(uv_work_t *w, int status)
{
    (void)status;
    admin_job *j = w->data;
    if (j->cb) j->cb(j->data, j->err[0] ? j->err : NULL);
    if (j->config) {
        for (size_t i = 0; j->config[i]; i++)
            free(j->config[i]);
        free(j->config);
    }
    free(j->brokers);
    free(j->topic);
    free(j);
}

static void admin_start(uv_loop_t *loop, admin_op op, const char *brokers, const char *topic,
                        int partitions, const char *const *config, bus_admin_cb cb, void *data)
{
    admin_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->op = op;
    j->cb = cb;
    j->data = data;
    j->partitions = partitions;
    j->brokers = strdup(brokers ? brokers : "");
    j->topic = strdup(topic ? topic : "");
    if (!j->brokers || !j->topic) abort();
    if (!j->brokers[0] || !j->topic[0])
        snprintf(j->err, sizeof j->err, "admin: brokers and topic are required");
    else if (op == ADMIN_CREATE && partitions < 1)
        snprintf(j->err, sizeof j->err, "create %s: partitions must be >= 1", topic);
    if (config) {
        size_t n = 0;
        while (config[n])
            n++;
        if (n % 2) {
            snprintf(j->err, sizeof j->err, "create %s: config must hold key, value pairs", topic);
            n--;
        }
        j->config = calloc(n + 1, sizeof *j->config);
        if (!j->config) abort();
        for (size_t i = 0; i < n; i++) {
            j->config[i] = strdup(config[i]);
            if (!j->config[i]) abort();
        }
    }
    j->work.data = j;
    if (uv_queue_work(loop, &j->work, admin_work, admin_after) != 0) {
        snprintf(j->err, sizeof j->err, "admin: uv_queue_work failed");
        admin_after(&j->work, 0);
    }
}

void bus_admin_create_topic(uv_loop_t *loop, const char *brokers, const char *topic, int partitions,
                            const char *const *config, bus_admin_cb cb, void *data)
{
    admin_start(loop, ADMIN_CREATE, brokers, topic, partitions, config, cb, data);
}

void bus_admin_delete_topic(uv_loop_t *loop, const char *brokers, const char *topic,
                            bus_admin_cb cb, void *data)
{
    admin_start(loop, ADMIN_DELETE, brokers, topic, 0, NULL, cb, data);
}
