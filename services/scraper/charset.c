/*
 * Charsets, in the order the HTML standard's sniffing gives them weight: a byte order mark,
 * the Content-Type header's charset, a <meta charset> or <meta http-equiv> in the first
 * 4 KiB; else UTF-8. Conversion with glibc's iconv; what cannot be converted becomes U+FFFD.
 */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scraper.h"

static void set_upper(char *out, size_t size, const char *s, size_t n)
{
    if (n >= size) n = size - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)toupper((unsigned char)s[i]);
    out[n] = '\0';
}

/* The value after "charset=" in s (up to end or a delimiter); false when none. */
static bool charset_param(const char *s, size_t len, char *out, size_t size)
{
    for (size_t i = 0; i + 8 <= len; i++) {
        if (strncasecmp(s + i, "charset", 7) != 0) continue;
        size_t j = i + 7;
        while (j < len && isspace((unsigned char)s[j]))
            j++;
        if (j >= len || s[j] != '=') continue;
        j++;
        while (j < len && (isspace((unsigned char)s[j]) || s[j] == '"' || s[j] == '\''))
            j++;
        size_t st = j;
        while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '-' || s[j] == '_' ||
                           s[j] == ':' || s[j] == '.'))
            j++;
        if (j > st) {
            set_upper(out, size, s + st, j - st);
            return true;
        }
    }
    return false;
}

void sc_charset_detect(const char *content_type, const char *body, size_t len, bool is_html,
                       char *out, size_t size)
{
    const unsigned char *b = (const unsigned char *)body;
    if (len >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF) {
        snprintf(out, size, "UTF-8");
        return;
    }
    if (len >= 2 && b[0] == 0xFF && b[1] == 0xFE) {
        snprintf(out, size, "UTF-16LE");
        return;
    }
    if (len >= 2 && b[0] == 0xFE && b[1] == 0xFF) {
        snprintf(out, size, "UTF-16BE");
        return;
    }
    if (content_type && charset_param(content_type, strlen(content_type), out, size)) return;
    if (is_html) {
        size_t n = len < 4096 ? len : 4096;
        const char *p = body, *end = body + n;
        while (p < end) {
            const char *lt = memchr(p, '<', (size_t)(end - p));
            if (!lt) break;
            if ((size_t)(end - lt) > 5 && strncasecmp(lt, "<meta", 5) == 0) {
                const char *gt = memchr(lt, '>', (size_t)(end - lt));
                size_t tl = gt ? (size_t)(gt - lt) : (size_t)(end - lt);
                if (charset_param(lt, tl, out, size)) {
                    /* a page that says UTF-16 in a meta was decodable as ASCII: it is not */
                    if (strncmp(out, "UTF-16", 6) == 0) snprintf(out, size, "UTF-8");
                    return;
                }
            }
            p = lt + 1;
        }
    }
    snprintf(out, size, "UTF-8");
}

/* Copies valid UTF-8, replacing invalid sequences with U+FFFD. */
static char *utf8_clean(const char *s, size_t len, size_t *out_len)
{
    core_buf b = {0};
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) p += 3;
    while (p < end) {
        unsigned char c = *p;
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = n > 0 && (size_t)(end - p) >= n && c != 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (ok && n == 2 && c < 0xC2) ok = false;
        if (ok) {
            core_buf_append(&b, p, n);
            p += n;
        } else {
            core_buf_append(&b, "\xEF\xBF\xBD", 3);
            p++;
        }
    }
    core_buf_append(&b, "", 0);
    return core_buf_steal(&b, out_len);
}

char *sc_to_utf8(const char *body, size_t len, const char *charset, size_t *out_len)
{
    if (!charset || strcasecmp(charset, "UTF-8") == 0 || strcasecmp(charset, "UTF8") == 0 ||
        strcasecmp(charset, "US-ASCII") == 0 || strcasecmp(charset, "ASCII") == 0)
        return utf8_clean(body, len, out_len);
    /* browsers treat ISO-8859-1 as windows-1252 (its superset); so do we */
    const char *from = charset;
    if (strcasecmp(charset, "ISO-8859-1") == 0 || strcasecmp(charset, "LATIN1") == 0 ||
        strcasecmp(charset, "LATIN-1") == 0)
        from = "WINDOWS-1252";
    iconv_t cd = iconv_open("UTF-8", from);
    if (cd == (iconv_t)-1) return utf8_clean(body, len, out_len);
    const unsigned char *bb = (const unsigned char *)body;
    size_t skip = 0;
    if (len >= 2 && ((bb[0] == 0xFF && bb[1] == 0xFE) || (bb[0] == 0xFE && bb[1] == 0xFF)))
        skip = 2;
    char *in = (char *)body + skip;
    size_t inleft = len - skip;
    size_t cap = len * 2 + 16, used = 0;
    char *out = core_xcalloc(1, cap);
    while (inleft > 0) {
        char *o = out + used;
        size_t oleft = cap - used - 4;
        size_t rc = iconv(cd, &in, &inleft, &o, &oleft);
        used = (size_t)(o - out);
        if (rc != (size_t)-1) break;
        if (errno == E2BIG) {
            cap *= 2;
            out = core_xrealloc(out, cap);
        } else { /* EILSEQ or EINVAL: replace one byte and go on */
            if (cap - used < 8) out = core_xrealloc(out, cap *= 2);
            memcpy(out + used, "\xEF\xBF\xBD", 3);
            used += 3;
            in++;
            inleft--;
        }
    }
    iconv_close(cd);
    out[used] = '\0';
    char *clean = utf8_clean(out, used, out_len);
    free(out);
    return clean;
}
