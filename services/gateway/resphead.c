/*
 * Response heads, framing and the chunked decoder (see resphead.h).
 */
#include "resphead.h"

#include <string.h>
#include <strings.h>

/* libh2o exports picohttpparser but installs no header for it: these are its declarations. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status,
                       const char **msg, size_t *msg_len, struct phr_header *headers,
                       size_t *num_headers, size_t last_len);

static bool resp_is(const gw_hdr *h, const char *lname)
{
    size_t l = strlen(lname);
    return h->name_len == l && strncasecmp(h->name, lname, l) == 0;
}

static bool resp_has_token(const char *v, size_t len, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = v, *end = v + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, tok, tl) == 0) return true;
    }
    return false;
}

/* The last coding of Transfer-Encoding must be chunked for a framed body. */
static bool resp_last_is_chunked(const char *v, size_t len)
{
    const char *e = v + len;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    const char *s = e;
    while (s > v && s[-1] != ',')
        s--;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    return (size_t)(e - s) == 7 && strncasecmp(s, "chunked", 7) == 0;
}

static int resp_parse_length(const char *v, size_t len, uint64_t *out)
{
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 19) return -1;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return 0;
}

int gw_resp_head_parse(const char *buf, size_t len, bool head_request, gw_resp_head *out)
{
    struct phr_header ph[GW_MAX_RESP_HEADERS];
    size_t nh = GW_MAX_RESP_HEADERS;
    int minor = 0, status = 0;
    const char *msg = NULL;
    size_t msg_len = 0;
    int n = phr_parse_response(buf, len, &minor, &status, &msg, &msg_len, ph, &nh, 0);
    if (n == -2) return GW_HEAD_INCOMPLETE;
    if (n < 0) return GW_HEAD_MALFORMED;
    if (status < 100 || status > 599) return GW_HEAD_MALFORMED;

    out->status = status;
    out->minor_version = minor;
    out->reason = msg;
    out->reason_len = msg_len;
    out->nheaders = 0;
    out->connection = NULL;
    out->connection_len = 0;
    out->content_length = 0;
    bool have_cl = false, have_te = false, te_chunked = false, close = false, keep_alive_10 = false;
    for (size_t i = 0; i < nh; i++) {
        if (!ph[i].name) return GW_HEAD_MALFORMED; /* obsolete line folding */
        gw_hdr *h = &out->headers[out->nheaders++];
        *h = (gw_hdr){ph[i].name, ph[i].name_len, ph[i].value, ph[i].value_len};
        if (resp_is(h, "content-length")) {
            uint64_t v;
            if (resp_parse_length(h->value, h->value_len, &v) != 0) return GW_HEAD_MALFORMED;
            if (have_cl && v != out->content_length) return GW_HEAD_MALFORMED;
            have_cl = true;
            out->content_length = v;
        } else if (resp_is(h, "transfer-encoding")) {
            if (have_te) return GW_HEAD_MALFORMED;
            have_te = true;
            te_chunked = resp_last_is_chunked(h->value, h->value_len);
        } else if (resp_is(h, "connection")) {
            out->connection = h->value;
            out->connection_len = h->value_len;
            if (resp_has_token(h->value, h->value_len, "close")) close = true;
            if (resp_has_token(h->value, h->value_len, "keep-alive")) keep_alive_10 = true;
        }
    }
    out->keep_alive = minor >= 1 ? !close : keep_alive_10 && !close;

    if (head_request || (status >= 100 && status < 200) || status == 204 || status == 304) {
        out->framing = GW_BODY_NONE;
        out->content_length = 0;
    } else if (have_te) {
        if (have_cl) return GW_HEAD_MALFORMED; /* request smuggling territory: refuse */
        if (te_chunked) {
            out->framing = GW_BODY_CHUNKED;
        } else {
            out->framing = GW_BODY_CLOSE;
            out->keep_alive = false;
        }
    } else if (have_cl) {
        out->framing = GW_BODY_LENGTH;
    } else {
        out->framing = GW_BODY_CLOSE;
        out->keep_alive = false;
    }
    return n;
}

enum {
    CH_SIZE,         /* reading hex digits */
    CH_EXT,          /* chunk extension, up to CR LF */
    CH_SIZE_LF,      /* after CR of the size line */
    CH_DATA,         /* payload */
    CH_DATA_CR,      /* CR after the payload */
    CH_DATA_LF,      /* LF after the payload */
    CH_TRAILER,      /* at the start of a trailer line (or the final empty line) */
    CH_TRAILER_LINE, /* inside a trailer field */
    CH_TRAILER_LF,   /* after CR of a trailer line */
    CH_END_LF,       /* after CR of the final empty line */
    CH_DONE,
};

static int ch_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int gw_chunked_decode(gw_chunked *d, char *buf, size_t *len, size_t *consumed)
{
    size_t in = 0, out = 0, n = *len;
    while (in < n) {
        char c = buf[in];
        switch (d->state) {
        case CH_SIZE: {
            int h = ch_hex(c);
            if (h >= 0) {
                if (d->hexes >= 15) return -1; /* beyond 2^60 */
                d->left = d->left * 16 + (uint64_t)h;
                d->hexes++;
                in++;
                break;
            }
            if (d->hexes == 0) return -1;
            if (c == '\r') {
                d->state = CH_SIZE_LF;
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = CH_EXT;
            } else {
                return -1;
            }
            in++;
            break;
        }
        case CH_EXT:
            if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (c == '\n')
                return -1;
            in++;
            break;
        case CH_SIZE_LF:
            if (c != '\n') return -1;
            in++;
            d->hexes = 0;
            d->state = d->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t take = n - in;
            if ((uint64_t)take > d->left) take = (size_t)d->left;
            memmove(buf + out, buf + in, take);
            out += take;
            in += take;
            d->left -= take;
            if (d->left == 0) d->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c != '\r') return -1;
            d->state = CH_DATA_LF;
            in++;
            break;
        case CH_DATA_LF:
            if (c != '\n') return -1;
            d->state = CH_SIZE;
            in++;
            break;
        case CH_TRAILER:
            if (c == '\r')
                d->state = CH_END_LF;
            else if (c == '\n')
                return -1;
            else
                d->state = CH_TRAILER_LINE;
            in++;
            break;
        case CH_TRAILER_LINE:
            if (c == '\r')
                d->state = CH_TRAILER_LF;
            else if (c == '\n')
                return -1;
            in++;
            break;
        case CH_TRAILER_LF:
            if (c != '\n') return -1;
            d->state = CH_TRAILER;
            in++;
            break;
        case CH_END_LF:
            if (c != '\n') return -1;
            in++;
            d->state = CH_DONE;
            *len = out;
            *consumed = in;
            return 1;
        default:
            return -1;
        }
    }
    *len = out;
    *consumed = in;
    return 0;
}
