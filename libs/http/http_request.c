/*
 * Requests: the glue into libh2o (handler, filter, logger), our per-request state and its
 * lifetime, routing and dispatch, getters and buffered responses.
 *
 * How we hook into h2o 2.2.5. Everything hangs off the host's fallback path:
 *   - a handler (on_req) that attaches our http_req and dispatches through the route table;
 *   - a filter that runs whenever any response starts - ours, a delegated one (the reverse
 *     proxy) or h2o's own early errors (413 body too large, 400 broken chunked encoding, 417),
 *     which bind the fallback path too. It adds X-Request-Id, stops the handler timeout and
 *     rewrites h2o's text/plain errors into problem+json;
 *   - a logger, which h2o calls from h2o_dispose_request for every finished or aborted request:
 *     the access log line and the metrics.
 * Our state is found from the h2o request through a request prefilter (h2o_add_prefilter) that
 * carries the pointer; and it learns that h2o freed the request through a shared allocation on
 * the request's pool (h2o_mem_alloc_shared) whose dispose callback runs when the pool is
 * cleared: that "anchor" holds one reference on the http_req.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"

struct http_internal_alloc {
    struct http_internal_alloc *next;
    char data[];
};

typedef struct req_handler {
    h2o_handler_t super;
    http_server *srv;
} req_handler;

typedef struct req_filter {
    h2o_filter_t super;
    http_server *srv;
} req_filter;

typedef struct req_logger {
    h2o_logger_t super;
    http_server *srv;
} req_logger;

typedef struct req_prefilter {
    h2o_req_prefilter_t super;
    http_req *req;
} req_prefilter;

typedef struct req_anchor {
    http_req *req;
} req_anchor;

typedef struct req_problem_ostream {
    h2o_ostream_t super;
    http_req *req;
} req_problem_ostream;

static void req_gen_noop_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    (void)self;
    (void)req;
}

static void req_gen_noop_stop(h2o_generator_t *self, h2o_req_t *req)
{
    (void)self;
    (void)req;
}

/* Our buffered responses: callbacks are non-NULL so that the filter can tell them from
 * h2o_send_inline's error responses (whose generator has none). */
static h2o_generator_t req_body_generator = {req_gen_noop_proceed, req_gen_noop_stop};

char *http_internal_req_strdup(http_req *req, const char *s, size_t len)
{
    struct http_internal_alloc *a = malloc(sizeof *a + len + 1);
    if (!a) abort();
    if (len) memcpy(a->data, s, len);
    a->data[len] = '\0';
    a->next = req->allocs;
    req->allocs = a;
    return a->data;
}

/* ---------------------------------------------------------------- lifetime */

http_req *http_req_ref(http_req *req)
{
    req->refs++;
    return req;
}

static void req_free(http_req *req)
{
    for (struct http_internal_alloc *a = req->allocs, *next; a; a = next) {
        next = a->next;
        free(a);
    }
    for (size_t i = 0; i < req->nparams; i++) {
        free(req->params[i].name);
        free(req->params[i].value);
    }
    free(req->params);
    for (size_t i = 0; i < req->nqueries; i++) {
        free(req->queries[i].name);
        free(req->queries[i].value);
    }
    free(req->queries);
    if (req->stream) http_internal_stream_free(req->stream);
    free(req->method);
    free(req->path);
    free(req->query);
    free(req);
}

void http_req_unref(http_req *req)
{
    if (!req) return;
    if (--req->refs == 0) req_free(req);
}

bool http_req_is_gone(const http_req *req)
{
    return req->gone || req->client_gone;
}

bool http_req_responded(const http_req *req)
{
    return req->responded;
}

static bool req_can_respond(const http_req *req)
{
    return req->h2o && !req->gone && !req->client_gone && !req->responded && !req->delegated;
}

/* ---------------------------------------------------------------- disconnect watcher */

/* h2o 2.2.5 stops reading an HTTP/1 connection once a request is complete, so a client that
 * goes away is only noticed when a write fails. While a handler answers asynchronously or a
 * stream is open we read the socket ourselves: EOF or an error means the client is gone. The
 * request's headers (and body) point into the socket's input buffer; reading must never move
 * it, so we only read while the buffer has room for h2o's next 4 KiB reservation without a
 * realloc or memmove. */
