/*
 * content-manager's domain: the item lifecycle (statuses, actions, the transition table),
 * validation of briefs and edits, list cursors and title search patterns. Pure functions, no
 * I/O: unit-tested in tests/test_*.c.
 */
#ifndef CM_CONTENT_H
#define CM_CONTENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* Limits of a brief (characters are Unicode code points) and of an edited body (bytes). */
#define CM_TITLE_MAX        300
#define CM_TOPIC_MAX        500
#define CM_INSTRUCTIONS_MAX 4000
#define CM_SOURCES_MAX      20
#define CM_SOURCE_TEXT_MAX  (100 * 1024) /* bytes */
#define CM_BODY_MAX         (256 * 1024) /* bytes */
#define CM_REASON_MAX       2000         /* bytes of a failure reason kept */
#define CM_LIST_DEFAULT     20
#define CM_LIST_MAX         100

typedef enum cm_status {
    CM_DRAFT,
    CM_GENERATING,
    CM_GENERATED,
    CM_APPROVED,
    CM_FAILED,
    CM_ARCHIVED,
    CM_STATUS_COUNT,
} cm_status;

typedef enum cm_kind {
    CM_KIND_ARTICLE = 1, /* values match contentengine.v1.ContentKind */
    CM_KIND_NEWSLETTER = 2,
    CM_KIND_SOCIAL = 3,
} cm_kind;

typedef enum cm_action {
    CM_ACT_GENERATE,   /* a brief is submitted: draft -> generating */
    CM_ACT_COMPLETE,   /* the current job is done: generating -> generated */
    CM_ACT_FAIL,       /* the current job failed: generating -> failed */
    CM_ACT_APPROVE,    /* generated -> approved */
    CM_ACT_REGENERATE, /* draft | generated | failed -> generating (a new job) */
    CM_ACT_ARCHIVE,    /* any but archived -> archived */
    CM_ACT_EDIT,       /* draft | generated | failed: the body changes, the status stays */
    CM_ACTION_COUNT,
} cm_action;

const char *cm_status_name(cm_status s);
bool cm_status_parse(const char *name, cm_status *out);
int cm_status_proto(cm_status s); /* contentengine.v1.ContentStatus */
const char *cm_kind_name(cm_kind k);
bool cm_kind_parse(const char *name, cm_kind *out);
const char *cm_action_name(cm_action a);

/* The transition table: true with *to set when action is allowed from `from`. */
bool cm_transition(cm_status from, cm_action action, cm_status *to);

/* A validated brief. Strings point into the JSON it came from; sources is a new reference to
 * a normalized array of {"text": ...} / {"item_id": ...} objects (json_decref it). */
typedef struct cm_brief {
    const char *title;
    cm_kind kind;
    const char *topic;
    const char *instructions;
    json_t *sources;
    bool generate; /* "generate": false keeps the item a draft (no GenerationRequest yet) */
} cm_brief;

/* Validates a create request. On failure returns false and appends {"field", "detail"} objects
 * to errors (a JSON array); out->sources is then NULL. */
bool cm_brief_validate(const json_t *body, cm_brief *out, json_t *errors);

/* Validates an edit (PATCH): {"body": string, "version": integer (optional)}. *version is 0
 * when absent. */
bool cm_edit_validate(const json_t *req, const char **body, int64_t *version, json_t *errors);

/* Number of code points of a valid UTF-8 string. */
size_t cm_utf8_length(const char *s);

/* Opaque list cursors: the last item id seen, versioned and base64url-encoded. */
#define CM_CURSOR_MAX 64
bool cm_cursor_encode(const char *item_id, char out[CM_CURSOR_MAX]);
bool cm_cursor_decode(const char *cursor, char item_id[CORE_UUID_STRLEN + 1]);

/* "%<text with \, % and _ escaped by \>%" for ILIKE ... ESCAPE '\'. */
void cm_like_contains(const char *text, core_buf *out);

/* "limit" query parameter: NULL gives CM_LIST_DEFAULT; 1..CM_LIST_MAX digits only. */
bool cm_parse_limit(const char *text, int *out);

/* An If-Match value: 7, "7" or W/"7". */
bool cm_parse_if_match(const char *text, int64_t *version);

#endif
