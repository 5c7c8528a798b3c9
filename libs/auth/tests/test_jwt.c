/* Unit tests for libs/auth: JWT sign/verify (tampered, expired, wrong key, alg confusion),
 * keys from base64, roles, auth_authorize, identity headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core.h"

#define NOW 1800000000LL

static auth_claims claims(auth_role role)
{
    auth_claims c = {.role = role, .iat = NOW, .exp = NOW + 900};
    snprintf(c.iss, sizeof c.iss, "subscriber-manager");
    snprintf(c.sub, sizeof c.sub, "0190c3d4-0000-7000-8000-000000000001");
    snprintf(c.jti, sizeof c.jti, "jti-1");
    return c;
}

/* A token with an arbitrary header and the payload and signature of base. */
static char *with_header(const char *base, const char *header_json)
{
    char hdr[512];
    auth_b64url_encode(header_json, strlen(header_json), hdr, sizeof hdr);
    const char *dot = strchr(base, '.');
    core_buf b = {0};
    core_buf_printf(&b, "%s%s", hdr, dot);
    return core_buf_steal(&b, NULL);
}

static void test_sign_verify_roundtrip(void **state)
{
    (void)state;
    auth_signer s;
    auth_signer_generate(&s);
    auth_claims c = claims(AUTH_ROLE_EDITOR);
    snprintf(c.email, sizeof c.email, "ed@example.org");
    char *tok = auth_jwt_sign(&s, &c);
    auth_claims out;
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW + 1, "subscriber-manager", &out), AUTH_OK);
    assert_string_equal(out.sub, c.sub);
    assert_string_equal(out.email, "ed@example.org");
    assert_int_equal(out.role, AUTH_ROLE_EDITOR);
    assert_int_equal(out.exp, NOW + 900);
    /* the header names EdDSA and the key id */
    char hdr[256];
    size_t n = 0;
    assert_true(auth_b64url_decode(tok, (size_t)(strchr(tok, '.') - tok), (uint8_t *)hdr,
                                   sizeof hdr - 1, &n));
    hdr[n] = '\0';
    assert_non_null(strstr(hdr, "\"alg\":\"EdDSA\""));
    assert_non_null(strstr(hdr, s.pub.kid));
    /* wrong issuer */
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW + 1, "someone-else", NULL), AUTH_BAD_ISSUER);
    free(tok);
}

static void test_expired_and_not_yet_valid(void **state)
{
    (void)state;
    auth_signer s;
    auth_signer_generate(&s);
    auth_claims c = claims(AUTH_ROLE_VIEWER);
    char *tok = auth_jwt_sign(&s, &c);
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW + 899, NULL, NULL), AUTH_OK);
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW + 900, NULL, NULL), AUTH_EXPIRED);
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW + 100000, NULL, NULL), AUTH_EXPIRED);
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW - 3600, NULL, NULL), AUTH_NOT_YET_VALID);
    free(tok);
    /* no exp at all is refused */
    c.exp = 0;
    tok = auth_jwt_sign(&s, &c);
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW, NULL, NULL), AUTH_MALFORMED);
    free(tok);
    /* unknown role is refused */
    c = claims(AUTH_ROLE_NONE);
    tok = auth_jwt_sign(&s, &c);
    assert_int_equal(auth_jwt_verify(&s.pub, tok, NOW, NULL, NULL), AUTH_MALFORMED);
    free(tok);
}

