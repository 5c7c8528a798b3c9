/*
 * The Kafka side: reads the content topic (ContentEvent) and the progress topic
 * (GenerationProgress) with all_partitions (every instance reads every partition, from the
 * end, without a group), decodes each record and publishes it to the hub. A record that does
 * not decode, or names no valid item id, is skipped with a warning and counted in
 * realtime_malformed_events_total{topic}: realtime has no effect to retry, and the record's
 * owners (content-manager, ai-processor) already dead-letter what they cannot read.
 */
#ifndef RT_CONSUMER_H
#define RT_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "hub.h"

typedef struct rt_consumer rt_consumer;

rt_consumer *rt_consumer_new(uv_loop_t *loop, rt_hub *hub, const char *brokers,
                             const char *content_topic, const char *progress_topic, char *err,
                             size_t errlen);
bool rt_consumer_connected(const rt_consumer *c);
/* Closes the consumer (no commit: it has no group) and frees it; done runs on the loop. */
void rt_consumer_close(rt_consumer *c, void (*done)(void *data), void *data);

/* Decodes one record of the given topic (RT_TOPIC_*) into an SSE frame (without id) and the
 * item id; false when malformed (reason in err). For tests. */
bool rt_decode_event(int topic, const void *value, size_t len, core_buf *frame, char *item_id,
                     size_t item_id_size, char *err, size_t errlen);

#endif
