/* Unit tests for libs/auth: argon2id hashes (inline and on the thread pool), token buckets,
 * failed-attempt throttles, signed link tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core.h"

/* Small parameters keep the suite fast; the format is the same. */
static const auth_pwhash_params fast = {.opslimit = 1, .memlimit = 8192 * 1024};

static void test_password_hash_verify(void **state)
{
    (void)state;
    char h[AUTH_PWHASH_MAX];
    assert_true(auth_password_hash("correct horse battery", &fast, h));
    assert_int_equal(strncmp(h, "$argon2id$", 10), 0);
    assert_true(auth_password_verify(h, "correct horse battery"));
    assert_false(auth_password_verify(h, "correct horse batterz"));
    assert_false(auth_password_verify(h, ""));
    assert_false(auth_password_verify("$argon2i$v=19$m=8192,t=1,p=1$abc$def", "x"));
    assert_false(auth_password_verify("plaintext", "plaintext"));
    char h2[AUTH_PWHASH_MAX];
    assert_true(auth_password_hash("correct horse battery", &fast, h2));
    assert_string_not_equal(h, h2); /* salted */
    assert_false(auth_password_needs_rehash(h, &fast));
    assert_true(auth_password_needs_rehash(h, NULL));
}

typedef struct pw_result {
    int calls;
    bool ok;
    char hash[AUTH_PWHASH_MAX];
} pw_result;

static void on_pw(void *data, bool ok, const char *hash)
{
    pw_result *r = data;
    r->calls++;
    r->ok = ok;
    if (hash) snprintf(r->hash, sizeof r->hash, "%s", hash);
}

static void test_password_async(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    pw_result hr = {0}, good = {0}, bad = {0};
    auth_password_hash_async(&loop, "s3cret-pass", &fast, on_pw, &hr);
    assert_int_equal(hr.calls, 0); /* never from inside the call */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(hr.calls, 1);
    assert_true(hr.ok);
    auth_password_verify_async(&loop, hr.hash, "s3cret-pass", on_pw, &good);
    auth_password_verify_async(&loop, hr.hash, "wrong-pass", on_pw, &bad);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(good.calls, 1);
    assert_true(good.ok);
    assert_int_equal(bad.calls, 1);
    assert_false(bad.ok);
    uv_loop_close(&loop);
}

static void test_token_bucket(void **state)
{
    (void)state;
    auth_buckets *b = auth_buckets_new(2.0, 5, 100); /* 2/s, burst 5 */
    int64_t retry = -1, now = 1000000;
    for (int i = 0; i < 5; i++)
        assert_true(auth_buckets_take(b, "1.2.3.4", now, &retry));
    assert_false(auth_buckets_take(b, "1.2.3.4", now, &retry));
    assert_int_equal(retry, 500);                              /* one token every 500 ms */
    assert_true(auth_buckets_take(b, "5.6.7.8", now, &retry)); /* other clients unaffected */
    assert_false(auth_buckets_take(b, "1.2.3.4", now + 499, &retry));
    assert_int_equal(retry, 1);
    assert_true(auth_buckets_take(b, "1.2.3.4", now + 500, &retry));
    assert_false(auth_buckets_take(b, "1.2.3.4", now + 500, &retry));
    /* a long pause refills to the burst, not beyond */
    now += 100000;
    for (int i = 0; i < 5; i++)
        assert_true(auth_buckets_take(b, "1.2.3.4", now, &retry));
    assert_false(auth_buckets_take(b, "1.2.3.4", now, &retry));
    auth_buckets_free(b);
    assert_null(auth_buckets_new(0, 5, 10));
    assert_null(auth_buckets_new(1, 0, 10));
}

static void test_bucket_table_is_bounded(void **state)
{
    (void)state;
    auth_buckets *b = auth_buckets_new(1.0, 2, 50);
    char key[32];
    int64_t retry;
    /* an exhausted client among many new ones stays tracked while others come and go */
    assert_true(auth_buckets_take(b, "hot", 0, &retry));
    assert_true(auth_buckets_take(b, "hot", 0, &retry));
    assert_false(auth_buckets_take(b, "hot", 0, &retry));
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "10.0.%d.%d", i / 256, i % 256);
        auth_buckets_take(b, key, 10, &retry);
        assert_true(auth_buckets_size(b) <= 50);
    }
    auth_buckets_free(b);
}

