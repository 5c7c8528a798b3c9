/* Unit tests of fingerprints (SimHash, content hash), address classification and the
 * allowlist, charset detection and conversion, and the evaluation measure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "../scraper.h"

static const char *article =
    "The harbour authority opened a new ferry terminal on the eastern pier this morning, "
    "replacing a wooden shed that had served passengers for more than forty years. The "
    "terminal has heated waiting rooms, a cafe, bicycle parking and ticket machines that accept "
    "cards. Engineers raised the quay by half a metre to protect it from storm surges. The first "
    "ferry left on time at seven o'clock, carrying commuters and school children.";

static void test_simhash(void **state)
{
    (void)state;
    uint64_t a = sc_simhash(article);
    assert_int_equal(a, sc_simhash(article));
    /* one word changed: a near duplicate */
    char *b = strdup(article);
    memcpy(strstr(b, "seven"), "eight", 5);
    assert_true(sc_hamming(a, sc_simhash(b)) <= SC_NEAR_DUP_BITS);
    /* case and punctuation do not matter */
    char *c = strdup(article);
    for (char *p = c; *p; p++)
        if (*p == ',') *p = ' ';
    assert_true(sc_hamming(a, sc_simhash(c)) <= SC_NEAR_DUP_BITS);
    /* another text is far away */
    const char *other = "Volunteers counted more than two thousand migrating cranes over the "
                        "wetlands during the weekend, the highest number recorded since the "
                        "count began. The birds rest on the shallow lakes for several days.";
    assert_true(sc_hamming(a, sc_simhash(other)) > 2 * SC_NEAR_DUP_BITS);
    char h1[65], h2[65], h3[65];
    sc_content_hash(article, h1);
    sc_content_hash(c, h2);
    sc_content_hash(b, h3);
    assert_string_equal(h1, h2); /* whitespace and punctuation folded */
    assert_string_not_equal(h1, h3);
    free(b);
    free(c);
}

static struct sockaddr *addr(const char *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return (struct sockaddr *)ss;
}

static const char *klass(const char *ip)
{
    struct sockaddr_storage ss;
    const char *c = sc_addr_class(addr(ip, &ss));
    return c ? c : "public";
}

static bool allowed(const sc_allowlist *a, const char *ip)
{
    struct sockaddr_storage ss;
    return sc_allowlist_contains(a, addr(ip, &ss));
}

static void test_addresses(void **state)
{
    (void)state;
    assert_string_equal(klass("8.8.8.8"), "public");
    assert_string_equal(klass("93.184.216.34"), "public");
    assert_string_equal(klass("127.0.0.1"), "loopback");
    assert_string_equal(klass("127.255.0.9"), "loopback");
    assert_string_equal(klass("10.0.0.1"), "private");
    assert_string_equal(klass("172.16.5.4"), "private");
    assert_string_equal(klass("172.32.0.1"), "public");
    assert_string_equal(klass("192.168.1.1"), "private");
    assert_string_equal(klass("169.254.169.254"), "link-local");
    assert_string_equal(klass("100.64.0.1"), "carrier-grade NAT");
    assert_string_equal(klass("224.0.0.251"), "multicast");
    assert_string_equal(klass("0.0.0.0"), "unspecified");
    assert_string_equal(klass("255.255.255.255"), "broadcast");
    assert_string_equal(klass("::1"), "loopback");
    assert_string_equal(klass("::"), "unspecified");
    assert_string_equal(klass("fe80::1"), "link-local");
    assert_string_equal(klass("fd00::1"), "unique-local");
    assert_string_equal(klass("ff02::1"), "multicast");
    assert_string_equal(klass("::ffff:10.1.2.3"), "private"); /* IPv4-mapped */
    assert_string_equal(klass("::ffff:8.8.8.8"), "public");
    assert_string_equal(klass("2606:4700::1111"), "public");

    char err[256];
    sc_allowlist *a = sc_allowlist_parse("127.0.0.0/8, ::1,192.168.7.7", err, sizeof err);
    assert_non_null(a);
    assert_true(allowed(a, "127.0.0.1"));
    assert_true(allowed(a, "127.9.9.9"));
    assert_true(allowed(a, "::1"));
    assert_true(allowed(a, "::ffff:127.0.0.1"));
    assert_true(allowed(a, "192.168.7.7"));
    assert_false(allowed(a, "192.168.7.8"));
    assert_false(allowed(a, "10.0.0.1"));
    assert_false(allowed(a, "169.254.169.254"));
    sc_allowlist_free(a);
    a = sc_allowlist_parse("", err, sizeof err); /* the default: nothing */
    assert_non_null(a);
    assert_false(allowed(a, "127.0.0.1"));
    sc_allowlist_free(a);
    assert_null(sc_allowlist_parse("localhost", err, sizeof err));
    assert_non_null(strstr(err, "localhost"));
    assert_null(sc_allowlist_parse("10.0.0.0/33", err, sizeof err));
    assert_null(sc_allowlist_parse("10.0.0.0/x", err, sizeof err));
}

