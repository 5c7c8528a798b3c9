/*
 * Server lifecycle: listen and accept on the service's loop, the route table, graceful drain and
 * close.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"

#define SERVER_DRAIN_TICK_MS    20
#define SERVER_HARD_SHUTDOWN_MS 2000 /* after the drain deadline: shut every socket down */

static char *server_strdup(const char *s)
{
    size_t len = strlen(s);
    char *p = malloc(len + 1);
    if (!p) abort();
    memcpy(p, s, len + 1);
    return p;
}

/* ---------------------------------------------------------------- accept */

static void server_conn_free_unaccepted(uv_handle_t *h)
{
    free(h); /* the uv_tcp_t is the first member of http_internal_conn */
}

/* h2o closed the connection's socket (h2o_uv_socket_create's close callback). */
static void server_conn_on_close(uv_handle_t *h)
{
    http_internal_conn *c = (http_internal_conn *)h;
    http_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->nconns--;
    free(c);
}

static void server_on_connection(uv_stream_t *listener, int status)
{
    http_server *srv = listener->data;
    if (status < 0) {
        core_log_warn("http accept failed", CORE_F_STR("error", uv_strerror(status)));
        return;
    }
    http_internal_conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    uv_tcp_init(srv->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, server_conn_free_unaccepted);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1); /* stream chunks (SSE events) must not wait for Nagle */
    c->srv = srv;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, server_conn_on_close);
    h2o_accept(&srv->accept_ctx, sock);
}

/* ---------------------------------------------------------------- create */

static void server_apply_defaults(http_server_config *cfg)
{
    if (!cfg->host || !*cfg->host) cfg->host = "127.0.0.1";
    if (!cfg->service || !*cfg->service) cfg->service = "service";
    if (!cfg->max_body_bytes) cfg->max_body_bytes = 1024 * 1024;
    if (!cfg->request_timeout_ms) cfg->request_timeout_ms = 10000;
    if (!cfg->handler_timeout_ms) cfg->handler_timeout_ms = 30000;
    if (!cfg->readiness_timeout_ms) cfg->readiness_timeout_ms = 2000;
    if (!cfg->drain_timeout_ms) cfg->drain_timeout_ms = 10000;
    if (cfg->backlog <= 0) cfg->backlog = 511;
}

static void server_listener_free(uv_handle_t *h)
{
    free(h);
}

/* A client that resets its connection makes the next write(2) raise SIGPIPE, which kills the
 * process by default; libuv leaves that to the application. Ignore it unless someone installed
 * a handler already. */
static void server_ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
    }
}

/* libuv 1.44 has no UV_TCP_REUSEPORT: the socket is made here and handed to the handle. */
static int server_bind_reuseport(uv_tcp_t *listener, const struct sockaddr_storage *ss)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return uv_translate_sys_error(errno);
    int one = 1;
    socklen_t len =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    int rc = uv_tcp_open(listener, fd);
    if (rc != 0) close(fd);
    return rc;
}

