/*
 * httpc: libcurl's multi interface driven by libuv.
 *
 * The glue is the shape of curl's docs/examples/multi-uv.c, minus its known bugs:
 *   - CURLMOPT_SOCKETFUNCTION keeps one uv_poll_t per socket, in a table indexed by fd (we never
 *     trust a socketp pointer that may outlive its socket);
 *   - CURLMOPT_CLOSESOCKETFUNCTION stops and closes that uv_poll_t *before* close(2), so the fd
 *     is out of epoll before the kernel can hand its number to a new socket;
 *   - CURLMOPT_TIMERFUNCTION only (re)arms one uv_timer_t (whose data is set); libcurl is called
 *     when the timer fires, never from inside the timer function;
 *   - a poll status < 0 is passed on as CURL_CSELECT_ERR.
 *
 * A request (httpc_req) lives through these states:
 *   QUEUED  waiting for one of max_concurrent slots (FIFO)
 *   ACTIVE  an easy handle is in the multi handle
 *   WAITING between attempts: its uv_timer_t runs the backoff
 *   FAILING failed before touching the network (circuit open, bad URL): the same timer, at 0 ms,
 *           delivers the error from the loop, so a callback never runs inside httpc_request
 *   DONE    its callback has been called; the timer closes and the request is freed
 * The user callback is called only from finish(), from loop callbacks or from httpc_cancel.
 */
#include "httpc_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HTTPC__DEFAULT_USER_AGENT      "content-engine-httpc/1"
#define HTTPC__DEFAULT_CONNECT_TIMEOUT 10000
#define HTTPC__DEFAULT_TIMEOUT         30000
#define HTTPC__DEFAULT_MAX_CONCURRENT  32
#define HTTPC__DEFAULT_MAX_BYTES       ((size_t)16 * 1024 * 1024)
#define HTTPC__DEFAULT_ENCODING        "gzip, deflate"
#define HTTPC__DEFAULT_BACKOFF_BASE    200
#define HTTPC__DEFAULT_BACKOFF_MAX     10000
#define HTTPC__DEFAULT_MAX_RETRY_WAIT  60000
#define HTTPC__DEFAULT_BREAKER_FAILS   5
#define HTTPC__DEFAULT_BREAKER_COOL    30000
#define HTTPC__DEFAULT_DRAIN_TIMEOUT   10000

typedef enum httpc__state {
    HTTPC__QUEUED,
    HTTPC__ACTIVE,
    HTTPC__WAITING,
    HTTPC__FAILING,
    HTTPC__DONE,
} httpc__state;

typedef struct httpc__sock {
    uv_poll_t poll;
    curl_socket_t fd;
    httpc_client *client;
} httpc__sock;

struct httpc_req {
    httpc_client *client;
    httpc_req *prev, *next;   /* the client's requests not yet finished */
    httpc_req *qprev, *qnext; /* the client's FIFO, while QUEUED */
    httpc__state state;
    uv_timer_t timer; /* backoff waits and deferred failures */
    httpc_done_cb cb;
    void *data;
    char trace[CORE_TRACE_ID_LEN + 1]; /* the log trace id current at httpc_request */

    /* the request, copied */
    char *method, *url, *origin, *host_label, *log_target;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    bool has_body, idempotent, retry_non_idempotent;
    int64_t timeout_ms, connect_timeout_ms, deadline_ms;
    unsigned max_attempts;
    int64_t backoff_base_ms, backoff_max_ms, max_retry_wait_ms;
    long max_redirects; /* 0: do not follow */
    size_t max_response_bytes;
    httpc_curl_hook hook;
    void *hook_data;

    /* the current attempt */
    CURL *easy;
    bool probe;     /* this attempt is the half-open circuit's probe */
    bool too_large; /* the write callback stopped the transfer */
    int64_t attempt_timeout_ms;
    char errbuf[CURL_ERROR_SIZE];
    httpc__headers hdrs;
    core_buf body_in;

    /* the outcome so far */
    unsigned attempts;
    int64_t start_ns;
    long status;
    httpc_error error;
    int curl_code;
    char message[256];
    char *effective_url;
    int64_t retry_after_ms;
};

struct httpc_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer;  /* libcurl's timeout */
    uv_timer_t aux_timer;   /* teardown, from the loop */
    uv_timer_t drain_timer; /* drain_on_close's limit */
    size_t open_handles;    /* client-owned uv handles not yet closed (timers, polls) */

    httpc__sock **socks; /* indexed by fd */
    size_t socks_cap;

    httpc_req *live; /* requests whose callback has not been called */
    size_t nlive;
    size_t nreqs; /* requests allocated (freed once their timer is closed) */
    httpc_req *q_head, *q_tail;
    size_t nqueued, nactive;

    char *user_agent, *accept_encoding, *metrics_host_label;
    int64_t connect_timeout_ms, timeout_ms;
    unsigned max_concurrent, max_attempts;
    size_t max_response_bytes;
    long max_redirects;
    int64_t backoff_base_ms, backoff_max_ms, max_retry_wait_ms;
    bool breaker_disabled;
    int64_t breaker_cooldown_ms;
    httpc__breakers breakers;
    bool drain_on_close;
    int64_t drain_timeout_ms;

    core_metric *m_requests, *m_duration, *m_retries, *m_circuit;

    bool closing, draining, torn_down;
    httpc_close_cb close_cb;
    void *close_data;
};

