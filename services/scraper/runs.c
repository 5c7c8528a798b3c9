/*
 * Run lifecycle: start (one transaction: the run row, the source's next due time and the
 * "started" event), progress records on a timer, the end (finished, failed or interrupted),
 * the scheduler that starts due sources, recovery after a crash, and the SIGTERM drain.
 *
 * Several replicas may share the database. A run belongs to the instance that runs it
 * (SCRAPER_INSTANCE_ID), which renews the run's lease every progress interval. A run cut short
 * is recorded as interrupted: by its own instance on SIGTERM, by its instance on restart (its
 * runs from before the restart), or by any instance once the lease ran out (the instance died
 * for good); and it is marked resume_pending. Interrupted runs are resumed by a new run
 * (trigger "resume", resumed_from the interrupted one): by their owner at once, by any
 * instance after a lease's time.
 *
 * Resumption: the frontier of a run lives in memory only. The resumed run walks the source
 * again, and what the first run stored costs a conditional GET answered 304 (or a text that
 * hashes the same): no item is stored twice (and unique indexes make sure of it).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

void sc_metrics_init(sc_app *app)
{
    core_metrics *m = core_metrics_default();
    app->m_fetches =
        core_metric_counter(m, "scraper_fetches_total", "Fetches by outcome", "outcome");
    app->m_items =
        core_metric_counter(m, "scraper_items_total", "Items stored by outcome", "outcome");
    app->m_runs = core_metric_counter(m, "scraper_runs_total", "Runs ended by state", "state");
    app->m_refused = core_metric_counter(
        m, "scraper_refused_addresses_total",
        "Connections refused because the address is private, loopback, link-local...", NULL);
}

static void run_free(sc_run *run)
{
    sc_patterns_free(run->include);
    sc_patterns_free(run->exclude);
    sc_strmap_free(&run->seen);
    sc_strmap_free(&run->validators);
    core_buf_free(&run->errors);
    for (sc_store_item *s = run->sq_head, *n; s; s = n) {
        n = s->next;
        sc_store_item_free(s);
    }
    free(run->url);
    free(run);
}

static void run_unlink(sc_run *run)
{
    sc_app *app = run->app;
    for (sc_run **p = &app->runs; *p; p = &(*p)->next) {
        if (*p == run) {
            *p = run->next;
            app->nruns--;
            break;
        }
    }
}

/* ---------------------------------------------------------------- the end of a run */

static void on_final_recorded(sc_run *run, bool ok, const char *err)
{
    sc_app *app = run->app;
    if (!ok)
        core_log_warn("run end not recorded", CORE_F_STR("run_id", run->id),
                      CORE_F_STR("error", err ? err : ""));
    run_unlink(run);
    run_free(run);
    if (app->stopping && app->nruns == 0 && app->on_runs_drained) {
        void (*cb)(sc_app *) = app->on_runs_drained;
        app->on_runs_drained = NULL;
        cb(app);
    }
}

static void run_finish(sc_run *run)
{
    if (run->finished) return;
    if (run->progress_inflight) {
        run->finish_wanted = true;
        return;
    }
    run->finished = true;
    sc_app *app = run->app;
    if (run->disallowed) {
        char line[128];
        snprintf(line, sizeof line, "%lld URLs disallowed by robots.txt were not fetched",
                 (long long)run->disallowed);
        sc_run_error(run, "%s", line);
    }
    const char *state = app->stopping      ? "interrupted"
                        : run->cancelled   ? "failed"
                        : run->root_failed ? "failed"
                                           : "finished";
    if (run->cancelled && !app->stopping) sc_run_error(run, "the source was deleted");
    core_counter_add(app->m_runs, 1, state);
    core_log_info("run ended", CORE_F_STR("run_id", run->id),
                  CORE_F_STR("source_id", run->source_id), CORE_F_STR("state", state),
                  CORE_F_INT("fetched", run->fetched), CORE_F_INT("new", run->new_items),
                  CORE_F_INT("unchanged", run->unchanged), CORE_F_INT("failed", run->failed));
    sc_record_progress(run, state, on_final_recorded);
}

