/*
 * The scraper's writes. Every state change and the event it causes commit in ONE transaction
 * (the outbox; the relay publishes): a run's start, progress and end with its ScrapeRunEvent
 * on scraper.runs, and each new or changed item with its ScrapedItem on scraper.items, both
 * keyed by the source id.
 *
 * Items are written in batches per run, one transaction per batch under a per-source advisory
 * lock, each item checked against what is stored: same URL and same text is unchanged, same
 * URL and new text is an update (version + 1), another URL with the same text or a SimHash
 * within SC_NEAR_DUP_BITS is a duplicate (the page records which item it duplicates), anything
 * else is new. Unique indexes on (source, url) and (source, text hash) make a second copy
 * impossible even if this logic were wrong.
 */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contentengine/v1/scraper.pb-c.h"
#include "run.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS " col
#define BATCH   64

_Static_assert(SC_NEAR_DUP_BITS == 3, "the dedup query says <= 3");

const char sc_source_cols[] =
    "id::text AS id, name, url, kind, interval_ms, include_patterns::text AS include_patterns, "
    "exclude_patterns::text AS exclude_patterns, max_items, status, " TS("next_run_at") ", " TS(
        "created_at") ", " TS("updated_at");
const char sc_run_cols[] =
    "id::text AS id, source_id::text AS source_id, state, trigger, resumed_from::text AS "
    "resumed_from, fetched, new_items, unchanged, failed, error_summary, " TS("started_at") ", " TS(
        "finished_at");
const char sc_item_cols[] =
    "id::text AS id, source_id::text AS source_id, url, canonical_url, title, author, " TS(
        "published_at") ", (extract(epoch FROM published_at) * 1000)::bigint AS published_ms, "
                        "lang, description, image_url, body, content_hash, version, " TS(
                            "created_at") ", " TS("updated_at");

/* ---------------------------------------------------------------- JSON of rows */

static json_t *col(const db_result *r, int row, const char *name)
{
    const char *v = db_result_get(r, row, name);
    return v ? json_string(v) : json_null();
}

static json_t *col_int(const db_result *r, int row, const char *name)
{
    int64_t v;
    return db_result_int64(r, row, db_result_column(r, name), &v) ? json_integer(v) : json_null();
}

static json_t *col_json(const db_result *r, int row, const char *name)
{
    const char *v = db_result_get(r, row, name);
    json_t *j = v ? json_loads(v, 0, NULL) : NULL;
    return j ? j : json_array();
}

json_t *sc_source_json(const db_result *r, int row)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", col(r, row, "id"));
    json_object_set_new(o, "name", col(r, row, "name"));
    json_object_set_new(o, "url", col(r, row, "url"));
    json_object_set_new(o, "kind", col(r, row, "kind"));
    int64_t ms = 0;
    db_result_int64(r, row, db_result_column(r, "interval_ms"), &ms);
    json_object_set_new(o, "interval_seconds", json_real((double)ms / 1000.0));
    json_object_set_new(o, "include", col_json(r, row, "include_patterns"));
    json_object_set_new(o, "exclude", col_json(r, row, "exclude_patterns"));
    json_object_set_new(o, "max_items", col_int(r, row, "max_items"));
    json_object_set_new(o, "status", col(r, row, "status"));
    json_object_set_new(o, "next_run_at", col(r, row, "next_run_at"));
    json_object_set_new(o, "created_at", col(r, row, "created_at"));
    json_object_set_new(o, "updated_at", col(r, row, "updated_at"));
    return o;
}

json_t *sc_run_json(const db_result *r, int row)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", col(r, row, "id"));
    json_object_set_new(o, "source_id", col(r, row, "source_id"));
    json_object_set_new(o, "state", col(r, row, "state"));
    json_object_set_new(o, "trigger", col(r, row, "trigger"));
    json_object_set_new(o, "resumed_from", col(r, row, "resumed_from"));
    json_object_set_new(o, "fetched", col_int(r, row, "fetched"));
    json_object_set_new(o, "new", col_int(r, row, "new_items"));
    json_object_set_new(o, "unchanged", col_int(r, row, "unchanged"));
    json_object_set_new(o, "failed", col_int(r, row, "failed"));
    json_object_set_new(o, "error_summary", col(r, row, "error_summary"));
    json_object_set_new(o, "started_at", col(r, row, "started_at"));
    json_object_set_new(o, "finished_at", col(r, row, "finished_at"));
    return o;
}