static void test_charset(void **state)
{
    (void)state;
    char cs[48];
    sc_charset_detect("text/html; charset=ISO-8859-1", "<p>x</p>", 8, true, cs, sizeof cs);
    assert_string_equal(cs, "ISO-8859-1");
    sc_charset_detect("text/html; charset=\"utf-8\"", "<p>x</p>", 8, true, cs, sizeof cs);
    assert_string_equal(cs, "UTF-8");
    const char *meta = "<html><head><meta charset=\"windows-1252\"></head>";
    sc_charset_detect("text/html", meta, strlen(meta), true, cs, sizeof cs);
    assert_string_equal(cs, "WINDOWS-1252");
    const char *equiv =
        "<head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-15\">";
    sc_charset_detect(NULL, equiv, strlen(equiv), true, cs, sizeof cs);
    assert_string_equal(cs, "ISO-8859-15");
    /* the header wins over the meta; a BOM wins over both */
    sc_charset_detect("text/html; charset=utf-8", meta, strlen(meta), true, cs, sizeof cs);
    assert_string_equal(cs, "UTF-8");
    const char bom[] = "\xEF\xBB\xBF<p>x</p>";
    sc_charset_detect("text/html; charset=iso-8859-1", bom, sizeof bom - 1, true, cs, sizeof cs);
    assert_string_equal(cs, "UTF-8");
    const char bom16[] = "\xFF\xFE<\0p\0>\0";
    sc_charset_detect(NULL, bom16, sizeof bom16 - 1, true, cs, sizeof cs);
    assert_string_equal(cs, "UTF-16LE");
    sc_charset_detect(NULL, "<p>x</p>", 8, true, cs, sizeof cs);
    assert_string_equal(cs, "UTF-8");

    size_t len;
    char *u = sc_to_utf8("Caf\xe9 na\xefve Z\xfcrich \x93quoted\x94", 26, "ISO-8859-1", &len);
    assert_string_equal(u, "Caf\xc3\xa9 na\xc3\xafve Z\xc3\xbcrich \xe2\x80\x9cquoted\xe2\x80\x9d");
    assert_int_equal(len, strlen(u));
    free(u);
    u = sc_to_utf8("ok \xff\xfe bad", 9, "UTF-8", &len); /* invalid UTF-8 is replaced */
    assert_string_equal(u, "ok \xef\xbf\xbd\xef\xbf\xbd bad");
    free(u);
    u = sc_to_utf8("\xEF\xBB\xBFhi", 5, "UTF-8", &len);
    assert_string_equal(u, "hi");
    free(u);
    u = sc_to_utf8("\xFF\xFEh\0i\0", 6, "UTF-16LE", &len);
    assert_string_equal(u, "hi");
    free(u);
    u = sc_to_utf8("x", 1, "NO-SUCH-CHARSET", &len); /* unknown: treated as UTF-8 */
    assert_string_equal(u, "x");
    free(u);
}

static void test_token_prf(void **state)
{
    (void)state;
    double p, r, f;
    sc_token_prf("the cat sat", "The cat sat", &p, &r, &f);
    assert_true(f > 0.999);
    sc_token_prf("the cat sat on the mat", "the cat sat", &p, &r, &f);
    assert_true(p > 0.49 && p < 0.51);
    assert_true(r > 0.999);
    sc_token_prf("", "the cat", &p, &r, &f);
    assert_true(f < 0.001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simhash),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_charset),
        cmocka_unit_test(test_token_prf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
