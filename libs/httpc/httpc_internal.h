/*
 * httpc internals: not part of the API (only httpc.h is). Exposed for the library's own unit
 * tests; every name here starts with httpc__.
 */
#ifndef HTTPC_INTERNAL_H
#define HTTPC_INTERNAL_H

#include "httpc.h"

/* ---------------------------------------------------------------- URL pieces */

/* Splits an http(s) URL: origin "scheme://host:port" (lower case, port always present), the
 * host label "host" or "host:port" when the port is not the scheme's default, and a log-safe
 * target "scheme://host[:port]/path" (no user info, no query, no fragment: query strings carry
 * API keys). Each out pointer may be NULL; the strings are malloc'd. False when the URL is not
 * a valid http or https URL. */
bool httpc__url_parts(const char *url, char **origin, char **host_label, char **log_target);

/* ---------------------------------------------------------------- header helpers */

/* Retry-After: delta-seconds or HTTP-date, as milliseconds from now_unix_ms (0 when the date is
 * past); -1 when the value is neither. */
int64_t httpc__parse_retry_after(const char *value, int64_t now_unix_ms);

/* One response's headers, as received. */
typedef struct httpc__headers {
    httpc_header *items; /* name and value are malloc'd */
    size_t n, cap;
} httpc__headers;

/* Feeds one line from CURLOPT_HEADERFUNCTION (with its CRLF): a status line starts a new
 * response (redirects, 1xx), a folded line continues the previous value, the blank line ends. */
void httpc__headers_line(httpc__headers *h, const char *line, size_t len);
const char *httpc__headers_get(const httpc_header *items, size_t n, const char *name);
void httpc__headers_clear(httpc__headers *h);

/* ---------------------------------------------------------------- circuit breakers */

typedef enum httpc__outcome {
    HTTPC__OUTCOME_SUCCESS, /* a response below 500 */
    HTTPC__OUTCOME_FAILURE, /* transport error or 5xx */
    HTTPC__OUTCOME_NEUTRAL, /* cancelled, too large, refused locally: says nothing of health */
} httpc__outcome;

typedef struct httpc__breaker httpc__breaker;

/* Called on every change between closed and open (half-open counts as open). */
typedef void (*httpc__breaker_change_cb)(const char *origin, const char *host_label, bool open,
                                         unsigned failures, void *data);

typedef struct httpc__breakers {
    httpc__breaker **buckets;
    size_t nbuckets, count;
    unsigned threshold;
    int64_t cooldown_ns;
    httpc__breaker_change_cb on_change;
    void *change_data;
} httpc__breakers;

void httpc__breakers_init(httpc__breakers *b, unsigned threshold, int64_t cooldown_ms,
                          httpc__breaker_change_cb on_change, void *change_data);
void httpc__breakers_free(httpc__breakers *b);
/* Would a new request be let through now? (No state change.) */
bool httpc__breaker_allows(httpc__breakers *b, const char *origin, int64_t now_ns);
/* An attempt is about to start: true lets it through; *probe says it is the half-open probe. */
bool httpc__breaker_admit(httpc__breakers *b, const char *origin, int64_t now_ns, bool *probe);
void httpc__breaker_record(httpc__breakers *b, const char *origin, const char *host_label,
                           bool probe, httpc__outcome outcome, int64_t now_ns);
httpc_circuit httpc__breaker_state(httpc__breakers *b, const char *origin, int64_t now_ns);
size_t httpc__breaker_count(const httpc__breakers *b); /* origins with any state kept */

#endif