static void httpc__finish(httpc_req *r);
static void httpc__dispatch(httpc_client *c);
static void httpc__on_aux(uv_timer_t *t);

/* ---------------------------------------------------------------- small helpers */

static const char *httpc__label(const httpc_client *c, const char *host_label)
{
    if (c->metrics_host_label) return c->metrics_host_label;
    return host_label ? host_label : "invalid";
}

static int64_t httpc__elapsed_ms(const httpc_req *r)
{
    return (core_mono_ns() - r->start_ns) / 1000000;
}

static bool httpc__method_is_idempotent(const char *m)
{
    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    for (size_t i = 0; i < sizeof idem / sizeof *idem; i++)
        if (strcasecmp(m, idem[i]) == 0) return true;
    return false;
}

static bool httpc__method_valid(const char *m)
{
    if (!*m) return false;
    for (const char *p = m; *p; p++) /* an RFC 9110 token, near enough */
        if (*p <= ' ' || *p >= 127 || strchr("\"(),/:;<=>?@[\\]{}", *p)) return false;
    return true;
}

static bool httpc__header_safe(const char *s, bool name)
{
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n') return false;
        if (name && (*s == ':' || *s == ' ' || *s == '\t')) return false;
    }
    return true;
}

/* The caller's trace id is current again in its callback and in httpc's lines about it. */
static void httpc__trace_push(const httpc_req *r, char saved[CORE_TRACE_ID_LEN + 1])
{
    snprintf(saved, CORE_TRACE_ID_LEN + 1, "%s", core_log_trace());
    core_log_set_trace(r->trace);
}

static void httpc__trace_pop(const char saved[CORE_TRACE_ID_LEN + 1])
{
    core_log_set_trace(saved);
}

/* Forgets the attempt's partial response (before another attempt, or on an error). */
static void httpc__reset_response(httpc_req *r)
{
    httpc__headers_clear(&r->hdrs);
    core_buf_free(&r->body_in);
    r->status = 0;
    r->too_large = false;
    r->errbuf[0] = '\0';
}

static void httpc__set_error(httpc_req *r, httpc_error err, int curl_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void httpc__set_error(httpc_req *r, httpc_error err, int curl_code, const char *fmt, ...)
{
    httpc__reset_response(r);
    r->error = err;
    r->curl_code = curl_code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- lists */

static void httpc__live_unlink(httpc_client *c, httpc_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->live = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->nlive--;
}

static void httpc__queue_push(httpc_client *c, httpc_req *r)
{
    r->state = HTTPC__QUEUED;
    r->qnext = NULL;
    r->qprev = c->q_tail;
    if (c->q_tail)
        c->q_tail->qnext = r;
    else
        c->q_head = r;
    c->q_tail = r;
    c->nqueued++;
}

static void httpc__queue_remove(httpc_client *c, httpc_req *r)
{
    if (r->qprev)
        r->qprev->qnext = r->qnext;
    else
        c->q_head = r->qnext;
    if (r->qnext)
        r->qnext->qprev = r->qprev;
    else
        c->q_tail = r->qprev;
    r->qprev = r->qnext = NULL;
    c->nqueued--;
}

/* ---------------------------------------------------------------- client teardown */

static void httpc__maybe_free(httpc_client *c)
{
    if (!c->torn_down || c->open_handles > 0 || c->nreqs > 0) return;
    httpc_close_cb cb = c->close_cb;
    void *data = c->close_data;
    httpc__breakers_free(&c->breakers);
    free(c->socks);
    free(c->user_agent);
    free(c->accept_encoding);
    free(c->metrics_host_label);
    free(c);
    curl_global_cleanup();
    if (cb) cb(data);
}

static void httpc__client_handle_closed(uv_handle_t *h)
{
    httpc_client *c = h->data;
    c->open_handles--;
    httpc__maybe_free(c);
}

/* ---------------------------------------------------------------- sockets and timer */

static void httpc__sock_closed(uv_handle_t *h)
{
    httpc__sock *k = h->data;
    httpc_client *c = k->client;
    free(k);
    c->open_handles--;
    httpc__maybe_free(c);
}

/* Stops watching fd; the uv_poll_t is out of epoll when this returns (uv_poll_stop). */
static void httpc__sock_forget(httpc_client *c, curl_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= c->socks_cap || !c->socks[fd]) return;
    httpc__sock *k = c->socks[fd];
    c->socks[fd] = NULL;
    uv_poll_stop(&k->poll);
    uv_close((uv_handle_t *)&k->poll, httpc__sock_closed);
}

static void httpc__process_done(httpc_client *c);

static void httpc__on_poll(uv_poll_t *h, int status, int events)
{
    httpc__sock *k = h->data;
    httpc_client *c = k->client;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    int running = 0;
    curl_multi_socket_action(c->multi, k->fd, flags, &running);
    httpc__process_done(c);
}

static int httpc__socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    httpc_client *c = userp;
    if (what == CURL_POLL_REMOVE) {
        httpc__sock_forget(c, fd);
        return 0;
    }
    if (fd < 0) return 0;
    httpc__sock *k = (size_t)fd < c->socks_cap ? c->socks[fd] : NULL;
    if (!k) {
        if ((size_t)fd >= c->socks_cap) {
            size_t cap = c->socks_cap ? c->socks_cap : 64;
            while (cap <= (size_t)fd)
                cap *= 2;
            httpc__sock **socks = realloc(c->socks, cap * sizeof *socks);
            if (!socks) abort();
            memset(socks + c->socks_cap, 0, (cap - c->socks_cap) * sizeof *socks);
            c->socks = socks;
            c->socks_cap = cap;
        }
        k = calloc(1, sizeof *k);
        if (!k) abort();
        int rc = uv_poll_init_socket(c->loop, &k->poll, fd);
        if (rc != 0) {
            core_log_error("httpc: cannot watch socket", CORE_F_INT("fd", fd),
                           CORE_F_STR("error", uv_strerror(rc)));
            free(k);
            return 0; /* the transfer then ends with its timeout */
        }
        k->fd = fd;
        k->client = c;
        k->poll.data = k;
        c->socks[fd] = k;
        c->open_handles++;
    }
    int ev = 0;
    if (what & CURL_POLL_IN) ev |= UV_READABLE;
    if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
    uv_poll_start(&k->poll, ev, httpc__on_poll);
    return 0;
}