json_t *sc_item_row_json(const db_result *r, int row)
{
    json_t *o = json_object();
    static const char *const strs[] = {
        "id",          "source_id", "url",     "canonical_url", "title",      "author", "lang",
        "description", "image_url", "version", "created_at",    "updated_at", NULL};
    for (int i = 0; strs[i]; i++)
        json_object_set_new(o, strs[i],
                            strcmp(strs[i], "version") == 0 ? col_int(r, row, strs[i])
                                                            : col(r, row, strs[i]));
    json_object_set_new(o, "published", col(r, row, "published_at"));
    json_object_set_new(o, "text", col(r, row, "body"));
    json_object_set_new(o, "content_fingerprint", col(r, row, "content_hash"));
    return o;
}

/* ---------------------------------------------------------------- string map */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t slot(const sc_strmap *m, const char *key)
{
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

bool sc_strmap_add(sc_strmap *m, const char *key, const char *val)
{
    if ((m->n + 1) * 2 > m->cap) {
        sc_strmap old = *m;
        m->cap = m->cap ? m->cap * 2 : 64;
        m->keys = core_xcalloc(m->cap, sizeof *m->keys);
        m->vals = core_xcalloc(m->cap, sizeof *m->vals);
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.keys[i]) continue;
            size_t s = slot(m, old.keys[i]);
            m->keys[s] = old.keys[i];
            m->vals[s] = old.vals[i];
        }
        free(old.keys);
        free(old.vals);
    }
    size_t s = slot(m, key);
    if (m->keys[s]) return false;
    m->keys[s] = core_xstrdup(key);
    m->vals[s] = val ? core_xstrdup(val) : NULL;
    m->n++;
    return true;
}

const char *sc_strmap_get(const sc_strmap *m, const char *key, bool *found)
{
    *found = false;
    if (!m->cap) return NULL;
    size_t s = slot(m, key);
    if (!m->keys[s]) return NULL;
    *found = true;
    return m->vals[s];
}

