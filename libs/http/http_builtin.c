/*
 * Built-in routes: GET /healthz (alive), GET /readyz (readiness checks, answered at once or
 * later, with a deadline) and GET /metrics (Prometheus text format 0.0.4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"

struct http_check {
    http_internal_round *round;
    size_t index;
};

typedef struct round_item {
    const char *name; /* owned by the check definition, which outlives rounds */
    bool done;
    bool ok;
    char *detail;
    http_check check;
} round_item;

struct http_internal_round {
    http_server *srv;
    http_req *req; /* referenced until answered */
    size_t n, answered;
    bool responded;
    bool dispatching; /* still calling the checks: do not free yet */
    h2o_timeout_entry_t timeout;
    round_item *items;
    http_internal_round *prev, *next;
};

static void builtin_healthz(http_req *req, void *data)
{
    (void)data;
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void builtin_metrics(http_req *req, void *data)
{
    (void)data;
    core_buf b = {0};
    core_metrics_render(core_metrics_default(), &b);
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len);
    core_buf_free(&b);
}

static void round_unlink_free(http_internal_round *r)
{
    h2o_timeout_unlink(&r->timeout);
    if (r->srv) {
        if (r->prev)
            r->prev->next = r->next;
        else
            r->srv->rounds = r->next;
        if (r->next) r->next->prev = r->prev;
    }
    for (size_t i = 0; i < r->n; i++)
        free(r->items[i].detail);
    free(r->items);
    http_req_unref(r->req);
    free(r);
}

static void round_maybe_free(http_internal_round *r)
{
    if (r->responded && r->answered == r->n && !r->dispatching) round_unlink_free(r);
}

static void round_respond(http_internal_round *r)
{
    if (r->responded) return;
    r->responded = true;
    h2o_timeout_unlink(&r->timeout);
    json_t *checks = json_object();
    json_t *failing = json_array();
    for (size_t i = 0; i < r->n; i++) {
        round_item *it = &r->items[i];
        bool ok = it->done && it->ok;
        const char *detail = it->done ? it->detail : "no answer before the readiness timeout";
        json_t *c = json_pack("{s:b}", "ok", ok);
        if (detail) json_object_set_new(c, "detail", json_string(detail));
        json_object_set_new(checks, it->name, c);
        if (!ok) json_array_append_new(failing, json_string(it->name));
    }
    bool ready = json_array_size(failing) == 0;
    json_t *body =
        json_pack("{s:s, s:o}", "status", ready ? "ready" : "not ready", "checks", checks);
    if (!ready)
        json_object_set_new(body, "failing", failing);
    else
        json_decref(failing);
    http_respond_json(r->req, ready ? 200 : 503, body);
    http_req_unref(r->req);
    r->req = NULL;
}

static void round_on_timeout(h2o_timeout_entry_t *entry)
{
    http_internal_round *r = H2O_STRUCT_FROM_MEMBER(http_internal_round, timeout, entry);
    round_respond(r);
    round_maybe_free(r);
}

void http_check_done(http_check *check, bool ok, const char *detail)
{
    if (!check) return;
    http_internal_round *r = check->round;
    round_item *it = &r->items[check->index];
    if (it->done) return;
    it->done = true;
    it->ok = ok;
    if (detail) {
        size_t len = strlen(detail);
        it->detail = malloc(len + 1);
        if (!it->detail) abort();
        memcpy(it->detail, detail, len + 1);
    }
    r->answered++;
    if (r->answered == r->n && !r->dispatching) round_respond(r);
    round_maybe_free(r);
}

static void builtin_readyz(http_req *req, void *data)
{
    http_server *srv = data;
    if (srv->draining) {
        http_respond_json(req, 503, json_pack("{s:s}", "status", "draining"));
        return;
    }
    if (srv->nchecks == 0) {
        http_respond_json(req, 200, json_pack("{s:s, s:{}}", "status", "ready", "checks"));
        return;
    }
    http_internal_round *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->srv = srv;
    r->req = http_req_ref(req);
    r->n = srv->nchecks;
    r->items = calloc(r->n, sizeof *r->items);
    if (!r->items) abort();
    r->next = srv->rounds;
    if (srv->rounds) srv->rounds->prev = r;
    srv->rounds = r;
    r->timeout.cb = round_on_timeout;
    h2o_timeout_link(srv->loop, &srv->readiness_timeout, &r->timeout);
    r->dispatching = true;
    size_t i = 0;
    for (http_internal_check_def *d = srv->checks; d && i < r->n; d = d->next, i++) {
        r->items[i].name = d->name;
        r->items[i].check.round = r;
        r->items[i].check.index = i;
    }
    i = 0;
    for (http_internal_check_def *d = srv->checks; d && i < r->n; d = d->next, i++)
        d->fn(&r->items[i].check, d->data);
    r->dispatching = false;
    if (r->answered == r->n) round_respond(r);
    round_maybe_free(r);
}

void http_internal_builtin_register(http_server *srv)
{
    http_route(srv, "GET", "/healthz", builtin_healthz, srv);
    http_route(srv, "GET", "/readyz", builtin_readyz, srv);
    http_route(srv, "GET", "/metrics", builtin_metrics, srv);
}

void http_internal_rounds_free(http_server *srv)
{
    while (srv->rounds) {
        http_internal_round *r = srv->rounds;
        srv->rounds = r->next;
        r->srv = NULL;
        h2o_timeout_unlink(&r->timeout);
        for (size_t i = 0; i < r->n; i++)
            free(r->items[i].detail);
        free(r->items);
        http_req_unref(r->req);
        free(r);
    }
}
