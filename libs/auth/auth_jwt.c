/* Keys, roles and JWTs (compact JWS with EdDSA / Ed25519 only). */
#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "core.h"

/* ---------------------------------------------------------------- base64 */

size_t auth_b64url_encode(const void *in, size_t len, char *out, size_t outcap)
{
    size_t need = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (!out || outcap < need) return 0;
    sodium_bin2base64(out, outcap, in, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strlen(out);
}

bool auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    size_t n = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, cap, in, len, NULL, &n, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return false;
    if (end != in + len) return false;
    *outlen = n;
    return true;
}

bool auth_key_decode(const char *text, uint8_t *out, size_t want)
{
    if (!text) return false;
    while (isspace((unsigned char)*text))
        text++;
    size_t len = strlen(text);
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    if (!len || len > 512) return false;
    static const int variants[] = {
        sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    uint8_t buf[512];
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        size_t n = 0;
        const char *end = NULL;
        if (sodium_base642bin(buf, sizeof buf, text, len, NULL, &n, &end, variants[i]) == 0 &&
            end == text + len && n == want) {
            memcpy(out, buf, want);
            sodium_memzero(buf, sizeof buf);
            return true;
        }
    }
    sodium_memzero(buf, sizeof buf);
    return false;
}

/* ---------------------------------------------------------------- keys */

static void set_kid(auth_verifier *v)
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, v->pk, sizeof v->pk);
    sodium_bin2hex(v->kid, sizeof v->kid, h, AUTH_KID_LEN / 2);
}

static bool ensure_sodium(void)
{
    return sodium_init() >= 0;
}

bool auth_signer_from_base64(auth_signer *s, const char *b64)
{
    if (!ensure_sodium()) return false;
    uint8_t seed[64];
    memset(s, 0, sizeof *s);
    if (auth_key_decode(b64, seed, 32)) {
        crypto_sign_seed_keypair(s->pub.pk, s->sk, seed);
    } else if (auth_key_decode(b64, seed, 64)) {
        uint8_t pk[32];
        crypto_sign_seed_keypair(pk, s->sk, seed); /* the first 32 bytes are the seed */
        bool same = sodium_memcmp(pk, seed + 32, 32) == 0;
        memcpy(s->pub.pk, pk, 32);
        if (!same) {
            sodium_memzero(seed, sizeof seed);
            auth_signer_wipe(s);
            return false;
        }
    } else {
        return false;
    }
    sodium_memzero(seed, sizeof seed);
    set_kid(&s->pub);
    return true;
}

bool auth_verifier_from_base64(auth_verifier *v, const char *b64)
{
    if (!ensure_sodium()) return false;
    memset(v, 0, sizeof *v);
    if (!auth_key_decode(b64, v->pk, 32)) return false;
    set_kid(v);
    return true;
}

void auth_signer_generate(auth_signer *s)
{
    ensure_sodium();
    memset(s, 0, sizeof *s);
    crypto_sign_keypair(s->pub.pk, s->sk);
    set_kid(&s->pub);
}

void auth_signer_seed_base64(const auth_signer *s, char out[64])
{
    sodium_bin2base64(out, 64, s->sk, 32, sodium_base64_VARIANT_ORIGINAL);
}

void auth_verifier_base64(const auth_verifier *v, char out[64])
{
    sodium_bin2base64(out, 64, v->pk, 32, sodium_base64_VARIANT_ORIGINAL);
}

void auth_signer_wipe(auth_signer *s)
{
    sodium_memzero(s, sizeof *s);
}

/* ---------------------------------------------------------------- roles */

static const char *const role_names[] = {"none", "viewer", "editor", "admin"};

bool auth_role_parse(const char *name, auth_role *out)
{
    if (!name) return false;
    for (int i = AUTH_ROLE_VIEWER; i <= AUTH_ROLE_ADMIN; i++)
        if (strcmp(name, role_names[i]) == 0) {
            *out = (auth_role)i;
            return true;
        }
    return false;
}

