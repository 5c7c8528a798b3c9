/*
 * CSV import and export.
 *
 * POST /api/subscribers/import?mode=upsert|skip[&list_id=...] (text/csv) checks the header,
 * records the import, answers 202 with its id and goes on in batches of IMPORT_BATCH_ROWS:
 *   A (thread pool)  parse and validate rows, blind-index the e-mail, drop duplicates in the file
 *   B (loop)         look the batch's addresses up (one query), decide insert / update / skip;
 *                    skipped while the import finds only new addresses (all taken as new)
 *   C (thread pool)  seal e-mail and name (new key per new subscriber), build the events and
 *                    the new subscribers' rows as binary COPY data
 *   D (loop)         one transaction: COPY the new rows, update the existing ones, list
 *                    memberships, the created/updated events (bulk outbox rows of up to 5,000:
 *                    the relay publishes one message per subscriber), the bad rows, the
 *                    import's counters, an ImportProgress event; IMPORT_WRITERS batches are in
 *                    D at once, each on its own connection
 * An existing address among rows taken as new (B skipped, or another writer such as a concurrent
 * import or a public subscribe added it after B) makes the COPY fail on the unique blind index,
 * and nothing of the batch is written: the batch is looked up and written again (a race again:
 * at most IMPORT_RETRIES times), so the address is skipped or updated like any existing one.
 * An erased address (tombstone) is never re-imported; an unsubscribed or blocklisted one keeps its
 * status. Re-running the same file is idempotent: everything it holds already exists. Each bad
 * row is reported with its data row number (1 = the first row after the header) and the reason.
 * GET /api/imports/{id} shows the counters and errors.
 */
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contentengine/v1/people.pb-c.h"
#include "sm.h"

#define CHUNK           (64 * 1024)
#define MAX_ERRORS_KEPT 100000
#define IMPORT_RETRIES  5
/* IMPORT_WRITERS batches are written concurrently, each in its own transaction on its own
 * connection: one PostgreSQL backend writing (heap, indexes, WAL, the foreign-key checks) is
 * the bottleneck of an import, and a second one doubles the CPU PostgreSQL can put on it. Two
 * more batches are prepared meanwhile: one parsed, one looked up and sealed. */
#define NBATCH_MAX (SM_IMPORT_WRITERS_MAX + 2)
/* Events per bulk outbox row (text: pasted into the statements). A batch of up to 100,000 rows
 * (IMPORT_BATCH_ROWS) gets several: the relay sends a bulk row in one Kafka transaction, and
 * the producer's queue holds 100,000 messages. */
#define BULK_MAX   "5000"
#define BULK_MAX_N 5000

/* The update statement's last CTE: the events of the rows the CTE `written` returned (ids from
 * the unnested batch `t`, whose column pl holds each row's encoded bulk entry) as bulk outbox
 * rows of up to BULK_MAX, in the batch's order. $topic is the events topic, $tp the
 * traceparent: bulk_params puts them right after the arrays. (New rows' events are bulk rows
 * built on the thread pool: every row of a COPY is written.) */
#define BULK_EVENTS_OF(written, tp, topic)                                                         \
    "ev AS (INSERT INTO outbox (topic, ce_id, ce_type, ce_time, content_type, traceparent, "       \
    "payload) SELECT $" topic ", gen_random_uuid()::text, '" DB_OUTBOX_BULK_TYPE "', now(), "      \
    "'application/protobuf', $" tp ", string_agg(t.pl, ''::bytea ORDER BY t.n) FROM t WHERE "      \
    "t.id IN (SELECT id FROM " written ") GROUP BY (t.n - 1) / " BULK_MAX " RETURNING 1) "

/* ---------------------------------------------------------------- binary arrays */

/* A one-dimensional array parameter in PostgreSQL's binary format (array_recv): a header,
 * then per element a 32-bit length (-1 for NULL) and the bytes. Sent as binary parameters,
 * nothing is hex-encoded or escaped on our side nor parsed as text on the server's. */
#define OID_BYTEA 17
#define OID_INT8  20
#define OID_TEXT  25
#define OID_JSONB 3802
#define OID_UUID  2950

typedef struct barr {
    core_buf b;   /* elements */
    core_buf out; /* header + elements, built by barr_finish */
    uint32_t oid;
    int32_t n;
    bool has_null;
} barr;

/* The first n statement parameters: finished arrays, in binary format. */
static void barr_params(barr *const *arrs, int n, const char **values, int *lengths, int *formats)
{
    for (int k = 0; k < n; k++) {
        values[k] = arrs[k]->out.data;
        lengths[k] = (int)arrs[k]->out.len;
        formats[k] = 1;
    }
}

static void put32(core_buf *b, uint32_t v)
{
    uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    core_buf_append(b, be, 4);
}

/* One value as an array element or a binary COPY field (the same encoding): its 32-bit length
 * (-1 for NULL), then its bytes in the type's binary form. */
static void put_value(core_buf *b, const void *data, size_t len)
{
    if (!data) {
        put32(b, 0xFFFFFFFFu);
        return;
    }
    put32(b, (uint32_t)len);
    core_buf_append(b, data, len);
}

/* jsonb's binary form: a version byte, then the JSON text */
static void put_jsonb(core_buf *b, const void *json, size_t len)
{
    put32(b, (uint32_t)(len + 1));
    core_buf_append(b, "\x01", 1);
    core_buf_append(b, json, len);
}

/* int8's (and timestamptz's) binary form: 8 bytes, big-endian */
static void put_int8(core_buf *b, int64_t v)
{
    put32(b, 8);
    put32(b, (uint32_t)((uint64_t)v >> 32));
    put32(b, (uint32_t)v);
}

static void barr_reset(barr *a, uint32_t oid)
{
    core_buf_reset(&a->b);
    core_buf_reset(&a->out);
    a->oid = oid;
    a->n = 0;
    a->has_null = false;
}

static void barr_free(barr *a)
{
    core_buf_free(&a->b);
    core_buf_free(&a->out);
}

static void barr_add(barr *a, const void *data, size_t len)
{
    a->n++;
    if (!data) a->has_null = true;
    if (data && a->oid == OID_JSONB)
        put_jsonb(&a->b, data, len);
    else
        put_value(&a->b, data, len);
}

static void barr_text(barr *a, const char *s)
{
    barr_add(a, s, s ? strlen(s) : 0);
}

static void barr_uuid(barr *a, const char *s)
{
    core_uuid u;
    if (!core_uuid_parse(s, &u)) abort(); /* ids are ours: always valid */
    barr_add(a, u.b, sizeof u.b);
}

static void barr_int8(barr *a, int64_t v)
{
    put_int8(&a->b, v);
    a->n++;
}

static void barr_finish(barr *a)
{
    core_buf_reset(&a->out);
    put32(&a->out, a->n ? 1 : 0); /* dimensions */
    put32(&a->out, a->has_null ? 1 : 0);
    put32(&a->out, a->oid);
    if (a->n) {
        put32(&a->out, (uint32_t)a->n);
        put32(&a->out, 1); /* lower bound */
        core_buf_append(&a->out, a->b.data, a->b.len);
    }
}

/* ---------------------------------------------------------------- binary COPY data */

/* PostgreSQL's binary COPY format: a signature and two zero words, then per row a 16-bit field
 * count and its fields (put_value and the like), then -1 as the field count of the end. */
static void copy_start(core_buf *c)
{
    core_buf_reset(c);
    core_buf_append(c, "PGCOPY\n\377\r\n\0", 11);
    put32(c, 0); /* flags */
    put32(c, 0); /* header extension length */
}

static void copy_row(core_buf *c, uint16_t nfields)
{
    uint8_t be[2] = {(uint8_t)(nfields >> 8), (uint8_t)nfields};
    core_buf_append(c, be, 2);
}

