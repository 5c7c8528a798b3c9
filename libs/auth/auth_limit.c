/*
 * Per-key state for rate limiting: token buckets and failed-attempt throttles share one small
 * hash table (open hashing, bounded size, idle entries dropped first, then the least recently
 * used one).
 */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core.h"

typedef struct entry {
    struct entry *next;
    char *key;
    int64_t seen_ms;
    double tokens;      /* buckets */
    int64_t updated_ms; /* buckets: last refill; throttle: first failure of the window */
    int failures;       /* throttle */
    int64_t locked_until_ms;
} entry;

typedef bool (*idle_fn)(const void *owner, const entry *e, int64_t now_ms);

typedef struct table {
    entry **slots;
    size_t nslots;
    size_t count;
    size_t max;
    uint8_t seed[crypto_shorthash_KEYBYTES];
} table;

static void table_init(table *t, size_t max)
{
    t->max = max ? max : 10000;
    t->nslots = 64;
    while (t->nslots < t->max)
        t->nslots *= 2;
    t->slots = core_xcalloc(t->nslots, sizeof *t->slots);
    t->count = 0;
    if (sodium_init() < 0) abort();
    randombytes_buf(t->seed, sizeof t->seed);
}

static size_t slot_of(const table *t, const char *key)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const uint8_t *)key, strlen(key), t->seed);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)(v & (t->nslots - 1));
}

static void entry_free(entry *e)
{
    free(e->key);
    free(e);
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->nslots; i++)
        for (entry *e = t->slots[i], *n; e; e = n) {
            n = e->next;
            entry_free(e);
        }
    free(t->slots);
}

static void table_remove(table *t, const char *key)
{
    entry **pp = &t->slots[slot_of(t, key)];
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->key, key) == 0) {
            entry *e = *pp;
            *pp = e->next;
            entry_free(e);
            t->count--;
            return;
        }
}

/* Drops idle entries; if none was idle, the least recently seen one. */
static void table_make_room(table *t, const void *owner, idle_fn idle, int64_t now_ms)
{
    size_t before = t->count;
    entry *oldest = NULL;
    for (size_t i = 0; i < t->nslots; i++) {
        entry **pp = &t->slots[i];
        while (*pp) {
            entry *e = *pp;
            if (idle(owner, e, now_ms)) {
                *pp = e->next;
                entry_free(e);
                t->count--;
                continue;
            }
            if (!oldest || e->seen_ms < oldest->seen_ms) oldest = e;
            pp = &e->next;
        }
    }
    if (t->count == before && oldest) {
        char *k = core_xstrdup(oldest->key);
        table_remove(t, k);
        free(k);
    }
}

