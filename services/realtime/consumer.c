/* Kafka records to hub events (see consumer.h). */
#include "consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "contentengine/v1/content.pb-c.h"
#include "sse.h"

struct rt_consumer {
    bus_consumer *bus;
    rt_hub *hub;
    char *topics[RT_NTOPICS];
    core_buf frame;
    core_metric *m_malformed;
    void (*done)(void *data);
    void *done_data;
};

static bool item_ok(const char *id, char *item_id, size_t size, char *err, size_t errlen)
{
    if (!id || !rt_item_id_valid(id, strlen(id))) {
        snprintf(err, errlen, "item_id missing or not 1-%d of A-Z a-z 0-9 _ -", RT_ITEM_ID_MAX);
        return false;
    }
    snprintf(item_id, size, "%s", id);
    return true;
}

bool rt_decode_event(int topic, const void *value, size_t len, core_buf *frame, char *item_id,
                     size_t item_id_size, char *err, size_t errlen)
{
    core_buf json = {0};
    bool ok = false;
    core_buf_reset(frame);
    if (topic == RT_TOPIC_CONTENT) {
        Contentengine__V1__ContentEvent *ev =
            contentengine__v1__content_event__unpack(NULL, len, value);
        if (!ev) {
            snprintf(err, errlen, "not a ContentEvent");
        } else if (item_ok(ev->item_id, item_id, item_id_size, err, errlen)) {
            rt_json_content(&json, ev);
            rt_sse_frame(frame, RT_EVENT_CONTENT, json.data, json.len);
            ok = true;
        }
        if (ev) contentengine__v1__content_event__free_unpacked(ev, NULL);
    } else if (topic == RT_TOPIC_PROGRESS) {
        Contentengine__V1__GenerationProgress *ev =
            contentengine__v1__generation_progress__unpack(NULL, len, value);
        if (!ev) {
            snprintf(err, errlen, "not a GenerationProgress");
        } else if (item_ok(ev->item_id, item_id, item_id_size, err, errlen)) {
            rt_json_progress(&json, ev);
            rt_sse_frame(frame, RT_EVENT_PROGRESS, json.data, json.len);
            ok = true;
        }
        if (ev) contentengine__v1__generation_progress__free_unpacked(ev, NULL);
    } else {
        snprintf(err, errlen, "unknown topic");
    }
    core_buf_free(&json);
    return ok;
}

static void consumer_handler(bus_consumer *bc, const bus_message *m, void *data)
{
    rt_consumer *c = data;
    int topic = -1;
    for (int i = 0; i < RT_NTOPICS; i++)
        if (strcmp(m->topic, c->topics[i]) == 0) topic = i;
    char item_id[RT_ITEM_ID_MAX + 1], err[256];
    if (topic >= 0 && rt_decode_event(topic, m->value, m->value_len, &c->frame, item_id,
                                      sizeof item_id, err, sizeof err)) {
        rt_hub_publish(c->hub, topic, m->partition, m->offset, m->timestamp_ms, item_id,
                       c->frame.data, c->frame.len);
    } else {
        if (topic < 0) snprintf(err, sizeof err, "unexpected topic");
        core_log_warn("skipping malformed event", CORE_F_STR("topic", m->topic),
                      CORE_F_INT("partition", m->partition), CORE_F_INT("offset", m->offset),
                      CORE_F_STR("ce_id", m->ce_id), CORE_F_STR("error", err));
        core_counter_add(c->m_malformed, 1, m->topic);
    }
    bus_done(bc, m, BUS_OK, NULL); /* nothing to retry: see consumer.h */
}

rt_consumer *rt_consumer_new(uv_loop_t *loop, rt_hub *hub, const char *brokers,
                             const char *content_topic, const char *progress_topic, char *err,
                             size_t errlen)
{
    rt_consumer *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->hub = hub;
    c->topics[RT_TOPIC_CONTENT] = strdup(content_topic);
    c->topics[RT_TOPIC_PROGRESS] = strdup(progress_topic);
    if (!c->topics[0] || !c->topics[1]) abort();
    c->m_malformed = core_metric_counter(core_metrics_default(), "realtime_malformed_events_total",
                                         "Records skipped because they did not decode", "topic");
    const char *topics[] = {content_topic, progress_topic, NULL};
    c->bus = bus_consumer_new(loop,
                              &(bus_consumer_config){.brokers = brokers,
                                                     .group_id = "realtime",
                                                     .client_id = "realtime",
                                                     .topics = topics,
                                                     .all_partitions = true},
                              consumer_handler, c, err, errlen);
    if (!c->bus) {
        free(c->topics[0]);
        free(c->topics[1]);
        free(c);
        return NULL;
    }
    return c;
}

bool rt_consumer_connected(const rt_consumer *c)
{
    return bus_consumer_connected(c->bus);
}

static void consumer_closed(void *data)
{
    rt_consumer *c = data;
    void (*done)(void *) = c->done;
    void *done_data = c->done_data;
    free(c->topics[0]);
    free(c->topics[1]);
    core_buf_free(&c->frame);
    free(c);
    if (done) done(done_data);
}

void rt_consumer_close(rt_consumer *c, void (*done)(void *data), void *data)
{
    c->done = done;
    c->done_data = data;
    bus_consumer_close(c->bus, consumer_closed, c);
}