void sc_strmap_free(sc_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- events */

void sc_outbox_run_event(db_txn *t, sc_run *run, const char *state, db_txn_cb cb, void *data)
{
    Contentengine__V1__ScrapeRunEvent ev = CONTENTENGINE__V1__SCRAPE_RUN_EVENT__INIT;
    ev.run_id = run->id;
    ev.source_id = run->source_id;
    ev.state = (char *)state;
    ev.fetched = run->fetched;
    ev.new_items = run->new_items;
    ev.unchanged = run->unchanged;
    ev.failed = run->failed;
    ev.error_summary = run->errors.len ? run->errors.data : "";
    size_t len = contentengine__v1__scrape_run_event__get_packed_size(&ev);
    uint8_t *buf = core_xcalloc(1, len ? len : 1);
    contentengine__v1__scrape_run_event__pack(&ev, buf);
    char type[96];
    snprintf(type, sizeof type, "contentengine.scraper.run.%s.v1", state);
    bus_record rec = {.topic = TOPIC_SCRAPER_RUNS,
                      .partition = BUS_PARTITION_ANY,
                      .key = run->source_id,
                      .key_len = strlen(run->source_id),
                      .value = buf,
                      .value_len = len,
                      .ce_type = type,
                      .ce_subject = run->id};
    db_outbox_add(t, &rec, cb, data);
    free(buf);
}

/* The ScrapedItem of row `row` (an item as sc_item_cols returns it) as an outbox record; the
 * payload is malloc'ed into rec->value (free it). */
static void item_event(const db_result *r, int row, bus_record *rec)
{
    Contentengine__V1__ScrapedItem ev = CONTENTENGINE__V1__SCRAPED_ITEM__INIT;
    const char *cols[] = {"id",   "source_id",   "url",  "canonical_url", "title",       "author",
                          "lang", "description", "body", "image_url",     "content_hash"};
    char **fields[] = {&ev.item_id,
                       &ev.source_id,
                       &ev.url,
                       &ev.canonical_url,
                       &ev.title,
                       &ev.author,
                       &ev.lang,
                       &ev.description,
                       &ev.text,
                       &ev.image_url,
                       &ev.content_fingerprint};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        const char *v = db_result_get(r, row, cols[i]);
        *fields[i] = (char *)(v ? v : "");
    }
    db_result_int64(r, row, db_result_column(r, "published_ms"), &ev.published_unix_ms);
    int64_t version = 1;
    db_result_int64(r, row, db_result_column(r, "version"), &version);
    size_t len = contentengine__v1__scraped_item__get_packed_size(&ev);
    uint8_t *buf = core_xcalloc(1, len ? len : 1);
    contentengine__v1__scraped_item__pack(&ev, buf);
    *rec = (bus_record){.topic = TOPIC_SCRAPER_ITEMS,
                        .partition = BUS_PARTITION_ANY,
                        .key = db_result_get(r, row, "source_id"),
                        .key_len = strlen(db_result_get(r, row, "source_id")),
                        .value = buf,
                        .value_len = len,
                        .ce_type = version > 1 ? "contentengine.scraper.item.updated.v1"
                                               : "contentengine.scraper.item.created.v1",
                        .ce_subject = db_result_get(r, row, "id")};
}

void sc_record_outbox_started(db_txn *t, sc_run *run, db_txn_cb cb, void *data)
{
    sc_outbox_run_event(t, run, "started", cb, data);
}

static void ignore_result(db_txn *t, const db_result *r, void *data)
{
    (void)t, (void)r, (void)data; /* an error surfaces at the next statement (25P02) */
}

/* ---------------------------------------------------------------- run records */

typedef struct rec_ctx {
    sc_run *run;
    char state[16];
    sc_record_cb cb;
} rec_ctx;

static void rec_finish(rec_ctx *c, bool ok, const char *err)
{
    c->cb(c->run, ok, err);
    free(c);
}

static void on_rec_committed(const db_result *r, void *data)
{
    rec_finish(data, db_result_ok(r), db_result_error(r));
}

static void on_rec_event(db_txn *t, const db_result *r, void *data)
{
    if (!db_result_ok(r)) {
        char err[256];
        snprintf(err, sizeof err, "%s", db_result_error(r));
        db_rollback(t, NULL, NULL);
        rec_finish(data, false, err);
        return;
    }
    db_commit(t, on_rec_committed, data);
}

/* The run's row changed: its event goes with it. No row changed: the run is not ours any more
 * (another instance interrupted it when our lease ran out), so no event either. */
static void on_rec_updated(db_txn *t, const db_result *r, void *data)
{
    rec_ctx *c = data;
    if (!db_result_ok(r) || db_result_affected(r) == 0) {
        char err[256];
        snprintf(err, sizeof err, "%s",
                 db_result_ok(r) ? "the run is no longer running here" : db_result_error(r));
        db_rollback(t, NULL, NULL);
        rec_finish(c, false, err);
        return;
    }
    sc_outbox_run_event(t, c->run, c->state, on_rec_event, c);
}

