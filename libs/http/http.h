/*
 * http: the HTTP server every service embeds, on libh2o (libuv flavour) and the service's loop.
 *
 *   http_server_*    listen, drain, close
 *   http_route       route table with {param} segments and a trailing * catch-all
 *   http_req getters method, path, params, query, headers, body, request id, trace
 *   http_respond_*   buffered responses: bytes, text, JSON, RFC 9457 problems
 *   http_stream_*    unbuffered streaming responses (Server-Sent Events) with back-pressure
 *   http_readiness_* checks behind GET /readyz (GET /healthz and GET /metrics are built in)
 *
 * Single-threaded: every function must be called on the loop's thread. Every string a getter
 * returns stays valid until the request is freed (see http_req_ref); every string an argument
 * passes in is copied.
 */
#ifndef HTTP_H
#define HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct http_server http_server;
typedef struct http_req http_req;
typedef struct http_endpoint http_endpoint;
typedef struct http_stream http_stream;
typedef struct http_check http_check;

/* libh2o types, for services (the gateway) that go below this API. */
struct st_h2o_req_t;
struct st_h2o_context_t;
struct st_h2o_globalconf_t;

/* ---------------------------------------------------------------- server */

/* Zero means "the default" for every field. */
typedef struct http_server_config {
    const char *host;              /* listen address, IPv4 or IPv6 literal; "127.0.0.1" */
    uint16_t port;                 /* 0: an ephemeral port (see http_server_port) */
    const char *service;           /* service name, for problem types and logs; "service" */
    size_t max_body_bytes;         /* larger request bodies get 413; 1 MiB */
    uint64_t request_timeout_ms;   /* to receive a request's headers and body, and keep-alive
                                      idle time; 10 s */
    uint64_t handler_timeout_ms;   /* a handler must start its response within this, else 503;
                                      30 s (streams are exempt once started) */
    uint64_t readiness_timeout_ms; /* a readiness check that has not answered by then fails; 2 s */
    uint64_t drain_timeout_ms;     /* http_server_close waits this long for in-flight requests
                                      before answering them 503 and closing; 10 s */
    int backlog;                   /* listen(2) backlog; 511 */
    bool reuse_port;               /* SO_REUSEPORT: several processes listen on one port (the
                                      kernel spreads connections); false */
    /* Comma-separated addresses or CIDR blocks ("127.0.0.1/32,::1") of proxies whose
     * X-Forwarded-For is believed: when the TCP peer is one of them, http_remote_addr gives the
     * right-most X-Forwarded-For address that is not itself trusted. NULL or "": none (the
     * peer is the client). A malformed list makes http_server_new fail. At most 16 entries. */
    const char *trusted_proxies;
} http_server_config;

/* Whether list is acceptable as http_server_config.trusted_proxies (for configuration checks). */
bool http_trusted_proxies_valid(const char *list);

/* Binds and listens at once. NULL (after logging why) when the address is invalid or in use. */
http_server *http_server_new(uv_loop_t *loop, const http_server_config *cfg);
/* The bound port (the ephemeral one when cfg->port was 0). */
uint16_t http_server_port(const http_server *srv);
uv_loop_t *http_server_loop(const http_server *srv);

/* Closes the listening socket; /readyz answers 503 from now on. Connections already open are
 * still served. Idempotent. */
void http_server_stop_accepting(http_server *srv);
bool http_server_is_draining(const http_server *srv);
/* Number of requests received and not yet finished (responses still being written included). */
size_t http_server_inflight(const http_server *srv);

/* Graceful close: stops accepting, lets in-flight requests finish, closes idle keep-alive
 * connections; at drain_timeout_ms answers the requests still pending with 503, aborts open
 * streams (their on_close runs) and then closes what is left. When every connection is closed
 * and everything is freed, calls done(data) (from a later loop iteration) - srv is invalid
 * from then on. Call it once; done may be NULL. */
typedef void (*http_server_closed_fn)(void *data);
void http_server_close(http_server *srv, http_server_closed_fn done, void *data);

/* For services that use libh2o directly next to this API (the gateway's reverse proxy). */
struct st_h2o_context_t *http_server_h2o_context(http_server *srv);
struct st_h2o_globalconf_t *http_server_h2o_globalconf(http_server *srv);

/* ---------------------------------------------------------------- routes */

typedef void (*http_handler_fn)(http_req *req, void *data);

