/*
 * URLs (libcurl's URL API: resolution and parsing), include/exclude patterns, and the
 * fingerprints dedup rests on: SHA-256 of the normalised URL, SHA-256 of the folded text and a
 * 64-bit SimHash of its word 3-shingles.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <regex.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scraper.h"

/* ---------------------------------------------------------------- normalisation */

static bool tracking_param(const char *kv)
{
    static const char *const names[] = {
        "fbclid=", "gclid=", "mc_cid=", "mc_eid=", "_hsenc=", "_hsmi=", "fbclid", "gclid", NULL};
    if (strncasecmp(kv, "utm_", 4) == 0) return true;
    for (int i = 0; names[i]; i++) {
        size_t n = strlen(names[i]);
        if (strncasecmp(kv, names[i], n) == 0 && (names[i][n - 1] == '=' || kv[n] == '\0'))
            return true;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Drops tracking parameters and sorts the rest; NULL when nothing is left. */
static char *normalize_query(const char *q)
{
    char *copy = core_xstrdup(q);
    size_t n = 0, cap = 8;
    char **parts = core_xcalloc(cap, sizeof *parts);
    char *save = NULL;
    for (char *tok = strtok_r(copy, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        if (!*tok || tracking_param(tok)) continue;
        if (n == cap) parts = core_xrealloc(parts, (cap *= 2) * sizeof *parts);
        parts[n++] = tok;
    }
    char *out = NULL;
    if (n) {
        qsort(parts, n, sizeof *parts, cmp_str);
        core_buf b = {0};
        for (size_t i = 0; i < n; i++) {
            if (i) core_buf_puts(&b, "&");
            core_buf_puts(&b, parts[i]);
        }
        out = core_buf_steal(&b, NULL);
    }
    free(parts);
    free(copy);
    return out;
}

static CURLU *parse(const char *base, const char *ref)
{
    CURLU *u = curl_url();
    if (!u) return NULL;
    unsigned flags = CURLU_NON_SUPPORT_SCHEME;
    if (base && curl_url_set(u, CURLUPART_URL, base, flags) != CURLUE_OK) {
        curl_url_cleanup(u);
        return NULL;
    }
    if (curl_url_set(u, CURLUPART_URL, ref, flags) != CURLUE_OK) {
        curl_url_cleanup(u);
        return NULL;
    }
    char *scheme = NULL;
    bool ok = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0);
    curl_free(scheme);
    if (!ok) {
        curl_url_cleanup(u);
        return NULL;
    }
    return u;
}

/* One part of ref (resolved against base when there is one), as a malloc'd string. */
static char *url_part(const char *base, const char *ref, CURLUPart part)
{
    CURLU *u = parse(base, ref);
    if (!u) return NULL;
    char *v = NULL, *out = NULL;
    if (curl_url_get(u, part, &v, 0) == CURLUE_OK) out = core_xstrdup(v);
    curl_free(v);
    curl_url_cleanup(u);
    return out;
}

static char *get_part(const char *url, CURLUPart part)
{
    return url_part(NULL, url, part);
}

bool sc_url_has_scheme(const char *ref)
{
    if (!isalpha((unsigned char)*ref)) return false;
    const char *s = ref + 1;
    while (isalnum((unsigned char)*s) || *s == '+' || *s == '-' || *s == '.')
        s++;
    return *s == ':';
}

char *sc_url_resolve(const char *base, const char *ref)
{
    if (!ref) return NULL;
    /* libcurl resolves "#f" and "" against the base's directory; RFC 3986 keeps its path and
     * query and only replaces the fragment */
    if (base && (*ref == '#' || *ref == '\0')) {
        char *u = sc_url_resolve(NULL, base);
        if (!u) return NULL;
        core_buf b = {0};
        core_buf_append(&b, u, strcspn(u, "#"));
        core_buf_puts(&b, ref);
        free(u);
        return core_buf_steal(&b, NULL);
    }
    return url_part(base, ref, CURLUPART_URL);
}

char *sc_url_normalize(const char *base, const char *ref)
{
    if (!ref) return NULL;
    /* skip leading and trailing blanks that HTML attributes often carry */
    while (isspace((unsigned char)*ref))
        ref++;
    size_t rl = strlen(ref);
    while (rl && isspace((unsigned char)ref[rl - 1]))
        rl--;
    char *r = core_xstrndup(ref, rl);
    CURLU *u = parse(base, r);
    free(r);
    if (!u) return NULL;
    char *host = NULL, *query = NULL, *path = NULL;
    char *out = NULL;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) goto done;
    for (char *h = host; *h; h++)
        *h = (char)tolower((unsigned char)*h);
    curl_url_set(u, CURLUPART_HOST, host, 0);
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && (!*path))
        curl_url_set(u, CURLUPART_PATH, "/", 0);
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
        char *q = normalize_query(query);
        curl_url_set(u, CURLUPART_QUERY, q, 0);
        free(q);
    }
    char *full = NULL;
    /* without CURLU_DEFAULT_PORT the scheme's default port is left out */
    if (curl_url_get(u, CURLUPART_URL, &full, CURLU_NO_DEFAULT_PORT) == CURLUE_OK) {
        out = core_xstrdup(full);
        curl_free(full);
    }