static void on_rec_begun(db_txn *t, const db_result *r, void *data)
{
    rec_ctx *c = data;
    sc_run *run = c->run;
    if (!t) {
        rec_finish(c, false, db_result_error(r));
        return;
    }
    bool progress = strcmp(c->state, "progress") == 0;
    char n[4][24];
    snprintf(n[0], sizeof n[0], "%lld", (long long)run->fetched);
    snprintf(n[1], sizeof n[1], "%lld", (long long)run->new_items);
    snprintf(n[2], sizeof n[2], "%lld", (long long)run->unchanged);
    snprintf(n[3], sizeof n[3], "%lld", (long long)run->failed);
    const char *state = progress ? "running" : c->state;
    const char *params[] = {
        run->id, state, n[0], n[1], n[2], n[3], run->errors.len ? run->errors.data : ""};
    /* an interrupted run is resumed by a new run (its owner's first, see runs.c) */
    db_txn_query(t,
                 "UPDATE runs SET state = $2, fetched = $3::bigint, new_items = $4::bigint, "
                 "unchanged = $5::bigint, failed = $6::bigint, error_summary = $7, "
                 "finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END, "
                 "resume_pending = ($2 = 'interrupted') WHERE id = $1 AND state = 'running'",
                 7, params, on_rec_updated, c);
}

void sc_record_progress(sc_run *run, const char *state, sc_record_cb cb)
{
    rec_ctx *c = core_xcalloc(1, sizeof *c);
    c->run = run;
    c->cb = cb;
    snprintf(c->state, sizeof c->state, "%s", state);
    db_begin(run->app->db, on_rec_begun, c);
}

/* ---------------------------------------------------------------- validators */

static void on_validators(const db_result *r, void *data)
{
    rec_ctx *c = data;
    if (db_result_ok(r)) {
        for (int i = 0; i < db_result_rows(r); i++) {
            const char *etag = db_result_get(r, i, "etag");
            const char *lm = db_result_get(r, i, "last_modified");
            core_buf v = {0};
            core_buf_printf(&v, "%s\n%s", etag ? etag : "", lm ? lm : "");
            sc_strmap_add(&c->run->validators, db_result_get(r, i, "url_fp"), v.data);
            core_buf_free(&v);
        }
    }
    rec_finish(c, db_result_ok(r), db_result_error(r));
}

void sc_load_validators(sc_run *run, sc_record_cb cb)
{
    rec_ctx *c = core_xcalloc(1, sizeof *c);
    c->run = run;
    c->cb = cb;
    const char *p[] = {run->source_id};
    db_query(run->app->db,
             "SELECT url_fp, etag, last_modified FROM pages WHERE source_id = $1 AND "
             "(etag IS NOT NULL OR last_modified IS NOT NULL)",
             1, p, on_validators, c);
}

/* ---------------------------------------------------------------- items */

/* What the store decided for one item of a batch. */
typedef enum verdict { V_NEW, V_CHANGED, V_UNCHANGED, V_DUPLICATE } verdict;

typedef struct batch {
    sc_run *run;
    db_txn *txn;
    sc_store_item **items;
    int n;
    verdict *verdicts;
    char (*ids)[CORE_UUID_STRLEN + 1]; /* the item (new, changed, unchanged) or the original */
    int64_t new_items, unchanged;
} batch;

static void store_kick(sc_run *run);

static void batch_done(batch *b, bool ok, const char *err)
{
    sc_run *run = b->run;
    if (ok) {
        /* A large run outgrows the table's statistics long before autovacuum notices, and the
         * planner then walks every item of the source for each lookup (a run goes quadratic):
         * refresh them every 1000 new items. */
        run->app->items_since_analyze += b->new_items;
        if (run->app->items_since_analyze >= 1000) {
            run->app->items_since_analyze = 0;
            db_query(run->app->db, "ANALYZE items", 0, NULL, NULL, NULL);
        }
        run->new_items += b->new_items;
        run->unchanged += b->unchanged;
        core_counter_add(run->app->m_items, (double)b->new_items, "new");
        core_counter_add(run->app->m_items, (double)b->unchanged, "unchanged");
    } else {
        run->failed += b->n;
        sc_run_error(run, "storing items: %s", err ? err : "database error");
    }
    run->dirty = true;
    run->storing = false;
    int n = b->n;
    bool resume_fetching = run->throttled && run->sq_len < SC_STORE_BACKLOG / 2;
    for (int i = 0; i < n; i++)
        sc_store_item_free(b->items[i]);
    free(b->items);
    free(b->verdicts);
    free(b->ids);
    free(b);
    /* pages parsed and items stored since the last batch leave holes in the heap that malloc
     * keeps; give them back (a few hundred microseconds per batch of 64) */
    malloc_trim(0);
    store_kick(run);
    sc_app *app = run->app;
    if (resume_fetching) run->throttled = false;
    for (int i = 0; i < n; i++)
        sc_run_task_done(run); /* may free the run */
    if (resume_fetching) sc_hosts_pump_all(app);
}

