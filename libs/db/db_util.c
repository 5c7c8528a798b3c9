/* Pure helpers of libs/db: no connection, no loop (unit-tested in libs/db/tests). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db_internal.h"

void dbi_strlcpy(char *dst, const char *src, size_t size)
{
    if (!size) return;
    size_t n = src ? strlen(src) : 0;
    if (n >= size) n = size - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

void dbi_one_line(const char *msg, char *out, size_t outlen)
{
    if (!outlen) return;
    size_t o = 0;
    bool space = false;
    if (!msg) msg = "";
    /* libpq prefixes "ERROR:  " on result messages; the SQLSTATE says the severity. */
    if (strncmp(msg, "ERROR:  ", 8) == 0) msg += 8;
    for (const char *s = msg; *s && o + 1 < outlen; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            space = o > 0;
            continue;
        }
        if (space) {
            if (o + 3 >= outlen) break;
            out[o++] = ';';
            out[o++] = ' ';
            space = false;
        }
        out[o++] = (char)ch;
    }
    while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == ';'))
        o--;
    out[o] = '\0';
}

static bool ident_char(unsigned char c, bool first)
{
    if (c == '_' || isalpha(c) || c >= 0x80) return true;
    return !first && (isdigit(c) || c == '$');
}

bool dbi_search_path_valid(const char *s)
{
    if (!s || !*s || strlen(s) > 255) return false;
    const char *p = s;
    for (;;) {
        while (*p == ' ')
            p++;
        if (strncmp(p, "\"$user\"", 7) == 0) {
            p += 7;
        } else {
            if (!ident_char((unsigned char)*p, true)) return false;
            size_t n = 0;
            while (ident_char((unsigned char)*p, false)) {
                p++;
                n++;
            }
            if (n > 63) return false;
        }
        while (*p == ' ')
            p++;
        if (*p == '\0') return true;
        if (*p != ',') return false;
        p++;
    }
}

void dbi_int64_array(core_buf *b, const int64_t *v, size_t n)
{
    core_buf_puts(b, "{");
    for (size_t i = 0; i < n; i++)
        core_buf_printf(b, i ? ",%" PRId64 : "%" PRId64, v[i]);
    core_buf_puts(b, "}");
}

bool dbi_int64_array_parse(const char *s, int64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!s || *s != '{') return false;
    size_t len = strlen(s);
    if (len < 2 || s[len - 1] != '}') return false;
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        if (*p == ',') cap++;
    int64_t *v = calloc(cap, sizeof *v);
    if (!v) abort();
    size_t k = 0;
    const char *p = s + 1;
    if (*p != '}') {
        for (;;) {
            char *end = NULL;
            errno = 0;
            long long x = strtoll(p, &end, 10);
            if (errno || end == p) {
                free(v);
                return false;
            }
            v[k++] = (int64_t)x;
            p = end;
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p == '}' && p[1] == '\0') break;
            free(v);
            return false;
        }
    }
    *out = v;
    *n = k;
    return true;
}

/* ---------------------------------------------------------------- outbox headers */

char *dbi_headers_encode(const dbi_header *h, size_t n)
{
    json_t *arr = json_array();
    if (!arr) abort();
    for (size_t i = 0; i < n; i++) {
        if (!h[i].name || (h[i].len && !h[i].value)) {
            json_decref(arr);
            return NULL;
        }
        size_t b64len = sodium_base64_ENCODED_LEN(h[i].len, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = malloc(b64len);
        if (!b64) abort();
        sodium_bin2base64(b64, b64len, h[i].value ? h[i].value : (const void *)"", h[i].len,
                          sodium_base64_VARIANT_ORIGINAL);
        json_t *name = json_string(h[i].name); /* NULL when not UTF-8 */
        json_t *obj = name ? json_pack("{s:o,s:s}", "name", name, "value", b64) : NULL;
        free(b64);
        if (!obj) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, obj);
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!s) abort();
    return s;
}

bool dbi_headers_decode(const char *text, dbi_header **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!text || !*text) return true;
    json_t *arr = json_loads(text, 0, NULL);
    if (!arr || !json_is_array(arr)) {
        json_decref(arr);
        return false;
    }
    size_t count = json_array_size(arr);
    size_t total = count * sizeof(dbi_header) + 1;
    for (size_t i = 0; i < count; i++) {
        json_t *o = json_array_get(arr, i);
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *val = json_string_value(json_object_get(o, "value"));
        if (!name || !val) {
            json_decref(arr);
            return false;
        }
        total += strlen(name) + 1 + strlen(val) / 4 * 3 + 4;
    }
    dbi_header *h = calloc(1, total);
    if (!h) abort();
    char *cur = (char *)(h + count);
    char *end = (char *)h + total;
    for (size_t i = 0; i < count; i++) {
        json_t *o = json_array_get(arr, i);
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *val = json_string_value(json_object_get(o, "value"));
        size_t nl = strlen(name) + 1;
        memcpy(cur, name, nl);
        h[i].name = cur;
        cur += nl;
        size_t blen = 0;
        if (sodium_base642bin((unsigned char *)cur, (size_t)(end - cur), val, strlen(val), NULL,
                              &blen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
            free(h);
            json_decref(arr);
            return false;
        }
        h[i].value = cur;
        h[i].len = blen;
        cur += blen;
        *cur++ = '\0';
    }
    json_decref(arr);
    *out = h;
    *n = count;
    return true;
}