#define REQ_WATCH_RESERVE 4096

static bool req_watch_has_room(const h2o_buffer_t *in)
{
    if (!in || !in->bytes) return false;
    size_t used = (size_t)(in->bytes - in->_buf) + in->size;
    return in->capacity >= used && in->capacity - used >= REQ_WATCH_RESERVE;
}

static h2o_socket_t *req_socket(const http_req *req)
{
    if (!req->h2o || !req->h2o->conn) return NULL;
    h2o_conn_t *conn = req->h2o->conn;
    if (!conn->callbacks || !conn->callbacks->get_socket) return NULL;
    return conn->callbacks->get_socket(conn);
}

static void req_watch_stop(http_req *req)
{
    if (!req->watching) return;
    req->watching = false;
    h2o_socket_t *sock = req_socket(req);
    if (sock) h2o_socket_read_stop(sock);
}

static void req_watch_on_read(h2o_socket_t *sock, const char *err)
{
    /* sock->data is h2o's HTTP/1 connection, whose first member is the h2o_conn_t */
    h2o_conn_t *conn = sock->data;
    http_server *srv = H2O_STRUCT_FROM_MEMBER(http_server, ctx, conn->ctx);
    http_req *req = NULL;
    for (http_req *r = srv->inflight; r; r = r->next) {
        if (r->watching && r->h2o && r->h2o->conn == conn) {
            req = r;
            break;
        }
    }
    if (!req) {
        h2o_socket_read_stop(sock);
        return;
    }
    if (err == NULL) {
        if (!req_watch_has_room(sock->input)) req_watch_stop(req); /* pipelined input: h2o's */
        return;
    }
    req_watch_stop(req);
    http_req_ref(req);
    http_internal_req_abort_client_gone(req);
    http_req_unref(req);
}

void http_internal_req_watch_start(http_req *req)
{
    h2o_req_t *h = req->h2o;
    if (!h || req->watching || req->gone || req->client_gone || h->version == 0 ||
        h->version >= 0x200)
        return;
    h2o_socket_t *sock = req_socket(req);
    if (!sock || sock->ssl || sock->_cb.read != NULL || !req_watch_has_room(sock->input)) return;
    req->watching = true;
    h2o_socket_read_start(sock, req_watch_on_read);
}

static h2o_generator_t req_abort_generator = {req_gen_noop_proceed, req_gen_noop_stop};

void http_internal_req_abort_client_gone(http_req *req)
{
    if (req->gone || req->client_gone) return;
    req->client_gone = true;
    req_watch_stop(req);
    if (req->stream) {
        http_internal_stream_abort(req->stream);
        return;
    }
    if (req->responded || req->delegated) return; /* h2o notices when its write fails */
    /* Make h2o close the connection: a response nobody reads, in the error state. */
    h2o_req_t *h = req->h2o;
    h->http1_is_persistent = 0;
    h->res.status = 499;
    h->res.reason = http_internal_reason(499);
    h2o_start_response(h, &req_abort_generator);
    h2o_send(h, NULL, 0, H2O_SEND_STATE_ERROR);
}

/* ---------------------------------------------------------------- attach */

static void req_prefilter_setup(h2o_req_prefilter_t *self, h2o_req_t *h, h2o_ostream_t **slot)
{
    h2o_setup_next_prefilter(self, h, slot);
}

static http_req *req_find(h2o_req_t *h)
{
    for (h2o_req_prefilter_t *p = h->prefilters; p; p = p->next)
        if (p->on_setup_ostream == req_prefilter_setup) return ((req_prefilter *)p)->req;
    return NULL;
}

static void req_anchor_dispose(void *p)
{
    http_req *req = ((req_anchor *)p)->req;
    http_server *srv = req->srv;
    h2o_timeout_unlink(&req->handler_timeout);
    req->watching = false; /* the socket is being closed or reused by h2o */
    req->gone = true;
    req->h2o = NULL;
    if (req->prev)
        req->prev->next = req->next;
    else
        srv->inflight = req->next;
    if (req->next) req->next->prev = req->prev;
    req->prev = req->next = NULL;
    srv->ninflight--;
    req->srv = NULL;
    if (req->stream) http_internal_stream_on_gone(req->stream);
    http_req_unref(req);
}