static void on_batch_committed(const db_result *r, void *data)
{
    batch_done(data, db_result_ok(r), db_result_error(r));
}

static bool batch_failed(batch *b, const db_result *r)
{
    if (db_result_ok(r)) return false;
    char err[300];
    snprintf(err, sizeof err, "%s", db_result_error(r));
    core_log_warn("item batch failed", CORE_F_STR("run_id", b->run->id), CORE_F_STR("error", err));
    db_rollback(b->txn, NULL, NULL);
    batch_done(b, false, err);
    return true;
}

static void on_pages_written(db_txn *t, const db_result *r, void *data)
{
    batch *b = data;
    if (batch_failed(b, r)) return;
    db_commit(t, on_batch_committed, b);
}

/* Validators and what each URL resolved to, for the whole batch in one statement. */
static void write_pages(batch *b)
{
    json_t *rows = json_array();
    for (int i = 0; i < b->n; i++) {
        const sc_store_item *s = b->items[i];
        bool dup = b->verdicts[i] == V_DUPLICATE;
        json_array_append_new(rows, json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:s?}", "url_fp", s->page_fp,
                                              "url", s->page_url, "etag", s->etag, "last_modified",
                                              s->last_modified, "item_id", dup ? NULL : b->ids[i],
                                              "duplicate_of", dup ? b->ids[i] : NULL));
    }
    char *js = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    const char *p[] = {b->run->source_id, js};
    db_txn_query(b->txn,
                 "INSERT INTO pages (source_id, url_fp, url, etag, last_modified, item_id, "
                 "duplicate_of, fetched_at) SELECT $1, x.url_fp, x.url, x.etag, x.last_modified, "
                 "x.item_id, x.duplicate_of, now() FROM jsonb_to_recordset($2::jsonb) AS x(url_fp "
                 "text, url text, etag text, last_modified text, item_id uuid, duplicate_of uuid) "
                 "ON CONFLICT (source_id, url_fp) DO UPDATE SET url = EXCLUDED.url, etag = "
                 "EXCLUDED.etag, last_modified = EXCLUDED.last_modified, item_id = "
                 "EXCLUDED.item_id, duplicate_of = EXCLUDED.duplicate_of, fetched_at = now()",
                 2, p, on_pages_written, b);
    free(js);
}

static void on_events_written(db_txn *t, const db_result *r, void *data)
{
    batch *b = data;
    (void)t;
    if (batch_failed(b, r)) return; /* the last event's result covers those before it */
    write_pages(b);
}

static void on_items_written(db_txn *t, const db_result *r, void *data)
{
    batch *b = data;
    if (batch_failed(b, r)) return;
    /* rows not returned: an update whose new text another URL's item already has */
    int rows = db_result_rows(r);
    for (int i = 0; i < b->n; i++) {
        if (b->verdicts[i] != V_NEW && b->verdicts[i] != V_CHANGED) continue;
        bool written = false;
        for (int k = 0; k < rows && !written; k++)
            written = strcmp(db_result_get(r, k, "id"), b->ids[i]) == 0;
        if (written) {
            b->new_items++;
        } else {
            b->verdicts[i] = V_DUPLICATE;
            b->unchanged++;
        }
    }
    if (rows == 0) {
        write_pages(b);
        return;
    }
    /* one statement for the batch's events */
    bus_record *recs = core_xcalloc((size_t)rows, sizeof *recs);
    for (int k = 0; k < rows; k++)
        item_event(r, k, &recs[k]);
    db_outbox_add_many(t, recs, (size_t)rows, on_events_written, b);
    for (int k = 0; k < rows; k++)
        free((void *)recs[k].value);
    free(recs);
}

