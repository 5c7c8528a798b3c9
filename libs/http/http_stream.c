/*
 * Streaming responses (Server-Sent Events): headers at once, each write sent as it comes, at
 * most one h2o_send outstanding, the rest buffered until the generator's proceed callback.
 *
 * HTTP/1.1 chunks are framed here rather than by h2o's chunked filter: that filter cannot send
 * the headers before the first chunk (h2o turns an empty in-progress send into a deferred
 * proceed), and a stream must announce itself at once. Setting Transfer-Encoding ourselves makes
 * h2o's filter step aside.
 *
 * On HTTP/1.x (cleartext) a stream takes the connection over: h2o_http1_upgrade writes the
 * response headers (with "Connection: upgrade", which names no Upgrade header and so means
 * nothing to clients and proxies) and then hands us the socket, freeing h2o's connection, its
 * request, the request's memory pool and the socket's input buffer. A long-lived stream (an idle
 * SSE client) then costs its socket, our request and this struct: about 2 KB instead of about
 * 11 KB. We write the chunks with h2o_socket_write (one write outstanding, the rest pending as
 * before), read the socket to notice the client leaving (input is discarded: the connection
 * closes when the stream ends, so nothing pipelined behind the stream is ever answered), log the
 * request when the connection closes, and keep the stream on srv->detached so that the drain
 * still waits for it and aborts it at the deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"

#include <h2o/http1.h> /* after h2o.h */

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

/* Everything written is out: an idle stream (an SSE client between heartbeats) holds no buffer,
 * whatever its high-water mark was. */
static void stream_release_buffers(http_stream *s)
{
    core_buf_free(&s->sending);
    core_buf_free(&s->pending);
}

/* ---------------------------------------------------------------- detached (HTTP/1.x) */

static void stream_flush(http_stream *s, bool final);

/* The connection is over: close the socket (when we hold it), log, tell the caller if the client
 * left, and drop the socket's reference (which may free s). */
static void stream_detached_finish(http_stream *s, bool client_left)
{
    if (s->linked) {
        http_server *srv = s->srv;
        if (s->dprev)
            s->dprev->dnext = s->dnext;
        else
            srv->detached = s->dnext;
        if (s->dnext) s->dnext->dprev = s->dprev;
        s->dprev = s->dnext = NULL;
        s->linked = false;
        srv->ndetached--;
    }
    if (s->sock) {
        h2o_socket_t *sock = s->sock;
        s->sock = NULL;
        sock->data = NULL;
        h2o_socket_close(sock);
    }
    if (!s->finished) s->closed = true;
    s->inflight = false;
    http_req *req = s->req;
    http_internal_req_log(s->srv, req, s->status, s->bytes);
    if (client_left) stream_notify_close(s);
    http_req_unref(req); /* the socket's */
}

static void stream_on_detached_read(h2o_socket_t *sock, const char *err)
{
    http_stream *s = sock->data;
    if (err) {
        stream_detached_finish(s, true);
        return;
    }
    if (sock->input->size) h2o_buffer_consume(&sock->input, sock->input->size);
}

static void stream_on_detached_written(h2o_socket_t *sock, const char *err)
{
    http_stream *s = sock->data;
    s->inflight = false;
    if (err) {
        stream_detached_finish(s, true);
    } else if (s->finished || s->closed || s->abort_pending) {
        stream_detached_finish(s, false);
    } else if (s->ending) {
        stream_flush(s, true);
    } else if (s->pending.len) {
        stream_flush(s, false);
    } else {
        stream_release_buffers(s);
    }
}

/* h2o_http1_upgrade's callback: the headers are out and h2o's connection is freed (its request
 * too: our anchor already ran). sock is NULL when the write failed (h2o closed the socket). */
