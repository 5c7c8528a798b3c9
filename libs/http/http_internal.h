/*
 * Internals of libs/http, shared by its .c files and its unit tests. Not part of the API:
 * services include http.h only.
 */
#ifndef HTTP_INTERNAL_H
#define HTTP_INTERNAL_H

#include <h2o.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "http.h"

/* ---------------------------------------------------------------- router (http_router.c) */

typedef enum http_internal_seg_kind {
    HTTP_INTERNAL_SEG_LITERAL,
    HTTP_INTERNAL_SEG_PARAM,
    HTTP_INTERNAL_SEG_REST, /* the trailing "*" */
} http_internal_seg_kind;

typedef struct http_internal_seg {
    http_internal_seg_kind kind;
    char *text; /* the literal, or the parameter's name ("*" for REST) */
    size_t len;
} http_internal_seg;

/* A parameter found by a match: points into the matched path. */
typedef struct http_internal_capture {
    const char *name;
    const char *start;
    size_t len;
    bool raw; /* the REST capture: handed out undecoded */
} http_internal_capture;

/* Parses "/a/{id}/x" (or ".../{id}/" then "*") into segments (malloc'd; free with
 * http_internal_segs_free). -1 when the pattern is malformed: no leading '/', a bad or repeated
 * parameter name, '*' not last, or a literal containing one of "{}*?#%". */
int http_internal_pattern_parse(const char *pattern, http_internal_seg **segs, size_t *nsegs);
void http_internal_segs_free(http_internal_seg *segs, size_t nsegs);
/* Matches a raw path (no query) against the segments; caps gets one entry per PARAM/REST
 * segment (room for nsegs entries). */
bool http_internal_pattern_match(const http_internal_seg *segs, size_t nsegs, const char *path,
                                 size_t path_len, http_internal_capture *caps, size_t *ncaps);
/* < 0 when a is more specific than b, > 0 when less, 0 when they have the same shape (the same
 * literals and kinds: they match exactly the same paths). */
int http_internal_specificity_cmp(const http_internal_seg *a, size_t na, const http_internal_seg *b,
                                  size_t nb);
/* Percent-decodes s (and '+' to ' ' when plus_is_space). Returns a malloc'd NUL-terminated
 * string, or NULL when an escape is malformed or decodes to NUL. */
char *http_internal_pct_decode(const char *s, size_t len, bool plus_is_space, size_t *out_len);
/* The metrics label for a method: the standard ones as they are, anything else "OTHER". */
const char *http_internal_method_label(const char *method);
/* The reason phrase for a status ("OK", "Not Found", ...; "Unknown" for unknown codes). */
const char *http_internal_reason(int status);
/* True when the X-Request-Id a client sent may be reused: 1-128 visible ASCII characters. */
bool http_internal_request_id_ok(const char *s, size_t len);

/* ---------------------------------------------------------------- structures */

typedef struct http_internal_kv {
    char *name;
    char *value;
} http_internal_kv;

struct http_endpoint {
    char *method;
    char *pattern;
    http_internal_seg *segs;
    size_t nsegs;
    http_handler_fn handler;
    void *data;
    http_internal_kv *meta;
    size_t nmeta;
    struct http_endpoint *next;
};

typedef struct http_internal_middleware {
    http_middleware_fn fn;
    void *data;
    struct http_internal_middleware *next;
} http_internal_middleware;

typedef struct http_internal_check_def {
    char *name;
    http_readiness_fn fn;
    void *data;
    struct http_internal_check_def *next;
} http_internal_check_def;

typedef struct http_internal_round http_internal_round;

/* One accepted TCP connection (h2o owns the socket; we own the uv handle's memory). */
typedef struct http_internal_conn {
    uv_tcp_t tcp;
    http_server *srv;
    bool shut_read; /* shutdown(SHUT_RD) already sent while draining */
    struct http_internal_conn *prev, *next;
} http_internal_conn;

/* Our per-request state lives in malloc'd memory, reference counted: one reference belongs to
 * the h2o request (dropped by the pool's dispose callback, see the anchor), others to code that
 * answers later (http_req_ref) and to an open stream. */
struct http_req {
    int refs;
    http_server *srv;             /* never dereferenced once gone */
    h2o_req_t *h2o;               /* NULL once h2o disposed the request */
    bool gone;                    /* h2o disposed the request */
    bool client_gone;             /* the client closed its side; the request is being aborted */
    bool responded;               /* a response was started */
    bool delegated;               /* handed to libh2o (http_req_h2o_take) */
    bool logged;                  /* the access log line was written */
    bool watching;                /* our disconnect watcher reads the socket */
    bool detached;                /* a stream took the connection over (see http_stream.c) */
    struct http_req *prev, *next; /* srv->inflight */
    h2o_timeout_entry_t handler_timeout;

    char *method;
    char *path;  /* raw, without the query */
    char *query; /* raw, without '?'; NULL when none */
    const http_endpoint *ep;
    http_internal_kv *params;
    size_t nparams;
    http_internal_kv *queries;
    size_t nqueries;