static void test_tampered_and_wrong_key(void **state)
{
    (void)state;
    auth_signer s, other;
    auth_signer_generate(&s);
    auth_signer_generate(&other);
    auth_claims c = claims(AUTH_ROLE_VIEWER);
    char *tok = auth_jwt_sign(&s, &c);
    assert_int_equal(auth_jwt_verify(&other.pub, tok, NOW, NULL, NULL), AUTH_BAD_SIGNATURE);

    /* a payload claiming admin with the original signature */
    auth_claims evil = claims(AUTH_ROLE_ADMIN);
    char *forged = auth_jwt_sign(&other, &evil);
    const char *p1 = strchr(tok, '.'), *p2 = strrchr(tok, '.');
    const char *f1 = strchr(forged, '.'), *f2 = strrchr(forged, '.');
    core_buf b = {0};
    core_buf_printf(&b, "%.*s%.*s%s", (int)(p1 - tok), tok, (int)(f2 - f1), f1, p2);
    assert_int_equal(auth_jwt_verify(&s.pub, b.data, NOW, NULL, NULL), AUTH_BAD_SIGNATURE);
    core_buf_free(&b);

    /* every single flipped character of the token is refused */
    size_t len = strlen(tok);
    for (size_t i = 0; i < len; i++) {
        if (tok[i] == '.') continue;
        char *t = core_xstrdup(tok);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(auth_jwt_verify(&s.pub, t, NOW, NULL, NULL), AUTH_OK);
        free(t);
    }
    /* truncated, extra parts, garbage */
    char *t = core_xstrndup(tok, len - 5);
    assert_int_not_equal(auth_jwt_verify(&s.pub, t, NOW, NULL, NULL), AUTH_OK);
    free(t);
    b = (core_buf){0};
    core_buf_printf(&b, "%s.x", tok);
    assert_int_equal(auth_jwt_verify(&s.pub, b.data, NOW, NULL, NULL), AUTH_MALFORMED);
    core_buf_free(&b);
    assert_int_equal(auth_jwt_verify(&s.pub, "a.b.c", NOW, NULL, NULL), AUTH_MALFORMED);
    assert_int_equal(auth_jwt_verify(&s.pub, "", NOW, NULL, NULL), AUTH_MISSING);
    assert_int_equal(auth_jwt_verify(&s.pub, "nodots", NOW, NULL, NULL), AUTH_MALFORMED);
    free(forged);
    free(tok);
}

static void test_alg_confusion(void **state)
{
    (void)state;
    auth_signer s;
    auth_signer_generate(&s);
    auth_claims c = claims(AUTH_ROLE_ADMIN);
    char *tok = auth_jwt_sign(&s, &c);
    /* alg none, with and without a signature */
    char *none = with_header(tok, "{\"alg\":\"none\",\"typ\":\"JWT\"}");
    assert_int_equal(auth_jwt_verify(&s.pub, none, NOW, NULL, NULL), AUTH_BAD_ALG);
    char *bare = core_xstrndup(none, (size_t)(strrchr(none, '.') - none) + 1);
    assert_int_equal(auth_jwt_verify(&s.pub, bare, NOW, NULL, NULL), AUTH_BAD_ALG);
    /* HS256 "signed" with the public key as the HMAC secret (the classic confusion) */
    const char *hs_hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char h64[128];
    auth_b64url_encode(hs_hdr, strlen(hs_hdr), h64, sizeof h64);
    const char *p1 = strchr(tok, '.'), *p2 = strrchr(tok, '.');
    core_buf signing = {0};
    core_buf_printf(&signing, "%s%.*s", h64, (int)(p2 - p1), p1);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, s.pub.pk, sizeof s.pub.pk);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)signing.data, signing.len);
    crypto_auth_hmacsha256_final(&st, mac);
    char m64[64];
    auth_b64url_encode(mac, sizeof mac, m64, sizeof m64);
    core_buf_printf(&signing, ".%s", m64);
    assert_int_equal(auth_jwt_verify(&s.pub, signing.data, NOW, NULL, NULL), AUTH_BAD_ALG);
    /* other spellings and crit */
    char *lower = with_header(tok, "{\"alg\":\"eddsa\"}");
    assert_int_equal(auth_jwt_verify(&s.pub, lower, NOW, NULL, NULL), AUTH_BAD_ALG);
    char *crit = with_header(tok, "{\"alg\":\"EdDSA\",\"crit\":[\"exp\"]}");
    assert_int_equal(auth_jwt_verify(&s.pub, crit, NOW, NULL, NULL), AUTH_BAD_ALG);
    char *dup = with_header(tok, "{\"alg\":\"EdDSA\",\"alg\":\"none\"}");
    assert_int_not_equal(auth_jwt_verify(&s.pub, dup, NOW, NULL, NULL), AUTH_OK);
    free(dup);
    free(crit);
    free(lower);
    core_buf_free(&signing);
    free(bare);
    free(none);
    free(tok);
}

