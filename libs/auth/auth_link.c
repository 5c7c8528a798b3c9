/* Signed, expiring link tokens (HMAC-SHA-256) and small helpers. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core.h"

#define LINK_MAX 1024

char *auth_link_sign(const uint8_t key[32], const char *purpose, const char *subject, int64_t exp_s)
{
    if (sodium_init() < 0) abort();
    core_buf msg = {0};
    core_buf_printf(&msg, "%s\n%s\n%" PRId64, purpose, subject, exp_s);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)msg.data, msg.len);
    crypto_auth_hmacsha256_final(&st, mac);
    size_t cap = sodium_base64_encoded_len(msg.len, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
                 sodium_base64_encoded_len(sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
                 2;
    char *out = core_xcalloc(1, cap);
    size_t n = auth_b64url_encode(msg.data, msg.len, out, cap);
    out[n++] = '.';
    auth_b64url_encode(mac, sizeof mac, out + n, cap - n);
    core_buf_free(&msg);
    return out;
}

auth_status auth_link_verify(const uint8_t key[32], const char *token, const char *purpose,
                             int64_t now_s, char *subject, size_t cap)
{
    if (sodium_init() < 0) abort();
    if (!token || !*token) return AUTH_MISSING;
    size_t len = strnlen(token, LINK_MAX + 1);
    if (len > LINK_MAX) return AUTH_MALFORMED;
    const char *dot = memchr(token, '.', len);
    if (!dot) return AUTH_MALFORMED;
    uint8_t msg[LINK_MAX + 1], mac[crypto_auth_hmacsha256_BYTES + 4];
    size_t mlen = 0, maclen = 0;
    if (!auth_b64url_decode(token, (size_t)(dot - token), msg, LINK_MAX, &mlen) ||
        !auth_b64url_decode(dot + 1, len - (size_t)(dot + 1 - token), mac, sizeof mac, &maclen) ||
        maclen != crypto_auth_hmacsha256_BYTES)
        return AUTH_MALFORMED;
    uint8_t want[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, msg, mlen);
    crypto_auth_hmacsha256_final(&st, want);
    if (sodium_memcmp(want, mac, sizeof want) != 0) return AUTH_BAD_SIGNATURE;
    msg[mlen] = '\0';
    char *nl1 = memchr(msg, '\n', mlen);
    char *nl2 = nl1 ? memchr(nl1 + 1, '\n', mlen - (size_t)((uint8_t *)nl1 + 1 - msg)) : NULL;
    if (!nl2) return AUTH_MALFORMED;
    *nl1 = *nl2 = '\0';
    if (strcmp((const char *)msg, purpose) != 0) return AUTH_BAD_PURPOSE;
    char *end = NULL;
    long long exp = strtoll(nl2 + 1, &end, 10);
    if (!end || *end || end == nl2 + 1) return AUTH_MALFORMED;
    if (exp <= now_s) return AUTH_EXPIRED;
    size_t slen = strlen(nl1 + 1);
    if (slen >= cap) return AUTH_MALFORMED;
    memcpy(subject, nl1 + 1, slen + 1);
    return AUTH_OK;
}

void auth_random_token(char out[AUTH_TOKEN_LEN + 1])
{
    uint8_t raw[32];
    core_random_bytes(raw, sizeof raw);
    auth_b64url_encode(raw, sizeof raw, out, AUTH_TOKEN_LEN + 1);
}

void auth_sha256_hex(const char *s, char out[65])
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const uint8_t *)s, strlen(s));
    sodium_bin2hex(out, 65, h, sizeof h);
}

bool auth_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}
