/* Unit tests of content-manager's domain: brief and edit validation, the transition table,
 * list cursors, search patterns and request parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../content.h"

/* Validates the JSON text; returns the number of field errors (0 = valid). */
static size_t brief_errors(const char *text, const char *want_field)
{
    json_error_t jerr;
    json_t *body = json_loads(text, JSON_ALLOW_NUL, &jerr);
    if (!body) fail_msg("bad test JSON: %s", jerr.text);
    json_t *errors = json_array();
    cm_brief b;
    bool ok = cm_brief_validate(body, &b, errors);
    size_t n = json_array_size(errors);
    assert_int_equal(ok, n == 0);
    if (ok) {
        assert_non_null(b.sources);
        json_decref(b.sources);
    } else {
        assert_null(b.sources);
    }
    if (want_field) {
        bool found = false;
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e)
        {
            if (strcmp(json_string_value(json_object_get(e, "field")), want_field) == 0)
                found = true;
        }
        if (!found) fail_msg("no error for field %s in %s", want_field, text);
    }
    json_decref(errors);
    json_decref(body);
    return n;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_brief_valid(void **state)
{
    (void)state;
    assert_int_equal(brief_errors("{\"title\":\"T\",\"kind\":\"article\"}", NULL), 0);
    assert_int_equal(
        brief_errors("{\"title\":\"T\",\"kind\":\"social\",\"topic\":\"x\",\"instructions\":\"y\","
                     "\"sources\":[{\"text\":\"a.\"},"
                     "{\"item_id\":\"0190E4A0-0000-7000-8000-000000000000\"}]}",
                     NULL),
        0);
    json_t *body = json_loads("{\"title\":\"Tü\",\"kind\":\"newsletter\",\"sources\":[{\"item_id\":"
                              "\"0190E4A0-0000-7000-8000-000000000000\"}]}",
                              0, NULL);
    json_t *errors = json_array();
    cm_brief b;
    assert_true(cm_brief_validate(body, &b, errors));
    assert_int_equal(b.kind, CM_KIND_NEWSLETTER);
    assert_string_equal(b.title, "Tü");
    assert_string_equal(b.topic, "");
    assert_true(b.generate);
    /* item ids are normalized to lower case */
    assert_string_equal(json_string_value(json_object_get(json_array_get(b.sources, 0), "item_id")),
                        "0190e4a0-0000-7000-8000-000000000000");
    json_decref(b.sources);
    json_decref(errors);
    json_decref(body);
}

static void test_brief_invalid(void **state)
{
    (void)state;
    assert_true(brief_errors("[]", "") > 0);
    assert_true(brief_errors("{\"kind\":\"article\"}", "title") > 0);
    assert_true(brief_errors("{\"title\":\"  \",\"kind\":\"article\"}", "title") > 0);
    assert_true(brief_errors("{\"title\":5,\"kind\":\"article\"}", "title") > 0);
    assert_true(brief_errors("{\"title\":\"T\",\"kind\":\"poem\"}", "kind") > 0);
    assert_true(brief_errors("{\"title\":\"T\"}", "kind") > 0);
    assert_true(brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"extra\":1}", "extra") > 0);
    assert_true(brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"topic\":[]}", "topic") > 0);
    assert_true(brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"sources\":{}}", "sources") >
                0);
    assert_true(
        brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"sources\":[1]}", "sources[0]") > 0);
    assert_true(
        brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"sources\":[{}]}", "sources[0]") > 0);
    assert_true(brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"sources\":[{\"text\":\"\"}]}",
                             "sources[0]") > 0);
    assert_true(
        brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"sources\":[{\"item_id\":\"x\"}]}",
                     "sources[0]") > 0);
    assert_true(brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"sources\":[{\"text\":\"a\","
                             "\"item_id\":\"0190e4a0-0000-7000-8000-000000000000\"}]}",
                             "sources[0]") > 0);
    assert_true(brief_errors("{\"title\":\"a\\u0000b\",\"kind\":\"article\"}", "title") > 0);
    assert_true(brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"generate\":1}", "generate") >
                0);
    assert_int_equal(
        brief_errors("{\"title\":\"T\",\"kind\":\"article\",\"generate\":false}", NULL), 0);
}

