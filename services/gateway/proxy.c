/*
 * Request in, upstream exchange, response out (see proxy.h).
 *
 * Lifetime of one proxied request (gw_proxy, malloc'd): it holds a reference on the http_req
 * (so http_req_is_gone tells when libh2o freed the request before a response started, an
 * HTTP/2 reset) and the exchange. Once the response started, libh2o owns the timing: proceed
 * says the last piece was written (resume the upstream), stop says the client is gone (abort
 * the upstream). The gw_proxy is freed when the exchange is over and the response is finished
 * or abandoned.
 */
#include "proxy.h"

#include <h2o.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "headers.h"

#define PROXY_COPY_FINAL_MAX  65536 /* a last piece up to this size is copied and sent at once */
#define PROXY_MAX_REQ_HEADERS 128

struct gw_proxy_set {
    uv_loop_t *loop;
    http_server *srv;
    const gw_table *t;
    gw_proxy_config cfg;
    gw_pool **pools;
    char **hostports; /* "host:port" per upstream, the Host of requests that had none */
    core_metric *m_requests;
    core_metric *m_duration;
    core_metric *m_errors;
    core_metric *m_denied;
    struct gw_proxy *live; /* every proxied request not yet freed */
    uv_timer_t drain_timer;
};

typedef struct gw_proxy {
    h2o_generator_t gen;
    gw_proxy_set *set;
    const gw_route *route;
    http_req *req;
    h2o_req_t *h;
    gw_exchange *x;
    int64_t start_ns;
    int status;
    bool started;             /* h2o_start_response was called */
    bool sending;             /* an IN_PROGRESS h2o_send is outstanding */
    bool done;                /* the response is finished, abandoned or answered with an error */
    bool recorded;            /* metrics written */
    bool chunked;             /* we frame HTTP/1.1 chunks ourselves */
    bool final_after_proceed; /* the upstream's last piece is out: send FINAL at proceed */
    bool error_after_proceed; /* the upstream failed mid-body: send ERROR at proceed */
    int in_cb;
    char chunk_head[24];
    bool drain_ref;               /* held by proxy_on_drain_deadline */
    struct gw_proxy *prev, *next; /* set->live */
} gw_proxy;

static char proxy_crlf[] = "\r\n";
static char proxy_last_chunk[] = "0\r\n\r\n";
static char proxy_crlf_last_chunk[] = "\r\n0\r\n\r\n";

static const char *const proxy_methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                            "PATCH", "DELETE", "OPTIONS", NULL};

/* ---------------------------------------------------------------- bookkeeping */

static void proxy_record(gw_proxy *p, int status)
{
    if (p->recorded) return;
    p->recorded = true;
    const gw_upstream_def *u = &p->set->t->ups[p->route->upstream];
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    const char *cls = status >= 100 && status < 600 ? classes[status / 100 - 1] : "aborted";
    core_counter_add(p->set->m_requests, 1, p->route->prefix, u->name, cls);
    core_histogram_observe(p->set->m_duration, (double)(core_mono_ns() - p->start_ns) / 1e9,
                           p->route->prefix, u->name);
}

static void proxy_maybe_free(gw_proxy *p)
{
    if (p->x || !p->done || p->in_cb) return;
    if (p->prev)
        p->prev->next = p->next;
    else
        p->set->live = p->next;
    if (p->next) p->next->prev = p->prev;
    http_req_unref(p->req);
    free(p);
}

/* ---------------------------------------------------------------- response side */