static void copy_text(core_buf *c, const char *s)
{
    put_value(c, s, strlen(s));
}

/* timestamptz: microseconds since 2000-01-01 UTC */
static void copy_time(core_buf *c, int64_t unix_us)
{
    put_int8(c, unix_us - INT64_C(946684800000000));
}

static void copy_finish(core_buf *c)
{
    core_buf_append(c, "\xff\xff", 2);
}

/* A good row. Its texts are in the batch's text buffer (TEXT): the row stays small, and the
 * batch's rows are copied into blind-index order once (parse_batch) and then walked in order. */
typedef struct irow {
    int64_t row;
    uint32_t email, name; /* offsets of the normalized address and name in the batch's text */
    uint32_t attrs;       /* offset of the attributes (JSON object text); 0: none */
    const char *status;   /* NULL: default / unchanged */
    uint8_t idx[SM_INDEX_BYTES];
    int kind; /* 0 insert, 1 update, 2 skip */
    char id[CORE_UUID_STRLEN + 1];
    char ce_id[CORE_UUID_STRLEN + 1];
    uint8_t wrapped[SM_WRAPPED_LEN];
} irow;

typedef struct job job;

/* One batch of rows on its way through the phases. IMPORT_WRITERS + 2 exist per import: while
 * IMPORT_WRITERS are written (the database works), the next two are parsed, looked up and sealed
 * (the thread pool works). */
enum { B_IDLE, B_BUSY, B_READY, B_WRITING };

typedef struct batch {
    job *j;
    int state;
    int64_t seq;
    irow *rows, *spare; /* spare: where parse_batch puts the rows in blind-index order */
    int nrows, cap;
    int *order;        /* parse_batch's sort */
    core_buf text;     /* the rows' addresses, names and attributes, each NUL-terminated */
    barr e_row, e_msg; /* bad rows: data row numbers and reasons */
    int b_fail, b_skip, b_ins, b_upd;
    int errors_kept; /* of b_fail, written to import_errors (MAX_ERRORS_KEPT per import) */
    int retries;     /* rewritten after losing a race for an address */
    bool optimistic; /* written without a lookup (all rows taken as new) */
    int q_upd, q_n;  /* write_step: the update's place among the statements, their number */
    /* phase C output: the new rows as COPY data, their events as bulk outbox payloads (up to
     * BULK_MAX_N each), the updates and memberships as binary array parameters */
    core_buf copy_subs, copy_secrets;
    core_buf *bulk;
    int nbulk, bulk_cap, bulk_fill;
    barr u_id, u_em, u_nm, u_st, u_at, u_ev;
    barr members;
    int64_t t_mark;
    uv_work_t work;
} batch;

struct job {
    sm_app *app;
    char id[CORE_UUID_STRLEN + 1];
    bool upsert;
    char list_id[CORE_UUID_STRLEN + 1];
    char *body;
    size_t len, pos;
    sm_csv csv;
    int ncols, col_email, col_name, col_status, col_attrs;
    char *cols[SM_CSV_MAX_FIELDS];
    int64_t datarow;
    bool eof, truncated;
    batch b[NBATCH_MAX];
    int nb;      /* batches in use: IMPORT_WRITERS + 2 */
    batch *fill; /* the batch the parser fills */
    int64_t seq;
    int writing; /* batches being written */
    bool input_done, failed;
    char fail_reason[128];
    /* duplicates within the file: their blind indexes, open addressing */
    uint8_t *seen;
    size_t seen_cap, seen_n;
    /* counters */
    int64_t processed, inserted, updated, skipped, failed_rows;
    int64_t errors_kept; /* bad rows written to import_errors, committed or being written */
    bool optimistic;     /* the last lookup found nothing: write the next batch without one */
    char traceparent[CORE_TRACEPARENT_LEN + 1];
    int64_t start_ns;
    int64_t t_parse, t_lookup, t_seal, t_write; /* per phase, summed (ns) */
};

static const char *const statuses[] = {"pending",     "active",  "unsubscribed",
                                       "blocklisted", "bounced", NULL};

/* ---------------------------------------------------------------- job */

/* The phase C output (not the bad rows: those come from phase A and survive a retry). */
#define ALL_ARRAYS(j)                                                                              \
    {                                                                                              \
        &(j)->u_id, &(j)->u_em, &(j)->u_nm, &(j)->u_st, &(j)->u_at, &(j)->u_ev, &(j)->members      \
    }

static void bufs_reset(batch *b)
{
    barr *all[] = ALL_ARRAYS(b);
    static const uint32_t oids[] = {OID_UUID,  OID_BYTEA, OID_BYTEA, OID_TEXT,
                                    OID_JSONB, OID_BYTEA, OID_UUID};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        barr_reset(all[i], oids[i]);
    copy_start(&b->copy_subs);
    copy_start(&b->copy_secrets);
    for (int k = 0; k < b->nbulk; k++)
        core_buf_reset(&b->bulk[k]);
    b->nbulk = 0;
    b->bulk_fill = 0;
}

static void bufs_free(batch *b)
{
    barr *all[] = ALL_ARRAYS(b);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        barr_free(all[i]);
    barr_free(&b->e_row);
    barr_free(&b->e_msg);
    core_buf_free(&b->copy_subs);
    core_buf_free(&b->copy_secrets);
    for (int k = 0; k < b->bulk_cap; k++)
        core_buf_free(&b->bulk[k]);
    free(b->bulk);
}

#define TEXT(b, off) ((b)->text.data + (off))

static void rows_clear(batch *b)
{
    if (b->text.data) sodium_memzero(b->text.data, b->text.len); /* personal data */
    core_buf_reset(&b->text);
    core_buf_append(&b->text, "", 1); /* offset 0: no text */
    b->nrows = 0;
}

static void job_free(job *j)
{
    for (int k = 0; k < j->nb; k++) {
        batch *b = &j->b[k];
        rows_clear(b);
        core_buf_free(&b->text);
        free(b->rows);
        free(b->spare);
        free(b->order);
        bufs_free(b);
    }
    sm_csv_free(&j->csv);
    for (int i = 0; i < j->ncols; i++)
        free(j->cols[i]);
    free(j->seen);
    if (j->body) sodium_memzero(j->body, j->len);
    free(j->body);
    free(j);
}

static void row_error(batch *b, int64_t row, const char *reason);

/* The import's set of blind indexes: open addressing, an all-zero entry is empty. */
static const uint8_t seen_empty[SM_INDEX_BYTES];

static size_t seen_slot(const uint8_t idx[SM_INDEX_BYTES], size_t cap)
{
    uint64_t h;
    memcpy(&h, idx, 8); /* the blind index is uniformly random already */
    return h & (cap - 1);
}

/* The entry of a table of cap entries that holds idx, or else the empty one where it goes. */
static uint8_t *seen_find(uint8_t *table, size_t cap, const uint8_t idx[SM_INDEX_BYTES])
{
    for (size_t s = seen_slot(idx, cap);; s = (s + 1) & (cap - 1)) {
        uint8_t *e = table + s * SM_INDEX_BYTES;
        if (!memcmp(e, seen_empty, SM_INDEX_BYTES) || !memcmp(e, idx, SM_INDEX_BYTES)) return e;
    }
}

/* Room for n more addresses at a load of at most a half. The table grows once to what the whole
 * body will need, estimated from the rows read so far: rehashing a table of megabytes at every
 * doubling missed the cache for every entry. */
