/*
 * httpc: an asynchronous HTTP client on the service's libuv loop (libcurl multi interface).
 *
 *   httpc_new / httpc_close      a client per loop: connection pool, limits, circuit breakers
 *   httpc_request / httpc_cancel one logical request: retries with backoff, Retry-After,
 *                                a per-origin circuit breaker, a queue when at the limit
 *   httpc_response_header        case-insensitive header lookup in the response
 *
 * Everything runs on the loop's thread and nothing blocks it (libcurl's threaded resolver does
 * DNS off the loop). Every callback is called from the loop, never from inside httpc_request.
 * Metrics go to core_metrics_default() (or cfg->metrics):
 *   httpc_requests_total{host,status}        status: "2xx".."5xx", "error" or "cancelled"
 *   httpc_request_duration_seconds{host}     whole logical request, retries and waits included
 *   httpc_retries_total{host}
 *   httpc_circuit_open{host}                 circuits open or half-open for that label
 */
#ifndef HTTPC_H
#define HTTPC_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core.h"

typedef struct httpc_client httpc_client;
typedef struct httpc_req httpc_req;

typedef enum httpc_error {
    HTTPC_OK = 0,        /* a response arrived (whatever its status) */
    HTTPC_ERR_CANCELLED, /* httpc_cancel, or httpc_close without draining */
    HTTPC_ERR_INVALID,   /* bad URL or method, unsupported scheme, curl hook refused */
    HTTPC_ERR_RESOLVE,   /* DNS */
    HTTPC_ERR_CONNECT,   /* refused, unreachable */
    HTTPC_ERR_TIMEOUT,   /* connect or total timeout, or the request's deadline */
    HTTPC_ERR_NETWORK,   /* reset, empty reply, broken transfer */
    HTTPC_ERR_TLS,
    HTTPC_ERR_TOO_LARGE,          /* body beyond max_response_bytes */
    HTTPC_ERR_TOO_MANY_REDIRECTS, /* more than max_redirects */
    HTTPC_ERR_CIRCUIT_OPEN,       /* failed fast: the origin's circuit is open */
    HTTPC_ERR_OTHER,              /* any other libcurl error (see curl_code) */
} httpc_error;

typedef enum httpc_circuit {
    HTTPC_CIRCUIT_CLOSED,
    HTTPC_CIRCUIT_OPEN,      /* failing fast until the cool-down ends */
    HTTPC_CIRCUIT_HALF_OPEN, /* cool-down over: the next request is the one probe */
} httpc_circuit;

typedef struct httpc_header {
    const char *name;
    const char *value; /* in a request, NULL removes a header curl would add itself */
} httpc_header;

/* Zero means "the default" for every field; cfg itself may be NULL. */
typedef struct httpc_config {
    const char *user_agent;      /* "content-engine-httpc/1" */
    int64_t connect_timeout_ms;  /* 10 000 */
    int64_t timeout_ms;          /* whole transfer, per attempt: 30 000 */
    unsigned max_concurrent;     /* transfers on the wire at once: 32; the rest wait in FIFO */
    size_t max_response_bytes;   /* decoded body: 16 MiB; beyond it HTTPC_ERR_TOO_LARGE */
    const char *accept_encoding; /* "gzip, deflate" (decoded by curl); "" = all curl knows */
    int max_redirects;           /* 0: redirects are returned, not followed; n: follow up to n */
    unsigned max_attempts;       /* default for requests: 1 (no retry) */
    int64_t backoff_base_ms;     /* full-jitter exponential backoff: 200 */
    int64_t backoff_max_ms;      /* 10 000 */
    int64_t max_retry_wait_ms;   /* cap on one wait; a longer Retry-After ends retrying: 60 000 */
    unsigned breaker_threshold;  /* consecutive failures (transport, 5xx) opening a circuit: 5 */
    int64_t breaker_cooldown_ms; /* open for this long, then one probe: 30 000 */
    bool breaker_disabled;
    bool drain_on_close;            /* httpc_close lets queued and in-flight requests finish ... */
    int64_t drain_timeout_ms;       /* ... for at most this long, then cancels them: 10 000 */
    const char *metrics_host_label; /* NULL: each request's host[:port]; else this value for
                                     * all (bounds label cardinality, e.g. for the scraper) */
    core_metrics *metrics;          /* core_metrics_default() */
} httpc_config;

