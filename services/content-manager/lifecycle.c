/* The item lifecycle: status and kind names and the transition table. */
#include <string.h>

#include "content.h"

static const char *const status_names[CM_STATUS_COUNT] = {
    "draft", "generating", "generated", "approved", "failed", "archived",
};

const char *cm_status_name(cm_status s)
{
    return (unsigned)s < CM_STATUS_COUNT ? status_names[s] : "unknown";
}

bool cm_status_parse(const char *name, cm_status *out)
{
    if (!name) return false;
    for (int i = 0; i < CM_STATUS_COUNT; i++)
        if (strcmp(name, status_names[i]) == 0) {
            *out = (cm_status)i;
            return true;
        }
    return false;
}

int cm_status_proto(cm_status s)
{
    return (unsigned)s < CM_STATUS_COUNT ? (int)s + 1 : 0;
}

const char *cm_kind_name(cm_kind k)
{
    switch (k) {
    case CM_KIND_ARTICLE:
        return "article";
    case CM_KIND_NEWSLETTER:
        return "newsletter";
    case CM_KIND_SOCIAL:
        return "social";
    }
    return "unknown";
}

bool cm_kind_parse(const char *name, cm_kind *out)
{
    if (!name) return false;
    static const cm_kind kinds[] = {CM_KIND_ARTICLE, CM_KIND_NEWSLETTER, CM_KIND_SOCIAL};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name, cm_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return true;
        }
    return false;
}

const char *cm_action_name(cm_action a)
{
    static const char *const names[CM_ACTION_COUNT] = {
        "generate", "complete", "fail", "approve", "regenerate", "archive", "edit",
    };
    return (unsigned)a < CM_ACTION_COUNT ? names[a] : "unknown";
}

/* -1: not allowed. Rows are statuses, columns actions. Regenerating an approved item is not
 * allowed (approval is final; archive it and brief again); archiving a generating item is
 * allowed and makes the job's result stale. */
#define NO (-1)
static const int table[CM_STATUS_COUNT][CM_ACTION_COUNT] = {
    /*               generate       complete      fail       approve      regenerate     archive
       edit */
    [CM_DRAFT] = {CM_GENERATING, NO, NO, NO, CM_GENERATING, CM_ARCHIVED, CM_DRAFT},
    [CM_GENERATING] = {NO, CM_GENERATED, CM_FAILED, NO, NO, CM_ARCHIVED, NO},
    [CM_GENERATED] = {NO, NO, NO, CM_APPROVED, CM_GENERATING, CM_ARCHIVED, CM_GENERATED},
    [CM_APPROVED] = {NO, NO, NO, NO, NO, CM_ARCHIVED, NO},
    [CM_FAILED] = {NO, NO, NO, NO, CM_GENERATING, CM_ARCHIVED, CM_FAILED},
    [CM_ARCHIVED] = {NO, NO, NO, NO, NO, NO, NO},
};

bool cm_transition(cm_status from, cm_action action, cm_status *to)
{
    if ((unsigned)from >= CM_STATUS_COUNT || (unsigned)action >= CM_ACTION_COUNT) return false;
    int t = table[from][action];
    if (t == NO) return false;
    *to = (cm_status)t;
    return true;
}
