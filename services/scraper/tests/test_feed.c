/* Unit tests of feed and sitemap parsing: RSS 2.0, Atom, sitemap urlsets and indexes, gzip,
 * dates, and documents that are none of these. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../scraper.h"

static void parse_ok(const char *xml, sc_feed *f)
{
    char err[256];
    if (!sc_feed_parse(xml, strlen(xml), "http://site.test/feed", 1 << 20, f, err, sizeof err))
        fail_msg("parse failed: %s", err);
}

static void test_rss(void **state)
{
    (void)state;
    const char *xml =
        "<?xml version=\"1.0\"?><rss version=\"2.0\" "
        "xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" "
        "xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><channel><title>Site</title>"
        "<item><title>Full</title><link>http://site.test/a</link><dc:creator>Ann</dc:creator>"
        "<pubDate>Tue, 04 Jun 2024 09:15:00 +0200</pubDate><description>Short</description>"
        "<content:encoded><![CDATA[<p>One.</p><p>Two.</p>]]></content:encoded></item>"
        "<item><title>Summary only</title><link>/relative/b</link>"
        "<pubDate>Fri, 01 Mar 2024 18:00:00 GMT</pubDate><description>&lt;b&gt;Hi&lt;/b&gt;"
        "</description></item>"
        "<item><title>Guid link</title><guid>http://site.test/c</guid></item>"
        "</channel></rss>";
    sc_feed f;
    parse_ok(xml, &f);
    assert_int_equal(f.kind, SC_DOC_RSS);
    assert_string_equal(f.title, "Site");
    assert_int_equal(f.n, 3);
    assert_string_equal(f.entries[0].link, "http://site.test/a");
    assert_string_equal(f.entries[0].author, "Ann");
    assert_string_equal(f.entries[0].content, "<p>One.</p><p>Two.</p>");
    char ts[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(f.entries[0].published_ms, ts);
    assert_string_equal(ts, "2024-06-04T07:15:00.000Z");
    assert_null(f.entries[1].content);
    assert_string_equal(f.entries[1].summary, "<b>Hi</b>");
    assert_string_equal(f.entries[1].link, "http://site.test/relative/b");
    assert_string_equal(f.entries[2].link, "http://site.test/c");
    char *t = sc_html_text(f.entries[0].content, strlen(f.entries[0].content));
    assert_string_equal(t, "One.\n\nTwo.");
    free(t);
    sc_feed_free(&f);
}

static void test_atom(void **state)
{
    (void)state;
    const char *xml =
        "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:base=\"http://blog.test/\">"
        "<title>Blog</title><entry><title>Post</title>"
        "<link rel=\"alternate\" type=\"text/html\" href=\"posts/1\"/>"
        "<link rel=\"edit\" href=\"http://blog.test/edit/1\"/>"
        "<author><name>Bo</name></author><updated>2024-01-02T03:04:05Z</updated>"
        "<published>2024-01-01T00:00:00+01:00</published>"
        "<summary>Sum</summary><content type=\"html\">&lt;p&gt;Body&lt;/p&gt;</content></entry>"
        "<entry><title>No content</title><link href=\"http://blog.test/2\"/>"
        "<updated>2024-02-02T00:00:00Z</updated><summary>Only a summary</summary></entry>"
        "</feed>";
    sc_feed f;
    parse_ok(xml, &f);
    assert_int_equal(f.kind, SC_DOC_ATOM);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.entries[0].link, "http://blog.test/posts/1");
    assert_string_equal(f.entries[0].author, "Bo");
    assert_string_equal(f.entries[0].content, "<p>Body</p>");
    char ts[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(f.entries[0].published_ms, ts);
    assert_string_equal(ts, "2023-12-31T23:00:00.000Z");
    assert_null(f.entries[1].content);
    core_format_rfc3339(f.entries[1].published_ms, ts); /* updated when no published */
    assert_string_equal(ts, "2024-02-02T00:00:00.000Z");
    sc_feed_free(&f);
}

static char *gzip_text(const char *s, size_t *len)
{
    z_stream zs = {0};
    deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&zs, strlen(s)) + 32;
    char *out = malloc(cap);
    zs.next_in = (Bytef *)s;
    zs.avail_in = (uInt)strlen(s);
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