done:
    curl_free(host);
    curl_free(query);
    curl_free(path);
    curl_url_cleanup(u);
    return out;
}

char *sc_url_host(const char *url)
{
    char *host = get_part(url, CURLUPART_HOST);
    if (!host) return NULL;
    for (char *h = host; *h; h++)
        *h = (char)tolower((unsigned char)*h);
    char *port = NULL;
    CURLU *u = parse(NULL, url);
    char *p = NULL;
    if (u && curl_url_get(u, CURLUPART_PORT, &p, 0) == CURLUE_OK) port = core_xstrdup(p);
    curl_free(p);
    curl_url_cleanup(u);
    if (!port) return host;
    core_buf b = {0};
    core_buf_printf(&b, "%s:%s", host, port);
    free(host);
    free(port);
    return core_buf_steal(&b, NULL);
}

char *sc_url_path(const char *url)
{
    char *path = get_part(url, CURLUPART_PATH);
    if (!path) return NULL;
    char *query = get_part(url, CURLUPART_QUERY);
    core_buf b = {0};
    core_buf_printf(&b, "%s%s%s", *path ? path : "/", query ? "?" : "", query ? query : "");
    free(path);
    free(query);
    return core_buf_steal(&b, NULL);
}

char *sc_url_origin(const char *url)
{
    char *scheme = get_part(url, CURLUPART_SCHEME);
    char *host = sc_url_host(url);
    char *out = NULL;
    if (scheme && host) {
        core_buf b = {0};
        core_buf_printf(&b, "%s://%s", scheme, host);
        out = core_buf_steal(&b, NULL);
    }
    free(scheme);
    free(host);
    return out;
}

/* The first hexchars (even, at most 64) hex digits of the SHA-256 of data; out holds
 * hexchars + 1. */
static void sha256_hex(const void *data, size_t len, char *out, size_t hexchars)
{
    unsigned char md[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(md, data, len);
    sodium_bin2hex(out, hexchars + 1, md, hexchars / 2);
}

void sc_url_fingerprint(const char *normalized, char out[33])
{
    sha256_hex(normalized, strlen(normalized), out, 32);
}

/* ---------------------------------------------------------------- patterns */

struct sc_patterns {
    regex_t *re;
    size_t n;
};

sc_patterns *sc_patterns_new(const json_t *array, char *err, size_t errlen)
{
    sc_patterns *p = core_xcalloc(1, sizeof *p);
    if (!array || json_is_null(array)) return p;
    if (!json_is_array(array)) {
        snprintf(err, errlen, "must be an array of regular expressions");
        free(p);
        return NULL;
    }
    p->re = core_xcalloc(json_array_size(array), sizeof *p->re);
    size_t i;
    const json_t *v;
    json_array_foreach(array, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || !*s || strlen(s) > 512) {
            snprintf(err, errlen, "entry %zu must be a non-empty string of at most 512 characters",
                     i);
            sc_patterns_free(p);
            return NULL;
        }
        int rc = regcomp(&p->re[p->n], s, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &p->re[p->n], msg, sizeof msg);
            snprintf(err, errlen, "entry %zu is not a valid regular expression: %s", i, msg);
            sc_patterns_free(p);
            return NULL;
        }
        p->n++;
    }
    return p;
}

void sc_patterns_free(sc_patterns *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++)
        regfree(&p->re[i]);
    free(p->re);
    free(p);
}

size_t sc_patterns_count(const sc_patterns *p)
{
    return p ? p->n : 0;
}

bool sc_patterns_match(const sc_patterns *p, const char *url)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (regexec(&p->re[i], url, 0, NULL, 0) == 0) return true;
    return false;
}

bool sc_url_wanted(const sc_patterns *include, const sc_patterns *exclude, const char *url)
{
    if (sc_patterns_count(include) && !sc_patterns_match(include, url)) return false;
    return !sc_patterns_match(exclude, url);
}

/* ---------------------------------------------------------------- text fingerprints */

/* ASCII letters and digits, and every byte >= 0x80 so UTF-8 letters stay inside words. Spelled
 * out rather than isalnum/tolower: those go through the locale's tables on every byte, and the
 * fingerprints must not depend on a locale anyway. */
static inline bool word_byte(unsigned char c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static inline unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* Calls fn for each word (see word_byte). */
static void words(const char *text, void (*fn)(const char *w, size_t n, void *data), void *data)
{
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        while (*s && !word_byte(*s))
            s++;
        const unsigned char *st = s;
        while (word_byte(*s))
            s++;
        if (s > st) fn((const char *)st, (size_t)(s - st), data);
    }
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= ascii_lower((unsigned char)s[i]);
        h *= 1099511628211ULL;
    }
    return h;
}

