/*
 * Reading an upstream's answer: the response head (parsed with libh2o's bundled
 * picohttpparser, phr_parse_response, which the shared library exports), the body's framing
 * (RFC 9112 section 6.3), and an incremental chunked-encoding decoder.
 */
#ifndef GATEWAY_RESPHEAD_H
#define GATEWAY_RESPHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "headers.h"

#define GW_MAX_RESP_HEADERS 100

typedef enum gw_framing {
    GW_BODY_NONE,   /* HEAD, 1xx, 204, 304 */
    GW_BODY_LENGTH, /* Content-Length */
    GW_BODY_CHUNKED,
    GW_BODY_CLOSE, /* until the upstream closes the connection */
} gw_framing;

typedef struct gw_resp_head {
    int status;
    int minor_version;
    const char *reason;
    size_t reason_len;
    gw_hdr headers[GW_MAX_RESP_HEADERS]; /* point into the parsed buffer */
    size_t nheaders;
    gw_framing framing;
    uint64_t content_length;
    bool keep_alive;        /* the connection may carry another request after this response */
    const char *connection; /* the Connection header's value (for hop-by-hop filtering) */
    size_t connection_len;
} gw_resp_head;

#define GW_HEAD_INCOMPLETE (-2)
#define GW_HEAD_MALFORMED  (-1)

/* Parses a response head from buf. Returns its length (the body starts there), or
 * GW_HEAD_INCOMPLETE, or GW_HEAD_MALFORMED (bad syntax, too many headers, a bad or repeated
 * Content-Length, Transfer-Encoding other than chunked last, a status outside 100-599).
 * head_request: the request was HEAD (no body whatever the headers say). */
int gw_resp_head_parse(const char *buf, size_t len, bool head_request, gw_resp_head *out);

typedef struct gw_chunked {
    int state;
    uint64_t left;  /* bytes left in the current chunk's data */
    unsigned hexes; /* digits of the size read so far */
} gw_chunked;

/* Decodes chunked data in place: on return buf[0 .. *len) holds the payload that was in the
 * input. 1 when the last chunk and the trailer are complete (*consumed: bytes of input used,
 * the rest belongs to the next response), 0 when more input is needed (*consumed = input
 * length), -1 on malformed framing. */
int gw_chunked_decode(gw_chunked *d, char *buf, size_t *len, size_t *consumed);

#endif
