/* The result handed to callbacks: a thin view over PGresult, or an error of the library's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

/* Type OIDs of pg_type (fixed since PostgreSQL 7.x; libpq does not export them). */
#define OID_INT8   20
#define OID_INT2   21
#define OID_INT4   23
#define OID_FLOAT4 700
#define OID_FLOAT8 701

void dbi_result_init(db_result *r, PGresult *res, const char *err, const char *sqlstate,
                     dbi_arena *arena, char *buf, size_t buflen)
{
    memset(r, 0, sizeof *r);
    r->arena = arena;
    if (err) {
        dbi_one_line(err, buf, buflen);
        r->error = buf;
        dbi_strlcpy(r->sqlstate, sqlstate ? sqlstate : "", sizeof r->sqlstate);
        return;
    }
    r->res = res;
    if (!res) return;
    if (dbi_result_is_error(res)) {
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        dbi_one_line(primary ? primary : PQresultErrorMessage(res), buf, buflen);
        if (!buf[0]) snprintf(buf, buflen, "%s", PQresStatus(PQresultStatus(res)));
        r->error = buf;
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        dbi_strlcpy(r->sqlstate, state ? state : "", sizeof r->sqlstate);
    }
}

bool dbi_result_is_error(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

void dbi_arena_free(dbi_arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        PQfreemem(a->ptrs[i]);
    free(a->ptrs);
    a->ptrs = NULL;
    a->n = a->cap = 0;
}

bool db_result_ok(const db_result *r)
{
    return r && !r->error;
}

const char *db_result_error(const db_result *r)
{
    return r ? r->error : "no result";
}

const char *db_result_sqlstate(const db_result *r)
{
    return r ? r->sqlstate : "";
}

static bool has_rows(const db_result *r)
{
    return r && !r->error && r->res && PQresultStatus(r->res) == PGRES_TUPLES_OK;
}

int db_result_rows(const db_result *r)
{
    return has_rows(r) ? PQntuples(r->res) : 0;
}

int db_result_columns(const db_result *r)
{
    return has_rows(r) ? PQnfields(r->res) : 0;
}

const char *db_result_column_name(const db_result *r, int col)
{
    if (!has_rows(r) || col < 0 || col >= PQnfields(r->res)) return NULL;
    return PQfname(r->res, col);
}

int db_result_column(const db_result *r, const char *name)
{
    if (!has_rows(r) || !name) return -1;
    /* Exact match: PQfnumber would fold case and parse quotes. */
    int n = PQnfields(r->res);
    for (int i = 0; i < n; i++)
        if (strcmp(PQfname(r->res, i), name) == 0) return i;
    return -1;
}

static bool in_range(const db_result *r, int row, int col)
{
    return has_rows(r) && row >= 0 && row < PQntuples(r->res) && col >= 0 &&
           col < PQnfields(r->res);
}

bool db_result_isnull(const db_result *r, int row, int col)
{
    return !in_range(r, row, col) || PQgetisnull(r->res, row, col);
}

const char *db_result_value(const db_result *r, int row, int col)
{
    if (db_result_isnull(r, row, col)) return NULL;
    return PQgetvalue(r->res, row, col);
}

const char *db_result_get(const db_result *r, int row, const char *name)
{
    return db_result_value(r, row, db_result_column(r, name));
}

int db_result_length(const db_result *r, int row, int col)
{
    return in_range(r, row, col) ? PQgetlength(r->res, row, col) : 0;
}

/* A binary-format value (dbi_query_binary), as opposed to text. */
static bool is_binary(const db_result *r, int col)
{
    return PQfformat(r->res, col) == 1;
}

/* The n bytes of a binary value of column type oid (n its only length), big-endian, as an
 * unsigned number: false when the type or the length is another. */
static bool binary_be(const db_result *r, int row, int col, Oid oid, int n, uint64_t *out)
{
    if (PQftype(r->res, col) != oid || PQgetlength(r->res, row, col) != n) return false;
    const uint8_t *v = (const uint8_t *)PQgetvalue(r->res, row, col);
    uint64_t u = 0;
    for (int i = 0; i < n; i++)
        u = u << 8 | v[i];
    *out = u;
    return true;
}

const uint8_t *db_result_bytea(const db_result *r, int row, int col, size_t *len)
{
    *len = 0;
    const char *v = db_result_value(r, row, col);
    if (!v) return NULL;
    if (is_binary(r, col)) { /* the bytes themselves */
        *len = (size_t)PQgetlength(r->res, row, col);
        return (const uint8_t *)v;
    }
    size_t n = 0;
    unsigned char *bytes = PQunescapeBytea((const unsigned char *)v, &n);
    if (!bytes) return NULL;
    dbi_arena *a = r->arena;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        void **p = realloc(a->ptrs, cap * sizeof *p);
        if (!p) abort();
        a->ptrs = p;
        a->cap = cap;
    }
    a->ptrs[a->n++] = bytes;
    *len = n;
    return bytes;
}

/* Two's complement from the wire: the casts to the narrower signed types sign-extend. */
static bool binary_int(const db_result *r, int row, int col, int64_t *out)
{
    uint64_t u = 0;
    if (binary_be(r, row, col, OID_INT8, 8, &u))
        *out = (int64_t)u;
    else if (binary_be(r, row, col, OID_INT4, 4, &u))
        *out = (int32_t)(uint32_t)u;
    else if (binary_be(r, row, col, OID_INT2, 2, &u))
        *out = (int16_t)(uint16_t)u;
    else
        return false;
    return true;
}

bool db_result_int64(const db_result *r, int row, int col, int64_t *out)
{
    const char *v = db_result_value(r, row, col);
    if (!v) return false;
    if (is_binary(r, col)) return binary_int(r, row, col, out);
    if (!*v) return false;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || !end || *end != '\0') return false;
    *out = (int64_t)x;
    return true;
}

bool dbi_result_double(const db_result *r, int row, int col, double *out)
{
    const char *v = db_result_value(r, row, col);
    if (!v) return false;
    if (is_binary(r, col)) {
        uint64_t u = 0;
        if (binary_be(r, row, col, OID_FLOAT8, 8, &u)) {
            memcpy(out, &u, sizeof *out);
        } else if (binary_be(r, row, col, OID_FLOAT4, 4, &u)) {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, sizeof f);
            *out = f;
        } else {
            return false;
        }
        return true;
    }
    char *end = NULL;
    double x = strtod(v, &end); /* PostgreSQL's float text: digits, Infinity, NaN */
    if (end == v || *end != '\0') return false;
    *out = x;
    return true;
}

int64_t db_result_affected(const db_result *r)
{
    if (!r || r->error || !r->res) return 0;
    const char *t = PQcmdTuples(r->res);
    if (!t || !*t) return 0;
    return (int64_t)strtoll(t, NULL, 10);
}