static int httpc__close_socket_cb(void *clientp, curl_socket_t fd)
{
    httpc__sock_forget(clientp, fd);
    return close(fd);
}

static void httpc__on_curl_timer(uv_timer_t *t)
{
    httpc_client *c = t->data;
    int running = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    httpc__process_done(c);
}

/* libcurl asks for a timeout: only arm the uv timer here; libcurl is called when it fires. */
static int httpc__timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    httpc_client *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->curl_timer);
    else
        uv_timer_start(&c->curl_timer, httpc__on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---------------------------------------------------------------- curl callbacks */

static size_t httpc__write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    httpc_req *r = userdata;
    size_t n = size * nmemb;
    if (n > r->max_response_bytes - r->body_in.len) {
        r->too_large = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    core_buf_append(&r->body_in, ptr, n);
    return n;
}

static size_t httpc__header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    httpc_req *r = userdata;
    httpc__headers_line(&r->hdrs, buf, size * nitems);
    return size * nitems;
}

/* ---------------------------------------------------------------- breaker glue */

static void httpc__on_circuit_change(const char *origin, const char *host_label, bool open,
                                     unsigned failures, void *data)
{
    httpc_client *c = data;
    core_gauge_add(c->m_circuit, open ? 1.0 : -1.0, httpc__label(c, host_label));
    if (open)
        core_log_warn("httpc circuit open", CORE_F_STR("origin", origin),
                      CORE_F_INT("failures", failures),
                      CORE_F_INT("cooldown_ms", c->breaker_cooldown_ms));
    else
        core_log_info("httpc circuit closed", CORE_F_STR("origin", origin));
}

/* ---------------------------------------------------------------- attempts */

static void httpc__on_req_timer(uv_timer_t *t);

/* Fails the request from the loop, never from the caller's stack. */
static void httpc__defer_finish(httpc_req *r)
{
    r->state = HTTPC__FAILING;
    uv_timer_start(&r->timer, httpc__on_req_timer, 0, 0);
}

static void httpc__fail_circuit(httpc_req *r)
{
    httpc__set_error(r, HTTPC_ERR_CIRCUIT_OPEN, CURLE_OK, "circuit open for %s", r->host_label);
    httpc__defer_finish(r);
}