static void test_brief_limits(void **state)
{
    (void)state;
    char *t300 = repeat('x', CM_TITLE_MAX), *t301 = repeat('x', CM_TITLE_MAX + 1);
    json_t *ok = json_pack("{s:s,s:s}", "title", t300, "kind", "article");
    json_t *bad = json_pack("{s:s,s:s}", "title", t301, "kind", "article");
    json_t *errors = json_array();
    cm_brief b;
    assert_true(cm_brief_validate(ok, &b, errors));
    json_decref(b.sources);
    assert_false(cm_brief_validate(bad, &b, errors));
    json_decref(ok);
    json_decref(bad);
    /* 300 two-byte characters are 300 characters */
    core_buf wide = {0};
    for (int i = 0; i < CM_TITLE_MAX; i++)
        core_buf_puts(&wide, "é");
    assert_int_equal(cm_utf8_length(wide.data), CM_TITLE_MAX);
    ok = json_pack("{s:s,s:s}", "title", wide.data, "kind", "article");
    assert_true(cm_brief_validate(ok, &b, errors));
    json_decref(b.sources);
    json_decref(ok);
    core_buf_free(&wide);

    char *topic = repeat('t', CM_TOPIC_MAX + 1), *instr = repeat('i', CM_INSTRUCTIONS_MAX + 1);
    char *text = repeat('s', CM_SOURCE_TEXT_MAX + 1);
    bad = json_pack("{s:s,s:s,s:s}", "title", "T", "kind", "article", "topic", topic);
    assert_false(cm_brief_validate(bad, &b, errors));
    json_decref(bad);
    bad = json_pack("{s:s,s:s,s:s}", "title", "T", "kind", "article", "instructions", instr);
    assert_false(cm_brief_validate(bad, &b, errors));
    json_decref(bad);
    bad =
        json_pack("{s:s,s:s,s:[{s:s}]}", "title", "T", "kind", "article", "sources", "text", text);
    assert_false(cm_brief_validate(bad, &b, errors));
    json_decref(bad);
    json_t *many = json_array();
    for (int i = 0; i <= CM_SOURCES_MAX; i++)
        json_array_append_new(many, json_pack("{s:s}", "text", "a"));
    bad = json_pack("{s:s,s:s,s:O}", "title", "T", "kind", "article", "sources", many);
    assert_false(cm_brief_validate(bad, &b, errors));
    json_decref(bad);
    json_array_remove(many, 0);
    ok = json_pack("{s:s,s:s,s:O}", "title", "T", "kind", "article", "sources", many);
    assert_true(cm_brief_validate(ok, &b, errors));
    assert_int_equal(json_array_size(b.sources), CM_SOURCES_MAX);
    json_decref(b.sources);
    json_decref(ok);
    json_decref(many);
    json_decref(errors);
    free(t300);
    free(t301);
    free(topic);
    free(instr);
    free(text);
}

static void test_edit_validate(void **state)
{
    (void)state;
    const char *body;
    int64_t version;
    json_t *errors = json_array();
    json_t *req = json_pack("{s:s,s:I}", "body", "new", "version", (json_int_t)3);
    assert_true(cm_edit_validate(req, &body, &version, errors));
    assert_string_equal(body, "new");
    assert_int_equal(version, 3);
    json_decref(req);
    req = json_pack("{s:s}", "body", "");
    assert_true(cm_edit_validate(req, &body, &version, errors));
    assert_int_equal(version, 0);
    json_decref(req);
    req = json_pack("{s:i}", "body", 1);
    assert_false(cm_edit_validate(req, &body, &version, errors));
    json_decref(req);
    req = json_pack("{s:s,s:s}", "body", "x", "version", "3");
    assert_false(cm_edit_validate(req, &body, &version, errors));
    json_decref(req);
    req = json_pack("{s:s,s:s}", "body", "x", "status", "approved");
    assert_false(cm_edit_validate(req, &body, &version, errors));
    json_decref(req);
    char *big = repeat('b', CM_BODY_MAX + 1);
    req = json_pack("{s:s}", "body", big);
    assert_false(cm_edit_validate(req, &body, &version, errors));
    json_decref(req);
    free(big);
    json_decref(errors);
}

