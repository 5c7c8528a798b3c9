/* content-manager: the service's shared state and the operations its handlers run. */
#ifndef CM_APP_H
#define CM_APP_H

#include "bus.h"
#include "content.h"
#include "core.h"
#include "db.h"
#include "http.h"

#define CM_SERVICE  "content-manager"
#define CM_CONSUMER "content-manager.generation-progress" /* inbox consumer name */

typedef struct cm_app {
    uv_loop_t *loop;
    http_server *http;
    bus_producer *producer; /* dead letters */
    bus_consumer *consumer;
    db_pool *db;
    db_relay *relay;
    core_signals *signals;
    const char *provider; /* GenerationRequest.provider */
    const char *brokers;
    const char *source; /* ce_source */
    unsigned consumer_in_flight;
    bool stopping;
    core_metric *m_created;
    core_metric *m_transitions;
    core_metric *m_progress;
    core_metric *m_scraped;
    int exit_code;
} cm_app;

void cm_metrics_init(cm_app *app);

/* Columns every item query returns, in the order cm_item_json reads them by name. */
extern const char cm_item_cols[];
/* The item of row `row` as the API shows it (a new reference). */
json_t *cm_item_json(const db_result *r, int row);

/* ---------------------------------------------------------------- operations */

typedef enum cm_outcome {
    CM_OK,
    CM_NOT_FOUND,
    CM_CONFLICT,       /* the action is not allowed from the item's status */
    CM_VERSION,        /* the expected version does not match */
    CM_STALE,          /* a result for a job that is not the item's current one */
    CM_DUPLICATE,      /* the event was handled before (inbox) */
    CM_UNAVAILABLE,    /* the database failed: retry later */
    CM_UNKNOWN_SOURCE, /* create: a source names a scraped item this service does not have */
} cm_outcome;

typedef struct cm_op cm_op;
typedef void (*cm_op_done)(cm_op *op, cm_outcome outcome);

struct cm_op {
    cm_app *app;
    cm_action action;
    char id[CORE_UUID_STRLEN + 1];
    char job_id[CORE_UUID_STRLEN + 1]; /* complete/fail: the job the result is for */
    char event_id[128];                /* inbox claim when not empty */
    char *text;                        /* edit/complete: the body; fail: the reason (owned) */
    int64_t expect_version;            /* 0: any */
    cm_brief brief;                    /* generate (create) */
    /* results */
    cm_status from, to;
    int64_t version;
    json_t *item;     /* the item after the change (owned; NULL unless CM_OK) */
    char detail[256]; /* why, for CM_CONFLICT / CM_VERSION / CM_UNAVAILABLE */
    cm_op_done done;
    void *data;
    /* internal */
    db_txn *txn;
    char new_job[CORE_UUID_STRLEN + 1];
    bool create;
};

/* Allocates an op (zeroed) for the caller to fill, run and free. */
cm_op *cm_op_new(cm_app *app, cm_action action, cm_op_done done, void *data);
void cm_op_free(cm_op *op);
/* Creates the item of op->brief (status generating) with its GenerationRequest and ContentEvent
 * in one transaction. */
void cm_op_create(cm_op *op);
/* Applies op->action to item op->id in one transaction with its events. */
void cm_op_run(cm_op *op);

/* ---------------------------------------------------------------- wiring */

void cm_api_register(cm_app *app);
/* One consumer (group content-manager) for ai.generation.progress and scraper.items. */
bus_consumer *cm_progress_consumer(cm_app *app, const char *brokers, char *err, size_t errlen);
/* A scraper.items record: upserted into the scraped_items projection. */
void cm_scraped_on_message(bus_consumer *c, const bus_message *m, cm_app *app);

#endif
