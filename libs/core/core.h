/*
 * core: what every service needs before it does anything of its own.
 *
 *   core_config_*   environment configuration, validated at start (12-factor)
 *   core_log_*      one JSON object per line on stdout, with the current trace id
 *   core_metric_*   a Prometheus registry: counters, gauges, histograms, text rendering
 *   core_uuid_*     UUIDv7 ids; W3C trace context ids
 *   core_now_* ...  clocks and RFC 3339 timestamps
 *   core_buf_*      a growable byte buffer; core_x* allocations that abort on out of memory
 *   core_backoff_ms exponential backoff with full jitter
 *   core_signals_*  SIGTERM/SIGINT on the libuv loop, for draining
 *
 * Single-threaded by design: every function is meant to be called from the loop's thread
 * (logging is also safe from librdkafka's threads: each line is one write(2)).
 */
#ifndef CORE_H
#define CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

/* ---------------------------------------------------------------- memory */

/* Allocations that cannot fail: out of memory aborts, since no service can go on sensibly.
 * A zero count or size still returns a pointer that can be freed; core_xstrdup(NULL) is "". */
void *core_xcalloc(size_t n, size_t size);
void *core_xrealloc(void *p, size_t size);
char *core_xstrdup(const char *s);
char *core_xstrndup(const char *s, size_t n); /* at most n bytes, always NUL-terminated */

/* ---------------------------------------------------------------- buffer */

