/*
 * Header rules of the proxy: which headers are hop-by-hop (never forwarded, in either
 * direction), and the serialization of the upstream request into one buffer.
 */
#ifndef GATEWAY_HEADERS_H
#define GATEWAY_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "core.h"

typedef struct gw_hdr {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} gw_hdr;

/* Connection, Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-* (case-insensitive),
 * and any header the message's Connection header lists (connection_value may be NULL). */
bool gw_hop_by_hop(const char *name, size_t len, const char *connection_value,
                   size_t connection_len);

/* A request target's path (without the query) we pass on: '/' first, percent escapes well
 * formed and not %00, no control characters, spaces or '#', no "." or ".." segment (nor %2e
 * spellings of them). */
bool gw_path_ok(const char *path, size_t len);

/* A header we pass on: the name an RFC 9110 token, the value without CR, LF or NUL. (libh2o
 * keeps an obsolete folded continuation line as a header without a name.) */
bool gw_header_ok(const char *name, size_t name_len, const char *value, size_t value_len);

/* What goes upstream, besides the client's end-to-end headers. */
typedef struct gw_upstream_req {
    const char *method;
    size_t method_len;
    const char *path; /* with the query string, as received */
    size_t path_len;
    const char *host; /* the client's Host (authority); NULL: the upstream's host:port */
    size_t host_len;
    const gw_hdr *headers; /* the client's headers, Host and Content-Length not among them */
    size_t nheaders;
    const char *request_id;  /* http_request_id: replaces any other X-Request-Id */
    const char *traceparent; /* set unless the client sent a well-formed one */
    const char *remote_addr; /* the client: the X-Forwarded-For we send (the client's is dropped) */
    const char *fallback_host;
    size_t body_len;
    bool has_body; /* Content-Length is sent (also 0 for POST/PUT/PATCH without a body) */
} gw_upstream_req;

/* Appends the request line and headers (through the empty line) to out. Header names keep the
 * client's case; values with CR, LF or NUL are dropped (h2o rejects them already). */
void gw_request_head(core_buf *out, const gw_upstream_req *r);

#endif