static void httpc__set_method(httpc_req *r, CURL *e)
{
    const char *m = r->method;
    if (strcasecmp(m, "GET") == 0 && !r->has_body) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        return;
    }
    if (strcasecmp(m, "HEAD") == 0 && !r->has_body) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    bool send_body = r->has_body || strcasecmp(m, "POST") == 0 || strcasecmp(m, "PUT") == 0 ||
                     strcasecmp(m, "PATCH") == 0;
    if (send_body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    }
    if (strcasecmp(m, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
}

static void httpc__start_attempt(httpc_req *r)
{
    httpc_client *c = r->client;
    int64_t now = core_mono_ns();
    int64_t timeout = r->timeout_ms;
    if (r->deadline_ms > 0) {
        int64_t remaining = r->deadline_ms - (now - r->start_ns) / 1000000;
        if (remaining <= 0) {
            httpc__set_error(r, HTTPC_ERR_TIMEOUT, CURLE_OPERATION_TIMEDOUT,
                             "deadline of %lld ms exceeded", (long long)r->deadline_ms);
            httpc__defer_finish(r);
            return;
        }
        if (remaining < timeout) timeout = remaining;
    }
    r->probe = false;
    if (!c->breaker_disabled && !httpc__breaker_admit(&c->breakers, r->origin, now, &r->probe)) {
        httpc__fail_circuit(r);
        return;
    }
    httpc__reset_response(r);
    r->attempt_timeout_ms = timeout;

    CURL *e = curl_easy_init();
    if (!e) {
        if (!c->breaker_disabled)
            httpc__breaker_record(&c->breakers, r->origin, r->host_label, r->probe,
                                  HTTPC__OUTCOME_NEUTRAL, now);
        httpc__set_error(r, HTTPC_ERR_OTHER, CURLE_OUT_OF_MEMORY, "curl_easy_init failed");
        httpc__defer_finish(r);
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, httpc__write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, httpc__header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, httpc__close_socket_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, c->accept_encoding);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_response_bytes);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (r->max_redirects > 0) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, r->max_redirects);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    httpc__set_method(r, e);

    if (r->hook && !r->hook(e, r->attempts + 1, r->hook_data)) {
        curl_easy_cleanup(e);
        if (!c->breaker_disabled)
            httpc__breaker_record(&c->breakers, r->origin, r->host_label, r->probe,
                                  HTTPC__OUTCOME_NEUTRAL, now);
        httpc__set_error(r, HTTPC_ERR_INVALID, CURLE_OK, "curl hook refused the request");
        httpc__defer_finish(r);
        return;
    }
    CURLMcode mc = curl_multi_add_handle(c->multi, e);
    if (mc != CURLM_OK) {
        curl_easy_cleanup(e);
        if (!c->breaker_disabled)
            httpc__breaker_record(&c->breakers, r->origin, r->host_label, r->probe,
                                  HTTPC__OUTCOME_NEUTRAL, now);
        httpc__set_error(r, HTTPC_ERR_OTHER, CURLE_OK, "curl_multi_add_handle: %s",
                         curl_multi_strerror(mc));
        httpc__defer_finish(r);
        return;
    }
    r->easy = e;
    r->state = HTTPC__ACTIVE;
    r->attempts++;
    c->nactive++;
}

static void httpc__dispatch(httpc_client *c)
{
    if (c->closing && !c->draining) return;
    while (c->nactive < c->max_concurrent && c->q_head) {
        httpc_req *r = c->q_head;
        httpc__queue_remove(c, r);
        httpc__start_attempt(r);
    }
}

/* Takes the easy handle out of the multi handle and frees it. */
static void httpc__detach(httpc_req *r)
{
    httpc_client *c = r->client;
    curl_multi_remove_handle(c->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    c->nactive--;
}

static bool httpc__is_connect_timeout(const httpc_req *r)
{
    return strstr(r->errbuf, "Connection timed out") || strstr(r->errbuf, "Failed to connect") ||
           strstr(r->errbuf, "Connection timeout");
}

/* Maps a failed attempt to an error; says whether it may be retried and whether the request
 * certainly never left (then even a POST may be retried). */
static httpc__outcome httpc__classify(httpc_req *r, CURLcode rc, bool *retryable,
                                      bool *nothing_sent)
{
    const char *what = curl_easy_strerror(rc);
    const char *detail = r->errbuf[0] ? r->errbuf : what;
    *retryable = false;
    *nothing_sent = false;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        httpc__set_error(r, HTTPC_ERR_RESOLVE, rc, "%s: %s", what, detail);
        *retryable = *nothing_sent = true;
        return HTTPC__OUTCOME_FAILURE;
    case CURLE_COULDNT_CONNECT:
        httpc__set_error(r, HTTPC_ERR_CONNECT, rc, "%s: %s", what, detail);
        *retryable = *nothing_sent = true;
        return HTTPC__OUTCOME_FAILURE;
    case CURLE_OPERATION_TIMEDOUT:
        *retryable = true;
        if (httpc__is_connect_timeout(r)) {
            *nothing_sent = true;
            int64_t t = r->connect_timeout_ms < r->attempt_timeout_ms ? r->connect_timeout_ms
                                                                      : r->attempt_timeout_ms;
            httpc__set_error(r, HTTPC_ERR_TIMEOUT, rc, "connect timed out after %lld ms",
                             (long long)t);
        } else {
            httpc__set_error(r, HTTPC_ERR_TIMEOUT, rc, "timed out after %lld ms",
                             (long long)r->attempt_timeout_ms);
        }
        return HTTPC__OUTCOME_FAILURE;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
        httpc__set_error(r, HTTPC_ERR_NETWORK, rc, "%s: %s", what, detail);
        *retryable = true;
        return HTTPC__OUTCOME_FAILURE;
    case CURLE_SSL_CONNECT_ERROR:
        httpc__set_error(r, HTTPC_ERR_TLS, rc, "%s: %s", what, detail);
        *retryable = *nothing_sent = true;
        return HTTPC__OUTCOME_FAILURE;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        httpc__set_error(r, HTTPC_ERR_TLS, rc, "%s: %s", what, detail);
        return HTTPC__OUTCOME_FAILURE;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        if (r->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
            httpc__set_error(r, HTTPC_ERR_TOO_LARGE, rc, "response larger than %zu bytes",
                             r->max_response_bytes);
            return HTTPC__OUTCOME_NEUTRAL;
        }
        break;
    case CURLE_TOO_MANY_REDIRECTS:
        httpc__set_error(r, HTTPC_ERR_TOO_MANY_REDIRECTS, rc, "more than %ld redirects",
                         r->max_redirects);
        return HTTPC__OUTCOME_NEUTRAL;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        httpc__set_error(r, HTTPC_ERR_INVALID, rc, "%s: %s", what, detail);
        return HTTPC__OUTCOME_NEUTRAL;
    default:
        break;
    }
    httpc__set_error(r, HTTPC_ERR_OTHER, rc, "%s: %s", what, detail);
    return HTTPC__OUTCOME_NEUTRAL;
}

