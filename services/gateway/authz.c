/*
 * Authorization decisions and the helpers around them (see authz.h).
 */
#include "authz.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* One verified token. The cache is direct-mapped: a token's slot is a keyed hash of the whole
 * token (a random key per process, so nobody can aim tokens at one slot), a newcomer replaces
 * what was there. Hits compare the whole token, and a cached token's expiry is checked again on
 * every hit. */
typedef struct authz_slot {
    char *token;
    size_t len;
    auth_claims claims;
} authz_slot;

struct gw_authz {
    bool off;
    auth_verifier v;
    char *issuer;
    auth_buckets *limit; /* NULL: public routes are not limited */
    authz_slot *slots;
    size_t mask; /* slots - 1 (a power of two); no cache when slots is NULL */
    uint8_t hkey[crypto_shorthash_KEYBYTES];
};

gw_authz *gw_authz_new(const gw_authz_config *cfg, char *err, size_t errlen)
{
    gw_authz *a = core_xcalloc(1, sizeof *a);
    a->off = cfg->off;
    if (!a->off && (!cfg->public_key || !auth_verifier_from_base64(&a->v, cfg->public_key))) {
        snprintf(err, errlen, "must be the base64 Ed25519 public key (32 bytes)");
        free(a);
        return NULL;
    }
    a->issuer = cfg->issuer && *cfg->issuer ? core_xstrdup(cfg->issuer) : NULL;
    if (cfg->rate_per_s > 0)
        a->limit = auth_buckets_new(cfg->rate_per_s, cfg->burst,
                                    cfg->max_clients ? cfg->max_clients : 100000);
    if (cfg->cache_slots && !a->off) {
        size_t n = 1;
        while (n < cfg->cache_slots && n < 65536)
            n <<= 1;
        a->slots = core_xcalloc(n, sizeof *a->slots);
        a->mask = n - 1;
        randombytes_buf(a->hkey, sizeof a->hkey);
    }
    return a;
}

void gw_authz_free(gw_authz *a)
{
    if (!a) return;
    if (a->slots)
        for (size_t i = 0; i <= a->mask; i++)
            free(a->slots[i].token);
    free(a->slots);
    free(a->issuer);
    auth_buckets_free(a->limit);
    free(a);
}

bool gw_authz_is_off(const gw_authz *a)
{
    return a->off;
}

static const char *authz_need_text(auth_role need)
{
    switch (need) {
    case AUTH_ROLE_ADMIN:
        return "this needs the admin role";
    case AUTH_ROLE_EDITOR:
        return "this needs the editor role";
    default:
        return "this needs the viewer role";
    }
}

/* A verified token's claims: from the cache, or verified now (and cached). */
static auth_status authz_verify(gw_authz *a, const char *token, int64_t now_s, auth_claims *out)
{
    size_t len = strnlen(token, AUTH_JWT_MAX + 1);
    if (len > AUTH_JWT_MAX || !a->slots)
        return auth_jwt_verify(&a->v, token, now_s, a->issuer, out);
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, (const unsigned char *)token, len, a->hkey);
    authz_slot *s = &a->slots[h & a->mask];
    if (s->token && s->len == len && memcmp(s->token, token, len) == 0) {
        if (s->claims.exp > now_s) {
            *out = s->claims;
            return AUTH_OK;
        }
        free(s->token);
        s->token = NULL;
        return AUTH_EXPIRED;
    }
    auth_status st = auth_jwt_verify(&a->v, token, now_s, a->issuer, out);
    if (st != AUTH_OK) return st;
    free(s->token);
    s->token = core_xstrndup(token, len);
    s->len = len;
    s->claims = *out;
    return AUTH_OK;
}

