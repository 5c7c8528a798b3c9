/*
 * Sources -> corpus: repaired text, sentences in source order with their term ids, exact
 * duplicates merged into their first occurrence, and the input bounds applied.
 */
#include "local_gen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a: only used to find equal strings; no order ever depends on it. */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static const char *non_empty(const char *s)
{
    return s && *s ? s : NULL;
}

/* ---------------------------------------------------------------- terms */

static void term_index_grow(local_corpus *c)
{
    size_t cap = c->term_index_cap ? c->term_index_cap * 2 : 1024;
    uint32_t *index = core_xcalloc(cap, sizeof *index);
    for (size_t t = 0; t < c->nterms; t++) {
        const char *stem = c->terms[t].stem;
        size_t slot = hash_bytes(stem, strlen(stem)) & (cap - 1);
        while (index[slot])
            slot = (slot + 1) & (cap - 1);
        index[slot] = (uint32_t)t + 1;
    }
    free(c->term_index);
    c->term_index = index;
    c->term_index_cap = cap;
}

/* The id of stem; when it is new and surface is non-NULL, adds it (ids in order of first
 * appearance), else returns UINT32_MAX. */
static uint32_t term_id(local_corpus *c, const char *stem, size_t stem_len, const char *surface,
                        size_t surface_len)
{
    if ((c->nterms + 1) * 10 >= c->term_index_cap * 7) term_index_grow(c);
    size_t mask = c->term_index_cap - 1;
    size_t slot = hash_bytes(stem, stem_len) & mask;
    for (; c->term_index[slot]; slot = (slot + 1) & mask) {
        uint32_t id = c->term_index[slot] - 1;
        const char *known = c->terms[id].stem;
        if (strncmp(known, stem, stem_len) == 0 && known[stem_len] == '\0') return id;
    }
    if (!surface) return UINT32_MAX;
    if (c->nterms == c->terms_cap) {
        c->terms_cap = c->terms_cap ? c->terms_cap * 2 : 256;
        c->terms = core_xrealloc(c->terms, c->terms_cap * sizeof *c->terms);
    }
    uint32_t id = (uint32_t)c->nterms++;
    c->terms[id] = (local_term){.stem = core_xstrndup(stem, stem_len),
                                .surface = core_xstrndup(surface, surface_len)};
    c->term_index[slot] = id + 1;
    return id;
}

typedef struct term_collector {
    local_corpus *corpus;
    uint32_t *ids;
    size_t n, cap;
} term_collector;

static void collect_term(const char *stem, size_t stem_len, const char *surface, size_t surface_len,
                         void *data)
{
    term_collector *tc = data;
    if (tc->n == tc->cap) {
        tc->cap = tc->cap ? tc->cap * 2 : 64;
        tc->ids = core_xrealloc(tc->ids, tc->cap * sizeof *tc->ids);
    }
    tc->ids[tc->n++] = term_id(tc->corpus, stem, stem_len, surface, surface_len);
}

typedef struct query_marker {
    local_corpus *corpus;
    double weight;
} query_marker;

/* Query words only weigh terms the sources already have. */
static void mark_query_term(const char *stem, size_t stem_len, const char *surface,
                            size_t surface_len, void *data)
{
    (void)surface;
    (void)surface_len;
    query_marker *qm = data;
    uint32_t id = term_id(qm->corpus, stem, stem_len, NULL, 0);
    if (id != UINT32_MAX && qm->corpus->terms[id].query_weight < qm->weight)
        qm->corpus->terms[id].query_weight = qm->weight;
}

static void mark_query(local_corpus *c, const char *text, double weight)
{
    if (!text) return;
    /* the query is user text too: tokenize a repaired copy */
    core_buf repaired = {0};
    local_utf8_repair(text, strlen(text), &repaired);
    query_marker qm = {c, weight};
    local_tokenize(repaired.data, repaired.len, mark_query_term, &qm);
    core_buf_free(&repaired);
}

