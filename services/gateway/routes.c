/*
 * Route table parsing and matching (see routes.h).
 */
#include "routes.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core.h"

/* Splits text on spaces, tabs and newlines; calls fn for each word until it returns -1. */
static int routes_each_word(const char *text, int (*fn)(void *ctx, const char *w, size_t len),
                            void *ctx)
{
    const char *p = text ? text : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',')
            p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != ',')
            p++;
        if (fn(ctx, s, (size_t)(p - s)) != 0) return -1;
    }
    return 0;
}

typedef struct routes_ctx {
    gw_table *t;
    char *err;
    size_t errlen;
} routes_ctx;

static bool routes_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 64) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static int routes_parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5) return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535) return -1;
    *out = (uint16_t)v;
    return 0;
}

static int routes_add_upstream(void *vctx, const char *w, size_t len)
{
    routes_ctx *c = vctx;
    gw_table *t = c->t;
    const char *eq = memchr(w, '=', len);
    if (!eq || !routes_name_ok(w, (size_t)(eq - w))) {
        snprintf(c->err, c->errlen, "\"%.*s\" is not name=host:port", (int)len, w);
        return -1;
    }
    size_t nlen = (size_t)(eq - w);
    const char *a = eq + 1, *end = w + len;
    const char *host, *hend, *colon;
    if (a < end && *a == '[') {
        host = a + 1;
        hend = memchr(host, ']', (size_t)(end - host));
        if (!hend || hend + 1 >= end || hend[1] != ':') goto bad;
        colon = hend + 1;
    } else {
        host = a;
        colon = NULL;
        for (const char *p = a; p < end; p++)
            if (*p == ':') colon = p;
        if (!colon) goto bad;
        hend = colon;
    }
    char hostbuf[64];
    size_t hlen = (size_t)(hend - host);
    if (hlen == 0 || hlen >= sizeof hostbuf) goto bad;
    memcpy(hostbuf, host, hlen);
    hostbuf[hlen] = '\0';
    uint16_t port;
    if (routes_parse_port(colon + 1, (size_t)(end - colon - 1), &port) != 0) goto bad;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(hostbuf, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(hostbuf, port, (struct sockaddr_in6 *)&ss) != 0)
        goto bad;
    for (size_t i = 0; i < t->nups; i++) {
        if (strlen(t->ups[i].name) == nlen && memcmp(t->ups[i].name, w, nlen) == 0) {
            snprintf(c->err, c->errlen, "upstream \"%.*s\" is defined twice", (int)nlen, w);
            return -1;
        }
    }
    t->ups = core_xrealloc(t->ups, (t->nups + 1) * sizeof *t->ups);
    gw_upstream_def *u = &t->ups[t->nups++];
    memset(u, 0, sizeof *u);
    u->name = core_xstrndup(w, nlen);
    u->host = core_xstrdup(hostbuf);
    u->port = port;
    u->addr = ss;
    return 0;
bad:
    snprintf(c->err, c->errlen, "\"%.*s\": the address is not host:port with an IP literal",
             (int)len, w);
    return -1;
}

int gw_upstreams_parse(gw_table *t, const char *text, char *err, size_t errlen)
{
    routes_ctx c = {t, err, errlen};
    if (routes_each_word(text, routes_add_upstream, &c) != 0) {
        gw_table_free(t);
        return -1;
    }
    if (t->nups == 0) {
        snprintf(err, errlen, "no upstream is defined");
        return -1;
    }
    return 0;
}

bool gw_prefix_ok(const char *p, size_t len)
{
    if (len == 0 || p[0] != '/' || len > 256) return false;
    if (len == 1) return true;
    if (p[len - 1] == '/') return false;
    size_t seg_start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i == len || p[i] == '/') {
            size_t sl = i - seg_start;
            if (sl == 0) return false;
            if ((sl == 1 && p[seg_start] == '.') ||
                (sl == 2 && p[seg_start] == '.' && p[seg_start + 1] == '.'))
                return false;
            seg_start = i + 1;
            continue;
        }
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("-._~!$&'()+,;=:@", c) != NULL;
        if (!ok || c == '\0') return false;
    }
    return true;
}

static int routes_cmp(const void *a, const void *b)
{
    const gw_route *x = a, *y = b;
    if (x->prefix_len != y->prefix_len) return x->prefix_len > y->prefix_len ? -1 : 1;
    return strcmp(x->prefix, y->prefix);
}

/* Parses the role name in opt[0..len) into *need and a copy into *name. */
static int routes_role(const char *opt, size_t len, char **name, auth_role *need)
{
    char buf[16];
    if (*name || len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, opt, len);
    buf[len] = '\0';
    if (!auth_role_parse(buf, need)) return -1;
    *name = core_xstrdup(buf);
    return 0;
}