static const char *req_find_header(h2o_req_t *h, const char *lname, size_t len, size_t *vlen)
{
    ssize_t i = h2o_find_header_by_str(&h->headers, lname, len, -1);
    if (i < 0) return NULL;
    *vlen = h->headers.entries[i].value.len;
    return h->headers.entries[i].value.base;
}

static void req_fill_ids(http_req *req, h2o_req_t *h)
{
    size_t len = 0;
    const char *v = req_find_header(h, H2O_STRLIT("x-request-id"), &len);
    if (v && http_internal_request_id_ok(v, len)) {
        memcpy(req->request_id, v, len);
        req->request_id[len] = '\0';
    } else {
        core_uuid_v7_string(req->request_id);
    }

    uint8_t flags = 0x01;
    bool parsed = false;
    v = req_find_header(h, H2O_STRLIT("traceparent"), &len);
    if (v && len < 128) {
        char tp[128];
        char parent_span[CORE_SPAN_ID_LEN + 1];
        memcpy(tp, v, len);
        tp[len] = '\0';
        parsed = core_traceparent_parse(tp, req->trace_id, parent_span, &flags);
    }
    if (!parsed) {
        core_trace_id_new(req->trace_id);
        flags = 0x01;
    }
    core_span_id_new(req->span_id);
    core_traceparent_format(req->traceparent, req->trace_id, req->span_id, flags);
}

static void req_fill_remote(http_req *req, h2o_req_t *h)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (!h->conn || !h->conn->callbacks || !h->conn->callbacks->get_peername) return;
    socklen_t sl = h->conn->callbacks->get_peername(h->conn, (struct sockaddr *)&ss);
    if (sl == 0) return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, req->peer, sizeof req->peer);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, req->peer, sizeof req->peer);
    const char *xff = NULL;
    size_t xff_len = 0;
    if (req->srv->ntrusted > 0) {
        ssize_t i = h2o_find_header(&h->headers, H2O_TOKEN_X_FORWARDED_FOR, -1);
        if (i >= 0) {
            xff = h->headers.entries[i].value.base;
            xff_len = h->headers.entries[i].value.len;
        }
    }
    http_internal_client_addr(req->srv->trusted, req->srv->ntrusted, req->peer, xff, xff_len,
                              req->remote, sizeof req->remote);
}

static http_req *req_attach(http_server *srv, h2o_req_t *h)
{
    http_req *req = calloc(1, sizeof *req);
    if (!req) abort();
    req->refs = 1; /* the anchor's */
    req->srv = srv;
    req->h2o = h;
    req->start_ns = core_mono_ns();
    req_anchor *anchor = h2o_mem_alloc_shared(&h->pool, sizeof *anchor, req_anchor_dispose);
    anchor->req = req;
    req_prefilter *pf = (req_prefilter *)h2o_add_prefilter(h, sizeof *pf);
    pf->super.on_setup_ostream = req_prefilter_setup;
    pf->req = req;
    req->next = srv->inflight;
    if (srv->inflight) srv->inflight->prev = req;
    srv->inflight = req;
    srv->ninflight++;

    req->method = core_xstrndup(h->input.method.base, h->input.method.len);
    const char *path = h->input.path.base;
    size_t plen = h->input.path.len;
    const char *q = plen ? memchr(path, '?', plen) : NULL;
    if (q) {
        req->query = core_xstrndup(q + 1, plen - (size_t)(q - path) - 1);
        plen = (size_t)(q - path);
    }
    req->path = core_xstrndup(path, plen);
    req_fill_ids(req, h);
    req_fill_remote(req, h);
    return req;
}

/* ---------------------------------------------------------------- problem bodies */

/* json_string() refuses invalid UTF-8 (raw bytes in a path, a parser message quoting them). */
static json_t *req_json_text(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (j) return j;
    core_buf b = {0};
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80)
            core_buf_append(&b, p, 1);
        else
            core_buf_printf(&b, "%%%02X", *p);
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    core_buf_free(&b);
    return j ? j : json_string("");
}

