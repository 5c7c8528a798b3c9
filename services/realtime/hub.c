/* Channels, history, clients, fan-out and resume (see hub.h). */
#include "hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

typedef struct rt_event {
    uint32_t refs;
    uint16_t partition;
    uint8_t topic;
    int64_t offset, ts;
    uint64_t seq; /* arrival order in this instance: the replay order */
    size_t len;
    char text[];
} rt_event;

/* For one source: the newest offset a channel no longer holds (evicted, or before it existed),
 * with that event's Kafka timestamp. */
typedef struct rt_floor {
    int64_t offset, ts;
    uint16_t partition;
    uint8_t topic;
} rt_floor;

typedef struct rt_floors {
    rt_floor *v;
    uint16_t n, cap;
} rt_floors;

typedef struct rt_channel rt_channel;
typedef struct rt_sub {
    rt_client *c;
    uint32_t slot; /* index in c->ch */
} rt_sub;

struct rt_channel {
    rt_channel *hnext;       /* hash chain */
    rt_channel *prev, *next; /* item channels: least recently active first */
    rt_event **ring;
    uint32_t cap, alloc, head, count; /* alloc grows to cap before the first eviction */
    rt_floors floors;
    rt_sub *subs;
    uint32_t nsubs, subcap;
    int64_t active_ms;
    rt_channel_kind kind;
    rt_family family;
    char name[];
};

typedef struct rt_client_slot {
    rt_channel *ch;
    uint32_t idx; /* index in ch->subs */
} rt_client_slot;

struct rt_client {
    rt_sink sink;
    rt_posvec pos;
    uint32_t hub_idx;
    bool doomed;
    uint8_t nch;
    rt_client_slot ch[];
};

#define HASH_BUCKETS 4096u

struct rt_hub {
    rt_hub_config cfg;
    uv_loop_t *loop;
    uv_timer_t timer;
    bool timer_on, closed;
    int64_t period_ms, last_hb_ms, last_sweep_ms;
    rt_channel *buckets[HASH_BUCKETS];
    rt_channel *all[RT_NFAMILIES]; /* content:*, source:*, import:* */
    rt_channel *lru_head, *lru_tail;
    size_t nitems;
    rt_client **clients;
    size_t nclients, clientcap;
    rt_client **doomed;
    size_t ndoomed, doomcap;
    uint64_t seq;
    /* per source: first offset this instance received (its history starts there) */
    int64_t *first_seen[RT_NTOPICS];
    size_t nfirst[RT_NTOPICS];
    rt_floors dropped; /* newest offsets of item channels dropped for idleness */
    core_buf scratch;
    core_metric *m_clients, *m_published, *m_dropped, *m_resumes;
};

/* ---------------------------------------------------------------- small pieces */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void event_unref(rt_event *e)
{
    if (e && --e->refs == 0) free(e);
}

static rt_floor *floors_find(rt_floors *f, int topic, int partition)
{
    for (uint16_t i = 0; i < f->n; i++)
        if (f->v[i].topic == topic && f->v[i].partition == partition) return &f->v[i];
    return NULL;
}

static void floors_raise(rt_floors *f, int topic, int partition, int64_t offset, int64_t ts)
{
    rt_floor *x = floors_find(f, topic, partition);
    if (!x) {
        if (f->n == f->cap) {
            uint16_t cap = f->cap ? (uint16_t)(f->cap * 2) : 2;
            rt_floor *nv = realloc(f->v, cap * sizeof *nv);
            if (!nv) abort();
            f->v = nv;
            f->cap = cap;
        }
        x = &f->v[f->n++];
        *x = (rt_floor){
            .offset = -1, .ts = 0, .partition = (uint16_t)partition, .topic = (uint8_t)topic};
    }
    if (offset > x->offset) {
        x->offset = offset;
        x->ts = ts;
    }
}

/* Copies the floors of the sources whose events go to channels of the family. */
static void floors_copy(rt_floors *dst, const rt_floors *src, rt_family family)
{
    for (uint16_t i = 0; i < src->n; i++)
        if (rt_topic_family(src->v[i].topic) == family)
            floors_raise(dst, src->v[i].topic, src->v[i].partition, src->v[i].offset, src->v[i].ts);
}