static void stream_on_detached(void *data, h2o_socket_t *sock, size_t reqsize)
{
    (void)reqsize;
    http_stream *s = data;
    s->inflight = false;
    if (!sock) {
        stream_detached_finish(s, true);
        return;
    }
    http_server *srv = s->srv;
    s->sock = sock;
    sock->data = s;
    s->linked = true;
    s->dnext = srv->detached;
    if (srv->detached) srv->detached->dprev = s;
    srv->detached = s;
    srv->ndetached++;
    /* the request, and whatever was pipelined behind it: frees the input buffer */
    if (sock->input->size) h2o_buffer_consume(&sock->input, sock->input->size);
    if (s->closed || s->abort_pending) {
        stream_detached_finish(s, false);
        return;
    }
    h2o_socket_read_start(sock, stream_on_detached_read);
    if (s->ending)
        stream_flush(s, true);
    else if (s->pending.len)
        stream_flush(s, false);
}

/* A cleartext HTTP/1.x connection whose socket can be taken over. */
static bool stream_can_detach(const http_req *req)
{
    h2o_req_t *h = req->h2o;
    if (h->version < 0x100 || h->version >= 0x200 || !h->conn || !h->conn->callbacks ||
        !h->conn->callbacks->get_socket)
        return false;
    h2o_socket_t *sock = h->conn->callbacks->get_socket(h->conn);
    return sock && !sock->ssl && sock->_cb.write == NULL;
}

/* ---------------------------------------------------------------- h2o's generator */

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
    if (s->detached && !s->sock) return; /* not handed over yet, or closed */
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
        if (s->detached)
            s->bytes += s->sending.len;
        else
            h->bytes_sent += s->sending.len;
    } else if (final && s->chunked) {
        bufs[n++] = h2o_iovec_init(stream_last_chunk, sizeof stream_last_chunk - 1);
    }
    if (s->detached) {
        if (final) s->finished = true;
        if (n == 0) { /* HTTP/1.0 with nothing left: the end of the body is the close */
            stream_detached_finish(s, false);
            return;
        }
        s->inflight = true;
        h2o_socket_write(s->sock, bufs, n, stream_on_detached_written);
        return;
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
    if (s->pending.len)
        stream_flush(s, false);
    else
        stream_release_buffers(s);
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

    s->status = status;
    s->srv = req->srv;
    s->detached = !s->head && stream_can_detach(req);

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
    if (s->detached) {
        http_internal_req_detach(req);
        http_req_ref(req); /* the socket's, until the connection closes */
        s->inflight = true;
        h2o_http1_upgrade(h, NULL, 0, stream_on_detached, s);
        return s;
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
    if (!s || http_stream_is_closed(s) || s->ending || s->finished) return -1;
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
    if (s->detached) return s->closed; /* h2o's request is gone by design */
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
    if (s->detached) {
        /* before the handover or while a write is out, their callbacks send the end */
        if (s->sock && !s->closed && !s->finished && !s->inflight) stream_flush(s, true);
        http_req_unref(req); /* the caller's handle; the socket holds its own */
        return;
    }
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
    if (s->detached) return; /* h2o freed its request on handing the socket over */
    s->closed = true;
    s->inflight = false;
    stream_notify_close(s);
}

static void stream_detached_abort(http_stream *s)
{
    if (s->closed || (s->finished && !s->linked)) return;
    http_req *req = http_req_ref(s->req);
    s->closed = true;
    stream_notify_close(s);
    if (s->linked && !s->inflight)
        stream_detached_finish(s, false);
    else
        s->abort_pending = true; /* the handover or the write in flight closes it */
    http_req_unref(req);
}

void http_internal_stream_release_detached(http_server *srv)
{
    size_t n = srv->ndetached, k = 0;
    if (!n) return;
    http_req **all = calloc(n, sizeof *all);
    if (!all) abort();
    for (http_stream *s = srv->detached; s && k < n; s = s->dnext)
        all[k++] = http_req_ref(s->req);
    for (size_t i = 0; i < k; i++)
        stream_detached_abort(all[i]->stream);
    for (size_t i = 0; i < k; i++)
        http_req_unref(all[i]);
    free(all);
}

void http_internal_stream_abort(http_stream *s)
{
    http_req *req = s->req;
    if (s->detached) {
        stream_detached_abort(s);
        return;
    }
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
