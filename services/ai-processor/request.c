/* GenerationRequest decoding and validation, GenerationProgress encoding. */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contentengine/v1/content.pb-c.h"

bool ai_id_valid(const char *id, size_t len)
{
    if (!id || len == 0 || len > AI_ID_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e) return false;
    return true;
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

bool ai_request_decode(const void *data, size_t len, ai_request *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    Contentengine__V1__GenerationRequest *m =
        contentengine__v1__generation_request__unpack(NULL, len, data);
    if (!m) {
        snprintf(err, errlen, "payload is not a GenerationRequest (%zu bytes)", len);
        return false;
    }
    const char *why = NULL;
    if (!m->job_id || !*m->job_id)
        why = "job_id is missing";
    else if (!ai_id_valid(m->job_id, strlen(m->job_id)))
        why = "job_id is not 1-128 visible ASCII characters";
    else if (!m->item_id || !*m->item_id)
        why = "item_id is missing";
    else if (!ai_id_valid(m->item_id, strlen(m->item_id)))
        why = "item_id is not 1-128 visible ASCII characters";
    else if (m->kind != CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_ARTICLE &&
             m->kind != CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_NEWSLETTER &&
             m->kind != CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_SOCIAL)
        why = "kind is not article, newsletter or social";
    if (why) {
        if (strncmp(why, "kind", 4) == 0)
            snprintf(err, errlen, "%s (got %d)", why, (int)m->kind);
        else
            snprintf(err, errlen, "%s", why);
        contentengine__v1__generation_request__free_unpacked(m, NULL);
        return false;
    }
    snprintf(out->job_id, sizeof out->job_id, "%s", m->job_id);
    snprintf(out->item_id, sizeof out->item_id, "%s", m->item_id);
    out->provider = or_empty(m->provider);
    out->msg = m;
    out->sources = calloc(m->n_sources ? m->n_sources : 1, sizeof *out->sources);
    if (!out->sources) abort();
    for (size_t i = 0; i < m->n_sources; i++) {
        out->sources[i].text = or_empty(m->sources[i]->text);
        out->sources[i].url = or_empty(m->sources[i]->url);
        out->sources[i].title = or_empty(m->sources[i]->title);
    }
    out->req = (provider_request){.kind = (provider_kind)m->kind,
                                  .title = or_empty(m->title),
                                  .topic = or_empty(m->topic),
                                  .instructions = or_empty(m->instructions),
                                  .sources = out->sources,
                                  .nsources = m->n_sources};
    return true;
}

void ai_request_free(ai_request *r)
{
    if (r->msg) contentengine__v1__generation_request__free_unpacked(r->msg, NULL);
    free(r->sources);
    memset(r, 0, sizeof *r);
}

uint8_t *ai_progress_encode(const ai_progress *p, size_t *len)
{
    Contentengine__V1__GenerationProgress m = CONTENTENGINE__V1__GENERATION_PROGRESS__INIT;
    m.job_id = (char *)or_empty(p->job_id);
    m.item_id = (char *)or_empty(p->item_id);
    m.stage = (char *)or_empty(p->stage);
    m.percent = p->percent;
    m.body = (char *)or_empty(p->body);
    m.error = (char *)or_empty(p->error);
    m.provider = (char *)or_empty(p->provider);
    size_t n = contentengine__v1__generation_progress__get_packed_size(&m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) abort();
    *len = contentengine__v1__generation_progress__pack(&m, buf);
    return buf;
}