typedef struct core_buf {
    char *data; /* always NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
} core_buf;

/* core_buf_append when the buffer must grow first (internal: call core_buf_append). */
void core_buf_append_grow(core_buf *b, const void *data, size_t len);
/* Inline while there is room: most appends are a few bytes (a CSV field, a COPY value), and the
 * call cost more than the copy. */
static inline void core_buf_append(core_buf *b, const void *data, size_t len)
{
    if (b->cap - b->len <= len) { /* no room for the bytes and the NUL (or no memory yet) */
        core_buf_append_grow(b, data, len);
        return;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}
void core_buf_puts(core_buf *b, const char *s);
void core_buf_printf(core_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the inside of a JSON string (no surrounding quotes), escaping as RFC 8259 says. */
void core_buf_json_escape(core_buf *b, const char *s, size_t len);
void core_buf_reset(core_buf *b); /* len = 0, keeps the memory */
void core_buf_free(core_buf *b);
/* Hands the memory to the caller (free() it); the buffer is left empty. */
char *core_buf_steal(core_buf *b, size_t *len);

/* ---------------------------------------------------------------- config */

/*
 * Read and validate configuration from the environment. Each getter records the first problem
 * and returns the fallback, so a service reads everything, then calls core_config_finish(),
 * which prints one line naming the variable and exits with status 78 (EX_CONFIG) if anything
 * was wrong. A fallback of NULL (or the *_REQUIRED constants) makes a variable required.
 */
typedef struct core_config {
    const char *service;
    int errors;
    char first_error[512];
} core_config;

#define CORE_CONFIG_EXIT_CODE 78

void core_config_init(core_config *cfg, const char *service);
const char *core_config_string(core_config *cfg, const char *name, const char *fallback);
/* Like core_config_string, but the value is never echoed in an error message. */
const char *core_config_secret(core_config *cfg, const char *name, const char *fallback);
int64_t core_config_int(core_config *cfg, const char *name, int64_t fallback, int64_t min,
                        int64_t max);
bool core_config_bool(core_config *cfg, const char *name, bool fallback);
/* "250ms", "30s", "5m", "1h", or a bare number of milliseconds. */
int64_t core_config_duration_ms(core_config *cfg, const char *name, const char *fallback);
/* One of the NULL-terminated allowed values. */
const char *core_config_enum(core_config *cfg, const char *name, const char *fallback,
                             const char *const *allowed);
/* Parses a duration the same way core_config_duration_ms does; false when malformed. */
bool core_parse_duration_ms(const char *text, int64_t *ms);
/* Records a problem the getters cannot see (a value that parses but does not fit: a malformed
 * list, a key of the wrong length, ...); like theirs, only the first one is reported. Start the
 * message with the variable's name, and never echo a secret. */
__attribute__((format(printf, 2, 3))) void core_config_fail(core_config *cfg, const char *fmt, ...);
/* Prints the first error (and how many more) on stderr and exits 78 when there were errors. */
void core_config_finish(core_config *cfg);

/* ---------------------------------------------------------------- logging */

typedef enum core_log_level {
    CORE_LOG_DEBUG,
    CORE_LOG_INFO,
    CORE_LOG_WARN,
    CORE_LOG_ERROR,
    CORE_LOG_FATAL,
} core_log_level;

typedef enum core_log_field_type {
    CORE_LOG_FIELD_END,
    CORE_LOG_FIELD_STR,
    CORE_LOG_FIELD_INT,
    CORE_LOG_FIELD_DOUBLE,
    CORE_LOG_FIELD_BOOL,
    CORE_LOG_FIELD_RAW_JSON, /* value is already JSON (an object, an array, a number) */
} core_log_field_type;

typedef struct core_log_field {
    const char *key;
    core_log_field_type type;
    union {
        const char *s;
        long long i;
        double d;
        bool b;
    } v;
} core_log_field;

#define CORE_F_STR(k, val) ((core_log_field){.key = (k), .type = CORE_LOG_FIELD_STR, .v.s = (val)})
#define CORE_F_INT(k, val)                                                                         \
    ((core_log_field){.key = (k), .type = CORE_LOG_FIELD_INT, .v.i = (long long)(val)})
#define CORE_F_DBL(k, val)                                                                         \
    ((core_log_field){.key = (k), .type = CORE_LOG_FIELD_DOUBLE, .v.d = (double)(val)})
#define CORE_F_BOOL(k, val)                                                                        \
    ((core_log_field){.key = (k), .type = CORE_LOG_FIELD_BOOL, .v.b = (bool)(val)})
#define CORE_F_JSON(k, val)                                                                        \
    ((core_log_field){.key = (k), .type = CORE_LOG_FIELD_RAW_JSON, .v.s = (val)})
#define CORE_LOG_END ((core_log_field){.key = NULL, .type = CORE_LOG_FIELD_END})

/* Batching for a hot loop (the gateway's access log): while on, info and debug lines of the
 * calling thread collect in memory (at most 64 KiB) until core_log_flush(), which writes them
 * in as few write(2)s as it can, whole lines, none over PIPE_BUF on a pipe or socket (so lines
 * of several processes sharing a pipe never interleave). Call it once per loop iteration (a
 * uv_prepare_t) and before exiting. Warnings and errors flush and go out at once; other threads
 * write at once. */
void core_log_batch(bool on);
void core_log_flush(void);

/* level from LOG_LEVEL (debug|info|warn|error); output fd 1 unless changed. */
void core_log_init(const char *service, core_log_level min_level);
void core_log_set_fd(int fd); /* tests capture logs through a pipe */
core_log_level core_log_min_level(void);
bool core_log_parse_level(const char *name, core_log_level *out);

/* The trace id attached to every line until cleared: set it when a request or message is
 * dispatched to a handler, clear it when the callback returns. */
void core_log_set_trace(const char *trace_id);
const char *core_log_trace(void); /* "" when none */

/* Fields whose key names a secret (password, secret, token, authorization, api_key, cookie)
 * are written as "[redacted]". Use the macros below; they end the field list for you. */
void core_log_emit(core_log_level level, const char *msg, ...);
#define core_log_debug(...) core_log_emit(CORE_LOG_DEBUG, __VA_ARGS__, CORE_LOG_END)
#define core_log_info(...)  core_log_emit(CORE_LOG_INFO, __VA_ARGS__, CORE_LOG_END)
#define core_log_warn(...)  core_log_emit(CORE_LOG_WARN, __VA_ARGS__, CORE_LOG_END)
#define core_log_error(...) core_log_emit(CORE_LOG_ERROR, __VA_ARGS__, CORE_LOG_END)
#define core_log_fatal(...) core_log_emit(CORE_LOG_FATAL, __VA_ARGS__, CORE_LOG_END)

/* ---------------------------------------------------------------- metrics */

typedef struct core_metrics core_metrics;
typedef struct core_metric core_metric;

/* The process-wide registry that /metrics renders. */
core_metrics *core_metrics_default(void);
core_metrics *core_metrics_new(void);
void core_metrics_free(core_metrics *reg);

/* Registering the same name twice returns the first metric (when the kind matches). Label names
 * are a comma-separated list ("method,route,status") or NULL for none. */
core_metric *core_metric_counter(core_metrics *reg, const char *name, const char *help,
                                 const char *label_names);
core_metric *core_metric_gauge(core_metrics *reg, const char *name, const char *help,
                               const char *label_names);
/* buckets: ascending upper bounds, +Inf is implicit; NULL means core_metric_default_buckets. */
core_metric *core_metric_histogram(core_metrics *reg, const char *name, const char *help,
                                   const char *label_names, const double *buckets, size_t nbuckets);
extern const double core_metric_default_buckets[]; /* 5 ms .. 10 s, in seconds */
extern const size_t core_metric_default_nbuckets;

/* The variadic arguments are the label values, as many as the metric has label names. */
void core_counter_add(core_metric *m, double v, ...);
void core_gauge_set(core_metric *m, double v, ...);
void core_gauge_add(core_metric *m, double v, ...);
void core_histogram_observe(core_metric *m, double v, ...);
/* n observations of the same value at once (a hot path that tallies runs of equal values). */
void core_histogram_observe_n(core_metric *m, double v, uint64_t n, ...);
/* Value of one series, for tests and for derived readings (NaN when it does not exist). */
double core_metric_value(core_metric *m, ...);

/* Prometheus text exposition format 0.0.4. */
void core_metrics_render(core_metrics *reg, core_buf *out);

/* ---------------------------------------------------------------- ids */

typedef struct core_uuid {
    uint8_t b[16];
} core_uuid;

#define CORE_UUID_STRLEN 36

/* RFC 9562 version 7: 48-bit Unix ms, then a 12-bit counter seeded randomly each ms (so ids
 * made in one process are strictly increasing), then 62 random bits. */
core_uuid core_uuid_v7(void);
void core_uuid_format(const core_uuid *u, char out[CORE_UUID_STRLEN + 1]);
bool core_uuid_parse(const char *s, core_uuid *out);
/* Convenience: a fresh v7 id as text. */
void core_uuid_v7_string(char out[CORE_UUID_STRLEN + 1]);
int64_t core_uuid_v7_unix_ms(const core_uuid *u);

/* W3C Trace Context: 32 hex trace id, 16 hex span id, "00-<trace>-<span>-<flags>". */
#define CORE_TRACE_ID_LEN    32
#define CORE_SPAN_ID_LEN     16
#define CORE_TRACEPARENT_LEN 55
void core_trace_id_new(char out[CORE_TRACE_ID_LEN + 1]);
void core_span_id_new(char out[CORE_SPAN_ID_LEN + 1]);
bool core_traceparent_parse(const char *s, char trace_id[CORE_TRACE_ID_LEN + 1],
                            char span_id[CORE_SPAN_ID_LEN + 1], uint8_t *flags);
void core_traceparent_format(char out[CORE_TRACEPARENT_LEN + 1], const char *trace_id,
                             const char *span_id, uint8_t flags);

/* Fills buf with cryptographically strong random bytes (getrandom(2)). */
void core_random_bytes(void *buf, size_t len);

/* ---------------------------------------------------------------- clocks */

int64_t core_now_unix_ms(void); /* wall clock */
int64_t core_mono_ns(void);     /* monotonic, for durations */
/* "2026-11-21T19:50:03.123Z" (UTC, millisecond precision). */
#define CORE_RFC3339_LEN 24
void core_format_rfc3339(int64_t unix_ms, char out[CORE_RFC3339_LEN + 1]);
/* Accepts "Z" or "+hh:mm"/"-hh:mm" offsets and optional fractional seconds. */
bool core_parse_rfc3339(const char *s, int64_t *unix_ms);

/* ---------------------------------------------------------------- backoff */

/* Full-jitter exponential backoff: a random delay in [0, min(max_ms, base_ms * 2^attempt)].
 * attempt counts from 0. */
int64_t core_backoff_ms(unsigned attempt, int64_t base_ms, int64_t max_ms);

/* ---------------------------------------------------------------- signals */

/* Calls on_signal(signum, data) once on the first SIGTERM or SIGINT; a second one exits the
 * process at once with status 130 (the operator insisted). The handles are unref'd so they
 * do not keep the loop alive. */
typedef void (*core_signal_cb)(int signum, void *data);
typedef struct core_signals core_signals;
core_signals *core_signals_watch(uv_loop_t *loop, core_signal_cb on_signal, void *data);
void core_signals_close(core_signals *s);

#endif
