/* Unit tests of robots.txt parsing and matching (RFC 9309), URL normalisation and resolution, and
 * include/exclude patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../scraper.h"

static sc_robots *parse(const char *text, const char *agent)
{
    return sc_robots_parse(text, strlen(text), agent);
}

static void test_group_selection(void **state)
{
    (void)state;
    const char *txt = "User-agent: *\nDisallow: /\n\n"
                      "User-agent: ContentEngineScraper\nDisallow: /private/\nCrawl-delay: 2.5\n\n"
                      "User-agent: Other\nDisallow: /other/\n";
    sc_robots *r = parse(txt, "ContentEngineScraper");
    assert_true(sc_robots_allowed(r, "/"));
    assert_true(sc_robots_allowed(r, "/articles/a.html"));
    assert_false(sc_robots_allowed(r, "/private/x"));
    assert_true(sc_robots_allowed(r, "/other/x")); /* another agent's group does not apply */
    assert_int_equal(sc_robots_crawl_delay_ms(r), 2500);
    sc_robots_free(r);
    /* an agent named nowhere falls back to '*' */
    r = parse(txt, "SomebodyElse");
    assert_false(sc_robots_allowed(r, "/articles/a.html"));
    assert_int_equal(sc_robots_crawl_delay_ms(r), 0);
    sc_robots_free(r);
    /* case-insensitive product token */
    r = parse(txt, "contentenginescraper");
    assert_false(sc_robots_allowed(r, "/private/x"));
    sc_robots_free(r);
}

static void test_longest_match_and_ties(void **state)
{
    (void)state;
    const char *txt = "user-agent: *\n"
                      "disallow: /a/\n"
                      "allow: /a/b/\n"
                      "disallow: /a/b/c\n"
                      "allow: /same\n"
                      "disallow: /same\n"
                      "disallow: /*.pdf$\n"
                      "disallow: /search*q=\n"
                      "allow: /$\n";
    sc_robots *r = parse(txt, "bot");
    assert_false(sc_robots_allowed(r, "/a/x"));
    assert_true(sc_robots_allowed(r, "/a/b/x"));
    assert_false(sc_robots_allowed(r, "/a/b/c.html"));
    assert_true(sc_robots_allowed(r, "/same")); /* a tie goes to Allow */
    assert_false(sc_robots_allowed(r, "/files/report.pdf"));
    assert_true(sc_robots_allowed(r, "/files/report.pdf?download=1")); /* $ anchors */
    assert_false(sc_robots_allowed(r, "/search/results?q=cats"));
    assert_true(sc_robots_allowed(r, "/"));
    assert_true(sc_robots_allowed(r, "/robots.txt")); /* always */
    sc_robots_free(r);
}

static void test_edge_cases(void **state)
{
    (void)state;
    sc_robots *r = sc_robots_parse(NULL, 0, "bot"); /* no robots.txt */
    assert_true(sc_robots_allowed(r, "/anything"));
    sc_robots_free(r);
    r = parse("# only a comment\n\nSitemap: http://x/sitemap.xml\n", "bot");
    assert_true(sc_robots_allowed(r, "/anything"));
    sc_robots_free(r);
    /* empty Disallow allows everything; comments after values; CRLF line ends */
    r = parse("User-agent: bot # me\r\nDisallow:\r\nDisallow: /x # not this\r\n", "bot");
    assert_true(sc_robots_allowed(r, "/y"));
    assert_false(sc_robots_allowed(r, "/x/1"));
    sc_robots_free(r);
    /* several user-agent lines share one group */
    r = parse("User-agent: a\nUser-agent: bot\nDisallow: /z\n", "bot");
    assert_false(sc_robots_allowed(r, "/z"));
    sc_robots_free(r);
    /* a bad Crawl-delay is ignored */
    r = parse("User-agent: *\nCrawl-delay: soon\n", "bot");
    assert_int_equal(sc_robots_crawl_delay_ms(r), 0);
    sc_robots_free(r);
    r = sc_robots_deny_all();
    assert_false(sc_robots_allowed(r, "/"));
    sc_robots_free(r);
}

static void check_norm(const char *base, const char *ref, const char *want)
{
    char *got = sc_url_normalize(base, ref);
    if (!want) {
        if (got) fail_msg("%s: expected NULL, got %s", ref, got);
        return;
    }
    if (!got || strcmp(got, want) != 0) fail_msg("%s: expected %s, got %s", ref, want, got);
    free(got);
}