static void proxy_send(gw_proxy *p, const char *data, size_t len, bool final)
{
    h2o_req_t *h = p->h;
    h2o_iovec_t bufs[3];
    size_t n = 0;
    if (final && len && len <= PROXY_COPY_FINAL_MAX) {
        /* the connection's buffer is reused once we return: copy the last piece */
        char *copy = h2o_mem_alloc_pool(&h->pool, len);
        memcpy(copy, data, len);
        data = copy;
    }
    if (p->chunked) {
        if (len) {
            int hl = snprintf(p->chunk_head, sizeof p->chunk_head, "%zx\r\n", len);
            bufs[n++] = h2o_iovec_init(p->chunk_head, (size_t)hl);
            bufs[n++] = h2o_iovec_init(data, len);
            h->bytes_sent += len;
            if (final && len <= PROXY_COPY_FINAL_MAX)
                bufs[n++] = h2o_iovec_init(proxy_crlf_last_chunk, sizeof proxy_crlf_last_chunk - 1);
            else
                bufs[n++] = h2o_iovec_init(proxy_crlf, sizeof proxy_crlf - 1);
        } else if (final) {
            bufs[n++] = h2o_iovec_init(proxy_last_chunk, sizeof proxy_last_chunk - 1);
        }
    } else if (len) {
        bufs[n++] = h2o_iovec_init(data, len);
    }
    if (final && (len == 0 || len <= PROXY_COPY_FINAL_MAX)) {
        /* the exchange ends when on_body returns (we do not pause) */
        p->x = NULL;
        p->done = true;
        proxy_record(p, p->status);
        h2o_send(h, n ? bufs : NULL, n, H2O_SEND_STATE_FINAL);
        return;
    }
    /* in progress: the upstream waits until this piece is written */
    p->sending = true;
    if (final) p->final_after_proceed = true;
    gw_exchange_pause(p->x);
    h2o_send(h, n ? bufs : NULL, n, H2O_SEND_STATE_IN_PROGRESS);
}

static void proxy_on_proceed(h2o_generator_t *gen, h2o_req_t *h)
{
    (void)h;
    gw_proxy *p = (gw_proxy *)gen;
    p->sending = false;
    p->in_cb++;
    if (p->error_after_proceed) {
        p->done = true;
        proxy_record(p, 502);
        h2o_send(p->h, NULL, 0, H2O_SEND_STATE_ERROR);
    } else if (p->final_after_proceed) {
        gw_exchange *x = p->x;
        p->x = NULL;
        gw_exchange_resume(x); /* the exchange ends here */
        p->done = true;
        proxy_record(p, p->status);
        if (p->chunked)
            h2o_send(p->h, (h2o_iovec_t[]){h2o_iovec_init(proxy_last_chunk, 5)}, 1,
                     H2O_SEND_STATE_FINAL);
        else
            h2o_send(p->h, NULL, 0, H2O_SEND_STATE_FINAL);
    } else if (p->x) {
        gw_exchange_resume(p->x);
    }
    p->in_cb--;
    proxy_maybe_free(p);
}

static void proxy_on_stop(h2o_generator_t *gen, h2o_req_t *h)
{
    (void)h;
    gw_proxy *p = (gw_proxy *)gen;
    if (p->x) {
        gw_exchange_abort(p->x);
        p->x = NULL;
    }
    p->sending = false;
    p->done = true;
    proxy_record(p, 499);
    proxy_maybe_free(p);
}

/* The upstream's buffer is reused once the head is handled: name (lowercase for h2o's lookup,
 * and as sent, for HTTP/1 output) and value are copied into the request's pool at once. */
