/*
 * Unit tests for the route patterns, matching, specificity and percent-decoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_internal.h"

/* Capture names point into the segments: keep copies, the segments are freed here. */
static char names[8][32];

static bool match(const char *pattern, const char *path, http_internal_capture *caps, size_t *n)
{
    http_internal_seg *segs;
    size_t nsegs;
    assert_int_equal(http_internal_pattern_parse(pattern, &segs, &nsegs), 0);
    bool ok = http_internal_pattern_match(segs, nsegs, path, strlen(path), caps, n);
    for (size_t i = 0; ok && i < *n && i < 8; i++) {
        snprintf(names[i], sizeof names[i], "%s", caps[i].name);
        caps[i].name = names[i];
    }
    http_internal_segs_free(segs, nsegs);
    return ok;
}

static void test_parse_rejects_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",       "api",    "/a/{}",    "/a/{id", "/a/{i d}", "/a/*/b", "/a/b*", "/a/{id}/{id}",
        "/a/%41", "/a/b?c", "/a/{id}x", "/a b",   NULL};
    for (size_t i = 0; bad[i]; i++) {
        http_internal_seg *segs = (void *)1;
        size_t n = 99;
        assert_int_equal(http_internal_pattern_parse(bad[i], &segs, &n), -1);
        assert_null(segs);
        assert_int_equal(n, 0);
    }
    http_internal_seg *segs;
    size_t n;
    assert_int_equal(http_internal_pattern_parse("/", &segs, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(http_internal_pattern_parse("/api/content/items/{id}/*", &segs, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(segs[3].kind, HTTP_INTERNAL_SEG_PARAM);
    assert_string_equal(segs[3].text, "id");
    assert_int_equal(segs[4].kind, HTTP_INTERNAL_SEG_REST);
    http_internal_segs_free(segs, n);
}

static void test_match_literals_params_rest(void **state)
{
    (void)state;
    http_internal_capture caps[8];
    size_t n;
    assert_true(match("/", "/", caps, &n));
    assert_false(match("/", "/a", caps, &n));
    assert_true(match("/healthz", "/healthz", caps, &n));
    assert_false(match("/healthz", "/healthz/", caps, &n));
    assert_false(match("/healthz", "/health", caps, &n));
    assert_false(match("/healthz", "healthz", caps, &n));

    assert_true(match("/api/items/{id}", "/api/items/42", caps, &n));
    assert_int_equal(n, 1);
    assert_string_equal(caps[0].name, "id");
    assert_int_equal(caps[0].len, 2);
    assert_memory_equal(caps[0].start, "42", 2);
    assert_false(match("/api/items/{id}", "/api/items/", caps, &n)); /* empty segment */
    assert_false(match("/api/items/{id}", "/api/items", caps, &n));
    assert_false(match("/api/items/{id}", "/api/items/1/2", caps, &n));

    assert_true(match("/files/*", "/files/a/b/c.txt", caps, &n));
    assert_int_equal(n, 1);
    assert_true(caps[0].raw);
    assert_int_equal(caps[0].len, strlen("a/b/c.txt"));
    assert_true(match("/files/*", "/files", caps, &n));
    assert_int_equal(caps[0].len, 0);
    assert_true(match("/files/*", "/files/", caps, &n));
    assert_false(match("/files/*", "/filesx", caps, &n));
    assert_true(match("/*", "/", caps, &n));

    assert_true(match("/a/{x}/b/{y}", "/a/1/b/2", caps, &n));
    assert_int_equal(n, 2);
    assert_string_equal(caps[1].name, "y");
}

static int cmp(const char *a, const char *b)
{
    http_internal_seg *sa, *sb;
    size_t na, nb;
    assert_int_equal(http_internal_pattern_parse(a, &sa, &na), 0);
    assert_int_equal(http_internal_pattern_parse(b, &sb, &nb), 0);
    int c = http_internal_specificity_cmp(sa, na, sb, nb);
    http_internal_segs_free(sa, na);
    http_internal_segs_free(sb, nb);
    return c;
}

static void test_specificity(void **state)
{
    (void)state;
    assert_true(cmp("/items/new", "/items/{id}") < 0);
    assert_true(cmp("/items/{id}", "/items/new") > 0);
    assert_true(cmp("/items/{id}", "/items/*") < 0);
    assert_true(cmp("/a/b/*", "/a/*") < 0);
    assert_true(cmp("/a", "/a/*") < 0);
    assert_int_equal(cmp("/items/{id}", "/items/{other}"), 0);
    assert_int_equal(cmp("/x/y", "/x/y"), 0);
    assert_true(cmp("/x/y", "/x/z") != 0);
}

static void test_pct_decode(void **state)
{
    (void)state;
    size_t len;
    char *s = http_internal_pct_decode("a%20b+c%2Fd", 11, false, &len);
    assert_string_equal(s, "a b+c/d");
    assert_int_equal(len, 7);
    free(s);
    s = http_internal_pct_decode("a+b%2B", 6, true, NULL);
    assert_string_equal(s, "a b+");
    free(s);
    s = http_internal_pct_decode("%e2%82%ac", 9, true, NULL);
    assert_string_equal(s, "\xe2\x82\xac");
    free(s);
    assert_null(http_internal_pct_decode("%", 1, true, NULL));
    assert_null(http_internal_pct_decode("ab%2", 4, true, NULL));
    assert_null(http_internal_pct_decode("%zz", 3, true, NULL));
    assert_null(http_internal_pct_decode("%00", 3, true, NULL)); /* NUL never reaches C strings */
    s = http_internal_pct_decode("", 0, true, NULL);
    assert_string_equal(s, "");
    free(s);
}

static void test_small_helpers(void **state)
{
    (void)state;
    assert_true(http_internal_request_id_ok("abc-123", 7));
    assert_false(http_internal_request_id_ok("", 0));
    assert_false(http_internal_request_id_ok("a b", 3));
    assert_false(http_internal_request_id_ok("\x7f", 1));
    char longid[130];
    memset(longid, 'a', sizeof longid);
    assert_true(http_internal_request_id_ok(longid, 128));
    assert_false(http_internal_request_id_ok(longid, 129));
    assert_string_equal(http_internal_method_label("GET"), "GET");
    assert_string_equal(http_internal_method_label("PATCH"), "PATCH");
    assert_string_equal(http_internal_method_label("BREW"), "OTHER");
    assert_string_equal(http_internal_reason(404), "Not Found");
    assert_string_equal(http_internal_reason(413), "Content Too Large");
    assert_string_equal(http_internal_reason(799), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rejects_malformed),
        cmocka_unit_test(test_match_literals_params_rest),
        cmocka_unit_test(test_specificity),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_small_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
