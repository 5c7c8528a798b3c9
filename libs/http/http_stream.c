/*
 * Streaming responses (Server-Sent Events): headers at once, each write sent as it comes, at
 * most one h2o_send outstanding, the rest buffered until the generator's proceed callback.
 *
 * HTTP/1.1 chunks are framed here rather than by h2o's chunked filter: that filter cannot send
 * the headers before the first chunk (h2o turns an empty in-progress send into a deferred
 * proceed), and a stream must announce itself at once. Setting Transfer-Encoding ourselves makes
 * h2o's filter step aside.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"

static char stream_crlf[] = "\r\n";
static char stream_last_chunk[] = "0\r\n\r\n";
static char stream_crlf_last_chunk[] = "\r\n0\r\n\r\n";

static http_stream *stream_from_gen(h2o_generator_t *gen)
{
    return H2O_STRUCT_FROM_MEMBER(http_stream, gen, gen);
}

static void stream_notify_close(http_stream *s)
{
    if (s->close_notified || s->ending) return;
    s->close_notified = true;
    if (s->on_close) s->on_close(s, s->on_close_data);
}

static void stream_send_error(http_stream *s)
{
    s->finished = true;
    s->abort_pending = false;
    h2o_send(s->req->h2o, NULL, 0, H2O_SEND_STATE_ERROR);
}

/* Hands what is pending to h2o: precondition !inflight and the request alive. */
static void stream_flush(http_stream *s, bool final)
{
    h2o_req_t *h = s->req->h2o;
    core_buf tmp = s->sending;
    s->sending = s->pending;
    s->pending = tmp;
    core_buf_reset(&s->pending);

    h2o_iovec_t bufs[3];
    size_t n = 0;
    if (s->sending.len) {
        if (s->chunked) {
            int hl = snprintf(s->chunk_head, sizeof s->chunk_head, "%zx\r\n", s->sending.len);
            bufs[n++] = h2o_iovec_init(s->chunk_head, (size_t)hl);
        }
        bufs[n++] = h2o_iovec_init(s->sending.data, s->sending.len);
        if (s->chunked) {
            if (final)
                bufs[n++] =
                    h2o_iovec_init(stream_crlf_last_chunk, sizeof stream_crlf_last_chunk - 1);
            else
                bufs[n++] = h2o_iovec_init(stream_crlf, sizeof stream_crlf - 1);
        }
        h->bytes_sent += s->sending.len;
    } else if (final && s->chunked) {
        bufs[n++] = h2o_iovec_init(stream_last_chunk, sizeof stream_last_chunk - 1);
    }
    if (final) {
        s->finished = true;
        h2o_send(h, n ? bufs : NULL, n, H2O_SEND_STATE_FINAL);
    } else {
        s->inflight = true;
        h2o_send(h, n ? bufs : NULL, n, H2O_SEND_STATE_IN_PROGRESS);
    }
}

static void stream_on_proceed(h2o_generator_t *gen, h2o_req_t *h)
{
    (void)h;
    http_stream *s = stream_from_gen(gen);
    s->inflight = false;
    if (s->finished || s->req->gone) return;
    if (s->abort_pending) {
        stream_send_error(s);
        return;
    }
    if (s->ending) {
        stream_flush(s, true);
        return;
    }
    if (s->pending.len) stream_flush(s, false);
}

static void stream_on_stop(h2o_generator_t *gen, h2o_req_t *h)
{
    (void)h;
    http_stream *s = stream_from_gen(gen);
    s->closed = true;
    s->inflight = false;
}

http_stream *http_stream_start(http_req *req, int status, const char *content_type)
{
    if (!http_internal_req_can_respond(req) || req->stream) return NULL;
    if (status < 200 || status > 599) status = 500;
    h2o_req_t *h = req->h2o;
    http_stream *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->req = http_req_ref(req);
    req->stream = s;
    s->gen.proceed = stream_on_proceed;
    s->gen.stop = stream_on_stop;
    s->head = strcmp(req->method, "HEAD") == 0;

    h->res.status = status;
    h->res.reason = http_internal_reason(status);
    h->res.content_length = SIZE_MAX;
    if (content_type)
        h2o_set_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       h2o_strdup(&h->pool, content_type, SIZE_MAX).base, strlen(content_type), 1);
    if (!s->head && h->version == 0x101) {
        s->chunked = true;
        h2o_set_header(&h->pool, &h->res.headers, H2O_TOKEN_TRANSFER_ENCODING,
                       H2O_STRLIT("chunked"), 1);
    } else if (h->version < 0x101) {
        h->http1_is_persistent = 0; /* HTTP/1.0: the body ends with the connection */
    }
    h->bytes_counted_by_ostream = 1; /* we count payload bytes, not our framing */
    req->responded = true;
    h2o_start_response(h, &s->gen);
    s->inflight = true;
    h2o_send(h, NULL, 0, H2O_SEND_STATE_IN_PROGRESS); /* the headers, now */
    http_internal_req_watch_start(req);
    return s;
}

void http_stream_on_close(http_stream *s, http_stream_close_fn fn, void *data)
{
    s->on_close = fn;
    s->on_close_data = data;
}

int http_stream_write(http_stream *s, const void *data, size_t len)
{
    if (!s || s->closed || s->ending || s->finished || s->req->gone || s->req->client_gone)
        return -1;
    if (len == 0 || s->head) return 0;
    core_buf_append(&s->pending, data, len);
    if (!s->inflight) stream_flush(s, false);
    return 0;
}

size_t http_stream_pending(const http_stream *s)
{
    return s->pending.len + (s->inflight ? s->sending.len : 0);
}

bool http_stream_is_closed(const http_stream *s)
{
    return s->closed || s->req->gone || s->req->client_gone;
}

http_req *http_stream_req(http_stream *s)
{
    return s->req;
}

void http_stream_end(http_stream *s)
{
    if (!s || s->ending) return;
    s->ending = true;
    http_req *req = s->req;
    if (!req->gone && !s->closed && !s->finished && !s->inflight) {
        http_req_ref(req);
        stream_flush(s, true);
        http_req_unref(req);
    }
    http_req_unref(req); /* the caller's handle */
}

/* ---------------------------------------------------------------- internal */

void http_internal_stream_on_gone(http_stream *s)
{
    s->closed = true;
    s->inflight = false;
    stream_notify_close(s);
}

void http_internal_stream_abort(http_stream *s)
{
    http_req *req = s->req;
    if (s->finished || req->gone) return;
    s->closed = true;
    http_req_ref(req);
    stream_notify_close(s);
    if (!s->finished && !req->gone) {
        if (s->inflight)
            s->abort_pending = true;
        else
            stream_send_error(s);
    }
    http_req_unref(req);
}

void http_internal_stream_free(http_stream *s)
{
    core_buf_free(&s->sending);
    core_buf_free(&s->pending);
    free(s);
}
