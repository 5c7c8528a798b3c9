/*
 * Channel names: "content:<item id>" (one item's events) and "content:*" (every item's).
 * An item id is 1-64 characters of [A-Za-z0-9_-] (UUIDs and the like).
 */
#ifndef RT_CHANNEL_H
#define RT_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#define RT_ITEM_ID_MAX      64
#define RT_CHANNEL_NAME_MAX (8 + RT_ITEM_ID_MAX) /* "content:" + id */
#define RT_CHANNEL_ALL      "content:*"

typedef enum rt_channel_kind { RT_CHANNEL_ITEM, RT_CHANNEL_ALL_ITEMS } rt_channel_kind;

bool rt_item_id_valid(const char *id, size_t len);
/* Validates one channel name; *kind says which. */
bool rt_channel_name_valid(const char *name, size_t len, rt_channel_kind *kind);

typedef struct rt_channel_list {
    char names[16][RT_CHANNEL_NAME_MAX + 1];
    size_t n;
} rt_channel_list;

/* Parses the comma-separated channels= value (duplicates collapse; at most max, which is at
 * most 16). False with a one-line reason in err when anything is wrong. */
bool rt_channels_parse(const char *value, size_t max, rt_channel_list *out, char *err,
                       size_t errlen);

#endif
