/*
 * Consumer of ai.generation.progress (group content-manager). "done" and "failed" for the
 * item's current job change its status (inbox claim, change and ContentEvent in one
 * transaction); intermediate stages update stage/percent; results of older jobs and of unknown
 * items are ignored; malformed records are dead-lettered (BUS_FAIL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "contentengine/v1/content.pb-c.h"

typedef struct progress_ctx {
    bus_consumer *c;
    const bus_message *m;
} progress_ctx;

static void on_effect(cm_op *op, cm_outcome outcome)
{
    progress_ctx *pc = op->data;
    static const char *const names[] = {"applied", "unknown_item", "conflict", "version",
                                        "stale",   "duplicate",    "error"};
    core_counter_add(op->app->m_progress, 1, names[outcome]);
    if (outcome == CM_UNAVAILABLE)
        bus_done(pc->c, pc->m, BUS_RETRY, op->detail[0] ? op->detail : "database unavailable");
    else
        bus_done(pc->c, pc->m, BUS_OK, NULL);
    if (outcome != CM_OK && outcome != CM_DUPLICATE)
        core_log_info("progress ignored", CORE_F_STR("item_id", op->id),
                      CORE_F_STR("job_id", op->job_id), CORE_F_STR("result", names[outcome]));
    free(pc);
    cm_op_free(op);
}

typedef struct stage_ctx {
    cm_app *app;
    bus_consumer *c;
    const bus_message *m;
} stage_ctx;

static void on_stage(const db_result *r, void *data)
{
    stage_ctx *sc = data;
    if (db_result_ok(r)) {
        core_counter_add(sc->app->m_progress, 1, "stage");
        bus_done(sc->c, sc->m, BUS_OK, NULL);
    } else {
        bus_done(sc->c, sc->m, BUS_RETRY, db_result_error(r));
    }
    free(sc);
}

static bool canonical_uuid(const char *s, char out[CORE_UUID_STRLEN + 1])
{
    core_uuid u;
    if (!s || !core_uuid_parse(s, &u)) return false;
    core_uuid_format(&u, out);
    return true;
}

static void on_progress(bus_consumer *c, const bus_message *m, void *data)
{
    cm_app *app = data;
    if (strcmp(m->topic, TOPIC_SCRAPER_ITEMS) == 0) {
        cm_scraped_on_message(c, m, app);
        return;
    }
    if (strcmp(m->ce_type, "contentengine.ai.generation.progress.v1") != 0) {
        core_counter_add(app->m_progress, 1, "malformed");
        bus_done(c, m, BUS_FAIL, "unexpected ce_type");
        return;
    }
    Contentengine__V1__GenerationProgress *p =
        contentengine__v1__generation_progress__unpack(NULL, m->value_len, m->value);
    char item[CORE_UUID_STRLEN + 1], job[CORE_UUID_STRLEN + 1];
    const char *why = NULL;
    if (!p)
        why = "not a GenerationProgress";
    else if (!canonical_uuid(p->item_id, item))
        why = "item_id is not a UUID";
    else if (!canonical_uuid(p->job_id, job))
        why = "job_id is not a UUID";
    else if (!m->ce_id[0])
        why = "no ce_id";
    if (why) {
        core_counter_add(app->m_progress, 1, "malformed");
        bus_done(c, m, BUS_FAIL, why);
        if (p) contentengine__v1__generation_progress__free_unpacked(p, NULL);
        return;
    }
    const char *stage = p->stage ? p->stage : "";
    if (strcmp(stage, "done") == 0 || strcmp(stage, "failed") == 0) {
        bool done = stage[0] == 'd';
        progress_ctx *pc = malloc(sizeof *pc);
        pc->c = c;
        pc->m = m;
        cm_op *op = cm_op_new(app, done ? CM_ACT_COMPLETE : CM_ACT_FAIL, on_effect, pc);
        memcpy(op->id, item, sizeof op->id);
        memcpy(op->job_id, job, sizeof op->job_id);
        snprintf(op->event_id, sizeof op->event_id, "%s", m->ce_id);
        if (done) {
            op->text = strdup(p->body ? p->body : "");
        } else {
            const char *err = p->error && *p->error ? p->error : "generation failed";
            op->text = strndup(err, CM_REASON_MAX);
        }
        cm_op_run(op);
    } else if (strcmp(stage, "queued") == 0 || strcmp(stage, "ranking") == 0 ||
               strcmp(stage, "composing") == 0) {
        /* Not a state change: the latest stage of the current job, idempotent by itself.
         * Committed without waiting for the WAL flush (synchronous_commit off for this one
         * statement): a crash can lose only this advisory stage, which the job's next stage
         * or its "done" overwrites, and the consumer no longer waits for an fsync per stage
         * (three per brief, on the one message in flight). */
        char pct[16];
        int percent = p->percent < 0 ? 0 : p->percent > 100 ? 100 : p->percent;
        snprintf(pct, sizeof pct, "%d", percent);
        const char *params[] = {item, job, stage, pct};
        stage_ctx *sc = malloc(sizeof *sc);
        *sc = (stage_ctx){app, c, m};
        db_query(app->db,
                 "UPDATE items SET stage = $3, percent = GREATEST(COALESCE(percent, 0), $4::int) "
                 "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit "
                 "WHERE id = $1 AND job_id = $2::uuid AND status = 'generating'",
                 4, params, on_stage, sc);
    } else {
        core_counter_add(app->m_progress, 1, "malformed");
        bus_done(c, m, BUS_FAIL, "unknown stage");
    }
    contentengine__v1__generation_progress__free_unpacked(p, NULL);
}

bus_consumer *cm_progress_consumer(cm_app *app, const char *brokers, char *err, size_t errlen)
{
    static const char *const topics[] = {TOPIC_AI_GENERATION_PROGRESS, TOPIC_SCRAPER_ITEMS, NULL};
    return bus_consumer_new(app->loop,
                            &(bus_consumer_config){.brokers = brokers,
                                                   .group_id = CM_SERVICE,
                                                   .client_id = CM_SERVICE,
                                                   .topics = topics,
                                                   .dlq_producer = app->producer,
                                                   .max_in_flight = app->consumer_in_flight},
                            on_progress, app, err, errlen);
}
