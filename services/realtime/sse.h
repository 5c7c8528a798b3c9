/*
 * Server-Sent Events formatting and the JSON carried in each event's data line.
 * Every data payload is one line of JSON (CR and LF inside strings are escaped, so an event can
 * never be split or forged by what an item's title contains); invalid UTF-8 becomes U+FFFD.
 */
#ifndef RT_SSE_H
#define RT_SSE_H

#include <stdint.h>

#include "contentengine/v1/content.pb-c.h"
#include "contentengine/v1/people.pb-c.h"
#include "contentengine/v1/scraper.pb-c.h"
#include "core.h"

#define RT_EVENT_CONTENT  "content.item"
#define RT_EVENT_PROGRESS "generation.progress"
#define RT_EVENT_RUN      "scrape.run"
#define RT_EVENT_IMPORT   "import.progress"

/* Appends s as the inside of a JSON string. */
void rt_json_escape(core_buf *out, const char *s, size_t len);

const char *rt_kind_name(Contentengine__V1__ContentKind k);
const char *rt_status_name(Contentengine__V1__ContentStatus s);

/* {"item_id":…,"title":…,"kind":…,"status":…,"version":…,"failure_reason":…} (no body) */
void rt_json_content(core_buf *out, const Contentengine__V1__ContentEvent *ev);
/* {"item_id":…,"job_id":…,"stage":…,"percent":…,"provider":…} (no body, no error text) */
void rt_json_progress(core_buf *out, const Contentengine__V1__GenerationProgress *ev);

/* {"run_id":…,"source_id":…,"state":…,"fetched":…,"new_items":…,"unchanged":…,"failed":…,
 *  "error_summary":…} */
void rt_json_scrape_run(core_buf *out, const Contentengine__V1__ScrapeRunEvent *ev);
/* {"import_id":…,"status":…,"rows_processed":…,"rows_inserted":…,"rows_updated":…,
 *  "rows_skipped":…,"rows_failed":…,"occurred_unix_ms":…,"error":…} */
void rt_json_import(core_buf *out, const Contentengine__V1__ImportProgress *ev);

/* "event: <name>\ndata: <json>\n\n"; json must be one line. */
void rt_sse_frame(core_buf *out, const char *event, const char *json, size_t json_len);
/* "id: <id>\n" */
void rt_sse_id_line(core_buf *out, const char *id, size_t len);

#define RT_SSE_HEARTBEAT ": hb\n\n"

#endif
