#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void core_buf_reserve(core_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1; /* room for the terminating NUL */
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) abort(); /* out of memory: nothing sensible left to do */
    b->data = p;
    b->cap = cap;
}

void core_buf_append_grow(core_buf *b, const void *data, size_t len)
{
    core_buf_reserve(b, len);
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void core_buf_puts(core_buf *b, const char *s)
{
    core_buf_append(b, s, strlen(s));
}

void core_buf_printf(core_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        core_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    } else {
        core_buf_reserve(b, 0);
        b->data[b->len] = '\0';
    }
    va_end(again);
}

void core_buf_json_escape(core_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    core_buf_reserve(b, len);
    for (size_t i = 0; i < len; i++) {
        /* runs that need no escaping are copied at once */
        size_t run = i;
        while (run < len && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\' &&
               (unsigned char)s[run] != 0x7f)
            run++;
        if (run > i) {
            core_buf_append(b, s + i, run - i);
            i = run;
            if (i == len) break;
        }
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            core_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            core_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            core_buf_append(b, "\\n", 2);
            break;
        case '\r':
            core_buf_append(b, "\\r", 2);
            break;
        case '\t':
            core_buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                core_buf_append(b, esc, sizeof esc);
            } else {
                core_buf_append(b, &s[i], 1);
            }
        }
    }
}

void core_buf_reset(core_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void core_buf_free(core_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *core_buf_steal(core_buf *b, size_t *len)
{
    core_buf_reserve(b, 0);
    char *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