/*
 * Registers handler for method (exact, e.g. "GET"; HEAD requests fall back to GET routes) and
 * pattern: segments separated by '/', each a literal, or "{name}" matching one non-empty segment
 * (percent-decoded, see http_param), and optionally a last segment "*" matching the rest of the
 * path (zero or more segments; http_param(req, "*") gives it raw). When several routes match,
 * the most specific wins: literal before {param} before *, compared left to right. A path that
 * matches no route gets 404; one that matches only routes of other methods gets 405 with Allow.
 * Returns the endpoint (owned by the server) or NULL when the pattern is malformed or the same
 * method and pattern are already registered. The built-in GET /healthz, /readyz and /metrics
 * are registered first.
 */
http_endpoint *http_route(http_server *srv, const char *method, const char *pattern,
                          http_handler_fn handler, void *data);

/* Metadata on an endpoint (a required role, a rate-limit class, ...), read by middleware.
 * Setting a key again replaces its value. */
void http_endpoint_set_meta(http_endpoint *ep, const char *key, const char *value);
const char *http_endpoint_meta(const http_endpoint *ep, const char *key); /* NULL if unset */
const char *http_endpoint_pattern(const http_endpoint *ep);
const char *http_endpoint_method(const http_endpoint *ep);

/* Middleware runs, in registration order, after routing and before the handler of a matched
 * route (not for 404/405). Return true to continue; false to stop, having responded (or
 * taking responsibility for responding later, as a handler would). */
typedef bool (*http_middleware_fn)(http_req *req, void *data);
void http_server_use(http_server *srv, http_middleware_fn fn, void *data);

/* ---------------------------------------------------------------- requests */

const char *http_method(http_req *req);
const char *http_path(http_req *req); /* as received, without the query string, not decoded */
/* The matched endpoint; NULL when none matched (404/405, built-in error answers). */
const http_endpoint *http_req_endpoint(http_req *req);
/* The route label used in metrics: the matched pattern, or "unmatched". */
const char *http_route_label(http_req *req);

/* Path parameter {name}, percent-decoded (a request whose path has a malformed escape or an
 * encoded NUL gets 400 before any handler runs). NULL when the pattern has no such name. */
const char *http_param(http_req *req, const char *name);
/* First query parameter called name, decoded (%XX and '+'); "" for "?name" or "?name=";
 * NULL when absent. Malformed query strings get 400 before any handler runs. */
const char *http_query(http_req *req, const char *name);
/* First request header of that name (case-insensitive); NULL when absent or the request is
 * gone. */
const char *http_header(http_req *req, const char *name);
/* The request body (buffered whole, at most max_body_bytes). NULL with *len = 0 when there is
 * none. The bytes are owned by libh2o: valid while !http_req_is_gone(req); copy to keep. */
const void *http_body(http_req *req, size_t *len);
/*
 * Parses the body as JSON (any value; duplicate object keys are rejected). Returns a new
 * reference, or NULL after answering 415 (Content-Type is not application/json or *+json) or
 * 400 (malformed JSON; the problem carries line, column and position). So a handler writes:
 *     json_t *body = http_json_body(req);
 *     if (!body) return;
 */
json_t *http_json_body(http_req *req);

/* X-Request-Id from the client when sane (1-128 visible ASCII characters), else a new UUIDv7.
 * Echoed on every response as X-Request-Id. */
const char *http_request_id(http_req *req);
/* The W3C trace id from the client's traceparent, or a new one. The logger's trace id is set to
 * it while handlers and middleware run. */
const char *http_trace_id(http_req *req);
/* "00-<trace id>-<this request's span id>-<flags>": pass it on to calls made for this request. */
const char *http_traceparent(http_req *req);
/* The client's IP address: the TCP peer's, or, behind a trusted proxy (see
 * http_server_config.trusted_proxies), the one it forwarded; "" if unknown. */
const char *http_remote_addr(http_req *req);
const char *http_peer_addr(http_req *req);   /* the TCP peer's IP address, "" if unknown */
http_server *http_req_server(http_req *req); /* NULL once the request is gone */

/*
 * Lifetime. A handler may return without responding and respond later from another callback
 * (a database query completes). To do so it takes a reference before returning and drops it
 * when done; the http_req stays valid until the last reference is dropped, even when the client
 * disconnects meanwhile: then http_req_is_gone() turns true and responding does nothing. The
 * library holds its own reference while the underlying request lives and while a handler runs.
 */
