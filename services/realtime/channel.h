/*
 * Channel names: "<family>:<id>" (one entity's events) and "<family>:*" (every entity's of the
 * family). Families: content (items: content and generation-progress events), source (scraper
 * runs, by source id) and import (subscriber imports, by import id). An id is 1-64 characters
 * of [A-Za-z0-9_-] (UUIDs and the like).
 */
#ifndef RT_CHANNEL_H
#define RT_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#define RT_ITEM_ID_MAX      64
#define RT_CHANNEL_NAME_MAX (8 + RT_ITEM_ID_MAX) /* "content:" (the longest prefix) + id */

typedef enum rt_family {
    RT_FAMILY_CONTENT = 0,
    RT_FAMILY_SOURCE = 1,
    RT_FAMILY_IMPORT = 2,
    RT_NFAMILIES = 3
} rt_family;

/* One entity's channel, or the family's "*" channel. */
typedef enum rt_channel_kind { RT_CHANNEL_ITEM, RT_CHANNEL_ALL_ITEMS } rt_channel_kind;

/* "content", "source", "import". */
const char *rt_family_prefix(rt_family f);
/* "content:*", "source:*", "import:*". */
const char *rt_family_all(rt_family f);

bool rt_item_id_valid(const char *id, size_t len);
/* Validates one channel name; *family and *kind (either may be NULL) say which. */
bool rt_channel_name_valid(const char *name, size_t len, rt_family *family, rt_channel_kind *kind);
/* Writes "<family>:<id>" to name (RT_CHANNEL_NAME_MAX + 1 bytes); false for a bad id. */
bool rt_channel_name(rt_family f, const char *id, char *name, size_t size);

typedef struct rt_channel_list {
    char names[16][RT_CHANNEL_NAME_MAX + 1];
    size_t n;
} rt_channel_list;

/* Parses the comma-separated channels= value (duplicates collapse; at most max, which is at
 * most 16). False with a one-line reason in err when anything is wrong. */
bool rt_channels_parse(const char *value, size_t max, rt_channel_list *out, char *err,
                       size_t errlen);

#endif