static void seen_reserve(job *j, size_t n)
{
    if ((j->seen_n + n) * 2 <= j->seen_cap) return;
    size_t want = j->seen_n + n;
    if (j->pos > 0 && j->datarow > 0) {
        double total = (double)j->datarow * (double)j->len / (double)j->pos;
        if (total > (double)want && total < (double)j->app->import_max_rows * 2)
            want = (size_t)total;
    }
    size_t cap = j->seen_cap ? j->seen_cap : 4096;
    while (cap < want * 2)
        cap *= 2;
    uint8_t *table = core_xcalloc(cap, SM_INDEX_BYTES);
    for (size_t i = 0; i < j->seen_cap; i++) {
        const uint8_t *e = j->seen + i * SM_INDEX_BYTES;
        if (memcmp(e, seen_empty, SM_INDEX_BYTES) != 0)
            memcpy(seen_find(table, cap, e), e, SM_INDEX_BYTES);
    }
    free(j->seen);
    j->seen = table;
    j->seen_cap = cap;
}

/* false: an earlier row of the import had the address. After seen_reserve. */
static bool seen_add(job *j, const uint8_t idx[SM_INDEX_BYTES])
{
    uint8_t *e = seen_find(j->seen, j->seen_cap, idx);
    if (memcmp(e, seen_empty, SM_INDEX_BYTES) != 0) return false; /* not empty: idx is there */
    memcpy(e, idx, SM_INDEX_BYTES);
    j->seen_n++;
    return true;
}

/* Drops the batch's rows whose address an earlier row had (reported as bad rows), in row order
 * so the first one wins. The table is larger than the caches: each row's slot is fetched a few
 * rows ahead (checked one by one as they were parsed, the misses were a twentieth of the
 * service's CPU). */
static void drop_duplicates(job *j, batch *b)
{
    seen_reserve(j, (size_t)b->nrows);
    int kept = 0;
    for (int i = 0; i < b->nrows; i++) {
        if (i + 8 < b->nrows)
            __builtin_prefetch(j->seen +
                               seen_slot(b->rows[i + 8].idx, j->seen_cap) * SM_INDEX_BYTES);
        if (!seen_add(j, b->rows[i].idx)) {
            row_error(b, b->rows[i].row, "duplicate of an earlier row's email");
            continue;
        }
        b->rows[kept++] = b->rows[i];
    }
    b->nrows = kept;
}

static void row_error(batch *b, int64_t row, const char *reason)
{
    b->b_fail++;
    barr_int8(&b->e_row, row);
    barr_text(&b->e_msg, reason);
}

/* Adds the time since the last mark to acc (per-phase timings in the final log line). */
static void phase_done(batch *b, int64_t *acc)
{
    int64_t now = core_mono_ns();
    *acc += now - b->t_mark;
    b->t_mark = now;
}

/* ---------------------------------------------------------------- A: parse */

/* The row's attributes as JSON object text appended to the batch's text (*out its offset, 0 when
 * it has none): the attributes column, checked to be an object by parsing it and passed on as
 * written (jsonb parses it again), with every other column added as a string member. A column
 * wins over the same key in the attributes column, as jsonb keeps the last of duplicate keys.
 * Built as text: a jansson object per row, serialized again, was a tenth of the service's CPU
 * in an import. On false the text is as it was. */
static bool row_attributes(const job *j, batch *b, char **f, const size_t *lens, int n,
                           uint32_t *out, const char **why)
{
    *out = 0;
    core_buf *t = &b->text;
    size_t start = t->len;
    bool members = false;
    if (j->col_attrs >= 0 && lens[j->col_attrs]) {
        const char *a = f[j->col_attrs];
        size_t len = lens[j->col_attrs];
        json_t *v = json_loadb(a, len, JSON_REJECT_DUPLICATES, NULL);
        bool object = json_is_object(v);
        members = object && json_object_size(v) > 0;
        json_decref(v);
        while (len && (a[len - 1] == ' ' || a[len - 1] == '\t' || a[len - 1] == '\n' ||
                       a[len - 1] == '\r'))
            len--;
        if (!object || len == 0 || a[len - 1] != '}') {
            *why = "attributes must be a JSON object";
            return false;
        }
        core_buf_append(t, a, len - 1); /* without its closing brace */
    }
    for (int c = 0; c < n; c++) {
        if (c == j->col_email || c == j->col_name || c == j->col_status || c == j->col_attrs)
            continue;
        if (!sm_utf8_valid(f[c], lens[c]) || memchr(f[c], '\0', lens[c])) {
            t->len = start;
            *why = "a field is not valid UTF-8 or holds a NUL byte";
            return false;
        }
        if (t->len == start) core_buf_puts(t, "{");
        core_buf_puts(t, members ? ",\"" : "\"");
        core_buf_json_escape(t, j->cols[c], strlen(j->cols[c]));
        core_buf_puts(t, "\":\"");
        core_buf_json_escape(t, f[c], lens[c]);
        core_buf_puts(t, "\"");
        members = true;
    }
    if (t->len > start) {
        core_buf_append(t, "}", 2); /* and its NUL */
        *out = (uint32_t)start;
    }
    return true;
}

static void on_record(void *ud, int64_t recno, char **f, const size_t *lens, int n,
                      const char *error)
{
    (void)recno;
    job *j = ud;
    batch *b = j->fill;
    int64_t row = ++j->datarow;
    if (row > j->app->import_max_rows) {
        j->truncated = true;
        j->datarow--;
        return;
    }
    if (error) {
        row_error(b, row, error);
        return;
    }
    if (n != j->ncols) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected %d fields, got %d", j->ncols, n);
        row_error(b, row, msg);
        return;
    }
    if (b->nrows == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1024;
        b->rows = core_xrealloc(b->rows, (size_t)b->cap * sizeof *b->rows);
    }
    irow *r = &b->rows[b->nrows];
    memset(r, 0, sizeof *r);
    r->row = row;
    const char *why = NULL;
    char email[SM_EMAIL_MAX + 1], name[SM_NAME_MAX + 1] = "";
    if (!sm_email_normalize(f[j->col_email], lens[j->col_email], email, &why)) {
        row_error(b, row, why);
        return;
    }
    if (j->col_name >= 0 && !sm_name_normalize(f[j->col_name], lens[j->col_name], name, &why)) {
        row_error(b, row, why);
        return;
    }
    if (!name[0]) {
        const char *at = strchr(email, '@');
        snprintf(name, sizeof name, "%.*s", (int)(at - email), email);
    }
    if (j->col_status >= 0 && lens[j->col_status]) {
        for (int i = 0; statuses[i]; i++)
            if (!strcmp(statuses[i], f[j->col_status])) r->status = statuses[i];
        if (!r->status) {
            row_error(b, row,
                      "status must be pending, active, unsubscribed, blocklisted or bounced");
            return;
        }
    }
    if (!row_attributes(j, b, f, lens, n, &r->attrs, &why)) {
        row_error(b, row, why);
        return;
    }
    sm_blind_index(&j->app->keys, email, r->idx); /* duplicates: drop_duplicates */
    r->email = (uint32_t)b->text.len;
    core_buf_append(&b->text, email, strlen(email) + 1);
    r->name = (uint32_t)b->text.len;
    core_buf_append(&b->text, name, strlen(name) + 1);
    sodium_memzero(email, sizeof email);
    sodium_memzero(name, sizeof name);
    b->nrows++;
}

/* b->order = the batch's rows in blind-index order. The index is uniformly random: a counting
 * sort on its leading bits leaves a few rows per bucket, and an insertion sort over the whole
 * permutation then only moves rows within their bucket (qsort's comparisons through the
 * permutation were a thirtieth of the service's CPU). */
