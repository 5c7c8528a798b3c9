/*
 * Route patterns, matching and the small pure helpers around them (decoding, labels).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"

static bool router_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void http_internal_segs_free(http_internal_seg *segs, size_t nsegs)
{
    if (!segs) return;
    for (size_t i = 0; i < nsegs; i++)
        free(segs[i].text);
    free(segs);
}

int http_internal_pattern_parse(const char *pattern, http_internal_seg **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (!pattern || pattern[0] != '/') return -1;
    size_t plen = strlen(pattern);
    /* "/" has no segments; otherwise one more than the number of '/' after the first. */
    size_t n = 0;
    if (plen > 1) {
        n = 1;
        for (size_t i = 1; i < plen; i++)
            if (pattern[i] == '/') n++;
    }
    http_internal_seg *segs = n ? calloc(n, sizeof *segs) : NULL;
    if (n && !segs) abort();
    const char *p = pattern + 1, *end = pattern + plen;
    for (size_t i = 0; i < n; i++) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *se = slash ? slash : end;
        size_t len = (size_t)(se - p);
        if (len == 1 && p[0] == '*') {
            if (i != n - 1) goto bad;
            segs[i].kind = HTTP_INTERNAL_SEG_REST;
            segs[i].text = core_xstrndup("*", 1);
            segs[i].len = 1;
        } else if (len >= 3 && p[0] == '{' && p[len - 1] == '}') {
            for (size_t k = 1; k + 1 < len; k++)
                if (!router_name_char(p[k])) goto bad;
            segs[i].kind = HTTP_INTERNAL_SEG_PARAM;
            segs[i].text = core_xstrndup(p + 1, len - 2);
            segs[i].len = len - 2;
            for (size_t j = 0; j < i; j++)
                if (segs[j].kind == HTTP_INTERNAL_SEG_PARAM &&
                    strcmp(segs[j].text, segs[i].text) == 0)
                    goto bad;
        } else {
            for (size_t k = 0; k < len; k++)
                if (strchr("{}*?#%", p[k]) || (unsigned char)p[k] <= 0x20 ||
                    (unsigned char)p[k] >= 0x7f)
                    goto bad;
            segs[i].kind = HTTP_INTERNAL_SEG_LITERAL;
            segs[i].text = core_xstrndup(p, len);
            segs[i].len = len;
        }
        p = slash ? slash + 1 : end;
    }
    *out = segs;
    *nout = n;
    return 0;
bad:
    http_internal_segs_free(segs, n);
    return -1;
}

bool http_internal_pattern_match(const http_internal_seg *segs, size_t nsegs, const char *path,
                                 size_t path_len, http_internal_capture *caps, size_t *ncaps)
{
    *ncaps = 0;
    if (path_len == 0 || path[0] != '/') return false;
    const char *p = path + 1, *end = path + path_len;
    bool more = path_len > 1; /* path segments left to match */
    for (size_t i = 0; i < nsegs; i++) {
        const http_internal_seg *s = &segs[i];
        if (s->kind == HTTP_INTERNAL_SEG_REST) {
            caps[*ncaps] = (http_internal_capture){.name = "*",
                                                   .start = more ? p : end,
                                                   .len = more ? (size_t)(end - p) : 0,
                                                   .raw = true};
            (*ncaps)++;
            return true;
        }
        if (!more) return false;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *se = slash ? slash : end;
        size_t len = (size_t)(se - p);
        if (s->kind == HTTP_INTERNAL_SEG_LITERAL) {
            if (len != s->len || memcmp(p, s->text, len) != 0) return false;
        } else {
            if (len == 0) return false;
            caps[*ncaps] =
                (http_internal_capture){.name = s->text, .start = p, .len = len, .raw = false};
            (*ncaps)++;
        }
        if (slash) {
            p = slash + 1;
        } else {
            p = end;
            more = false;
        }
    }
    return !more;
}

int http_internal_specificity_cmp(const http_internal_seg *a, size_t na, const http_internal_seg *b,
                                  size_t nb)
{
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) {
        if (a[i].kind != b[i].kind) return (int)a[i].kind - (int)b[i].kind;
        if (a[i].kind == HTTP_INTERNAL_SEG_LITERAL) {
            /* different literals never match the same path; order them for determinism */
            if (a[i].len != b[i].len || memcmp(a[i].text, b[i].text, a[i].len) != 0) {
                int c = strcmp(a[i].text, b[i].text);
                return c ? c : 1;
            }
        }
    }
    if (na == nb) return 0;
    /* same prefix: the longer one ends in (or continues to) a catch-all; the shorter wins */
    return na < nb ? -1 : 1;
}

static int router_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *http_internal_pct_decode(const char *s, size_t len, bool plus_is_space, size_t *out_len)
{
    char *out = malloc(len + 1);
    if (!out) abort();
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len) {
                free(out);
                return NULL;
            }
            int hi = router_hex(s[i + 1]), lo = router_hex(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[o++] = ' ';
        } else if (c == '\0') {
            free(out);
            return NULL;
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    if (out_len) *out_len = o;
    return out;
}

const char *http_internal_method_label(const char *method)
{
    static const char *const known[] = {"GET",    "HEAD",  "POST",    "PUT",
                                        "DELETE", "PATCH", "OPTIONS", NULL};
    for (size_t i = 0; known[i]; i++)
        if (strcmp(method, known[i]) == 0) return known[i];
    return "OTHER";
}

const char *http_internal_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

bool http_internal_request_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > 128) return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
    return true;
}