void sc_run_task_done(sc_run *run)
{
    if (!run) return;
    if (--run->pending == 0) run_finish(run);
}

static void on_progress_recorded(sc_run *run, bool ok, const char *err)
{
    run->progress_inflight = false;
    if (!ok)
        core_log_warn("progress record failed", CORE_F_STR("run_id", run->id),
                      CORE_F_STR("error", err ? err : ""));
    if (run->finish_wanted) run_finish(run);
}

static void on_progress_tick(uv_timer_t *timer)
{
    sc_app *app = timer->data;
    malloc_trim(0); /* freed pages (pages parsed, items stored) go back to the system */
    if (app->nruns && !app->stopping) {
        char ms[24];
        snprintf(ms, sizeof ms, "%lld", (long long)app->cfg.lease_ms);
        const char *p[] = {app->cfg.instance, ms};
        db_query(app->db,
                 "UPDATE runs SET lease_until = now() + $2::bigint * interval '1 millisecond' "
                 "WHERE owner = $1 AND state = 'running'",
                 2, p, NULL, NULL);
    }
    for (sc_run *run = app->runs; run; run = run->next) {
        if (!run->dirty || run->progress_inflight || run->finished || app->stopping) continue;
        run->dirty = false;
        run->progress_inflight = true;
        sc_record_progress(run, "progress", on_progress_recorded);
    }
}

/* ---------------------------------------------------------------- start */

typedef struct start_ctx {
    sc_app *app;
    sc_run *run;
    char source_id[CORE_UUID_STRLEN + 1];
    char trigger[16];
    int64_t interval_ms;
    json_t *run_json;
    sc_start_cb cb;
    void *data;
} start_ctx;

/* A start that did not happen. */
static void start_done(start_ctx *c, sc_start_outcome outcome)
{
    if (c->run) run_free(c->run);
    if (c->cb) c->cb(outcome, NULL, c->data);
    json_decref(c->run_json);
    free(c);
}

static void on_validators_loaded(sc_run *run, bool ok, const char *err)
{
    if (!ok)
        core_log_warn("validators not loaded: fetching unconditionally",
                      CORE_F_STR("run_id", run->id), CORE_F_STR("error", err ? err : ""));
    run->pending--; /* the hold taken at start */
    sc_run_begin_crawl(run);
}

static void on_start_committed(const db_result *r, void *data)
{
    start_ctx *c = data;
    if (!db_result_ok(r)) {
        core_log_warn("run start failed", CORE_F_STR("error", db_result_error(r)));
        start_done(c, SC_START_UNAVAILABLE);
        return;
    }
    sc_run *run = c->run;
    sc_app *app = c->app;
    run->next = app->runs;
    app->runs = run;
    app->nruns++;
    if (c->cb) c->cb(SC_START_OK, json_incref(c->run_json), c->data);
    json_decref(c->run_json);
    free(c);
    core_log_info("run started", CORE_F_STR("run_id", run->id),
                  CORE_F_STR("source_id", run->source_id), CORE_F_STR("url", run->url));
    run->pending++; /* no end before the crawl begins */
    sc_load_validators(run, on_validators_loaded);
}

static void on_start_event(db_txn *t, const db_result *r, void *data)
{
    start_ctx *c = data;
    if (!db_result_ok(r)) {
        db_rollback(t, NULL, NULL);
        start_done(c, SC_START_UNAVAILABLE);
        return;
    }
    db_commit(t, on_start_committed, c);
}

static void ignore(db_txn *t, const db_result *r, void *data)
{
    (void)t, (void)r, (void)data;
}

static void on_run_inserted(db_txn *t, const db_result *r, void *data)
{
    start_ctx *c = data;
    if (!db_result_ok(r)) {
        db_rollback(t, NULL, NULL);
        start_done(c, SC_START_UNAVAILABLE);
        return;
    }
    if (db_result_rows(r) == 0) {
        db_rollback(t, NULL, NULL);
        start_done(c, SC_START_RUNNING);
        return;
    }
    c->run_json = sc_run_json(r, 0);
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)c->interval_ms);
    const char *p[] = {c->source_id, ms};
    db_txn_query(t,
                 "UPDATE sources SET next_run_at = now() + $2::bigint * interval '1 millisecond' "
                 "WHERE id = $1",
                 2, p, ignore, NULL);
    sc_record_outbox_started(t, c->run, on_start_event, c);
}

