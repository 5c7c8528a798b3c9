/*
 * GET /api/realtime/events?channels=content:<id>,content:*,source:<id>,import:*,...
 * (Last-Event-ID, or the last_event_id query parameter, to resume)
 * 400 problem+json for a bad channel list or a malformed Last-Event-ID; otherwise a
 * text/event-stream that the hub writes to.
 */
#include "api.h"

#include <string.h>

static rt_hub *api_hub; /* one hub per process */

static int sink_write(void *ctx, const void *data, size_t len)
{
    return http_stream_write(ctx, data, len);
}

static size_t sink_pending(void *ctx)
{
    return http_stream_pending(ctx);
}

static void sink_end(void *ctx)
{
    http_stream_end(ctx);
}

static void on_stream_close(http_stream *s, void *data)
{
    rt_hub_detach(api_hub, data);
    http_stream_end(s);
}

static void events_handler(http_req *req, void *data)
{
    rt_hub *hub = data;
    rt_channel_list chans;
    char err[256];
    if (!rt_channels_parse(http_query(req, "channels"), rt_hub_cfg(hub)->max_sub_channels, &chans,
                           err, sizeof err)) {
        http_respond_problem(req, 400, "Bad channels", err);
        return;
    }
    rt_posvec resume = {0};
    bool resuming = false;
    /* A browser's EventSource sends the header on its own reconnects only; a page that opens
     * a new one (after an HTTP error ended the old) can name the position in the query. */
    const char *last = http_header(req, "Last-Event-ID");
    if (!last || !*last) last = http_query(req, "last_event_id");
    if (last && *last) {
        if (!rt_posvec_parse(last, &resume)) {
            http_respond_problem(req, 400, "Bad Last-Event-ID",
                                 "Last-Event-ID (or last_event_id) is not an id this service "
                                 "sent (t<ms>.<topic><partition>:<offset>...)");
            return;
        }
        resuming = true;
    }
    http_set_header(req, "Cache-Control", "no-cache");
    if (strcmp(http_method(req), "HEAD") == 0) { /* headers only: no stream to keep open */
        rt_posvec_free(&resume);
        http_respond(req, 200, "text/event-stream", NULL, 0);
        return;
    }
    http_set_header(req, "X-Accel-Buffering", "no");
    http_stream *s = http_stream_start(req, 200, "text/event-stream");
    if (!s) {
        rt_posvec_free(&resume);
        return;
    }
    static const char hello[] = "retry: 2000\n: connected\n\n";
    http_stream_write(s, hello, sizeof hello - 1);
    rt_client *c = rt_hub_attach(
        hub, &chans, resuming ? &resume : NULL,
        (rt_sink){.write = sink_write, .pending = sink_pending, .end = sink_end, .ctx = s});
    rt_posvec_free(&resume);
    if (!c) return; /* dropped at once; the hub ended the stream */
    if (http_stream_is_closed(s)) {
        rt_hub_detach(hub, c);
        http_stream_end(s);
        return;
    }
    http_stream_on_close(s, on_stream_close, c);
}

void rt_api_register(http_server *srv, rt_hub *hub)
{
    api_hub = hub;
    http_route(srv, "GET", "/api/realtime/events", events_handler, hub);
}