void gw_authz_check(gw_authz *a, const gw_route *r, const char *method, size_t method_len,
                    const char *authorization, const char *query_token, const char *client,
                    int64_t now_ms, gw_authz_result *out)
{
    out->status = 0;
    out->why = "ok";
    out->token_invalid = false;
    out->retry_after = 0;
    out->identified = false;
    if (r->is_public) {
        int64_t retry_ms = 0;
        if (a->limit && !auth_buckets_take(a->limit, client ? client : "", now_ms, &retry_ms)) {
            out->status = 429;
            out->why = "too many requests from this address";
            out->retry_after = retry_ms > 0 ? (retry_ms + 999) / 1000 : 1;
        }
        return;
    }
    if (a->off) return;
    const char *token = auth_bearer(authorization);
    if (!token && query_token && *query_token) token = query_token;
    if (!token) {
        out->status = 401;
        out->token_invalid = authorization != NULL;
        out->why = auth_status_text(authorization ? AUTH_MALFORMED : AUTH_MISSING);
        return;
    }
    auth_status st = authz_verify(a, token, now_ms / 1000, &out->claims);
    if (st != AUTH_OK) {
        out->status = 401;
        out->token_invalid = true;
        out->why = auth_status_text(st);
        return;
    }
    auth_role need = gw_route_need(r, method, method_len);
    if (!auth_role_allows(out->claims.role, need)) {
        out->status = 403;
        out->why = authz_need_text(need);
        return;
    }
    out->identified = true;
}

/* ---------------------------------------------------------------- query strings */

static int authz_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Does the raw (encoded) parameter name p[0..len) decode to name? */
static bool authz_name_is(const char *p, size_t len, const char *name)
{
    size_t j = 0, nl = strlen(name);
    for (size_t i = 0; i < len; i++, j++) {
        char c = p[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len && authz_hex(p[i + 1]) >= 0 &&
                   authz_hex(p[i + 2]) >= 0) {
            c = (char)(authz_hex(p[i + 1]) * 16 + authz_hex(p[i + 2]));
            i += 2;
        }
        if (j >= nl || name[j] != c) return false;
    }
    return j == nl;
}

size_t gw_query_without(const char *target, size_t len, const char *name, char *out)
{
    const char *q = memchr(target, '?', len);
    size_t head = q ? (size_t)(q - target) : len;
    memcpy(out, target, head);
    size_t n = head;
    if (!q) {
        out[n] = '\0';
        return n;
    }
    bool first = true, removed = false;
    const char *p = q + 1, *end = target + len;
    while (p <= end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        size_t nlen = (size_t)((eq ? eq : pe) - p);
        if (pe > p && !authz_name_is(p, nlen, name)) {
            out[n++] = first ? '?' : '&';
            memcpy(out + n, p, (size_t)(pe - p));
            n += (size_t)(pe - p);
            first = false;
        } else if (pe > p) {
            removed = true;
        }
        p = pe + 1;
    }
    if (!removed) { /* as it was, byte for byte */
        memcpy(out, target, len);
        n = len;
    }
    out[n] = '\0';
    return n;
}

/* ---------------------------------------------------------------- GATEWAY_PUBLIC_RATE */

bool gw_rate_parse(const char *text, double *rate_per_s, double *burst)
{
    if (strcmp(text, "off") == 0) {
        *rate_per_s = 0;
        *burst = 0;
        return true;
    }
    char *end;
    double n = strtod(text, &end);
    if (end == text || !(n > 0) || !isfinite(n) || *end != '/') return false;
    const char *unit = end + 1;
    size_t ul = strcspn(unit, " ");
    double per;
    if ((ul == 1 && *unit == 's') || (ul == 3 && memcmp(unit, "sec", 3) == 0))
        per = 1;
    else if ((ul == 1 && *unit == 'm') || (ul == 3 && memcmp(unit, "min", 3) == 0))
        per = 60;
    else if (ul == 1 && *unit == 'h')
        per = 3600;
    else
        return false;
    const char *rest = unit + ul;
    while (*rest == ' ')
        rest++;
    double b = ceil(n / per) > 1 ? ceil(n / per) : 1;
    if (*rest) {
        if (strncmp(rest, "burst ", 6) != 0) return false;
        const char *bs = rest + 6;
        while (*bs == ' ')
            bs++;
        b = strtod(bs, &end);
        if (end == bs || *end || !(b >= 1) || !isfinite(b)) return false;
    }
    *rate_per_s = n / per;
    *burst = b;
    return true;
}
