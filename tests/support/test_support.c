#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core.h"

static void ts_tick(uv_timer_t *t)
{
    (void)t; /* only wakes uv_run so that the condition is checked again */
}

bool ts_run_until(uv_loop_t *loop, bool (*cond)(void *data), void *data, int64_t timeout_ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, ts_tick, 5, 5);
    int64_t deadline = core_mono_ns() + timeout_ms * 1000000;
    bool ok = cond(data);
    while (!ok && core_mono_ns() < deadline) {
        uv_run(loop, UV_RUN_ONCE);
        ok = cond(data);
    }
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool ts_never(void *data)
{
    (void)data;
    return false;
}

void ts_run_for(uv_loop_t *loop, int64_t ms)
{
    ts_run_until(loop, ts_never, NULL, ms);
}

static void ts_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void ts_loop_close_all(uv_loop_t *loop)
{
    uv_walk(loop, ts_close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

const char *ts_env(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

void ts_unique_name(char *out, size_t size, const char *prefix)
{
    uint8_t r[4];
    core_random_bytes(r, sizeof r);
    snprintf(out, size, "%s-%d-%02x%02x%02x%02x", prefix, (int)getpid(), r[0], r[1], r[2], r[3]);
}
