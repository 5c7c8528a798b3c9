/* ai-processor jobs: intake, running on the provider, events through the outbox, resume. */
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

#define CE_TYPE_REQUESTED "contentengine.ai.generation.requested.v1"
#define CE_TYPE_PROGRESS  "contentengine.ai.generation.progress.v1"
#define MAX_PROGRESS      4 /* progress events waiting to be written, per job */

typedef struct ai_job ai_job;

/* An intrusive doubly linked list: jobs and intakes keep their link as their first member. */
typedef struct node {
    struct node *prev, *next;
} node;

typedef struct node_list {
    node *head, *tail;
    int n;
} node_list;

/* A message being recorded (several at once with the consumer's max_in_flight, never two of
 * one partition). */
typedef struct intake {
    node link; /* first: in owner->intakes, oldest first */
    ai_jobs *owner;
    uv_timer_t retry; /* backs off a failed recording; closing it frees the intake */
    bus_consumer *consumer;
    const bus_message *msg;
    ai_request req;
    char event_id[160];
    char trace_id[CORE_TRACE_ID_LEN + 1];
    unsigned attempt;
    bool inserted;
    bool parked; /* recorded, waiting for room in the queue before acknowledging */
} intake;

struct ai_job {
    node link; /* first: in owner->waiting or owner->running */
    ai_jobs *owner;
    uv_timer_t retry; /* backs off a failed final write; closing it frees the job */
    ai_request req;
    bool req_ok; /* req was decoded (a resumed job's stored request may not be) */
    char job_id[AI_ID_MAX + 1];
    char item_id[AI_ID_MAX + 1];
    char provider[64];
    char trace_id[CORE_TRACE_ID_LEN + 1];
    provider_job *pjob;
    int64_t started_ns;
    /* events to write, in order: progress first, then the final one */
    struct {
        char stage[16];
        int percent;
    } progress[MAX_PROGRESS];
    int nprogress;
    bool final_ready, final_written, abandoned, writing;
    unsigned final_attempts;
    provider_error error;
    char *body;
    char *error_msg;
    provider_stats stats;
};

struct ai_jobs {
    ai_jobs_config cfg;
    node_list waiting, running; /* of ai_job */
    node_list intakes;          /* messages being recorded, and recorded ones held back (parked) */
    bool draining;
    uv_timer_t drain_timer;
    void (*drained)(void *data);
    void *drained_data;
    core_metric *m_total, *m_seconds, *m_in_flight, *m_waiting;
};

static void jobs_pump(ai_jobs *j);
static void job_write_pump(ai_job *job);
static void drain_check(ai_jobs *j);
static void on_job_retry(uv_timer_t *t);
static void on_intake_retry(uv_timer_t *t);
static void intake_ack_parked(ai_jobs *j, bool all);

/* ---------------------------------------------------------------- lists */

static void list_push(node_list *l, node *e)
{
    e->prev = l->tail;
    e->next = NULL;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    l->n++;
}

static void list_remove(node_list *l, node *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
    l->n--;
}

/* The job or intake whose link e is (the link is the first member of both). */
static ai_job *job_of(node *e)
{
    return (ai_job *)e;
}

static intake *intake_of(node *e)
{
    return (intake *)e;
}

static void gauges(ai_jobs *j)
{
    core_gauge_set(j->m_in_flight, j->running.n);
    core_gauge_set(j->m_waiting, j->waiting.n);
}

/* ---------------------------------------------------------------- jobs */

static ai_job *job_new(ai_jobs *j, const char *job_id, const char *item_id, const char *trace_id)
{
    ai_job *job = calloc(1, sizeof *job);
    if (!job) abort();
    job->owner = j;
    snprintf(job->job_id, sizeof job->job_id, "%s", job_id);
    snprintf(job->item_id, sizeof job->item_id, "%s", item_id);
    snprintf(job->provider, sizeof job->provider, "%s", provider_name(j->cfg.provider));
    if (trace_id && strlen(trace_id) == CORE_TRACE_ID_LEN)
        snprintf(job->trace_id, sizeof job->trace_id, "%s", trace_id);
    else
        core_trace_id_new(job->trace_id);
    uv_timer_init(j->cfg.loop, &job->retry);
    job->retry.data = job;
    return job;
}

