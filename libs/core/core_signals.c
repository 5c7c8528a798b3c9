#include "core.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

struct core_signals {
    uv_signal_t term;
    uv_signal_t intr;
    core_signal_cb cb;
    void *data;
    int fired;
    int closing;
};

static void signals_on_signal(uv_signal_t *h, int signum)
{
    core_signals *s = h->data;
    if (s->fired++) {
        core_log_warn("second signal: exiting without draining", CORE_F_INT("signal", signum));
        _exit(130);
    }
    core_log_info("signal received: draining", CORE_F_INT("signal", signum));
    s->cb(signum, s->data);
}

core_signals *core_signals_watch(uv_loop_t *loop, core_signal_cb on_signal, void *data)
{
    core_signals *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->cb = on_signal;
    s->data = data;
    uv_signal_init(loop, &s->term);
    uv_signal_init(loop, &s->intr);
    s->term.data = s->intr.data = s;
    uv_signal_start(&s->term, signals_on_signal, SIGTERM);
    uv_signal_start(&s->intr, signals_on_signal, SIGINT);
    uv_unref((uv_handle_t *)&s->term);
    uv_unref((uv_handle_t *)&s->intr);
    return s;
}

static void signals_closed(uv_handle_t *h)
{
    core_signals *s = h->data;
    if (--s->closing == 0) free(s);
}

void core_signals_close(core_signals *s)
{
    if (!s) return;
    s->closing = 2;
    uv_close((uv_handle_t *)&s->term, signals_closed);
    uv_close((uv_handle_t *)&s->intr, signals_closed);
}