/*
 * Escape hatch: called with each attempt's easy handle (attempt counts from 1) after httpc has
 * set its options and before the transfer starts: set CURLOPT_RESOLVE, OPENSOCKETFUNCTION,
 * proxies, client certificates... Return false to fail the request with HTTPC_ERR_INVALID.
 * Leave CURLOPT_PRIVATE, WRITE*, HEADER*, ERRORBUFFER and CLOSESOCKET* alone, and do not call
 * httpc functions from it.
 */
typedef bool (*httpc_curl_hook)(CURL *easy, unsigned attempt, void *data);

/* Zero means "the client's setting" for every numeric field. */
typedef struct httpc_request_opts {
    const char *method; /* "GET" */
    const char *url;    /* http:// or https:// only */
    const httpc_header *headers;
    size_t nheaders;
    const void *body; /* copied; set Content-Type yourself (curl's default is a form type) */
    size_t body_len;
    int64_t timeout_ms;         /* per attempt */
    int64_t connect_timeout_ms; /* per attempt */
    int64_t deadline_ms;        /* whole request, queueing, retries and waits included; 0: none */
    unsigned max_attempts;      /* 1: no retry */
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t max_retry_wait_ms;
    /* POST and PATCH are retried only on failures where nothing was sent (connect, DNS) unless
     * this is set; GET HEAD OPTIONS PUT DELETE TRACE are retried on every retryable failure. */
    bool retry_non_idempotent;
    int max_redirects;         /* -1: do not follow; n > 0: follow up to n */
    size_t max_response_bytes; /* decoded body */
    httpc_curl_hook curl_hook;
    void *curl_hook_data;
} httpc_request_opts;

/* What the callback receives. Everything in it is freed when the callback returns, except that
 * the callback may keep the body with core_buf_steal(&resp->body, &len). */
typedef struct httpc_response {
    long status;                 /* final HTTP status; 0 when error != HTTPC_OK */
    httpc_error error;           /* HTTPC_OK: a response arrived, look at status */
    int curl_code;               /* CURLcode of the last attempt (CURLE_OK when none failed) */
    const char *message;         /* human text: "timed out after 2000 ms", ...; "" when HTTPC_OK */
    const httpc_header *headers; /* of the final response, in the order received */
    size_t nheaders;
    core_buf body;             /* decoded body of the final response (len 0 when none) */
    const char *effective_url; /* after redirects; the request URL when nothing was fetched */
    unsigned attempts;         /* attempts that went to the network */
    int64_t elapsed_ms;        /* from httpc_request to this callback */
    int64_t retry_after_ms;    /* the last Retry-After seen, in ms; -1 when none */
} httpc_response;

typedef void (*httpc_done_cb)(httpc_response *resp, void *data);
typedef void (*httpc_close_cb)(void *data);

/* NULL when the config is invalid (negative values) or libcurl cannot start. */
httpc_client *httpc_new(uv_loop_t *loop, const httpc_config *cfg);

/*
 * Starts (or queues) a request. cb is called exactly once, always from the loop and never
 * before httpc_request returns. Returns NULL, and never calls cb, when client, opts, opts->url
 * or cb is NULL, or when httpc_close has been called. The handle is valid until cb returns.
 */
httpc_req *httpc_request(httpc_client *client, const httpc_request_opts *opts, httpc_done_cb cb,
                         void *data);

/* Stops the request and calls its cb with HTTPC_ERR_CANCELLED before returning; a no-op once
 * the cb has been called (or while it runs). */
void httpc_cancel(httpc_req *req);

/*
 * Cancels every request (or, with drain_on_close, lets them finish first), closes connections
 * and handles, frees the client, then calls done(data) from the loop. done may be NULL.
 * Safe to call from a request's callback; the client must not be used afterwards.
 */
void httpc_close(httpc_client *client, httpc_close_cb done, void *data);

/* First header of that name (case-insensitive), or NULL. */
const char *httpc_response_header(const httpc_response *resp, const char *name);

/* State of the circuit for an origin such as "http://127.0.0.1:8080" or "https://api.x.com"
 * (a full URL works too; only scheme, host and port count). */
httpc_circuit httpc_circuit_state(httpc_client *client, const char *origin);

size_t httpc_active(const httpc_client *client); /* transfers on the wire */
size_t httpc_queued(const httpc_client *client); /* waiting for a slot */

const char *httpc_error_name(httpc_error err);       /* "timeout", "circuit_open", ... */
const char *httpc_circuit_name(httpc_circuit state); /* "closed", "open", "half_open" */

#endif