static json_t *item_row(const batch *b, int i)
{
    const sc_store_item *s = b->items[i];
    const sc_item *it = &s->it;
    char pub[CORE_RFC3339_LEN + 1] = "";
    if (it->published_ms) core_format_rfc3339(it->published_ms, pub);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s?,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s,s:s,s:I,s:i,s:i,s:i,s:i}", "id",
        b->ids[i], "url", it->url, "url_fp", s->url_fp, "canonical_url", it->canonical_url, "title",
        it->title ? it->title : "", "author", it->author, "published_at", pub[0] ? pub : NULL,
        "lang", it->lang, "description", it->description, "image_url", it->image_url, "body",
        it->text, "content_hash", s->content_hash, "simhash", (json_int_t)(int64_t)s->simhash,
        "sh0", (int)(s->simhash & 0xffff), "sh1", (int)((s->simhash >> 16) & 0xffff), "sh2",
        (int)((s->simhash >> 32) & 0xffff), "sh3", (int)((s->simhash >> 48) & 0xffff));
    return o;
}

/* New and changed items in one upsert (version + 1 on update), unless the new text is already
 * another URL's item. */
static void write_items(batch *b)
{
    /* the array's text row by row: one row's tree at a time, not the batch's (each row holds
     * the page's text, so the whole tree next to its dump was about twice the batch) */
    core_buf arr = {0};
    for (int i = 0; i < b->n; i++) {
        if (b->verdicts[i] != V_NEW && b->verdicts[i] != V_CHANGED) continue;
        json_t *row = item_row(b, i);
        char *one = row ? json_dumps(row, JSON_COMPACT) : NULL;
        json_decref(row);
        if (!one) continue; /* left out, as json_array_append_new(rows, NULL) did */
        core_buf_puts(&arr, arr.len ? "," : "[");
        core_buf_puts(&arr, one);
        free(one);
    }
    if (arr.len == 0) {
        write_pages(b);
        return;
    }
    core_buf_puts(&arr, "]");
    char *js = core_buf_steal(&arr, NULL);
    core_buf sql = {0};
    core_buf_printf(
        &sql,
        "INSERT INTO items AS i (id, source_id, url, url_fp, canonical_url, title, author, "
        "published_at, lang, description, image_url, body, content_hash, simhash, sh0, sh1, sh2, "
        "sh3, run_id) SELECT x.id, $1, x.url, x.url_fp, x.canonical_url, x.title, x.author, "
        "x.published_at, x.lang, x.description, x.image_url, x.body, x.content_hash, x.simhash, "
        "x.sh0, x.sh1, x.sh2, x.sh3, $2 FROM jsonb_to_recordset($3::jsonb) AS x(id uuid, url "
        "text, url_fp text, canonical_url text, title text, author text, published_at "
        "timestamptz, lang text, description text, image_url text, body text, content_hash "
        "text, simhash bigint, sh0 int, sh1 int, sh2 int, sh3 int) ON CONFLICT (source_id, "
        "url_fp) DO UPDATE SET url = EXCLUDED.url, canonical_url = EXCLUDED.canonical_url, title "
        "= EXCLUDED.title, author = EXCLUDED.author, published_at = EXCLUDED.published_at, lang "
        "= EXCLUDED.lang, description = EXCLUDED.description, image_url = EXCLUDED.image_url, "
        "body = EXCLUDED.body, content_hash = EXCLUDED.content_hash, simhash = EXCLUDED.simhash, "
        "sh0 = EXCLUDED.sh0, sh1 = EXCLUDED.sh1, sh2 = EXCLUDED.sh2, sh3 = EXCLUDED.sh3, run_id "
        "= EXCLUDED.run_id, version = i.version + 1, updated_at = now() WHERE NOT EXISTS (SELECT "
        "1 FROM items o WHERE o.source_id = EXCLUDED.source_id AND o.content_hash = "
        "EXCLUDED.content_hash AND o.id <> i.id) RETURNING %s",
        sc_item_cols);
    const char *p[] = {b->run->source_id, b->run->id, js};
    db_txn_query(b->txn, sql.data, 3, p, on_items_written, b);
    core_buf_free(&sql);
    free(js);
}