static json_t *req_problem_body(http_req *req, int status, const char *type, const char *title,
                                const char *detail, json_t *extra)
{
    json_t *o = extra;
    if (!o || !json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    json_object_set_new(o, "type", req_json_text(type ? type : "about:blank"));
    json_object_set_new(o, "title", req_json_text(title ? title : http_internal_reason(status)));
    json_object_set_new(o, "status", json_integer(status));
    if (detail)
        json_object_set_new(o, "detail", req_json_text(detail));
    else
        json_object_del(o, "detail");
    json_object_set_new(o, "instance", req_json_text(req->path));
    json_object_set_new(o, "request_id", req_json_text(req->request_id));
    return o;
}

/* Rewrites a text/plain error that h2o produced itself into problem+json. */
static void req_problem_do_send(h2o_ostream_t *self, h2o_req_t *h, h2o_iovec_t *bufs, size_t bufcnt,
                                h2o_send_state_t state)
{
    req_problem_ostream *po = (req_problem_ostream *)self;
    if (bufcnt == 0) {
        h2o_ostream_send_next(self, h, bufs, bufcnt, state);
        return;
    }
    core_buf detail = {0};
    for (size_t i = 0; i < bufcnt; i++)
        core_buf_append(&detail, bufs[i].base, bufs[i].len);
    json_t *body =
        req_problem_body(po->req, h->res.status, NULL, NULL, detail.len ? detail.data : NULL, NULL);
    core_buf_free(&detail);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    h2o_iovec_t out = h2o_strdup(&h->pool, text ? text : "{}", SIZE_MAX);
    free(text);
    h->res.content_length = out.len;
    h2o_ostream_send_next(self, h, &out, 1, state);
}

/* ---------------------------------------------------------------- filter and logger */

static void req_set_request_id_header(h2o_req_t *h, const char *id)
{
    size_t len = strlen(id);
    ssize_t i = h2o_find_header_by_str(&h->res.headers, H2O_STRLIT("x-request-id"), -1);
    h2o_iovec_t v = h2o_strdup(&h->pool, id, len);
    if (i >= 0)
        h->res.headers.entries[i].value = v;
    else
        h2o_add_header_by_str(&h->pool, &h->res.headers, H2O_STRLIT("x-request-id"), 0,
                              "X-Request-Id", v.base, v.len);
}

static void req_filter_setup(h2o_filter_t *self, h2o_req_t *h, h2o_ostream_t **slot)
{
    http_server *srv = ((req_filter *)self)->srv;
    http_req *req = req_find(h);
    if (!req) req = req_attach(srv, h); /* h2o answered before our handler ran */
    req->responded = true;
    h2o_timeout_unlink(&req->handler_timeout);
    if (!req->stream) req_watch_stop(req);
    req_set_request_id_header(h, req->request_id);

    h2o_generator_t *gen = h->_generator;
    if (gen && !gen->proceed && !gen->stop && h->res.status >= 400) {
        /* h2o_send_error_generic: the body is a short text, the title its reason phrase */
        h->res.reason = http_internal_reason(h->res.status);
        h2o_set_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       H2O_STRLIT("application/problem+json"), 1);
        req_problem_ostream *po = (req_problem_ostream *)h2o_add_ostream(h, sizeof *po, slot);
        po->super.do_send = req_problem_do_send;
        po->req = req;
        slot = &po->super.next;
    }
    h2o_setup_next_ostream(h, slot);
}

void http_internal_req_detach(http_req *req)
{
    h2o_req_t *h = req->h2o;
    req->responded = true;
    req->detached = true;
    h2o_timeout_unlink(&req->handler_timeout);
    req_watch_stop(req);
    req_set_request_id_header(h, req->request_id);
}

static void req_log_access(h2o_logger_t *self, h2o_req_t *h)
{
    http_req *req = req_find(h);
    if (!req || req->logged || req->detached) return; /* a detached stream logs at its end */
    http_internal_req_log(((req_logger *)self)->srv, req,
                          req->responded && h->res.status ? h->res.status : 499, h->bytes_sent);
}

/* "12.345678": milliseconds with nanosecond digits, by hand (printf's %g of a double is a
 * measurable share of a proxied request). */
static void req_format_ms(int64_t ns, char out[32])
{
    if (ns < 0) ns = 0;
    char tmp[32];
    size_t n = 0;
    int64_t frac = ns % 1000000, whole = ns / 1000000;
    for (int i = 0; i < 6; i++, frac /= 10)
        tmp[sizeof tmp - 1 - n++] = (char)('0' + frac % 10);
    tmp[sizeof tmp - 1 - n++] = '.';
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole && n < sizeof tmp - 1);
    memcpy(out, tmp + sizeof tmp - n, n);
    out[n] = '\0';
}