static void job_freed(uv_handle_t *h)
{
    ai_job *job = h->data;
    if (job->req_ok) ai_request_free(&job->req);
    free(job->body);
    free(job->error_msg);
    free(job);
}

static void job_free(ai_job *job)
{
    if (job->pjob) provider_cancel(job->owner->cfg.provider, job->pjob);
    job->pjob = NULL;
    uv_close((uv_handle_t *)&job->retry, job_freed);
}

/* A running job is over: written, or abandoned to the next start. */
static void job_end(ai_job *job)
{
    ai_jobs *j = job->owner;
    list_remove(&j->running, &job->link);
    if (job->final_written) {
        const char *result = job->error == PROVIDER_OK ? "done" : "failed";
        core_counter_add(j->m_total, 1, job->provider, result);
        double secs = (double)(core_mono_ns() - job->started_ns) / 1e9;
        core_histogram_observe(j->m_seconds, secs, job->provider);
    }
    job_free(job);
    gauges(j);
    jobs_pump(j);
    drain_check(j);
}

static void set_final_error(ai_job *job, provider_error error, const char *msg)
{
    job->error = error;
    free(job->error_msg);
    job->error_msg = strdup(msg ? msg : provider_error_name(error));
    if (!job->error_msg) abort();
    job->final_ready = true;
}

static void on_provider_progress(provider_job *pj, const char *stage, int percent, void *data)
{
    (void)pj;
    ai_job *job = data;
    if (job->nprogress == MAX_PROGRESS) return; /* progress is advisory; the final one is not */
    snprintf(job->progress[job->nprogress].stage, sizeof job->progress[0].stage, "%s", stage);
    job->progress[job->nprogress].percent = percent;
    job->nprogress++;
    job_write_pump(job);
}

static void on_provider_done(provider_job *pj, const provider_result *res, void *data)
{
    (void)pj;
    ai_job *job = data;
    job->pjob = NULL; /* dead once this returns */
    job->stats = res->stats;
    if (res->error == PROVIDER_OK) {
        job->error = PROVIDER_OK;
        job->body = malloc(res->body_len + 1);
        if (!job->body) abort();
        memcpy(job->body, res->body, res->body_len);
        job->body[res->body_len] = '\0';
        job->final_ready = true;
    } else {
        set_final_error(job, res->error, res->message);
    }
    job_write_pump(job);
}

/* Marks the row running (a plain statement: the row's status guard keeps a late one harmless)
 * and hands the request to the provider. */
static void job_start(ai_job *job)
{
    ai_jobs *j = job->owner;
    list_push(&j->running, &job->link);
    job->started_ns = core_mono_ns();
    core_log_set_trace(job->trace_id);
    const char *vals[1] = {job->job_id};
    db_query(j->cfg.db,
             "UPDATE jobs SET status = 'running', attempts = attempts + 1, "
             "started_at = coalesce(started_at, now()) "
             "WHERE job_id = $1 AND status IN ('queued', 'running')",
             1, vals, NULL, NULL);
    if (!job->req_ok) {
        set_final_error(job, PROVIDER_ERR_INTERNAL, "the stored request cannot be decoded");
    } else if (*job->req.provider && strcmp(job->req.provider, job->provider) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "provider \"%.64s\" is not configured (this service runs %s)",
                 job->req.provider, job->provider);
        snprintf(job->provider, sizeof job->provider, "%.63s", job->req.provider);
        set_final_error(job, PROVIDER_ERR_INVALID, msg);
    } else {
        provider_callbacks cb = {on_provider_progress, on_provider_done, job};
        job->pjob = provider_generate(j->cfg.provider, &job->req.req, &cb);
        if (!job->pjob) set_final_error(job, PROVIDER_ERR_INTERNAL, "provider refused the job");
    }
    core_log_debug("job started", CORE_F_STR("job_id", job->job_id),
                   CORE_F_STR("item_id", job->item_id));
    core_log_set_trace(NULL);
    job_write_pump(job);
}

static void jobs_pump(ai_jobs *j)
{
    while (!j->draining && j->waiting.head && j->running.n < j->cfg.max_concurrent) {
        ai_job *job = job_of(j->waiting.head);
        list_remove(&j->waiting, &job->link);
        job_start(job);
    }
    gauges(j);
    intake_ack_parked(j, false); /* room in the queue again: acknowledge what was held back */
}

