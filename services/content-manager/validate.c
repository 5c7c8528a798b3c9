/* Validation of briefs and edits, list parameters, cursors and search patterns. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"

static void add_error(json_t *errors, const char *field, const char *detail)
{
    json_array_append_new(errors, json_pack("{s:s,s:s}", "field", field, "detail", detail));
}

size_t cm_utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

/* An optional or required string member with a limit in code points. */
static const char *string_field(const json_t *body, const char *name, bool required,
                                size_t max_chars, json_t *errors, bool *ok)
{
    json_t *v = json_object_get(body, name);
    if (!v) {
        if (required) {
            add_error(errors, name, "is required");
            *ok = false;
        }
        return "";
    }
    if (!json_is_string(v)) {
        add_error(errors, name, "must be a string");
        *ok = false;
        return "";
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        add_error(errors, name, "must not contain NUL characters");
        *ok = false;
        return "";
    }
    if (required && blank(s)) {
        add_error(errors, name, "must not be empty");
        *ok = false;
        return "";
    }
    if (cm_utf8_length(s) > max_chars) {
        add_error(errors, name, "is too long");
        *ok = false;
        return "";
    }
    return s;
}

static json_t *validate_sources(const json_t *body, json_t *errors, bool *ok)
{
    json_t *src = json_object_get(body, "sources");
    json_t *out = json_array();
    if (!src || json_is_null(src)) return out;
    if (!json_is_array(src)) {
        add_error(errors, "sources", "must be an array");
        *ok = false;
        return out;
    }
    if (json_array_size(src) > CM_SOURCES_MAX) {
        add_error(errors, "sources", "has too many entries (at most 20)");
        *ok = false;
        return out;
    }
    size_t i;
    json_t *e;
    json_array_foreach(src, i, e)
    {
        char field[64];
        snprintf(field, sizeof field, "sources[%zu]", i);
        if (!json_is_object(e)) {
            add_error(errors, field, "must be an object with text or item_id");
            *ok = false;
            continue;
        }
        json_t *text = json_object_get(e, "text");
        json_t *item = json_object_get(e, "item_id");
        size_t known = (text != NULL) + (item != NULL);
        if (json_object_size(e) != known || known != 1) {
            add_error(errors, field, "must have exactly one of text or item_id");
            *ok = false;
            continue;
        }
        if (text) {
            const char *t = json_string_value(text);
            if (!t) {
                add_error(errors, field, "text must be a string");
                *ok = false;
            } else if (strlen(t) != json_string_length(text) || blank(t)) {
                add_error(errors, field, "text must not be empty");
                *ok = false;
            } else if (json_string_length(text) > CM_SOURCE_TEXT_MAX) {
                add_error(errors, field, "text is too long (at most 102400 bytes)");
                *ok = false;
            } else {
                json_array_append_new(out, json_pack("{s:s}", "text", t));
            }
        } else {
            const char *id = json_string_value(item);
            core_uuid u;
            if (!id || !core_uuid_parse(id, &u)) {
                add_error(errors, field, "item_id must be a UUID");
                *ok = false;
            } else {
                char canon[CORE_UUID_STRLEN + 1];
                core_uuid_format(&u, canon);
                json_array_append_new(out, json_pack("{s:s}", "item_id", canon));
            }
        }
    }
    return out;
}

bool cm_brief_validate(const json_t *body, cm_brief *out, json_t *errors)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(body)) {
        add_error(errors, "", "the body must be a JSON object");
        return false;
    }
    bool ok = true;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        static const char *const known[] = {"title",        "kind",    "topic",
                                            "instructions", "sources", "generate"};
        bool found = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(key, known[i]) == 0) found = true;
        if (!found) {
            add_error(errors, key, "is not a field of a brief");
            ok = false;
        }
    }
    out->title = string_field(body, "title", true, CM_TITLE_MAX, errors, &ok);
    const char *kind = string_field(body, "kind", true, 32, errors, &ok);
    if (*kind && !cm_kind_parse(kind, &out->kind)) {
        add_error(errors, "kind", "must be one of article, newsletter, social");
        ok = false;
    }
    out->topic = string_field(body, "topic", false, CM_TOPIC_MAX, errors, &ok);
    out->instructions = string_field(body, "instructions", false, CM_INSTRUCTIONS_MAX, errors, &ok);
    json_t *gen = json_object_get(body, "generate");
    out->generate = true;
    if (gen && !json_is_boolean(gen)) {
        add_error(errors, "generate", "must be a boolean");
        ok = false;
    } else if (gen) {
        out->generate = json_is_true(gen);
    }
    json_t *sources = validate_sources(body, errors, &ok);
    if (!ok) {
        json_decref(sources);
        return false;
    }
    out->sources = sources;
    return true;
}

