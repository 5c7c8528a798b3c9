/* Channel names and the channels= query parameter (see channel.h). */
#include "channel.h"

#include <stdio.h>
#include <string.h>

bool rt_item_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > RT_ITEM_ID_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

bool rt_channel_name_valid(const char *name, size_t len, rt_channel_kind *kind)
{
    static const char prefix[] = "content:";
    size_t pl = sizeof prefix - 1;
    if (len < pl || memcmp(name, prefix, pl) != 0) return false;
    if (len == pl + 1 && name[pl] == '*') {
        if (kind) *kind = RT_CHANNEL_ALL_ITEMS;
        return true;
    }
    if (!rt_item_id_valid(name + pl, len - pl)) return false;
    if (kind) *kind = RT_CHANNEL_ITEM;
    return true;
}

bool rt_channels_parse(const char *value, size_t max, rt_channel_list *out, char *err,
                       size_t errlen)
{
    out->n = 0;
    size_t cap = sizeof out->names / sizeof out->names[0];
    if (max > cap) max = cap;
    if (!value || !*value) {
        snprintf(err, errlen, "channels is required: a comma-separated list such as %s",
                 "content:<item id>,content:*");
        return false;
    }
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!rt_channel_name_valid(p, len, NULL)) {
            snprintf(err, errlen,
                     "channel \"%.*s\" is not content:* or content:<id> (id: 1-%d of "
                     "A-Z a-z 0-9 _ -)",
                     (int)(len > 80 ? 80 : len), p, RT_ITEM_ID_MAX);
            return false;
        }
        bool dup = false;
        for (size_t i = 0; i < out->n; i++)
            if (strlen(out->names[i]) == len && memcmp(out->names[i], p, len) == 0) dup = true;
        if (!dup) {
            if (out->n >= max) {
                snprintf(err, errlen, "at most %zu channels per subscription", max);
                return false;
            }
            memcpy(out->names[out->n], p, len);
            out->names[out->n][len] = '\0';
            out->n++;
        }
        if (!comma) break;
        p = comma + 1;
    }
    return true;
}
