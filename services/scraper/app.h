/* scraper: the service's shared state, the crawl engine and the store it writes through. */
#ifndef SC_APP_H
#define SC_APP_H

#include "bus.h"
#include "core.h"
#include "db.h"
#include "http.h"
#include "httpc.h"
#include "scraper.h"

#define SC_SERVICE "scraper"

typedef struct sc_run sc_run;
typedef struct sc_host sc_host;

typedef struct sc_settings {
    const char *user_agent;
    char robots_agent[64]; /* the product token of user_agent */
    bool robots;           /* honour robots.txt */
    int64_t robots_ttl_ms;
    unsigned concurrency;       /* transfers on the wire, all hosts */
    unsigned per_host;          /* transfers per host */
    int64_t delay_ms;           /* minimum gap between request starts per host */
    int64_t max_crawl_delay_ms; /* cap on robots.txt Crawl-delay */
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    unsigned max_attempts;
    int64_t backoff_base_ms;
    int64_t max_retry_wait_ms;
    int max_redirects;
    size_t max_bytes;
    int64_t scheduler_tick_ms;
    int64_t progress_interval_ms;
    int max_runs;         /* concurrent runs per instance */
    int64_t lease_ms;     /* a running run's lease, renewed every progress interval */
    const char *instance; /* this instance's stable name: owner of its runs */
    sc_allowlist *allow;
} sc_settings;

typedef struct sc_app {
    uv_loop_t *loop;
    http_server *http;
    db_pool *db;
    db_relay *relay;
    httpc_client *httpc;
    core_signals *signals;
    const char *brokers;
    const char *source; /* ce_source */
    sc_settings cfg;
    bool stopping;
    bool started; /* migrations done, recovery done: the scheduler runs */
    uv_timer_t scheduler;
    uv_timer_t progress;
    bool scheduling;                          /* a scheduler query is in flight */
    char process_start[CORE_RFC3339_LEN + 1]; /* runs of ours older than this: a past life */
    sc_run *runs;                             /* active runs */
    int nruns;
    sc_host *hosts;
    int64_t items_since_analyze; /* new items since the last ANALYZE items */
    core_metric *m_fetches;
    core_metric *m_items;
    core_metric *m_runs;
    core_metric *m_refused;
    int exit_code;
    void (*on_runs_drained)(struct sc_app *app);
} sc_app;

void sc_metrics_init(sc_app *app);

/* ---------------------------------------------------------------- runs */

typedef enum sc_start_outcome {
    SC_START_OK,
    SC_START_NOT_FOUND,
    SC_START_RUNNING, /* a run of this source is already in progress */
    SC_START_UNAVAILABLE,
} sc_start_outcome;

/* run: the run's JSON (a new reference) when SC_START_OK. */
typedef void (*sc_start_cb)(sc_start_outcome outcome, json_t *run, void *data);

/* Starts a run of a source: records it (state running) with its ScrapeRunEvent in one
 * transaction, then crawls. trigger: "manual", "schedule" or "resume". */
void sc_run_start(sc_app *app, const char *source_id, const char *trigger, sc_start_cb cb,
                  void *data);
/* Runs whose instance died (lease expired, or ours from before a restart) are marked
 * interrupted with their event; interrupted runs are then resumed by a new run. Called at
 * start-up and on every scheduler tick. */
void sc_recover(sc_app *app, void (*done)(sc_app *app, bool ok));
/* The scheduler tick: starts due sources. */
void sc_scheduler_start(sc_app *app);
/* SIGTERM: stop fetching, mark every active run interrupted (to be resumed), then calls
 * app->on_runs_drained. */
void sc_runs_drain(sc_app *app);
/* The source was deleted: its active run stops. */
void sc_run_cancel_source(sc_app *app, const char *source_id);
/* Closes the per-host timers (after the loop stopped using them). */
void sc_hosts_close(sc_app *app);

/* ---------------------------------------------------------------- JSON of rows */

extern const char sc_source_cols[];
extern const char sc_run_cols[];
extern const char sc_item_cols[];
json_t *sc_source_json(const db_result *r, int row);
json_t *sc_run_json(const db_result *r, int row);
json_t *sc_item_row_json(const db_result *r, int row);

void sc_api_register(sc_app *app);

#endif
