/* Extraction: targeted cases, and the quality of the whole fixture set
 * (tests/fixtures/extraction: at least 30 article pages in different CMS layouts, each with
 * its expected main text and metadata). Token-level F1 over the set must stay above 0.90;
 * scripts/eval-extraction.sh prints the same figures per page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../scraper.h"
#include "test_support.h"

static void extract_str(const char *html, const char *url, sc_item *it)
{
    sc_extract(html, strlen(html), url, it);
}

static void test_metadata(void **state)
{
    (void)state;
    const char *html =
        "<html lang=\"de-DE\"><head><title>Fallback | Site</title>"
        "<meta property=\"og:title\" content=\"The Title\">"
        "<meta name=\"description\" content=\"Plain description\">"
        "<meta property=\"og:description\" content=\"OG description\">"
        "<meta property=\"og:image\" content=\"/img/lead.jpg\">"
        "<link rel=\"canonical\" href=\"/canonical/path\">"
        "<script type=\"application/ld+json\">{\"@graph\":[{\"@type\":\"WebSite\"},"
        "{\"@type\":[\"NewsArticle\"],\"author\":[{\"name\":\"A One\"},{\"name\":\"B Two\"}],"
        "\"datePublished\":\"2024-02-03T04:05:06Z\"}]}</script>"
        "</head><body><article><p>First paragraph of the story, long enough to count as "
        "text.</p></article></body></html>";
    sc_item it;
    extract_str(html, "https://example.com/a/b.html?x=1", &it);
    assert_string_equal(it.title, "The Title");
    assert_string_equal(it.canonical_url, "https://example.com/canonical/path");
    assert_string_equal(it.image_url, "https://example.com/img/lead.jpg");
    assert_string_equal(it.description, "OG description");
    assert_string_equal(it.author, "A One, B Two");
    assert_string_equal(it.lang, "de-DE");
    char ts[CORE_RFC3339_LEN + 1];
    core_format_rfc3339(it.published_ms, ts);
    assert_string_equal(ts, "2024-02-03T04:05:06.000Z");
    json_t *j = sc_item_json(&it);
    assert_string_equal(json_string_value(json_object_get(j, "published")),
                        "2024-02-03T04:05:06.000Z");
    json_decref(j);
    sc_item_free(&it);

    /* no metadata at all: <title> cut at the site name, an h1 inside it wins */
    extract_str("<title>Headline here - Example Site</title><p>Text of a kind that is long "
                "enough to matter.</p>",
                NULL, &it);
    assert_string_equal(it.title, "Headline here");
    assert_null(it.author);
    assert_int_equal(it.published_ms, 0);
    sc_item_free(&it);
}

static void test_boilerplate_removed(void **state)
{
    (void)state;
    const char *html =
        "<html><body><nav><a href=\"/\">Home</a><a href=\"/x\">Section</a></nav>"
        "<script>var tracking = 'do not show';</script><style>p{color:red}</style>"
        "<div class=\"layout\"><div class=\"main-column\"><h1>Title</h1>"
        "<p class=\"byline\">By Somebody</p>"
        "<div class=\"post-content\"><p>The council met on Tuesday, and after a long debate, "
        "it approved the budget for the coming year.</p>"
        "<div class=\"share-buttons\"><a href=\"#\">Share on social media</a></div>"
        "<p>Residents will see new bus routes, longer library hours, and repaired roads.</p>"
        "<h2>What comes next</h2><p>The plan goes to the mayor, who is expected to sign it "
        "next week, officials said.</p></div>"
        "<div id=\"comments\"><p>Comment: this is a terrible decision and I am very angry, "
        "really angry.</p></div></div>"
        "<aside class=\"sidebar\"><p>Popular stories you may like to read, lots of them here."
        "</p></aside></div><footer><p>Copyright 2024, All rights reserved, Example Media "
        "Group.</p></footer></body></html>";
    sc_item it;
    extract_str(html, NULL, &it);
    assert_string_equal(it.text,
                        "The council met on Tuesday, and after a long debate, it approved the "
                        "budget for the coming year.\n\nResidents will see new bus routes, "
                        "longer library hours, and repaired roads.\n\nWhat comes next\n\nThe "
                        "plan goes to the mayor, who is expected to sign it next week, "
                        "officials said.");
    sc_item_free(&it);
    /* an empty or broken document gives no text, and no crash */
    extract_str("", NULL, &it);
    assert_string_equal(it.text, "");
    sc_item_free(&it);
    extract_str("<<<>>><p <div", NULL, &it);
    sc_item_free(&it);
}

