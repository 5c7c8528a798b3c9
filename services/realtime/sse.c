/* SSE frames and event JSON (see sse.h). */
#include "sse.h"

#include <string.h>

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;
    return n;
}

void rt_json_escape(core_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t n = utf8_seq(u + i, len - i);
            if (n == 0) {
                core_buf_append(out, "\xef\xbf\xbd", 3); /* U+FFFD */
                i++;
            } else {
                core_buf_append(out, s + i, n);
                i += n;
            }
            continue;
        }
        switch (c) {
        case '"':
            core_buf_append(out, "\\\"", 2);
            break;
        case '\\':
            core_buf_append(out, "\\\\", 2);
            break;
        case '\n':
            core_buf_append(out, "\\n", 2);
            break;
        case '\r':
            core_buf_append(out, "\\r", 2);
            break;
        case '\t':
            core_buf_append(out, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                core_buf_append(out, esc, sizeof esc);
            } else {
                core_buf_append(out, s + i, 1);
            }
        }
        i++;
    }
}

const char *rt_kind_name(Contentengine__V1__ContentKind k)
{
    switch (k) {
    case CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_ARTICLE:
        return "article";
    case CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_NEWSLETTER:
        return "newsletter";
    case CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_SOCIAL:
        return "social";
    default:
        return "unspecified";
    }
}

const char *rt_status_name(Contentengine__V1__ContentStatus s)
{
    switch (s) {
    case CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_DRAFT:
        return "draft";
    case CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATING:
        return "generating";
    case CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATED:
        return "generated";
    case CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_APPROVED:
        return "approved";
    case CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_FAILED:
        return "failed";
    case CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_ARCHIVED:
        return "archived";
    default:
        return "unspecified";
    }
}

static void json_str_field(core_buf *out, const char *key, const char *val, bool first)
{
    core_buf_printf(out, "%s\"%s\":\"", first ? "" : ",", key);
    if (val) rt_json_escape(out, val, strlen(val));
    core_buf_append(out, "\"", 1);
}

static void json_int_field(core_buf *out, const char *key, int64_t val)
{
    core_buf_printf(out, ",\"%s\":%lld", key, (long long)val);
}

void rt_json_content(core_buf *out, const Contentengine__V1__ContentEvent *ev)
{
    core_buf_append(out, "{", 1);
    json_str_field(out, "item_id", ev->item_id, true);
    json_str_field(out, "title", ev->title, false);
    json_str_field(out, "kind", rt_kind_name(ev->kind), false);
    json_str_field(out, "status", rt_status_name(ev->status), false);
    json_int_field(out, "version", ev->version);
    json_str_field(out, "failure_reason", ev->failure_reason, false);
    core_buf_append(out, "}", 1);
}

void rt_json_progress(core_buf *out, const Contentengine__V1__GenerationProgress *ev)
{
    core_buf_append(out, "{", 1);
    json_str_field(out, "item_id", ev->item_id, true);
    json_str_field(out, "job_id", ev->job_id, false);
    json_str_field(out, "stage", ev->stage, false);
    json_int_field(out, "percent", ev->percent);
    json_str_field(out, "provider", ev->provider, false);
    core_buf_append(out, "}", 1);
}

void rt_json_scrape_run(core_buf *out, const Contentengine__V1__ScrapeRunEvent *ev)
{
    core_buf_append(out, "{", 1);
    json_str_field(out, "run_id", ev->run_id, true);
    json_str_field(out, "source_id", ev->source_id, false);
    json_str_field(out, "state", ev->state, false);
    json_int_field(out, "fetched", ev->fetched);
    json_int_field(out, "new_items", ev->new_items);
    json_int_field(out, "unchanged", ev->unchanged);
    json_int_field(out, "failed", ev->failed);
    json_str_field(out, "error_summary", ev->error_summary, false);
    core_buf_append(out, "}", 1);
}

void rt_json_import(core_buf *out, const Contentengine__V1__ImportProgress *ev)
{
    core_buf_append(out, "{", 1);
    json_str_field(out, "import_id", ev->import_id, true);
    json_str_field(out, "status", ev->status, false);
    json_int_field(out, "rows_processed", ev->rows_processed);
    json_int_field(out, "rows_inserted", ev->rows_inserted);
    json_int_field(out, "rows_updated", ev->rows_updated);
    json_int_field(out, "rows_skipped", ev->rows_skipped);
    json_int_field(out, "rows_failed", ev->rows_failed);
    json_int_field(out, "occurred_unix_ms", ev->occurred_unix_ms);
    json_str_field(out, "error", ev->error, false);
    core_buf_append(out, "}", 1);
}

void rt_sse_frame(core_buf *out, const char *event, const char *json, size_t json_len)
{
    core_buf_printf(out, "event: %s\ndata: ", event);
    core_buf_append(out, json, json_len);
    core_buf_append(out, "\n\n", 2);
}

void rt_sse_id_line(core_buf *out, const char *id, size_t len)
{
    core_buf_append(out, "id: ", 4);
    core_buf_append(out, id, len);
    core_buf_append(out, "\n", 1);
}