/* ---------------------------------------------------------------- migrations */

int dbi_migration_name(const char *fname, int *version)
{
    size_t len = strlen(fname);
    if (fname[0] == '.' || len < 4 || strcmp(fname + len - 4, ".sql") != 0) return 0;
    const char *p = fname;
    long v = 0;
    size_t digits = 0;
    while (isdigit((unsigned char)*p)) {
        if (++digits > 9) return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (digits == 0 || v < 1 || *p != '_') return -1;
    p++;
    const char *desc = p;
    while (p < fname + len - 4) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && c != '_' && c != '-') return -1;
        p++;
    }
    if (p == desc) return -1;
    *version = (int)v;
    return 1;
}

void dbi_checksum(const void *data, size_t len, char out[65])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    /* CRLF line ends count as LF: a checkout on another system must not look "changed". */
    const unsigned char *s = data;
    size_t start = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] == '\r' && s[i + 1] == '\n') {
            crypto_hash_sha256_update(&st, s + start, i - start);
            start = i + 1;
        }
    }
    crypto_hash_sha256_update(&st, s + start, len - start);
    unsigned char md[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&st, md);
    sodium_bin2hex(out, 65, md, sizeof md);
}

static bool read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    core_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        core_buf_append(&b, chunk, n);
    bool ok = !ferror(f);
    fclose(f);
    if (!ok) {
        snprintf(err, errlen, "cannot read %s", path);
        core_buf_free(&b);
        return false;
    }
    if (b.len == 0) core_buf_puts(&b, ""); /* an allocation even for an empty file */
    *len = b.len;
    *out = core_buf_steal(&b, NULL);
    return true;
}

static int migration_cmp(const void *a, const void *b)
{
    const dbi_migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

void dbi_migrations_free(dbi_migration *m, size_t n)
{
    if (!m) return;
    for (size_t i = 0; i < n; i++) {
        free(m[i].name);
        free(m[i].sql);
    }
    free(m);
}

bool dbi_migrations_scan(const char *dir, dbi_migration **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return false;
    }
    dbi_migration *m = NULL;
    size_t count = 0, cap = 0;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        int version = 0;
        int kind = dbi_migration_name(e->d_name, &version);
        if (kind == 0) continue;
        if (kind < 0) {
            snprintf(err, errlen,
                     "migration file %s/%s: the name must be NNN_description.sql "
                     "(digits, '_', then letters, digits, '_' or '-')",
                     dir, e->d_name);
            ok = false;
            break;
        }
        core_buf path = {0};
        core_buf_printf(&path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path.data, &st) != 0 || !S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "migration %s is not a regular file", path.data);
            core_buf_free(&path);
            ok = false;
            break;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            dbi_migration *nm = realloc(m, cap * sizeof *nm);
            if (!nm) abort();
            m = nm;
        }
        dbi_migration *x = &m[count];
        memset(x, 0, sizeof *x);
        x->version = version;
        x->name = strdup(e->d_name);
        if (!x->name) abort();
        size_t len = 0;
        if (!read_file(path.data, &x->sql, &len, err, errlen)) {
            free(x->name);
            core_buf_free(&path);
            ok = false;
            break;
        }
        core_buf_free(&path);
        dbi_checksum(x->sql, len, x->checksum);
        if (strlen(x->sql) != len) {
            snprintf(err, errlen, "migration %s/%s contains a NUL byte", dir, x->name);
            free(x->name);
            free(x->sql);
            ok = false;
            break;
        }
        count++;
    }
    closedir(d);
    if (ok && count > 1) {
        qsort(m, count, sizeof *m, migration_cmp);
        for (size_t i = 1; i < count; i++) {
            if (m[i].version == m[i - 1].version) {
                snprintf(err, errlen, "migrations %s and %s in %s have the same version %d",
                         m[i - 1].name, m[i].name, dir, m[i].version);
                ok = false;
                break;
            }
        }
    }
    if (!ok) {
        dbi_migrations_free(m, count);
        return false;
    }
    *out = m;
    *n = count;
    return true;
}