http_server *http_server_new(uv_loop_t *loop, const http_server_config *cfg_in)
{
    server_ignore_sigpipe();
    http_server_config cfg = cfg_in ? *cfg_in : (http_server_config){0};
    server_apply_defaults(&cfg);

    http_internal_cidr trusted[16];
    size_t ntrusted = 0;
    if (!http_internal_cidrs_parse(cfg.trusted_proxies, trusted, 16, &ntrusted)) {
        core_log_error("http trusted proxies: not a list of at most 16 addresses or CIDR blocks",
                       CORE_F_STR("trusted_proxies", cfg.trusted_proxies));
        return NULL;
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(cfg.host, cfg.port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(cfg.host, cfg.port, (struct sockaddr_in6 *)&ss) != 0) {
        core_log_error("http listen address is not an IP address", CORE_F_STR("host", cfg.host));
        return NULL;
    }

    /* Listen first: nothing else needs undoing when the port is taken. The listener lives in its
     * own allocation so that closing it never waits on the server's memory. */
    uv_tcp_t *listener = malloc(sizeof *listener);
    if (!listener) abort();
    uv_tcp_init(loop, listener);
    int rc = cfg.reuse_port ? server_bind_reuseport(listener, &ss)
                            : uv_tcp_bind(listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)listener, cfg.backlog, server_on_connection);
    if (rc != 0) {
        core_log_error("http listen failed", CORE_F_STR("host", cfg.host),
                       CORE_F_INT("port", cfg.port), CORE_F_STR("error", uv_strerror(rc)));
        uv_close((uv_handle_t *)listener, server_listener_free);
        return NULL;
    }

    http_server *srv = calloc(1, sizeof *srv);
    if (!srv) abort();
    srv->loop = loop;
    srv->cfg = cfg;
    srv->service = server_strdup(cfg.service);
    srv->cfg.service = srv->service;
    srv->cfg.host = NULL;            /* not kept */
    srv->cfg.trusted_proxies = NULL; /* kept parsed: */
    memcpy(srv->trusted, trusted, sizeof trusted);
    srv->ntrusted = ntrusted;
    srv->listening = true;
    listener->data = srv;
    srv->listener_handle = listener;

    struct sockaddr_storage bound;
    int blen = (int)sizeof bound;
    if (uv_tcp_getsockname(listener, (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else
            srv->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }

    h2o_config_init(&srv->globalconf);
    srv->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("")); /* no Server header */
    srv->globalconf.max_request_entity_size = cfg.max_body_bytes;
    srv->globalconf.http1.req_timeout = cfg.request_timeout_ms;
    srv->globalconf.http2.idle_timeout = cfg.request_timeout_ms;
    srv->hostconf =
        h2o_config_register_host(&srv->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    http_internal_register_h2o(srv, &srv->hostconf->fallback_path);
    h2o_context_init(&srv->ctx, loop, &srv->globalconf);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->globalconf.hosts;
    h2o_timeout_init(loop, &srv->handler_timeout, cfg.handler_timeout_ms);
    h2o_timeout_init(loop, &srv->readiness_timeout, cfg.readiness_timeout_ms);
    uv_timer_init(loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_timer_init(loop, &srv->final_timer);
    srv->final_timer.data = srv;

    core_metrics *reg = core_metrics_default();
    srv->m_requests = core_metric_counter(reg, "http_requests_total",
                                          "HTTP requests answered, by method, route and status",
                                          "method,route,status");
    srv->m_duration = core_metric_histogram(
        reg, "http_request_duration_seconds",
        "Time from dispatching an HTTP request to its last byte, by method and route",
        "method,route", NULL, 0);

    http_internal_builtin_register(srv);
    return srv;
}

uint16_t http_server_port(const http_server *srv)
{
    return srv->port;
}

uv_loop_t *http_server_loop(const http_server *srv)
{
    return srv->loop;
}

struct st_h2o_context_t *http_server_h2o_context(http_server *srv)
{
    return &srv->ctx;
}

struct st_h2o_globalconf_t *http_server_h2o_globalconf(http_server *srv)
{
    return &srv->globalconf;
}

bool http_server_is_draining(const http_server *srv)
{
    return srv->draining;
}

size_t http_server_inflight(const http_server *srv)
{
    return srv->ninflight + srv->ndetached;
}

/* ---------------------------------------------------------------- routes */

static bool server_method_ok(const char *m)
{
    if (!m || !*m || strlen(m) > 32) return false;
    for (const char *p = m; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '-' || *p == '_'))
            return false;
    return true;
}

http_endpoint *http_route(http_server *srv, const char *method, const char *pattern,
                          http_handler_fn handler, void *data)
{
    http_internal_seg *segs;
    size_t nsegs;
    if (!handler || !server_method_ok(method) ||
        http_internal_pattern_parse(pattern, &segs, &nsegs) != 0) {
        core_log_error("http route rejected: malformed method or pattern",
                       CORE_F_STR("method", method), CORE_F_STR("pattern", pattern));
        return NULL;
    }
    for (http_endpoint *e = srv->endpoints; e; e = e->next) {
        if (strcmp(e->method, method) == 0 &&
            http_internal_specificity_cmp(e->segs, e->nsegs, segs, nsegs) == 0) {
            core_log_error("http route rejected: already registered", CORE_F_STR("method", method),
                           CORE_F_STR("pattern", pattern), CORE_F_STR("existing", e->pattern));
            http_internal_segs_free(segs, nsegs);
            return NULL;
        }
    }
    http_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep) abort();
    ep->method = server_strdup(method);
    ep->pattern = server_strdup(pattern);
    ep->segs = segs;
    ep->nsegs = nsegs;
    ep->handler = handler;
    ep->data = data;
    if (srv->endpoints_tail)
        srv->endpoints_tail->next = ep;
    else
        srv->endpoints = ep;
    srv->endpoints_tail = ep;
    if (nsegs > srv->max_segs) srv->max_segs = nsegs;
    return ep;
}

void http_endpoint_set_meta(http_endpoint *ep, const char *key, const char *value)
{
    if (!ep || !key) return;
    for (size_t i = 0; i < ep->nmeta; i++) {
        if (strcmp(ep->meta[i].name, key) == 0) {
            free(ep->meta[i].value);
            ep->meta[i].value = server_strdup(value ? value : "");
            return;
        }
    }
    http_internal_kv *m = realloc(ep->meta, (ep->nmeta + 1) * sizeof *m);
    if (!m) abort();
    ep->meta = m;
    ep->meta[ep->nmeta].name = server_strdup(key);
    ep->meta[ep->nmeta].value = server_strdup(value ? value : "");
    ep->nmeta++;
}

const char *http_endpoint_meta(const http_endpoint *ep, const char *key)
{
    if (!ep || !key) return NULL;
    for (size_t i = 0; i < ep->nmeta; i++)
        if (strcmp(ep->meta[i].name, key) == 0) return ep->meta[i].value;
    return NULL;
}

const char *http_endpoint_pattern(const http_endpoint *ep)
{
    return ep->pattern;
}

const char *http_endpoint_method(const http_endpoint *ep)
{
    return ep->method;
}

void http_server_use(http_server *srv, http_middleware_fn fn, void *data)
{
    http_internal_middleware *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->fn = fn;
    m->data = data;
    if (srv->middleware_tail)
        srv->middleware_tail->next = m;
    else
        srv->middleware = m;
    srv->middleware_tail = m;
}

void http_readiness_check(http_server *srv, const char *name, http_readiness_fn fn, void *data)
{
    http_internal_check_def *d = calloc(1, sizeof *d);
    if (!d) abort();
    d->name = server_strdup(name ? name : "check");
    d->fn = fn;
    d->data = data;
    if (srv->checks_tail)
        srv->checks_tail->next = d;
    else
        srv->checks = d;
    srv->checks_tail = d;
    srv->nchecks++;
}

/* ---------------------------------------------------------------- drain and close */

void http_server_stop_accepting(http_server *srv)
{
    srv->draining = true;
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)srv->listener_handle, server_listener_free);
        srv->listener_handle = NULL;
    }
}