static bool httpc__status_retryable(long status)
{
    return status == 429 || status == 502 || status == 503 || status == 504;
}

static void httpc__attempt_done(httpc_req *r, CURLcode rc)
{
    httpc_client *c = r->client;
    long status = 0;
    char *eff = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
    if (eff) {
        free(r->effective_url);
        r->effective_url = core_xstrdup(eff);
    }
    httpc__detach(r);

    bool retryable = false, nothing_sent = false;
    int64_t retry_after = -1; /* this response's Retry-After, in ms */
    httpc__outcome outcome;
    if (rc == CURLE_OK) {
        r->error = HTTPC_OK;
        r->curl_code = CURLE_OK;
        r->message[0] = '\0';
        r->status = status;
        outcome = status >= 500 ? HTTPC__OUTCOME_FAILURE : HTTPC__OUTCOME_SUCCESS;
        retryable = httpc__status_retryable(status);
        const char *ra = httpc__headers_get(r->hdrs.items, r->hdrs.n, "Retry-After");
        if (ra) retry_after = httpc__parse_retry_after(ra, core_now_unix_ms());
        if (retry_after >= 0) r->retry_after_ms = retry_after;
    } else {
        outcome = httpc__classify(r, rc, &retryable, &nothing_sent);
    }
    if (!c->breaker_disabled)
        httpc__breaker_record(&c->breakers, r->origin, r->host_label, r->probe, outcome,
                              core_mono_ns());
    r->probe = false;

    bool may = retryable && (r->idempotent || r->retry_non_idempotent || nothing_sent) &&
               r->attempts < r->max_attempts && !(c->closing && !c->draining);
    if (may) {
        int64_t wait = core_backoff_ms(r->attempts - 1, r->backoff_base_ms, r->backoff_max_ms);
        int64_t ra = retry_after;
        char saved[CORE_TRACE_ID_LEN + 1];
        if (ra > r->max_retry_wait_ms) {
            httpc__trace_push(r, saved);
            core_log_info("httpc Retry-After beyond the cap, not retrying",
                          CORE_F_STR("url", r->log_target), CORE_F_INT("retry_after_ms", ra),
                          CORE_F_INT("cap_ms", r->max_retry_wait_ms));
            httpc__trace_pop(saved);
            may = false;
        } else if (ra > wait) {
            wait = ra;
        }
        if (wait > r->max_retry_wait_ms) wait = r->max_retry_wait_ms;
        if (may && r->deadline_ms > 0 && httpc__elapsed_ms(r) + wait >= r->deadline_ms) may = false;
        if (may) {
            core_counter_add(c->m_retries, 1, httpc__label(c, r->host_label));
            httpc__trace_push(r, saved);
            core_log_warn(
                "httpc retry", CORE_F_STR("method", r->method), CORE_F_STR("url", r->log_target),
                CORE_F_INT("attempt", r->attempts), CORE_F_INT("status", r->status),
                CORE_F_STR("error", r->error ? r->message : ""), CORE_F_INT("wait_ms", wait));
            httpc__trace_pop(saved);
            r->state = HTTPC__WAITING;
            uv_timer_start(&r->timer, httpc__on_req_timer, (uint64_t)wait, 0);
            return;
        }
    }
    httpc__finish(r);
}

static void httpc__process_done(httpc_client *c)
{
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        char *priv = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv) httpc__attempt_done((httpc_req *)priv, rc);
    }
    httpc__dispatch(c);
}

static void httpc__on_req_timer(uv_timer_t *t)
{
    httpc_req *r = t->data;
    if (r->state == HTTPC__FAILING) {
        httpc__finish(r);
    } else if (r->state == HTTPC__WAITING) {
        httpc__queue_push(r->client, r);
        httpc__dispatch(r->client);
    }
}

/* ---------------------------------------------------------------- finishing */

static void httpc__req_closed(uv_handle_t *h)
{
    httpc_req *r = h->data;
    httpc_client *c = r->client;
    httpc__reset_response(r);
    curl_slist_free_all(r->headers);
    free(r->method);
    free(r->url);
    free(r->origin);
    free(r->host_label);
    free(r->log_target);
    free(r->body);
    free(r->effective_url);
    free(r);
    c->nreqs--;
    httpc__maybe_free(c);
}