/* HTML5 parsing, and what extract.c repairs in its trees. */
static void test_parser_edges(void **state)
{
    (void)state;
    sc_item it;
    /* XHTML-style "<a name/>" and "<div/>" are empty, not wrapped around what follows (which
     * would make it link text); "<a href=/>" is a link, not a self-closed element */
    extract_str("<html><body><div class=\"post\"><h3><a name=\"one\"/>About the first heading</h3>"
                "<p>The first paragraph, long enough, with commas, to count as text.</p>"
                "<div class=\"clear\"/><p>The second paragraph follows the empty div, with "
                "commas, here.</p><p><a href=/>A link to the front page, long as it is</a>.</p>"
                "</div></body></html>",
                NULL, &it);
    assert_string_equal(it.text, "About the first heading\n\nThe first paragraph, long "
                                 "enough, with commas, to count as text.\n\nThe second "
                                 "paragraph follows the empty div, with commas, here.");
    sc_item_free(&it);

    /* nesting deeper than anyone writes: dropped below 256 levels, the rest kept */
    core_buf deep = {0};
    core_buf_puts(&deep, "<html><body><div class=\"content\"><p>Before the deep part, a "
                         "paragraph of text, with commas.</p>");
    for (int i = 0; i < 5000; i++)
        core_buf_puts(&deep, "<div>");
    core_buf_puts(&deep, "<p>Too deep to be kept, however long, and with commas, it is.</p>");
    for (int i = 0; i < 5000; i++)
        core_buf_puts(&deep, "</div>");
    core_buf_puts(&deep, "<p>After the deep part, another paragraph, with commas, here.</p>"
                         "</div></body></html>");
    sc_extract(deep.data, deep.len, NULL, &it);
    assert_string_equal(it.text, "Before the deep part, a paragraph of text, with commas.\n\n"
                                 "After the deep part, another paragraph, with commas, here.");
    sc_item_free(&it);
    core_buf_free(&deep);

    /* unclosed <font>s re-opened in every paragraph: 6 KB would make 27 MB of nodes; the
     * parse is abandoned and the page is empty */
    core_buf fonts = {0};
    core_buf_puts(&fonts, "<html><head><title>Fonts</title></head><body><p>");
    for (int i = 0; i < 300; i++)
        core_buf_printf(&fonts, "<font size=%d>", i);
    core_buf_puts(&fonts, "</p>");
    for (int i = 0; i < 300; i++)
        core_buf_puts(&fonts, "<p>x</p>");
    sc_extract(fonts.data, fonts.len, NULL, &it);
    assert_null(it.title);
    assert_string_equal(it.text, "");
    sc_item_free(&it);
    core_buf_free(&fonts);

    /* a page bigger than the parse arena, twice (it grows in between), then a small one */
    core_buf big = {0};
    core_buf_puts(&big, "<html><head><title>Big</title></head><body><article>");
    for (int i = 0; i < 3000; i++)
        core_buf_printf(&big, "<p>Paragraph %d of a long article, with a comma.</p>", i);
    core_buf_puts(&big, "</article></body></html>");
    char *first = NULL;
    for (int round = 0; round < 2; round++) {
        sc_extract(big.data, big.len, NULL, &it);
        assert_string_equal(it.title, "Big");
        assert_non_null(strstr(it.text, "Paragraph 2999 of a long article"));
        if (!first)
            first = strdup(it.text);
        else
            assert_string_equal(it.text, first);
        sc_item_free(&it);
    }
    free(first);
    core_buf_free(&big);
    extract_str("<title>Small</title><p>A small page after the big ones, with a comma.</p>", NULL,
                &it);
    assert_string_equal(it.title, "Small");
    assert_string_equal(it.text, "A small page after the big ones, with a comma.");
    sc_item_free(&it);
}