/* ---------------------------------------------------------------- event writes */

/* One transaction writes every event the job has ready: the progress stages reported since
 * the last write and, when the provider has finished, the final one. A fast provider (local)
 * reports ranking, composing and done almost at once; one transaction instead of three keeps
 * the pipeline short. */
typedef struct job_write {
    ai_job *job;
    bool final;  /* the last entry is the final event (done or failed) */
    int n, next; /* entries, and the next one to add to the outbox */
    struct {
        char stage[16];
        int percent;
    } ev[MAX_PROGRESS + 1];
    char *error; /* first failure */
} job_write;

static void write_outbox(db_txn *t, ai_job *job, const char *stage, int percent, db_txn_cb cb,
                         void *data)
{
    ai_progress p = {.job_id = job->job_id,
                     .item_id = job->item_id,
                     .stage = stage,
                     .percent = percent,
                     .body = strcmp(stage, "done") == 0 ? job->body : NULL,
                     .error = strcmp(stage, "failed") == 0 ? job->error_msg : NULL,
                     .provider = job->provider};
    size_t len = 0;
    uint8_t *payload = ai_progress_encode(&p, &len);
    bus_record r = {.topic = TOPIC_AI_GENERATION_PROGRESS,
                    .partition = BUS_PARTITION_ANY,
                    .key = job->item_id,
                    .key_len = strlen(job->item_id),
                    .value = payload,
                    .value_len = len,
                    .ce_type = CE_TYPE_PROGRESS,
                    .ce_subject = job->job_id};
    db_outbox_add(t, &r, cb, data);
    free(payload);
}

static void write_finished(job_write *w, bool ok)
{
    ai_job *job = w->job;
    job->writing = false;
    if (w->final) {
        if (ok) {
            job->final_written = true;
        } else if (job->owner->draining || job->abandoned) {
            job->abandoned = true; /* stays running in the table: the next start resumes it */
        } else {
            /* The done event must not be lost: try again after a pause. */
            uint64_t delay = (uint64_t)core_backoff_ms(job->final_attempts++, 100, 5000);
            core_log_warn("job result not recorded, retrying", CORE_F_STR("job_id", job->job_id),
                          CORE_F_STR("error", w->error ? w->error : "unknown"),
                          CORE_F_INT("retry_ms", delay));
            job->writing = true; /* the timer owns the next write */
            free(w->error);
            free(w);
            uv_timer_start(&job->retry, on_job_retry, delay, 0);
            return;
        }
    } else if (!ok) {
        core_log_warn("progress not recorded", CORE_F_STR("job_id", job->job_id),
                      CORE_F_STR("stage", w->ev[w->n - 1].stage),
                      CORE_F_STR("error", w->error ? w->error : "unknown"));
    }
    free(w->error);
    free(w);
    job_write_pump(job);
}

static void on_write_ended(const db_result *r, void *data)
{
    job_write *w = data;
    bool ok = db_result_ok(r) && !w->error;
    if (!w->error && !db_result_ok(r)) w->error = strdup(db_result_error(r));
    write_finished(w, ok);
}

static void on_write_outboxed(db_txn *t, const db_result *r, void *data)
{
    job_write *w = data;
    if (!db_result_ok(r)) {
        if (!w->error) w->error = strdup(db_result_error(r));
        db_rollback(t, on_write_ended, w);
        return;
    }
    if (w->next < w->n) {
        int i = w->next++;
        write_outbox(t, w->job, w->ev[i].stage, w->ev[i].percent, on_write_outboxed, w);
        return;
    }
    db_commit(t, on_write_ended, w);
}

static void on_write_updated(db_txn *t, const db_result *r, void *data)
{
    job_write *w = data;
    ai_job *job = w->job;
    if (!db_result_ok(r)) {
        if (!w->error) w->error = strdup(db_result_error(r));
        db_rollback(t, on_write_ended, w);
        return;
    }
    if (db_result_affected(r) == 0) {
        /* Finished already (by an earlier run of this job): no second event of any kind. */
        if (w->final) core_log_info("job already finished", CORE_F_STR("job_id", job->job_id));
        job->nprogress = 0;
        db_rollback(t, on_write_ended, w);
        return;
    }
    core_log_set_trace(job->trace_id);
    w->next = 1;
    write_outbox(t, job, w->ev[0].stage, w->ev[0].percent, on_write_outboxed, w);
}

