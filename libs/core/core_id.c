#include "core.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static void id_getrandom(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            abort(); /* no entropy means no safe ids: refuse to go on */
        }
        p += n;
        len -= (size_t)n;
    }
}

/*
 * Ids are made per record and per request, keys and nonces per sealed value: one getrandom(2)
 * each was a system call per id. Each thread keeps a block of random bytes and hands it out
 * once (none is used twice, and handed-out bytes are wiped). A block is 32 bytes of getrandom
 * output expanded with ChaCha20 (libsodium's randombytes_buf_deterministic), as user-space
 * CSPRNGs do: the kernel generated it with its portable ChaCha at a few hundred MB/s, a sixth of
 * subscriber-manager's crypto time in a million-row import (150 random bytes per row). A forked
 * child must not repeat its parent's block: fork() bumps a generation (pthread_atfork), and a
 * block from an older generation is thrown away.
 */
#define ID_RAND_BLOCK 4096

static atomic_uint id_fork_gen = 1;
static pthread_once_t id_atfork_once = PTHREAD_ONCE_INIT;
static _Thread_local struct {
    uint8_t buf[ID_RAND_BLOCK];
    size_t pos; /* bytes of buf already handed out */
    unsigned gen;
} id_rand;

static void id_after_fork_child(void)
{
    atomic_fetch_add(&id_fork_gen, 1);
}

static void id_atfork_register(void)
{
    if (pthread_atfork(NULL, NULL, id_after_fork_child) != 0) abort();
}

void core_random_bytes(void *buf, size_t len)
{
    if (len >= ID_RAND_BLOCK / 4) {
        id_getrandom(buf, len);
        return;
    }
    unsigned gen = atomic_load_explicit(&id_fork_gen, memory_order_relaxed);
    if (id_rand.gen != gen) {
        pthread_once(&id_atfork_once, id_atfork_register);
        gen = atomic_load(&id_fork_gen);
        memset(id_rand.buf, 0, sizeof id_rand.buf);
        id_rand.pos = sizeof id_rand.buf; /* empty: refill below */
        id_rand.gen = gen;
    }
    if (len > sizeof id_rand.buf - id_rand.pos) {
        uint8_t seed[randombytes_SEEDBYTES];
        id_getrandom(seed, sizeof seed);
        randombytes_buf_deterministic(id_rand.buf, sizeof id_rand.buf, seed);
        sodium_memzero(seed, sizeof seed);
        id_rand.pos = 0;
    }
    memcpy(buf, id_rand.buf + id_rand.pos, len);
    memset(id_rand.buf + id_rand.pos, 0, len);
    id_rand.pos += len;
}

static const char id_hex[] = "0123456789abcdef";

static void id_hex_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = id_hex[in[i] >> 4];
        out[2 * i + 1] = id_hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int id_hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

core_uuid core_uuid_v7(void)
{
    /* RFC 9562 6.2 method 1: a 12-bit counter in rand_a, seeded randomly each millisecond (top
     * bit clear to leave room), keeps ids from one process strictly increasing. */
    static int64_t last_ms = -1;
    static uint16_t counter;
    int64_t ms = core_now_unix_ms();
    if (ms < last_ms) ms = last_ms; /* the wall clock stepped back: stay monotonic */
    if (ms == last_ms) {
        if (++counter > 0x0fff) { /* counter exhausted: borrow the next millisecond */
            ms = ++last_ms;
            uint16_t seed;
            core_random_bytes(&seed, sizeof seed);
            counter = seed & 0x07ff;
        }
    } else {
        uint16_t seed;
        core_random_bytes(&seed, sizeof seed);
        counter = seed & 0x07ff;
        last_ms = ms;
    }
    core_uuid u;
    core_random_bytes(u.b, sizeof u.b);
    for (int i = 0; i < 6; i++)
        u.b[i] = (uint8_t)((uint64_t)ms >> (40 - 8 * i));
    u.b[6] = (uint8_t)(0x70 | ((counter >> 8) & 0x0f));
    u.b[7] = (uint8_t)(counter & 0xff);
    u.b[8] = (uint8_t)(0x80 | (u.b[8] & 0x3f));
    return u;
}

