#include "core.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static struct {
    char service[64];
    core_log_level min;
    int fd;
    char trace[CORE_TRACE_ID_LEN + 1];
} log_state = {.service = "unknown", .min = CORE_LOG_INFO, .fd = 1};

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
static bool log_key_is_secret(const char *key)
{
    static const char *const secret_words[] = {"password", "passwd",        "secret",
                                               "token",    "authorization", "api_key",
                                               "apikey",   "cookie",        "private_key"};
    for (size_t i = 0; i < sizeof secret_words / sizeof *secret_words; i++)
        if (strcasestr(key, secret_words[i])) return true;
    return false;
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
    core_format_rfc3339(core_now_unix_ms(), ts);

    core_buf b = {0};
    core_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"", ts,
                    log_level_names[level]);
    core_buf_json_escape(&b, log_state.service, strlen(log_state.service));
    core_buf_puts(&b, "\",\"msg\":\"");
    core_buf_json_escape(&b, msg ? msg : "", msg ? strlen(msg) : 0);
    core_buf_puts(&b, "\"");
    if (log_state.trace[0]) core_buf_printf(&b, ",\"trace_id\":\"%s\"", log_state.trace);

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        core_log_field f = va_arg(ap, core_log_field);
        if (f.type == CORE_LOG_FIELD_END) break;
        if (!f.key) continue;
        core_buf_puts(&b, ",\"");
        core_buf_json_escape(&b, f.key, strlen(f.key));
        core_buf_puts(&b, "\":");
        if (log_key_is_secret(f.key)) {
            core_buf_puts(&b, "\"[redacted]\"");
            continue;
        }
        switch (f.type) {
        case CORE_LOG_FIELD_STR:
            if (!f.v.s) {
                core_buf_puts(&b, "null");
            } else {
                core_buf_puts(&b, "\"");
                core_buf_json_escape(&b, f.v.s, strlen(f.v.s));
                core_buf_puts(&b, "\"");
            }
            break;
        case CORE_LOG_FIELD_INT:
            core_buf_printf(&b, "%lld", f.v.i);
            break;
        case CORE_LOG_FIELD_DOUBLE:
            if (isfinite(f.v.d))
                core_buf_printf(&b, "%.17g", f.v.d);
            else
                core_buf_puts(&b, "null");
            break;
        case CORE_LOG_FIELD_BOOL:
            core_buf_puts(&b, f.v.b ? "true" : "false");
            break;
        case CORE_LOG_FIELD_RAW_JSON:
            core_buf_puts(&b, f.v.s ? f.v.s : "null");
            break;
        case CORE_LOG_FIELD_END:
            break;
        }
    }
    va_end(ap);
    core_buf_puts(&b, "}\n");
    /* One write(2) per line, so lines from librdkafka's threads never interleave. */
    log_write_all(b.data, b.len);
    core_buf_free(&b);
}