void http_internal_req_log(http_server *srv, http_req *req, int status, uint64_t bytes)
{
    if (req->logged) return;
    req->logged = true;
    int64_t ns = core_mono_ns() - req->start_ns;
    double seconds = (double)ns / 1e9;
    const char *route = http_route_label(req);
    const char *method = http_internal_method_label(req->method);
    char status_text[8] = "000";
    if (status >= 100 && status <= 999) {
        status_text[0] = (char)('0' + status / 100);
        status_text[1] = (char)('0' + status / 10 % 10);
        status_text[2] = (char)('0' + status % 10);
    }
    core_counter_add(srv->m_requests, 1, method, route, status_text);
    core_histogram_observe(srv->m_duration, seconds, method, route);

    char saved[CORE_TRACE_ID_LEN + 1];
    size_t sl = strnlen(core_log_trace(), sizeof saved - 1);
    memcpy(saved, core_log_trace(), sl);
    saved[sl] = '\0';
    core_log_set_trace(req->trace_id);
    char ms[32];
    req_format_ms(ns, ms);
    /* the path without its query string: query strings can carry tokens */
    core_log_info("access", CORE_F_STR("method", req->method), CORE_F_STR("path", req->path),
                  CORE_F_STR("route", route), CORE_F_INT("status", status),
                  CORE_F_INT("bytes", (long long)bytes), CORE_F_JSON("duration_ms", ms),
                  CORE_F_STR("request_id", req->request_id),
                  CORE_F_STR("remote_addr", req->remote));
    core_log_set_trace(saved);
}

/* ---------------------------------------------------------------- dispatch */

