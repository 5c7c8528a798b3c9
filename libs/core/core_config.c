#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void core_config_init(core_config *cfg, const char *service)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->service = service;
}

void core_config_fail(core_config *cfg, const char *fmt, ...)
{
    if (cfg->errors++ > 0) return; /* the first problem is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->first_error, sizeof cfg->first_error, fmt, ap);
    va_end(ap);
}

static const char *config_raw(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

static const char *config_string_impl(core_config *cfg, const char *name, const char *fallback)
{
    const char *v = config_raw(name);
    if (v) return v;
    if (!fallback) core_config_fail(cfg, "%s is required but not set", name);
    return fallback;
}

const char *core_config_string(core_config *cfg, const char *name, const char *fallback)
{
    return config_string_impl(cfg, name, fallback);
}

const char *core_config_secret(core_config *cfg, const char *name, const char *fallback)
{
    /* Same lookup; the difference is that no error message ever quotes the value. */
    return config_string_impl(cfg, name, fallback);
}

int64_t core_config_int(core_config *cfg, const char *name, int64_t fallback, int64_t min,
                        int64_t max)
{
    const char *v = config_raw(name);
    if (!v) return fallback;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0') {
        core_config_fail(cfg, "%s=\"%s\" is not an integer (expected %lld..%lld)", name, v,
                         (long long)min, (long long)max);
        return fallback;
    }
    if (n < min || n > max) {
        core_config_fail(cfg, "%s=%lld is out of range (expected %lld..%lld)", name, n,
                         (long long)min, (long long)max);
        return fallback;
    }
    return n;
}

bool core_config_bool(core_config *cfg, const char *name, bool fallback)
{
    const char *v = config_raw(name);
    if (!v) return fallback;
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return true;
        if (strcasecmp(v, no[i]) == 0) return false;
    }
    core_config_fail(cfg, "%s=\"%s\" is not a boolean (expected true|false|1|0|yes|no|on|off)",
                     name, v);
    return fallback;
}

bool core_parse_duration_ms(const char *text, int64_t *ms)
{
    if (!text || !*text) return false;
    char *end = NULL;
    errno = 0;
    double n = strtod(text, &end);
    if (errno || end == text || n < 0) return false;
    double scale;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        scale = 1;
    else if (strcmp(end, "s") == 0)
        scale = 1000;
    else if (strcmp(end, "m") == 0)
        scale = 60000;
    else if (strcmp(end, "h") == 0)
        scale = 3600000;
    else
        return false;
    double v = n * scale;
    if (v > 9.2e15) return false;
    *ms = (int64_t)(v + 0.5);
    return true;
}

int64_t core_config_duration_ms(core_config *cfg, const char *name, const char *fallback)
{
    const char *v = config_raw(name);
    const char *text = v ? v : fallback;
    if (!text) {
        core_config_fail(cfg, "%s is required but not set", name);
        return 0;
    }
    int64_t ms = 0;
    if (!core_parse_duration_ms(text, &ms)) {
        core_config_fail(cfg, "%s=\"%s\" is not a duration (expected e.g. 250ms, 30s, 5m, 1h)",
                         name, text);
        return 0;
    }
    return ms;
}

const char *core_config_enum(core_config *cfg, const char *name, const char *fallback,
                             const char *const *allowed)
{
    const char *v = config_raw(name);
    if (!v) {
        if (!fallback) core_config_fail(cfg, "%s is required but not set", name);
        return fallback;
    }
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(v, allowed[i]) == 0) return allowed[i];
    core_buf list = {0};
    for (size_t i = 0; allowed[i]; i++) {
        if (i) core_buf_puts(&list, "|");
        core_buf_puts(&list, allowed[i]);
    }
    core_config_fail(cfg, "%s=\"%s\" is not one of %s", name, v, list.data ? list.data : "");
    core_buf_free(&list);
    return fallback;
}

void core_config_finish(core_config *cfg)
{
    if (cfg->errors == 0) return;
    if (cfg->errors > 1)
        fprintf(stderr, "%s: configuration error: %s (and %d more)\n",
                cfg->service ? cfg->service : "service", cfg->first_error, cfg->errors - 1);
    else
        fprintf(stderr, "%s: configuration error: %s\n", cfg->service ? cfg->service : "service",
                cfg->first_error);
    fflush(stderr);
    exit(CORE_CONFIG_EXIT_CODE);
}
