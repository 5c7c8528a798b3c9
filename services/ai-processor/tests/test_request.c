/* Unit tests for the ai-processor's request decoding/validation and progress encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../request.h"
#include "contentengine/v1/content.pb-c.h"

/* Packs a GenerationRequest with two sources; fields may be overridden by the caller. */
static uint8_t *pack_request(const char *job_id, const char *item_id, int kind, size_t *len)
{
    Contentengine__V1__SourceText s1 = CONTENTENGINE__V1__SOURCE_TEXT__INIT;
    Contentengine__V1__SourceText s2 = CONTENTENGINE__V1__SOURCE_TEXT__INIT;
    s1.text = "The first source says something.";
    s1.url = "https://example.org/a";
    s2.text = "The second source says more.";
    s2.title = "Second";
    Contentengine__V1__SourceText *sources[2] = {&s1, &s2};
    Contentengine__V1__GenerationRequest m = CONTENTENGINE__V1__GENERATION_REQUEST__INIT;
    m.job_id = (char *)job_id;
    m.item_id = (char *)item_id;
    m.kind = (Contentengine__V1__ContentKind)kind;
    m.title = "A title";
    m.topic = "topic";
    m.n_sources = 2;
    m.sources = sources;
    *len = contentengine__v1__generation_request__get_packed_size(&m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    contentengine__v1__generation_request__pack(&m, buf);
    return buf;
}

static void expect_rejected(const void *data, size_t len, const char *needle)
{
    ai_request r;
    char err[256] = "";
    assert_false(ai_request_decode(data, len, &r, err, sizeof err));
    if (!strstr(err, needle)) fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    assert_null(r.msg);
    assert_null(r.sources);
}

static void test_decodes_a_valid_request(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_request("job-1", "item-1", 2, &len);
    ai_request r;
    char err[256] = "";
    assert_true(ai_request_decode(buf, len, &r, err, sizeof err));
    assert_string_equal(r.job_id, "job-1");
    assert_string_equal(r.item_id, "item-1");
    assert_string_equal(r.provider, "");
    assert_int_equal(r.req.kind, PROVIDER_KIND_NEWSLETTER);
    assert_string_equal(r.req.title, "A title");
    assert_string_equal(r.req.instructions, "");
    assert_int_equal(r.req.nsources, 2);
    assert_string_equal(r.req.sources[0].text, "The first source says something.");
    assert_string_equal(r.req.sources[0].url, "https://example.org/a");
    assert_string_equal(r.req.sources[0].title, "");
    assert_string_equal(r.req.sources[1].title, "Second");
    ai_request_free(&r);
    free(buf);
}

static void test_rejects_missing_or_bad_ids(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_request("", "item-1", 1, &len);
    expect_rejected(buf, len, "job_id is missing");
    free(buf);
    buf = pack_request("job-1", "", 1, &len);
    expect_rejected(buf, len, "item_id is missing");
    free(buf);
    buf = pack_request("job 1", "item-1", 1, &len);
    expect_rejected(buf, len, "job_id is not");
    free(buf);
    char longid[AI_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    buf = pack_request("job-1", longid, 1, &len);
    expect_rejected(buf, len, "item_id is not");
    free(buf);
}

static void test_rejects_unknown_kind(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_request("job-1", "item-1", 0, &len);
    expect_rejected(buf, len, "kind is not article, newsletter or social (got 0)");
    free(buf);
    buf = pack_request("job-1", "item-1", 9, &len);
    expect_rejected(buf, len, "(got 9)");
    free(buf);
}

static void test_rejects_what_is_not_a_request(void **state)
{
    (void)state;
    static const char junk[] = "{\"job_id\": \"x\"}\xff\xff\xff";
    expect_rejected(junk, sizeof junk - 1, "not a GenerationRequest");
    /* an empty payload decodes to an empty message: no ids */
    expect_rejected("", 0, "job_id is missing");
}

static void test_id_rules(void **state)
{
    (void)state;
    assert_true(ai_id_valid("01a1fff7-32da-7109-99ed-bc606e6dc500", 36));
    assert_false(ai_id_valid("", 0));
    assert_false(ai_id_valid(NULL, 0));
    assert_false(ai_id_valid("a\nb", 3));
    assert_false(ai_id_valid("\xc3\xa9", 2));
}

static void test_progress_round_trip(void **state)
{
    (void)state;
    ai_progress p = {.job_id = "job-1",
                     .item_id = "item-1",
                     .stage = "done",
                     .percent = 100,
                     .body = "# Title\n\nBody.",
                     .provider = "local"};
    size_t len = 0;
    uint8_t *buf = ai_progress_encode(&p, &len);
    Contentengine__V1__GenerationProgress *m =
        contentengine__v1__generation_progress__unpack(NULL, len, buf);
    assert_non_null(m);
    assert_string_equal(m->job_id, "job-1");
    assert_string_equal(m->item_id, "item-1");
    assert_string_equal(m->stage, "done");
    assert_int_equal(m->percent, 100);
    assert_string_equal(m->body, "# Title\n\nBody.");
    assert_string_equal(m->error, "");
    assert_string_equal(m->provider, "local");
    contentengine__v1__generation_progress__free_unpacked(m, NULL);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes_a_valid_request),
        cmocka_unit_test(test_rejects_missing_or_bad_ids),
        cmocka_unit_test(test_rejects_unknown_kind),
        cmocka_unit_test(test_rejects_what_is_not_a_request),
        cmocka_unit_test(test_id_rules),
        cmocka_unit_test(test_progress_round_trip),
    };
    return cmocka_run_group_tests_name("ai_processor_request", tests, NULL, NULL);
}
