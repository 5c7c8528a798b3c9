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

static const char *const family_prefix[RT_NFAMILIES] = {"content", "source", "import"};
static const char *const family_all[RT_NFAMILIES] = {"content:*", "source:*", "import:*"};

const char *rt_family_prefix(rt_family f)
{
    return f >= 0 && f < RT_NFAMILIES ? family_prefix[f] : "?";
}

const char *rt_family_all(rt_family f)
{
    return f >= 0 && f < RT_NFAMILIES ? family_all[f] : "?";
}

bool rt_channel_name_valid(const char *name, size_t len, rt_family *family, rt_channel_kind *kind)
{
    for (int f = 0; f < RT_NFAMILIES; f++) {
        size_t pl = strlen(family_prefix[f]);
        if (len <= pl || memcmp(name, family_prefix[f], pl) != 0 || name[pl] != ':') continue;
        const char *id = name + pl + 1;
        size_t idlen = len - pl - 1;
        bool all = idlen == 1 && id[0] == '*';
        if (!all && !rt_item_id_valid(id, idlen)) return false;
        if (family) *family = (rt_family)f;
        if (kind) *kind = all ? RT_CHANNEL_ALL_ITEMS : RT_CHANNEL_ITEM;
        return true;
    }
    return false;
}

bool rt_channel_name(rt_family f, const char *id, char *name, size_t size)
{
    if (f < 0 || f >= RT_NFAMILIES || !id || !rt_item_id_valid(id, strlen(id))) return false;
    int n = snprintf(name, size, "%s:%s", family_prefix[f], id);
    return n > 0 && (size_t)n < size;
}

bool rt_channels_parse(const char *value, size_t max, rt_channel_list *out, char *err,
                       size_t errlen)
{
    out->n = 0;
    size_t cap = sizeof out->names / sizeof out->names[0];
    if (max > cap) max = cap;
    if (!value || !*value) {
        snprintf(err, errlen, "channels is required: a comma-separated list such as %s",
                 "content:<item id>,content:*,source:<source id>,import:<import id>");
        return false;
    }
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!rt_channel_name_valid(p, len, NULL, NULL)) {
            snprintf(err, errlen,
                     "channel \"%.*s\" is not <family>:* or <family>:<id> (family: content, "
                     "source or import; id: 1-%d of A-Z a-z 0-9 _ -)",
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