static void sort_by_index(batch *b)
{
    int n = b->nrows, bits = 8;
    while ((1 << bits) < n / 2 && bits < 16)
        bits++;
    size_t nb = (size_t)1 << bits;
    uint32_t *start = core_xcalloc(nb + 1, sizeof *start);
#define BUCKET(r) ((uint32_t)((r)->idx[0] << 8 | (r)->idx[1]) >> (16 - bits))
    for (int i = 0; i < n; i++)
        start[BUCKET(&b->rows[i]) + 1]++;
    for (size_t k = 1; k <= nb; k++)
        start[k] += start[k - 1];
    for (int i = 0; i < n; i++)
        b->order[start[BUCKET(&b->rows[i])]++] = i;
#undef BUCKET
    free(start);
    for (int i = 1; i < n; i++) {
        int v = b->order[i], k = i;
        const uint8_t *key = b->rows[v].idx;
        while (k > 0 && memcmp(b->rows[b->order[k - 1]].idx, key, SM_INDEX_BYTES) > 0) {
            b->order[k] = b->order[k - 1];
            k--;
        }
        b->order[k] = v;
    }
    for (int i = 1; i < n; i++) /* cheap next to the sort; the tests run it on a million rows */
        assert(memcmp(b->rows[b->order[i - 1]].idx, b->rows[b->order[i]].idx, SM_INDEX_BYTES) <= 0);
}

static void parse_batch(uv_work_t *w)
{
    batch *b = w->data;
    job *j = b->j;
    j->fill = b;
    while (b->nrows < j->app->import_batch && !j->eof && !j->truncated) {
        size_t n = j->len - j->pos < CHUNK ? j->len - j->pos : CHUNK;
        if (n == 0) {
            sm_csv_finish(&j->csv, on_record, j);
            j->eof = true;
            break;
        }
        sm_csv_feed(&j->csv, j->body + j->pos, n, on_record, j);
        j->pos += n;
    }
    drop_duplicates(j, b);
    /* In blind-index order, a batch's probes and inserts of the random index keys walk
     * the b-tree in one direction instead of jumping across it for every key. */
    b->order = core_xrealloc(b->order, (size_t)(b->cap ? b->cap : 1) * sizeof *b->order);
    sort_by_index(b);
    /* copied into that order once: the later phases walk the rows in memory order (walking a
     * batch through a permutation missed the cache for every row) */
    b->spare = core_xrealloc(b->spare, (size_t)(b->cap ? b->cap : 1) * sizeof *b->spare);
    for (int i = 0; i < b->nrows; i++)
        b->spare[i] = b->rows[b->order[i]];
    irow *sorted = b->spare;
    b->spare = b->rows;
    b->rows = sorted;
}

/* ---------------------------------------------------------------- C: seal */

/* The row's created / updated event as an entry of a bulk outbox row (db_outbox_bulk_entry),
 * appended to out: the relay publishes it as one Kafka message per subscriber, with the same
 * key, ids, type and payload as a row of its own had. */
static void event_entry(core_buf *out, const batch *b, const irow *r, sm_sealer *sealer,
                        bool created, const char *status)
{
    const char *list = b->j->list_id;
    char *pii = sm_pii_json(TEXT(b, r->email), TEXT(b, r->name), NULL);
    const char *ids[] = {list};
    bus_record rec;
    uint8_t *buf;
    sm_event_record(&(sm_event){.subscriber_id = r->id,
                                .kind = created ? "created" : "updated",
                                .status = status,
                                .list_ids = list[0] ? ids : NULL,
                                .nlists = list[0] ? 1 : 0,
                                .sealer = sealer,
                                .pii_json = pii},
                    &rec, &buf);
    rec.ce_id = r->ce_id;
    if (created) rec.ce_type = NULL; /* the bulk's default (bulk_next) */
    db_outbox_bulk_entry(out, &rec);
    free(buf);
    free(pii);
}

/* The bulk payload the next created event goes to: a new one every BULK_MAX_N events. Its
 * entries leave the type to the payload's default. */
static core_buf *bulk_next(batch *b)
{
    if (b->nbulk == 0 || b->bulk_fill == BULK_MAX_N) {
        if (b->nbulk == b->bulk_cap) {
            b->bulk = core_xrealloc(b->bulk, (size_t)(b->bulk_cap + 4) * sizeof *b->bulk);
            memset(b->bulk + b->bulk_cap, 0, 4 * sizeof *b->bulk);
            b->bulk_cap += 4;
        }
        core_buf_reset(&b->bulk[b->nbulk++]);
        db_outbox_bulk_default_type(&b->bulk[b->nbulk - 1], sm_event_type("created"));
        b->bulk_fill = 0;
    }
    b->bulk_fill++;
    return &b->bulk[b->nbulk - 1];
}

/* Seals text for the subscriber's field into out; returns the sealed length. */
typedef uint8_t sealed_text[SM_NAME_MAX + SM_EMAIL_MAX + SM_SEAL_OVERHEAD];
static size_t seal_text(sm_sealer *sealer, const char *id, const char *field, const char *text,
                        sealed_text out)
{
    size_t n = strlen(text);
    sm_sealer_seal(sealer, id, field, text, n, out);
    return n + SM_SEAL_OVERHEAD;
}

/* A new subscriber: its rows in subscribers and subscriber_secrets (COPY data, in the column
 * order of the COPY statements in write_step) and its created event. */
static void add_new(batch *b, const irow *r, sm_sealer *sealer,
                    const uint8_t wrapped[SM_WRAPPED_LEN], int64_t now_us)
{
    const char *st = r->status ? r->status : "active";
    core_uuid u;
    if (!core_uuid_parse(r->id, &u)) abort(); /* ids are ours: always valid */
    /* subscribers (id, status, attributes, consent_source, consent_at, created_at, updated_at,
     * confirmed_at) */
    core_buf *c = &b->copy_subs;
    copy_row(c, 8);
    put_value(c, u.b, sizeof u.b);
    copy_text(c, st);
    const char *attrs = r->attrs ? TEXT(b, r->attrs) : "{}";
    put_jsonb(c, attrs, strlen(attrs));
    copy_text(c, "import");
    copy_time(c, now_us);
    copy_time(c, now_us);
    copy_time(c, now_us);
    if (!strcmp(st, "active"))
        copy_time(c, now_us);
    else
        put_value(c, NULL, 0);
    /* subscriber_secrets (subscriber_id, email_index, email_enc, name_enc, wrapped_key) */
    c = &b->copy_secrets;
    copy_row(c, 5);
    put_value(c, u.b, sizeof u.b);
    put_value(c, r->idx, sizeof r->idx);
    sealed_text sealed;
    put_value(c, sealed, seal_text(sealer, r->id, "email", TEXT(b, r->email), sealed));
    put_value(c, sealed, seal_text(sealer, r->id, "name", TEXT(b, r->name), sealed));
    put_value(c, wrapped, SM_WRAPPED_LEN);
    event_entry(bulk_next(b), b, r, sealer, true, st);
}