static void test_sitemaps(void **state)
{
    (void)state;
    const char *index = "<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"
                        "<sitemap><loc>http://s.test/a.xml</loc></sitemap>"
                        "<sitemap><loc> http://s.test/b.xml.gz </loc></sitemap></sitemapindex>";
    sc_feed f;
    parse_ok(index, &f);
    assert_int_equal(f.kind, SC_DOC_SITEMAP_INDEX);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.entries[1].link, "http://s.test/b.xml.gz");
    sc_feed_free(&f);

    const char *urlset = "<?xml version=\"1.0\"?><urlset "
                         "xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"
                         "<url><loc>http://s.test/p1</loc><lastmod>2024-05-01</lastmod></url>"
                         "<url><lastmod>2024-05-01</lastmod></url>"
                         "<url><loc>http://s.test/p2</loc></url></urlset>";
    size_t gzlen;
    char *gz = gzip_text(urlset, &gzlen);
    char err[256];
    assert_true(sc_feed_parse(gz, gzlen, NULL, 1 << 20, &f, err, sizeof err));
    assert_int_equal(f.kind, SC_DOC_URLSET);
    assert_int_equal(f.n, 2); /* the entry without <loc> is skipped */
    assert_string_equal(f.entries[0].link, "http://s.test/p1");
    assert_string_equal(f.entries[1].link, "http://s.test/p2");
    sc_feed_free(&f);
    /* a gzip bomb beyond the limit is refused */
    assert_false(sc_feed_parse(gz, gzlen, NULL, 64, &f, err, sizeof err));
    assert_non_null(strstr(err, "gzip"));
    free(gz);
}

static void test_not_feeds(void **state)
{
    (void)state;
    sc_feed f;
    char err[256];
    const char *html = "<html><body>hi</body></html>";
    assert_false(sc_feed_parse(html, strlen(html), NULL, 1 << 20, &f, err, sizeof err));
    assert_non_null(strstr(err, "<html>"));
    assert_false(sc_feed_parse("", 0, NULL, 1 << 20, &f, err, sizeof err));
    assert_false(sc_feed_parse("\x1f\x8bjunk", 6, NULL, 1 << 20, &f, err, sizeof err));
    /* an external entity is never fetched nor expanded */
    const char *xxe = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM "
                      "\"file:///etc/passwd\">]><rss><channel><item><title>&x;</title>"
                      "<link>http://a/</link></item></channel></rss>";
    assert_true(sc_feed_parse(xxe, strlen(xxe), NULL, 1 << 20, &f, err, sizeof err));
    assert_int_equal(f.n, 1);
    assert_true(!f.entries[0].title || !strstr(f.entries[0].title, "root:"));
    sc_feed_free(&f);
}

static void test_dates(void **state)
{
    (void)state;
    char ts[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(sc_parse_date("Mon, 06 Sep 2021 16:45:00 -0400"), ts);
    assert_string_equal(ts, "2021-09-06T20:45:00.000Z");
    core_format_rfc3339(sc_parse_date("6 Sep 2021 16:45 EDT"), ts);
    assert_string_equal(ts, "2021-09-06T20:45:00.000Z");
    core_format_rfc3339(sc_parse_date("2021-09-06"), ts);
    assert_string_equal(ts, "2021-09-06T00:00:00.000Z");
    core_format_rfc3339(sc_parse_date("2021-09-06T10:11:12.5+02:00"), ts);
    assert_string_equal(ts, "2021-09-06T08:11:12.500Z");
    core_format_rfc3339(sc_parse_date("2021-09-06T10:11"), ts);
    assert_string_equal(ts, "2021-09-06T10:11:00.000Z");
    assert_int_equal(sc_parse_date("yesterday"), 0);
    assert_int_equal(sc_parse_date(NULL), 0);
    assert_int_equal(sc_parse_date("2021-13-45"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rss),      cmocka_unit_test(test_atom),
        cmocka_unit_test(test_sitemaps), cmocka_unit_test(test_not_feeds),
        cmocka_unit_test(test_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