static void proxy_add_header(h2o_req_t *h, const gw_hdr *hd)
{
    size_t nl = hd->name_len, vl = hd->value_len;
    char *mem = h2o_mem_alloc_pool(&h->pool, 2 * nl + vl + 3);
    char *lower = mem, *orig = mem + nl + 1, *value = orig + nl + 1;
    for (size_t i = 0; i < nl; i++) {
        char c = hd->name[i];
        lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    lower[nl] = '\0';
    memcpy(orig, hd->name, nl);
    orig[nl] = '\0';
    memcpy(value, hd->value, vl);
    value[vl] = '\0';
    const h2o_token_t *tok = h2o_lookup_token(lower, nl);
    if (tok)
        h2o_add_header(&h->pool, &h->res.headers, tok, orig, value, vl);
    else
        h2o_add_header_by_str(&h->pool, &h->res.headers, lower, nl, 0, orig, value, vl);
}

static void proxy_on_head(gw_exchange *x, const gw_resp_head *head, void *data)
{
    (void)x;
    gw_proxy *p = data;
    if (http_req_is_gone(p->req)) {
        gw_exchange_abort(p->x);
        p->x = NULL;
        p->done = true;
        proxy_record(p, 499);
        proxy_maybe_free(p);
        return;
    }
    h2o_req_t *h = p->h;
    p->status = head->status;
    h->res.status = head->status;
    h->res.reason = h2o_strdup(&h->pool, head->reason, head->reason_len).base;
    for (size_t i = 0; i < head->nheaders; i++) {
        const gw_hdr *hd = &head->headers[i];
        if (gw_hop_by_hop(hd->name, hd->name_len, head->connection, head->connection_len)) continue;
        if (hd->name_len == 14 && strncasecmp(hd->name, "content-length", 14) == 0) continue;
        if (hd->name_len == 4 && strncasecmp(hd->name, "date", 4) == 0) continue; /* h2o's */
        proxy_add_header(h, hd);
    }
    bool stream = false;
    switch (head->framing) {
    case GW_BODY_NONE:
        h->res.content_length = SIZE_MAX;
        break;
    case GW_BODY_LENGTH:
        h->res.content_length = head->content_length;
        break;
    case GW_BODY_CHUNKED:
    case GW_BODY_CLOSE:
        h->res.content_length = SIZE_MAX;
        if (h->version == 0x101) {
            p->chunked = true;
            h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_TRANSFER_ENCODING, NULL,
                           H2O_STRLIT("chunked"));
            h->bytes_counted_by_ostream = 1;
        } else if (h->version < 0x101) {
            h->http1_is_persistent = 0; /* the end of the body is the end of the connection */
        }
        stream = true;
        break;
    }
    p->started = true;
    h2o_start_response(h, &p->gen);
    if (stream) {
        /* a stream (SSE) announces itself now, not with its first event */
        p->sending = true;
        gw_exchange_pause(p->x);
        h2o_send(h, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    }
}

static void proxy_on_body(gw_exchange *x, const char *data, size_t len, bool final, void *cbdata)
{
    (void)x;
    gw_proxy *p = cbdata;
    if (!p->done) proxy_send(p, data, len, final);
    proxy_maybe_free(p);
}

static void proxy_fail(gw_proxy *p, const gw_upstream_def *u, gw_xerr err, bool after_head);

static void proxy_on_error(gw_exchange *x, gw_xerr err, bool after_head, void *data)
{
    (void)x;
    gw_proxy *p = data;
    p->x = NULL; /* freed after we return */
    const gw_upstream_def *u = &p->set->t->ups[p->route->upstream];
    static const char *const kinds[] = {"connect", "connect_timeout", "timeout", "reset",
                                        "protocol"};
    core_counter_add(p->set->m_errors, 1, u->name, kinds[err]);
    if (!p->done) proxy_fail(p, u, err, after_head);
    proxy_maybe_free(p);
}

static void proxy_fail(gw_proxy *p, const gw_upstream_def *u, gw_xerr err, bool after_head)
{
    if (!after_head || !p->started) {
        if (http_req_is_gone(p->req)) {
            p->done = true;
            proxy_record(p, 499);
            return;
        }
        int status = (err == GW_XERR_TIMEOUT || err == GW_XERR_CONNECT_TIMEOUT) ? 504 : 502;
        core_log_warn("upstream failed", CORE_F_STR("upstream", u->name),
                      CORE_F_STR("route", p->route->prefix), CORE_F_STR("error", gw_xerr_text(err)),
                      CORE_F_STR("request_id", http_request_id(p->req)));
        p->done = true;
        proxy_record(p, status);
        h2o_send_error_generic(p->h, status, status == 504 ? "Gateway Timeout" : "Bad Gateway",
                               gw_xerr_text(err), 0);
        return;
    }
    core_log_warn("upstream failed during the response", CORE_F_STR("upstream", u->name),
                  CORE_F_STR("error", gw_xerr_text(err)),
                  CORE_F_STR("request_id", http_request_id(p->req)));
    if (p->sending) {
        p->error_after_proceed = true;
        return;
    }
    p->done = true;
    proxy_record(p, 502);
    h2o_send(p->h, NULL, 0, H2O_SEND_STATE_ERROR);
}

static const gw_exchange_cbs proxy_cbs = {proxy_on_head, proxy_on_body, proxy_on_error};

/* ---------------------------------------------------------------- request side */

/* 401 (with WWW-Authenticate: Bearer, RFC 6750), 403 or 429 (with Retry-After). */
static void proxy_deny(gw_proxy_set *set, http_req *req, const gw_route *route,
                       const gw_authz_result *az)
{
    static const char *const codes[] = {"401", "403", "429"};
    const char *title = "Too Many Requests";
    const char *code = codes[2];
    if (az->status == 401) {
        http_set_header(req, "WWW-Authenticate",
                        az->token_invalid
                            ? "Bearer realm=\"contentengine\", error=\"invalid_token\""
                            : "Bearer realm=\"contentengine\"");
        title = "Unauthorized";
        code = codes[0];
    } else if (az->status == 403) {
        title = "Forbidden";
        code = codes[1];
    } else {
        char secs[24];
        snprintf(secs, sizeof secs, "%lld", (long long)az->retry_after);
        http_set_header(req, "Retry-After", secs);
    }
    core_counter_add(set->m_denied, 1, route->prefix, code);
    http_respond_problem(req, az->status, title, az->why);
}

static void proxy_handle(http_req *req, void *data)
{
    gw_proxy_set *set = data;
    const char *path = http_path(req);
    const gw_route *route = gw_table_match(set->t, path, strlen(path));
    if (!route) { /* the router and the table disagree: cannot happen with gw_prefix_ok */
        http_respond_problem(req, 404, NULL, "no route for this path");
        return;
    }
    if (!gw_path_ok(path, strlen(path))) {
        http_respond_problem(req, 400, NULL, "malformed percent-encoding in the path");
        return;
    }
    const char *remote = http_remote_addr(req);
    gw_authz_result az = {0};
    const char *authorization = http_header(req, "Authorization");
    const char *qtoken = route->stream ? http_query(req, "access_token") : NULL;
    if (set->cfg.authz) {
        const char *m = http_method(req);
        gw_authz_check(set->cfg.authz, route, m, strlen(m), authorization, qtoken, remote,
                       core_now_unix_ms(), &az);
        if (az.status) {
            proxy_deny(set, req, route, &az);
            return;
        }
    }
    const char *rid = http_request_id(req);
    const char *tp = http_traceparent(req);
    h2o_req_t *h = http_req_h2o_take(req);
    if (!h) return;

    gw_hdr hdrs[PROXY_MAX_REQ_HEADERS + 5];
    size_t nh = 0, hbytes = 0;
    for (size_t i = 0; i < h->headers.size && nh < PROXY_MAX_REQ_HEADERS; i++) {
        const h2o_header_t *e = &h->headers.entries[i];
        const char *name = e->orig_name ? e->orig_name : e->name->base;
        if (!gw_header_ok(name, e->name->len, e->value.base, e->value.len)) {
            /* obsolete line folding (RFC 9112 5.2) and the like: refused rather than guessed
             * at; the library's filter turns this into problem+json */
            h2o_send_error_generic(h, 400, "Bad Request", "a request header is malformed",
                                   H2O_SEND_ERROR_HTTP1_CLOSE_CONNECTION);
            return;
        }
        /* identity headers come from the gateway only, on every route */
        if (auth_is_identity_header(name, e->name->len)) continue;
        hdrs[nh++] = (gw_hdr){name, e->name->len, e->value.base, e->value.len};
        hbytes += e->name->len + e->value.len + 4;
    }
    if (az.identified) {
        const auth_claims *c = &az.claims;
        const char *role = auth_role_name(c->role);
        hdrs[nh++] = (gw_hdr){AUTH_H_USER, strlen(AUTH_H_USER), c->sub, strlen(c->sub)};
        hdrs[nh++] = (gw_hdr){AUTH_H_ROLE, strlen(AUTH_H_ROLE), role, strlen(role)};
        if (c->email[0])
            hdrs[nh++] = (gw_hdr){AUTH_H_EMAIL, strlen(AUTH_H_EMAIL), c->email, strlen(c->email)};
        if (c->jti[0])
            hdrs[nh++] = (gw_hdr){AUTH_H_JTI, strlen(AUTH_H_JTI), c->jti, strlen(c->jti)};
        hbytes += 400;
        if (!authorization && qtoken) {
            /* the token that came in the URL goes on where upstreams look for it */
            size_t tl = strlen(qtoken);
            char *v = h2o_mem_alloc_pool(&h->pool, tl + 8);
            memcpy(v, "Bearer ", 7);
            memcpy(v + 7, qtoken, tl + 1);
            hdrs[nh++] = (gw_hdr){"Authorization", 13, v, tl + 7};
            hbytes += tl + 24;
        }
    }
    /* a token in the URL never goes further (upstream access logs) */
    const char *target = h->input.path.base;
    size_t target_len = h->input.path.len;
    if (memchr(target, '?', target_len)) {
        char *t = h2o_mem_alloc_pool(&h->pool, target_len + 1);
        target_len = gw_query_without(target, target_len, "access_token", t);
        target = t;
    }
    bool head_req = h2o_memis(h->input.method.base, h->input.method.len, H2O_STRLIT("HEAD"));
    bool idempotent = head_req ||
                      h2o_memis(h->input.method.base, h->input.method.len, H2O_STRLIT("GET")) ||
                      h2o_memis(h->input.method.base, h->input.method.len, H2O_STRLIT("PUT")) ||
                      h2o_memis(h->input.method.base, h->input.method.len, H2O_STRLIT("DELETE")) ||
                      h2o_memis(h->input.method.base, h->input.method.len, H2O_STRLIT("OPTIONS"));
    bool body_method = (h->input.method.len == 4 && memcmp(h->input.method.base, "POST", 4) == 0) ||
                       (h->input.method.len == 3 && memcmp(h->input.method.base, "PUT", 3) == 0) ||
                       (h->input.method.len == 5 && memcmp(h->input.method.base, "PATCH", 5) == 0);
    gw_upstream_req ur = {
        .method = h->input.method.base,
        .method_len = h->input.method.len,
        .path = target,
        .path_len = target_len,
        .host = h->input.authority.base,
        .host_len = h->input.authority.len,
        .headers = hdrs,
        .nheaders = nh,
        .request_id = rid,
        .traceparent = tp,
        .remote_addr = remote,
        .fallback_host = set->hostports[route->upstream],
        .body_len = h->entity.base ? h->entity.len : 0,
        .has_body = h->entity.base != NULL || body_method,
    };
    core_buf rb = {0};
    size_t want = 256 + h->input.path.len + h->input.authority.len + hbytes + ur.body_len;
    rb.data = core_xrealloc(NULL, want);
    rb.cap = want;
    gw_request_head(&rb, &ur);
    if (ur.body_len) core_buf_append(&rb, h->entity.base, ur.body_len);

    gw_proxy *p = core_xcalloc(1, sizeof *p);
    p->gen.proceed = proxy_on_proceed;
    p->gen.stop = proxy_on_stop;
    p->set = set;
    p->route = route;
    p->req = http_req_ref(req);
    p->h = h;
    p->start_ns = core_mono_ns();
    p->next = set->live;
    if (set->live) set->live->prev = p;
    set->live = p;
    /* gw_exchange_start never calls back from inside (failures arrive from the loop) */
    p->in_cb++;
    gw_exchange_opts o = {.head_request = head_req,
                          .idempotent = idempotent,
                          .read_timeout_ms = set->cfg.read_timeout_ms};
    p->x = gw_exchange_start(set->pools[route->upstream], &rb, &o, &proxy_cbs, p);
    p->in_cb--;
    proxy_maybe_free(p);
}

/* ---------------------------------------------------------------- set */

gw_proxy_set *gw_proxy_new(uv_loop_t *loop, http_server *srv, const gw_table *t,
                           const gw_proxy_config *cfg)
{
    gw_proxy_set *ps = core_xcalloc(1, sizeof *ps);
    ps->loop = loop;
    ps->srv = srv;
    ps->t = t;
    ps->cfg = *cfg;
    uv_timer_init(loop, &ps->drain_timer);
    ps->drain_timer.data = ps;
    uv_unref((uv_handle_t *)&ps->drain_timer);
    ps->pools = core_xcalloc(t->nups, sizeof *ps->pools);
    ps->hostports = core_xcalloc(t->nups, sizeof *ps->hostports);
    for (size_t i = 0; i < t->nups; i++) {
        const gw_upstream_def *u = &t->ups[i];
        ps->pools[i] = gw_pool_new(loop, &(gw_pool_config){
                                             .addr = (const struct sockaddr *)&u->addr,
                                             .name = u->name,
                                             .connect_timeout_ms = cfg->connect_timeout_ms,
                                             .max_idle = cfg->keepalive,
                                         });
        core_buf hp = {0};
        if (strchr(u->host, ':'))
            core_buf_printf(&hp, "[%s]:%u", u->host, (unsigned)u->port);
        else
            core_buf_printf(&hp, "%s:%u", u->host, (unsigned)u->port);
        ps->hostports[i] = core_buf_steal(&hp, NULL);
    }
    core_metrics *reg = core_metrics_default();
    ps->m_requests = core_metric_counter(
        reg, "gateway_requests_total",
        "Proxied requests by route prefix, upstream and status class", "route,upstream,code");
    ps->m_duration = core_metric_histogram(
        reg, "gateway_request_duration_seconds",
        "Time from receiving a proxied request to its last byte, by route prefix and upstream",
        "route,upstream", NULL, 0);
    ps->m_errors = core_metric_counter(reg, "gateway_upstream_errors_total",
                                       "Upstream failures by upstream and kind", "upstream,kind");
    ps->m_denied =
        core_metric_counter(reg, "gateway_auth_denied_total",
                            "Requests refused before the upstream: 401, 403, 429", "route,code");

    for (size_t i = 0; i < t->nroutes; i++) {
        const gw_route *r = &t->routes[i];
        core_buf pat = {0};
        core_buf_printf(&pat, "%s/*", r->prefix_len == 1 ? "" : r->prefix);
        for (size_t m = 0; proxy_methods[m]; m++) {
            /* the handler looks the route up again (gw_table_match): the same answer as the
             * router's, without a datum per endpoint */
            http_endpoint *ep = http_route(srv, proxy_methods[m], pat.data, proxy_handle, ps);
            if (!ep) { /* http_route logged why; gw_prefix_ok should have refused it first */
                core_buf_free(&pat);
                gw_proxy_close(ps);
                return NULL;
            }
            if (r->role) http_endpoint_set_meta(ep, "role", r->role);
            if (r->write) http_endpoint_set_meta(ep, "write", r->write);
            if (r->is_public) http_endpoint_set_meta(ep, "access", "public");
            http_endpoint_set_meta(ep, "upstream", t->ups[r->upstream].name);
        }
        core_buf_free(&pat);
    }
    return ps;
}

/* The drain deadline: what still waits for an upstream gets 503, what still streams is cut
 * (the client sees the connection close and reconnects elsewhere). libs/http cannot do this
 * for requests handed to libh2o, and an idle stream would otherwise hold the drain open until
 * the upstream's next byte or the read timeout. */
static void proxy_on_drain_deadline(uv_timer_t *t)
{
    gw_proxy_set *ps = t->data;
    size_t n = 0;
    for (gw_proxy *p = ps->live; p; p = p->next)
        if (!p->done) {
            p->in_cb++; /* nobody is freed while we walk */
            p->drain_ref = true;
            n++;
        }
    if (n) core_log_warn("drain deadline: ending proxied requests", CORE_F_INT("requests", n));
    for (gw_proxy *p = ps->live; p; p = p->next) {
        if (!p->drain_ref) continue;
        if (p->x) {
            gw_exchange_abort(p->x);
            p->x = NULL;
        }
        if (!p->started) {
            p->done = true;
            if (!http_req_is_gone(p->req)) {
                proxy_record(p, 503);
                h2o_send_error_generic(p->h, 503, "Service Unavailable",
                                       "the gateway is shutting down",
                                       H2O_SEND_ERROR_HTTP1_CLOSE_CONNECTION);
            }
        } else if (p->sending) {
            proxy_record(p, p->status);    /* counted as what it was, not as an upstream error */
            p->error_after_proceed = true; /* proceed (or stop) ends it */
        } else {
            p->done = true;
            proxy_record(p, p->status);
            h2o_send(p->h, NULL, 0, H2O_SEND_STATE_ERROR);
        }
    }
    for (gw_proxy *p = ps->live, *next; p; p = next) {
        next = p->next;
        if (!p->drain_ref) continue;
        p->drain_ref = false;
        p->in_cb--;
        proxy_maybe_free(p);
    }
}

void gw_proxy_drain(gw_proxy_set *ps, uint64_t deadline_ms)
{
    uv_timer_start(&ps->drain_timer, proxy_on_drain_deadline, deadline_ms, 0);
}

gw_pool *gw_proxy_pool(gw_proxy_set *ps, size_t upstream)
{
    return ps->pools[upstream];
}

static void proxy_set_free(uv_handle_t *h)
{
    free(h->data);
}

void gw_proxy_close(gw_proxy_set *ps)
{
    if (!ps) return;
    for (size_t i = 0; i < ps->t->nups; i++) {
        gw_pool_close(ps->pools[i]);
        free(ps->hostports[i]);
    }
    free(ps->pools);
    free(ps->hostports);
    uv_close((uv_handle_t *)&ps->drain_timer, proxy_set_free);
}