static void seal_batch(uv_work_t *w)
{
    batch *b = w->data;
    job *j = b->j;
    const sm_keys *k = &j->app->keys;
    int64_t now_us = core_now_unix_ms() * 1000;
    core_buf entry = {0};
    bufs_reset(b);
    sm_sealer master; /* wraps the new subscribers' keys */
    sm_sealer_init(&master, k->data);
    for (int i = 0; i < b->nrows; i++) {
        irow *r = &b->rows[i];
        /* the texts are in parse order, the rows in blind-index order: fetch ahead */
        if (i + 8 < b->nrows) {
            __builtin_prefetch(b->text.data + b->rows[i + 8].email);
            __builtin_prefetch(b->text.data + b->rows[i + 8].attrs);
        }
        /* the e-mail, the name and the event's PII: three seals, one key setup */
        uint8_t dek[SM_KEY_BYTES];
        sm_sealer sealer;
        if (r->kind == 0) {
            uint8_t wrapped[SM_WRAPPED_LEN];
            sm_key_new_sealed(&master, r->id, dek, wrapped);
            sm_sealer_init(&sealer, dek);
            add_new(b, r, &sealer, wrapped, now_us);
        } else if (r->kind == 1) {
            if (!sm_key_unwrap(k, r->id, r->wrapped, sizeof r->wrapped, dek)) {
                r->kind = 3; /* unreadable key: reported on the loop */
                continue;
            }
            sm_sealer_init(&sealer, dek);
            barr_uuid(&b->u_id, r->id);
            sealed_text sealed;
            barr_add(&b->u_em, sealed,
                     seal_text(&sealer, r->id, "email", TEXT(b, r->email), sealed));
            barr_add(&b->u_nm, sealed, seal_text(&sealer, r->id, "name", TEXT(b, r->name), sealed));
            barr_text(&b->u_st, r->status);
            barr_text(&b->u_at, r->attrs ? TEXT(b, r->attrs) : NULL);
            core_buf_reset(&entry);
            event_entry(&entry, b, r, &sealer, false, r->status ? r->status : "");
            barr_add(&b->u_ev, entry.data, entry.len);
        } else {
            continue;
        }
        if (j->list_id[0]) barr_uuid(&b->members, r->id);
        sodium_memzero(dek, sizeof dek);
        sm_sealer_wipe(&sealer);
    }
    sm_sealer_wipe(&master);
    core_buf_free(&entry);
    copy_finish(&b->copy_subs);
    copy_finish(&b->copy_secrets);
    barr *all[] = ALL_ARRAYS(b);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        barr_finish(all[i]);
}

/* ---------------------------------------------------------------- D: write */

static void finish(job *j, const char *status, const char *error);
static void prepare(job *j, batch *b);

/* c: rows processed, inserted, updated, skipped, failed (committed, with this transaction's) */
static void progress_event(sm_op *op, job *j, const char *status, const char *error,
                           const int64_t c[5])
{
    Contentengine__V1__ImportProgress p = CONTENTENGINE__V1__IMPORT_PROGRESS__INIT;
    p.import_id = j->id;
    p.status = (char *)status;
    p.rows_processed = c[0];
    p.rows_inserted = c[1];
    p.rows_updated = c[2];
    p.rows_skipped = c[3];
    p.rows_failed = c[4];
    p.occurred_unix_ms = core_now_unix_ms();
    p.error = (char *)(error ? error : "");
    size_t len = contentengine__v1__import_progress__get_packed_size(&p);
    uint8_t *buf = core_xcalloc(1, len ? len : 1);
    contentengine__v1__import_progress__pack(&p, buf);
    bus_record rec = {.topic = sm_topic_imports,
                      .partition = BUS_PARTITION_ANY,
                      .key = j->id,
                      .key_len = strlen(j->id),
                      .value = buf,
                      .value_len = len,
                      .ce_type = "contentengine.subscriber.import.progress.v1",
                      .ce_subject = j->id,
                      .traceparent = j->traceparent};
    sm_outbox(op, &rec);
    free(buf);
}

/* A write statement's parameters: the n arrays ($1..$n, binary), then the traceparent ($n+1)
 * and the events topic ($n+2) of BULK_EVENTS_OF. Returns their count. */
static int bulk_params(barr *const *arrs, int n, const job *j, const char **values, int *lengths,
                       int *formats)
{
    barr_params(arrs, n, values, lengths, formats);
    values[n] = j->traceparent;
    values[n + 1] = sm_topic_events;
    lengths[n] = lengths[n + 1] = 0;
    formats[n] = formats[n + 1] = 0;
    return n + 2;
}

/* The batch's transaction: the statements it needs are queued at once at step 0 (the COPYs of
 * the new rows and their bulk event rows, the update of existing ones, list memberships, bad
 * rows), then the import's counters, the progress event and the commit. */
static void write_step(sm_op *op, const db_result *r)
{
    batch *b = op->ctx;
    job *j = b->j;
    if (op->step == 0) {
        int q = 0;
        b->q_upd = -1;
        /* megabytes of COPY data, arrays and bulk rows: sent from the batch, which stays as it
         * is until the transaction ends */
        db_txn_borrow(op->txn, true);
        if (b->b_ins) {
            sm_copy(op,
                    "COPY subscribers (id, status, attributes, consent_source, consent_at, "
                    "created_at, updated_at, confirmed_at) FROM STDIN (FORMAT binary)",
                    b->copy_subs.data, b->copy_subs.len);
            sm_copy(op,
                    "COPY subscriber_secrets (subscriber_id, email_index, email_enc, name_enc, "
                    "wrapped_key) FROM STDIN (FORMAT binary)",
                    b->copy_secrets.data, b->copy_secrets.len);
            q += 2;
            for (int k = 0; k < b->nbulk; k++, q++)
                sm_outbox(op, &(bus_record){.topic = sm_topic_events,
                                            .partition = BUS_PARTITION_ANY,
                                            .value = b->bulk[k].data,
                                            .value_len = b->bulk[k].len,
                                            .ce_type = DB_OUTBOX_BULK_TYPE,
                                            .content_type = "application/protobuf",
                                            .traceparent = j->traceparent});
        }
        if (b->u_id.n) {
            barr *ua[] = {&b->u_id, &b->u_em, &b->u_nm, &b->u_st, &b->u_at, &b->u_ev};
            const char *u[8];
            int ulen[8], ufmt[8];
            int nu = bulk_params(ua, 6, j, u, ulen, ufmt);
            sm_qb(op,
                  "WITH t AS (SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bytea[], "
                  "$4::text[], $5::jsonb[], $6::bytea[]) WITH ORDINALITY AS t(id, em, nm, st, at, "
                  "pl, n)), upd AS (UPDATE subscribers s SET status = CASE WHEN s.status IN "
                  "('unsubscribed', 'blocklisted') THEN s.status ELSE COALESCE(t.st, s.status) "
                  "END, attributes = s.attributes || COALESCE(t.at, '{}'), updated_at = now(), "
                  "version = s.version + 1 FROM t WHERE s.id = t.id AND s.erased_at IS NULL "
                  "RETURNING s.id), sec AS (UPDATE subscriber_secrets k SET email_enc = t.em, "
                  "name_enc = t.nm FROM t WHERE k.subscriber_id = t.id AND t.id IN (SELECT id "
                  "FROM upd)), " BULK_EVENTS_OF("upd", "7", "8") "SELECT (SELECT count(*) FROM "
                                                                 "upd) AS n",
                  nu, u, ulen, ufmt);
            b->q_upd = q++;
        }
        if (j->list_id[0] && b->members.n) {
            const char *m[] = {j->list_id, b->members.out.data};
            int mlen[] = {0, (int)b->members.out.len}, mfmt[] = {0, 1};
            sm_qb(op,
                  "INSERT INTO subscriptions (list_id, subscriber_id, status) SELECT $1::uuid, s, "
                  "'confirmed' FROM unnest($2::uuid[]) AS s ON CONFLICT (list_id, subscriber_id) "
                  "DO NOTHING",
                  2, m, mlen, mfmt);
            q++;
        }
        int64_t room = MAX_ERRORS_KEPT - j->errors_kept;
        b->errors_kept = (int)(b->e_row.n < room ? b->e_row.n : room > 0 ? room : 0);
        if (b->errors_kept) {
            j->errors_kept += b->errors_kept;
            barr_finish(&b->e_row);
            barr_finish(&b->e_msg);
            char lim[16];
            snprintf(lim, sizeof lim, "%d", b->errors_kept);
            const char *e[] = {j->id, b->e_row.out.data, b->e_msg.out.data, lim};
            int elen[] = {0, (int)b->e_row.out.len, (int)b->e_msg.out.len, 0};
            int efmt[] = {0, 1, 1, 0};
            sm_qb(op,
                  "INSERT INTO import_errors (import_id, row_number, error) SELECT $1::uuid, r, "
                  "e FROM unnest($2::int8[], $3::text[]) AS x(r, e) LIMIT $4::int",
                  4, e, elen, efmt);
            q++;
        }
        if (!b->u_id.n) { /* every existing row's key was unreadable */
            b->b_skip += b->b_upd;
            b->b_upd = 0;
        }
        db_txn_borrow(op->txn, false);
        b->q_n = q;
    }
    if (op->step > 0 && op->step == b->q_upd + 1) {
        int64_t n = 0;
        db_result_int64(r, 0, 0, &n);
        b->b_skip += b->b_upd - (int)n; /* erased meanwhile */
        b->b_upd = (int)n;
    }
    if (op->step == b->q_n) {
        /* This batch's counts are added (batches commit in any order); the row lock orders the
         * writers, so RETURNING gives everything committed before plus this batch: the
         * progress event describes committed state, and progress events of one import reach
         * the outbox in commit order. */
        char c[5][24];
        snprintf(c[0], 24, "%d", b->b_ins + b->b_upd + b->b_skip + b->b_fail);
        snprintf(c[1], 24, "%d", b->b_ins);
        snprintf(c[2], 24, "%d", b->b_upd);
        snprintf(c[3], 24, "%d", b->b_skip);
        snprintf(c[4], 24, "%d", b->b_fail);
        const char *v[] = {j->id, c[0], c[1], c[2], c[3], c[4]};
        sm_q(op,
             "UPDATE imports SET rows_total = rows_total + $2::bigint, rows_inserted = "
             "rows_inserted + $3::bigint, rows_updated = rows_updated + $4::bigint, rows_skipped "
             "= rows_skipped + $5::bigint, rows_failed = rows_failed + $6::bigint WHERE id = "
             "$1::uuid RETURNING rows_total, rows_inserted, rows_updated, rows_skipped, "
             "rows_failed",
             6, v);
    } else if (op->step == b->q_n + 1) {
        int64_t c[5] = {0};
        for (int k = 0; k < 5; k++)
            db_result_int64(r, 0, k, &c[k]);
        progress_event(op, j, "running", NULL, c);
    } else if (op->step == b->q_n + 2) {
        sm_commit(op);
    }
}

