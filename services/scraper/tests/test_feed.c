/* Unit tests of feed and sitemap parsing: RSS 2.0 and 1.0, Atom, sitemap urlsets and indexes,
 * gzip, namespaces, charsets, malformed documents, entity bombs, dates, and documents that are
 * none of these. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
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

static void test_namespaces(void **state)
{
    (void)state;
    /* RSS 1.0: everything in the RSS 1.0 namespace, items beside the channel */
    const char *rdf =
        "<?xml version=\"1.0\"?><rdf:RDF "
        "xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" "
        "xmlns=\"http://purl.org/rss/1.0/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">"
        "<channel rdf:about=\"http://x.test/\"><title>R1</title><link>http://x.test/</link>"
        "</channel><item rdf:about=\"http://x.test/1\"><title>One</title>"
        "<link>http://x.test/1</link><dc:date>2024-01-02T00:00:00Z</dc:date>"
        "<dc:creator>Ann</dc:creator></item></rdf:RDF>";
    sc_feed f;
    parse_ok(rdf, &f);
    assert_int_equal(f.kind, SC_DOC_RSS);
    assert_string_equal(f.title, "R1");
    assert_int_equal(f.n, 1);
    assert_string_equal(f.entries[0].link, "http://x.test/1");
    assert_string_equal(f.entries[0].author, "Ann");
    char ts[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(f.entries[0].published_ms, ts);
    assert_string_equal(ts, "2024-01-02T00:00:00.000Z");
    sc_feed_free(&f);

    /* atom:link is not the item's link; an undeclared prefix costs its element, not the feed;
     * names match whatever their case */
    const char *rss = "<rss xmlns:atom=\"http://www.w3.org/2005/Atom\"><channel><item>"
                      "<atom:link href=\"http://x.test/self\"/><media:title>M</media:title>"
                      "<title>T</title><LINK>http://x.test/2</LINK>"
                      "<pubdate>Fri, 01 Mar 2024 18:00:00 GMT</pubdate></item>"
                      "<item><title>After</title></item></channel></rss>";
    parse_ok(rss, &f);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.entries[0].link, "http://x.test/2");
    assert_string_equal(f.entries[0].title, "T");
    core_format_rfc3339(f.entries[0].published_ms, ts);
    assert_string_equal(ts, "2024-03-01T18:00:00.000Z");
    assert_string_equal(f.entries[1].title, "After");
    sc_feed_free(&f);

    /* Atom 0.3 reads like 1.0; nested xml:base, a link's own included */
    const char *atom03 = "<feed xmlns=\"http://purl.org/atom/ns#\" xml:base=\"/blog/\">"
                         "<entry xml:base=\"2024/\"><title>Old</title>"
                         "<link rel=\"alternate\" xml:base=\"06/\" href=\"post#c\"/>"
                         "<content mode=\"escaped\">&lt;p&gt;x&lt;/p&gt;</content></entry></feed>";
    parse_ok(atom03, &f);
    assert_int_equal(f.kind, SC_DOC_ATOM);
    assert_string_equal(f.entries[0].link, "http://site.test/blog/2024/06/post#c");
    assert_string_equal(f.entries[0].content, "<p>x</p>");
    sc_feed_free(&f);

    /* a sitemap's own <loc>, not an image's; any prefix for the sitemap namespace */
    const char *urlset =
        "<sm:urlset xmlns:sm=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
        "xmlns:image=\"http://www.google.com/schemas/sitemap-image/1.1\">"
        "<sm:url><image:image><image:loc>http://s.test/i.png</image:loc>"
        "</image:image><sm:loc>http://s.test/page</sm:loc>"
        "<sm:lastmod> 2024-05-01T10:00:00+02:00 </sm:lastmod></sm:url></sm:urlset>";
    parse_ok(urlset, &f);
    assert_int_equal(f.kind, SC_DOC_URLSET);
    assert_int_equal(f.n, 1);
    assert_string_equal(f.entries[0].link, "http://s.test/page");
    core_format_rfc3339(f.entries[0].published_ms, ts);
    assert_string_equal(ts, "2024-05-01T08:00:00.000Z");
    sc_feed_free(&f);
}

