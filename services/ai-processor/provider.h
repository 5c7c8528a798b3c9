/*
 * ai-processor providers: where generated text comes from.
 *
 *   provider_generate / provider_cancel   one generation job, asynchronous on the loop
 *   provider_destroy                      cancels what is still running, frees the provider
 *   provider_local_new                    the offline default: deterministic extractive text
 *
 * A provider (local, and later OpenAI, Anthropic, Ollama over libs/httpc) turns a request (a
 * kind, a title, a topic, instructions and source texts) into a Markdown body. Every provider
 * follows the same contract, so the service treats a slow HTTP provider and the instant local
 * one alike:
 *
 *   - provider_generate copies the request (the caller may free it as soon as the call
 *     returns) and returns a job handle. It never calls a callback itself: every callback runs
 *     later from the loop, even for a request that is rejected at once.
 *   - on_progress (optional) reports stages in order with a percentage; the local provider
 *     reports "ranking" then "composing". The service itself reports "queued" and "done".
 *   - on_done is called exactly once per job unless the job is cancelled first, with the body
 *     or an error. The job handle is dead once on_done has been called (it is freed after it
 *     returns); calling provider_cancel on it from inside on_done does nothing.
 *   - provider_cancel stops a job: no callback of that job runs after it returns. It may be
 *     called from inside that job's on_progress.
 *   - provider_destroy cancels every job still running (without callbacks) and frees the
 *     provider; run the loop afterwards so that its handles finish closing.
 *
 * Everything runs on the loop's thread.
 */
#ifndef AI_PROVIDER_H
#define AI_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The values match contentengine.v1.ContentKind, so a GenerationRequest's kind converts as is. */
typedef enum provider_kind {
    PROVIDER_KIND_ARTICLE = 1,
    PROVIDER_KIND_NEWSLETTER = 2,
    PROVIDER_KIND_SOCIAL = 3,
} provider_kind;

/* "article", "newsletter", "social"; "unknown" for anything else. */
const char *provider_kind_name(provider_kind kind);
bool provider_kind_parse(const char *name, provider_kind *out);

/* Strings are UTF-8 and NUL-terminated; optional ones may be NULL or "". */
typedef struct provider_source {
    const char *text; /* required */
    const char *url;
    const char *title;
} provider_source;

typedef struct provider_request {
    provider_kind kind;
    const char *title;
    const char *topic;
    const char *instructions;
    const provider_source *sources;
    size_t nsources;
} provider_request;

/* One allocation holding a deep copy of req (free() it); aborts when memory runs out. */
provider_request *provider_request_copy(const provider_request *req);
/* Bytes of every text in the request: sources, title, topic, instructions. */
uint64_t provider_request_bytes(const provider_request *req);
/* The usual rule of thumb for English with BPE tokenizers: about four bytes per token. */
uint64_t provider_estimate_tokens(uint64_t bytes);

typedef enum provider_error {
    PROVIDER_OK = 0,
    PROVIDER_ERR_INVALID,      /* the request cannot succeed as it is (no sentences, bad kind) */
    PROVIDER_ERR_TOO_LARGE,    /* over a limit of the provider */
    PROVIDER_ERR_UNAVAILABLE,  /* network, timeout, 5xx: worth retrying */
    PROVIDER_ERR_RATE_LIMITED, /* 429 and the like: worth retrying later */
    PROVIDER_ERR_AUTH,         /* credentials refused: retrying will not help */
    PROVIDER_ERR_INTERNAL,     /* a fault of the provider itself */
} provider_error;

const char *provider_error_name(provider_error error); /* "invalid", "too_large", ... */

/* For the job record. */
typedef struct provider_stats {
    const char *provider;   /* the provider's name */
    uint64_t input_bytes;   /* provider_request_bytes() */
    uint64_t output_bytes;  /* bytes of the body (0 on error) */
    uint64_t input_tokens;  /* estimated unless tokens_estimated is false */
    uint64_t output_tokens; /* likewise */
    bool tokens_estimated;  /* false when the provider's API reported real usage */
} provider_stats;

/* Valid only during on_done: copy what you keep. */
typedef struct provider_result {
    provider_error error; /* PROVIDER_OK: body is set */
    const char *message;  /* one human-readable line when error != PROVIDER_OK, else NULL */
    bool retriable;       /* whether the same request may succeed later */
    const char *body;     /* Markdown, valid UTF-8, NUL-terminated; NULL on error */
    size_t body_len;
    provider_stats stats;
} provider_result;

typedef struct provider_job provider_job;
typedef void (*provider_progress_cb)(provider_job *job, const char *stage, int percent, void *data);
typedef void (*provider_done_cb)(provider_job *job, const provider_result *result, void *data);

typedef struct provider_callbacks {
    provider_progress_cb on_progress; /* may be NULL */
    provider_done_cb on_done;         /* required */
    void *data;
} provider_callbacks;

/* ---------------------------------------------------------------- for implementations */

typedef struct provider provider;
typedef struct provider_ops {
    provider_job *(*generate)(provider *p, const provider_request *req,
                              const provider_callbacks *cb);
    void (*cancel)(provider *p, provider_job *job);
    void (*destroy)(provider *p);
} provider_ops;

/* Each implementation embeds this as its first member. */
struct provider {
    const provider_ops *ops;
    const char *name; /* "local", "openai", ... */
    uv_loop_t *loop;
};

/* ---------------------------------------------------------------- for the service */

/* NULL only when an argument is missing (no provider, request or on_done). */
provider_job *provider_generate(provider *p, const provider_request *req,
                                const provider_callbacks *cb);
void provider_cancel(provider *p, provider_job *job);
void provider_destroy(provider *p);
const char *provider_name(const provider *p);

/* ---------------------------------------------------------------- local */

/* Zero means the default for each field; cfg itself may be NULL. */
typedef struct provider_local_config {
    size_t max_input_bytes; /* all source texts together: 1 MiB; beyond it PROVIDER_ERR_TOO_LARGE */
    size_t max_sources;     /* 64; beyond it PROVIDER_ERR_TOO_LARGE */
    size_t max_sentences;   /* 2,000 sentences are ranked; the rest are dropped, each source
                             * keeping a fair share (see README.md) */
} provider_local_config;

#define PROVIDER_LOCAL_MAX_INPUT_BYTES ((size_t)1 << 20)
#define PROVIDER_LOCAL_MAX_SOURCES     64
#define PROVIDER_LOCAL_MAX_SENTENCES   2000

provider *provider_local_new(uv_loop_t *loop, const provider_local_config *cfg);

#endif