/* ---------------------------------------------------------------- the pipeline */

static bool has_state(const job *j, int state)
{
    for (int k = 0; k < j->nb; k++)
        if (j->b[k].state == state) return true;
    return false;
}

/* Ends the import once nothing is in flight any more (a thread-pool job or a query of the
 * other batch must not outlive the job); a failed import drops a batch that is only ready. */
static void maybe_finish(job *j)
{
    if (has_state(j, B_BUSY) || has_state(j, B_WRITING)) return;
    if (j->failed)
        finish(j, "failed", j->fail_reason);
    else if (j->input_done && !has_state(j, B_READY))
        finish(j, "done",
               j->truncated ? "more rows than IMPORT_MAX_ROWS: the rest was ignored" : NULL);
}

static void batch_failed(batch *b, const char *why)
{
    job *j = b->j;
    if (!j->failed) snprintf(j->fail_reason, sizeof j->fail_reason, "%s", why);
    j->failed = true;
    b->state = B_IDLE;
    maybe_finish(j);
}

static void on_written(sm_op *op, bool ok);

/* Starts writing ready batches, oldest first, while fewer than IMPORT_WRITERS are written.
 * Batches may commit out of file order: they never share an address (duplicates in the file are
 * dropped while parsing), so the order cannot change the outcome. */
static void try_write(job *j)
{
    while (j->writing < j->app->import_writers && !j->failed) {
        batch *next = NULL;
        for (int k = 0; k < j->nb; k++)
            if (j->b[k].state == B_READY && (!next || j->b[k].seq < next->seq)) next = &j->b[k];
        if (!next) return;
        j->writing++;
        next->state = B_WRITING;
        next->t_mark = core_mono_ns();
        sm_op *op = sm_op_start(j->app, NULL, write_step, next, NULL);
        op->done = on_written;
    }
}

/* Starts filling an idle batch when there is input left and the parser is free. */
static void refill(job *j)
{
    if (j->failed || j->input_done || j->app->stopping) return;
    for (int k = 0; k < j->nb; k++)
        if (j->b[k].state == B_BUSY) return; /* one parser at a time */
    for (int k = 0; k < j->nb; k++)
        if (j->b[k].state == B_IDLE) {
            prepare(j, &j->b[k]);
            return;
        }
}

static void lookup(batch *b);

static void on_written(sm_op *op, bool ok)
{
    batch *b = op->ctx;
    job *j = b->j;
    op->ctx = NULL;
    phase_done(b, &j->t_write);
    j->writing--;
    if (!ok) j->errors_kept -= b->errors_kept;
    if (!ok && op->status == 409 && b->retries < IMPORT_RETRIES && !j->failed &&
        !j->app->stopping) {
        /* The COPY broke the unique blind index (nothing of the batch was written): an address
         * taken as new exists, because the batch was written without a lookup, or because
         * another writer added it since the lookup. Look the batch up and write it again. */
        if (b->optimistic) {
            b->optimistic = false;
            j->optimistic = false;
        } else {
            b->retries++;
            core_log_info("import batch rewritten: an address was added meanwhile",
                          CORE_F_STR("import_id", j->id), CORE_F_INT("attempt", b->retries));
        }
        b->state = B_BUSY;
        b->t_mark = core_mono_ns();
        lookup(b);
        try_write(j);
        return;
    }
    if (!ok) {
        batch_failed(b, "a batch could not be written");
        return;
    }
    core_counter_add(j->app->m_import_rows, b->b_ins, "inserted");
    core_counter_add(j->app->m_import_rows, b->b_upd, "updated");
    core_counter_add(j->app->m_import_rows, b->b_skip, "skipped");
    core_counter_add(j->app->m_import_rows, b->b_fail, "failed");
    j->inserted += b->b_ins;
    j->updated += b->b_upd;
    j->skipped += b->b_skip;
    j->failed_rows += b->b_fail;
    j->processed += b->b_ins + b->b_upd + b->b_skip + b->b_fail;
    b->state = B_IDLE;
    try_write(j);
    refill(j);
    maybe_finish(j);
}

static void after_seal(uv_work_t *w, int status)
{
    batch *b = w->data;
    job *j = b->j;
    phase_done(b, &j->t_seal);
    if (status != 0 || j->app->stopping) {
        batch_failed(b, "the service stopped");
        return;
    }
    b->state = B_READY;
    try_write(j);
    refill(j); /* the parser is free: start the next batch while this one is written */
}

/* ---------------------------------------------------------------- B: look up */

static void classified(batch *b);