static void test_large_sitemap(void **state)
{
    (void)state;
    core_buf b = {0};
    core_buf_puts(&b, "<?xml version=\"1.0\"?>\n<urlset "
                      "xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    for (int i = 0; i < 50000; i++)
        core_buf_printf(
            &b, "<url><loc>http://s.test/p/%d</loc><lastmod>2024-05-01</lastmod></url>\n", i);
    core_buf_puts(&b, "</urlset>\n");
    sc_feed f;
    parse_ok(b.data, &f);
    assert_int_equal(f.n, 50000);
    assert_string_equal(f.entries[0].link, "http://s.test/p/0");
    assert_string_equal(f.entries[49999].link, "http://s.test/p/49999");
    sc_feed_free(&f);
    core_buf_free(&b);
}

static void test_charsets(void **state)
{
    (void)state;
    sc_feed f;
    /* windows-1252 (a byte map built with iconv): curly quotes, euro, en dash; 0x81 is
     * undefined there */
    const char *cp1252 = "<?xml version=\"1.0\" encoding=\"windows-1252\"?><rss><channel>"
                         "<title>\x93"
                         "Caf\xe9\x94 \x80 \x96 \x81</title><item>"
                         "<title>Cr\xe8me br\xfbl\xe9"
                         "e</title><link>http://x.test/1</link>"
                         "</item></channel></rss>";
    parse_ok(cp1252, &f);
    assert_string_equal(f.title, "\xE2\x80\x9C"
                                 "Caf\xC3\xA9\xE2\x80\x9D \xE2\x82\xAC \xE2\x80\x93 "
                                 "\xEF\xBF\xBD");
    assert_string_equal(f.entries[0].title, "Cr\xC3\xA8me br\xC3\xBBl\xC3\xA9"
                                            "e");
    sc_feed_free(&f);

    const char *latin9 = "<?xml version=\"1.0\" encoding=\"ISO-8859-15\"?><rss><channel>"
                         "<item><title>\xa4 \xa6</title></item></channel></rss>";
    parse_ok(latin9, &f);
    assert_string_equal(f.entries[0].title, "\xE2\x82\xAC \xC5\xA0");
    sc_feed_free(&f);

    /* a multi-byte charset: the document is converted whole */
    const char *sjis = "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><rss><channel>"
                       "<item><title>\x83\x65\x83\x58\x83\x67</title></item></channel></rss>";
    parse_ok(sjis, &f);
    assert_string_equal(f.entries[0].title, "\xE3\x83\x86\xE3\x82\xB9\xE3\x83\x88");
    sc_feed_free(&f);

    /* UTF-16 with a byte order mark, which expat reads itself */
    const char *ascii = "<rss><channel><item><title>A\xC3\xA9</title></item></channel></rss>";
    char utf16[256];
    size_t n = 0;
    utf16[n++] = '\xFF';
    utf16[n++] = '\xFE';
    for (const char *c = ascii; *c; c++) {
        if ((unsigned char)*c == 0xC3) { /* the one non-ASCII character: U+00E9 */
            utf16[n++] = '\xE9';
            utf16[n++] = 0;
            c++;
            continue;
        }
        utf16[n++] = *c;
        utf16[n++] = 0;
    }
    char err[256];
    assert_true(sc_feed_parse(utf16, n, NULL, 1 << 20, &f, err, sizeof err));
    assert_string_equal(f.entries[0].title, "A\xC3\xA9");
    sc_feed_free(&f);

    /* bytes that are not UTF-8 in a UTF-8 document become U+FFFD; what follows is kept */
    const char *bad = "<rss><channel><item><title>Caf\xe9</title></item>"
                      "<item><title>Next</title></item></channel></rss>";
    parse_ok(bad, &f);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.entries[0].title, "Caf\xEF\xBF\xBD");
    sc_feed_free(&f);
}

