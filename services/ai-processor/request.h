/*
 * ai-processor requests and progress events: the bytes that cross Kafka.
 *
 *   ai_request_decode   a GenerationRequest payload -> a validated provider_request
 *   ai_progress_encode  a GenerationProgress payload
 *
 * Pure functions (no loop, no I/O), so the unit tests cover every rule.
 */
#ifndef AI_REQUEST_H
#define AI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "provider.h"

#define AI_ID_MAX 128 /* job_id and item_id: 1..128 visible ASCII characters */

typedef struct ai_request {
    char job_id[AI_ID_MAX + 1];
    char item_id[AI_ID_MAX + 1];
    const char *provider; /* as requested; "" when the request leaves it to the service */
    provider_request req; /* points into the decoded message below */
    void *msg;            /* the unpacked GenerationRequest (owned) */
    provider_source *sources;
} ai_request;

/* Decodes and validates a GenerationRequest. On false, err holds one line saying why (not a
 * GenerationRequest, missing or malformed job_id/item_id, unknown kind) and out holds nothing
 * to free. On true free out with ai_request_free. */
bool ai_request_decode(const void *data, size_t len, ai_request *out, char *err, size_t errlen);
void ai_request_free(ai_request *r);

/* True for 1..AI_ID_MAX visible ASCII characters (0x21..0x7e). */
bool ai_id_valid(const char *id, size_t len);

typedef struct ai_progress {
    const char *job_id;
    const char *item_id;
    const char *stage; /* queued | ranking | composing | done | failed */
    int percent;
    const char *body;  /* with done */
    const char *error; /* with failed */
    const char *provider;
} ai_progress;

/* A packed GenerationProgress (malloc'd; free it); aborts when memory runs out. */
uint8_t *ai_progress_encode(const ai_progress *p, size_t *len);

#endif