/* Votes per hash bit, counted eight bits at a time: lanes[k] holds eight byte-wide counters,
 * byte j counting the words whose hash has bit 8k+j set. Bytes overflow after 255 words, so
 * they are added into ones[] every 255 words. */
typedef struct simhash_state {
    uint64_t lanes[8];
    uint32_t ones[64];
    uint32_t count, in_lanes;
} simhash_state;

/* The eight bits of v as eight bytes of 0 or 1 (byte j = bit j): v copied into every byte, each
 * byte masked to its own bit, then any set bit carried up to the byte's top and shifted down. */
static inline uint64_t bits_to_bytes(uint64_t v)
{
    uint64_t x = (v * 0x0101010101010101ULL) & 0x8040201008040201ULL;
    return ((x + 0x7f7f7f7f7f7f7f7fULL) & 0x8080808080808080ULL) >> 7;
}

static void simhash_flush(simhash_state *st)
{
    for (int k = 0; k < 8; k++) {
        for (int j = 0; j < 8; j++)
            st->ones[8 * k + j] += (uint32_t)((st->lanes[k] >> (8 * j)) & 0xff);
        st->lanes[k] = 0;
    }
    st->in_lanes = 0;
}

/* Features: the words themselves (lower-case). Short texts are where near-duplicates matter
 * (the same article with a word changed, a date added); with word shingles one changed word
 * changes three features, with words it changes two, which keeps SimHash distances of such
 * pairs within SC_NEAR_DUP_BITS where shingles often exceed it. */
static void simhash_word(const char *w, size_t n, void *data)
{
    simhash_state *st = data;
    uint64_t h = fnv1a(14695981039346656037ULL, w, n);
    /* fnv's low bits are weak for short inputs: finish with a 64-bit mixer (splitmix64) */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    st->count++;
    for (int k = 0; k < 8; k++)
        st->lanes[k] += bits_to_bytes((h >> (8 * k)) & 0xff);
    if (++st->in_lanes == 255) simhash_flush(st);
}

/* A bit is set when more than half of the words' hashes have it: the sign of SimHash's +1/-1
 * sum. */
uint64_t sc_simhash(const char *text)
{
    simhash_state st = {0};
    words(text ? text : "", simhash_word, &st);
    simhash_flush(&st);
    uint64_t out = 0;
    for (int b = 0; b < 64; b++)
        if (2 * (uint64_t)st.ones[b] > st.count) out |= 1ULL << b;
    return out;
}

int sc_hamming(uint64_t a, uint64_t b)
{
    return __builtin_popcountll(a ^ b);
}

static void fold_word(const char *w, size_t n, void *data)
{
    core_buf *b = data;
    if (b->len) core_buf_append(b, " ", 1);
    size_t at = b->len;
    core_buf_append(b, w, n);
    for (size_t i = at; i < b->len; i++)
        b->data[i] = (char)ascii_lower((unsigned char)b->data[i]);
}

void sc_content_hash(const char *text, char out[65])
{
    core_buf b = {0};
    words(text ? text : "", fold_word, &b);
    sha256_hex(b.len ? b.data : "", b.len, out, 64);
    core_buf_free(&b);
}

/* ---------------------------------------------------------------- evaluation */

typedef struct bag {
    char **w;
    size_t n, cap;
} bag;

static void bag_add(const char *w, size_t n, void *data)
{
    bag *b = data;
    if (b->n == b->cap) b->w = core_xrealloc(b->w, (b->cap = b->cap ? b->cap * 2 : 256) * 8);
    char *s = core_xstrndup(w, n);
    for (char *c = s; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    b->w[b->n++] = s;
}

void sc_token_prf(const char *got, const char *want, double *p, double *r, double *f1)
{
    bag g = {0}, w = {0};
    words(got ? got : "", bag_add, &g);
    words(want ? want : "", bag_add, &w);
    if (g.n) qsort(g.w, g.n, sizeof *g.w, cmp_str);
    if (w.n) qsort(w.w, w.n, sizeof *w.w, cmp_str);
    size_t i = 0, j = 0, common = 0;
    while (i < g.n && j < w.n) {
        int c = strcmp(g.w[i], w.w[j]);
        if (c == 0)
            common++, i++, j++;
        else if (c < 0)
            i++;
        else
            j++;
    }
    *p = g.n ? (double)common / (double)g.n : (w.n ? 0 : 1);
    *r = w.n ? (double)common / (double)w.n : 1;
    *f1 = (*p + *r) > 0 ? 2 * *p * *r / (*p + *r) : 0;
    for (size_t k = 0; k < g.n; k++)
        free(g.w[k]);
    for (size_t k = 0; k < w.n; k++)
        free(w.w[k]);
    free(g.w);
    free(w.w);
}
