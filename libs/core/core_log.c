#include "core.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
    char service[64];
    core_log_level min;
    int fd;
    char trace[CORE_TRACE_ID_LEN + 1];
} log_state = {.service = "unknown", .min = CORE_LOG_INFO, .fd = 1};

/* Batching (core_log_batch): lines of the owning thread wait in batch_buf for core_log_flush. */
#define LOG_BATCH_MAX   65536
#define LOG_PIPE_ATOMIC 4096 /* PIPE_BUF: writes up to this size never interleave on a pipe */
static struct {
    bool on;
    pthread_t owner;
    core_buf buf;
    size_t chunk; /* largest write: PIPE_BUF for pipes and sockets, else the whole batch; 0 until
                     known */
} log_batch;

static const char *const log_level_names[] = {"debug", "info", "warn", "error", "fatal"};

bool core_log_parse_level(const char *name, core_log_level *out)
{
    for (size_t i = 0; i < sizeof log_level_names / sizeof *log_level_names; i++) {
        if (strcasecmp(name, log_level_names[i]) == 0) {
            *out = (core_log_level)i;
            return true;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = CORE_LOG_WARN;
        return true;
    }
    return false;
}

void core_log_init(const char *service, core_log_level min_level)
{
    snprintf(log_state.service, sizeof log_state.service, "%s", service ? service : "unknown");
    log_state.min = min_level;
}

void core_log_set_fd(int fd)
{
    log_state.fd = fd;
    log_batch.chunk = 0;
}

core_log_level core_log_min_level(void)
{
    return log_state.min;
}

void core_log_set_trace(const char *trace_id)
{
    /* Runs twice per consumed message: a bounded copy, not snprintf (same truncation). */
    size_t n = trace_id ? strnlen(trace_id, sizeof log_state.trace - 1) : 0;
    if (n) memcpy(log_state.trace, trace_id, n);
    log_state.trace[n] = '\0';
}

const char *core_log_trace(void)
{
    return log_state.trace;
}

/* Keys whose values must never reach a log line, whatever the caller passed. */
static bool log_key_is_secret_uncached(const char *key)
{
    static const char *const secret_words[] = {"password", "passwd",        "secret",
                                               "token",    "authorization", "api_key",
                                               "apikey",   "cookie",        "private_key"};
    for (size_t i = 0; i < sizeof secret_words / sizeof *secret_words; i++)
        if (strcasestr(key, secret_words[i])) return true;
    return false;
}

/* The same few keys come by on every line: remember the verdict per key text (per thread, as
 * librdkafka's threads log too). */
#define LOG_KEY_CACHE 64
static _Thread_local struct {
    char key[32];
    bool secret;
} log_key_cache[LOG_KEY_CACHE];

static bool log_key_is_secret(const char *key)
{
    size_t len = strnlen(key, 32);
    if (len >= 32) return log_key_is_secret_uncached(key);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)key[i]) * 16777619u;
    size_t slot = h % LOG_KEY_CACHE;
    if (log_key_cache[slot].key[0] && memcmp(log_key_cache[slot].key, key, len + 1) == 0)
        return log_key_cache[slot].secret;
    bool secret = log_key_is_secret_uncached(key);
    memcpy(log_key_cache[slot].key, key, len + 1);
    log_key_cache[slot].secret = secret;
    return secret;
}

static void log_put_int(core_buf *b, long long v)
{
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[sizeof tmp - 1 - n++] = '-';
    core_buf_append(b, tmp + sizeof tmp - n, n);
}

/* The timestamp changes once a millisecond; lines come faster than that under load. */
static void log_timestamp(char out[CORE_RFC3339_LEN + 1])
{
    static _Thread_local int64_t last_ms = -1;
    static _Thread_local char last[CORE_RFC3339_LEN + 1];
    int64_t now = core_now_unix_ms();
    if (now != last_ms) {
        core_format_rfc3339(now, last);
        last_ms = now;
    }
    memcpy(out, last, sizeof last);
}

static void log_write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(log_state.fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* nowhere left to report a logging failure */
        }
        p += n;
        len -= (size_t)n;
    }
}

