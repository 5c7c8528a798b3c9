/*
 * The proxy path: a route handler per configured prefix that hands the request to libh2o's
 * response machinery (http_req_h2o_take) and talks to the upstream through upstream.h. The
 * response streams through as it arrives: one h2o_send outstanding at a time, the upstream
 * paused meanwhile (back-pressure end to end).
 */
#ifndef GATEWAY_PROXY_H
#define GATEWAY_PROXY_H

#include <stdint.h>

#include "authz.h"
#include "core.h"
#include "http.h"
#include "routes.h"
#include "upstream.h"

typedef struct gw_proxy_config {
    int64_t read_timeout_ms;    /* silence from the upstream before 504 (or an aborted stream) */
    int64_t connect_timeout_ms; /* no connection within this: 504 */
    size_t keepalive;           /* idle connections kept per upstream */
    gw_authz *authz;            /* who may use which route; NULL: nobody is checked */
} gw_proxy_config;

typedef struct gw_proxy_set gw_proxy_set;

/* Creates one pool per upstream and registers every route of t on srv; NULL when libs/http
 * refuses a route pattern (all standard methods,
 * pattern "<prefix>" + "/" + "*", the route's role as endpoint metadata "role"). t must outlive it.
 */
gw_proxy_set *gw_proxy_new(uv_loop_t *loop, http_server *srv, const gw_table *t,
                           const gw_proxy_config *cfg);
gw_pool *gw_proxy_pool(gw_proxy_set *ps, size_t upstream);
/* SIGTERM: deadline_ms from now, requests still waiting for their upstream get 503 and streams
 * still open are cut (their connections close), so the drain ends. */
void gw_proxy_drain(gw_proxy_set *ps, uint64_t deadline_ms);
/* Closes the pools (after the HTTP server drained) and frees the set. */
void gw_proxy_close(gw_proxy_set *ps);

#endif