static const char *httpc__status_class(const httpc_req *r)
{
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    if (r->error == HTTPC_ERR_CANCELLED) return "cancelled";
    if (r->error != HTTPC_OK || r->status < 100 || r->status > 599) return "error";
    return classes[r->status / 100 - 1];
}

static void httpc__finish(httpc_req *r)
{
    httpc_client *c = r->client;
    r->state = HTTPC__DONE;
    uv_timer_stop(&r->timer);
    httpc__live_unlink(c, r);

    httpc_response resp = {
        .status = r->error == HTTPC_OK ? r->status : 0,
        .error = r->error,
        .curl_code = r->curl_code,
        .message = r->error == HTTPC_OK ? "" : r->message,
        .headers = r->hdrs.items,
        .nheaders = r->hdrs.n,
        .body = r->body_in,
        .effective_url = r->effective_url ? r->effective_url : r->url,
        .attempts = r->attempts,
        .elapsed_ms = httpc__elapsed_ms(r),
        .retry_after_ms = r->retry_after_ms,
    };
    r->body_in = (core_buf){0};
    char saved[CORE_TRACE_ID_LEN + 1];
    httpc__trace_push(r, saved);
    const char *label = httpc__label(c, r->host_label);
    core_counter_add(c->m_requests, 1, label, httpc__status_class(r));
    core_histogram_observe(c->m_duration, (double)resp.elapsed_ms / 1000.0, label);
    core_log_debug("httpc done", CORE_F_STR("method", r->method), CORE_F_STR("url", r->log_target),
                   CORE_F_INT("status", resp.status), CORE_F_STR("error", resp.message),
                   CORE_F_INT("attempts", resp.attempts),
                   CORE_F_INT("elapsed_ms", resp.elapsed_ms));

    r->cb(&resp, r->data);
    httpc__trace_pop(saved);

    core_buf_free(&resp.body);
    httpc__reset_response(r);
    uv_close((uv_handle_t *)&r->timer, httpc__req_closed);
    if (c->closing && !c->torn_down) uv_timer_start(&c->aux_timer, httpc__on_aux, 0, 0);
}

/* ---------------------------------------------------------------- public API */

httpc_client *httpc_new(uv_loop_t *loop, const httpc_config *cfg)
{
    httpc_config zero = {0};
    if (!cfg) cfg = &zero;
    if (!loop) {
        core_log_error("httpc: no loop");
        return NULL;
    }
    if (cfg->connect_timeout_ms < 0 || cfg->timeout_ms < 0 || cfg->max_redirects < 0 ||
        cfg->backoff_base_ms < 0 || cfg->backoff_max_ms < 0 || cfg->max_retry_wait_ms < 0 ||
        cfg->breaker_cooldown_ms < 0 || cfg->drain_timeout_ms < 0) {
        core_log_error("httpc: invalid configuration (negative value)");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        core_log_error("httpc: curl_global_init failed");
        return NULL;
    }
    httpc_client *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        curl_global_cleanup();
        core_log_error("httpc: curl_multi_init failed");
        return NULL;
    }
    c->loop = loop;
    c->user_agent = core_xstrdup(cfg->user_agent ? cfg->user_agent : HTTPC__DEFAULT_USER_AGENT);
    c->accept_encoding =
        core_xstrdup(cfg->accept_encoding ? cfg->accept_encoding : HTTPC__DEFAULT_ENCODING);
    c->metrics_host_label = cfg->metrics_host_label ? core_xstrdup(cfg->metrics_host_label) : NULL;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : HTTPC__DEFAULT_CONNECT_TIMEOUT;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : HTTPC__DEFAULT_TIMEOUT;
    c->max_concurrent = cfg->max_concurrent ? cfg->max_concurrent : HTTPC__DEFAULT_MAX_CONCURRENT;
    c->max_response_bytes =
        cfg->max_response_bytes ? cfg->max_response_bytes : HTTPC__DEFAULT_MAX_BYTES;
    c->max_redirects = cfg->max_redirects;
    c->max_attempts = cfg->max_attempts ? cfg->max_attempts : 1;
    c->backoff_base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : HTTPC__DEFAULT_BACKOFF_BASE;
    c->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : HTTPC__DEFAULT_BACKOFF_MAX;
    c->max_retry_wait_ms =
        cfg->max_retry_wait_ms ? cfg->max_retry_wait_ms : HTTPC__DEFAULT_MAX_RETRY_WAIT;
    c->breaker_disabled = cfg->breaker_disabled;
    c->breaker_cooldown_ms =
        cfg->breaker_cooldown_ms ? cfg->breaker_cooldown_ms : HTTPC__DEFAULT_BREAKER_COOL;
    c->drain_on_close = cfg->drain_on_close;
    c->drain_timeout_ms =
        cfg->drain_timeout_ms ? cfg->drain_timeout_ms : HTTPC__DEFAULT_DRAIN_TIMEOUT;
    httpc__breakers_init(&c->breakers,
                         cfg->breaker_threshold ? cfg->breaker_threshold
                                                : HTTPC__DEFAULT_BREAKER_FAILS,
                         c->breaker_cooldown_ms, httpc__on_circuit_change, c);

    core_metrics *reg = cfg->metrics ? cfg->metrics : core_metrics_default();
    c->m_requests = core_metric_counter(reg, "httpc_requests_total",
                                        "HTTP client requests by host and outcome (status class, "
                                        "error or cancelled), counted once per logical request",
                                        "host,status");
    c->m_duration = core_metric_histogram(reg, "httpc_request_duration_seconds",
                                          "HTTP client request time, retries and waits included",
                                          "host", NULL, 0);
    c->m_retries =
        core_metric_counter(reg, "httpc_retries_total",
                            "HTTP client attempts repeated after a retryable failure", "host");
    c->m_circuit = core_metric_gauge(reg, "httpc_circuit_open",
                                     "HTTP client circuits open or half-open", "host");

    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, httpc__socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, httpc__timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);

    uv_timer_init(loop, &c->curl_timer);
    uv_timer_init(loop, &c->aux_timer);
    uv_timer_init(loop, &c->drain_timer);
    c->curl_timer.data = c; /* curl issue 19462: without it, timeouts are silently dropped */
    c->aux_timer.data = c;
    c->drain_timer.data = c;
    c->open_handles = 3;
    return c;
}