static int compare_ids(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------- bounds */

/* Water-filling: each source keeps its first sentences, the cap shared as evenly as the
 * sources' sizes allow (a short source keeps all of its sentences). */
static void share_sentences(const size_t *counts, size_t nsources, size_t cap, size_t *allow)
{
    bool *settled = core_xcalloc(nsources, sizeof *settled);
    size_t remaining = cap, pending = 0;
    for (size_t i = 0; i < nsources; i++) {
        allow[i] = 0;
        if (counts[i] == 0)
            settled[i] = true;
        else
            pending++;
    }
    while (pending > 0) {
        size_t share = remaining / pending;
        bool changed = false;
        for (size_t i = 0; i < nsources; i++) {
            if (!settled[i] && counts[i] <= share) {
                allow[i] = counts[i];
                remaining -= counts[i];
                settled[i] = true;
                pending--;
                changed = true;
            }
        }
        if (changed) continue;
        size_t extra = remaining - share * pending; /* to the earliest sources, one each */
        for (size_t i = 0; i < nsources; i++) {
            if (settled[i]) continue;
            allow[i] = share + (extra > 0 ? 1 : 0);
            if (extra > 0) extra--;
        }
        break;
    }
    free(settled);
}

/* ---------------------------------------------------------------- corpus */

/* Ends with . ! ? … or a CJK mark, possibly followed by closing quotes and brackets. */
static bool ends_like_sentence(const char *s, size_t len)
{
    while (len > 0 && memchr("\"')]}", s[len - 1], 5))
        len--;
    while (len >= 3 && (memcmp(s + len - 3, "\xE2\x80\x9D", 3) == 0 ||
                        memcmp(s + len - 3, "\xE2\x80\x99", 3) == 0))
        len -= 3;
    if (len == 0) return false;
    char last = s[len - 1];
    if (last == '.' || last == '!' || last == '?') return true;
    if (len < 3) return false;
    const char *tail = s + len - 3;
    return memcmp(tail, "\xE2\x80\xA6", 3) == 0 || memcmp(tail, "\xE3\x80\x82", 3) == 0 ||
           memcmp(tail, "\xEF\xBC\x81", 3) == 0 || memcmp(tail, "\xEF\xBC\x9F", 3) == 0;
}

/* Index+1 of an earlier sentence with exactly these bytes, else 0 (and records this one). */
static uint32_t find_or_add_duplicate(uint32_t *table, size_t cap, const local_sentence *all,
                                      const char *text, size_t len, uint32_t index)
{
    size_t slot = hash_bytes(text, len) & (cap - 1);
    for (; table[slot]; slot = (slot + 1) & (cap - 1)) {
        const local_sentence *s = &all[table[slot] - 1];
        if (s->len == len && memcmp(s->text, text, len) == 0) return table[slot];
    }
    table[slot] = index + 1;
    return 0;
}

static provider_error fail(local_corpus *c, provider_error error, char *err, size_t errlen,
                           const char *message)
{
    snprintf(err, errlen, "%s", message);
    local_corpus_free(c);
    return error;
}

provider_error local_corpus_build(local_corpus *c, const provider_request *req,
                                  const local_limits *limits, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    char message[256];
    if (req->kind != PROVIDER_KIND_ARTICLE && req->kind != PROVIDER_KIND_NEWSLETTER &&
        req->kind != PROVIDER_KIND_SOCIAL) {
        snprintf(message, sizeof message, "unknown content kind %d", (int)req->kind);
        return fail(c, PROVIDER_ERR_INVALID, err, errlen, message);
    }
    if (req->nsources == 0)
        return fail(c, PROVIDER_ERR_INVALID, err, errlen, "the request has no sources");
    if (req->nsources > limits->max_sources) {
        snprintf(message, sizeof message, "%zu sources, over the local provider's limit of %zu",
                 req->nsources, limits->max_sources);
        return fail(c, PROVIDER_ERR_TOO_LARGE, err, errlen, message);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < req->nsources; i++)
        total += req->sources[i].text ? strlen(req->sources[i].text) : 0;
    if (total > limits->max_input_bytes) {
        snprintf(message, sizeof message,
                 "the sources hold %" PRIu64 " bytes, over the local provider's limit of %zu",
                 total, limits->max_input_bytes);
        return fail(c, PROVIDER_ERR_TOO_LARGE, err, errlen, message);
    }

    c->nsources = req->nsources;
    c->sources = core_xcalloc(c->nsources, sizeof *c->sources);
    local_span **spans = core_xcalloc(c->nsources, sizeof *spans);
    size_t *counts = core_xcalloc(c->nsources, sizeof *counts);
    size_t *allow = core_xcalloc(c->nsources, sizeof *allow);
    size_t candidates = 0;
    for (size_t i = 0; i < c->nsources; i++) {
        const provider_source *src = &req->sources[i];
        core_buf repaired = {0};
        const char *text = src->text ? src->text : "";
        c->repaired_bytes += local_utf8_repair(text, strlen(text), &repaired);
        c->sources[i].text = core_buf_steal(&repaired, &c->sources[i].len);
        c->sources[i].title = non_empty(src->title);
        c->sources[i].url = non_empty(src->url);
        counts[i] = local_split_sentences(c->sources[i].text, c->sources[i].len, &spans[i]);
        candidates += counts[i];
    }
    share_sentences(counts, c->nsources, limits->max_sentences, allow);

    size_t kept = 0;
    for (size_t i = 0; i < c->nsources; i++)
        kept += allow[i];
    c->dropped_sentences = candidates - kept;
    c->sentences = core_xcalloc(kept, sizeof *c->sentences);
    size_t dup_cap = 64;
    while (dup_cap < kept * 2)
        dup_cap *= 2;
    uint32_t *dup_table = core_xcalloc(dup_cap, sizeof *dup_table);
    term_collector tc = {.corpus = c};
    bool any_eligible = false;
    for (size_t i = 0; i < c->nsources; i++) {
        for (size_t k = 0; k < allow[i]; k++) {
            const char *text = c->sources[i].text + spans[i][k].start;
            size_t len = spans[i][k].len;
            uint32_t index = (uint32_t)c->nsentences;
            uint32_t earlier =
                find_or_add_duplicate(dup_table, dup_cap, c->sentences, text, len, index);
            /* a new sentence is recorded at `index`, and filled in below before the next lookup */
            local_sentence *s = &c->sentences[index];
            if (earlier) {
                c->sentences[earlier - 1].duplicates++;
                continue;
            }
            tc.n = 0;
            local_tokenize(text, len, collect_term, &tc);
            if (tc.n > 1)
                qsort(tc.ids, tc.n, sizeof *tc.ids, compare_ids); /* ids is NULL when n is 0 */
            size_t distinct = 0;
            for (size_t t = 0; t < tc.n; t++)
                if (distinct == 0 || tc.ids[distinct - 1] != tc.ids[t])
                    tc.ids[distinct++] = tc.ids[t];
            if (c->term_pool_len + distinct > c->term_pool_cap) {
                while (c->term_pool_len + distinct > c->term_pool_cap)
                    c->term_pool_cap = c->term_pool_cap ? c->term_pool_cap * 2 : 1024;
                c->term_pool = core_xrealloc(c->term_pool, c->term_pool_cap * sizeof *c->term_pool);
            }
            if (distinct)
                memcpy(c->term_pool + c->term_pool_len, tc.ids, distinct * sizeof *tc.ids);
            *s = (local_sentence){.source = (uint32_t)i,
                                  .text = text,
                                  .len = len,
                                  .term_first = (uint32_t)c->term_pool_len,
                                  .nterms = (uint32_t)distinct,
                                  .nwords = (uint32_t)tc.n};
            c->term_pool_len += distinct;
            /* A heading-like fragment ("Latest news") is context, not a sentence to reuse. */
            s->eligible = ends_like_sentence(text, len) || local_count_words(text, len) >= 8;
            any_eligible = any_eligible || s->eligible;
            c->sources[i].nsentences_kept++;
            c->nsentences++;
        }
    }
    free(tc.ids);
    free(dup_table);
    for (size_t i = 0; i < c->nsources; i++)
        free(spans[i]);
    free(spans);
    free(counts);
    free(allow);
    if (c->nsentences == 0)
        return fail(c, PROVIDER_ERR_INVALID, err, errlen,
                    "the sources contain no sentences (no letters or digits)");
    if (!any_eligible) /* only fragments: better to use them than to fail */
        for (size_t k = 0; k < c->nsentences; k++)
            c->sentences[k].eligible = true;
    mark_query(c, non_empty(req->instructions), 0.5);
    mark_query(c, non_empty(req->topic), 1.0);
    mark_query(c, non_empty(req->title), 1.0);
    return PROVIDER_OK;
}

const uint32_t *local_sentence_terms(const local_corpus *c, const local_sentence *s)
{
    return c->term_pool + s->term_first;
}

void local_corpus_free(local_corpus *c)
{
    for (size_t i = 0; i < c->nsources; i++)
        free(c->sources[i].text);
    free(c->sources);
    free(c->sentences);
    free(c->term_pool);
    for (size_t t = 0; t < c->nterms; t++) {
        free(c->terms[t].stem);
        free(c->terms[t].surface);
    }
    free(c->terms);
    free(c->term_index);
    free(c->order);
    memset(c, 0, sizeof *c);
}