/* The ";"-separated options after the upstream's name (see routes.h). */
static int routes_options(gw_route *r, const char *p, size_t len)
{
    const char *end = p + len;
    bool write_set = false;
    while (p <= end) {
        const char *e = memchr(p, ';', (size_t)(end - p));
        if (!e) e = end;
        size_t n = (size_t)(e - p);
        if (n == 6 && memcmp(p, "public", 6) == 0 && !r->is_public) {
            r->is_public = true;
        } else if (n == 6 && memcmp(p, "stream", 6) == 0 && !r->stream) {
            r->stream = true;
        } else if (n > 5 && memcmp(p, "role=", 5) == 0) {
            if (routes_role(p + 5, n - 5, &r->role, &r->read_need) != 0) return -1;
        } else if (n > 6 && memcmp(p, "write=", 6) == 0) {
            if (routes_role(p + 6, n - 6, &r->write, &r->write_need) != 0) return -1;
            write_set = true;
        } else {
            return -1;
        }
        p = e + 1;
    }
    if (r->is_public && (r->role || r->write || r->stream)) return -1;
    if (r->is_public) r->read_need = AUTH_ROLE_NONE;
    if (!write_set) r->write_need = r->read_need;
    return 0;
}

auth_role gw_route_need(const gw_route *r, const char *method, size_t len)
{
    bool read =
        (len == 3 && memcmp(method, "GET", 3) == 0) || (len == 4 && memcmp(method, "HEAD", 4) == 0);
    return read ? r->read_need : r->write_need;
}

static int routes_add_route(void *vctx, const char *w, size_t len)
{
    routes_ctx *c = vctx;
    gw_table *t = c->t;
    const char *semi = memchr(w, ';', len);
    size_t main_len = semi ? (size_t)(semi - w) : len;
    /* the prefix may not contain '=' (gw_prefix_ok allows it in paths): the last '=' before
     * the options separates prefix and upstream */
    const char *eq = NULL;
    for (const char *p = w; p < w + main_len; p++)
        if (*p == '=') eq = p;
    if (!eq) {
        snprintf(c->err, c->errlen, "\"%.*s\" is not /prefix=upstream", (int)len, w);
        return -1;
    }
    size_t plen = (size_t)(eq - w);
    if (!gw_prefix_ok(w, plen) || memchr(w, '=', plen)) {
        snprintf(c->err, c->errlen, "\"%.*s\": malformed path prefix", (int)len, w);
        return -1;
    }
    const char *uname = eq + 1;
    size_t ulen = (size_t)(w + main_len - uname);
    size_t ui = t->nups;
    for (size_t i = 0; i < t->nups; i++)
        if (strlen(t->ups[i].name) == ulen && memcmp(t->ups[i].name, uname, ulen) == 0) ui = i;
    if (ui == t->nups) {
        snprintf(c->err, c->errlen, "\"%.*s\": unknown upstream \"%.*s\"", (int)len, w, (int)ulen,
                 uname);
        return -1;
    }
    gw_route nr = {.read_need = AUTH_ROLE_VIEWER, .write_need = AUTH_ROLE_VIEWER};
    if (semi && routes_options(&nr, semi + 1, (size_t)(w + len - semi - 1)) != 0) {
        snprintf(c->err, c->errlen,
                 "\"%.*s\": options are ;public, ;role=<role>, ;write=<role> (viewer, editor, "
                 "admin) and ;stream; ;public goes with none of the others",
                 (int)len, w);
        free(nr.role);
        free(nr.write);
        return -1;
    }
    for (size_t i = 0; i < t->nroutes; i++) {
        if (t->routes[i].prefix_len == plen && memcmp(t->routes[i].prefix, w, plen) == 0) {
            snprintf(c->err, c->errlen, "prefix \"%.*s\" is routed twice", (int)plen, w);
            free(nr.role);
            free(nr.write);
            return -1;
        }
    }
    t->routes = core_xrealloc(t->routes, (t->nroutes + 1) * sizeof *t->routes);
    gw_route *r = &t->routes[t->nroutes++];
    *r = nr;
    r->prefix = core_xstrndup(w, plen);
    r->prefix_len = plen;
    r->upstream = ui;
    t->ups[ui].used = true;
    return 0;
}

int gw_routes_parse(gw_table *t, const char *text, char *err, size_t errlen)
{
    routes_ctx c = {t, err, errlen};
    if (routes_each_word(text, routes_add_route, &c) != 0) return -1;
    if (t->nroutes == 0) {
        snprintf(err, errlen, "no route is defined");
        return -1;
    }
    qsort(t->routes, t->nroutes, sizeof *t->routes, routes_cmp);
    return 0;
}

const gw_route *gw_table_match(const gw_table *t, const char *path, size_t len)
{
    for (size_t i = 0; i < t->nroutes; i++) {
        const gw_route *r = &t->routes[i];
        if (r->prefix_len == 1) return r; /* "/" matches everything; it sorts last */
        if (len < r->prefix_len || memcmp(path, r->prefix, r->prefix_len) != 0) continue;
        if (len == r->prefix_len || path[r->prefix_len] == '/') return r;
    }
    return NULL;
}

void gw_table_free(gw_table *t)
{
    for (size_t i = 0; i < t->nups; i++) {
        free(t->ups[i].name);
        free(t->ups[i].host);
    }
    free(t->ups);
    for (size_t i = 0; i < t->nroutes; i++) {
        free(t->routes[i].prefix);
        free(t->routes[i].role);
        free(t->routes[i].write);
    }
    free(t->routes);
    memset(t, 0, sizeof *t);
}
