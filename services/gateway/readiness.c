/*
 * Upstream readiness probes with a short cache (see readiness.h).
 */
#include "readiness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

typedef struct ready_up {
    gw_readiness *owner;
    const gw_upstream_def *def;
    gw_pool *pool;
    char *hostport;
    gw_exchange *probe;
    int status; /* of the probe's answer */
    bool known;
    bool ok;
    char detail[160];
    int64_t at_ns;
    http_check **waiting;
    size_t nwaiting, capwaiting;
} ready_up;

struct gw_readiness {
    ready_up *ups;
    size_t n;
    int64_t probe_timeout_ms;
    int64_t cache_ns;
};

/* An optional upstream (not deployed here) is reported but never fails the gateway. */
static void ready_report(const ready_up *u, http_check *check)
{
    char detail[200];
    snprintf(detail, sizeof detail, "%s%s",
             u->def->optional && !u->ok ? "optional, not ready: " : "", u->detail);
    http_check_done(check, u->ok || u->def->optional, detail);
}

static void ready_answer(ready_up *u)
{
    http_check **w = u->waiting;
    size_t n = u->nwaiting;
    u->waiting = NULL;
    u->nwaiting = u->capwaiting = 0;
    for (size_t i = 0; i < n; i++)
        ready_report(u, w[i]);
    free(w);
}

static void ready_set(ready_up *u, bool ok, const char *detail)
{
    u->probe = NULL;
    u->known = true;
    u->ok = ok;
    u->at_ns = core_mono_ns();
    snprintf(u->detail, sizeof u->detail, "%s", detail);
    ready_answer(u);
}

static void ready_on_head(gw_exchange *x, const gw_resp_head *head, void *data)
{
    (void)x;
    ((ready_up *)data)->status = head->status;
}

static void ready_on_body(gw_exchange *x, const char *p, size_t len, bool final, void *data)
{
    (void)x;
    (void)p;
    (void)len;
    ready_up *u = data;
    if (!final) return;
    char detail[160];
    snprintf(detail, sizeof detail, "%s: GET /readyz answered %d", u->hostport, u->status);
    ready_set(u, u->status == 200, detail);
}

static void ready_on_error(gw_exchange *x, gw_xerr err, bool after_head, void *data)
{
    (void)x;
    (void)after_head;
    ready_up *u = data;
    char detail[160];
    snprintf(detail, sizeof detail, "%s: %s", u->hostport, gw_xerr_text(err));
    ready_set(u, false, detail);
}

static const gw_exchange_cbs ready_cbs = {ready_on_head, ready_on_body, ready_on_error};

static void ready_check(http_check *check, void *data)
{
    ready_up *u = data;
    gw_readiness *r = u->owner;
    if (u->known && core_mono_ns() - u->at_ns < r->cache_ns) {
        ready_report(u, check);
        return;
    }
    if (u->nwaiting == u->capwaiting) {
        u->capwaiting = u->capwaiting ? u->capwaiting * 2 : 4;
        u->waiting = core_xrealloc(u->waiting, u->capwaiting * sizeof *u->waiting);
    }
    u->waiting[u->nwaiting++] = check;
    if (u->probe) return; /* one probe at a time; its answer serves every waiting check */
    core_buf req = {0};
    core_buf_printf(&req,
                    "GET /readyz HTTP/1.1\r\nHost: %s\r\nUser-Agent: gateway-readiness\r\n"
                    "Accept: application/json\r\n\r\n",
                    u->hostport);
    u->status = 0;
    gw_exchange_opts o = {.idempotent = true, .read_timeout_ms = r->probe_timeout_ms};
    u->probe = gw_exchange_start(u->pool, &req, &o, &ready_cbs, u);
}

gw_readiness *gw_readiness_new(http_server *srv, const gw_table *t, gw_proxy_set *ps,
                               int64_t probe_timeout_ms, int64_t cache_ms)
{
    gw_readiness *r = core_xcalloc(1, sizeof *r);
    r->ups = core_xcalloc(t->nups, sizeof *r->ups);
    r->probe_timeout_ms = probe_timeout_ms;
    r->cache_ns = cache_ms * 1000000;
    for (size_t i = 0; i < t->nups; i++) {
        if (!t->ups[i].used) continue;
        ready_up *u = &r->ups[r->n++];
        u->owner = r;
        u->def = &t->ups[i];
        u->pool = gw_proxy_pool(ps, i);
        core_buf hp = {0};
        if (strchr(u->def->host, ':'))
            core_buf_printf(&hp, "[%s]:%u", u->def->host, (unsigned)u->def->port);
        else
            core_buf_printf(&hp, "%s:%u", u->def->host, (unsigned)u->def->port);
        u->hostport = core_buf_steal(&hp, NULL);
        http_readiness_check(srv, u->def->name, ready_check, u);
    }
    return r;
}

void gw_readiness_close(gw_readiness *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        ready_up *u = &r->ups[i];
        if (u->probe) {
            gw_exchange_abort(u->probe);
            u->probe = NULL;
        }
        u->ok = false;
        snprintf(u->detail, sizeof u->detail, "the gateway is shutting down");
        ready_answer(u);
        free(u->hostport);
    }
    free(r->ups);
    free(r);
}