static int req_parse_query(http_req *req)
{
    const char *p = req->query, *end = req->query + strlen(req->query);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if (pe > p) {
            const char *eq = memchr(p, '=', (size_t)(pe - p));
            const char *ne = eq ? eq : pe;
            char *name = http_internal_pct_decode(p, (size_t)(ne - p), true, NULL);
            char *value = eq ? http_internal_pct_decode(eq + 1, (size_t)(pe - eq - 1), true, NULL)
                             : core_xstrndup("", 0);
            if (!name || !value) {
                free(name);
                free(value);
                return -1;
            }
            http_internal_kv *kv = realloc(req->queries, (req->nqueries + 1) * sizeof *kv);
            if (!kv) abort();
            req->queries = kv;
            req->queries[req->nqueries].name = name;
            req->queries[req->nqueries].value = value;
            req->nqueries++;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

static const http_endpoint *req_best_route(http_server *srv, const char *method, const char *path,
                                           http_internal_capture *best_caps, size_t *best_n,
                                           http_internal_capture *tmp)
{
    const http_endpoint *best = NULL;
    size_t plen = strlen(path);
    for (const http_endpoint *e = srv->endpoints; e; e = e->next) {
        if (strcmp(e->method, method) != 0) continue;
        size_t n;
        if (!http_internal_pattern_match(e->segs, e->nsegs, path, plen, tmp, &n)) continue;
        if (best && http_internal_specificity_cmp(e->segs, e->nsegs, best->segs, best->nsegs) >= 0)
            continue;
        best = e;
        memcpy(best_caps, tmp, n * sizeof *tmp);
        *best_n = n;
    }
    return best;
}

static void req_allow_header(http_server *srv, const char *path, http_internal_capture *tmp,
                             core_buf *allow)
{
    size_t plen = strlen(path);
    bool get = false, head = false;
    for (const http_endpoint *e = srv->endpoints; e; e = e->next) {
        size_t n;
        if (!http_internal_pattern_match(e->segs, e->nsegs, path, plen, tmp, &n)) continue;
        bool dup = false;
        for (const http_endpoint *f = srv->endpoints; f != e; f = f->next)
            if (strcmp(f->method, e->method) == 0 &&
                http_internal_pattern_match(f->segs, f->nsegs, path, plen, tmp, &n))
                dup = true;
        if (dup) continue;
        if (allow->len) core_buf_puts(allow, ", ");
        core_buf_puts(allow, e->method);
        if (strcmp(e->method, "GET") == 0) get = true;
        if (strcmp(e->method, "HEAD") == 0) head = true;
    }
    if (get && !head) core_buf_puts(allow, ", HEAD");
}

static void req_on_handler_timeout(h2o_timeout_entry_t *entry)
{
    http_req *req = H2O_STRUCT_FROM_MEMBER(http_req, handler_timeout, entry);
    if (!req_can_respond(req)) return;
    core_log_warn("http handler did not answer in time", CORE_F_STR("route", http_route_label(req)),
                  CORE_F_STR("request_id", req->request_id));
    http_respond_problem(req, 503, NULL, "the request handler did not answer in time");
}

static void req_dispatch(http_server *srv, http_req *req)
{
    if (req->query && req_parse_query(req) != 0) {
        http_respond_problem(req, 400, NULL, "malformed percent-encoding in the query string");
        return;
    }
    size_t ncap = srv->max_segs + 1;
    /* no allocation for the usual route table */
    http_internal_capture caps_local[16], tmp_local[16];
    http_internal_capture *caps = ncap <= 16 ? caps_local : calloc(ncap, sizeof *caps);
    http_internal_capture *tmp = ncap <= 16 ? tmp_local : calloc(ncap, sizeof *tmp);
    if (!caps || !tmp) abort();
    size_t n = 0;
    const http_endpoint *ep = req_best_route(srv, req->method, req->path, caps, &n, tmp);
    if (!ep && strcmp(req->method, "HEAD") == 0)
        ep = req_best_route(srv, "GET", req->path, caps, &n, tmp);
    if (!ep) {
        core_buf allow = {0};
        req_allow_header(srv, req->path, tmp, &allow);
        if (allow.len) {
            http_set_header(req, "Allow", allow.data);
            http_respond_problem(req, 405, NULL, "the method is not allowed on this resource");
        } else {
            http_respond_problem(req, 404, NULL, "no resource at this path");
        }
        core_buf_free(&allow);
        if (caps != caps_local) free(caps);
        if (tmp != tmp_local) free(tmp);
        return;
    }
    req->params = n ? calloc(n, sizeof *req->params) : NULL;
    for (size_t i = 0; i < n; i++) {
        char *v = caps[i].raw ? core_xstrndup(caps[i].start, caps[i].len)
                              : http_internal_pct_decode(caps[i].start, caps[i].len, false, NULL);
        if (!v) {
            if (caps != caps_local) free(caps);
            if (tmp != tmp_local) free(tmp);
            http_respond_problem(req, 400, NULL, "malformed percent-encoding in the path");
            return;
        }
        req->params[i].name = core_xstrndup(caps[i].name, strlen(caps[i].name));
        req->params[i].value = v;
        req->nparams++;
    }
    if (caps != caps_local) free(caps);
    if (tmp != tmp_local) free(tmp);
    req->ep = ep;

    req->handler_timeout.cb = req_on_handler_timeout;
    h2o_timeout_link(srv->loop, &srv->handler_timeout, &req->handler_timeout);

    char saved[CORE_TRACE_ID_LEN + 1];
    size_t sl = strnlen(core_log_trace(), sizeof saved - 1);
    memcpy(saved, core_log_trace(), sl);
    saved[sl] = '\0';
    core_log_set_trace(req->trace_id);
    bool go = true;
    for (http_internal_middleware *m = srv->middleware; m && go && !req->gone; m = m->next)
        go = m->fn(req, m->data);
    if (go && !req->gone) ep->handler(req, ep->data);
    core_log_set_trace(saved);

    if (!req->responded && !req->gone && !req->delegated) http_internal_req_watch_start(req);
}

static int req_on_h2o_req(h2o_handler_t *self, h2o_req_t *h)
{
    http_server *srv = ((req_handler *)self)->srv;
    http_req *req = req_find(h);
    if (!req) req = req_attach(srv, h);
    http_req_ref(req); /* the handler may answer and h2o free the request under us */
    req_dispatch(srv, req);
    http_req_unref(req);
    return 0;
}

void http_internal_register_h2o(http_server *srv, h2o_pathconf_t *pathconf)
{
    req_handler *hd = (req_handler *)h2o_create_handler(pathconf, sizeof *hd);
    hd->super.on_req = req_on_h2o_req;
    hd->srv = srv;
    /* filters are prepended: ours is registered last to run first */
    h2o_chunked_register(pathconf);
    req_filter *f = (req_filter *)h2o_create_filter(pathconf, sizeof *f);
    f->super.on_setup_ostream = req_filter_setup;
    f->srv = srv;
    req_logger *l = (req_logger *)h2o_create_logger(pathconf, sizeof *l);
    l->super.log_access = req_log_access;
    l->srv = srv;
}

void http_internal_req_release_all(http_server *srv)
{
    size_t n = srv->ninflight, k = 0;
    if (!n) return;
    http_req **all = calloc(n, sizeof *all);
    if (!all) abort();
    for (http_req *r = srv->inflight; r && k < n; r = r->next)
        all[k++] = http_req_ref(r);
    for (size_t i = 0; i < k; i++) {
        http_req *r = all[i];
        if (r->gone) continue;
        if (r->stream) {
            http_internal_stream_abort(r->stream);
        } else if (req_can_respond(r)) {
            r->h2o->http1_is_persistent = 0;
            http_respond_problem(r, 503, NULL, "the server is shutting down");
        }
    }
    for (size_t i = 0; i < k; i++)
        http_req_unref(all[i]);
    free(all);
}

/* ---------------------------------------------------------------- getters */

const char *http_method(http_req *req)
{
    return req->method;
}

const char *http_path(http_req *req)
{
    return req->path;
}

const http_endpoint *http_req_endpoint(http_req *req)
{
    return req->ep;
}

const char *http_route_label(http_req *req)
{
    return req->ep ? req->ep->pattern : "unmatched";
}

const char *http_param(http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0) return req->params[i].value;
    return NULL;
}

const char *http_query(http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nqueries; i++)
        if (strcmp(req->queries[i].name, name) == 0) return req->queries[i].value;
    return NULL;
}

