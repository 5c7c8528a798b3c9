/*
 * Upstream connections: a pool of keep-alive HTTP/1.1 connections per upstream (plain uv_tcp_t
 * on the service's loop), and exchanges on them: one request written in one go, the response
 * head parsed, the body handed over piece by piece with explicit back-pressure.
 *
 * No circuit breaker and no remembered failure: every exchange that finds no idle connection
 * connects afresh, so an upstream that comes back is used by the next request. An exchange on a
 * reused keep-alive connection that the upstream closed meanwhile (EOF or reset before any byte
 * of the answer) is retried once on a new connection.
 */
#ifndef GATEWAY_UPSTREAM_H
#define GATEWAY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "core.h"
#include "resphead.h"

typedef struct gw_pool gw_pool;
typedef struct gw_exchange gw_exchange;

typedef enum gw_xerr {
    GW_XERR_CONNECT,         /* refused, unreachable */
    GW_XERR_CONNECT_TIMEOUT, /* no connection within the connect timeout */
    GW_XERR_TIMEOUT,         /* nothing read within the read timeout */
    GW_XERR_RESET,           /* closed or reset before the answer was complete */
    GW_XERR_PROTOCOL,        /* a malformed response head or body framing */
} gw_xerr;

const char *gw_xerr_text(gw_xerr e);

typedef struct gw_exchange_cbs {
    /* The response head; its strings point into the connection's buffer and are valid during
     * the call only. */
    void (*on_head)(gw_exchange *x, const gw_resp_head *head, void *data);
    /* A piece of the (decoded) body; final on the last one (len may be 0). data stays valid
     * until the call returns, or, when the callee calls gw_exchange_pause, until it calls
     * gw_exchange_resume. After a final piece the exchange is over once the call returns
     * without pausing, or once gw_exchange_resume returns. */
    void (*on_body)(gw_exchange *x, const char *data, size_t len, bool final, void *cbdata);
    /* The exchange failed; it is freed after the call. after_head: on_head was called. */
    void (*on_error)(gw_exchange *x, gw_xerr err, bool after_head, void *data);
} gw_exchange_cbs;

typedef struct gw_pool_config {
    const struct sockaddr *addr;
    const char *name;           /* for logs */
    int64_t connect_timeout_ms; /* 2000 */
    size_t max_idle;            /* idle keep-alive connections kept; 64 */
} gw_pool_config;

gw_pool *gw_pool_new(uv_loop_t *loop, const gw_pool_config *cfg);
/* Closes the idle connections, and the busy ones as their exchanges end; frees the pool once
 * every connection is closed (from a close callback). Exchanges still running are not aborted:
 * abort them first. */
void gw_pool_close(gw_pool *p);
size_t gw_pool_idle(const gw_pool *p);

typedef struct gw_exchange_opts {
    bool head_request;       /* the answer has no body */
    bool idempotent;         /* may be sent again on a new connection (see the top) */
    int64_t read_timeout_ms; /* the longest silence from the upstream while waiting for it */
} gw_exchange_opts;

/* Starts an exchange: takes the request (head and body, in req; its memory is stolen) and
 * writes it on an idle connection or a new one. Never calls back from inside. */
gw_exchange *gw_exchange_start(gw_pool *p, core_buf *req, const gw_exchange_opts *opts,
                               const gw_exchange_cbs *cbs, void *data);
void gw_exchange_pause(gw_exchange *x);
void gw_exchange_resume(gw_exchange *x);
/* Gives up: the connection is closed, no callback runs again, x is freed (possibly later). */
void gw_exchange_abort(gw_exchange *x);

#endif