void core_uuid_format(const core_uuid *u, char out[CORE_UUID_STRLEN + 1])
{
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = id_hex[u->b[i] >> 4];
        out[o++] = id_hex[u->b[i] & 15];
    }
    out[o] = '\0';
}

bool core_uuid_parse(const char *s, core_uuid *out)
{
    if (!s || strlen(s) != CORE_UUID_STRLEN) return false;
    size_t bi = 0;
    for (size_t i = 0; i < CORE_UUID_STRLEN;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return false;
            i++;
            continue;
        }
        int hi = id_hex_value(s[i]), lo = id_hex_value(s[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out->b[bi++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return true;
}

void core_uuid_v7_string(char out[CORE_UUID_STRLEN + 1])
{
    core_uuid u = core_uuid_v7();
    core_uuid_format(&u, out);
}

int64_t core_uuid_v7_unix_ms(const core_uuid *u)
{
    int64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = (ms << 8) | u->b[i];
    return ms;
}

static void id_random_hex_nonzero(char *out, size_t nbytes)
{
    uint8_t buf[16];
    do {
        core_random_bytes(buf, nbytes);
        bool zero = true;
        for (size_t i = 0; i < nbytes; i++)
            zero = zero && buf[i] == 0;
        if (!zero) break; /* W3C: an all-zero id is invalid */
    } while (1);
    id_hex_encode(buf, nbytes, out);
}

void core_trace_id_new(char out[CORE_TRACE_ID_LEN + 1])
{
    id_random_hex_nonzero(out, CORE_TRACE_ID_LEN / 2);
}

void core_span_id_new(char out[CORE_SPAN_ID_LEN + 1])
{
    id_random_hex_nonzero(out, CORE_SPAN_ID_LEN / 2);
}

static bool id_lower_hex_nonzero(const char *s, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
        if (s[i] != '0') nonzero = true;
    }
    return nonzero;
}

bool core_traceparent_parse(const char *s, char trace_id[CORE_TRACE_ID_LEN + 1],
                            char span_id[CORE_SPAN_ID_LEN + 1], uint8_t *flags)
{
    /* version "00" is exactly 55 chars; later versions may append "-..." fields. */
    if (!s || strlen(s) < CORE_TRACEPARENT_LEN) return false;
    int v1 = id_hex_value(s[0]), v2 = id_hex_value(s[1]);
    if (v1 < 0 || v2 < 0 || (v1 == 15 && v2 == 15)) return false;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return false;
    if (!id_lower_hex_nonzero(s + 3, 32) || !id_lower_hex_nonzero(s + 36, 16)) return false;
    int f1 = id_hex_value(s[53]), f2 = id_hex_value(s[54]);
    if (f1 < 0 || f2 < 0) return false;
    if (v1 == 0 && v2 == 0 && s[55] != '\0') return false;
    if (s[55] != '\0' && s[55] != '-') return false;
    memcpy(trace_id, s + 3, 32);
    trace_id[32] = '\0';
    memcpy(span_id, s + 36, 16);
    span_id[16] = '\0';
    if (flags) *flags = (uint8_t)(f1 << 4 | f2);
    return true;
}

void core_traceparent_format(char out[CORE_TRACEPARENT_LEN + 1], const char *trace_id,
                             const char *span_id, uint8_t flags)
{
    /* by hand: it is formatted for every request (snprintf's %.32s stops at a NUL too) */
    static const char hex[] = "0123456789abcdef";
    size_t tl = strnlen(trace_id, CORE_TRACE_ID_LEN), sl = strnlen(span_id, CORE_SPAN_ID_LEN);
    char *p = out;
    memcpy(p, "00-", 3);
    p += 3;
    memcpy(p, trace_id, tl);
    p += tl;
    *p++ = '-';
    memcpy(p, span_id, sl);
    p += sl;
    *p++ = '-';
    *p++ = hex[flags >> 4];
    *p++ = hex[flags & 15];
    *p = '\0';
}
