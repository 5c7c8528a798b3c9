/*
 * The hub: channels with a bounded history each, the connected SSE clients, fan-out, resume
 * from a position vector, heartbeats and slow-client eviction. One per process, on the loop.
 *
 * Memory is bounded by configuration: history (ring_item events per entity channel -- content:<id>,
 * source:<id>, import:<id> -- ring_all for each family's "*" channel; entity channels idle for
 * idle_ms without subscribers are dropped, at most max_item_channels of all families kept), and per
 * client max_pending bytes not yet taken by the kernel (a client past it gets a final "overflow"
 * event and is disconnected). Events are shared (reference counted) between the channels that hold
 * them; a client costs a small struct, its channel slots and its position vector: no timer, no
 * buffer of its own while idle.
 */
#ifndef RT_HUB_H
#define RT_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "channel.h"
#include "http.h"
#include "posvec.h"

typedef struct rt_hub_config {
    uint32_t ring_item;       /* events kept per entity channel (content:<id>, source:<id>, ...) */
    uint32_t ring_all;        /* events kept for each of content:*, source:*, import:* */
    size_t max_pending;       /* bytes per client not yet written before it is dropped */
    int64_t heartbeat_ms;     /* ": hb" comment period; 0: none */
    int64_t idle_ms;          /* an item channel without subscribers or events is dropped */
    size_t max_item_channels; /* item channels kept at most (least recently active go) */
    size_t max_sub_channels;  /* channels one subscription may name */
} rt_hub_config;

typedef struct rt_hub rt_hub;
typedef struct rt_client rt_client;

/* loop may be NULL (unit tests): no timers then; call rt_hub_tick by hand. */
rt_hub *rt_hub_new(uv_loop_t *loop, const rt_hub_config *cfg);
/* Stops the timers (call before running the loop to its end), then rt_hub_free after it. */
void rt_hub_close(rt_hub *h);
void rt_hub_free(rt_hub *h);
const rt_hub_config *rt_hub_cfg(const rt_hub *h);

/* An event from Kafka: goes to <family>:<id> and <family>:* (the family of the topic:
 * rt_topic_family), into their history and to their subscribers. sse_text is the frame without
 * its id line (rt_sse_frame). */
void rt_hub_publish(rt_hub *h, int topic, int partition, int64_t offset, int64_t ts_ms,
                    const char *id, const char *sse_text, size_t len);

/* What a resume found. */
typedef enum rt_resume_result { RT_RESUME_OK, RT_RESUME_TOO_OLD } rt_resume_result;

/*
 * Writes the replay for a subscription resuming from pos to out (frames with id lines),
 * updating pos as the client would; or, when the history no longer reaches back to pos,
 * returns RT_RESUME_TOO_OLD and writes nothing. Exposed for tests; rt_hub_attach uses it.
 */
rt_resume_result rt_hub_replay(rt_hub *h, const rt_channel_list *chans, rt_posvec *pos,
                               core_buf *out);

/* The sink a client writes to: an http_stream in the service, a buffer in unit tests. */
typedef struct rt_sink {
    int (*write)(void *ctx, const void *data, size_t len);
    size_t (*pending)(void *ctx);
    void (*end)(void *ctx); /* the hub is done with the client (after a final event) */
    void *ctx;
} rt_sink;

/* A new subscriber; resume (may be NULL) is taken over. Sends the replay first, or the reset
 * event when the history does not reach back or the replay would exceed max_pending. Returns the
 * client, or NULL when it was dropped at once (sink.end was called). */
rt_client *rt_hub_attach(rt_hub *h, const rt_channel_list *chans, rt_posvec *resume, rt_sink sink);
/* The client went away: forget it (sink.end is not called). */
void rt_hub_detach(rt_hub *h, rt_client *c);

/* Heartbeats, slow-client checks and idle-channel sweeping (the timer calls it). */
void rt_hub_tick(rt_hub *h, int64_t now_ms);

/* SIGTERM: each client gets a final "shutdown" event and its sink ended. */
void rt_hub_shutdown(rt_hub *h);

size_t rt_hub_clients(const rt_hub *h);
size_t rt_hub_item_channels(const rt_hub *h);

#endif