/* -1 when the instance has received nothing from the source yet. */
static int64_t first_seen(const rt_hub *h, int topic, int partition)
{
    if ((size_t)partition >= h->nfirst[topic]) return -1;
    return h->first_seen[topic][partition];
}

static void note_seen(rt_hub *h, int topic, int partition, int64_t offset)
{
    if ((size_t)partition >= h->nfirst[topic]) {
        size_t n = (size_t)partition + 1;
        int64_t *nv = realloc(h->first_seen[topic], n * sizeof *nv);
        if (!nv) abort();
        for (size_t i = h->nfirst[topic]; i < n; i++)
            nv[i] = -1;
        h->first_seen[topic] = nv;
        h->nfirst[topic] = n;
    }
    if (h->first_seen[topic][partition] < 0) h->first_seen[topic][partition] = offset;
}

/* ---------------------------------------------------------------- channels */

static rt_channel *channel_find(rt_hub *h, const char *name)
{
    for (int f = 0; f < RT_NFAMILIES; f++)
        if (strcmp(name, rt_family_all((rt_family)f)) == 0) return h->all[f];
    for (rt_channel *c = h->buckets[hash_name(name) % HASH_BUCKETS]; c; c = c->hnext)
        if (strcmp(c->name, name) == 0) return c;
    return NULL;
}

static void lru_unlink(rt_hub *h, rt_channel *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        h->lru_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        h->lru_tail = c->prev;
    c->prev = c->next = NULL;
}

static void lru_push(rt_hub *h, rt_channel *c)
{
    c->prev = h->lru_tail;
    c->next = NULL;
    if (h->lru_tail)
        h->lru_tail->next = c;
    else
        h->lru_head = c;
    h->lru_tail = c;
}

static rt_channel *channel_new(rt_hub *h, const char *name, rt_family family, rt_channel_kind kind,
                               int64_t now_ms)
{
    size_t nl = strlen(name);
    rt_channel *c = calloc(1, sizeof *c + nl + 1);
    if (!c) abort();
    memcpy(c->name, name, nl + 1);
    c->kind = kind;
    c->family = family;
    c->cap = kind == RT_CHANNEL_ALL_ITEMS ? h->cfg.ring_all : h->cfg.ring_item;
    c->active_ms = now_ms;
    /* What was dropped before this channel (re)appeared is not in its history (only sources of
     * its family can have fed it). */
    floors_copy(&c->floors, &h->dropped, family);
    if (kind == RT_CHANNEL_ITEM) {
        rt_channel **b = &h->buckets[hash_name(name) % HASH_BUCKETS];
        c->hnext = *b;
        *b = c;
        lru_push(h, c);
        h->nitems++;
    }
    return c;
}

static void channel_free(rt_channel *c)
{
    for (uint32_t i = 0; i < c->count; i++)
        event_unref(c->ring[(c->head + i) % c->cap]);
    /* (while count < cap the ring is not wrapped: head is 0) */
    free(c->ring);
    free(c->floors.v);
    free(c->subs);
    free(c);
}

/* Drops an item channel without subscribers, remembering its newest offsets. */
static void channel_drop(rt_hub *h, rt_channel *c)
{
    for (uint32_t i = 0; i < c->count; i++) {
        rt_event *e = c->ring[(c->head + i) % c->cap];
        floors_raise(&h->dropped, e->topic, e->partition, e->offset, e->ts);
    }
    floors_copy(&h->dropped, &c->floors, c->family);
    rt_channel **p = &h->buckets[hash_name(c->name) % HASH_BUCKETS];
    while (*p != c)
        p = &(*p)->hnext;
    *p = c->hnext;
    lru_unlink(h, c);
    h->nitems--;
    channel_free(c);
}