static void test_url_normalize(void **state)
{
    (void)state;
    check_norm(NULL, "HTTP://Example.COM", "http://example.com/");
    check_norm(NULL, "http://example.com:80/a#frag", "http://example.com/a");
    check_norm(NULL, "https://example.com:443/a", "https://example.com/a");
    check_norm(NULL, "http://example.com:8080/a", "http://example.com:8080/a");
    check_norm(NULL, "http://example.com/a?b=2&utm_source=x&a=1&fbclid=z",
               "http://example.com/a?a=1&b=2");
    check_norm(NULL, "http://example.com/a?utm_medium=mail", "http://example.com/a");
    check_norm(NULL, "  http://user:pw@example.com/x  ", "http://example.com/x");
    check_norm("http://example.com/dir/page.html", "../other.html",
               "http://example.com/other.html");
    check_norm("http://example.com/dir/page.html", "/abs", "http://example.com/abs");
    check_norm("http://example.com/dir/", "//cdn.example.org/x", "http://cdn.example.org/x");
    check_norm(NULL, "ftp://example.com/x", NULL);
    check_norm(NULL, "javascript:alert(1)", NULL);
    check_norm(NULL, "mailto:a@b.c", NULL);
    check_norm(NULL, "not a url", NULL);
    char *h = sc_url_host("http://Example.com:8080/x");
    assert_string_equal(h, "example.com:8080");
    free(h);
    h = sc_url_path("http://example.com/a/b?c=d");
    assert_string_equal(h, "/a/b?c=d");
    free(h);
    h = sc_url_origin("https://example.com/a");
    assert_string_equal(h, "https://example.com");
    free(h);
    char fp1[33], fp2[33];
    sc_url_fingerprint("http://example.com/a", fp1);
    sc_url_fingerprint("http://example.com/b", fp2);
    assert_int_equal(strlen(fp1), 32);
    assert_string_not_equal(fp1, fp2);
}

static void check_resolve(const char *base, const char *ref, const char *want)
{
    char *got = sc_url_resolve(base, ref);
    if (!want) {
        if (got) fail_msg("%s: expected NULL, got %s", ref, got);
        return;
    }
    if (!got || strcmp(got, want) != 0) fail_msg("%s: expected %s, got %s", ref, want, got);
    free(got);
}

/* Resolution alone (links in feeds): the query, fragment and tracking parameters stay. */
static void test_url_resolve(void **state)
{
    (void)state;
    const char *base = "http://example.com/dir/feed.xml?x=1#top";
    check_resolve(base, "post?utm_source=x#c", "http://example.com/dir/post?utm_source=x#c");
    check_resolve(base, "../up", "http://example.com/up");
    check_resolve(base, "/x/./y/../z", "http://example.com/x/z");
    check_resolve(base, "//cdn.example.org/a", "http://cdn.example.org/a");
    check_resolve(base, "?q", "http://example.com/dir/feed.xml?q");
    /* RFC 3986 5.2.2: a fragment or an empty reference keeps the base's path and query */
    check_resolve(base, "#frag", "http://example.com/dir/feed.xml?x=1#frag");
    check_resolve(base, "", "http://example.com/dir/feed.xml?x=1");
    check_resolve(NULL, "https://example.com/a", "https://example.com/a");
    check_resolve("ftp://example.com/", "a", NULL);
    check_resolve(NULL, "relative", NULL);
}

static void test_patterns(void **state)
{
    (void)state;
    char err[256];
    json_t *inc = json_pack("[s]", "/articles/");
    json_t *exc = json_pack("[s,s]", "draft", "\\.pdf$");
    sc_patterns *i = sc_patterns_new(inc, err, sizeof err);
    sc_patterns *e = sc_patterns_new(exc, err, sizeof err);
    assert_non_null(i);
    assert_non_null(e);
    assert_true(sc_url_wanted(i, e, "http://x/articles/a.html"));
    assert_false(sc_url_wanted(i, e, "http://x/about.html"));
    assert_false(sc_url_wanted(i, e, "http://x/articles/draft-1.html"));
    assert_false(sc_url_wanted(i, e, "http://x/articles/a.pdf"));
    assert_true(sc_url_wanted(NULL, NULL, "http://x/anything"));
    sc_patterns_free(i);
    sc_patterns_free(e);
    json_decref(inc);
    json_decref(exc);
    json_t *bad = json_pack("[s]", "(unclosed");
    assert_null(sc_patterns_new(bad, err, sizeof err));
    assert_non_null(strstr(err, "not a valid regular expression"));
    json_decref(bad);
    bad = json_pack("[i]", 3);
    assert_null(sc_patterns_new(bad, err, sizeof err));
    json_decref(bad);
    bad = json_string("x");
    assert_null(sc_patterns_new(bad, err, sizeof err));
    json_decref(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_selection), cmocka_unit_test(test_longest_match_and_ties),
        cmocka_unit_test(test_edge_cases),      cmocka_unit_test(test_url_normalize),
        cmocka_unit_test(test_url_resolve),     cmocka_unit_test(test_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
