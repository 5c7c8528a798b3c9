/*
 * The local provider: local_generate() wrapped in the asynchronous provider contract.
 *
 * A job runs in two loop turns on a zero-delay timer, so that, like a network provider, it
 * never calls back from inside provider_generate and lets other work run between stages:
 *   turn 1: on_progress("ranking", 25), then build the corpus and rank it;
 *   turn 2: on_progress("composing", 75), then compose the body and call on_done.
 */
#include "local_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANKING_PERCENT   25
#define COMPOSING_PERCENT 75

typedef struct local_provider local_provider;

struct provider_job {
    uv_timer_t timer;
    local_provider *owner; /* NULL once the job has left the provider's list */
    provider_job *prev, *next;
    provider_request *req; /* our copy */
    provider_callbacks cb;
    local_limits limits;
    local_corpus corpus;
    bool ranked;
    bool cancelled;
    bool finished; /* on_done has been called or is running */
};

struct local_provider {
    provider base; /* first: the provider contract's view */
    local_limits limits;
    provider_job *jobs; /* running, for destroy */
};

local_limits local_limits_from(const provider_local_config *cfg)
{
    local_limits limits = {PROVIDER_LOCAL_MAX_INPUT_BYTES, PROVIDER_LOCAL_MAX_SOURCES,
                           PROVIDER_LOCAL_MAX_SENTENCES};
    if (cfg && cfg->max_input_bytes) limits.max_input_bytes = cfg->max_input_bytes;
    if (cfg && cfg->max_sources) limits.max_sources = cfg->max_sources;
    if (cfg && cfg->max_sentences) limits.max_sentences = cfg->max_sentences;
    return limits;
}

provider_error local_generate(const provider_request *req, const local_limits *limits,
                              core_buf *out, char *err, size_t errlen)
{
    local_corpus corpus;
    provider_error error = local_corpus_build(&corpus, req, limits, err, errlen);
    if (error != PROVIDER_OK) return error;
    local_rank(&corpus);
    local_compose(&corpus, req, out);
    local_corpus_free(&corpus);
    return PROVIDER_OK;
}

/* ---------------------------------------------------------------- jobs */

static void job_unlink(provider_job *job)
{
    if (!job->owner) return;
    if (job->prev)
        job->prev->next = job->next;
    else
        job->owner->jobs = job->next;
    if (job->next) job->next->prev = job->prev;
    job->owner = NULL;
    job->prev = job->next = NULL;
}

static void job_free(uv_handle_t *handle)
{
    provider_job *job = handle->data;
    local_corpus_free(&job->corpus);
    free(job->req);
    free(job);
}

static void job_close(provider_job *job)
{
    uv_timer_stop(&job->timer);
    uv_close((uv_handle_t *)&job->timer, job_free);
}

static void job_finish(provider_job *job, provider_error error, const char *message,
                       const core_buf *body)
{
    provider_result result = {
        .error = error,
        .message = error == PROVIDER_OK ? NULL : message,
        .retriable = error == PROVIDER_ERR_UNAVAILABLE || error == PROVIDER_ERR_RATE_LIMITED ||
                     error == PROVIDER_ERR_INTERNAL,
        .body = error == PROVIDER_OK ? body->data : NULL,
        .body_len = error == PROVIDER_OK ? body->len : 0,
        .stats = {.provider = "local",
                  .input_bytes = provider_request_bytes(job->req),
                  .tokens_estimated = true},
    };
    result.stats.output_bytes = result.body_len;
    result.stats.input_tokens = provider_estimate_tokens(result.stats.input_bytes);
    result.stats.output_tokens = provider_estimate_tokens(result.stats.output_bytes);
    job->finished = true;
    job_unlink(job);
    job->cb.on_done(job, &result, job->cb.data);
    job_close(job);
}

/* Reports a stage; false when the callback cancelled the job (it must not be touched then,
 * beyond the flag: its memory lives until the close callback). */
static bool report(provider_job *job, const char *stage, int percent)
{
    if (job->cb.on_progress) job->cb.on_progress(job, stage, percent, job->cb.data);
    return !job->cancelled;
}

static void job_step(uv_timer_t *timer)
{
    provider_job *job = timer->data;
    if (!job->ranked) {
        if (!report(job, "ranking", RANKING_PERCENT)) return;
        char err[256];
        provider_error error =
            local_corpus_build(&job->corpus, job->req, &job->limits, err, sizeof err);
        if (error != PROVIDER_OK) {
            job_finish(job, error, err, NULL);
            return;
        }
        local_rank(&job->corpus);
        job->ranked = true;
        uv_timer_start(&job->timer, job_step, 0, 0);
        return;
    }
    if (!report(job, "composing", COMPOSING_PERCENT)) return;
    core_buf body = {0};
    local_compose(&job->corpus, job->req, &body);
    job_finish(job, PROVIDER_OK, NULL, &body);
    core_buf_free(&body);
}

/* ---------------------------------------------------------------- provider ops */

static provider_job *local_generate_async(provider *p, const provider_request *req,
                                          const provider_callbacks *cb)
{
    local_provider *lp = (local_provider *)p;
    provider_job *job = calloc(1, sizeof *job);
    if (!job) abort();
    job->owner = lp;
    job->req = provider_request_copy(req);
    job->cb = *cb;
    job->limits = lp->limits;
    uv_timer_init(p->loop, &job->timer);
    job->timer.data = job;
    job->next = lp->jobs;
    if (lp->jobs) lp->jobs->prev = job;
    lp->jobs = job;
    uv_timer_start(&job->timer, job_step, 0, 0);
    return job;
}

static void local_cancel(provider *p, provider_job *job)
{
    (void)p;
    if (job->finished || job->cancelled) return;
    job->cancelled = true;
    job_unlink(job);
    job_close(job);
}

static void local_destroy(provider *p)
{
    local_provider *lp = (local_provider *)p;
    while (lp->jobs)
        local_cancel(p, lp->jobs);
    free(lp);
}

static const provider_ops local_ops = {
    .generate = local_generate_async,
    .cancel = local_cancel,
    .destroy = local_destroy,
};

provider *provider_local_new(uv_loop_t *loop, const provider_local_config *cfg)
{
    local_provider *lp = calloc(1, sizeof *lp);
    if (!lp) abort();
    lp->base = (provider){.ops = &local_ops, .name = "local", .loop = loop};
    lp->limits = local_limits_from(cfg);
    return &lp->base;
}