static void test_transition_table(void **state)
{
    (void)state;
    cm_status to;
    /* the happy path */
    assert_true(cm_transition(CM_DRAFT, CM_ACT_GENERATE, &to));
    assert_int_equal(to, CM_GENERATING);
    assert_true(cm_transition(CM_GENERATING, CM_ACT_COMPLETE, &to));
    assert_int_equal(to, CM_GENERATED);
    assert_true(cm_transition(CM_GENERATED, CM_ACT_APPROVE, &to));
    assert_int_equal(to, CM_APPROVED);
    /* failure and regeneration */
    assert_true(cm_transition(CM_GENERATING, CM_ACT_FAIL, &to));
    assert_int_equal(to, CM_FAILED);
    assert_true(cm_transition(CM_FAILED, CM_ACT_REGENERATE, &to));
    assert_int_equal(to, CM_GENERATING);
    assert_true(cm_transition(CM_GENERATED, CM_ACT_REGENERATE, &to));
    assert_int_equal(to, CM_GENERATING);
    /* edits keep the status */
    assert_true(cm_transition(CM_GENERATED, CM_ACT_EDIT, &to));
    assert_int_equal(to, CM_GENERATED);
    assert_true(cm_transition(CM_DRAFT, CM_ACT_EDIT, &to));
    assert_int_equal(to, CM_DRAFT);
    /* illegal ones */
    assert_false(cm_transition(CM_GENERATING, CM_ACT_APPROVE, &to));
    assert_false(cm_transition(CM_GENERATING, CM_ACT_EDIT, &to));
    assert_false(cm_transition(CM_GENERATING, CM_ACT_REGENERATE, &to));
    assert_false(cm_transition(CM_APPROVED, CM_ACT_EDIT, &to));
    assert_false(cm_transition(CM_APPROVED, CM_ACT_REGENERATE, &to));
    assert_false(cm_transition(CM_DRAFT, CM_ACT_APPROVE, &to));
    assert_false(cm_transition(CM_FAILED, CM_ACT_APPROVE, &to));
    assert_false(cm_transition(CM_GENERATED, CM_ACT_COMPLETE, &to));
    /* archived is final; everything else can be archived */
    for (int a = 0; a < CM_ACTION_COUNT; a++)
        assert_false(cm_transition(CM_ARCHIVED, (cm_action)a, &to));
    for (int s = 0; s < CM_ARCHIVED; s++) {
        assert_true(cm_transition((cm_status)s, CM_ACT_ARCHIVE, &to));
        assert_int_equal(to, CM_ARCHIVED);
    }
    assert_false(cm_transition(CM_STATUS_COUNT, CM_ACT_ARCHIVE, &to));
    assert_false(cm_transition(CM_DRAFT, CM_ACTION_COUNT, &to));
}

static void test_names(void **state)
{
    (void)state;
    for (int s = 0; s < CM_STATUS_COUNT; s++) {
        cm_status back;
        assert_true(cm_status_parse(cm_status_name((cm_status)s), &back));
        assert_int_equal(back, s);
        assert_int_equal(cm_status_proto((cm_status)s), s + 1);
    }
    cm_status st;
    assert_false(cm_status_parse("Draft", &st));
    assert_false(cm_status_parse(NULL, &st));
    cm_kind k;
    assert_true(cm_kind_parse("social", &k));
    assert_int_equal(k, CM_KIND_SOCIAL);
    assert_false(cm_kind_parse("poem", &k));
}