static const char threaded_page[] =
    "<html><head><title>Threads</title></head><body><nav><a href=\"/\">Home</a></nav>"
    "<article><p>The first paragraph of the article, with commas, long enough.</p>"
    "<p>The second paragraph of the article, with commas, long enough.</p></article>"
    "<footer><p>Footer text that is not the article, copyright and all.</p></footer>"
    "</body></html>";

static void *extract_repeatedly(void *data)
{
    int *mismatches = data;
    for (int i = 0; i < 200; i++) {
        sc_item it;
        extract_str(threaded_page, NULL, &it);
        if (!it.title || strcmp(it.title, "Threads") != 0 ||
            strcmp(it.text, "The first paragraph of the article, with commas, long enough.\n\n"
                            "The second paragraph of the article, with commas, long enough.") != 0)
            (*mismatches)++;
        sc_item_free(&it);
    }
    return NULL;
}

/* The parse arena is shared; a second thread extracting at the same time gets its own. */
static void test_concurrent_extraction(void **state)
{
    (void)state;
    pthread_t threads[3];
    int mismatches[3] = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, extract_repeatedly, &mismatches[i]), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(mismatches[i], 0);
    }
}

static void test_fixture_set(void **state)
{
    (void)state;
    char dir[4096], path[4400];
    ts_repo_path(dir, sizeof dir, "tests/fixtures/extraction");
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_error_t jerr;
    json_t *expected = json_load_file(path, 0, &jerr);
    if (!expected) fail_msg("%s: %s", path, jerr.text);
    const char *name;
    json_t *e;
    int pages = 0, title_ok = 0, author_n = 0, author_ok = 0, date_n = 0, date_ok = 0;
    double sum_p = 0, sum_r = 0, sum_f = 0, min_f = 1;
    json_object_foreach(expected, name, e)
    {
        size_t hlen = 0;
        snprintf(path, sizeof path, "%s/%s.html", dir, name);
        char *html = sc_read_file(path, &hlen);
        snprintf(path, sizeof path, "%s/%s.txt", dir, name);
        char *want = sc_read_file(path, NULL);
        assert_non_null(html);
        assert_non_null(want);
        sc_item it;
        sc_extract(html, hlen, NULL, &it);
        double p, r, f;
        sc_token_prf(it.text, want, &p, &r, &f);
        sum_p += p, sum_r += r, sum_f += f;
        if (f < min_f) min_f = f;
        if (f < 0.8) fprintf(stderr, "%s: F1 %.3f (P %.3f R %.3f)\n", name, f, p, r);
        pages++;
        const char *t = json_string_value(json_object_get(e, "title"));
        if (it.title && t && strcmp(it.title, t) == 0)
            title_ok++;
        else
            fprintf(stderr, "%s: title \"%s\"\n", name, it.title ? it.title : "(none)");
        const char *a = json_string_value(json_object_get(e, "author"));
        if (a) {
            author_n++;
            if (it.author && strcmp(it.author, a) == 0)
                author_ok++;
            else
                fprintf(stderr, "%s: author \"%s\"\n", name, it.author ? it.author : "(none)");
        }
        const char *d = json_string_value(json_object_get(e, "published_date"));
        if (d) {
            date_n++;
            char ts[CORE_RFC3339_LEN + 1] = "";
            if (it.published_ms) core_format_rfc3339(it.published_ms, ts);
            if (strncmp(ts, d, 10) == 0) date_ok++;
        }
        sc_item_free(&it);
        free(html);
        free(want);
    }
    json_decref(expected);
    double mp = sum_p / pages, mr = sum_r / pages, mf = sum_f / pages;
    printf("extraction: %d pages, mean token precision %.3f, recall %.3f, F1 %.3f, min F1 "
           "%.3f; titles %d/%d, authors %d/%d, dates %d/%d\n",
           pages, mp, mr, mf, min_f, title_ok, pages, author_ok, author_n, date_ok, date_n);
    assert_true(pages >= 30);
    assert_true(mf > 0.90);
    assert_true(min_f > 0.75);
    assert_true(title_ok >= pages - 1);
    assert_true(author_ok * 10 >= author_n * 9);
    assert_true(date_ok * 10 >= date_n * 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata),     cmocka_unit_test(test_boilerplate_removed),
        cmocka_unit_test(test_parser_edges), cmocka_unit_test(test_concurrent_extraction),
        cmocka_unit_test(test_fixture_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