static void test_keys_from_base64(void **state)
{
    (void)state;
    auth_signer s, s2;
    auth_signer_generate(&s);
    char seed[64], pub[64];
    auth_signer_seed_base64(&s, seed);
    auth_verifier_base64(&s.pub, pub);
    assert_true(auth_signer_from_base64(&s2, seed));
    assert_memory_equal(s.pub.pk, s2.pub.pk, 32);
    assert_string_equal(s.pub.kid, s2.pub.kid);
    auth_verifier v;
    char padded[80];
    snprintf(padded, sizeof padded, "  %s\n", pub);
    assert_true(auth_verifier_from_base64(&v, padded));
    assert_memory_equal(v.pk, s.pub.pk, 32);
    /* libsodium's 64-byte secret key form */
    char sk64[128];
    sodium_bin2base64(sk64, sizeof sk64, s.sk, 64, sodium_base64_VARIANT_ORIGINAL);
    assert_true(auth_signer_from_base64(&s2, sk64));
    assert_memory_equal(s2.pub.pk, s.pub.pk, 32);
    /* a 64-byte key whose public half does not match */
    uint8_t bad[64];
    memcpy(bad, s.sk, 64);
    bad[40] ^= 1;
    sodium_bin2base64(sk64, sizeof sk64, bad, 64, sodium_base64_VARIANT_ORIGINAL);
    assert_false(auth_signer_from_base64(&s2, sk64));
    assert_false(auth_signer_from_base64(&s2, "not base64!"));
    assert_false(auth_signer_from_base64(&s2, "c2hvcnQ="));
    assert_false(auth_verifier_from_base64(&v, ""));
    assert_false(auth_verifier_from_base64(&v, NULL));
}

static void test_roles_and_authorize(void **state)
{
    (void)state;
    auth_role r;
    assert_true(auth_role_parse("editor", &r));
    assert_int_equal(r, AUTH_ROLE_EDITOR);
    assert_false(auth_role_parse("root", &r));
    assert_false(auth_role_parse("Admin", &r));
    assert_true(auth_role_allows(AUTH_ROLE_ADMIN, AUTH_ROLE_EDITOR));
    assert_true(auth_role_allows(AUTH_ROLE_EDITOR, AUTH_ROLE_VIEWER));
    assert_false(auth_role_allows(AUTH_ROLE_VIEWER, AUTH_ROLE_EDITOR));
    assert_false(auth_role_allows(AUTH_ROLE_EDITOR, AUTH_ROLE_ADMIN));
    assert_false(auth_role_allows(AUTH_ROLE_NONE, AUTH_ROLE_VIEWER));

    auth_signer s, other;
    auth_signer_generate(&s);
    auth_signer_generate(&other);
    auth_claims c = claims(AUTH_ROLE_VIEWER), out;
    char *tok = auth_jwt_sign(&s, &c);
    char hdr[2048];
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    const char *why = NULL;
    assert_int_equal(auth_authorize(&s.pub, hdr, NULL, AUTH_ROLE_VIEWER, NOW, NULL, &out, &why), 0);
    assert_int_equal(auth_authorize(&s.pub, hdr, NULL, AUTH_ROLE_EDITOR, NOW, NULL, &out, &why),
                     403);
    assert_int_equal(auth_authorize(&other.pub, hdr, NULL, AUTH_ROLE_VIEWER, NOW, NULL, &out, &why),
                     401);
    assert_null(strstr(why, tok));
    assert_int_equal(
        auth_authorize(&s.pub, NULL, NULL, AUTH_ROLE_VIEWER, NOW + 10000, NULL, &out, &why), 401);
    assert_int_equal(
        auth_authorize(&s.pub, "Basic abc", NULL, AUTH_ROLE_VIEWER, NOW, NULL, &out, &why), 401);
    /* the query parameter only counts when the caller passes it (streaming routes) */
    assert_int_equal(auth_authorize(&s.pub, NULL, tok, AUTH_ROLE_VIEWER, NOW, NULL, &out, &why), 0);
    /* expired */
    assert_int_equal(
        auth_authorize(&s.pub, hdr, NULL, AUTH_ROLE_VIEWER, NOW + 901, NULL, &out, &why), 401);
    assert_string_equal(why, "token expired");
    assert_string_equal(auth_bearer("bearer  abc"), "abc");
    assert_null(auth_bearer("Bearer "));
    assert_null(auth_bearer("Bearerabc"));
    assert_true(auth_is_identity_header("x-auth-role", 11));
    assert_true(auth_is_identity_header("X-AUTH-USER", 11));
    assert_false(auth_is_identity_header("X-Request-Id", 12));
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_roundtrip),
        cmocka_unit_test(test_expired_and_not_yet_valid),
        cmocka_unit_test(test_tampered_and_wrong_key),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_keys_from_base64),
        cmocka_unit_test(test_roles_and_authorize),
    };
    return cmocka_run_group_tests_name("auth_jwt", tests, NULL, NULL);
}
