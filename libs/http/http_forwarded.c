/*
 * The client's address behind trusted proxies. A proxy appends the address it received the
 * request from to X-Forwarded-For, so the list reads client, proxy1, proxy2, ... and only the
 * entries appended by proxies we trust can be believed: walking it from the right, the first
 * address that is not a trusted proxy is the client (the entries left of it could be forged by
 * the client itself).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"

static bool cidr_parse_one(const char *s, size_t len, http_internal_cidr *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash) *slash = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return false;
    }
    out->bits = max;
    if (slash) {
        char *end = NULL;
        long bits = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || bits < 0 || bits > (long)max) return false;
        out->bits = (unsigned)bits;
    }
    return true;
}

bool http_internal_cidrs_parse(const char *list, http_internal_cidr *out, size_t max, size_t *n)
{
    *n = 0;
    if (!list) return true;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p) break;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        if (*n == max || !cidr_parse_one(p, (size_t)(end - p), &out[*n])) return false;
        (*n)++;
        p = end;
    }
    return true;
}

bool http_trusted_proxies_valid(const char *list)
{
    http_internal_cidr c[16];
    size_t n;
    return http_internal_cidrs_parse(list, c, 16, &n);
}

static bool cidr_contains(const http_internal_cidr *c, int family, const unsigned char *addr)
{
    if (c->family != family) return false;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, full) != 0) return false;
    if (rest == 0) return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

bool http_internal_cidrs_match(const http_internal_cidr *c, size_t n, const char *addr)
{
    unsigned char bin[16];
    int family;
    if (inet_pton(AF_INET, addr, bin) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, addr, bin) == 1)
        family = AF_INET6;
    else
        return false;
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&c[i], family, bin)) return true;
    return false;
}

/* The client address given the peer and the X-Forwarded-For value (may be NULL): see above.
 * out receives the peer when it is not trusted or the header says nothing usable. */
void http_internal_client_addr(const http_internal_cidr *c, size_t n, const char *peer,
                               const char *xff, size_t xff_len, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", peer);
    if (n == 0 || !xff || !http_internal_cidrs_match(c, n, peer)) return;
    size_t end = xff_len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && (xff[a] == ' ' || xff[a] == '\t'))
            a++;
        while (b > a && (xff[b - 1] == ' ' || xff[b - 1] == '\t'))
            b--;
        char addr[64];
        if (b == a || b - a >= sizeof addr) return; /* unusable: keep what we have */
        memcpy(addr, xff + a, b - a);
        addr[b - a] = '\0';
        unsigned char bin[16];
        if (inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1) return;
        snprintf(out, outlen, "%s", addr);
        if (!http_internal_cidrs_match(c, n, addr)) return; /* the client */
        end = start > 0 ? start - 1 : 0;
    }
}
