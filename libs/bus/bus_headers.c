/* CloudEvents headers: building them for outgoing records, parsing them from consumed ones,
 * and the dead letter's headers; cheap ids for the hot path. */
#include "bus_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ ids */

/* Ids (ce_id, trace and span ids) need to be unique and unpredictable enough, not secret:
 * core_random_bytes serves them from a per-thread block of getrandom(2) output (one system call
 * per couple of thousand bytes, fresh after fork), so ids stay unguessable from earlier ones. */
void bus_rand_bytes(void *buf, size_t len)
{
    core_random_bytes(buf, len);
}

static const char bus_hex[] = "0123456789abcdef";

static void bus_hex_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = bus_hex[in[i] >> 4];
        out[2 * i + 1] = bus_hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void bus_uuid_v7_string(char out[CORE_UUID_STRLEN + 1])
{
    bus_uuid_v7_at(core_now_unix_ms(), out);
}

void bus_uuid_v7_at(int64_t ms, char out[CORE_UUID_STRLEN + 1])
{
    /* RFC 9562 6.2 method 1, as core_uuid_v7: a 12-bit counter seeded each millisecond keeps
     * the ids of this process increasing. */
    static int64_t last_ms = -1;
    static uint16_t counter;
    if (ms < last_ms) ms = last_ms;
    if (ms == last_ms && counter < 0x0fff) {
        counter++;
    } else {
        if (ms == last_ms) ms = last_ms + 1; /* counter exhausted: borrow the next ms */
        uint16_t seed;
        bus_rand_bytes(&seed, sizeof seed);
        counter = seed & 0x07ff;
        last_ms = ms;
    }
    uint8_t b[16];
    bus_rand_bytes(b + 8, 8);
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | ((counter >> 8) & 0x0f));
    b[7] = (uint8_t)(counter & 0xff);
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = bus_hex[b[i] >> 4];
        out[o++] = bus_hex[b[i] & 15];
    }
    out[o] = '\0';
}

static void bus_random_hex_nonzero(char *out, size_t nbytes)
{
    uint8_t b[16];
    for (;;) {
        bus_rand_bytes(b, nbytes);
        for (size_t i = 0; i < nbytes; i++) {
            if (b[i]) {
                bus_hex_encode(b, nbytes, out);
                return; /* W3C: an all-zero id is invalid */
            }
        }
    }
}

void bus_span_id_new(char out[CORE_SPAN_ID_LEN + 1])
{
    bus_random_hex_nonzero(out, CORE_SPAN_ID_LEN / 2);
}

void bus_trace_id_new(char out[CORE_TRACE_ID_LEN + 1])
{
    bus_random_hex_nonzero(out, CORE_TRACE_ID_LEN / 2);
}