httpc_req *httpc_request(httpc_client *c, const httpc_request_opts *opts, httpc_done_cb cb,
                         void *data)
{
    if (!c || !opts || !opts->url || !cb || c->closing) return NULL;
    httpc_req *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->client = c;
    r->cb = cb;
    r->data = data;
    r->start_ns = core_mono_ns();
    r->retry_after_ms = -1;
    snprintf(r->trace, sizeof r->trace, "%s", core_log_trace());
    r->method = core_xstrdup(opts->method ? opts->method : "GET");
    r->url = core_xstrdup(opts->url);
    r->has_body = opts->body != NULL || opts->body_len > 0;
    r->body_len = opts->body ? opts->body_len : 0;
    r->body = malloc(r->body_len + 1);
    if (!r->body) abort();
    if (r->body_len) memcpy(r->body, opts->body, r->body_len);
    r->body[r->body_len] = '\0';
    r->idempotent = httpc__method_is_idempotent(r->method);
    r->retry_non_idempotent = opts->retry_non_idempotent;
    r->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : c->timeout_ms;
    r->connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : c->connect_timeout_ms;
    r->deadline_ms = opts->deadline_ms > 0 ? opts->deadline_ms : 0;
    r->max_attempts = opts->max_attempts ? opts->max_attempts : c->max_attempts;
    r->backoff_base_ms = opts->backoff_base_ms > 0 ? opts->backoff_base_ms : c->backoff_base_ms;
    r->backoff_max_ms = opts->backoff_max_ms > 0 ? opts->backoff_max_ms : c->backoff_max_ms;
    r->max_retry_wait_ms =
        opts->max_retry_wait_ms > 0 ? opts->max_retry_wait_ms : c->max_retry_wait_ms;
    r->max_redirects = opts->max_redirects == 0  ? c->max_redirects
                       : opts->max_redirects < 0 ? 0
                                                 : opts->max_redirects;
    r->max_response_bytes =
        opts->max_response_bytes ? opts->max_response_bytes : c->max_response_bytes;
    r->hook = opts->curl_hook;
    r->hook_data = opts->curl_hook_data;

    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    c->nreqs++;
    r->next = c->live;
    if (c->live) c->live->prev = r;
    c->live = r;
    c->nlive++;

    bool headers_ok = true, has_expect = false;
    for (size_t i = 0; i < opts->nheaders && headers_ok; i++) {
        const httpc_header *h = &opts->headers[i];
        if (!h->name || !*h->name || !httpc__header_safe(h->name, true) ||
            (h->value && !httpc__header_safe(h->value, false))) {
            headers_ok = false;
            break;
        }
        if (strcasecmp(h->name, "Expect") == 0) has_expect = true;
        core_buf line = {0};
        if (!h->value)
            core_buf_printf(&line, "%s:", h->name); /* removes curl's own header */
        else if (!*h->value)
            core_buf_printf(&line, "%s;", h->name); /* curl's spelling of an empty header */
        else
            core_buf_printf(&line, "%s: %s", h->name, h->value);
        struct curl_slist *l = curl_slist_append(r->headers, line.data);
        core_buf_free(&line);
        if (!l) abort();
        r->headers = l;
    }
    if (!has_expect) { /* no "Expect: 100-continue" round trip for large bodies */
        struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
        if (!l) abort();
        r->headers = l;
    }

    if (!httpc__url_parts(r->url, &r->origin, &r->host_label, &r->log_target)) {
        httpc__set_error(r, HTTPC_ERR_INVALID, CURLE_URL_MALFORMAT,
                         "invalid URL (an absolute http or https URL is needed)");
        httpc__defer_finish(r);
    } else if (!httpc__method_valid(r->method)) {
        httpc__set_error(r, HTTPC_ERR_INVALID, CURLE_OK, "invalid method");
        httpc__defer_finish(r);
    } else if (!headers_ok) {
        httpc__set_error(r, HTTPC_ERR_INVALID, CURLE_OK, "invalid header name or value");
        httpc__defer_finish(r);
    } else if (!c->breaker_disabled &&
               !httpc__breaker_allows(&c->breakers, r->origin, core_mono_ns())) {
        httpc__fail_circuit(r);
    } else {
        httpc__queue_push(c, r);
        httpc__dispatch(c);
    }
    return r;
}

