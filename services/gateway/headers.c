/*
 * Hop-by-hop filtering and the upstream request head (see headers.h).
 */
#include "headers.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool headers_eq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Is name one of the comma-separated tokens of list? */
static bool headers_listed(const char *name, size_t len, const char *list, size_t list_len)
{
    const char *p = list, *end = list + list_len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == len && strncasecmp(s, name, len) == 0) return true;
    }
    return false;
}

bool gw_hop_by_hop(const char *name, size_t len, const char *connection_value,
                   size_t connection_len)
{
    static const char *const fixed[] = {
        "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", NULL};
    for (size_t i = 0; fixed[i]; i++)
        if (headers_eq(name, len, fixed[i])) return true;
    if (len >= 6 && strncasecmp(name, "proxy-", 6) == 0) return true;
    if (connection_value && headers_listed(name, len, connection_value, connection_len))
        return true;
    return false;
}

static bool headers_value_ok(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') return false;
    return true;
}

bool gw_header_ok(const char *name, size_t name_len, const char *value, size_t value_len)
{
    if (name_len == 0 || !name) return false;
    for (size_t i = 0; i < name_len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool tchar = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        if (!tchar) return false;
    }
    return headers_value_ok(value, value_len);
}

static int headers_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "." or "..", also written %2e: a segment an upstream that normalizes paths would resolve,
 * walking out of the prefix the gateway routed and authorized on. */
static bool headers_dot_segment(const char *s, size_t len)
{
    size_t dots = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == '.') {
            i++;
        } else if (i + 2 < len && s[i] == '%' && s[i + 1] == '2' &&
                   (s[i + 2] == 'e' || s[i + 2] == 'E')) {
            i += 3;
        } else {
            return false;
        }
        dots++;
    }
    return dots == 1 || dots == 2;
}

bool gw_path_ok(const char *path, size_t len)
{
    if (len == 0 || path[0] != '/') return false;
    size_t seg = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i == len || path[i] == '/') {
            if (headers_dot_segment(path + seg, i - seg)) return false;
            seg = i + 1;
        }
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c <= 0x20 || c == 0x7f || c == '#') return false;
        if (c == '%') {
            if (i + 2 >= len) return false;
            int hi = headers_hex(path[i + 1]), lo = headers_hex(path[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
            i += 2;
        }
    }
    return true;
}

static bool headers_traceparent_ok(const char *v, size_t len)
{
    char tp[128], trace[CORE_TRACE_ID_LEN + 1], span[CORE_SPAN_ID_LEN + 1];
    uint8_t flags;
    if (len >= sizeof tp) return false;
    memcpy(tp, v, len);
    tp[len] = '\0';
    return core_traceparent_parse(tp, trace, span, &flags);
}

void gw_request_head(core_buf *out, const gw_upstream_req *r)
{
    core_buf_append(out, r->method, r->method_len);
    core_buf_append(out, " ", 1);
    core_buf_append(out, r->path, r->path_len);
    core_buf_append(out, " HTTP/1.1\r\nHost: ", 17);
    if (r->host && r->host_len)
        core_buf_append(out, r->host, r->host_len);
    else
        core_buf_puts(out, r->fallback_host ? r->fallback_host : "localhost");
    core_buf_append(out, "\r\n", 2);

    const char *conn = NULL;
    size_t conn_len = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (headers_eq(r->headers[i].name, r->headers[i].name_len, "connection")) {
            conn = r->headers[i].value;
            conn_len = r->headers[i].value_len;
        }

    bool have_id = false, have_tp = false;
    for (size_t i = 0; i < r->nheaders; i++) {
        const gw_hdr *h = &r->headers[i];
        if (gw_hop_by_hop(h->name, h->name_len, conn, conn_len)) continue;
        /* Host goes first; the body is whole, so its length is ours and nothing waits for a
         * 100 Continue */
        if (headers_eq(h->name, h->name_len, "host") ||
            headers_eq(h->name, h->name_len, "content-length") ||
            headers_eq(h->name, h->name_len, "expect"))
            continue;
        /* The gateway is the edge: a client's X-Forwarded-For is its own claim and goes no
         * further. The one we send names the client as the gateway sees it (behind a load
         * balancer in GATEWAY_TRUSTED_PROXIES, the address that balancer forwarded). */
        if (headers_eq(h->name, h->name_len, "x-forwarded-for")) continue;
        if (!headers_value_ok(h->value, h->value_len)) continue;
        /* The ids the upstream sees are the ones our logs show: the client's X-Request-Id only
         * when libs/http adopted it (r->request_id is then the same), its traceparent only when
         * well formed; once each. */
        if (headers_eq(h->name, h->name_len, "x-request-id")) {
            if (have_id || !r->request_id || strlen(r->request_id) != h->value_len ||
                memcmp(r->request_id, h->value, h->value_len) != 0)
                continue;
            have_id = true;
        }
        if (headers_eq(h->name, h->name_len, "traceparent")) {
            if (have_tp || !headers_traceparent_ok(h->value, h->value_len)) continue;
            have_tp = true;
        }
        core_buf_append(out, h->name, h->name_len);
        core_buf_append(out, ": ", 2);
        core_buf_append(out, h->value, h->value_len);
        core_buf_append(out, "\r\n", 2);
    }
    if (!have_id && r->request_id) {
        core_buf_append(out, "X-Request-Id: ", 14);
        core_buf_puts(out, r->request_id);
        core_buf_append(out, "\r\n", 2);
    }
    if (!have_tp && r->traceparent) {
        core_buf_append(out, "traceparent: ", 13);
        core_buf_puts(out, r->traceparent);
        core_buf_append(out, "\r\n", 2);
    }
    const char *remote = r->remote_addr && *r->remote_addr ? r->remote_addr : NULL;
    if (remote) {
        core_buf_append(out, "X-Forwarded-For: ", 17);
        core_buf_puts(out, remote);
        core_buf_append(out, "\r\n", 2);
    }
    if (r->has_body) {
        char num[32];
        int n = snprintf(num, sizeof num, "Content-Length: %zu\r\n", r->body_len);
        core_buf_append(out, num, (size_t)n);
    }
    core_buf_append(out, "\r\n", 2);
}