/* An earlier item of this batch that this one repeats (same URL, same or near text); -1. */
static int in_batch_match(const batch *b, int i)
{
    const sc_store_item *s = b->items[i];
    for (int k = 0; k < i; k++) {
        if (b->verdicts[k] != V_NEW && b->verdicts[k] != V_CHANGED) continue;
        const sc_store_item *o = b->items[k];
        if (strcmp(o->url_fp, s->url_fp) == 0 || strcmp(o->content_hash, s->content_hash) == 0 ||
            sc_hamming(o->simhash, s->simhash) <= SC_NEAR_DUP_BITS)
            return k;
    }
    return -1;
}

static void on_dedup(db_txn *t, const db_result *r, void *data)
{
    batch *b = data;
    (void)t;
    if (batch_failed(b, r)) return;
    for (int i = 0; i < b->n; i++) {
        sc_store_item *s = b->items[i];
        const char *id = NULL, *fp = NULL, *hash = NULL;
        for (int k = 0; k < db_result_rows(r); k++) {
            int64_t ord = 0;
            db_result_int64(r, k, db_result_column(r, "ord"), &ord);
            if (ord == i + 1) {
                id = db_result_get(r, k, "id");
                fp = db_result_get(r, k, "url_fp");
                hash = db_result_get(r, k, "content_hash");
            }
        }
        int k = in_batch_match(b, i);
        if (k >= 0) { /* repeats an item written by this batch */
            b->verdicts[i] = V_DUPLICATE;
            memcpy(b->ids[i], b->ids[k], sizeof b->ids[i]);
            b->unchanged++;
        } else if (!id) {
            b->verdicts[i] = V_NEW;
            core_uuid_v7_string(b->ids[i]);
        } else {
            bool same_url = strcmp(fp, s->url_fp) == 0;
            bool same_text = strcmp(hash, s->content_hash) == 0;
            snprintf(b->ids[i], sizeof b->ids[i], "%s", id);
            b->verdicts[i] = same_url && !same_text ? V_CHANGED
                             : same_url             ? V_UNCHANGED
                                                    : V_DUPLICATE;
            if (b->verdicts[i] != V_CHANGED) b->unchanged++;
        }
    }
    write_items(b);
}

/* The stored item each batch item is closest to: same URL first, then same text, then a
 * SimHash within SC_NEAR_DUP_BITS (found through the four 16-bit bands). */