static void on_start_begun(db_txn *t, const db_result *r, void *data)
{
    start_ctx *c = data;
    if (!t) {
        core_log_warn("run start failed", CORE_F_STR("error", db_result_error(r)));
        start_done(c, SC_START_UNAVAILABLE);
        return;
    }
    core_buf sql = {0};
    core_buf_printf(&sql,
                    "WITH last AS (SELECT id, state FROM runs WHERE source_id = $2 ORDER BY "
                    "started_at DESC LIMIT 1) INSERT INTO runs (id, source_id, state, trigger, "
                    "resumed_from, owner, lease_until) SELECT $1, $2, 'running', $3, "
                    "(SELECT id FROM last WHERE state = 'interrupted' AND $3 = 'resume'), $4, "
                    "now() + $5::bigint * interval '1 millisecond' ON CONFLICT (source_id) WHERE "
                    "state = 'running' DO NOTHING RETURNING %s",
                    sc_run_cols);
    char lease[24];
    snprintf(lease, sizeof lease, "%lld", (long long)c->app->cfg.lease_ms);
    const char *p[] = {c->run->id, c->source_id, c->trigger, c->app->cfg.instance, lease};
    db_txn_query(t, sql.data, 5, p, on_run_inserted, c);
    core_buf_free(&sql);
}

static void on_source_loaded(const db_result *r, void *data)
{
    start_ctx *c = data;
    if (!db_result_ok(r)) {
        start_done(c, SC_START_UNAVAILABLE);
        return;
    }
    if (db_result_rows(r) == 0) {
        start_done(c, SC_START_NOT_FOUND);
        return;
    }
    sc_run *run = core_xcalloc(1, sizeof *run);
    run->app = c->app;
    core_uuid_v7_string(run->id);
    snprintf(run->source_id, sizeof run->source_id, "%s", c->source_id);
    run->url = core_xstrdup(db_result_get(r, 0, "url"));
    snprintf(run->kind, sizeof run->kind, "%s", db_result_get(r, 0, "kind"));
    char err[256];
    json_t *inc = json_loads(db_result_get(r, 0, "include_patterns"), 0, NULL);
    json_t *exc = json_loads(db_result_get(r, 0, "exclude_patterns"), 0, NULL);
    run->include = sc_patterns_new(inc, err, sizeof err);
    run->exclude = sc_patterns_new(exc, err, sizeof err);
    json_decref(inc);
    json_decref(exc);
    db_result_int64(r, 0, db_result_column(r, "max_items"), &run->max_items);
    db_result_int64(r, 0, db_result_column(r, "interval_ms"), &c->interval_ms);
    c->run = run;
    db_begin(c->app->db, on_start_begun, c);
}

void sc_run_start(sc_app *app, const char *source_id, const char *trigger, sc_start_cb cb,
                  void *data)
{
    start_ctx *c = core_xcalloc(1, sizeof *c);
    c->app = app;
    c->cb = cb;
    c->data = data;
    snprintf(c->source_id, sizeof c->source_id, "%s", source_id);
    snprintf(c->trigger, sizeof c->trigger, "%s", trigger);
    core_buf sql = {0};
    core_buf_printf(&sql, "SELECT %s FROM sources WHERE id = $1", sc_source_cols);
    const char *p[] = {source_id};
    db_query(app->db, sql.data, 1, p, on_source_loaded, c);
    core_buf_free(&sql);
}

/* ---------------------------------------------------------------- recovery */

typedef struct recover_ctx {
    sc_app *app;
    db_txn *txn;
    sc_run **runs; /* the interrupted runs, for their events */
    int n, next;
    void (*done)(sc_app *app, bool ok);
} recover_ctx;

static void recover_end(recover_ctx *c, bool ok)
{
    for (int i = 0; i < c->n; i++)
        run_free(c->runs[i]);
    free(c->runs);
    void (*done)(sc_app *, bool) = c->done;
    sc_app *app = c->app;
    free(c);
    done(app, ok);
}