bool cm_edit_validate(const json_t *req, const char **body, int64_t *version, json_t *errors)
{
    *body = NULL;
    *version = 0;
    if (!json_is_object(req)) {
        add_error(errors, "", "the body must be a JSON object");
        return false;
    }
    bool ok = true;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)req, key, v)
    {
        if (strcmp(key, "body") != 0 && strcmp(key, "version") != 0) {
            add_error(errors, key, "cannot be edited");
            ok = false;
        }
    }
    json_t *b = json_object_get(req, "body");
    if (!b) {
        add_error(errors, "body", "is required");
        ok = false;
    } else if (!json_is_string(b)) {
        add_error(errors, "body", "must be a string");
        ok = false;
    } else if (strlen(json_string_value(b)) != json_string_length(b)) {
        add_error(errors, "body", "must not contain NUL characters");
        ok = false;
    } else if (json_string_length(b) > CM_BODY_MAX) {
        add_error(errors, "body", "is too long (at most 262144 bytes)");
        ok = false;
    } else {
        *body = json_string_value(b);
    }
    json_t *ver = json_object_get(req, "version");
    if (ver) {
        if (!json_is_integer(ver) || json_integer_value(ver) < 1) {
            add_error(errors, "version", "must be a positive integer");
            ok = false;
        } else {
            *version = json_integer_value(ver);
        }
    }
    return ok;
}

/* ---------------------------------------------------------------- cursors */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
#define CURSOR_VERSION 1
#define CURSOR_BYTES   17 /* version byte + 16 id bytes */

bool cm_cursor_encode(const char *item_id, char out[CM_CURSOR_MAX])
{
    core_uuid u;
    if (!item_id || !core_uuid_parse(item_id, &u)) return false;
    uint8_t raw[CURSOR_BYTES];
    raw[0] = CURSOR_VERSION;
    memcpy(raw + 1, u.b, 16);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < CURSOR_BYTES; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0) out[o++] = b64url[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return true;
}

bool cm_cursor_decode(const char *cursor, char item_id[CORE_UUID_STRLEN + 1])
{
    if (!cursor) return false;
    size_t n = strlen(cursor);
    if (n != (CURSOR_BYTES * 8 + 5) / 6) return false;
    uint8_t raw[CURSOR_BYTES];
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = memchr(b64url, cursor[i], 64);
        if (!p || cursor[i] == '\0') return false;
        acc = (acc << 6) | (uint32_t)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o < CURSOR_BYTES) raw[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (o != CURSOR_BYTES || raw[0] != CURSOR_VERSION) return false;
    if ((acc & ((1u << bits) - 1)) != 0) return false; /* non-canonical trailing bits */
    core_uuid u;
    memcpy(u.b, raw + 1, 16);
    core_uuid_format(&u, item_id);
    return true;
}

void cm_like_contains(const char *text, core_buf *out)
{
    core_buf_puts(out, "%");
    for (const char *p = text; *p; p++) {
        if (*p == '\\' || *p == '%' || *p == '_') core_buf_append(out, "\\", 1);
        core_buf_append(out, p, 1);
    }
    core_buf_puts(out, "%");
}

bool cm_parse_limit(const char *text, int *out)
{
    if (!text) {
        *out = CM_LIST_DEFAULT;
        return true;
    }
    if (!*text || strlen(text) > 4) return false;
    int v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > CM_LIST_MAX) return false;
    *out = v;
    return true;
}

bool cm_parse_if_match(const char *text, int64_t *version)
{
    if (!text) return false;
    if (strncmp(text, "W/", 2) == 0) text += 2;
    size_t n = strlen(text);
    if (n >= 2 && text[0] == '"' && text[n - 1] == '"') {
        text++;
        n -= 2;
    }
    if (n == 0 || n > 18) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
        v = v * 10 + (text[i] - '0');
    }
    if (v < 1) return false;
    *version = v;
    return true;
}
