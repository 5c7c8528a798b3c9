/*
 * Circuit breakers, one per origin (scheme, host, port), in a small chained hash table.
 *
 * closed --(threshold consecutive failures)--> open --(cool-down over)--> half-open
 * half-open: one probe goes through; its success closes the circuit, its failure re-opens it.
 *
 * Only origins with something to remember are kept: a success in the closed state removes the
 * entry, so a scraper visiting a million healthy hosts does not grow the table.
 */
#include "httpc_internal.h"

#include <stdlib.h>
#include <string.h>

struct httpc__breaker {
    char *origin;
    char *host_label;
    httpc_circuit state; /* as stored; OPEN past its cool-down is reported as HALF_OPEN */
    unsigned failures;   /* consecutive, while closed */
    int64_t open_until_ns;
    bool probe_in_flight;
    httpc__breaker *next;
};

static uint64_t httpc__hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

void httpc__breakers_init(httpc__breakers *b, unsigned threshold, int64_t cooldown_ms,
                          httpc__breaker_change_cb on_change, void *change_data)
{
    memset(b, 0, sizeof *b);
    b->threshold = threshold ? threshold : 1;
    b->cooldown_ns = cooldown_ms * 1000000;
    b->on_change = on_change;
    b->change_data = change_data;
}

static void httpc__breaker_free_one(httpc__breaker *e)
{
    free(e->origin);
    free(e->host_label);
    free(e);
}

void httpc__breakers_free(httpc__breakers *b)
{
    for (size_t i = 0; i < b->nbuckets; i++) {
        httpc__breaker *e = b->buckets[i];
        while (e) {
            httpc__breaker *next = e->next;
            httpc__breaker_free_one(e);
            e = next;
        }
    }
    free(b->buckets);
    b->buckets = NULL;
    b->nbuckets = b->count = 0;
}

static httpc__breaker *httpc__breaker_find(httpc__breakers *b, const char *origin)
{
    if (!b->nbuckets || !origin) return NULL;
    httpc__breaker *e = b->buckets[httpc__hash(origin) % b->nbuckets];
    for (; e; e = e->next)
        if (strcmp(e->origin, origin) == 0) return e;
    return NULL;
}

static void httpc__breakers_grow(httpc__breakers *b)
{
    size_t n = b->nbuckets ? b->nbuckets * 2 : 64;
    httpc__breaker **buckets = calloc(n, sizeof *buckets);
    if (!buckets) abort();
    for (size_t i = 0; i < b->nbuckets; i++) {
        httpc__breaker *e = b->buckets[i];
        while (e) {
            httpc__breaker *next = e->next;
            size_t k = httpc__hash(e->origin) % n;
            e->next = buckets[k];
            buckets[k] = e;
            e = next;
        }
    }
    free(b->buckets);
    b->buckets = buckets;
    b->nbuckets = n;
}

static httpc__breaker *httpc__breaker_get(httpc__breakers *b, const char *origin,
                                          const char *host_label)
{
    httpc__breaker *e = httpc__breaker_find(b, origin);
    if (e) return e;
    if (b->count + 1 > b->nbuckets * 2) httpc__breakers_grow(b);
    e = calloc(1, sizeof *e);
    if (!e) abort();
    e->origin = strdup(origin);
    e->host_label = strdup(host_label ? host_label : origin);
    if (!e->origin || !e->host_label) abort();
    e->state = HTTPC_CIRCUIT_CLOSED;
    size_t k = httpc__hash(origin) % b->nbuckets;
    e->next = b->buckets[k];
    b->buckets[k] = e;
    b->count++;
    return e;
}

static void httpc__breaker_remove(httpc__breakers *b, httpc__breaker *e)
{
    httpc__breaker **pp = &b->buckets[httpc__hash(e->origin) % b->nbuckets];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    b->count--;
    httpc__breaker_free_one(e);
}

static void httpc__breaker_open(httpc__breakers *b, httpc__breaker *e, int64_t now_ns)
{
    bool was_open = e->state != HTTPC_CIRCUIT_CLOSED;
    e->state = HTTPC_CIRCUIT_OPEN;
    e->open_until_ns = now_ns + b->cooldown_ns;
    e->probe_in_flight = false;
    if (!was_open && b->on_change)
        b->on_change(e->origin, e->host_label, true, e->failures, b->change_data);
}

bool httpc__breaker_allows(httpc__breakers *b, const char *origin, int64_t now_ns)
{
    httpc__breaker *e = httpc__breaker_find(b, origin);
    if (!e) return true;
    switch (e->state) {
    case HTTPC_CIRCUIT_CLOSED:
        return true;
    case HTTPC_CIRCUIT_OPEN:
        return now_ns >= e->open_until_ns;
    case HTTPC_CIRCUIT_HALF_OPEN:
        return !e->probe_in_flight;
    }
    return true;
}

bool httpc__breaker_admit(httpc__breakers *b, const char *origin, int64_t now_ns, bool *probe)
{
    *probe = false;
    httpc__breaker *e = httpc__breaker_find(b, origin);
    if (!e || e->state == HTTPC_CIRCUIT_CLOSED) return true;
    if (e->state == HTTPC_CIRCUIT_OPEN) {
        if (now_ns < e->open_until_ns) return false;
        e->state = HTTPC_CIRCUIT_HALF_OPEN;
        e->probe_in_flight = false;
    }
    if (e->probe_in_flight) return false;
    e->probe_in_flight = true;
    *probe = true;
    return true;
}

void httpc__breaker_record(httpc__breakers *b, const char *origin, const char *host_label,
                           bool probe, httpc__outcome outcome, int64_t now_ns)
{
    httpc__breaker *e = httpc__breaker_find(b, origin);
    switch (outcome) {
    case HTTPC__OUTCOME_SUCCESS:
        if (!e) return;
        if (e->state != HTTPC_CIRCUIT_CLOSED && b->on_change)
            b->on_change(e->origin, e->host_label, false, 0, b->change_data);
        httpc__breaker_remove(b, e);
        return;
    case HTTPC__OUTCOME_FAILURE:
        if (!e) e = httpc__breaker_get(b, origin, host_label);
        if (e->state == HTTPC_CIRCUIT_CLOSED) {
            e->failures++;
            if (e->failures >= b->threshold) httpc__breaker_open(b, e, now_ns);
        } else if (e->state == HTTPC_CIRCUIT_HALF_OPEN && (probe || !e->probe_in_flight)) {
            e->failures++;
            httpc__breaker_open(b, e, now_ns); /* the probe failed: another cool-down */
        }
        /* OPEN: a request admitted before the circuit opened failed late; nothing new. */
        return;
    case HTTPC__OUTCOME_NEUTRAL:
        if (e && probe && e->state == HTTPC_CIRCUIT_HALF_OPEN) e->probe_in_flight = false;
        return;
    }
}

httpc_circuit httpc__breaker_state(httpc__breakers *b, const char *origin, int64_t now_ns)
{
    httpc__breaker *e = httpc__breaker_find(b, origin);
    if (!e) return HTTPC_CIRCUIT_CLOSED;
    if (e->state == HTTPC_CIRCUIT_OPEN && now_ns >= e->open_until_ns)
        return HTTPC_CIRCUIT_HALF_OPEN;
    return e->state;
}

size_t httpc__breaker_count(const httpc__breakers *b)
{
    return b->count;
}