static void on_recover_committed(const db_result *r, void *data)
{
    recover_ctx *c = data;
    if (!db_result_ok(r)) {
        core_log_warn("recovery failed", CORE_F_STR("error", db_result_error(r)));
        recover_end(c, false);
        return;
    }
    for (int i = 0; i < c->n; i++) {
        core_log_warn("run interrupted: its instance stopped; it will be resumed",
                      CORE_F_STR("run_id", c->runs[i]->id),
                      CORE_F_STR("source_id", c->runs[i]->source_id));
        core_counter_add(c->app->m_runs, 1, "interrupted");
    }
    recover_end(c, true);
}

/* true (after rolling back and ending the recovery) when r is an error */
static bool recover_failed(recover_ctx *c, db_txn *t, const db_result *r)
{
    if (db_result_ok(r)) return false;
    core_log_warn("recovery failed", CORE_F_STR("error", db_result_error(r)));
    db_rollback(t, NULL, NULL);
    recover_end(c, false);
    return true;
}

static void on_recover_event(db_txn *t, const db_result *r, void *data)
{
    recover_ctx *c = data;
    if (recover_failed(c, t, r)) return;
    if (c->next < c->n) {
        sc_outbox_run_event(t, c->runs[c->next++], "interrupted", on_recover_event, c);
        return;
    }
    db_commit(t, on_recover_committed, c);
}

static void on_reclaimed(db_txn *t, const db_result *r, void *data)
{
    recover_ctx *c = data;
    if (recover_failed(c, t, r)) return;
    c->n = db_result_rows(r);
    c->runs = core_xcalloc((size_t)c->n + 1, sizeof *c->runs);
    for (int i = 0; i < c->n; i++) {
        sc_run *run = core_xcalloc(1, sizeof *run);
        run->app = c->app;
        snprintf(run->id, sizeof run->id, "%s", db_result_get(r, i, "id"));
        snprintf(run->source_id, sizeof run->source_id, "%s", db_result_get(r, i, "source_id"));
        db_result_int64(r, i, db_result_column(r, "fetched"), &run->fetched);
        db_result_int64(r, i, db_result_column(r, "new_items"), &run->new_items);
        db_result_int64(r, i, db_result_column(r, "unchanged"), &run->unchanged);
        db_result_int64(r, i, db_result_column(r, "failed"), &run->failed);
        core_buf_puts(&run->errors, db_result_get(r, i, "error_summary"));
        c->runs[i] = run;
    }
    on_recover_event(t, r, c);
}

static void on_recover_begun(db_txn *t, const db_result *r, void *data)
{
    recover_ctx *c = data;
    if (!t) {
        core_log_warn("recovery failed", CORE_F_STR("error", db_result_error(r)));
        recover_end(c, false);
        return;
    }
    const char *p[] = {c->app->cfg.instance, c->app->process_start,
                       "interrupted: the scraper running it stopped; resumed by a new run"};
    db_txn_query(t,
                 "UPDATE runs SET state = 'interrupted', finished_at = now(), resume_pending = "
                 "true, error_summary = CASE WHEN error_summary = '' THEN $3 ELSE error_summary "
                 "|| E'\\n' || $3 END WHERE state = 'running' AND (lease_until < now() OR "
                 "lease_until IS NULL OR (owner = $1 AND started_at < $2::timestamptz)) RETURNING "
                 "id::text AS id, "
                 "source_id::text AS source_id, fetched, new_items, unchanged, failed, "
                 "error_summary",
                 3, p, on_reclaimed, c);
}

void sc_recover(sc_app *app, void (*done)(sc_app *app, bool ok))
{
    recover_ctx *c = core_xcalloc(1, sizeof *c);
    c->app = app;
    c->done = done;
    db_begin(app->db, on_recover_begun, c);
}

/* ---------------------------------------------------------------- scheduler */

static void on_scheduled(sc_start_outcome outcome, json_t *run, void *data)
{
    (void)outcome;
    (void)data;
    json_decref(run);
}

