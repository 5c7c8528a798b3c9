/* Kafka records to hub events (see consumer.h). */
#include "consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
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

static void json_content(core_buf *out, const void *m)
{
    rt_json_content(out, m);
}

static void json_progress(core_buf *out, const void *m)
{
    rt_json_progress(out, m);
}

static void json_import(core_buf *out, const void *m)
{
    rt_json_import(out, m);
}

static void json_run(core_buf *out, const void *m)
{
    rt_json_scrape_run(out, m);
}

/* How each source's records become events, by RT_TOPIC_* index. */
static const struct codec {
    const ProtobufCMessageDescriptor *desc;
    const char *event;   /* SSE event name */
    const char *id_name; /* the field naming the channel */
    size_t id_off;       /* its offset in the message (a char *) */
    void (*json)(core_buf *out, const void *m);
} codecs[RT_NTOPICS] = {
    [RT_TOPIC_CONTENT] = {&contentengine__v1__content_event__descriptor, RT_EVENT_CONTENT,
                          "item_id", offsetof(Contentengine__V1__ContentEvent, item_id),
                          json_content},
    [RT_TOPIC_PROGRESS] = {&contentengine__v1__generation_progress__descriptor, RT_EVENT_PROGRESS,
                           "item_id", offsetof(Contentengine__V1__GenerationProgress, item_id),
                           json_progress},
    [RT_TOPIC_IMPORTS] = {&contentengine__v1__import_progress__descriptor, RT_EVENT_IMPORT,
                          "import_id", offsetof(Contentengine__V1__ImportProgress, import_id),
                          json_import},
    [RT_TOPIC_RUNS] = {&contentengine__v1__scrape_run_event__descriptor, RT_EVENT_RUN, "source_id",
                       offsetof(Contentengine__V1__ScrapeRunEvent, source_id), json_run},
};

bool rt_decode_event(int topic, const void *value, size_t len, core_buf *frame, char *id,
                     size_t id_size, char *err, size_t errlen)
{
    core_buf_reset(frame);
    if (topic < 0 || topic >= RT_NTOPICS) {
        snprintf(err, errlen, "unknown topic");
        return false;
    }
    const struct codec *c = &codecs[topic];
    ProtobufCMessage *m = protobuf_c_message_unpack(c->desc, NULL, len, value);
    if (!m) {
        snprintf(err, errlen, "not a %s", c->desc->short_name);
        return false;
    }
    const char *mid = *(char *const *)((const char *)m + c->id_off);
    bool ok = mid && rt_item_id_valid(mid, strlen(mid));
    if (!ok) {
        snprintf(err, errlen, "%s missing or not 1-%d of A-Z a-z 0-9 _ -", c->id_name,
                 RT_ITEM_ID_MAX);
    } else {
        snprintf(id, id_size, "%s", mid);
        core_buf json = {0};
        c->json(&json, m);
        rt_sse_frame(frame, c->event, json.data, json.len);
        core_buf_free(&json);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return ok;
}

static void consumer_handler(bus_consumer *bc, const bus_message *m, void *data)
{
    rt_consumer *c = data;
    int topic = -1;
    for (int i = 0; i < RT_NTOPICS; i++)
        if (strcmp(m->topic, c->topics[i]) == 0) topic = i;
    char id[RT_ITEM_ID_MAX + 1], err[256];
    if (topic >= 0 &&
        rt_decode_event(topic, m->value, m->value_len, &c->frame, id, sizeof id, err, sizeof err)) {
        rt_hub_publish(c->hub, topic, m->partition, m->offset, m->timestamp_ms, id, c->frame.data,
                       c->frame.len);
    } else {
        if (topic < 0) snprintf(err, sizeof err, "unexpected topic");
        core_log_warn("skipping malformed event", CORE_F_STR("topic", m->topic),
                      CORE_F_INT("partition", m->partition), CORE_F_INT("offset", m->offset),
                      CORE_F_STR("ce_id", m->ce_id), CORE_F_STR("error", err));
        core_counter_add(c->m_malformed, 1, m->topic);
    }
    bus_done(bc, m, BUS_OK, NULL); /* nothing to retry: see consumer.h */
}

static void consumer_free(rt_consumer *c)
{
    for (int i = 0; i < RT_NTOPICS; i++)
        free(c->topics[i]);
    core_buf_free(&c->frame);
    free(c);
}

rt_consumer *rt_consumer_new(uv_loop_t *loop, rt_hub *hub, const char *brokers,
                             const char *const topics[RT_NTOPICS], char *err, size_t errlen)
{
    rt_consumer *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->hub = hub;
    const char *names[RT_NTOPICS + 1];
    for (int i = 0; i < RT_NTOPICS; i++) {
        c->topics[i] = strdup(topics[i]);
        if (!c->topics[i]) abort();
        names[i] = topics[i];
    }
    names[RT_NTOPICS] = NULL;
    c->m_malformed = core_metric_counter(core_metrics_default(), "realtime_malformed_events_total",
                                         "Records skipped because they did not decode", "topic");
    /* A deeper queue than libs/bus's 2 MB: the handler only fans out, and librdkafka 2.0.2
     * resumes a full queue only when its broker thread wakes (up to a second), which would
     * hold a burst's events back. Readers start at the end, so no backlog fills it at start. */
    static const char *const deeper[] = {"queued.max.messages.kbytes", "16384", "fetch.max.bytes",
                                         "4194304", NULL};
    c->bus = bus_consumer_new(loop,
                              &(bus_consumer_config){.brokers = brokers,
                                                     .group_id = "realtime",
                                                     .client_id = "realtime",
                                                     .topics = names,
                                                     .all_partitions = true,
                                                     .extra = deeper},
                              consumer_handler, c, err, errlen);
    if (!c->bus) {
        consumer_free(c);
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
    consumer_free(c);
    if (done) done(done_data);
}

void rt_consumer_close(rt_consumer *c, void (*done)(void *data), void *data)
{
    c->done = done;
    c->done_data = data;
    bus_consumer_close(c->bus, consumer_closed, c);
}