void core_log_emit(core_log_level level, const char *msg, ...)
{
    if (level < log_state.min) return;
    char ts[CORE_RFC3339_LEN + 1];
    log_timestamp(ts);

    /* A batched line is formatted right into the batch; any other into one allocation. */
    bool batched =
        log_batch.on && level < CORE_LOG_WARN && pthread_equal(log_batch.owner, pthread_self());
    if (batched && log_batch.buf.len > LOG_BATCH_MAX - 4096) core_log_flush();
    core_buf own = {0};
    if (!batched) own = (core_buf){.data = core_xrealloc(NULL, 512), .len = 0, .cap = 512};
    core_buf *b = batched ? &log_batch.buf : &own;
    core_buf_puts(b, "{\"ts\":\"");
    core_buf_append(b, ts, CORE_RFC3339_LEN);
    core_buf_puts(b, "\",\"level\":\"");
    core_buf_puts(b, log_level_names[level]);
    core_buf_puts(b, "\",\"service\":\"");
    core_buf_json_escape(b, log_state.service, strlen(log_state.service));
    core_buf_puts(b, "\",\"msg\":\"");
    core_buf_json_escape(b, msg ? msg : "", msg ? strlen(msg) : 0);
    core_buf_puts(b, "\"");
    if (log_state.trace[0]) {
        core_buf_puts(b, ",\"trace_id\":\"");
        core_buf_puts(b, log_state.trace);
        core_buf_puts(b, "\"");
    }

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        core_log_field f = va_arg(ap, core_log_field);
        if (f.type == CORE_LOG_FIELD_END) break;
        if (!f.key) continue;
        core_buf_puts(b, ",\"");
        core_buf_json_escape(b, f.key, strlen(f.key));
        core_buf_puts(b, "\":");
        if (log_key_is_secret(f.key)) {
            core_buf_puts(b, "\"[redacted]\"");
            continue;
        }
        switch (f.type) {
        case CORE_LOG_FIELD_STR:
            if (!f.v.s) {
                core_buf_puts(b, "null");
            } else {
                core_buf_puts(b, "\"");
                core_buf_json_escape(b, f.v.s, strlen(f.v.s));
                core_buf_puts(b, "\"");
            }
            break;
        case CORE_LOG_FIELD_INT:
            log_put_int(b, f.v.i);
            break;
        case CORE_LOG_FIELD_DOUBLE:
            if (isfinite(f.v.d))
                core_buf_printf(b, "%.17g", f.v.d);
            else
                core_buf_puts(b, "null");
            break;
        case CORE_LOG_FIELD_BOOL:
            core_buf_puts(b, f.v.b ? "true" : "false");
            break;
        case CORE_LOG_FIELD_RAW_JSON:
            core_buf_puts(b, f.v.s ? f.v.s : "null");
            break;
        case CORE_LOG_FIELD_END:
            break;
        }
    }
    va_end(ap);
    core_buf_puts(b, "}\n");
    if (batched) return;
    /* Warnings and errors go out at once, after what is batched, in order. */
    if (log_batch.on && log_batch.buf.len && pthread_equal(log_batch.owner, pthread_self()))
        core_log_flush();
    /* One write(2) per line, so lines from librdkafka's threads never interleave. */
    log_write_all(own.data, own.len);
    core_buf_free(&own);
}

void core_log_batch(bool on)
{
    if (log_batch.on && !on) core_log_flush();
    log_batch.on = on;
    log_batch.owner = pthread_self();
}

void core_log_flush(void)
{
    if (!log_batch.buf.len || !pthread_equal(log_batch.owner, pthread_self())) return;
    /* whole lines, and at most PIPE_BUF bytes a write to a pipe: lines never interleave with
     * another process's on a shared pipe (a regular file takes the batch in one write) */
    if (!log_batch.chunk) {
        struct stat st;
        bool shared_stream = fstat(log_state.fd, &st) != 0 || S_ISFIFO(st.st_mode) ||
                             S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode);
        log_batch.chunk = shared_stream ? LOG_PIPE_ATOMIC : LOG_BATCH_MAX;
    }
    const char *p = log_batch.buf.data, *end = p + log_batch.buf.len;
    while (p < end) {
        size_t n = (size_t)(end - p);
        if (n > log_batch.chunk) {
            const char *cut = p + log_batch.chunk;
            while (cut > p && cut[-1] != '\n')
                cut--;
            if (cut == p) { /* one line longer than PIPE_BUF: alone */
                const char *nl = memchr(p, '\n', n);
                cut = nl ? nl + 1 : end;
            }
            n = (size_t)(cut - p);
        }
        log_write_all(p, n);
        p += n;
    }
    core_buf_reset(&log_batch.buf);
}