static void find_matches(batch *b)
{
    core_buf fps = {0}, hashes = {0}, sims = {0}, bands[4] = {{0}};
    for (int i = 0; i < b->n; i++) {
        const sc_store_item *s = b->items[i];
        const char *sep = i ? "," : "{";
        core_buf_printf(&fps, "%s%s", sep, s->url_fp);
        core_buf_printf(&hashes, "%s%s", sep, s->content_hash);
        core_buf_printf(&sims, "%s%lld", sep, (long long)(int64_t)s->simhash);
        for (int k = 0; k < 4; k++)
            core_buf_printf(&bands[k], "%s%u", sep, (unsigned)((s->simhash >> (16 * k)) & 0xffff));
    }
    core_buf *all[] = {&fps, &hashes, &sims, &bands[0], &bands[1], &bands[2], &bands[3]};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        core_buf_puts(all[k], "}");
    const char *p[] = {b->run->source_id, fps.data,      hashes.data,   sims.data,
                       bands[0].data,     bands[1].data, bands[2].data, bands[3].data};
    db_txn_query(b->txn,
                 "SELECT q.ord, e.id::text AS id, e.url_fp, e.content_hash FROM unnest($2::text[], "
                 "$3::text[], $4::bigint[], $5::int[], $6::int[], $7::int[], $8::int[]) WITH "
                 "ORDINALITY AS q(url_fp, hash, sim, s0, s1, s2, s3, ord) CROSS JOIN LATERAL "
                 "(SELECT * FROM ((SELECT id, url_fp, content_hash, 0 AS pri FROM items WHERE "
                 "source_id = $1 AND url_fp = q.url_fp LIMIT 1) UNION ALL (SELECT id, url_fp, "
                 "content_hash, 1 FROM items WHERE source_id = $1 AND content_hash = q.hash LIMIT "
                 "1) UNION ALL (SELECT id, url_fp, content_hash, 2 FROM items WHERE source_id = $1 "
                 "AND sh0 = q.s0 AND bit_count((simhash # q.sim)::bit(64)) <= 3 LIMIT 1) UNION "
                 "ALL (SELECT id, url_fp, content_hash, 2 FROM items WHERE source_id = $1 AND sh1 "
                 "= q.s1 AND bit_count((simhash # q.sim)::bit(64)) <= 3 LIMIT 1) UNION ALL "
                 "(SELECT id, url_fp, content_hash, 2 FROM items WHERE source_id = $1 AND sh2 = "
                 "q.s2 AND bit_count((simhash # q.sim)::bit(64)) <= 3 LIMIT 1) UNION ALL (SELECT "
                 "id, url_fp, content_hash, 2 FROM items WHERE source_id = $1 AND sh3 = q.s3 AND "
                 "bit_count((simhash # q.sim)::bit(64)) <= 3 LIMIT 1)) m ORDER BY pri LIMIT 1) e",
                 8, p, on_dedup, b);
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        core_buf_free(all[k]);
}

static void on_batch_begun(db_txn *t, const db_result *r, void *data)
{
    batch *b = data;
    if (!t) {
        batch_done(b, false, db_result_error(r));
        return;
    }
    b->txn = t;
    const char *p[] = {b->run->source_id};
    db_txn_query(t, "SELECT pg_advisory_xact_lock(hashtextextended('scraper.source:' || $1, 0))", 1,
                 p, ignore_result, NULL);
    find_matches(b);
}

static void store_kick(sc_run *run)
{
    if (run->storing || !run->sq_head) return;
    batch *b = core_xcalloc(1, sizeof *b);
    b->run = run;
    b->items = core_xcalloc(BATCH, sizeof *b->items);
    while (run->sq_head && b->n < BATCH) {
        sc_store_item *s = run->sq_head;
        run->sq_head = s->next;
        s->next = NULL;
        b->items[b->n++] = s;
        run->sq_len--;
    }
    if (!run->sq_head) run->sq_tail = NULL;
    b->verdicts = core_xcalloc((size_t)b->n, sizeof *b->verdicts);
    b->ids = core_xcalloc((size_t)b->n, sizeof *b->ids);
    run->storing = true;
    db_begin(run->app->db, on_batch_begun, b);
}

void sc_store_enqueue(sc_run *run, sc_store_item *si)
{
    sc_content_hash(si->it.text, si->content_hash);
    si->simhash = sc_simhash(si->it.text);
    si->next = NULL;
    run->sq_len++;
    if (run->sq_tail)
        run->sq_tail->next = si;
    else
        run->sq_head = si;
    run->sq_tail = si;
    store_kick(run);
}

void sc_store_item_free(sc_store_item *si)
{
    if (!si) return;
    sc_item_free(&si->it);
    free(si->page_url);
    free(si->etag);
    free(si->last_modified);
    free(si);
}

void sc_run_error(sc_run *run, const char *fmt, ...)
{
    run->nerrors++;
    if (run->nerrors > 10) {
        if (run->nerrors == 11) core_buf_puts(&run->errors, "\n(more errors not shown)");
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (run->errors.len && strstr(run->errors.data, line)) return;
    if (run->errors.len) core_buf_puts(&run->errors, "\n");
    core_buf_puts(&run->errors, line);
}
