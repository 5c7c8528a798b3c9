/* httpc's pure parts, no network: Retry-After, URL origins, header lines, and the circuit
 * breaker state machine on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "httpc_internal.h"

#define MS 1000000LL /* ns */

static void test_retry_after(void **state)
{
    (void)state;
    int64_t now = 1763755200000LL; /* 2025-11-21T20:00:00Z */
    assert_int_equal(httpc__parse_retry_after("1", now), 1000);
    assert_int_equal(httpc__parse_retry_after(" 120 ", now), 120000);
    assert_int_equal(httpc__parse_retry_after("0", now), 0);
    assert_int_equal(httpc__parse_retry_after("99999999999999999999", now), 1000000000LL * 1000);
    assert_int_equal(httpc__parse_retry_after("Fri, 21 Nov 2025 20:00:30 GMT", now), 30000);
    assert_int_equal(httpc__parse_retry_after("Fri, 21 Nov 2025 19:59:00 GMT", now), 0);
    assert_int_equal(httpc__parse_retry_after("", now), -1);
    assert_int_equal(httpc__parse_retry_after("soon", now), -1);
    assert_int_equal(httpc__parse_retry_after("-5", now), -1);
    assert_int_equal(httpc__parse_retry_after("1.5", now), -1);
    assert_int_equal(httpc__parse_retry_after(NULL, now), -1);
}

static void check_url(const char *url, const char *origin, const char *label, const char *target)
{
    char *o = NULL, *l = NULL, *t = NULL;
    assert_true(httpc__url_parts(url, &o, &l, &t));
    assert_string_equal(o, origin);
    assert_string_equal(l, label);
    assert_string_equal(t, target);
    free(o);
    free(l);
    free(t);
}

static void test_url_parts(void **state)
{
    (void)state;
    check_url("http://Example.COM/a?b=c", "http://example.com:80", "example.com",
              "http://example.com/a");
    check_url("HTTPS://api.example.com:443/v1/x#frag", "https://api.example.com:443",
              "api.example.com", "https://api.example.com/v1/x");
    check_url("http://user:secret@127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080",
              "http://127.0.0.1:8080/");
    check_url("https://[::1]:8443/p?access_token=xyz", "https://[::1]:8443", "[::1]:8443",
              "https://[::1]:8443/p");
    char *o = NULL;
    assert_false(httpc__url_parts("ftp://example.com/", &o, NULL, NULL));
    assert_null(o);
    assert_false(httpc__url_parts("file:///etc/passwd", NULL, NULL, NULL));
    assert_false(httpc__url_parts("example.com/x", NULL, NULL, NULL));
    assert_false(httpc__url_parts("", NULL, NULL, NULL));
    assert_false(httpc__url_parts(NULL, NULL, NULL, NULL));
}

static void feed(httpc__headers *h, const char *line)
{
    httpc__headers_line(h, line, strlen(line));
}

static void test_header_lines(void **state)
{
    (void)state;
    httpc__headers h = {0};
    feed(&h, "HTTP/1.1 302 Found\r\n");
    feed(&h, "Location: /next\r\n");
    feed(&h, "\r\n");
    feed(&h, "HTTP/1.1 100 Continue\r\n"); /* a new response replaces the previous headers */
    feed(&h, "\r\n");
    feed(&h, "HTTP/2 200\r\n");
    feed(&h, "content-type:  text/html ; charset=utf-8 \r\n");
    feed(&h, "X-Folded: first\r\n");
    feed(&h, "   second\r\n");
    feed(&h, "Set-Cookie: a=1\r\n");
    feed(&h, "Set-Cookie: b=2\r\n");
    feed(&h, "no colon here\r\n");
    feed(&h, ": no name\r\n");
    feed(&h, "X-Empty:\r\n");
    feed(&h, "\r\n");
    assert_int_equal(h.n, 5);
    assert_null(httpc__headers_get(h.items, h.n, "location"));
    assert_string_equal(httpc__headers_get(h.items, h.n, "Content-Type"),
                        "text/html ; charset=utf-8");
    assert_string_equal(httpc__headers_get(h.items, h.n, "x-folded"), "first second");
    assert_string_equal(httpc__headers_get(h.items, h.n, "SET-COOKIE"), "a=1");
    assert_string_equal(h.items[3].value, "b=2");
    assert_string_equal(httpc__headers_get(h.items, h.n, "x-empty"), "");
    assert_null(httpc__headers_get(h.items, h.n, NULL));
    httpc__headers_clear(&h);
    assert_int_equal(h.n, 0);
}

typedef struct changes {
    int opened, closed;
    unsigned last_failures;
    char last_host[64];
} changes;

static void on_change(const char *origin, const char *host_label, bool open, unsigned failures,
                      void *data)
{
    (void)origin;
    changes *c = data;
    if (open)
        c->opened++;
    else
        c->closed++;
    c->last_failures = failures;
    snprintf(c->last_host, sizeof c->last_host, "%s", host_label);
}

static const char *const A = "https://a.example:443";
static const char *const B = "https://b.example:443";

static void record_failure(httpc__breakers *b, const char *origin, bool probe, int64_t now)
{
    httpc__breaker_record(b, origin, "a.example", probe, HTTPC__OUTCOME_FAILURE, now);
}

