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
    core_buf_free(&c->field);
}

static void end_field(sm_csv *c)
{
    if (c->nfields >= SM_CSV_MAX_FIELDS) {
        c->too_many = true;
        return;
    }
    c->offs[c->nfields] = c->rec.len;
    c->lens[c->nfields] = c->field.len;
    core_buf_append(&c->rec, c->field.data ? c->field.data : "", c->field.len);
    core_buf_append(&c->rec, "", 1);
    c->nfields++;
    core_buf_reset(&c->field);
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
    core_buf_reset(&c->field);
}

static void add_char(sm_csv *c, char ch)
{
    if (c->field.len >= SM_CSV_FIELD_MAX) {
        c->too_long = true;
        return;
    }
    core_buf_append(&c->field, &ch, 1);
}

void sm_csv_feed(sm_csv *c, const char *data, size_t len, sm_csv_record_fn fn, void *ud)
{
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        switch (c->state) {
        case ST_CR:
            c->state = ST_FIELD_START;
            if (ch == '\n') continue;
            /* a lone CR ended the record; this character starts the next */
            /* fall through */
        case ST_FIELD_START:
            if (ch == '"') {
                c->state = ST_QUOTED;
                continue;
            }
            c->state = ST_UNQUOTED;
            /* fall through */
        case ST_UNQUOTED:
            if (ch == ',') {
                end_field(c);
                c->state = ST_FIELD_START;
            } else if (ch == '\n' || ch == '\r') {
                end_record(c, fn, ud);
                c->state = ch == '\r' ? ST_CR : ST_FIELD_START;
            } else {
                add_char(c, ch);
            }
            break;
        case ST_QUOTED:
            if (ch == '"')
                c->state = ST_QUOTE_IN_QUOTED;
            else
                add_char(c, ch);
            break;
        case ST_QUOTE_IN_QUOTED:
            if (ch == '"') {
                add_char(c, '"');
                c->state = ST_QUOTED;
            } else if (ch == ',') {
                end_field(c);
                c->state = ST_FIELD_START;
            } else if (ch == '\n' || ch == '\r') {
                end_record(c, fn, ud);
                c->state = ch == '\r' ? ST_CR : ST_FIELD_START;
            } else {
                /* text after a closing quote: keep it, as most readers do */
                add_char(c, ch);
                c->state = ST_UNQUOTED;
            }
            break;
        }
    }
}

void sm_csv_finish(sm_csv *c, sm_csv_record_fn fn, void *ud)
{
    if (c->state == ST_CR) return;
    if (c->state == ST_FIELD_START && c->nfields == 0 && c->field.len == 0) return;
    end_record(c, fn, ud);
    c->state = ST_FIELD_START;
}
