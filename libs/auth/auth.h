/*
 * auth: identity primitives shared by the service that owns users (subscriber-manager) and the
 * services that only check identities (the gateway, any service doing defence in depth).
 *
 *   auth_signer / auth_verifier   Ed25519 keys from base64 (AUTH_SIGNING_KEY, AUTH_PUBLIC_KEY)
 *   auth_jwt_sign / _verify       compact JWS, alg "EdDSA" only (no "none", no HMAC algorithms)
 *   auth_role_*                   viewer < editor < admin
 *   auth_authorize                one call for a protected route: bearer token -> 0/401/403
 *   auth_password_*               argon2id (libsodium crypto_pwhash), also on libuv's pool
 *   auth_buckets_*                per-client token buckets (rate limiting, Retry-After)
 *   auth_throttle_*               failed-attempt slowdown per key (exponential lockout)
 *   auth_link_*                   signed, expiring link tokens (confirm, unsubscribe, ...)
 *   auth_random_token, auth_sha256_hex, auth_b64*  helpers
 *
 * Single-threaded like every library here: call from the loop's thread (the *_async password
 * functions do their hashing on libuv's thread pool and call back on the loop).
 */
#ifndef AUTH_H
#define AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---------------------------------------------------------------- base64 */

/* base64url without padding (RFC 4648 section 5), NUL-terminated. Returns the length written,
 * 0 when out is too small. */
size_t auth_b64url_encode(const void *in, size_t len, char *out, size_t outcap);
/* Decodes base64url without padding; false when malformed or longer than cap. */
bool auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen);
/* A key from configuration: standard base64 (padding optional) or base64url, which must decode
 * to exactly want bytes. Surrounding whitespace (a trailing newline of a file) is ignored. */
bool auth_key_decode(const char *text, uint8_t *out, size_t want);

/* ---------------------------------------------------------------- keys */

#define AUTH_KID_LEN 16

typedef struct auth_verifier {
    uint8_t pk[32];
    char kid[AUTH_KID_LEN + 1]; /* first 8 bytes of SHA-256(pk), hex: names the key in "kid" */
} auth_verifier;

typedef struct auth_signer {
    uint8_t sk[64];
    auth_verifier pub;
} auth_signer;

/* AUTH_SIGNING_KEY: base64 of the 32-byte Ed25519 seed (or of libsodium's 64-byte secret key,
 * whose embedded public key must then match). */
bool auth_signer_from_base64(auth_signer *s, const char *b64);
/* AUTH_PUBLIC_KEY: base64 of the 32-byte Ed25519 public key. */
bool auth_verifier_from_base64(auth_verifier *v, const char *b64);
/* A fresh key pair (for tests and scripts/secrets.sh's helper). */
void auth_signer_generate(auth_signer *s);
/* Writes the standard base64 of the seed / public key (for tests and tools). */
void auth_signer_seed_base64(const auth_signer *s, char out[64]);
void auth_verifier_base64(const auth_verifier *v, char out[64]);
/* Zeroes the secret key. */
void auth_signer_wipe(auth_signer *s);

/* ---------------------------------------------------------------- roles */

typedef enum auth_role {
    AUTH_ROLE_NONE = 0,
    AUTH_ROLE_VIEWER = 1,
    AUTH_ROLE_EDITOR = 2,
    AUTH_ROLE_ADMIN = 3,
} auth_role;

bool auth_role_parse(const char *name, auth_role *out); /* "viewer", "editor", "admin" */
const char *auth_role_name(auth_role r);                /* "none" for AUTH_ROLE_NONE */
/* Ordered roles: admin may do what an editor may, an editor what a viewer may. */
bool auth_role_allows(auth_role have, auth_role need);

/* ---------------------------------------------------------------- JWT */

typedef struct auth_claims {
    char iss[64];
    char sub[64];    /* the user's id */
    char email[256]; /* optional */
    char jti[64];    /* token id */
    auth_role role;
    int64_t iat, nbf, exp; /* seconds since the epoch; nbf 0 = absent */
} auth_claims;

typedef enum auth_status {
    AUTH_OK = 0,
    AUTH_MISSING,       /* no token */
    AUTH_MALFORMED,     /* not three base64url parts, bad JSON, missing claims */
    AUTH_BAD_ALG,       /* header alg is not EdDSA ("none", HS256, RS256 ...) or crit present */
    AUTH_BAD_SIGNATURE, /* signature does not verify with this key */
    AUTH_EXPIRED,       /* exp <= now */
    AUTH_NOT_YET_VALID, /* nbf or iat in the future (beyond the leeway) */
    AUTH_BAD_ISSUER,    /* iss differs from the expected one */
    AUTH_BAD_PURPOSE,   /* link tokens: made for another purpose */
} auth_status;

const char *auth_status_text(auth_status s);

/* Maximum accepted token length: longer input is AUTH_MALFORMED without further work. */
#define AUTH_JWT_MAX 4096
/* Clock skew tolerated for nbf/iat (exp is strict). */
#define AUTH_LEEWAY_S 30

/* Signs {"alg":"EdDSA","typ":"JWT","kid":...}.{claims}; empty strings and zero times are
 * omitted. Returns a malloc'd token. */
char *auth_jwt_sign(const auth_signer *s, const auth_claims *c);
/* Verifies signature, algorithm, exp (required), nbf, iat and iss (when iss is not NULL) and a
 * known role claim. out may be NULL; on failure its contents are unspecified. */
auth_status auth_jwt_verify(const auth_verifier *v, const char *token, int64_t now_s,
                            const char *iss, auth_claims *out);

/* "Bearer <token>" (scheme case-insensitive) -> pointer to the token inside header; NULL when
 * the header is NULL or not a bearer credential. */
