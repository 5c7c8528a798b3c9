/* Position vectors (see posvec.h). */
#include "posvec.h"

#include <stdlib.h>
#include <string.h>

static const char topic_letters[RT_NTOPICS] = {'c', 'g', 'i', 's'};
static const rt_family topic_families[RT_NTOPICS] = {RT_FAMILY_CONTENT, RT_FAMILY_CONTENT,
                                                     RT_FAMILY_IMPORT, RT_FAMILY_SOURCE};

char rt_topic_letter(int topic)
{
    return topic >= 0 && topic < RT_NTOPICS ? topic_letters[topic] : '?';
}

rt_family rt_topic_family(int topic)
{
    return topic >= 0 && topic < RT_NTOPICS ? topic_families[topic] : RT_NFAMILIES;
}

static int topic_from_letter(char c)
{
    for (int i = 0; i < RT_NTOPICS; i++)
        if (topic_letters[i] == c) return i;
    return -1;
}

static int pos_cmp(int ta, int pa, int tb, int pb)
{
    if (ta != tb) return ta < tb ? -1 : 1;
    if (pa != pb) return pa < pb ? -1 : 1;
    return 0;
}

/* Index of the source, or -(insertion point)-1. */
static int posvec_find(const rt_posvec *pv, int topic, int partition)
{
    int lo = 0, hi = pv->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int c = pos_cmp(pv->v[mid].topic, pv->v[mid].partition, topic, partition);
        if (c == 0) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -lo - 1;
}

bool rt_posvec_get(const rt_posvec *pv, int topic, int partition, int64_t *offset)
{
    int i = posvec_find(pv, topic, partition);
    if (i < 0) return false;
    if (offset) *offset = pv->v[i].offset;
    return true;
}

bool rt_posvec_set(rt_posvec *pv, int topic, int partition, int64_t offset)
{
    if (topic < 0 || topic >= RT_NTOPICS || partition < 0 || partition > UINT16_MAX) return false;
    int i = posvec_find(pv, topic, partition);
    if (i >= 0) {
        pv->v[i].offset = offset;
        return true;
    }
    if (pv->n >= RT_POSVEC_MAX) return false;
    i = -i - 1;
    if (pv->n == pv->cap) {
        uint16_t cap = pv->cap ? (uint16_t)(pv->cap * 2) : 2;
        rt_pos *nv = realloc(pv->v, cap * sizeof *nv);
        if (!nv) abort();
        pv->v = nv;
        pv->cap = cap;
    }
    memmove(&pv->v[i + 1], &pv->v[i], (size_t)(pv->n - i) * sizeof *pv->v);
    pv->v[i] =
        (rt_pos){.offset = offset, .partition = (uint16_t)partition, .topic = (uint8_t)topic};
    pv->n++;
    return true;
}

void rt_posvec_free(rt_posvec *pv)
{
    free(pv->v);
    *pv = (rt_posvec){0};
}

void rt_posvec_copy(rt_posvec *dst, const rt_posvec *src)
{
    rt_posvec_free(dst);
    dst->t0 = src->t0;
    if (!src->n) return;
    dst->v = malloc(src->n * sizeof *dst->v);
    if (!dst->v) abort();
    memcpy(dst->v, src->v, src->n * sizeof *dst->v);
    dst->n = dst->cap = src->n;
}

void rt_posvec_format(const rt_posvec *pv, core_buf *out)
{
    core_buf_printf(out, "t%lld", (long long)pv->t0);
    for (uint16_t i = 0; i < pv->n; i++)
        core_buf_printf(out, ".%c%u:%lld", rt_topic_letter(pv->v[i].topic),
                        (unsigned)pv->v[i].partition, (long long)pv->v[i].offset);
}

/* A decimal number without sign or leading zeros, up to end or the first non-digit. */
static bool parse_num(const char **p, int64_t max, int64_t *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9') return false;
    if (*s == '0' && s[1] >= '0' && s[1] <= '9') return false;
    int64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        int d = *s - '0';
        if (v > (max - d) / 10) return false;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return true;
}

bool rt_posvec_parse(const char *text, rt_posvec *out)
{
    *out = (rt_posvec){0};
    if (!text || strlen(text) > RT_POSVEC_MAX_LEN || text[0] != 't') return false;
    const char *p = text + 1;
    int64_t t0;
    if (!parse_num(&p, INT64_MAX, &t0)) return false;
    out->t0 = t0;
    int last_t = -1, last_p = -1;
    while (*p) {
        if (*p != '.') goto bad;
        p++;
        int topic = topic_from_letter(*p);
        if (topic < 0) goto bad;
        p++;
        int64_t part, off;
        if (!parse_num(&p, UINT16_MAX, &part) || *p != ':') goto bad;
        p++;
        if (!parse_num(&p, INT64_MAX, &off)) goto bad;
        if (pos_cmp(topic, (int)part, last_t, last_p) <= 0) goto bad; /* sorted, unique */
        if (!rt_posvec_set(out, topic, (int)part, off)) goto bad;
        last_t = topic;
        last_p = (int)part;
    }
    return true;
bad:
    rt_posvec_free(out);
    return false;
}

bool rt_posvec_covers(const rt_posvec *a, const rt_posvec *b)
{
    for (uint16_t i = 0; i < b->n; i++) {
        int64_t off;
        if (!rt_posvec_get(a, b->v[i].topic, b->v[i].partition, &off)) return false;
        if (off < b->v[i].offset) return false;
    }
    return true;
}
