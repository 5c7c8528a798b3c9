/* The provider contract's shared part: dispatch, names, request copies, estimates. */
#include "provider.h"

#include <stdlib.h>
#include <string.h>

const char *provider_kind_name(provider_kind kind)
{
    switch (kind) {
    case PROVIDER_KIND_ARTICLE:
        return "article";
    case PROVIDER_KIND_NEWSLETTER:
        return "newsletter";
    case PROVIDER_KIND_SOCIAL:
        return "social";
    }
    return "unknown";
}

bool provider_kind_parse(const char *name, provider_kind *out)
{
    static const provider_kind kinds[] = {PROVIDER_KIND_ARTICLE, PROVIDER_KIND_NEWSLETTER,
                                          PROVIDER_KIND_SOCIAL};
    if (!name) return false;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(name, provider_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return true;
        }
    }
    return false;
}

const char *provider_error_name(provider_error error)
{
    switch (error) {
    case PROVIDER_OK:
        return "ok";
    case PROVIDER_ERR_INVALID:
        return "invalid";
    case PROVIDER_ERR_TOO_LARGE:
        return "too_large";
    case PROVIDER_ERR_UNAVAILABLE:
        return "unavailable";
    case PROVIDER_ERR_RATE_LIMITED:
        return "rate_limited";
    case PROVIDER_ERR_AUTH:
        return "auth";
    case PROVIDER_ERR_INTERNAL:
        return "internal";
    }
    return "unknown";
}

static size_t text_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s into *cursor and advances it; NULL stays NULL. */
static const char *place_text(char **cursor, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *dst = *cursor;
    memcpy(dst, s, n);
    *cursor += n;
    return dst;
}

provider_request *provider_request_copy(const provider_request *req)
{
    size_t size = sizeof(provider_request) + req->nsources * sizeof(provider_source);
    size += text_size(req->title) + text_size(req->topic) + text_size(req->instructions);
    for (size_t i = 0; i < req->nsources; i++) {
        const provider_source *s = &req->sources[i];
        size += text_size(s->text) + text_size(s->url) + text_size(s->title);
    }
    /* The struct and the source array come first, so both are suitably aligned. */
    provider_request *copy = malloc(size);
    if (!copy) abort();
    provider_source *sources = (provider_source *)(copy + 1);
    char *cursor = (char *)(sources + req->nsources);
    copy->kind = req->kind;
    copy->title = place_text(&cursor, req->title);
    copy->topic = place_text(&cursor, req->topic);
    copy->instructions = place_text(&cursor, req->instructions);
    for (size_t i = 0; i < req->nsources; i++) {
        sources[i].text = place_text(&cursor, req->sources[i].text);
        sources[i].url = place_text(&cursor, req->sources[i].url);
        sources[i].title = place_text(&cursor, req->sources[i].title);
    }
    copy->sources = req->nsources ? sources : NULL;
    copy->nsources = req->nsources;
    return copy;
}

static uint64_t text_bytes(const char *s)
{
    return s ? strlen(s) : 0;
}

uint64_t provider_request_bytes(const provider_request *req)
{
    uint64_t n = text_bytes(req->title) + text_bytes(req->topic) + text_bytes(req->instructions);
    for (size_t i = 0; i < req->nsources; i++)
        n += text_bytes(req->sources[i].text);
    return n;
}

uint64_t provider_estimate_tokens(uint64_t bytes)
{
    return (bytes + 3) / 4;
}

provider_job *provider_generate(provider *p, const provider_request *req,
                                const provider_callbacks *cb)
{
    if (!p || !req || !cb || !cb->on_done) return NULL;
    return p->ops->generate(p, req, cb);
}

void provider_cancel(provider *p, provider_job *job)
{
    if (p && job) p->ops->cancel(p, job);
}

void provider_destroy(provider *p)
{
    if (p) p->ops->destroy(p);
}

const char *provider_name(const provider *p)
{
    return p ? p->name : "";
}
