/* A streaming RFC 4180 CSV reader (see pii.h). */
#include <string.h>

#include "pii.h"

enum { ST_FIELD_START, ST_UNQUOTED, ST_QUOTED, ST_QUOTE_IN_QUOTED, ST_CR };

void sm_csv_init(sm_csv *c)
{
    memset(c, 0, sizeof *c);
}

void sm_csv_free(sm_csv *c)
{
    core_buf_free(&c->rec);
}

/* Appends to the field being read. Past SM_CSV_FIELD_MAX the record is marked and the rest of
 * the field dropped, so a huge field cannot grow the buffer without bound. */
static void add(sm_csv *c, const char *s, size_t n)
{
    size_t room = SM_CSV_FIELD_MAX - (c->rec.len - c->field_start);
    if (n > room) {
        c->too_long = true;
        n = room;
    }
    core_buf_append(&c->rec, s, n);
}

static void end_field(sm_csv *c)
{
    /* Fields past SM_CSV_MAX_FIELDS are not kept: their bytes pile up as one pending field until
     * the record ends (bounded by SM_CSV_FIELD_MAX, so such a record may be reported as too
     * long instead). */
    if (c->nfields >= SM_CSV_MAX_FIELDS) {
        c->too_many = true;
        return;
    }
    c->offs[c->nfields] = c->field_start;
    c->lens[c->nfields] = c->rec.len - c->field_start;
    core_buf_append(&c->rec, "", 1);
    c->field_start = c->rec.len;
    c->nfields++;
}

static void end_record(sm_csv *c, sm_csv_record_fn fn, void *ud)
{
    end_field(c);
    c->line++;
    /* a blank line is no record */
    if (!(c->nfields == 1 && c->lens[0] == 0 && !c->too_long)) {
        for (int i = 0; i < c->nfields; i++)
            c->fields[i] = c->rec.data + c->offs[i];
        const char *err = c->too_long   ? "a field is longer than 4096 bytes"
                          : c->too_many ? "more than 32 fields"
                                        : NULL;
        fn(ud, c->line, c->fields, c->lens, c->nfields, err);
    }
    c->nfields = 0;
    c->too_long = c->too_many = false;
    core_buf_reset(&c->rec);
    c->field_start = 0;
}

/* A ',', '\n' or '\r' ended an unquoted field, or followed a closing quote. */
static void end_by(sm_csv *c, char ch, sm_csv_record_fn fn, void *ud)
{
    if (ch == ',') {
        end_field(c);
        c->state = ST_FIELD_START;
    } else {
        end_record(c, fn, ud);
        c->state = ch == '\r' ? ST_CR : ST_FIELD_START;
    }
}

void sm_csv_feed(sm_csv *c, const char *data, size_t len, sm_csv_record_fn fn, void *ud)
{
    const char *p = data, *end = data + len;
    /* Field bytes are appended a run at a time, not byte by byte: a run ends at the next byte
     * that matters (',', CR or LF unquoted, '"' quoted). */
    while (p < end) {
        switch (c->state) {
        case ST_CR:
            c->state = ST_FIELD_START;
            if (*p == '\n') {
                p++;
                continue;
            }
            /* a lone CR ended the record; this character starts the next */
            /* fall through */
        case ST_FIELD_START:
            if (*p == '"') {
                c->state = ST_QUOTED;
                p++;
                continue;
            }
            c->state = ST_UNQUOTED;
            /* fall through */
        case ST_UNQUOTED: {
            const char *q = p;
            while (q < end && *q != ',' && *q != '\n' && *q != '\r')
                q++;
            add(c, p, (size_t)(q - p));
            p = q;
            if (p < end) end_by(c, *p++, fn, ud);
            break;
        }
        case ST_QUOTED: {
            const char *q = memchr(p, '"', (size_t)(end - p));
            if (!q) q = end;
            add(c, p, (size_t)(q - p));
            p = q;
            if (p < end) {
                p++;
                c->state = ST_QUOTE_IN_QUOTED;
            }
            break;
        }
        case ST_QUOTE_IN_QUOTED:
            if (*p == '"') {
                /* a doubled quote is one quote */
                add(c, p++, 1);
                c->state = ST_QUOTED;
            } else if (*p == ',' || *p == '\n' || *p == '\r') {
                end_by(c, *p++, fn, ud);
            } else {
                /* text after a closing quote: keep it, as most readers do */
                c->state = ST_UNQUOTED;
            }
            break;
        }
    }
}

void sm_csv_finish(sm_csv *c, sm_csv_record_fn fn, void *ud)
{
    if (c->state == ST_CR) return;
    if (c->state == ST_FIELD_START && c->nfields == 0 && c->rec.len == c->field_start) return;
    end_record(c, fn, ud);
    c->state = ST_FIELD_START;
}
