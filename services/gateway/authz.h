/*
 * Authorization at the gateway: the route table's access options (routes.h) enforced with
 * libs/auth. The JWT is verified here with the public key alone (no call to the service that
 * issued it); a verified token is kept in a small cache keyed by the whole token, so a client
 * polling with the same token costs one Ed25519 check per cache lifetime, not one per request.
 * Public routes need no token and are rate-limited per client address instead (token bucket).
 *
 * The decision is pure (gw_authz_check: route, method, credentials, client, clock -> 0, 401,
 * 403 or 429); the proxy answers and builds the upstream request from it.
 */
#ifndef GATEWAY_AUTHZ_H
#define GATEWAY_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "routes.h"

typedef struct gw_authz_config {
    bool off;               /* GATEWAY_AUTH=off: no token is checked (tests of other things) */
    const char *public_key; /* AUTH_PUBLIC_KEY, base64 (required unless off) */
    const char *issuer;     /* the "iss" tokens must carry; NULL: any */
    double rate_per_s;      /* public routes, per client address; 0: no limit */
    double burst;
    size_t max_clients; /* buckets kept (bounded memory) */
    size_t cache_slots; /* verified tokens kept; 0: verify every time */
} gw_authz_config;

typedef struct gw_authz gw_authz;

/* NULL with a message in err when the key does not decode. */
gw_authz *gw_authz_new(const gw_authz_config *cfg, char *err, size_t errlen);
void gw_authz_free(gw_authz *a);
bool gw_authz_is_off(const gw_authz *a);

typedef struct gw_authz_result {
    int status;          /* 0 (go on), 401, 403 or 429 */
    const char *why;     /* the problem's detail (never the token) */
    bool token_invalid;  /* 401 for a token that was there (error="invalid_token") */
    int64_t retry_after; /* 429: seconds */
    auth_claims claims;  /* status 0 on a protected route: the verified identity */
    bool identified;     /* claims are set */
} gw_authz_result;

/* The whole decision for one request. authorization: the Authorization header (may be NULL);
 * query_token: ?access_token= (NULL unless the route is a ;stream route); client: the peer's
 * address. */
void gw_authz_check(gw_authz *a, const gw_route *r, const char *method, size_t method_len,
                    const char *authorization, const char *query_token, const char *client,
                    int64_t now_ms, gw_authz_result *out);

/* Copies target ("/path?query") into out without its query parameters named name (names
 * compared after percent-decoding, '+' as space, as libs/http's http_query reads them); the
 * '?' goes too when nothing is left. out must hold len + 1 bytes. Returns the new length (len
 * when nothing was removed). */
size_t gw_query_without(const char *target, size_t len, const char *name, char *out);

/* "10/s burst 20", "600/min burst 20", "off" (GATEWAY_PUBLIC_RATE); false when malformed. */
bool gw_rate_parse(const char *text, double *rate_per_s, double *burst);

#endif