static void on_due(const db_result *r, void *data)
{
    sc_app *app = data;
    app->scheduling = false;
    if (!db_result_ok(r) || app->stopping) return;
    for (int i = 0; i < db_result_rows(r); i++) {
        const char *id = db_result_get(r, i, "id");
        bool active = false;
        for (sc_run *run = app->runs; run; run = run->next)
            if (strcmp(run->source_id, id) == 0) active = true;
        if (!active)
            sc_run_start(app, id,
                         strcmp(db_result_get(r, i, "why"), "resume") == 0 ? "resume" : "schedule",
                         on_scheduled, NULL);
    }
}

/* After recovery: what to start. Interrupted runs to resume (ours at once, others' after a
 * lease's time; claimed atomically so that one instance resumes each), then due sources. */
static void schedule_due(sc_app *app, bool ok)
{
    (void)ok;
    if (app->stopping || app->nruns >= app->cfg.max_runs) {
        app->scheduling = false;
        return;
    }
    char lim[16], lease[24];
    snprintf(lim, sizeof lim, "%d", app->cfg.max_runs - app->nruns);
    snprintf(lease, sizeof lease, "%lld", (long long)app->cfg.lease_ms);
    const char *p[] = {lim, app->cfg.instance, lease};
    db_query(app->db,
             "WITH claimed AS (UPDATE runs SET resume_pending = false WHERE id IN (SELECT id "
             "FROM runs WHERE resume_pending AND (owner = $2 OR finished_at < now() - "
             "$3::bigint * interval '1 millisecond') ORDER BY finished_at LIMIT $1::int FOR "
             "UPDATE SKIP LOCKED) RETURNING source_id) SELECT source_id::text AS id, 'resume' "
             "AS why FROM claimed UNION ALL (SELECT s.id::text, 'schedule' FROM sources s WHERE "
             "s.status = 'active' AND s.next_run_at <= now() AND NOT EXISTS (SELECT 1 FROM runs "
             "r WHERE r.source_id = s.id AND r.state = 'running') ORDER BY s.next_run_at LIMIT "
             "$1::int)",
             3, p, on_due, app);
}

static void on_scheduler_tick(uv_timer_t *timer)
{
    sc_app *app = timer->data;
    if (app->stopping || app->scheduling) return;
    app->scheduling = true;
    sc_recover(app, schedule_due);
}

void sc_scheduler_start(sc_app *app)
{
    app->started = true;
    uv_timer_start(&app->scheduler, on_scheduler_tick, 0, (uint64_t)app->cfg.scheduler_tick_ms);
    uv_timer_start(&app->progress, on_progress_tick, (uint64_t)app->cfg.progress_interval_ms,
                   (uint64_t)app->cfg.progress_interval_ms);
}

/* ---------------------------------------------------------------- drain, cancel */

static void on_httpc_closed(void *data)
{
    sc_app *app = data;
    app->httpc = NULL;
    /* every fetch has called back; runs whose stores are done end now (interrupted) */
    sc_run *next;
    for (sc_run *run = app->runs; run; run = next) {
        next = run->next;
        if (run->pending == 0 && !run->finished) run_finish(run);
    }
    if (app->nruns == 0 && app->on_runs_drained) {
        void (*cb)(sc_app *) = app->on_runs_drained;
        app->on_runs_drained = NULL;
        cb(app);
    }
}

void sc_runs_drain(sc_app *app)
{
    uv_timer_stop(&app->scheduler);
    uv_timer_stop(&app->progress);
    /* hold every run open until the fetches in flight have called back */
    for (sc_run *run = app->runs; run; run = run->next)
        run->pending++;
    sc_hosts_drop_queued(app);
    for (sc_run *run = app->runs; run; run = run->next)
        run->pending--;
    if (app->httpc)
        httpc_close(app->httpc, on_httpc_closed, app);
    else
        on_httpc_closed(app);
}

void sc_run_cancel_source(sc_app *app, const char *source_id)
{
    for (sc_run *run = app->runs; run; run = run->next)
        if (strcmp(run->source_id, source_id) == 0) run->cancelled = true;
}