    char request_id[129];
    char trace_id[CORE_TRACE_ID_LEN + 1];
    char span_id[CORE_SPAN_ID_LEN + 1];
    char traceparent[CORE_TRACEPARENT_LEN + 1];
    char remote[64]; /* the client (see trusted_proxies) */
    char peer[64];   /* the TCP peer */
    int64_t start_ns;

    struct http_internal_alloc *allocs; /* strings handed out by getters */
    http_stream *stream;
};

struct http_stream {
    http_req *req;
    h2o_generator_t gen; /* first member used by h2o callbacks: see stream_from_gen */
    bool chunked;        /* HTTP/1.1: we frame the chunks ourselves */
    bool head;           /* HEAD request: headers only */
    bool inflight;       /* an h2o_send is outstanding (wait for proceed) */
    bool ending;         /* the caller called http_stream_end */
    bool finished;       /* the final (or error) send went out */
    bool closed;         /* the client is gone */
    bool abort_pending;  /* send the error state at the next proceed */
    bool close_notified;
    core_buf sending; /* handed to h2o, valid until proceed */
    core_buf pending; /* written while a send was outstanding */
    char chunk_head[24];
    http_stream_close_fn on_close;
    void *on_close_data;
    int status;
    /* HTTP/1.x: the stream owns the socket (h2o_http1_upgrade), h2o's request is gone. */
    bool detached;
    bool linked;                       /* in srv->detached, sock set */
    h2o_socket_t *sock;                /* NULL before the handover and once closed */
    http_server *srv;                  /* for the access log at the end */
    uint64_t bytes;                    /* payload bytes written */
    struct http_stream *dprev, *dnext; /* srv->detached */
};

/* An address block of http_server_config.trusted_proxies. */
typedef struct http_internal_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned bits;
} http_internal_cidr;

/* Parses "a.b.c.d[/n],x::y[/n],..." into out (at most max); false when malformed. */
bool http_internal_cidrs_parse(const char *list, http_internal_cidr *out, size_t max, size_t *n);
/* Whether the textual address addr lies in one of the blocks. */
bool http_internal_cidrs_match(const http_internal_cidr *c, size_t n, const char *addr);
/* The client's address from the TCP peer and X-Forwarded-For (xff may be NULL): the right-most
 * forwarded address that is not a trusted proxy, when the peer is one; else the peer. */
void http_internal_client_addr(const http_internal_cidr *c, size_t n, const char *peer,
                               const char *xff, size_t xff_len, char *out, size_t outlen);

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t *listener_handle; /* own allocation, see http_server_new */
    bool listening;
    bool draining;
    bool closing;
    bool finalizing;
    uint16_t port;
    char *service;
    http_server_config cfg;
    http_internal_cidr trusted[16]; /* cfg.trusted_proxies, parsed */
    size_t ntrusted;

    h2o_globalconf_t globalconf;
    h2o_hostconf_t *hostconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_timeout_t handler_timeout;
    h2o_timeout_t readiness_timeout;

    http_endpoint *endpoints, *endpoints_tail;
    size_t max_segs;
    http_internal_middleware *middleware, *middleware_tail;
    http_internal_check_def *checks, *checks_tail;
    size_t nchecks;
    http_internal_round *rounds;

    http_req *inflight; /* requests whose h2o request is alive */
    size_t ninflight;
    http_internal_conn *conns;
    size_t nconns;
    http_stream *detached; /* streams that own their connection (HTTP/1.x) */
    size_t ndetached;

    core_metric *m_requests;
    core_metric *m_duration;

    uv_timer_t drain_timer;
    uv_timer_t final_timer; /* second stage of the two-step close (see http_server.c) */
    int64_t close_started_ns;
    int drain_stage; /* 0 waiting, 1 pending answered 503, 2 sockets shut down */
    http_server_closed_fn closed_cb;
    void *closed_data;
};

/* ---------------------------------------------------------------- cross-file helpers */

/* http_request.c */
void http_internal_register_h2o(http_server *srv, h2o_pathconf_t *pathconf);
void http_internal_req_release_all(http_server *srv); /* drain deadline: 503 / abort */
void http_internal_req_abort_client_gone(http_req *req);
char *http_internal_req_strdup(http_req *req, const char *s, size_t len);
bool http_internal_req_can_respond(const http_req *req);
void http_internal_req_watch_start(http_req *req);
/* For a stream whose headers h2o_http1_upgrade writes (no filter runs on that path): what our
 * filter does when a response starts (X-Request-Id, no handler timeout, no watcher); h2o's logger
 * then skips the request, which the stream logs when its connection closes. */
void http_internal_req_detach(http_req *req);
/* The access log line and the metrics of one request. */
void http_internal_req_log(http_server *srv, http_req *req, int status, uint64_t bytes);

/* http_stream.c */
void http_internal_stream_on_gone(http_stream *s);
void http_internal_stream_abort(http_stream *s);
void http_internal_stream_free(http_stream *s);
void http_internal_stream_release_detached(http_server *srv); /* drain deadline: abort */

/* http_builtin.c */
void http_internal_builtin_register(http_server *srv);
void http_internal_rounds_free(http_server *srv);

/* http_server.c */
int http_internal_req_fd(const http_req *req);

#endif