static void test_breaker_machine(void **state)
{
    (void)state;
    changes ch = {0};
    httpc__breakers b;
    httpc__breakers_init(&b, 3, 1000, on_change, &ch);
    bool probe = true;
    int64_t t = 5000 * MS;

    assert_int_equal(httpc__breaker_state(&b, A, t), HTTPC_CIRCUIT_CLOSED);
    assert_true(httpc__breaker_admit(&b, A, t, &probe));
    assert_false(probe);
    record_failure(&b, A, false, t);
    record_failure(&b, A, false, t);
    assert_int_equal(httpc__breaker_state(&b, A, t), HTTPC_CIRCUIT_CLOSED);
    assert_int_equal(httpc__breaker_count(&b), 1);
    record_failure(&b, A, false, t);
    assert_int_equal(httpc__breaker_state(&b, A, t), HTTPC_CIRCUIT_OPEN);
    assert_int_equal(ch.opened, 1);
    assert_int_equal(ch.last_failures, 3);
    assert_string_equal(ch.last_host, "a.example");
    assert_false(httpc__breaker_allows(&b, A, t + 999 * MS));
    assert_false(httpc__breaker_admit(&b, A, t + 999 * MS, &probe));
    assert_true(httpc__breaker_allows(&b, B, t)); /* per origin */

    /* Cool-down over: half-open, exactly one probe. */
    t += 1000 * MS;
    assert_int_equal(httpc__breaker_state(&b, A, t), HTTPC_CIRCUIT_HALF_OPEN);
    assert_true(httpc__breaker_allows(&b, A, t));
    assert_true(httpc__breaker_admit(&b, A, t, &probe));
    assert_true(probe);
    assert_false(httpc__breaker_allows(&b, A, t));
    bool probe2 = true;
    assert_false(httpc__breaker_admit(&b, A, t, &probe2));
    assert_false(probe2);
    /* A neutral outcome (cancelled) frees the probe slot. */
    httpc__breaker_record(&b, A, "a.example", true, HTTPC__OUTCOME_NEUTRAL, t);
    assert_true(httpc__breaker_admit(&b, A, t, &probe));
    assert_true(probe);
    /* The probe fails: open again for a whole cool-down, no second "opened" event. */
    record_failure(&b, A, true, t);
    assert_int_equal(httpc__breaker_state(&b, A, t + 500 * MS), HTTPC_CIRCUIT_OPEN);
    assert_int_equal(ch.opened, 1);
    t += 1000 * MS;
    assert_true(httpc__breaker_admit(&b, A, t, &probe));
    assert_true(probe);
    httpc__breaker_record(&b, A, "a.example", true, HTTPC__OUTCOME_SUCCESS, t);
    assert_int_equal(httpc__breaker_state(&b, A, t), HTTPC_CIRCUIT_CLOSED);
    assert_int_equal(ch.closed, 1);
    assert_int_equal(httpc__breaker_count(&b), 0); /* healthy origins are not remembered */

    /* Successes reset the consecutive count. */
    record_failure(&b, A, false, t);
    record_failure(&b, A, false, t);
    httpc__breaker_record(&b, A, "a.example", false, HTTPC__OUTCOME_SUCCESS, t);
    record_failure(&b, A, false, t);
    record_failure(&b, A, false, t);
    assert_int_equal(httpc__breaker_state(&b, A, t), HTTPC_CIRCUIT_CLOSED);
    httpc__breaker_record(&b, A, "a.example", false, HTTPC__OUTCOME_NEUTRAL, t);
    record_failure(&b, A, false, t);
    assert_int_equal(httpc__breaker_state(&b, A, t), HTTPC_CIRCUIT_OPEN);
    httpc__breakers_free(&b);
}

static void test_breaker_many_origins(void **state)
{
    (void)state;
    httpc__breakers b;
    httpc__breakers_init(&b, 1, 1000, NULL, NULL);
    char origin[64];
    for (int i = 0; i < 1000; i++) { /* the table grows; every origin stays findable */
        snprintf(origin, sizeof origin, "http://h%d.example:80", i);
        record_failure(&b, origin, false, 0);
    }
    assert_int_equal(httpc__breaker_count(&b), 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(origin, sizeof origin, "http://h%d.example:80", i);
        assert_int_equal(httpc__breaker_state(&b, origin, 0), HTTPC_CIRCUIT_OPEN);
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(origin, sizeof origin, "http://h%d.example:80", i);
        httpc__breaker_record(&b, origin, NULL, false, HTTPC__OUTCOME_SUCCESS, 0);
    }
    assert_int_equal(httpc__breaker_count(&b), 500);
    httpc__breakers_free(&b);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(httpc_error_name(HTTPC_OK), "ok");
    assert_string_equal(httpc_error_name(HTTPC_ERR_TIMEOUT), "timeout");
    assert_string_equal(httpc_error_name(HTTPC_ERR_CIRCUIT_OPEN), "circuit_open");
    assert_string_equal(httpc_circuit_name(HTTPC_CIRCUIT_HALF_OPEN), "half_open");
    httpc_header hs[] = {{"A", "1"}, {"b", "2"}};
    httpc_response resp = {.headers = hs, .nheaders = 2};
    assert_string_equal(httpc_response_header(&resp, "B"), "2");
    assert_null(httpc_response_header(&resp, "c"));
    assert_null(httpc_response_header(NULL, "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after),          cmocka_unit_test(test_url_parts),
        cmocka_unit_test(test_header_lines),         cmocka_unit_test(test_breaker_machine),
        cmocka_unit_test(test_breaker_many_origins), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("httpc_parse", tests, NULL, NULL);
}