const char *auth_role_name(auth_role r)
{
    return (unsigned)r <= AUTH_ROLE_ADMIN ? role_names[r] : "none";
}

bool auth_role_allows(auth_role have, auth_role need)
{
    if (have < AUTH_ROLE_VIEWER || have > AUTH_ROLE_ADMIN) return false;
    if (need <= AUTH_ROLE_NONE) return true;
    return have >= need;
}

/* ---------------------------------------------------------------- JWT */

const char *auth_status_text(auth_status s)
{
    switch (s) {
    case AUTH_OK:
        return "ok";
    case AUTH_MISSING:
        return "no bearer token";
    case AUTH_MALFORMED:
        return "malformed token";
    case AUTH_BAD_ALG:
        return "unsupported token algorithm";
    case AUTH_BAD_SIGNATURE:
        return "invalid token signature";
    case AUTH_EXPIRED:
        return "token expired";
    case AUTH_NOT_YET_VALID:
        return "token not yet valid";
    case AUTH_BAD_ISSUER:
        return "token from another issuer";
    case AUTH_BAD_PURPOSE:
        return "token made for another purpose";
    }
    return "invalid token";
}

static char *b64_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    size_t len = strlen(s);
    size_t cap = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = core_xcalloc(1, cap);
    auth_b64url_encode(s, len, out, cap);
    free(s);
    return out;
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v && *v) json_object_set_new(o, key, json_string(v));
}

char *auth_jwt_sign(const auth_signer *s, const auth_claims *c)
{
    json_t *hdr = json_pack("{s:s,s:s,s:s}", "alg", "EdDSA", "typ", "JWT", "kid", s->pub.kid);
    json_t *cl = json_object();
    set_str(cl, "iss", c->iss);
    set_str(cl, "sub", c->sub);
    set_str(cl, "email", c->email);
    set_str(cl, "jti", c->jti);
    if (c->role != AUTH_ROLE_NONE) set_str(cl, "role", auth_role_name(c->role));
    if (c->iat) json_object_set_new(cl, "iat", json_integer(c->iat));
    if (c->nbf) json_object_set_new(cl, "nbf", json_integer(c->nbf));
    if (c->exp) json_object_set_new(cl, "exp", json_integer(c->exp));
    char *h = b64_json(hdr), *p = b64_json(cl);
    json_decref(hdr);
    json_decref(cl);
    core_buf out = {0};
    core_buf_printf(&out, "%s.%s", h, p);
    free(h);
    free(p);
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const uint8_t *)out.data, out.len, s->sk);
    char enc[128];
    auth_b64url_encode(sig, sizeof sig, enc, sizeof enc);
    core_buf_printf(&out, ".%s", enc);
    return core_buf_steal(&out, NULL);
}