const char *http_header(http_req *req, const char *name)
{
    if (!req->h2o || req->gone || !name) return NULL;
    char lname[256];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof lname) return NULL;
    for (size_t i = 0; i < len; i++)
        lname[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
    lname[len] = '\0';
    size_t vlen = 0;
    const char *v = req_find_header(req->h2o, lname, len, &vlen);
    /* h2o's HTTP/1 parser moves these two out of the header list */
    if (!v && strcmp(lname, "host") == 0 && req->h2o->input.authority.base) {
        v = req->h2o->input.authority.base;
        vlen = req->h2o->input.authority.len;
    }
    char num[24];
    if (!v && strcmp(lname, "content-length") == 0 && req->h2o->entity.base) {
        vlen = (size_t)snprintf(num, sizeof num, "%zu", req->h2o->entity.len);
        v = num;
    }
    return v ? http_internal_req_strdup(req, v, vlen) : NULL;
}

const void *http_body(http_req *req, size_t *len)
{
    if (!req->h2o || req->gone || !req->h2o->entity.base) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = req->h2o->entity.len;
    return req->h2o->entity.base;
}

const char *http_request_id(http_req *req)
{
    return req->request_id;
}

const char *http_trace_id(http_req *req)
{
    return req->trace_id;
}

const char *http_traceparent(http_req *req)
{
    return req->traceparent;
}

const char *http_peer_addr(http_req *req)
{
    return req->peer;
}

const char *http_remote_addr(http_req *req)
{
    return req->remote;
}

http_server *http_req_server(http_req *req)
{
    return req->srv;
}

/* application/json, or any application/<x>+json, parameters ignored */
static bool req_is_json_type(const char *ct)
{
    if (!ct) return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t len = strcspn(ct, "; \t");
    if (len == 16 && strncasecmp(ct, "application/json", 16) == 0) return true;
    return len > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + len - 5, "+json", 5) == 0;
}

