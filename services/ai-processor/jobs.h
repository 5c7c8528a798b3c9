/*
 * ai-processor jobs: from a GenerationRequest on Kafka to a `done` event in the outbox.
 *
 *   intake   the consumer's handler: in one transaction claim the event id (inbox), insert the
 *            job (job_id is the key: a second request for it is no second job) with the
 *            request bytes, and write `queued` to the outbox; commit, then acknowledge. The
 *            job waits in memory for a slot; generation never holds up the consumer.
 *   run      at most max_concurrent jobs run on the provider at once; each job's events
 *            (ranking, composing, then done or failed) are written one after the other, each
 *            in its own transaction with the job's row, so they reach Kafka in order.
 *   finish   one transaction: the job row goes to done/failed only from queued/running, and
 *            only then is the done/failed event written: a job finishes exactly once.
 *   resume   at start, before consuming: jobs still queued or running (the process died, or
 *            drained with them in flight) run again from their stored request.
 */
#ifndef AI_JOBS_H
#define AI_JOBS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bus.h"
#include "db.h"
#include "http.h"
#include "provider.h"

typedef struct ai_jobs ai_jobs;

typedef struct ai_jobs_config {
    uv_loop_t *loop;
    db_pool *db;
    provider *provider;
    const char *consumer_name; /* the inbox's consumer name: "ai-processor" */
    int max_concurrent;        /* jobs on the provider at once */
    int max_queued;            /* jobs waiting for a slot before the consumer is held back */
} ai_jobs_config;

ai_jobs *ai_jobs_new(const ai_jobs_config *cfg);
void ai_jobs_free(ai_jobs *j); /* after ai_jobs_drain completed */

/* The bus handler for ai.generation.requests (data: the ai_jobs). */
void ai_jobs_on_message(bus_consumer *c, const bus_message *m, void *data);

/* Loads the unfinished jobs and queues them; done(data, err, count) on the loop. Call it
 * before the consumer starts, so that no job is both resumed and newly taken in. */
void ai_jobs_resume(ai_jobs *j, void (*done)(void *data, const char *err, int count), void *data);

/* Stops starting jobs, lets the running ones finish for up to timeout_ms, then cancels the
 * rest (their rows stay queued/running: the next start resumes them). done(data) once nothing
 * of the jobs' is in flight (no transaction, no held message). */
void ai_jobs_drain(ai_jobs *j, int64_t timeout_ms, void (*done)(void *data), void *data);

/* GET /api/ai/jobs/{job_id} (data: the ai_jobs). */
void ai_jobs_http_get(http_req *req, void *data);

int ai_jobs_running(const ai_jobs *j);
int ai_jobs_waiting(const ai_jobs *j);

#endif