static void test_cursor_roundtrip(void **state)
{
    (void)state;
    for (int i = 0; i < 100; i++) {
        char id[CORE_UUID_STRLEN + 1], back[CORE_UUID_STRLEN + 1], cur[CM_CURSOR_MAX];
        core_uuid_v7_string(id);
        assert_true(cm_cursor_encode(id, cur));
        assert_int_equal(strlen(cur), 23);
        assert_null(strpbrk(cur, "+/=%&?"));
        assert_true(cm_cursor_decode(cur, back));
        assert_string_equal(id, back);
    }
}

static void test_cursor_rejects(void **state)
{
    (void)state;
    char back[CORE_UUID_STRLEN + 1], cur[CM_CURSOR_MAX];
    assert_false(cm_cursor_encode("not-a-uuid", cur));
    assert_false(cm_cursor_decode(NULL, back));
    assert_false(cm_cursor_decode("", back));
    assert_false(cm_cursor_decode("abc", back));
    assert_true(cm_cursor_encode("0190e4a0-0000-7000-8000-000000000000", cur));
    char bad[CM_CURSOR_MAX];
    memcpy(bad, cur, sizeof bad);
    bad[5] = '*'; /* not base64url */
    assert_false(cm_cursor_decode(bad, back));
    memcpy(bad, cur, sizeof bad);
    bad[0] = 'B'; /* another version byte */
    assert_false(cm_cursor_decode(bad, back));
    memcpy(bad, cur, sizeof bad);
    bad[22] = bad[22] == 'B' ? 'C' : 'B'; /* non-canonical trailing bits */
    char again[CM_CURSOR_MAX];
    if (cm_cursor_decode(bad, back)) { /* only canonical encodings decode */
        assert_true(cm_cursor_encode(back, again));
        assert_string_equal(again, bad);
    }
    assert_false(cm_cursor_decode("AAAAAAAAAAAAAAAAAAAAAAAA", back)); /* too long */
}

static void test_like_pattern(void **state)
{
    (void)state;
    core_buf b = {0};
    cm_like_contains("50%_off\\now", &b);
    assert_string_equal(b.data, "%50\\%\\_off\\\\now%");
    core_buf_reset(&b);
    cm_like_contains("plain", &b);
    assert_string_equal(b.data, "%plain%");
    core_buf_free(&b);
}

static void test_params(void **state)
{
    (void)state;
    int limit;
    assert_true(cm_parse_limit(NULL, &limit));
    assert_int_equal(limit, CM_LIST_DEFAULT);
    assert_true(cm_parse_limit("100", &limit));
    assert_int_equal(limit, 100);
    assert_false(cm_parse_limit("101", &limit));
    assert_false(cm_parse_limit("0", &limit));
    assert_false(cm_parse_limit("-1", &limit));
    assert_false(cm_parse_limit("5x", &limit));
    assert_false(cm_parse_limit("", &limit));
    int64_t v;
    assert_true(cm_parse_if_match("7", &v));
    assert_int_equal(v, 7);
    assert_true(cm_parse_if_match("\"12\"", &v));
    assert_int_equal(v, 12);
    assert_true(cm_parse_if_match("W/\"3\"", &v));
    assert_int_equal(v, 3);
    assert_false(cm_parse_if_match("*", &v));
    assert_false(cm_parse_if_match("\"\"", &v));
    assert_false(cm_parse_if_match("\"0\"", &v));
    assert_false(cm_parse_if_match("abc", &v));
    assert_false(cm_parse_if_match("99999999999999999999", &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_brief_valid),      cmocka_unit_test(test_brief_invalid),
        cmocka_unit_test(test_brief_limits),     cmocka_unit_test(test_edit_validate),
        cmocka_unit_test(test_transition_table), cmocka_unit_test(test_names),
        cmocka_unit_test(test_cursor_roundtrip), cmocka_unit_test(test_cursor_rejects),
        cmocka_unit_test(test_like_pattern),     cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
