/*
 * The gateway's route table: named upstreams (GATEWAY_UPSTREAMS) and path prefixes routed to
 * them (GATEWAY_ROUTES), parsed and validated at start, and matched per request.
 *
 *   GATEWAY_UPSTREAMS  "name=host:port name=host:port ..."  (host: an IPv4 or IPv6 literal;
 *                      IPv6 in brackets: "[::1]:8081")
 *   GATEWAY_ROUTES     "/prefix=name;public /prefix=name;role=viewer;write=editor ..."
 *
 * A prefix matches whole path segments: "/api/content" matches "/api/content" and
 * "/api/content/items" but not "/api/contentx"; the longest matching prefix wins. Options say
 * who may use a route (authz.h enforces them):
 *   ;public          no token needed (rate-limited per client instead)
 *   ;role=<role>     the role GET and HEAD need (and every method, unless ;write= says more);
 *                    without ;public or ;role= any valid token will do (viewer)
 *   ;write=<role>    the role every other method needs
 *   ;stream          the token may also come as ?access_token= (EventSource sets no headers)
 */
#ifndef GATEWAY_ROUTES_H
#define GATEWAY_ROUTES_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth.h"

typedef struct gw_upstream_def {
    char *name;
    char *host; /* the literal, for Host headers and logs */
    uint16_t port;
    struct sockaddr_storage addr;
    bool used;     /* some route names it */
    bool optional; /* GATEWAY_OPTIONAL_UPSTREAMS: its readiness does not decide the gateway's */
} gw_upstream_def;

typedef struct gw_route {
    char *prefix; /* "/api/content" ("/" for the root) */
    size_t prefix_len;
    size_t upstream;                 /* index into the table's upstreams */
    char *role;                      /* ";role=" as written, NULL when none */
    char *write;                     /* ";write=" as written, NULL when none */
    bool is_public;                  /* ";public": no token */
    bool stream;                     /* ";stream": ?access_token= is accepted */
    auth_role read_need, write_need; /* AUTH_ROLE_NONE on public routes */
} gw_route;

typedef struct gw_table {
    gw_upstream_def *ups;
    size_t nups;
    gw_route *routes; /* sorted: longest prefix first */
    size_t nroutes;
} gw_table;

#define GW_DEFAULT_UPSTREAMS                                                                       \
    "content-manager=127.0.0.1:8081 ai-processor=127.0.0.1:8082 realtime=127.0.0.1:8083 "          \
    "scraper=127.0.0.1:8084 distributor=127.0.0.1:8085 subscriber-manager=127.0.0.1:8086 "         \
    "media-processor=127.0.0.1:8087"
#define GW_DEFAULT_ROUTES                                                                          \
    "/api/content=content-manager;role=viewer;write=editor "                                       \
    "/api/ai=ai-processor;role=viewer;write=editor "                                               \
    "/api/realtime=realtime;role=viewer /api/realtime/events=realtime;role=viewer;stream "         \
    "/api/scraper=scraper;role=viewer;write=editor "                                               \
    "/api/distributor=distributor;role=viewer;write=editor /api/track=distributor;public "         \
    "/api/media=media-processor;role=viewer;write=editor "                                         \
    "/api/subscribers=subscriber-manager;role=viewer;write=editor "                                \
    "/api/lists=subscriber-manager;role=viewer;write=editor "                                      \
    "/api/segments=subscriber-manager;role=viewer;write=editor "                                   \
    "/api/segments/count=subscriber-manager;role=viewer "                                          \
    "/api/imports=subscriber-manager;role=viewer;write=editor "                                    \
    "/api/users=subscriber-manager;role=admin /api/auth=subscriber-manager;role=viewer "           \
    "/api/auth/login=subscriber-manager;public /api/auth/refresh=subscriber-manager;public "       \
    "/api/auth/logout=subscriber-manager;public /api/public=subscriber-manager;public"
/* What a request with this method (GET, POST, ...) needs on route r: AUTH_ROLE_NONE on a
 * public route. */
auth_role gw_route_need(const gw_route *r, const char *method, size_t method_len);

/* Parses GATEWAY_UPSTREAMS: 0, or -1 with a message in err (the table is left empty). */
int gw_upstreams_parse(gw_table *t, const char *text, char *err, size_t errlen);
/* Parses GATEWAY_ROUTES against the upstreams already parsed: 0, or -1 with err. */
int gw_routes_parse(gw_table *t, const char *text, char *err, size_t errlen);
/* The route whose prefix matches path (raw, no query) on segment boundaries, longest first;
 * NULL when none does. */
const gw_route *gw_table_match(const gw_table *t, const char *path, size_t len);
void gw_table_free(gw_table *t);

/* Checks one prefix: starts with '/', no empty segment, no trailing '/' (except "/" itself),
 * no "." or ".." segment, only RFC 3986 path characters and none of "{}*?#%". */
bool gw_prefix_ok(const char *prefix, size_t len);

#endif