static void on_write_begun(db_txn *t, const db_result *r, void *data)
{
    job_write *w = data;
    ai_job *job = w->job;
    if (!t) {
        w->error = strdup(db_result_error(r));
        write_finished(w, false);
        return;
    }
    const char *stage = w->ev[w->n - 1].stage;
    if (!w->final) {
        const char *vals[2] = {job->job_id, stage};
        db_txn_query(t,
                     "UPDATE jobs SET stage = $2 WHERE job_id = $1 "
                     "AND status IN ('queued', 'running')",
                     2, vals, on_write_updated, w);
        return;
    }
    char in_b[24], out_b[24], in_t[24], out_t[24];
    snprintf(in_b, sizeof in_b, "%llu", (unsigned long long)job->stats.input_bytes);
    snprintf(out_b, sizeof out_b, "%llu", (unsigned long long)job->stats.output_bytes);
    snprintf(in_t, sizeof in_t, "%llu", (unsigned long long)job->stats.input_tokens);
    snprintf(out_t, sizeof out_t, "%llu", (unsigned long long)job->stats.output_tokens);
    const char *vals[8] = {job->job_id,
                           stage,
                           in_b,
                           out_b,
                           in_t,
                           out_t,
                           job->stats.tokens_estimated || !job->stats.provider ? "true" : "false",
                           job->error == PROVIDER_OK ? NULL : job->error_msg};
    db_txn_query(t,
                 "UPDATE jobs SET status = $2, stage = $2, finished_at = now(), "
                 "started_at = coalesce(started_at, now()), input_bytes = $3::bigint, "
                 "output_bytes = $4::bigint, input_tokens = $5::bigint, "
                 "output_tokens = $6::bigint, tokens_estimated = $7::boolean, error = $8 "
                 "WHERE job_id = $1 AND status IN ('queued', 'running')",
                 8, vals, on_write_updated, w);
}

/* Writes the job's pending events, one transaction at a time, so that they commit (and
 * publish) in order. */
static void job_write_pump(ai_job *job)
{
    if (job->writing) return;
    bool progress = job->nprogress > 0 && !job->abandoned;
    bool final = job->final_ready && !job->final_written && !job->abandoned;
    if (!progress && !final) {
        if (job->final_written || job->abandoned) job_end(job);
        return;
    }
    job_write *w = calloc(1, sizeof *w);
    if (!w) abort();
    for (int i = 0; progress && i < job->nprogress; i++) {
        snprintf(w->ev[i].stage, sizeof w->ev[i].stage, "%s", job->progress[i].stage);
        w->ev[i].percent = job->progress[i].percent;
    }
    w->n = progress ? job->nprogress : 0;
    job->nprogress = 0;
    if (final) {
        w->final = true;
        snprintf(w->ev[w->n].stage, sizeof w->ev[w->n].stage, "%s",
                 job->error == PROVIDER_OK ? "done" : "failed");
        w->ev[w->n].percent = 100;
        w->n++;
    }
    w->job = job;
    job->writing = true;
    db_begin(job->owner->cfg.db, on_write_begun, w);
}

static void on_job_retry(uv_timer_t *t)
{
    ai_job *job = t->data;
    job->writing = false;
    job_write_pump(job);
}

/* ---------------------------------------------------------------- intake */

static void intake_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Out of the list and acknowledged; freed once its timer has closed. */
static void intake_end(intake *in, bus_result result, const char *error)
{
    ai_jobs *j = in->owner;
    list_remove(&j->intakes, &in->link);
    bus_done(in->consumer, in->msg, result, error);
    uv_close((uv_handle_t *)&in->retry, intake_closed);
}

/* Acknowledges parked intakes, oldest first, while the queue has room (all: regardless). */
static void intake_ack_parked(ai_jobs *j, bool all)
{
    for (node *e = j->intakes.head, *next; e; e = next) {
        next = e->next;
        intake *in = intake_of(e);
        if (!in->parked) continue;
        if (!all && j->waiting.n >= j->cfg.max_queued) break;
        intake_end(in, BUS_OK, NULL);
    }
}