static void on_existing(const db_result *r, void *data)
{
    batch *b = data;
    job *j = b->j;
    phase_done(b, &j->t_lookup);
    if (!db_result_ok(r)) {
        core_log_warn("import lookup failed", CORE_F_STR("error", db_result_error(r)));
        batch_failed(b, "the database is unavailable");
        return;
    }
    /* rows of the batch by blind index: a small open-addressing table of row numbers */
    size_t cap = 64;
    while (cap < (size_t)b->nrows * 2)
        cap *= 2;
    int *slot = core_xcalloc(cap, sizeof *slot);
    for (int i = 0; i < b->nrows; i++) {
        uint64_t h;
        memcpy(&h, b->rows[i].idx, 8);
        size_t s = h & (cap - 1);
        while (slot[s])
            s = (s + 1) & (cap - 1);
        slot[s] = i + 1;
    }
    for (int i = 0; i < b->nrows; i++)
        b->rows[i].kind = 0;
    for (int k = 0; k < db_result_rows(r); k++) {
        core_uuid u;
        if (!core_uuid_parse(db_result_get(r, k, "email_index"), &u)) continue;
        const uint8_t *idx = u.b;
        uint64_t h;
        memcpy(&h, idx, 8);
        size_t s = h & (cap - 1);
        irow *row = NULL;
        while (slot[s]) {
            if (!memcmp(b->rows[slot[s] - 1].idx, idx, SM_INDEX_BYTES)) {
                row = &b->rows[slot[s] - 1];
                break;
            }
            s = (s + 1) & (cap - 1);
        }
        if (!row) continue;
        snprintf(row->id, sizeof row->id, "%s", db_result_get(r, k, "id"));
        bool erased = !strcmp(db_result_get(r, k, "erased"), "t");
        size_t wl = 0;
        const uint8_t *w = db_result_bytea(r, k, db_result_column(r, "wrapped_key"), &wl);
        if (erased || !j->upsert || !w || wl != SM_WRAPPED_LEN) {
            row->kind = 2;
        } else {
            row->kind = 1;
            memcpy(row->wrapped, w, SM_WRAPPED_LEN);
        }
    }
    free(slot);
    /* A batch with only new addresses: the next one skips its lookup (see after_parse) */
    j->optimistic = db_result_rows(r) == 0;
    classified(b);
}

/* Every row of the batch has its kind: ids for the new rows and the events, then phase C. */
static void classified(batch *b)
{
    job *j = b->j;
    b->b_ins = b->b_upd = b->b_skip = 0;
    for (int i = 0; i < b->nrows; i++) { /* ids ascend with the COPY's rows */
        irow *row = &b->rows[i];
        if (row->kind == 0) {
            core_uuid_v7_string(row->id);
            b->b_ins++;
        } else if (row->kind == 1) {
            b->b_upd++;
        } else {
            b->b_skip++;
        }
        if (row->kind != 2) core_uuid_v7_string(row->ce_id);
    }
    b->work.data = b;
    uv_queue_work(j->app->loop, &b->work, seal_batch, after_seal);
}

/* B: which of the batch's addresses exist (one query through the unique blind index). */
static void lookup(batch *b)
{
    job *j = b->j;
    barr arr = {0};
    barr_reset(&arr, OID_UUID);
    for (int i = 0; i < b->nrows; i++)
        barr_add(&arr, b->rows[i].idx, SM_INDEX_BYTES);
    barr_finish(&arr);
    const char *v[] = {arr.out.data};
    int len[] = {(int)arr.out.len}, fmt[] = {1};
    /* One probe of the unique index per key, whatever the statistics say: a LATERAL subquery
     * with a LIMIT is never flattened into a join. As a plain join (or = ANY($1)) the planner
     * chose, with the statistics of the table before the import, to hash the whole table
     * (spilling to disk) or scan it, for each batch. No join with subscribers: an erased
     * subscriber is exactly one whose key was shredded. */
    db_query_params(j->app->db,
                    "SELECT k.email_index, k.subscriber_id::text AS id, k.wrapped_key, "
                    "k.wrapped_key IS NULL AS erased FROM unnest($1::uuid[]) AS q(idx) CROSS "
                    "JOIN LATERAL (SELECT * FROM subscriber_secrets s WHERE s.email_index = q.idx "
                    "LIMIT 1) k",
                    1, v, len, fmt, on_existing, b);
    barr_free(&arr);
}

static void after_parse(uv_work_t *w, int status)
{
    batch *b = w->data;
    job *j = b->j;
    phase_done(b, &j->t_parse);
    if (status != 0 || j->app->stopping) {
        batch_failed(b, "the service stopped");
        return;
    }
    if (j->eof || j->truncated) j->input_done = true;
    if (b->nrows == 0 && b->b_fail == 0) {
        b->state = B_IDLE;
        maybe_finish(j);
        return;
    }
    b->optimistic = j->optimistic;
    if (!b->optimistic) {
        lookup(b);
        return;
    }
    /* No lookup while the import finds only new addresses: the COPY's unique index finds an
     * existing one anyway (and writes nothing of the batch then: on_written looks it up and
     * writes it again). The lookup probed that same index for every row: a third of
     * PostgreSQL's work in an import of new subscribers. */
    for (int i = 0; i < b->nrows; i++)
        b->rows[i].kind = 0;
    classified(b);
}

static void prepare(job *j, batch *b)
{
    b->j = j;
    b->state = B_BUSY;
    b->seq = j->seq++;
    rows_clear(b);
    barr_reset(&b->e_row, OID_INT8);
    barr_reset(&b->e_msg, OID_TEXT);
    b->b_fail = b->b_ins = b->b_upd = b->b_skip = 0;
    b->retries = 0;
    b->work.data = b;
    b->t_mark = core_mono_ns();
    uv_queue_work(j->app->loop, &b->work, parse_batch, after_parse);
}

/* ---------------------------------------------------------------- finish */

typedef struct fin {
    job *j;
    char status[16];
    char error[128];
} fin;

static void fin_step(sm_op *op, const db_result *r)
{
    (void)r;
    fin *f = op->ctx;
    if (op->step == 0) {
        const char *v[] = {f->j->id, f->status};
        sm_q(op, "UPDATE imports SET status = $2, finished_at = now() WHERE id = $1::uuid", 2, v);
        const job *j = f->j;
        const int64_t c[5] = {j->processed, j->inserted, j->updated, j->skipped, j->failed_rows};
        progress_event(op, f->j, f->status, f->error[0] ? f->error : NULL, c);
        return;
    }
    if (op->step == 2) sm_commit(op);
}

static void fin_free(void *p)
{
    fin *f = p;
    job_free(f->j);
    free(f);
}

static void on_analyzed(const db_result *r, void *data)
{
    (void)data;
    if (!db_result_ok(r))
        core_log_warn("ANALYZE after an import failed", CORE_F_STR("error", db_result_error(r)));
}

/* Rows written by an import from which the planner's statistics are refreshed as it ends (as
 * PostgreSQL advises after a bulk load): a segment count right after a million-row import was
 * planned with the statistics of the table before it (a default guess for attribute
 * containment: no parallel scan, 170-235 ms instead of ~110 ms) until autovacuum came by. */
#define ANALYZE_AFTER_ROWS 10000

static void finish(job *j, const char *status, const char *error)
{
    double secs = (double)(core_mono_ns() - j->start_ns) / 1e9;
    core_log_info("import finished", CORE_F_STR("import_id", j->id), CORE_F_STR("status", status),
                  CORE_F_INT("rows", j->processed), CORE_F_INT("inserted", j->inserted),
                  CORE_F_INT("updated", j->updated), CORE_F_INT("skipped", j->skipped),
                  CORE_F_INT("failed", j->failed_rows), CORE_F_DBL("seconds", secs),
                  CORE_F_DBL("rows_per_second", secs > 0 ? (double)j->processed / secs : 0),
                  CORE_F_DBL("parse_s", (double)j->t_parse / 1e9),
                  CORE_F_DBL("lookup_s", (double)j->t_lookup / 1e9),
                  CORE_F_DBL("seal_s", (double)j->t_seal / 1e9),
                  CORE_F_DBL("write_s", (double)j->t_write / 1e9));
    fin *f = core_xcalloc(1, sizeof *f);
    f->j = j;
    snprintf(f->status, sizeof f->status, "%s", status);
    snprintf(f->error, sizeof f->error, "%s", error ? error : "");
    if (j->inserted + j->updated >= ANALYZE_AFTER_ROWS)
        db_query(j->app->db, "ANALYZE subscribers, subscriber_secrets", 0, NULL, on_analyzed, NULL);
    sm_op_start(j->app, NULL, fin_step, f, fin_free);
}

/* ---------------------------------------------------------------- HTTP */