const char *auth_bearer(const char *authorization);

/*
 * The whole check of a protected route. The token comes from the Authorization header, or
 * (only when the caller passes one, i.e. on streaming routes whose clients cannot set headers)
 * from query_token. Returns 0 (ok, *out filled), 401 (missing, malformed, expired, wrong key:
 * answer with WWW-Authenticate: Bearer) or 403 (valid token, role below need). *why says what,
 * for the problem detail (never contains the token).
 */
int auth_authorize(const auth_verifier *v, const char *authorization, const char *query_token,
                   auth_role need, int64_t now_s, const char *iss, auth_claims *out,
                   const char **why);

/* Headers carrying a verified identity from the gateway to an upstream (NULL-terminated). A
 * proxy deletes every one of them from the client's request before setting its own. */
extern const char *const auth_identity_headers[];
#define AUTH_H_USER  "X-Auth-User"
#define AUTH_H_ROLE  "X-Auth-Role"
#define AUTH_H_EMAIL "X-Auth-Email"
#define AUTH_H_JTI   "X-Auth-Token-Id"
/* True when name is one of auth_identity_headers (case-insensitive). */
bool auth_is_identity_header(const char *name, size_t len);

/* ---------------------------------------------------------------- passwords */

typedef struct auth_pwhash_params {
    unsigned long long opslimit; /* 0 = crypto_pwhash_OPSLIMIT_INTERACTIVE */
    size_t memlimit;             /* 0 = crypto_pwhash_MEMLIMIT_INTERACTIVE (64 MiB) */
} auth_pwhash_params;

#define AUTH_PWHASH_MAX   128 /* crypto_pwhash_STRBYTES */
#define AUTH_PASSWORD_MIN 8
#define AUTH_PASSWORD_MAX 1024

/* argon2id encoded hash ("$argon2id$v=19$m=...") into out. false on failure (out of memory). */
bool auth_password_hash(const char *password, const auth_pwhash_params *p,
                        char out[AUTH_PWHASH_MAX]);
bool auth_password_verify(const char *hash, const char *password);
/* A hash made with other parameters than p (rehash after a successful login). */
bool auth_password_needs_rehash(const char *hash, const auth_pwhash_params *p);

/* The same on libuv's thread pool (argon2id takes tens of milliseconds and 64 MiB: never on
 * the loop). hash_async: ok and the hash; verify_async: ok = the password matches (hash NULL).
 * The strings are copied; cb runs on the loop. */
typedef void (*auth_pw_cb)(void *data, bool ok, const char *hash);
void auth_password_hash_async(uv_loop_t *loop, const char *password, const auth_pwhash_params *p,
                              auth_pw_cb cb, void *data);
void auth_password_verify_async(uv_loop_t *loop, const char *hash, const char *password,
                                auth_pw_cb cb, void *data);

/* ---------------------------------------------------------------- rate limiting */

/* Token buckets per key (a client address): each key holds up to burst tokens, refilled at
 * rate per second; a request takes one. At most max_keys keys are tracked (full, idle buckets
 * are forgotten first, then the least recently used). */
typedef struct auth_buckets auth_buckets;
auth_buckets *auth_buckets_new(double rate_per_s, double burst, size_t max_keys);
void auth_buckets_free(auth_buckets *b);
/* true: allowed. false: *retry_after_ms until a token is there (round up to whole seconds
 * for Retry-After). */
bool auth_buckets_take(auth_buckets *b, const char *key, int64_t now_ms, int64_t *retry_after_ms);
size_t auth_buckets_size(const auth_buckets *b);

/* Failed attempts per key (an account, an address). The first `free_failures` failures within
 * window_ms cost nothing; each further failure locks the key for base_ms * 2^(n - free - 1),
 * capped at max_ms. A success clears the key; a key unused for window_ms is forgotten. */
typedef struct auth_throttle auth_throttle;
auth_throttle *auth_throttle_new(int free_failures, int64_t base_ms, int64_t max_ms,
                                 int64_t window_ms, size_t max_keys);
void auth_throttle_free(auth_throttle *t);
/* 0 when an attempt is allowed now, else the milliseconds to wait. */
int64_t auth_throttle_wait_ms(auth_throttle *t, const char *key, int64_t now_ms);
void auth_throttle_failure(auth_throttle *t, const char *key, int64_t now_ms);
void auth_throttle_success(auth_throttle *t, const char *key);
int auth_throttle_failures(auth_throttle *t, const char *key, int64_t now_ms);

/* ---------------------------------------------------------------- signed links */

/* "<b64url(purpose \n subject \n exp)>.<b64url(HMAC-SHA-256)>" with a 32-byte key: for
 * confirm, unsubscribe and preference links. Returns a malloc'd token. */
char *auth_link_sign(const uint8_t key[32], const char *purpose, const char *subject,
                     int64_t exp_s);
/* AUTH_OK and the subject (at most cap - 1 bytes), or AUTH_MALFORMED, AUTH_BAD_SIGNATURE,
 * AUTH_BAD_PURPOSE, AUTH_EXPIRED. The MAC is checked before anything else is believed. */
auth_status auth_link_verify(const uint8_t key[32], const char *token, const char *purpose,
                             int64_t now_s, char *subject, size_t cap);

/* ---------------------------------------------------------------- helpers */

#define AUTH_TOKEN_LEN 43 /* 32 random bytes in base64url */
void auth_random_token(char out[AUTH_TOKEN_LEN + 1]);
/* SHA-256 of the string, lower-case hex (refresh tokens are stored this way). */
void auth_sha256_hex(const char *s, char out[65]);
/* Constant-time comparison of equal-length buffers. */
bool auth_equal(const void *a, const void *b, size_t len);

#endif