static void intake_finish(intake *in, bus_result result, const char *error)
{
    ai_jobs *j = in->owner;
    if (result == BUS_OK && in->inserted) {
        /* the job is recorded: it now lives in the queue, with the decoded request */
        ai_job *job = job_new(j, in->req.job_id, in->req.item_id, in->trace_id);
        job->req = in->req;
        job->req_ok = true;
        memset(&in->req, 0, sizeof in->req);
        list_push(&j->waiting, &job->link);
        core_log_info("job queued", CORE_F_STR("job_id", job->job_id),
                      CORE_F_STR("item_id", job->item_id));
    }
    ai_request_free(&in->req);
    if (result == BUS_OK && !j->draining && j->waiting.n >= j->cfg.max_queued) {
        in->parked = true; /* acknowledged by jobs_pump once the queue has room */
        jobs_pump(j);
        return;
    }
    intake_end(in, result, error);
    jobs_pump(j);
    drain_check(j);
}

static void intake_failed(intake *in, const char *error)
{
    ai_jobs *j = in->owner;
    if (j->draining) {
        /* Given back uncommitted: the next consumer of the partition records it. */
        intake_finish(in, BUS_RETRY, error);
        return;
    }
    /* The database is down or the transaction lost: keep the message and try again (a good
     * request must not be dead-lettered because PostgreSQL restarted). */
    uint64_t delay = (uint64_t)core_backoff_ms(in->attempt++, 100, 5000);
    core_log_warn("job not recorded, retrying", CORE_F_STR("job_id", in->req.job_id),
                  CORE_F_STR("error", error), CORE_F_INT("retry_ms", delay));
    in->inserted = false;
    uv_timer_start(&in->retry, on_intake_retry, delay, 0);
}

static void on_intake_committed(const db_result *r, void *data)
{
    intake *in = data;
    if (!db_result_ok(r)) {
        intake_failed(in, db_result_error(r));
        return;
    }
    intake_finish(in, BUS_OK, NULL);
}

static void on_intake_step(db_txn *t, const db_result *r, void *data)
{
    intake *in = data;
    if (!db_result_ok(r)) {
        char e[256];
        snprintf(e, sizeof e, "%s", db_result_error(r));
        db_rollback(t, NULL, NULL);
        intake_failed(in, e);
        return;
    }
    db_commit(t, on_intake_committed, in);
}

static void on_intake_inserted(db_txn *t, const db_result *r, void *data)
{
    intake *in = data;
    if (!db_result_ok(r)) {
        on_intake_step(t, r, in);
        return;
    }
    in->inserted = db_result_rows(r) > 0;
    if (!in->inserted) {
        /* the same job_id under another event id: one job, so no second `queued` */
        core_log_info("duplicate job ignored", CORE_F_STR("job_id", in->req.job_id));
        db_commit(t, on_intake_committed, in);
        return;
    }
    ai_progress p = {.job_id = in->req.job_id,
                     .item_id = in->req.item_id,
                     .stage = "queued",
                     .percent = 0,
                     .provider = *in->req.provider ? in->req.provider
                                                   : provider_name(in->owner->cfg.provider)};
    size_t len = 0;
    uint8_t *payload = ai_progress_encode(&p, &len);
    bus_record rec = {.topic = TOPIC_AI_GENERATION_PROGRESS,
                      .partition = BUS_PARTITION_ANY,
                      .key = in->req.item_id,
                      .key_len = strlen(in->req.item_id),
                      .value = payload,
                      .value_len = len,
                      .ce_type = CE_TYPE_PROGRESS,
                      .ce_subject = in->req.job_id};
    db_outbox_add(t, &rec, on_intake_step, in);
    free(payload);
}

static void on_intake_recheck(db_txn *t, const db_result *r, void *data)
{
    intake *in = data;
    in->inserted = db_result_ok(r) && db_result_rows(r) > 0;
    db_rollback(t, on_intake_committed, in);
}

