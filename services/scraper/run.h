/* scraper: a run in memory, shared by the crawl engine (crawl.c) and the store (store.c). */
#ifndef SC_RUN_H
#define SC_RUN_H

#include "app.h"

/* A set (or map) of strings, open addressing; values are owned strings or NULL. */
typedef struct sc_strmap {
    char **keys;
    char **vals;
    size_t n, cap;
} sc_strmap;

bool sc_strmap_add(sc_strmap *m, const char *key, const char *val); /* false if present */
const char *sc_strmap_get(const sc_strmap *m, const char *key, bool *found);
void sc_strmap_free(sc_strmap *m);

/* An extracted item waiting to be stored. */
typedef struct sc_store_item {
    struct sc_store_item *next;
    sc_item it;
    char *page_url; /* the URL fetched (validators are kept for it) */
    char page_fp[33];
    char url_fp[33]; /* of the item's URL (canonical when on the same host) */
    char *etag, *last_modified;
    char content_hash[65];
    uint64_t simhash;
} sc_store_item;

struct sc_run {
    sc_run *next;
    sc_app *app;
    char id[CORE_UUID_STRLEN + 1];
    char source_id[CORE_UUID_STRLEN + 1];
    char *url;
    char kind[16];
    sc_patterns *include, *exclude;
    int64_t max_items;
    int64_t fetched, new_items, unchanged, failed, disallowed;
    int64_t pages_enqueued;
    int64_t pending; /* tasks queued or in flight, and items waiting to be stored */
    bool dirty;      /* counters changed since the last progress record */
    bool progress_inflight;
    bool finish_wanted; /* finish once the progress record in flight is written */
    bool finished;
    bool cancelled;
    bool root_failed;
    core_buf errors; /* the error summary: distinct lines, bounded */
    int nerrors;
    sc_strmap seen;       /* normalised URLs already queued */
    sc_strmap validators; /* page url_fp -> "etag\nlast-modified" from earlier runs */
    sc_store_item *sq_head, *sq_tail;
    int sq_len;     /* items waiting for the store */
    bool throttled; /* fetching paused until the store catches up */
    bool storing;
};

/* Records one error line in the run's summary (at most a few lines are kept). */
void sc_run_error(sc_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queues an item for storage (takes it); the store writes it with its event. */
void sc_store_enqueue(sc_run *run, sc_store_item *si);
/* Called by the store when a batch is written (or failed). */
void sc_run_task_done(sc_run *run);
void sc_store_item_free(sc_store_item *si);

/* Records progress (counters + event) or the end (state + event) of a run that is still
 * running here; ok false when it is not (interrupted by another instance) or on errors. */
typedef void (*sc_record_cb)(sc_run *run, bool ok, const char *err);
void sc_record_progress(sc_run *run, const char *state, sc_record_cb cb);
/* A run's ScrapeRunEvent in the outbox of transaction t. */
void sc_outbox_run_event(db_txn *t, sc_run *run, const char *state, db_txn_cb cb, void *data);
/* The "started" event, in the transaction that inserts the run. */
void sc_record_outbox_started(db_txn *t, sc_run *run, db_txn_cb cb, void *data);
/* Loads the validators of the source's pages into run->validators. */
void sc_load_validators(sc_run *run, sc_record_cb cb);

/* crawl.c: queues the run's own URL; drops queued work when draining. */
void sc_run_begin_crawl(sc_run *run);
/* Back-pressure: a run stops fetching while this many extracted items wait for the store. */
#define SC_STORE_BACKLOG 128
void sc_hosts_pump_all(sc_app *app);
void sc_hosts_drop_queued(sc_app *app);

#endif
