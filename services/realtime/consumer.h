/*
 * The Kafka side: reads the content topic (ContentEvent), the progress topic
 * (GenerationProgress), the scraper runs topic (ScrapeRunEvent) and the imports topic
 * (ImportProgress) with all_partitions (every instance reads every partition, from the end,
 * without a group), decodes each record and publishes it to the hub. A record that does not
 * decode, or names no valid channel id (item_id, source_id, import_id), is skipped with a
 * warning and counted in realtime_malformed_events_total{topic}: realtime has no effect to
 * retry, and the records' owners (content-manager, ai-processor, scraper, subscriber-manager)
 * are where a bad record is a bug, so a dead-letter copy would help nobody.
 */
#ifndef RT_CONSUMER_H
#define RT_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "hub.h"

typedef struct rt_consumer rt_consumer;

/* topics: the topic name of each source, by RT_TOPIC_* index. */
rt_consumer *rt_consumer_new(uv_loop_t *loop, rt_hub *hub, const char *brokers,
                             const char *const topics[RT_NTOPICS], char *err, size_t errlen);
bool rt_consumer_connected(const rt_consumer *c);
/* Closes the consumer (no commit: it has no group) and frees it; done runs on the loop. */
void rt_consumer_close(rt_consumer *c, void (*done)(void *data), void *data);

/* Decodes one record of the given topic (RT_TOPIC_*) into an SSE frame (without id) and the
 * id of its channel (item, source or import id: rt_topic_family says which); false when
 * malformed (reason in err). For tests. */
bool rt_decode_event(int topic, const void *value, size_t len, core_buf *frame, char *id,
                     size_t id_size, char *err, size_t errlen);

#endif