static void on_intake_claimed(db_txn *t, const db_result *r, bool first, void *data)
{
    intake *in = data;
    if (!db_result_ok(r)) {
        on_intake_step(t, r, in);
        return;
    }
    if (!first && in->attempt > 0) {
        /* A retry after a commit whose outcome was unknown (the connection broke): it did
         * commit, so the job is recorded but nobody runs it yet. */
        const char *vals[1] = {in->req.job_id};
        db_txn_query(t, "SELECT 1 FROM jobs WHERE job_id = $1 AND status = 'queued'", 1, vals,
                     on_intake_recheck, in);
        return;
    }
    if (!first) {
        core_log_info("redelivered event ignored", CORE_F_STR("event_id", in->event_id));
        in->inserted = false;
        db_rollback(t, on_intake_committed, in);
        return;
    }
    const char *vals[6] = {in->req.job_id,
                           in->req.item_id,
                           provider_kind_name(in->req.req.kind),
                           *in->req.provider ? in->req.provider
                                             : provider_name(in->owner->cfg.provider),
                           in->trace_id,
                           (const char *)in->msg->value};
    int lengths[6] = {0, 0, 0, 0, 0, (int)in->msg->value_len};
    int formats[6] = {0, 0, 0, 0, 0, 1};
    db_txn_query_params(t,
                        "INSERT INTO jobs (job_id, item_id, kind, provider, trace_id, request) "
                        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id) DO NOTHING "
                        "RETURNING job_id",
                        6, vals, lengths, formats, on_intake_inserted, in);
}

static void on_intake_begun(db_txn *t, const db_result *r, void *data)
{
    intake *in = data;
    if (!t) {
        intake_failed(in, db_result_error(r));
        return;
    }
    db_inbox_claim(t, in->owner->cfg.consumer_name, in->event_id, on_intake_claimed, in);
}

static void intake_begin(intake *in)
{
    db_begin(in->owner->cfg.db, on_intake_begun, in);
}

static void on_intake_retry(uv_timer_t *t)
{
    intake *in = t->data;
    if (in->owner->draining) {
        intake_finish(in, BUS_RETRY, "draining");
        return;
    }
    intake_begin(in);
}

void ai_jobs_on_message(bus_consumer *c, const bus_message *m, void *data)
{
    ai_jobs *j = data;
    if (*m->ce_type && strcmp(m->ce_type, CE_TYPE_REQUESTED) != 0) {
        char e[200];
        snprintf(e, sizeof e, "unexpected ce_type \"%.128s\" (want " CE_TYPE_REQUESTED ")",
                 m->ce_type);
        core_log_warn("request rejected", CORE_F_STR("error", e));
        bus_done(c, m, BUS_FAIL, e);
        return;
    }
    intake *in = calloc(1, sizeof *in);
    if (!in) abort();
    char err[256];
    if (!ai_request_decode(m->value, m->value_len, &in->req, err, sizeof err)) {
        free(in);
        core_log_warn("request rejected", CORE_F_STR("error", err),
                      CORE_F_INT("partition", m->partition), CORE_F_INT("offset", m->offset));
        bus_done(c, m, BUS_FAIL, err);
        return;
    }
    in->owner = j;
    in->consumer = c;
    in->msg = m;
    snprintf(in->trace_id, sizeof in->trace_id, "%s", m->trace_id);
    /* The event id the inbox records: ce_id, or where the record sits when it has none. */
    if (*m->ce_id)
        snprintf(in->event_id, sizeof in->event_id, "%s", m->ce_id);
    else
        snprintf(in->event_id, sizeof in->event_id, "kafka:%.100s:%d:%lld", m->topic,
                 (int)m->partition, (long long)m->offset);
    uv_timer_init(j->cfg.loop, &in->retry);
    in->retry.data = in;
    list_push(&j->intakes, &in->link);
    intake_begin(in);
}

/* ---------------------------------------------------------------- resume */

typedef struct resume_ctx {
    ai_jobs *owner;
    void (*done)(void *data, const char *err, int count);
    void *data;
} resume_ctx;