static void test_malformed(void **state)
{
    (void)state;
    sc_feed f;
    char err[256];
    /* the entries completed before the error are kept, the one it cuts is not */
    const char *mismatch = "<rss><channel><item><title>A</title></item><item><title>B</title>"
                           "</item><item><title>C</foo></item></channel></rss>";
    parse_ok(mismatch, &f);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.entries[1].title, "B");
    sc_feed_free(&f);
    const char *cut = "<urlset><url><loc>http://s.test/1</loc></url><url><loc>http://s.test/2";
    parse_ok(cut, &f);
    assert_int_equal(f.n, 1);
    sc_feed_free(&f);
    const char *early = "<rss><channel><title>T</foo></channel></rss>";
    assert_false(sc_feed_parse(early, strlen(early), NULL, 1 << 20, &f, err, sizeof err));
    assert_non_null(strstr(err, "malformed XML"));
    assert_null(f.entries);

    /* repaired: a bare '&' or '<' (but not inside CDATA), blank lines before the declaration,
     * entities nobody declared (skipped, as libxml2 did) */
    const char *sloppy = "\n\n<?xml version=\"1.0\"?><rss><channel><item><title>AT&T < 3"
                         "&nbsp;!</title><link>http://x.test/a?b=1&c=2</link>"
                         "<description><![CDATA[x &amp; y]]></description></item>"
                         "<item><title>Two</title></item></channel></rss>";
    parse_ok(sloppy, &f);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.entries[0].title, "AT&T < 3!");
    assert_string_equal(f.entries[0].link, "http://x.test/a?b=1&c=2");
    assert_string_equal(f.entries[0].summary, "x &amp; y");
    sc_feed_free(&f);

    /* whatever follows the root element is no part of the feed */
    const char *junk = "<rss><channel><title>T</title></channel></rss><rss>";
    parse_ok(junk, &f);
    assert_int_equal(f.n, 0);
    assert_string_equal(f.title, "T");
    sc_feed_free(&f);

    /* an HTML page where expat stops before the root element is still named */
    const char *html4 = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\">\n"
                        "<html lang=en><body>hi</body></html>";
    assert_false(sc_feed_parse(html4, strlen(html4), NULL, 1 << 20, &f, err, sizeof err));
    assert_non_null(strstr(err, "<html>"));
    assert_false(sc_feed_parse("hello", 5, NULL, 1 << 20, &f, err, sizeof err));
    assert_string_equal(err, "not an XML document");
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "Billion laughs": ten levels of ten references, 10^10 characters if expanded. */
static char *entity_bomb(const char *before, const char *body)
{
    core_buf b = {0};
    core_buf_puts(&b, "<?xml version=\"1.0\"?><!DOCTYPE rss [<!ENTITY e0 \"lollollollol\">");
    for (int i = 1; i <= 10; i++) {
        core_buf_printf(&b, "<!ENTITY e%d \"", i);
        for (int j = 0; j < 10; j++)
            core_buf_printf(&b, "&e%d;", i - 1);
        core_buf_puts(&b, "\">");
    }
    core_buf_printf(&b,
                    "]><rss><channel>%s<item>%s<link>http://x.test/b</link></item>"
                    "</channel></rss>",
                    before, body);
    return core_buf_steal(&b, NULL);
}

static void test_entity_limits(void **state)
{
    (void)state;
    sc_feed f;
    char err[256];
    long rss_before = max_rss_kb();
    double t0 = now_s();
    const char *bodies[] = {"<title>&e10;</title>", "<guid isPermaLink=\"&e10;\">g</guid>"};
    for (size_t i = 0; i < 2; i++) {
        char *bomb = entity_bomb("", bodies[i]);
        assert_false(sc_feed_parse(bomb, strlen(bomb), NULL, 1 << 20, &f, err, sizeof err));
        assert_non_null(strstr(err, "amplification"));
        free(bomb);
    }
    /* what came before the bomb is kept */
    char *late = entity_bomb("<item><title>Fine</title></item>", "<title>&e10;</title>");
    assert_true(sc_feed_parse(late, strlen(late), NULL, 1 << 20, &f, err, sizeof err));
    assert_int_equal(f.n, 1);
    assert_string_equal(f.entries[0].title, "Fine");
    sc_feed_free(&f);
    free(late);
    assert_true(now_s() - t0 < 5.0);
    assert_true(max_rss_kb() - rss_before < 64 * 1024);

    /* an external parameter entity or DTD is not read either */
    const char *pe = "<?xml version=\"1.0\"?><!DOCTYPE rss SYSTEM \"http://127.0.0.1:9/x.dtd\" "
                     "[<!ENTITY % ext SYSTEM \"file:///etc/passwd\"> %ext;]><rss><channel>"
                     "<item><title>t&x;</title></item></channel></rss>";
    assert_true(sc_feed_parse(pe, strlen(pe), NULL, 1 << 20, &f, err, sizeof err));
    assert_string_equal(f.entries[0].title, "t");
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
        cmocka_unit_test(test_rss),           cmocka_unit_test(test_atom),
        cmocka_unit_test(test_sitemaps),      cmocka_unit_test(test_not_feeds),
        cmocka_unit_test(test_namespaces),    cmocka_unit_test(test_large_sitemap),
        cmocka_unit_test(test_charsets),      cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_entity_limits), cmocka_unit_test(test_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