json_t *http_json_body(http_req *req)
{
    if (!req->h2o || req->gone || req->client_gone) return NULL;
    if (!req_is_json_type(http_header(req, "content-type"))) {
        http_respond_problem(req, 415, NULL, "the request body must be application/json");
        return NULL;
    }
    size_t len = 0;
    const char *body = http_body(req, &len);
    json_error_t err;
    json_t *j = json_loadb(body ? body : "", len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (j) return j;
    char detail[JSON_ERROR_TEXT_LENGTH + 96];
    snprintf(detail, sizeof detail, "malformed JSON at line %d, column %d (byte %d): %s", err.line,
             err.column, err.position, err.text);
    json_t *extra = json_pack("{s:i, s:i, s:i}", "line", err.line, "column", err.column, "position",
                              err.position);
    http_respond_problem_ext(req, 400, NULL, NULL, detail, extra);
    return NULL;
}

struct st_h2o_req_t *http_req_h2o_take(http_req *req)
{
    if (!req_can_respond(req)) return NULL;
    req->delegated = true;
    h2o_timeout_unlink(&req->handler_timeout);
    req_watch_stop(req);
    return req->h2o;
}

/* ---------------------------------------------------------------- responses */

static bool req_header_name_ok(const char *n)
{
    if (!n || !*n || strlen(n) > 255) return false;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p)) return false;
    return true;
}

int http_set_header(http_req *req, const char *name, const char *value)
{
    if (!req_can_respond(req) || !req_header_name_ok(name) || !value) return -1;
    /* framing and hop-by-hop headers belong to h2o: a second Content-Length would corrupt it */
    static const char *const reserved[] = {"content-length", "transfer-encoding", "connection",
                                           "keep-alive",     "upgrade",           NULL};
    for (size_t i = 0; reserved[i]; i++)
        if (strcasecmp(name, reserved[i]) == 0) return -1;
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n') return -1;
    h2o_req_t *h = req->h2o;
    size_t nlen = strlen(name);
    h2o_iovec_t orig = h2o_strdup(&h->pool, name, nlen);
    h2o_iovec_t lower = h2o_strdup(&h->pool, name, nlen);
    h2o_strtolower(lower.base, lower.len);
    h2o_iovec_t v = h2o_strdup(&h->pool, value, SIZE_MAX);
    h2o_add_header_by_str(&h->pool, &h->res.headers, lower.base, lower.len, 1, orig.base, v.base,
                          v.len);
    return 0;
}

int http_respond(http_req *req, int status, const char *content_type, const void *data, size_t len)
{
    if (!req_can_respond(req)) return -1;
    if (status < 200 || status > 599) status = 500;
    h2o_req_t *h = req->h2o;
    req_watch_stop(req);
    h->res.status = status;
    h->res.reason = http_internal_reason(status);
    if (content_type)
        h2o_set_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       h2o_strdup(&h->pool, content_type, SIZE_MAX).base, strlen(content_type), 1);
    bool no_body = status == 204 || status == 304;
    bool head = strcmp(req->method, "HEAD") == 0;
    h2o_iovec_t buf = {NULL, 0};
    h->res.content_length = no_body ? SIZE_MAX : len;
    if (!no_body && !head && len) buf = h2o_strdup(&h->pool, data, len);
    req->responded = true;
    h2o_start_response(h, &req_body_generator);
    h2o_send(h, buf.len ? &buf : NULL, buf.len ? 1 : 0, H2O_SEND_STATE_FINAL);
    return 0;
}

int http_respond_text(http_req *req, int status, const char *text)
{
    return http_respond(req, status, "text/plain; charset=utf-8", text ? text : "",
                        text ? strlen(text) : 0);
}

static int req_respond_json_as(http_req *req, int status, const char *ct, json_t *body)
{
    if (!body) {
        if (!req_can_respond(req)) return -1;
        return http_respond_problem(req, 500, NULL, "the response could not be produced");
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
    if (!text) {
        if (!req_can_respond(req)) return -1;
        return http_respond_problem(req, 500, NULL, "the response could not be encoded");
    }
    int rc = http_respond(req, status, ct, text, strlen(text));
    free(text);
    return rc;
}

int http_respond_json(http_req *req, int status, json_t *body)
{
    return req_respond_json_as(req, status, "application/json", body);
}

int http_respond_problem_ext(http_req *req, int status, const char *type, const char *title,
                             const char *detail, json_t *extra)
{
    if (!req_can_respond(req)) {
        json_decref(extra);
        return -1;
    }
    json_t *body = req_problem_body(req, status, type, title, detail, extra);
    return req_respond_json_as(req, status, "application/problem+json", body);
}

int http_respond_problem(http_req *req, int status, const char *title, const char *detail)
{
    return http_respond_problem_ext(req, status, NULL, title, detail, NULL);
}

bool http_internal_req_can_respond(const http_req *req)
{
    return req_can_respond(req);
}