static void on_resume_rows(const db_result *r, void *data)
{
    resume_ctx *rc = data;
    ai_jobs *j = rc->owner;
    if (!db_result_ok(r)) {
        rc->done(rc->data, db_result_error(r), 0);
        free(rc);
        return;
    }
    int n = db_result_rows(r);
    for (int i = 0; i < n; i++) {
        ai_job *job = job_new(j, db_result_value(r, i, 0), db_result_value(r, i, 1),
                              db_result_value(r, i, 2));
        size_t len = 0;
        const uint8_t *bytes = db_result_bytea(r, i, 3, &len);
        char err[256];
        job->req_ok = bytes && ai_request_decode(bytes, len, &job->req, err, sizeof err);
        list_push(&j->waiting, &job->link);
    }
    if (n > 0) core_log_info("resuming unfinished jobs", CORE_F_INT("count", n));
    rc->done(rc->data, NULL, n);
    free(rc);
    jobs_pump(j);
}

void ai_jobs_resume(ai_jobs *j, void (*done)(void *data, const char *err, int count), void *data)
{
    resume_ctx *rc = calloc(1, sizeof *rc);
    if (!rc) abort();
    *rc = (resume_ctx){j, done, data};
    db_query(j->cfg.db,
             "SELECT job_id, item_id, trace_id, request FROM jobs "
             "WHERE status IN ('queued', 'running') ORDER BY queued_at, job_id",
             0, NULL, on_resume_rows, rc);
}

/* ---------------------------------------------------------------- drain */

static void drain_check(ai_jobs *j)
{
    if (!j->draining || !j->drained || j->running.n > 0 || j->intakes.n > 0) return;
    uv_timer_stop(&j->drain_timer);
    void (*fn)(void *) = j->drained;
    j->drained = NULL;
    fn(j->drained_data);
}

static void on_drain_timeout(uv_timer_t *t)
{
    ai_jobs *j = t->data;
    /* Out of time: stop generating; rows stay running and the next start resumes them. */
    for (node *e = j->running.head; e; e = e->next) {
        ai_job *job = job_of(e);
        if (job->pjob) provider_cancel(j->cfg.provider, job->pjob);
        job->pjob = NULL;
        if (!job->final_ready) job->abandoned = true;
    }
    for (node *e = j->running.head, *next; e; e = next) {
        next = e->next;
        ai_job *job = job_of(e);
        if (uv_is_active((uv_handle_t *)&job->retry)) {
            uv_timer_stop(&job->retry); /* a result that could not be recorded: resumed later */
            job->writing = false;
            job->abandoned = true;
        }
        if (!job->writing && job->abandoned) job_end(job);
    }
    drain_check(j);
}

void ai_jobs_drain(ai_jobs *j, int64_t timeout_ms, void (*done)(void *data), void *data)
{
    j->draining = true;
    j->drained = done;
    j->drained_data = data;
    /* Waiting jobs stay queued in the table for the next start. */
    while (j->waiting.head) {
        ai_job *job = job_of(j->waiting.head);
        list_remove(&j->waiting, &job->link);
        job_free(job);
    }
    gauges(j);
    uv_timer_start(&j->drain_timer, on_drain_timeout, (uint64_t)(timeout_ms > 0 ? timeout_ms : 1),
                   0);
    /* Recorded and held back: acknowledged (the jobs are in the table). Waiting to retry
     * recording: given back uncommitted. The others finish their transaction first. */
    intake_ack_parked(j, true);
    for (node *e = j->intakes.head, *next; e; e = next) {
        next = e->next;
        intake *in = intake_of(e);
        if (uv_is_active((uv_handle_t *)&in->retry)) {
            uv_timer_stop(&in->retry);
            intake_finish(in, BUS_RETRY, "draining");
        }
    }
    drain_check(j);
}

/* ---------------------------------------------------------------- lifecycle */

ai_jobs *ai_jobs_new(const ai_jobs_config *cfg)
{
    ai_jobs *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->cfg = *cfg;
    if (j->cfg.max_concurrent < 1) j->cfg.max_concurrent = 1;
    if (j->cfg.max_queued < 1) j->cfg.max_queued = 1;
    uv_timer_init(cfg->loop, &j->drain_timer);
    j->drain_timer.data = j;
    core_metrics *reg = core_metrics_default();
    j->m_total = core_metric_counter(reg, "jobs_total", "Generation jobs finished, by result",
                                     "provider,result");
    static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,  0.5,   1,    2.5,   5,    10};
    j->m_seconds =
        core_metric_histogram(reg, "job_seconds", "Generation time from start to recorded result",
                              "provider", buckets, sizeof buckets / sizeof buckets[0]);
    j->m_in_flight = core_metric_gauge(reg, "jobs_in_flight", "Jobs on the provider", NULL);
    j->m_waiting = core_metric_gauge(reg, "jobs_waiting", "Jobs waiting for a slot", NULL);
    gauges(j);
    return j;
}

