/*
 * Position vectors: the SSE event id. A subscription's position is, for each Kafka source
 * (topic, partition) it has received events from, the offset of the last one, plus t0, the Kafka
 * timestamp of the first event it received (the baseline for sources it has seen nothing from).
 * Text form: "t<t0>" then ".<topic letter><partition>:<offset>" per source, sorted:
 *     t1732212345678.c3:1234.g5:567.i0:12.s2:40
 * Derived from Kafka coordinates only, so every instance gives the same id to the same events.
 */
#ifndef RT_POSVEC_H
#define RT_POSVEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "core.h"

/* Sources: the topics realtime reads, by index; the index order is the letters' alphabetical
 * order (c, g, i, s), so ids are sorted by letter. */
enum {
    RT_TOPIC_CONTENT = 0,  /* c: ContentEvent         -> content:<item_id> */
    RT_TOPIC_PROGRESS = 1, /* g: GenerationProgress   -> content:<item_id> */
    RT_TOPIC_IMPORTS = 2,  /* i: ImportProgress       -> import:<import_id> */
    RT_TOPIC_RUNS = 3,     /* s: ScrapeRunEvent       -> source:<source_id> */
    RT_NTOPICS = 4
};
#define RT_POSVEC_MAX     128  /* sources in one id */
#define RT_POSVEC_MAX_LEN 4096 /* characters in one id */

typedef struct rt_pos {
    int64_t offset;
    uint16_t partition;
    uint8_t topic;
} rt_pos;

typedef struct rt_posvec {
    rt_pos *v;
    int64_t t0; /* 0: no event received yet */
    uint16_t n, cap;
} rt_posvec;

char rt_topic_letter(int topic);
/* The channel family a topic's events go to. */
rt_family rt_topic_family(int topic);
/* True and *offset when the vector has an entry for the source. */
bool rt_posvec_get(const rt_posvec *pv, int topic, int partition, int64_t *offset);
/* Sets (inserting in order) the source's offset; false when the vector is full. */
bool rt_posvec_set(rt_posvec *pv, int topic, int partition, int64_t offset);
void rt_posvec_free(rt_posvec *pv);
void rt_posvec_copy(rt_posvec *dst, const rt_posvec *src);
/* Appends the text form. */
void rt_posvec_format(const rt_posvec *pv, core_buf *out);
/* Strict parse of the text form (sorted, no duplicates, bounded); false when malformed. */
bool rt_posvec_parse(const char *text, rt_posvec *out);
/* True when a has seen at least what b has on every source of b (and b's t0 is not earlier). */
bool rt_posvec_covers(const rt_posvec *a, const rt_posvec *b);

#endif