http_req *http_req_ref(http_req *req);
void http_req_unref(http_req *req);
bool http_req_is_gone(const http_req *req);
/* True once a response was started (http_respond*, http_stream_start or libh2o's own). */
bool http_req_responded(const http_req *req);

/* ---------------------------------------------------------------- responses */

/* Adds a response header (before responding). Names and values are copied. -1 for values with
 * CR or LF, malformed names, and the framing headers h2o owns (Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, Upgrade). */
int http_set_header(http_req *req, const char *name, const char *value);

/* Each returns 0, or -1 (doing nothing) when the request is gone or already answered. The body
 * is copied. HEAD requests get the headers only. */
int http_respond(http_req *req, int status, const char *content_type, const void *data, size_t len);
int http_respond_text(http_req *req, int status, const char *text); /* text/plain; utf-8 */
/* Steals the reference to body (also on failure); a NULL body answers 500. */
int http_respond_json(http_req *req, int status, json_t *body);
/* RFC 9457 application/problem+json: type "about:blank", title, status, detail (omitted when
 * NULL), instance (the request path) and request_id. */
int http_respond_problem(http_req *req, int status, const char *title, const char *detail);
/* Same with a type URI (NULL: "about:blank") and extension members: the members of the object
 * extra (stolen; may be NULL) are added, e.g. {"errors": [{"field": "email", ...}]}; the
 * standard members win on a name clash. */
int http_respond_problem_ext(http_req *req, int status, const char *type, const char *title,
                             const char *detail, json_t *extra);

/* Hands the request to libh2o (e.g. h2o_reprocess_request into the reverse proxy): the handler
 * timeout stops and http_respond* refuse from now on. The response still passes this library's
 * filter (X-Request-Id, access log, metrics). Returns NULL when the request is gone. */
struct st_h2o_req_t *http_req_h2o_take(http_req *req);

/* ---------------------------------------------------------------- streaming */

/*
 * Starts an unbuffered response (e.g. text/event-stream) and sends the headers at once; the
 * body goes out as each write arrives (HTTP/1.1 chunked). NULL when the request is gone or
 * answered. The caller owns the stream: pair every http_stream_start with one
 * http_stream_end, even after on_close ran. The stream holds a reference on the request.
 * On cleartext HTTP/1.x the stream takes the connection over from libh2o (an idle stream then
 * costs about 2 KB): the connection closes when the stream ends, the request counts as in flight
 * until then and is logged then, and http_req_is_gone() turns true once the headers are out
 * (whether the client is still there is http_stream_is_closed's to say).
 */
http_stream *http_stream_start(http_req *req, int status, const char *content_type);
/* Called at most once, when the client goes away (disconnect, reset, server drain deadline)
 * before http_stream_end; writes fail from then on. Not called from inside http_stream_*. */
typedef void (*http_stream_close_fn)(http_stream *s, void *data);
void http_stream_on_close(http_stream *s, http_stream_close_fn fn, void *data);
/* Copies data; sends it at once when nothing is being written, else appends it to the pending
 * buffer that goes out when the previous write completes. 0, or -1 when the client is gone or
 * the stream ended. */
int http_stream_write(http_stream *s, const void *data, size_t len);
/* Bytes accepted by http_stream_write and not yet handed to the kernel: bound it to drop slow
 * clients. */
size_t http_stream_pending(const http_stream *s);
bool http_stream_is_closed(const http_stream *s); /* the client is gone */
http_req *http_stream_req(http_stream *s);
/* Flushes what is pending, finishes the response, and releases the caller's handle. */
void http_stream_end(http_stream *s);

/* ---------------------------------------------------------------- readiness */

/*
 * A check behind GET /readyz. fn is called for each /readyz request and answers, at once or
 * later, with http_check_done(check, ok, detail) exactly once (a check that has not answered
 * within readiness_timeout_ms counts as failed; answering late is fine). /readyz answers 200
 * {"status":"ready","checks":{name:{"ok":true,"detail":...}}} when every check passed, else 503
 * with "status":"not ready" and "failing":[names]; while draining 503 {"status":"draining"}.
 * A check must not answer after the server's close completed.
 */
typedef void (*http_readiness_fn)(http_check *check, void *data);
void http_readiness_check(http_server *srv, const char *name, http_readiness_fn fn, void *data);
void http_check_done(http_check *check, bool ok, const char *detail);

#endif