static void jobs_freed(uv_handle_t *h)
{
    free(h->data);
}

void ai_jobs_free(ai_jobs *j)
{
    if (!j) return;
    while (j->waiting.head) {
        ai_job *job = job_of(j->waiting.head);
        list_remove(&j->waiting, &job->link);
        job_free(job);
    }
    /* The timer's close callback frees j (run the loop afterwards). */
    uv_close((uv_handle_t *)&j->drain_timer, jobs_freed);
}

int ai_jobs_running(const ai_jobs *j)
{
    return j->running.n;
}

int ai_jobs_waiting(const ai_jobs *j)
{
    return j->waiting.n;
}

/* ---------------------------------------------------------------- HTTP */

static void put_time(json_t *o, const char *key, const db_result *r, int col)
{
    int64_t ms = 0;
    if (!db_result_int64(r, 0, col, &ms)) {
        json_object_set_new(o, key, json_null());
        return;
    }
    char ts[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(ms, ts);
    json_object_set_new(o, key, json_string(ts));
}

static void put_int(json_t *o, const char *key, const db_result *r, int col)
{
    int64_t v = 0;
    json_object_set_new(o, key, db_result_int64(r, 0, col, &v) ? json_integer(v) : json_null());
}

static void on_job_row(const db_result *r, void *data)
{
    http_req *req = data;
    if (!db_result_ok(r)) {
        http_respond_problem(req, 503, "Service Unavailable", "the job store is unavailable");
    } else if (db_result_rows(r) == 0) {
        http_respond_problem(req, 404, "Not Found", "no job with this id");
    } else {
        json_t *o = json_object();
        static const char *const text[] = {"job_id",   "item_id", "kind",
                                           "provider", "status",  "stage"};
        for (int c = 0; c < 6; c++)
            json_object_set_new(o, text[c], json_string(db_result_value(r, 0, c)));
        put_int(o, "attempts", r, 6);
        put_time(o, "queued_at", r, 7);
        put_time(o, "started_at", r, 8);
        put_time(o, "finished_at", r, 9);
        put_int(o, "input_bytes", r, 10);
        put_int(o, "output_bytes", r, 11);
        put_int(o, "input_tokens", r, 12);
        put_int(o, "output_tokens", r, 13);
        const char *est = db_result_value(r, 0, 14);
        json_object_set_new(o, "tokens_estimated", json_boolean(est && *est == 't'));
        const char *error = db_result_value(r, 0, 15);
        json_object_set_new(o, "error", error ? json_string(error) : json_null());
        int64_t ms = 0;
        if (db_result_int64(r, 0, 16, &ms)) json_object_set_new(o, "duration_ms", json_integer(ms));
        http_respond_json(req, 200, o);
    }
    http_req_unref(req);
}

void ai_jobs_http_get(http_req *req, void *data)
{
    ai_jobs *j = data;
    const char *id = http_param(req, "job_id");
    if (!id || !ai_id_valid(id, strlen(id))) {
        http_respond_problem(req, 404, "Not Found", "no job with this id");
        return;
    }
    const char *vals[1] = {id};
    db_query(j->cfg.db,
             "SELECT job_id, item_id, kind, provider, status, stage, attempts, "
             "(extract(epoch FROM queued_at) * 1000)::bigint, "
             "(extract(epoch FROM started_at) * 1000)::bigint, "
             "(extract(epoch FROM finished_at) * 1000)::bigint, "
             "input_bytes, output_bytes, input_tokens, output_tokens, tokens_estimated, error, "
             "(extract(epoch FROM finished_at - started_at) * 1000)::bigint "
             "FROM jobs WHERE job_id = $1",
             1, vals, on_job_row, http_req_ref(req));
}
