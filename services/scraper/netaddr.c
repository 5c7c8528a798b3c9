/*
 * Which addresses the scraper may connect to: everything public; private, loopback,
 * link-local, multicast and other special-purpose ranges (RFC 6890) only when an allowlist
 * entry (SCRAPER_ALLOW_PRIVATE) covers the address.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scraper.h"

typedef struct cidr {
    int family;
    uint8_t addr[16];
    int bits;
} cidr;

struct sc_allowlist {
    cidr *e;
    size_t n;
};

sc_allowlist *sc_allowlist_parse(const char *text, char *err, size_t errlen)
{
    sc_allowlist *a = core_xcalloc(1, sizeof *a);
    if (!text) return a;
    char *copy = core_xstrdup(text);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        cidr c = {0};
        char *slash = strchr(tok, '/');
        if (slash) *slash = '\0';
        if (inet_pton(AF_INET, tok, c.addr) == 1) {
            c.family = AF_INET;
            c.bits = 32;
        } else if (inet_pton(AF_INET6, tok, c.addr) == 1) {
            c.family = AF_INET6;
            c.bits = 128;
        } else {
            snprintf(err, errlen, "\"%s\" is not an IP address or CIDR block", tok);
            goto bad;
        }
        if (slash) {
            char *e;
            long b = strtol(slash + 1, &e, 10);
            if (e == slash + 1 || *e || b < 0 || b > c.bits) {
                snprintf(err, errlen, "\"%s/%s\" has a bad prefix length", tok, slash + 1);
                goto bad;
            }
            c.bits = (int)b;
        }
        a->e = core_xrealloc(a->e, (a->n + 1) * sizeof *a->e);
        a->e[a->n++] = c;
    }
    free(copy);
    return a;
bad:
    free(copy);
    sc_allowlist_free(a);
    return NULL;
}

void sc_allowlist_free(sc_allowlist *a)
{
    if (!a) return;
    free(a->e);
    free(a);
}

/* The address as family + bytes, IPv4-mapped IPv6 unwrapped. */
static int addr_bytes(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, 12) == 0) {
            memcpy(out, b + 12, 4);
            return AF_INET;
        }
        memcpy(out, b, 16);
        return AF_INET6;
    }
    return 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool sc_allowlist_contains(const sc_allowlist *a, const struct sockaddr *sa)
{
    uint8_t b[16];
    int fam = addr_bytes(sa, b);
    for (size_t i = 0; a && i < a->n; i++)
        if (a->e[i].family == fam && prefix_eq(a->e[i].addr, b, a->e[i].bits)) return true;
    return false;
}

typedef struct range {
    const char *net;
    int bits;
    const char *cls;
} range;

static const range v4[] = {
    {"255.255.255.255", 32, "broadcast"}, {"0.0.0.0", 8, "unspecified"},
    {"10.0.0.0", 8, "private"},           {"100.64.0.0", 10, "carrier-grade NAT"},
    {"127.0.0.0", 8, "loopback"},         {"169.254.0.0", 16, "link-local"},
    {"172.16.0.0", 12, "private"},        {"192.0.0.0", 24, "reserved"},
    {"192.0.2.0", 24, "documentation"},   {"192.168.0.0", 16, "private"},
    {"198.18.0.0", 15, "reserved"},       {"198.51.100.0", 24, "documentation"},
    {"203.0.113.0", 24, "documentation"}, {"224.0.0.0", 4, "multicast"},
    {"240.0.0.0", 4, "reserved"},         {NULL, 0, NULL},
};
static const range v6[] = {
    {"::", 128, "unspecified"},          {"::1", 128, "loopback"},
    {"64:ff9b::", 96, "reserved"},       {"100::", 64, "reserved"},
    {"2001:db8::", 32, "documentation"}, {"fc00::", 7, "unique-local"},
    {"fe80::", 10, "link-local"},        {"fec0::", 10, "reserved"},
    {"ff00::", 8, "multicast"},          {NULL, 0, NULL},
};

const char *sc_addr_class(const struct sockaddr *sa)
{
    uint8_t b[16];
    int fam = addr_bytes(sa, b);
    if (!fam) return "reserved";
    const range *t = fam == AF_INET ? v4 : v6;
    for (int i = 0; t[i].net; i++) {
        uint8_t net[16];
        inet_pton(fam, t[i].net, net);
        if (prefix_eq(net, b, t[i].bits)) return t[i].cls;
    }
    return NULL;
}

void sc_addr_format(const struct sockaddr *sa, char *out, size_t size)
{
    uint8_t b[16];
    int fam = addr_bytes(sa, b);
    if (!fam || !inet_ntop(fam, b, out, (socklen_t)size)) snprintf(out, size, "?");
}