static uint64_t bus_mix64(uint64_t x)
{
    /* splitmix64's finalizer: every input bit affects every output bit. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* x as 16 lower-case hex digits (no NUL), two digits per table lookup. */
static void bus_hex64(char *out, uint64_t x)
{
    static const char pairs[513] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    for (int i = 0; i < 8; i++)
        memcpy(out + 2 * i, pairs + 2 * ((x >> (56 - 8 * i)) & 0xff), 2);
}

/* A record that arrived without a traceparent gets a trace id derived from where it sits in the
 * log, not a random one: each redelivery and retry of that record then logs under the same id,
 * and no randomness is spent per message on the consumer's hot path. */
void bus_trace_id_from_position(char out[CORE_TRACE_ID_LEN + 1], const char *topic,
                                int32_t partition, int64_t offset)
{
    /* FNV-1a of the topic name, remembered for the last name seen on this thread: a consumer
     * asks for the same few topics over and over. The name is compared with our own copy, so a
     * different topic at the same address is never mistaken for the cached one. */
    static _Thread_local struct {
        bool set;
        uint64_t hash;
        char name[256];
    } last;
    if (!topic) topic = "";
    uint64_t h;
    if (last.set && strcmp(topic, last.name) == 0) {
        h = last.hash;
    } else {
        h = 1469598103934665603ull;
        size_t len = 0;
        for (const char *p = topic; *p; p++, len++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        if (len < sizeof last.name) {
            memcpy(last.name, topic, len + 1);
            last.hash = h;
            last.set = true;
        }
    }
    uint64_t hi = bus_mix64(h ^ (uint64_t)(uint32_t)partition);
    uint64_t lo = bus_mix64(hi ^ (uint64_t)offset) | 1; /* never all zero (W3C) */
    bus_hex64(out, hi);
    bus_hex64(out + 16, lo);
    out[CORE_TRACE_ID_LEN] = '\0';
}

void bus_format_time(int64_t unix_ms, char out[CORE_RFC3339_LEN + 1])
{
    static int64_t cached_sec = INT64_MIN;
    static char cached[CORE_RFC3339_LEN + 1];
    int64_t sec = unix_ms / 1000;
    int ms = (int)(unix_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        sec -= 1;
    }
    if (sec != cached_sec) {
        core_format_rfc3339(sec * 1000, cached);
        cached_sec = sec;
    }
    memcpy(out, cached, CORE_RFC3339_LEN + 1);
    /* "YYYY-MM-DDTHH:MM:SS.mmmZ": the milliseconds are at 20..22. */
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
}

/* 1 for 0-9 and a-f (lower case only, as W3C trace context requires). */
static const uint8_t bus_hexmap[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
};

static bool bus_is_hex(char c)
{
    return bus_hexmap[(uint8_t)c] != 0;
}

static bool bus_is_lower_hex(const char *s, size_t n)
{
    unsigned ok = 1, any = 0;
    for (size_t i = 0; i < n; i++) {
        ok &= bus_hexmap[(uint8_t)s[i]];
        any |= (uint8_t)s[i] ^ '0';
    }
    return ok && any; /* an all-zero id is invalid */
}

/* ------------------------------------------------------------------ building */

static void bus_hadd(rd_kafka_headers_t *h, const char *name, const char *value)
{
    rd_kafka_header_add(h, name, -1, value, -1);
}

static void bus_headers_add_extra(rd_kafka_headers_t *h, const bus_record *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const bus_header *x = &r->headers[i];
        if (!x->name || !x->name[0]) continue;
        rd_kafka_header_add(h, x->name, -1, x->value, x->value ? (ssize_t)x->len : 0);
    }
}

int bus_headers_build(rd_kafka_headers_t *h, const bus_record *r, const char *source,
                      int64_t now_ms, char *err, size_t errlen)
{
    if (!r->topic || !r->topic[0]) {
        snprintf(err, errlen, "bus_record without a topic");
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    if (r->nheaders && !r->headers) {
        snprintf(err, errlen, "bus_record for %s: nheaders without headers", r->topic);
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    if (r->verbatim) {
        bus_headers_add_extra(h, r);
        return 0;
    }
    if (!r->ce_type || !r->ce_type[0]) {
        snprintf(err, errlen, "bus_record for %s without a ce_type", r->topic);
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }

    bus_hadd(h, BUS_H_SPECVERSION, BUS_CE_SPECVERSION);

    if (r->ce_id && r->ce_id[0]) {
        bus_hadd(h, BUS_H_ID, r->ce_id);
    } else {
        char id[CORE_UUID_STRLEN + 1];
        bus_uuid_v7_at(now_ms, id);
        rd_kafka_header_add(h, BUS_H_ID, -1, id, CORE_UUID_STRLEN);
    }

    bus_hadd(h, BUS_H_SOURCE, source && source[0] ? source : "/unknown");
    bus_hadd(h, BUS_H_TYPE, r->ce_type);

    char t[CORE_RFC3339_LEN + 1];
    bus_format_time(r->ce_time_ms > 0 ? r->ce_time_ms : now_ms, t);
    rd_kafka_header_add(h, BUS_H_TIME, -1, t, CORE_RFC3339_LEN);

    if (r->ce_subject && r->ce_subject[0]) bus_hadd(h, BUS_H_SUBJECT, r->ce_subject);

    bus_hadd(h, BUS_H_CONTENT_TYPE,
             r->content_type && r->content_type[0] ? r->content_type : BUS_CONTENT_TYPE_PROTOBUF);

    char tp[CORE_TRACEPARENT_LEN + 1];
    char trace[CORE_TRACE_ID_LEN + 1], span[CORE_SPAN_ID_LEN + 1];
    uint8_t flags;
    if (r->traceparent && core_traceparent_parse(r->traceparent, trace, span, &flags)) {
        core_traceparent_format(tp, trace, span, flags);
    } else {
        /* A child span of the trace being logged, or a new trace: "00-<trace>-<span>-01",
         * put together by hand (this runs for every record). */
        const char *cur = core_log_trace();
        if (cur && strlen(cur) == CORE_TRACE_ID_LEN && bus_is_lower_hex(cur, CORE_TRACE_ID_LEN))
            memcpy(tp + 3, cur, CORE_TRACE_ID_LEN);
        else
            bus_random_hex_nonzero(tp + 3, CORE_TRACE_ID_LEN / 2);
        bus_random_hex_nonzero(tp + 36, CORE_SPAN_ID_LEN / 2);
        memcpy(tp, "00-", 3);
        tp[35] = '-';
        memcpy(tp + 52, "-01", 4);
    }
    rd_kafka_header_add(h, BUS_H_TRACEPARENT, -1, tp, CORE_TRACEPARENT_LEN);
    bus_headers_add_extra(h, r);
    return 0;
}

/* ------------------------------------------------------------------ parsing */

/* Copies a header value into a C string field: NULL or empty gives "", too long is cut, and
 * an embedded NUL ends the string (handlers read these as text). */
static void bus_vcopy(const void *v, size_t n, char *dst, size_t size)
{
    if (!v) n = 0;
    if (n > size - 1) n = size - 1;
    if (n) memcpy(dst, v, n);
    dst[n] = '\0';
}

/* W3C traceparent: "<2 hex version>-<32 hex trace>-<16 hex span>-<2 hex flags>", neither id
 * all zeros, version ff invalid, version 00 exactly 55 characters, later versions possibly
 * followed by "-...". The rules of core_traceparent_parse, without copying: it runs per
 * message, on header bytes that are not NUL-terminated. */
static bool bus_traceparent_valid(const char *v, size_t n)
{
    if (n < CORE_TRACEPARENT_LEN) return false;
    if (!bus_is_hex(v[0]) || !bus_is_hex(v[1]) || (v[0] == 'f' && v[1] == 'f')) return false;
    bool v00 = v[0] == '0' && v[1] == '0';
    if (v00 ? n != CORE_TRACEPARENT_LEN : (n > CORE_TRACEPARENT_LEN && v[55] != '-')) return false;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
    if (!bus_is_lower_hex(v + 3, 32) || !bus_is_lower_hex(v + 36, 16)) return false;
    return bus_is_hex(v[53]) && bus_is_hex(v[54]);
}

void bus_headers_parse(bus_msg_internal *mi, const rd_kafka_headers_t *hdrs)
{
    bus_message *m = &mi->msg;
    mi->magic = BUS_MSG_MAGIC;
    mi->hdrs = hdrs;
    m->ce_id[0] = m->ce_type[0] = m->ce_source[0] = m->ce_time[0] = '\0';
    m->traceparent[0] = '\0';
    const void *tp = NULL;
    size_t tplen = 0;
    /* One pass; a later header of the same name overrides an earlier one ("last wins"). */
    const char *name;
    const void *v;
    size_t n;
    for (size_t i = 0; hdrs && rd_kafka_header_get_all(hdrs, i, &name, &v, &n) == 0; i++) {
        if (name[0] == 'c' && name[1] == 'e' && name[2] == '_') {
            const char *rest = name + 3;
            if (strcmp(rest, "id") == 0)
                bus_vcopy(v, n, m->ce_id, sizeof m->ce_id);
            else if (strcmp(rest, "type") == 0)
                bus_vcopy(v, n, m->ce_type, sizeof m->ce_type);
            else if (strcmp(rest, "source") == 0)
                bus_vcopy(v, n, m->ce_source, sizeof m->ce_source);
            else if (strcmp(rest, "time") == 0)
                bus_vcopy(v, n, m->ce_time, sizeof m->ce_time);
        } else if (strcmp(name, BUS_H_TRACEPARENT) == 0) {
            tp = v;
            tplen = v ? n : 0;
        }
    }
    if (tp && bus_traceparent_valid(tp, tplen)) {
        memcpy(m->traceparent, tp, CORE_TRACEPARENT_LEN);
        m->traceparent[CORE_TRACEPARENT_LEN] = '\0';
        memcpy(m->trace_id, m->traceparent + 3, CORE_TRACE_ID_LEN);
        m->trace_id[CORE_TRACE_ID_LEN] = '\0';
    } else {
        bus_trace_id_from_position(m->trace_id, m->topic, m->partition, m->offset);
    }
}

void bus_message_from_rkm(bus_msg_internal *mi, const rd_kafka_message_t *rkm)
{
    bus_message *m = &mi->msg;
    m->topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "";
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    m->key = rkm->key;
    m->key_len = rkm->key ? rkm->key_len : 0;
    m->value = rkm->payload;
    m->value_len = rkm->payload ? rkm->len : 0;
    m->timestamp_ms = rd_kafka_message_timestamp(rkm, NULL);
    m->attempt = 1;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(rkm, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) h = NULL;
    bus_headers_parse(mi, h);
}

const void *bus_message_header(const bus_message *m, const char *name, size_t *len)
{
    const bus_msg_internal *mi = (const bus_msg_internal *)m;
    if (len) *len = 0;
    if (!m || !name || mi->magic != BUS_MSG_MAGIC || !mi->hdrs) return NULL;
    const void *v = NULL;
    size_t n = 0;
    if (rd_kafka_header_get_last(mi->hdrs, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    if (len) *len = n;
    /* A header present with a NULL value reads as present and empty. */
    return v ? v : "";
}

/* ------------------------------------------------------------------ dead letters */

rd_kafka_headers_t *bus_dlq_headers(const rd_kafka_headers_t *orig, const bus_dlq_info *info)
{
    rd_kafka_headers_t *h = orig ? rd_kafka_headers_copy(orig) : rd_kafka_headers_new(8);
    /* A replayed dead letter that fails again carries only the latest story. */
    static const char *const names[] = {BUS_DLQ_H_TOPIC, BUS_DLQ_H_PARTITION, BUS_DLQ_H_OFFSET,
                                        BUS_DLQ_H_GROUP, BUS_DLQ_H_ERROR,     BUS_DLQ_H_ATTEMPTS,
                                        BUS_DLQ_H_TIME};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        rd_kafka_header_remove(h, names[i]);

    char num[32];
    bus_hadd(h, BUS_DLQ_H_TOPIC, info->topic ? info->topic : "");
    snprintf(num, sizeof num, "%" PRId32, info->partition);
    bus_hadd(h, BUS_DLQ_H_PARTITION, num);
    snprintf(num, sizeof num, "%" PRId64, info->offset);
    bus_hadd(h, BUS_DLQ_H_OFFSET, num);
    bus_hadd(h, BUS_DLQ_H_GROUP, info->group ? info->group : "");
    const char *e = info->error && info->error[0] ? info->error : "unspecified error";
    size_t elen = strlen(e);
    if (elen > 1024) elen = 1024; /* a header, not a log file */
    rd_kafka_header_add(h, BUS_DLQ_H_ERROR, -1, e, (ssize_t)elen);
    snprintf(num, sizeof num, "%u", info->attempts);
    bus_hadd(h, BUS_DLQ_H_ATTEMPTS, num);
    char t[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(info->time_ms, t);
    bus_hadd(h, BUS_DLQ_H_TIME, t);
    return h;
}
