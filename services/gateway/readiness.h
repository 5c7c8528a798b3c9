/*
 * GET /readyz of the gateway: one readiness check per upstream that some route names, each
 * asking the upstream's own GET /readyz (200 means ready). Results are cached for a second
 * and concurrent checks share one probe, so a flood of /readyz does not fan out.
 */
#ifndef GATEWAY_READINESS_H
#define GATEWAY_READINESS_H

#include <stdint.h>

#include "http.h"
#include "proxy.h"
#include "routes.h"

typedef struct gw_readiness gw_readiness;

gw_readiness *gw_readiness_new(http_server *srv, const gw_table *t, gw_proxy_set *ps,
                               int64_t probe_timeout_ms, int64_t cache_ms);
/* Aborts running probes and answers their waiting checks (not ready); call before
 * http_server_close. Frees it. */
void gw_readiness_close(gw_readiness *r);

#endif