int http_internal_req_fd(const http_req *req)
{
    if (!req->h2o) return -1;
    h2o_conn_t *conn = req->h2o->conn;
    if (!conn || !conn->callbacks || !conn->callbacks->get_socket) return -1;
    h2o_socket_t *sock = conn->callbacks->get_socket(conn);
    return sock ? h2o_socket_get_fd(sock) : -1;
}

static int server_conn_fd(http_internal_conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return -1;
    return (int)fd;
}

static int server_fd_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Idle: no request of ours on it and no partial request buffered (h2o keeps the socket in the
 * handle's data). Shutting down its read side makes h2o see EOF and close it cleanly. */
static void server_sweep_idle(http_server *srv)
{
    size_t n = 0, max = srv->ninflight + srv->ndetached;
    int *busy = max ? calloc(max, sizeof *busy) : NULL;
    if (max && !busy) abort();
    for (http_req *r = srv->inflight; r && n < max; r = r->next) {
        int fd = http_internal_req_fd(r);
        if (fd >= 0) busy[n++] = fd;
    }
    for (http_stream *s = srv->detached; s && n < max; s = s->dnext) {
        int fd = s->sock ? h2o_socket_get_fd(s->sock) : -1;
        if (fd >= 0) busy[n++] = fd;
    }
    if (n) qsort(busy, n, sizeof *busy, server_fd_cmp);
    for (http_internal_conn *c = srv->conns; c; c = c->next) {
        if (c->shut_read) continue;
        int fd = server_conn_fd(c);
        if (fd < 0) continue;
        if (n && bsearch(&fd, busy, n, sizeof *busy, server_fd_cmp)) continue;
        h2o_socket_t *sock = c->tcp.data;
        if (sock && sock->input && sock->input->size > 0) continue;
        shutdown(fd, SHUT_RD);
        c->shut_read = true;
    }
    free(busy);
}

static void server_close_stage2(uv_handle_t *h)
{
    http_server *srv = h->data;
    http_server_closed_fn cb = srv->closed_cb;
    void *data = srv->closed_data;

    for (http_endpoint *e = srv->endpoints, *next; e; e = next) {
        next = e->next;
        free(e->method);
        free(e->pattern);
        http_internal_segs_free(e->segs, e->nsegs);
        for (size_t i = 0; i < e->nmeta; i++) {
            free(e->meta[i].name);
            free(e->meta[i].value);
        }
        free(e->meta);
        free(e);
    }
    for (http_internal_middleware *m = srv->middleware, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    for (http_internal_check_def *d = srv->checks, *next; d; d = next) {
        next = d->next;
        free(d->name);
        free(d);
    }
    free(srv->service);
    free(srv);
    if (cb) cb(data);
}

/* Handles closed together finish in one pass of the loop's closing phase, in no promised order;
 * closing final_timer from drain_timer's close callback puts it in a later pass, after every
 * handle that h2o's context and timeouts closed (whose memory is inside srv). */
static void server_close_stage1(uv_handle_t *h)
{
    http_server *srv = h->data;
    uv_close((uv_handle_t *)&srv->final_timer, server_close_stage2);
}

/* h2o_context_dispose() without its trailing uv_run(): that one would re-enter the loop from
 * inside a callback. The handles it closes are finished by the two-stage close above. */
static void server_context_dispose(h2o_context_t *ctx)
{
    h2o_globalconf_t *config = ctx->globalconf;
    for (size_t i = 0; config->hosts[i] != NULL; ++i) {
        h2o_hostconf_t *hostconf = config->hosts[i];
        for (size_t j = 0; j != hostconf->paths.size; ++j)
            h2o_context_dispose_pathconf_context(ctx, hostconf->paths.entries + j);
        h2o_context_dispose_pathconf_context(ctx, &hostconf->fallback_path);
    }
    free(ctx->_pathconfs_inited.entries);
    free(ctx->_module_configs);
    /* h2o_context_request_shutdown() armed HTTP/2's GOAWAY resend timer, connections or not */
    h2o_timeout_unlink(&ctx->http2._graceful_shutdown_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->zero_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->one_sec_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->hundred_ms_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->handshake_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->http1.req_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->http2.idle_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->http2.graceful_shutdown_timeout);
    h2o_timeout_dispose(ctx->loop, &ctx->proxy.io_timeout);
    h2o_filecache_destroy(ctx->filecache);
    ctx->filecache = NULL;
    for (size_t i = 0; i != ctx->storage.size; ++i) {
        h2o_context_storage_item_t *item = ctx->storage.entries + i;
        if (item->dispose != NULL) item->dispose(item->data);
    }
    free(ctx->storage.entries);
    h2o_multithread_unregister_receiver(ctx->queue, &ctx->receivers.hostinfo_getaddr);
    h2o_multithread_destroy_queue(ctx->queue);
    if (ctx->_timestamp_cache.value != NULL) h2o_mem_release_shared(ctx->_timestamp_cache.value);
}

static void server_finalize(http_server *srv)
{
    srv->finalizing = true;
    uv_timer_stop(&srv->drain_timer);
    http_internal_rounds_free(srv);
    server_context_dispose(&srv->ctx);
    h2o_timeout_dispose(srv->loop, &srv->handler_timeout);
    h2o_timeout_dispose(srv->loop, &srv->readiness_timeout);
    h2o_config_dispose(&srv->globalconf);
    uv_close((uv_handle_t *)&srv->drain_timer, server_close_stage1);
}

static void server_drain_tick(uv_timer_t *t)
{
    http_server *srv = t->data;
    if (srv->finalizing) return;
    int64_t elapsed_ms = (core_mono_ns() - srv->close_started_ns) / 1000000;
    if (srv->drain_stage == 0 && elapsed_ms >= (int64_t)srv->cfg.drain_timeout_ms) {
        srv->drain_stage = 1;
        if (srv->ninflight)
            core_log_warn("http drain deadline reached; answering the rest 503",
                          CORE_F_INT("inflight", srv->ninflight));
        http_internal_req_release_all(srv);
        http_internal_stream_release_detached(srv);
    }
    if (srv->drain_stage == 1 &&
        elapsed_ms >= (int64_t)srv->cfg.drain_timeout_ms + SERVER_HARD_SHUTDOWN_MS) {
        srv->drain_stage = 2;
        if (srv->nconns)
            core_log_warn("http connections still open after the drain; shutting them down",
                          CORE_F_INT("connections", srv->nconns));
        for (http_internal_conn *c = srv->conns; c; c = c->next) {
            int fd = server_conn_fd(c);
            if (fd >= 0) shutdown(fd, SHUT_RDWR);
            c->shut_read = true;
        }
    }
    if (srv->drain_stage < 2) server_sweep_idle(srv);
    if (srv->ninflight == 0 && srv->ndetached == 0 && srv->nconns == 0) server_finalize(srv);
}

void http_server_close(http_server *srv, http_server_closed_fn done, void *data)
{
    if (srv->closing) return;
    http_server_stop_accepting(srv);
    srv->closing = true;
    srv->closed_cb = done;
    srv->closed_data = data;
    srv->close_started_ns = core_mono_ns();
    /* New requests on open connections get "Connection: close"; HTTP/2 gets GOAWAY. */
    h2o_context_request_shutdown(&srv->ctx);
    uv_timer_start(&srv->drain_timer, server_drain_tick, 0, SERVER_DRAIN_TICK_MS);
}
