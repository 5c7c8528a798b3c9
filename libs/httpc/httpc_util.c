/* URL pieces, Retry-After and response header parsing: the pure parts of httpc. */
#include "httpc_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void httpc__lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

bool httpc__url_parts(const char *url, char **origin, char **host_label, char **log_target)
{
    if (origin) *origin = NULL;
    if (host_label) *host_label = NULL;
    if (log_target) *log_target = NULL;
    if (!url) return false;
    CURLU *u = curl_url();
    if (!u) return false;
    bool ok = false;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) goto out;
    httpc__lower(scheme);
    bool https = strcmp(scheme, "https") == 0;
    if (!https && strcmp(scheme, "http") != 0) goto out;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) goto out;
    httpc__lower(host);
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) goto out;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) path = NULL;
    bool default_port = strcmp(port, https ? "443" : "80") == 0;

    core_buf b = {0};
    if (origin) {
        core_buf_printf(&b, "%s://%s:%s", scheme, host, port);
        *origin = core_buf_steal(&b, NULL);
    }
    if (host_label) {
        if (default_port)
            core_buf_puts(&b, host);
        else
            core_buf_printf(&b, "%s:%s", host, port);
        *host_label = core_buf_steal(&b, NULL);
    }
    if (log_target) {
        core_buf_printf(&b, "%s://%s", scheme, host);
        if (!default_port) core_buf_printf(&b, ":%s", port);
        core_buf_puts(&b, path ? path : "/");
        *log_target = core_buf_steal(&b, NULL);
    }
    ok = true;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return ok;
}

int64_t httpc__parse_retry_after(const char *value, int64_t now_unix_ms)
{
    if (!value) return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len == 0) return -1;

    bool digits = true;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)value[i])) digits = false;
    if (digits) {
        int64_t s = 0;
        for (size_t i = 0; i < len && s < 1000000000; i++)
            s = s * 10 + (value[i] - '0');
        if (s > 1000000000) s = 1000000000; /* ~31 years: "never" for our purposes */
        return s * 1000;
    }

    char tmp[128];
    if (len >= sizeof tmp) return -1;
    memcpy(tmp, value, len);
    tmp[len] = '\0';
    time_t t = curl_getdate(tmp, NULL);
    if (t == (time_t)-1) return -1;
    int64_t ms = (int64_t)t * 1000 - now_unix_ms;
    return ms < 0 ? 0 : ms;
}

static bool httpc__is_ows(char c)
{
    return c == ' ' || c == '\t';
}

void httpc__headers_clear(httpc__headers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free((char *)h->items[i].name);
        free((char *)h->items[i].value);
    }
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
}

void httpc__headers_line(httpc__headers *h, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        httpc__headers_clear(h); /* a new response: a redirect hop or a 1xx before the real one */
        return;
    }
    if (len == 0) return;

    if (httpc__is_ows(line[0])) { /* obsolete line folding: continues the previous value */
        if (h->n == 0) return;
        while (len && httpc__is_ows(*line)) {
            line++;
            len--;
        }
        core_buf b = {0};
        core_buf_puts(&b, h->items[h->n - 1].value);
        core_buf_append(&b, " ", 1);
        core_buf_append(&b, line, len);
        free((char *)h->items[h->n - 1].value);
        h->items[h->n - 1].value = core_buf_steal(&b, NULL);
        return;
    }

    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line) return;
    size_t nlen = (size_t)(colon - line);
    while (nlen && httpc__is_ows(line[nlen - 1]))
        nlen--;
    const char *v = colon + 1;
    size_t vlen = len - (size_t)(v - line);
    while (vlen && httpc__is_ows(*v)) {
        v++;
        vlen--;
    }
    while (vlen && httpc__is_ows(v[vlen - 1]))
        vlen--;

    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        httpc_header *items = realloc(h->items, cap * sizeof *items);
        if (!items) abort();
        h->items = items;
        h->cap = cap;
    }
    h->items[h->n].name = core_xstrndup(line, nlen);
    h->items[h->n].value = core_xstrndup(v, vlen);
    h->n++;
}

const char *httpc__headers_get(const httpc_header *items, size_t n, const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(items[i].name, name) == 0) return items[i].value;
    return NULL;
}