static void test_throttle(void **state)
{
    (void)state;
    /* 3 free failures, then 1 s, 2 s, 4 s ... capped at 5 s; forgotten after 60 s */
    auth_throttle *t = auth_throttle_new(3, 1000, 5000, 60000, 100);
    int64_t now = 5000000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(auth_throttle_wait_ms(t, "acct:a", now), 0);
        auth_throttle_failure(t, "acct:a", now);
    }
    assert_int_equal(auth_throttle_wait_ms(t, "acct:a", now), 0);
    auth_throttle_failure(t, "acct:a", now); /* 4th */
    assert_int_equal(auth_throttle_wait_ms(t, "acct:a", now), 1000);
    assert_int_equal(auth_throttle_wait_ms(t, "acct:b", now), 0);
    now += 1000;
    assert_int_equal(auth_throttle_wait_ms(t, "acct:a", now), 0);
    auth_throttle_failure(t, "acct:a", now); /* 5th */
    assert_int_equal(auth_throttle_wait_ms(t, "acct:a", now), 2000);
    now += 2000;
    auth_throttle_failure(t, "acct:a", now); /* 6th */
    assert_int_equal(auth_throttle_wait_ms(t, "acct:a", now), 4000);
    now += 4000;
    auth_throttle_failure(t, "acct:a", now); /* 7th: capped */
    assert_int_equal(auth_throttle_wait_ms(t, "acct:a", now), 5000);
    assert_int_equal(auth_throttle_failures(t, "acct:a", now), 7);
    /* a success clears it */
    auth_throttle_success(t, "acct:a");
    assert_int_equal(auth_throttle_failures(t, "acct:a", now), 0);
    /* failures older than the window are forgotten */
    auth_throttle_failure(t, "acct:c", now);
    auth_throttle_failure(t, "acct:c", now);
    assert_int_equal(auth_throttle_failures(t, "acct:c", now + 59999), 2);
    assert_int_equal(auth_throttle_failures(t, "acct:c", now + 60000), 0);
    auth_throttle_free(t);
    assert_null(auth_throttle_new(3, 0, 10, 10, 10));
}

static void test_link_tokens(void **state)
{
    (void)state;
    uint8_t key[32], other[32];
    core_random_bytes(key, sizeof key);
    core_random_bytes(other, sizeof other);
    char *tok = auth_link_sign(key, "confirm", "0190c3d4-0000-7000-8000-00000000abcd", 2000);
    char sub[64];
    assert_int_equal(auth_link_verify(key, tok, "confirm", 1999, sub, sizeof sub), AUTH_OK);
    assert_string_equal(sub, "0190c3d4-0000-7000-8000-00000000abcd");
    assert_int_equal(auth_link_verify(key, tok, "confirm", 2000, sub, sizeof sub), AUTH_EXPIRED);
    assert_int_equal(auth_link_verify(key, tok, "unsubscribe", 10, sub, sizeof sub),
                     AUTH_BAD_PURPOSE);
    assert_int_equal(auth_link_verify(other, tok, "confirm", 10, sub, sizeof sub),
                     AUTH_BAD_SIGNATURE);
    assert_int_equal(auth_link_verify(key, tok, "confirm", 10, sub, 8), AUTH_MALFORMED);
    /* every flipped character is refused */
    for (size_t i = 0; tok[i]; i++) {
        if (tok[i] == '.') continue;
        char *t = core_xstrdup(tok);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(auth_link_verify(key, t, "confirm", 10, sub, sizeof sub), AUTH_OK);
        free(t);
    }
    assert_int_equal(auth_link_verify(key, "", "confirm", 10, sub, sizeof sub), AUTH_MISSING);
    assert_int_equal(auth_link_verify(key, "abc", "confirm", 10, sub, sizeof sub), AUTH_MALFORMED);
    free(tok);

    char a[AUTH_TOKEN_LEN + 1], b[AUTH_TOKEN_LEN + 1];
    auth_random_token(a);
    auth_random_token(b);
    assert_int_equal(strlen(a), AUTH_TOKEN_LEN);
    assert_string_not_equal(a, b);
    char h[65];
    auth_sha256_hex("abc", h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_hash_verify),
        cmocka_unit_test(test_password_async),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_bucket_table_is_bounded),
        cmocka_unit_test(test_throttle),
        cmocka_unit_test(test_link_tokens),
    };
    return cmocka_run_group_tests_name("auth_limits", tests, NULL, NULL);
}