static void channel_push(rt_channel *c, rt_event *e)
{
    if (c->cap == 0) return;
    if (c->count == c->alloc && c->alloc < c->cap) { /* head is 0 until the ring is full */
        uint32_t n = c->alloc ? c->alloc * 2 : 8;
        if (n > c->cap) n = c->cap;
        rt_event **nv = realloc(c->ring, n * sizeof *nv);
        if (!nv) abort();
        c->ring = nv;
        c->alloc = n;
    }
    if (c->count == c->cap) {
        rt_event *old = c->ring[c->head];
        floors_raise(&c->floors, old->topic, old->partition, old->offset, old->ts);
        event_unref(old);
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
    c->ring[(c->head + c->count) % c->cap] = e;
    c->count++;
    e->refs++;
}

/* Item channels: drop those idle (no subscriber, no event for idle_ms) and, past the cap, the
 * least recently active ones without subscribers. */
static void sweep_channels(rt_hub *h, int64_t now_ms)
{
    rt_channel *c = h->lru_head;
    while (c) {
        rt_channel *next = c->next;
        bool over = h->nitems > h->cfg.max_item_channels;
        bool idle = now_ms - c->active_ms >= h->cfg.idle_ms;
        if (!over && !idle) break; /* the rest are more recent */
        if (c->nsubs == 0) channel_drop(h, c);
        c = next;
    }
}

/* ---------------------------------------------------------------- clients */

static void client_doom(rt_hub *h, rt_client *c, const char *reason, const char *frame)
{
    if (c->doomed) return;
    c->doomed = true;
    if (frame) c->sink.write(c->sink.ctx, frame, strlen(frame));
    core_counter_add(h->m_dropped, 1, reason);
    if (h->ndoomed == h->doomcap) {
        size_t cap = h->doomcap ? h->doomcap * 2 : 16;
        rt_client **nv = realloc(h->doomed, cap * sizeof *nv);
        if (!nv) abort();
        h->doomed = nv;
        h->doomcap = cap;
    }
    h->doomed[h->ndoomed++] = c;
}

static void client_unlink(rt_hub *h, rt_client *c)
{
    for (uint8_t i = 0; i < c->nch; i++) {
        rt_channel *ch = c->ch[i].ch;
        uint32_t idx = c->ch[i].idx;
        ch->subs[idx] = ch->subs[--ch->nsubs];
        if (idx < ch->nsubs) ch->subs[idx].c->ch[ch->subs[idx].slot].idx = idx;
        ch->active_ms = core_now_unix_ms();
    }
    size_t hi = c->hub_idx;
    h->clients[hi] = h->clients[--h->nclients];
    if (hi < h->nclients) h->clients[hi]->hub_idx = (uint32_t)hi;
    core_gauge_set(h->m_clients, (double)h->nclients);
}

static void client_free(rt_client *c)
{
    rt_posvec_free(&c->pos);
    free(c);
}

/* Ends and frees the clients marked for dropping (never from inside a fan-out loop). */
static void reap(rt_hub *h)
{
    for (size_t i = 0; i < h->ndoomed; i++) {
        rt_client *c = h->doomed[i];
        client_unlink(h, c);
        c->sink.end(c->sink.ctx);
        client_free(c);
    }
    h->ndoomed = 0;
}

#define OVERFLOW_FRAME                                                                             \
    "event: overflow\ndata: {\"reason\":\"client too slow: buffer limit reached\"}\n\n"

static void client_check(rt_hub *h, rt_client *c)
{
    if (!c->doomed && c->sink.pending(c->sink.ctx) > h->cfg.max_pending)
        client_doom(h, c, "overflow", OVERFLOW_FRAME);
}

/* Appends the event with this client's id line when the client has not seen it yet. */
static bool client_take(rt_posvec *pos, const rt_event *e, core_buf *out)
{
    int64_t seen;
    if (rt_posvec_get(pos, e->topic, e->partition, &seen) && e->offset <= seen) return false;
    rt_posvec_set(pos, e->topic, e->partition, e->offset);
    if (pos->t0 == 0) pos->t0 = e->ts > 0 ? e->ts : 1;
    core_buf_append(out, "id: ", 4);
    rt_posvec_format(pos, out);
    core_buf_append(out, "\n", 1);
    core_buf_append(out, e->text, e->len);
    return true;
}

static void client_deliver(rt_hub *h, rt_client *c, const rt_event *e)
{
    if (c->doomed) return;
    core_buf_reset(&h->scratch);
    if (!client_take(&c->pos, e, &h->scratch)) return;
    if (c->sink.write(c->sink.ctx, h->scratch.data, h->scratch.len) != 0)
        client_doom(h, c, "gone", NULL);
    else
        client_check(h, c);
}

/* ---------------------------------------------------------------- hub */

static void hub_on_timer(uv_timer_t *t)
{
    rt_hub_tick(t->data, core_now_unix_ms());
}

rt_hub *rt_hub_new(uv_loop_t *loop, const rt_hub_config *cfg)
{
    rt_hub *h = calloc(1, sizeof *h);
    if (!h) abort();
    h->cfg = *cfg;
    if (h->cfg.max_sub_channels == 0 || h->cfg.max_sub_channels > 16) h->cfg.max_sub_channels = 16;
    if (h->cfg.max_item_channels == 0) h->cfg.max_item_channels = 100000;
    h->loop = loop;
    core_metrics *reg = core_metrics_default();
    h->m_clients = core_metric_gauge(reg, "sse_clients", "Connected SSE clients", NULL);
    h->m_published = core_metric_counter(reg, "events_published_total",
                                         "Events published to channels", "channel_kind");
    h->m_dropped = core_metric_counter(reg, "sse_dropped_clients_total",
                                       "SSE clients disconnected by the server", "reason");
    h->m_resumes = core_metric_counter(reg, "sse_resumes_total",
                                       "Subscriptions resumed with Last-Event-ID", "result");
    core_gauge_set(h->m_clients, 0);
    for (int f = 0; f < RT_NFAMILIES; f++)
        h->all[f] = channel_new(h, rt_family_all((rt_family)f), (rt_family)f, RT_CHANNEL_ALL_ITEMS,
                                core_now_unix_ms());
    if (loop) {
        uv_timer_init(loop, &h->timer);
        h->timer.data = h;
        /* The sweep runs at least every 10 s; heartbeats every heartbeat_ms (a whole number of
         * ticks). */
        int64_t hb = h->cfg.heartbeat_ms > 0 ? h->cfg.heartbeat_ms : 10000;
        int64_t ticks = (hb + 9999) / 10000;
        int64_t period = hb / ticks;
        if (period < 1) period = 1;
        h->period_ms = period;
        h->last_hb_ms = core_now_unix_ms();
        uv_timer_start(&h->timer, hub_on_timer, (uint64_t)period, (uint64_t)period);
        h->timer_on = true;
    }
    return h;
}

const rt_hub_config *rt_hub_cfg(const rt_hub *h)
{
    return &h->cfg;
}

void rt_hub_close(rt_hub *h)
{
    if (h->timer_on) {
        uv_timer_stop(&h->timer);
        uv_close((uv_handle_t *)&h->timer, NULL);
        h->timer_on = false;
    }
    h->closed = true;
}

void rt_hub_free(rt_hub *h)
{
    if (!h) return;
    for (size_t i = 0; i < h->nclients; i++)
        client_free(h->clients[i]);
    free(h->clients);
    free(h->doomed);
    while (h->lru_head)
        channel_drop(h, h->lru_head);
    for (int f = 0; f < RT_NFAMILIES; f++)
        channel_free(h->all[f]);
    for (int t = 0; t < RT_NTOPICS; t++)
        free(h->first_seen[t]);
    free(h->dropped.v);
    core_buf_free(&h->scratch);
    free(h);
}

void rt_hub_publish(rt_hub *h, int topic, int partition, int64_t offset, int64_t ts_ms,
                    const char *id, const char *sse_text, size_t len)
{
    if (h->closed || topic < 0 || topic >= RT_NTOPICS || partition < 0 || partition > UINT16_MAX)
        return;
    rt_family family = rt_topic_family(topic);
    char name[RT_CHANNEL_NAME_MAX + 1];
    if (!rt_channel_name(family, id, name, sizeof name)) return;
    note_seen(h, topic, partition, offset);

    rt_event *e = malloc(sizeof *e + len + 1);
    if (!e) abort();
    *e = (rt_event){.refs = 1,
                    .partition = (uint16_t)partition,
                    .topic = (uint8_t)topic,
                    .offset = offset,
                    .ts = ts_ms,
                    .seq = ++h->seq,
                    .len = len};
    memcpy(e->text, sse_text, len);
    e->text[len] = '\0';

    int64_t now = core_now_unix_ms();
    rt_channel *item = channel_find(h, name);
    if (!item) item = channel_new(h, name, family, RT_CHANNEL_ITEM, now);
    item->active_ms = now;
    lru_unlink(h, item);
    lru_push(h, item);
    rt_channel *chans[2] = {item, h->all[family]};
    for (int i = 0; i < 2; i++) {
        rt_channel *ch = chans[i];
        channel_push(ch, e);
        core_counter_add(h->m_published, 1, i == 0 ? "item" : "all");
        for (uint32_t s = 0; s < ch->nsubs; s++)
            client_deliver(h, ch->subs[s].c, e);
    }
    event_unref(e);
    reap(h);
    /* Over the cap (a burst of new items): sweep now, at most once a second, since channels
     * with subscribers stay and a sweep walks them. */
    if (h->nitems > h->cfg.max_item_channels && now - h->last_sweep_ms >= 1000) {
        h->last_sweep_ms = now;
        sweep_channels(h, now);
    }
}

/* ---------------------------------------------------------------- resume */

/* True when the channel's history (or, without a channel, this instance's) reaches back to
 * pos: nothing the client has not seen was dropped. Only the sources of the channel's family
 * count: no other source's events can be in it. */
static bool history_covers(rt_hub *h, const char *name, const rt_posvec *pos)
{
    rt_family family = RT_FAMILY_CONTENT;
    rt_channel_name_valid(name, strlen(name), &family, NULL);
    rt_channel *ch = channel_find(h, name);
    const rt_floors *fl = ch ? &ch->floors : &h->dropped;
    for (uint16_t i = 0; i < pos->n; i++) {
        const rt_pos *p = &pos->v[i];
        if (rt_topic_family(p->topic) != family) continue;
        int64_t fs = first_seen(h, p->topic, p->partition);
        if (fs >= 0 && p->offset < fs - 1) return false; /* before this instance started */
        for (uint16_t j = 0; j < fl->n; j++)
            if (fl->v[j].topic == p->topic && fl->v[j].partition == p->partition &&
                p->offset < fl->v[j].offset)
                return false;
    }
    /* Sources the client has seen nothing from: nothing newer than its start may be gone. */
    for (uint16_t j = 0; j < fl->n; j++)
        if (rt_topic_family(fl->v[j].topic) == family &&
            !rt_posvec_get(pos, fl->v[j].topic, fl->v[j].partition, NULL) && fl->v[j].ts >= pos->t0)
            return false;
    return true;
}

static int event_seq_cmp(const void *a, const void *b)
{
    const rt_event *x = *(rt_event *const *)a, *y = *(rt_event *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

rt_resume_result rt_hub_replay(rt_hub *h, const rt_channel_list *chans, rt_posvec *pos,
                               core_buf *out)
{
    for (size_t i = 0; i < chans->n; i++)
        if (!history_covers(h, chans->names[i], pos)) return RT_RESUME_TOO_OLD;
    /* Candidates: events of the subscribed channels the client has not seen. */
    size_t n = 0, cap = 0;
    rt_event **v = NULL;
    for (size_t i = 0; i < chans->n; i++) {
        rt_channel *ch = channel_find(h, chans->names[i]);
        if (!ch) continue;
        for (uint32_t k = 0; k < ch->count; k++) {
            rt_event *e = ch->ring[(ch->head + k) % ch->cap];
            int64_t seen;
            bool known = rt_posvec_get(pos, e->topic, e->partition, &seen);
            if (known ? e->offset <= seen : e->ts < pos->t0) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                rt_event **nv = realloc(v, cap * sizeof *nv);
                if (!nv) abort();
                v = nv;
            }
            v[n++] = e;
        }
    }
    if (n) qsort(v, n, sizeof *v, event_seq_cmp);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || v[i] != v[i - 1]) client_take(pos, v[i], out);
    free(v);
    return RT_RESUME_OK;
}

/* ---------------------------------------------------------------- attach */

#define SHUTDOWN_FRAME                                                                             \
    "event: shutdown\ndata: {\"reason\":\"server shutting down: reconnect with "                   \
    "Last-Event-ID\"}\n\n"

#define BEHIND_FRAME                                                                               \
    "event: reset\ndata: {\"reason\":\"too far behind: the missed events exceed the per-client "   \
    "buffer; reload the state\"}\n\n"

#define RESET_FRAME                                                                                \
    "event: reset\ndata: {\"reason\":\"history no longer reaches back to Last-Event-ID; "          \
    "events may have been missed: reload the state\"}\n\n"

rt_client *rt_hub_attach(rt_hub *h, const rt_channel_list *chans, rt_posvec *resume, rt_sink sink)
{
    rt_client *c = calloc(1, sizeof *c + chans->n * sizeof c->ch[0]);
    if (!c) abort();
    c->sink = sink;
    int64_t now = core_now_unix_ms();
    for (size_t i = 0; i < chans->n; i++) {
        rt_family family = RT_FAMILY_CONTENT;
        rt_channel_name_valid(chans->names[i], strlen(chans->names[i]), &family, NULL);
        rt_channel *ch = channel_find(h, chans->names[i]);
        if (!ch) ch = channel_new(h, chans->names[i], family, RT_CHANNEL_ITEM, now);
        if (ch->nsubs == ch->subcap) {
            uint32_t cap = ch->subcap ? ch->subcap * 2 : 4;
            rt_sub *nv = realloc(ch->subs, cap * sizeof *nv);
            if (!nv) abort();
            ch->subs = nv;
            ch->subcap = cap;
        }
        ch->subs[ch->nsubs] = (rt_sub){.c = c, .slot = (uint32_t)i};
        c->ch[i] = (rt_client_slot){.ch = ch, .idx = ch->nsubs};
        ch->nsubs++;
    }
    c->nch = (uint8_t)chans->n;
    if (h->nclients == h->clientcap) {
        size_t cap = h->clientcap ? h->clientcap * 2 : 64;
        rt_client **nv = realloc(h->clients, cap * sizeof *nv);
        if (!nv) abort();
        h->clients = nv;
        h->clientcap = cap;
    }
    c->hub_idx = (uint32_t)h->nclients;
    h->clients[h->nclients++] = c;
    core_gauge_set(h->m_clients, (double)h->nclients);

    if (resume) {
        core_buf out = {0};
        rt_resume_result rr = rt_hub_replay(h, chans, resume, &out);
        if (rr == RT_RESUME_OK && out.len <= h->cfg.max_pending) {
            c->pos = *resume;
            core_counter_add(h->m_resumes, 1, "replayed");
            if (out.len) c->sink.write(c->sink.ctx, out.data, out.len);
        } else {
            /* Start afresh: the next events carry ids of a new position. A replay larger than
             * the per-client bound counts as too far behind: no client buffer ever holds more
             * than max_pending. */
            rt_posvec_free(resume);
            core_counter_add(h->m_resumes, 1, "reset");
            if (rr == RT_RESUME_OK)
                c->sink.write(c->sink.ctx, BEHIND_FRAME, sizeof BEHIND_FRAME - 1);
            else
                c->sink.write(c->sink.ctx, RESET_FRAME, sizeof RESET_FRAME - 1);
        }
        *resume = (rt_posvec){0};
        core_buf_free(&out);
    }
    if (h->closed) client_doom(h, c, "shutdown", SHUTDOWN_FRAME);
    if (c->doomed) {
        reap(h);
        return NULL;
    }
    return c;
}

void rt_hub_detach(rt_hub *h, rt_client *c)
{
    if (!c) return;
    if (c->doomed) return; /* reap will free it */
    client_unlink(h, c);
    client_free(c);
}

void rt_hub_tick(rt_hub *h, int64_t now_ms)
{
    if (h->closed) return;
    if (h->cfg.heartbeat_ms > 0 &&
        now_ms - h->last_hb_ms >= h->cfg.heartbeat_ms - h->period_ms / 2) {
        h->last_hb_ms = now_ms;
        for (size_t i = 0; i < h->nclients; i++) {
            rt_client *c = h->clients[i];
            if (c->doomed) continue;
            if (c->sink.write(c->sink.ctx, RT_SSE_HEARTBEAT, sizeof RT_SSE_HEARTBEAT - 1) != 0)
                client_doom(h, c, "gone", NULL);
            else
                client_check(h, c);
        }
        reap(h);
    }
    sweep_channels(h, now_ms);
}

void rt_hub_shutdown(rt_hub *h)
{
    for (size_t i = 0; i < h->nclients; i++)
        client_doom(h, h->clients[i], "shutdown", SHUTDOWN_FRAME);
    reap(h);
}

size_t rt_hub_clients(const rt_hub *h)
{
    return h->nclients;
}

size_t rt_hub_item_channels(const rt_hub *h)
{
    return h->nitems;
}