void httpc_cancel(httpc_req *r)
{
    if (!r || r->state == HTTPC__DONE) return;
    httpc_client *c = r->client;
    switch (r->state) {
    case HTTPC__QUEUED:
        httpc__queue_remove(c, r);
        break;
    case HTTPC__ACTIVE:
        httpc__detach(r);
        if (r->probe && !c->breaker_disabled)
            httpc__breaker_record(&c->breakers, r->origin, r->host_label, true,
                                  HTTPC__OUTCOME_NEUTRAL, core_mono_ns());
        r->probe = false;
        break;
    case HTTPC__WAITING:
    case HTTPC__FAILING:
    case HTTPC__DONE:
        break;
    }
    httpc__set_error(r, HTTPC_ERR_CANCELLED, CURLE_OK, "cancelled");
    httpc__finish(r);
    httpc__dispatch(c);
}

static void httpc__cancel_all(httpc_client *c)
{
    while (c->live)
        httpc_cancel(c->live);
}

static void httpc__teardown(httpc_client *c)
{
    c->torn_down = true;
    uv_timer_stop(&c->drain_timer);
    /* Closes cached connections through httpc__close_socket_cb, which closes their polls. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    for (size_t fd = 0; fd < c->socks_cap; fd++)
        if (c->socks[fd]) httpc__sock_forget(c, (curl_socket_t)fd);
    uv_close((uv_handle_t *)&c->curl_timer, httpc__client_handle_closed);
    uv_close((uv_handle_t *)&c->aux_timer, httpc__client_handle_closed);
    uv_close((uv_handle_t *)&c->drain_timer, httpc__client_handle_closed);
}

static void httpc__on_aux(uv_timer_t *t)
{
    httpc_client *c = t->data;
    if (c->torn_down || c->nlive > 0) return; /* the last request to finish re-arms it */
    httpc__teardown(c);
}

static void httpc__on_drain_timeout(uv_timer_t *t)
{
    httpc_client *c = t->data;
    c->draining = false;
    core_log_warn("httpc drain timed out, cancelling", CORE_F_INT("requests", c->nlive),
                  CORE_F_INT("drain_timeout_ms", c->drain_timeout_ms));
    httpc__cancel_all(c);
}

void httpc_close(httpc_client *c, httpc_close_cb done, void *data)
{
    if (!c || c->closing) return;
    c->closing = true;
    c->close_cb = done;
    c->close_data = data;
    if (c->drain_on_close && c->nlive > 0) {
        c->draining = true;
        uv_timer_start(&c->drain_timer, httpc__on_drain_timeout, (uint64_t)c->drain_timeout_ms, 0);
    } else {
        httpc__cancel_all(c);
    }
    uv_timer_start(&c->aux_timer, httpc__on_aux, 0, 0);
}

const char *httpc_response_header(const httpc_response *resp, const char *name)
{
    if (!resp) return NULL;
    return httpc__headers_get(resp->headers, resp->nheaders, name);
}

httpc_circuit httpc_circuit_state(httpc_client *c, const char *origin)
{
    char *key = NULL;
    if (!c || !httpc__url_parts(origin, &key, NULL, NULL)) return HTTPC_CIRCUIT_CLOSED;
    httpc_circuit s = httpc__breaker_state(&c->breakers, key, core_mono_ns());
    free(key);
    return s;
}

size_t httpc_active(const httpc_client *c)
{
    return c ? c->nactive : 0;
}

size_t httpc_queued(const httpc_client *c)
{
    return c ? c->nqueued : 0;
}

const char *httpc_error_name(httpc_error err)
{
    switch (err) {
    case HTTPC_OK:
        return "ok";
    case HTTPC_ERR_CANCELLED:
        return "cancelled";
    case HTTPC_ERR_INVALID:
        return "invalid";
    case HTTPC_ERR_RESOLVE:
        return "resolve";
    case HTTPC_ERR_CONNECT:
        return "connect";
    case HTTPC_ERR_TIMEOUT:
        return "timeout";
    case HTTPC_ERR_NETWORK:
        return "network";
    case HTTPC_ERR_TLS:
        return "tls";
    case HTTPC_ERR_TOO_LARGE:
        return "too_large";
    case HTTPC_ERR_TOO_MANY_REDIRECTS:
        return "too_many_redirects";
    case HTTPC_ERR_CIRCUIT_OPEN:
        return "circuit_open";
    case HTTPC_ERR_OTHER:
        return "other";
    }
    return "unknown";
}

const char *httpc_circuit_name(httpc_circuit state)
{
    switch (state) {
    case HTTPC_CIRCUIT_CLOSED:
        return "closed";
    case HTTPC_CIRCUIT_OPEN:
        return "open";
    case HTTPC_CIRCUIT_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}