static json_t *decode_part(const char *p, size_t len)
{
    if (len == 0 || len > AUTH_JWT_MAX) return NULL;
    uint8_t *buf = core_xcalloc(1, len + 1);
    size_t n = 0;
    json_t *o = NULL;
    if (auth_b64url_decode(p, len, buf, len, &n))
        o = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (o && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

static bool copy_claim(json_t *cl, const char *key, char *out, size_t cap)
{
    json_t *v = json_object_get(cl, key);
    out[0] = '\0';
    if (!v) return true;
    if (!json_is_string(v) || json_string_length(v) >= cap) return false;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static bool time_claim(json_t *cl, const char *key, int64_t *out)
{
    json_t *v = json_object_get(cl, key);
    *out = 0;
    if (!v) return true;
    if (!json_is_integer(v)) return false;
    *out = json_integer_value(v);
    return *out > 0;
}

auth_status auth_jwt_verify(const auth_verifier *v, const char *token, int64_t now_s,
                            const char *iss, auth_claims *out)
{
    auth_claims tmp;
    if (!out) out = &tmp;
    memset(out, 0, sizeof *out);
    if (!token || !*token) return AUTH_MISSING;
    size_t len = strnlen(token, AUTH_JWT_MAX + 1);
    if (len > AUTH_JWT_MAX) return AUTH_MALFORMED;
    const char *d1 = memchr(token, '.', len);
    if (!d1) return AUTH_MALFORMED;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) return AUTH_MALFORMED;

    json_t *hdr = decode_part(token, (size_t)(d1 - token));
    if (!hdr) return AUTH_MALFORMED;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    bool alg_ok = alg && strcmp(alg, "EdDSA") == 0 && !json_object_get(hdr, "crit");
    json_decref(hdr);
    if (!alg_ok) return AUTH_BAD_ALG;

    uint8_t sig[crypto_sign_BYTES + 4];
    size_t siglen = 0;
    const char *s = d2 + 1;
    if (!auth_b64url_decode(s, len - (size_t)(s - token), sig, sizeof sig, &siglen) ||
        siglen != crypto_sign_BYTES)
        return AUTH_MALFORMED;
    if (crypto_sign_verify_detached(sig, (const uint8_t *)token, (size_t)(d2 - token), v->pk) != 0)
        return AUTH_BAD_SIGNATURE;

    json_t *cl = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!cl) return AUTH_MALFORMED;
    char role[16];
    bool ok = copy_claim(cl, "iss", out->iss, sizeof out->iss) &&
              copy_claim(cl, "sub", out->sub, sizeof out->sub) &&
              copy_claim(cl, "email", out->email, sizeof out->email) &&
              copy_claim(cl, "jti", out->jti, sizeof out->jti) &&
              copy_claim(cl, "role", role, sizeof role) && time_claim(cl, "iat", &out->iat) &&
              time_claim(cl, "nbf", &out->nbf) && time_claim(cl, "exp", &out->exp);
    json_decref(cl);
    if (!ok || !out->exp || !out->sub[0] || !auth_role_parse(role, &out->role))
        return AUTH_MALFORMED;
    if (out->exp <= now_s) return AUTH_EXPIRED;
    if ((out->nbf && out->nbf > now_s + AUTH_LEEWAY_S) ||
        (out->iat && out->iat > now_s + AUTH_LEEWAY_S))
        return AUTH_NOT_YET_VALID;
    if (iss && strcmp(iss, out->iss) != 0) return AUTH_BAD_ISSUER;
    return AUTH_OK;
}

const char *auth_bearer(const char *authorization)
{
    if (!authorization) return NULL;
    while (*authorization == ' ')
        authorization++;
    if (strncasecmp(authorization, "Bearer", 6) != 0 || authorization[6] != ' ') return NULL;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    return *t ? t : NULL;
}

int auth_authorize(const auth_verifier *v, const char *authorization, const char *query_token,
                   auth_role need, int64_t now_s, const char *iss, auth_claims *out,
                   const char **why)
{
    const char *token = auth_bearer(authorization);
    if (!token && query_token && *query_token) token = query_token;
    const char *dummy;
    if (!why) why = &dummy;
    if (!token) {
        *why = auth_status_text(authorization ? AUTH_MALFORMED : AUTH_MISSING);
        return 401;
    }
    auth_status st = auth_jwt_verify(v, token, now_s, iss, out);
    if (st != AUTH_OK) {
        *why = auth_status_text(st);
        return 401;
    }
    if (!auth_role_allows(out->role, need)) {
        *why = "this role may not do that";
        return 403;
    }
    *why = "ok";
    return 0;
}

const char *const auth_identity_headers[] = {AUTH_H_USER, AUTH_H_ROLE, AUTH_H_EMAIL, AUTH_H_JTI,
                                             NULL};

bool auth_is_identity_header(const char *name, size_t len)
{
    for (int i = 0; auth_identity_headers[i]; i++)
        if (strlen(auth_identity_headers[i]) == len &&
            strncasecmp(auth_identity_headers[i], name, len) == 0)
            return true;
    return false;
}