static entry *table_get(table *t, const char *key, bool create, const void *owner, idle_fn idle,
                        int64_t now_ms)
{
    size_t s = slot_of(t, key);
    for (entry *e = t->slots[s]; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    if (!create) return NULL;
    if (t->count >= t->max) table_make_room(t, owner, idle, now_ms);
    entry *e = core_xcalloc(1, sizeof *e);
    e->key = core_xstrdup(key);
    e->next = t->slots[s];
    t->slots[s] = e;
    t->count++;
    return e;
}

/* ---------------------------------------------------------------- token buckets */

struct auth_buckets {
    table t;
    double rate;
    double burst;
};

static void refill(const auth_buckets *b, entry *e, int64_t now_ms)
{
    if (now_ms > e->updated_ms) {
        e->tokens += (double)(now_ms - e->updated_ms) / 1000.0 * b->rate;
        if (e->tokens > b->burst) e->tokens = b->burst;
        e->updated_ms = now_ms;
    }
}

static bool bucket_idle(const void *owner, const entry *e, int64_t now_ms)
{
    const auth_buckets *b = owner;
    double tokens = e->tokens + (double)(now_ms - e->updated_ms) / 1000.0 * b->rate;
    return tokens >= b->burst;
}

auth_buckets *auth_buckets_new(double rate_per_s, double burst, size_t max_keys)
{
    if (!(rate_per_s > 0) || !(burst >= 1)) return NULL;
    auth_buckets *b = core_xcalloc(1, sizeof *b);
    table_init(&b->t, max_keys);
    b->rate = rate_per_s;
    b->burst = burst;
    return b;
}

void auth_buckets_free(auth_buckets *b)
{
    if (!b) return;
    table_free(&b->t);
    free(b);
}

bool auth_buckets_take(auth_buckets *b, const char *key, int64_t now_ms, int64_t *retry_after_ms)
{
    bool fresh = !table_get(&b->t, key, false, b, bucket_idle, now_ms);
    entry *e = table_get(&b->t, key, true, b, bucket_idle, now_ms);
    if (fresh) {
        e->tokens = b->burst;
        e->updated_ms = now_ms;
    }
    e->seen_ms = now_ms;
    refill(b, e, now_ms);
    if (e->tokens >= 1.0) {
        e->tokens -= 1.0;
        if (retry_after_ms) *retry_after_ms = 0;
        return true;
    }
    if (retry_after_ms)
        *retry_after_ms = (int64_t)ceil((1.0 - e->tokens) / b->rate * 1000.0 - 1e-6);
    return false;
}

size_t auth_buckets_size(const auth_buckets *b)
{
    return b->t.count;
}

/* ---------------------------------------------------------------- failure throttle */

struct auth_throttle {
    table t;
    int free_failures;
    int64_t base_ms, max_ms, window_ms;
};

static bool throttle_idle(const void *owner, const entry *e, int64_t now_ms)
{
    const auth_throttle *t = owner;
    return now_ms >= e->locked_until_ms && now_ms - e->seen_ms >= t->window_ms;
}

auth_throttle *auth_throttle_new(int free_failures, int64_t base_ms, int64_t max_ms,
                                 int64_t window_ms, size_t max_keys)
{
    if (free_failures < 0 || base_ms <= 0 || max_ms < base_ms || window_ms <= 0) return NULL;
    auth_throttle *t = core_xcalloc(1, sizeof *t);
    table_init(&t->t, max_keys);
    t->free_failures = free_failures;
    t->base_ms = base_ms;
    t->max_ms = max_ms;
    t->window_ms = window_ms;
    return t;
}

void auth_throttle_free(auth_throttle *t)
{
    if (!t) return;
    table_free(&t->t);
    free(t);
}

/* The entry, forgotten first when its window passed without a lock. */
static entry *throttle_entry(auth_throttle *t, const char *key, int64_t now_ms, bool create)
{
    entry *e = table_get(&t->t, key, false, t, throttle_idle, now_ms);
    if (e && throttle_idle(t, e, now_ms)) {
        table_remove(&t->t, key);
        e = NULL;
    }
    if (!e && create) e = table_get(&t->t, key, true, t, throttle_idle, now_ms);
    return e;
}

int64_t auth_throttle_wait_ms(auth_throttle *t, const char *key, int64_t now_ms)
{
    entry *e = throttle_entry(t, key, now_ms, false);
    if (!e || now_ms >= e->locked_until_ms) return 0;
    return e->locked_until_ms - now_ms;
}

void auth_throttle_failure(auth_throttle *t, const char *key, int64_t now_ms)
{
    entry *e = throttle_entry(t, key, now_ms, true);
    e->seen_ms = now_ms;
    e->failures++;
    int over = e->failures - t->free_failures;
    if (over <= 0) return;
    int64_t delay = t->base_ms;
    for (int i = 1; i < over && delay < t->max_ms; i++)
        delay *= 2;
    if (delay > t->max_ms) delay = t->max_ms;
    e->locked_until_ms = now_ms + delay;
}

void auth_throttle_success(auth_throttle *t, const char *key)
{
    table_remove(&t->t, key);
}

int auth_throttle_failures(auth_throttle *t, const char *key, int64_t now_ms)
{
    entry *e = throttle_entry(t, key, now_ms, false);
    return e ? e->failures : 0;
}