static bool header_ok(job *j, char **f, const size_t *lens, int n, char *err, size_t errlen)
{
    j->col_email = j->col_name = j->col_status = j->col_attrs = -1;
    for (int i = 0; i < n; i++) {
        const char *c = f[i];
        if (lens[i] == 0 || lens[i] > 64) {
            snprintf(err, errlen, "column %d has no name or a name longer than 64", i + 1);
            return false;
        }
        for (size_t k = 0; k < lens[i]; k++) {
            char ch = c[k];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
                snprintf(err, errlen, "column names are letters, digits, _ and - (column %d)",
                         i + 1);
                return false;
            }
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(j->cols[k], c)) {
                snprintf(err, errlen, "column %s appears twice", c);
                return false;
            }
        j->cols[i] = core_xstrdup(c);
        j->ncols = i + 1;
        if (!strcmp(c, "email"))
            j->col_email = i;
        else if (!strcmp(c, "name"))
            j->col_name = i;
        else if (!strcmp(c, "status"))
            j->col_status = i;
        else if (!strcmp(c, "attributes"))
            j->col_attrs = i;
    }
    if (j->col_email < 0) {
        snprintf(err, errlen, "the header has no email column");
        return false;
    }
    return true;
}

typedef struct hdr_ctx {
    job *j;
    bool seen, ok;
    char err[160];
} hdr_ctx;

static void on_header(void *ud, int64_t recno, char **f, const size_t *lens, int n,
                      const char *error)
{
    (void)recno;
    hdr_ctx *h = ud;
    if (h->seen) return;
    h->seen = true;
    if (error) {
        snprintf(h->err, sizeof h->err, "header: %s", error);
        return;
    }
    h->ok = header_ok(h->j, f, lens, n, h->err, sizeof h->err);
}

static void start_step(sm_op *op, const db_result *r)
{
    (void)r;
    job *j = op->ctx;
    if (op->step == 0) {
        const char *v[] = {j->id, j->upsert ? "upsert" : "skip"};
        sm_q(op, "INSERT INTO imports (id, mode, status) VALUES ($1::uuid, $2, 'running')", 2, v);
        return;
    }
    op->status = 202;
    char loc[128];
    snprintf(loc, sizeof loc, "/api/imports/%s", j->id);
    http_set_header(op->req, "Location", loc);
    op->reply = json_pack("{s:s,s:s,s:s}", "id", j->id, "status", "running", "mode",
                          j->upsert ? "upsert" : "skip");
    sm_commit(op);
}

static void on_started(sm_op *op, bool ok)
{
    job *j = op->ctx;
    op->ctx = NULL;
    if (!ok) {
        job_free(j);
        return;
    }
    core_log_info("import started", CORE_F_STR("import_id", j->id),
                  CORE_F_INT("bytes", (int64_t)j->len));
    prepare(j, &j->b[0]);
}

static void handle_import(http_req *req, void *data)
{
    sm_app *app = data;
    const char *ct = http_header(req, "Content-Type");
    if (!ct || strncmp(ct, "text/csv", 8) != 0) {
        http_respond_problem(req, 415, "Unsupported Media Type", "send the CSV as text/csv");
        return;
    }
    const char *mode = http_query(req, "mode");
    if (mode && strcmp(mode, "upsert") && strcmp(mode, "skip")) {
        sm_invalid(req, "mode", "mode must be upsert or skip");
        return;
    }
    const char *list = http_query(req, "list_id");
    core_uuid u;
    if (list && !core_uuid_parse(list, &u)) {
        sm_invalid(req, "list_id", "must be a UUID");
        return;
    }
    size_t len = 0;
    const void *body = http_body(req, &len);
    if (!body || !len) {
        sm_invalid(req, "body", "the CSV is empty");
        return;
    }
    job *j = core_xcalloc(1, sizeof *j);
    j->app = app;
    j->nb = app->import_writers + 2;
    j->upsert = !mode || !strcmp(mode, "upsert");
    j->optimistic = true;
    if (list) core_uuid_format(&u, j->list_id);
    sm_csv_init(&j->csv);
    /* the header: the first record */
    const char *b = body;
    const char *nl = memchr(b, '\n', len);
    size_t hlen = nl ? (size_t)(nl - b) + 1 : len;
    hdr_ctx h = {.j = j};
    sm_csv_feed(&j->csv, b, hlen, on_header, &h);
    if (!h.seen) sm_csv_finish(&j->csv, on_header, &h);
    if (!h.ok) {
        sm_invalid(req, "body", h.err[0] ? h.err : "the CSV has no header");
        job_free(j);
        return;
    }
    sm_csv_free(&j->csv);
    sm_csv_init(&j->csv);
    j->body = core_xcalloc(1, len - hlen + 1);
    memcpy(j->body, b + hlen, len - hlen);
    j->len = len - hlen;
    j->start_ns = core_mono_ns();
    core_uuid_v7_string(j->id);
    snprintf(j->traceparent, sizeof j->traceparent, "%s", http_traceparent(req));
    sm_op *op = sm_op_start(app, req, start_step, j, NULL);
    op->done = on_started;
}

static double num(const char *s)
{
    char *end = NULL;
    double d = s ? strtod(s, &end) : 0;
    return end && end != s ? d : 0;
}

static void on_import(const db_result *r, void *data)
{
    http_req *req = data;
    if (!db_result_ok(r)) {
        sm_unavailable(req, r);
    } else if (db_result_rows(r) == 0) {
        sm_problem(req, 404, "no such import");
    } else {
        json_t *errors = json_loads(db_result_get(r, 0, "errors"), 0, NULL);
        int64_t c[5] = {0};
        const char *names[] = {"rows_total", "rows_inserted", "rows_updated", "rows_skipped",
                               "rows_failed"};
        for (int i = 0; i < 5; i++)
            db_result_int64(r, 0, db_result_column(r, names[i]), &c[i]);
        const char *fin_at = db_result_get(r, 0, "finished_at");
        http_respond_json(req, 200,
                          json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:s,s:o,s:f}", "id",
                                    db_result_get(r, 0, "id"), "mode", db_result_get(r, 0, "mode"),
                                    "status", db_result_get(r, 0, "status"), "rows",
                                    (json_int_t)c[0], "inserted", (json_int_t)c[1], "updated",
                                    (json_int_t)c[2], "skipped", (json_int_t)c[3], "failed",
                                    (json_int_t)c[4], "errors", errors ? errors : json_array(),
                                    "created_at", db_result_get(r, 0, "created_at"), "finished_at",
                                    fin_at ? json_string(fin_at) : json_null(), "seconds",
                                    num(db_result_get(r, 0, "seconds"))));
    }
    http_req_unref(req);
}

static void handle_import_get(http_req *req, void *data)
{
    sm_app *app = data;
    char id[CORE_UUID_STRLEN + 1];
    if (!sm_path_uuid(req, "id", id)) return;
    const char *v[] = {id};
    db_query(
        app->db,
        "SELECT i.id::text AS id, mode, status, rows_total, rows_inserted, rows_updated, "
        "rows_skipped, rows_failed, (SELECT coalesce(json_agg(json_build_object('row', "
        "row_number, 'error', error) ORDER BY row_number), '[]') FROM import_errors e WHERE "
        "e.import_id = i.id)::text AS errors, " SM_TS("created_at") " AS created_at, " SM_TS(
            "finished_at") " AS finished_at, extract(epoch FROM (COALESCE(finished_at, now()) - "
                           "created_at))::text AS seconds FROM imports i WHERE i.id = $1::uuid",
        1, v, on_import, http_req_ref(req));
}

void sm_import_register(sm_app *app)
{
    sm_route(app, "POST", "/api/subscribers/import", AUTH_ROLE_EDITOR, handle_import);
    sm_route(app, "GET", "/api/imports/{id}", AUTH_ROLE_VIEWER, handle_import_get);
}
