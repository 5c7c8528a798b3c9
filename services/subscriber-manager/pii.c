/* Personal data: normalization, validation, blind index, per-subscriber keys, sealing. */
#include <ctype.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "pii.h"

static void trim(const char **s, size_t *len)
{
    while (*len && isspace((unsigned char)**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

static bool local_char(unsigned char c)
{
    return isalnum(c) || strchr("!#$%&'*+/=?^_`{|}~.-", c) != NULL;
}

bool sm_email_normalize(const char *in, size_t len, char out[SM_EMAIL_MAX + 1], const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    if (!in) {
        *why = "email is required";
        return false;
    }
    trim(&in, &len);
    if (len == 0) {
        *why = "email is required";
        return false;
    }
    if (len > SM_EMAIL_MAX) {
        *why = "email is longer than 254 characters";
        return false;
    }
    const char *at = memchr(in, '@', len);
    if (!at || memchr(at + 1, '@', len - (size_t)(at + 1 - in))) {
        *why = "email must contain exactly one @";
        return false;
    }
    size_t llen = (size_t)(at - in), dlen = len - llen - 1;
    if (llen == 0 || llen > 64) {
        *why = "the part before @ must be 1 to 64 characters";
        return false;
    }
    for (size_t i = 0; i < llen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (!local_char(c) || (c == '.' && (i == 0 || i == llen - 1 || in[i - 1] == '.'))) {
            *why = "the part before @ has a character or dot that is not allowed";
            return false;
        }
    }
    if (dlen < 3 || dlen > 253) {
        *why = "the domain is not valid";
        return false;
    }
    const char *d = at + 1;
    size_t label = 0, labels = 0, last_start = 0;
    for (size_t i = 0; i <= dlen; i++) {
        unsigned char c = i < dlen ? (unsigned char)d[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || d[i - 1] == '-' || d[i - label] == '-') {
                *why = "the domain is not valid";
                return false;
            }
            labels++;
            last_start = i - label;
            label = 0;
        } else if (isalnum(c) || c == '-') {
            label++;
        } else {
            *why = "the domain has a character that is not allowed";
            return false;
        }
    }
    /* at least two labels and an alphabetic top-level label of 2+ characters */
    size_t tld_len = dlen - last_start;
    bool tld_alpha = tld_len >= 2;
    for (size_t i = last_start; i < dlen && tld_alpha; i++)
        if (!isalpha((unsigned char)d[i]) && d[i] != '-' && !isdigit((unsigned char)d[i]))
            tld_alpha = false;
    if (labels < 2 || !tld_alpha || isdigit((unsigned char)d[last_start])) {
        *why = "the domain is not valid";
        return false;
    }
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[len] = '\0';
    return true;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool sm_utf8_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq((const unsigned char *)s + i, len - i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

bool sm_name_normalize(const char *in, size_t len, char out[SM_NAME_MAX + 1], const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    if (!in) in = "";
    trim(&in, &len);
    if (len > SM_NAME_MAX) {
        *why = "name is longer than 200 bytes";
        return false;
    }
    for (size_t i = 0; i < len;) {
        const unsigned char *s = (const unsigned char *)in + i;
        size_t n = utf8_seq(s, len - i);
        if (n == 0) {
            *why = "name is not valid UTF-8";
            return false;
        }
        if (n == 1 && (s[0] < 0x20 || s[0] == 0x7F)) {
            *why = "name contains a control character";
            return false;
        }
        i += n;
    }
    memcpy(out, in, len);
    out[len] = '\0';
    return true;
}

/* The blind index's HMAC keyed and fed its "email:" prefix: what every address shares. */
static void index_state_init(crypto_auth_hmacsha256_state *st, const uint8_t key[SM_KEY_BYTES])
{
    crypto_auth_hmacsha256_init(st, key, SM_KEY_BYTES);
    crypto_auth_hmacsha256_update(st, (const uint8_t *)"email:", 6);
}

void sm_keys_ready(sm_keys *k)
{
    index_state_init(&k->index_state, k->index);
    k->index_ready = true;
}

void sm_blind_index(const sm_keys *k, const char *email, uint8_t out[SM_INDEX_BYTES])
{
    crypto_auth_hmacsha256_state st;
    if (k->index_ready)
        st = k->index_state;
    else
        index_state_init(&st, k->index);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)email, strlen(email));
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(out, mac, SM_INDEX_BYTES);
    sodium_memzero(&st, sizeof st);
}

void sm_blind_index_text(const sm_keys *k, const char *email, char out[CORE_UUID_STRLEN + 1])
{
    core_uuid u;
    sm_blind_index(k, email, u.b);
    core_uuid_format(&u, out);
}

static void make_ad(char *ad, size_t cap, const char *id, const char *field)
{
    size_t il = strlen(id), fl = strlen(field);
    if (il + fl + 2 > cap) {
        il = 0;
        fl = 0;
    }
    memcpy(ad, id, il);
    ad[il] = '|';
    memcpy(ad + il + 1, field, fl);
    ad[il + 1 + fl] = '\0';
}

void sm_sealer_init(sm_sealer *s, const uint8_t dek[SM_KEY_BYTES])
{
    /* core_random_bytes: the kernel's CSPRNG through a per-thread buffer (libsodium's
     * randombytes_buf is a getrandom(2) per call) */
    core_random_bytes(s->prefix, sizeof s->prefix);
    crypto_core_hchacha20(s->subkey, s->prefix, dek, NULL);
    /* a random start: a single seal's nonce is all random, as before the sealer */
    core_random_bytes(&s->next, sizeof s->next);
}

void sm_sealer_seal(sm_sealer *s, const char *subscriber_id, const char *field, const void *plain,
                    size_t len, uint8_t *out)
{
    char ad[128];
    make_ad(ad, sizeof ad, subscriber_id, field);
    out[0] = 1; /* format version */
    /* the XChaCha20 nonce: prefix, then the counter; ChaCha20's nonce is 4 zero bytes and the
     * counter (what crypto_aead_xchacha20poly1305_ietf_encrypt does after HChaCha20) */
    uint8_t suffix[8], inner[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
    uint64_t n = s->next++;
    for (int i = 0; i < 8; i++)
        suffix[i] = (uint8_t)(n >> (8 * i));
    memcpy(out + 1, s->prefix, sizeof s->prefix);
    memcpy(out + 1 + sizeof s->prefix, suffix, sizeof suffix);
    memcpy(inner + 4, suffix, sizeof suffix);
    crypto_aead_chacha20poly1305_ietf_encrypt(out + 25, NULL, plain, len, (const uint8_t *)ad,
                                              strlen(ad), NULL, inner, s->subkey);
}

void sm_sealer_wipe(sm_sealer *s)
{
    sodium_memzero(s, sizeof *s);
}

void sm_seal(const uint8_t dek[SM_KEY_BYTES], const char *subscriber_id, const char *field,
             const void *plain, size_t len, uint8_t *out)
{
    sm_sealer s;
    sm_sealer_init(&s, dek);
    sm_sealer_seal(&s, subscriber_id, field, plain, len, out);
    sm_sealer_wipe(&s);
}

char *sm_open(const uint8_t dek[SM_KEY_BYTES], const char *subscriber_id, const char *field,
              const uint8_t *sealed, size_t len, size_t *plain_len)
{
    if (!sealed || len < SM_SEAL_OVERHEAD || sealed[0] != 1) return NULL;
    char ad[128];
    make_ad(ad, sizeof ad, subscriber_id, field);
    size_t n = len - SM_SEAL_OVERHEAD;
    char *out = malloc(n + 1);
    unsigned long long got = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)out, &got, NULL, sealed + 25,
                                                   len - 25, (const uint8_t *)ad, strlen(ad),
                                                   sealed + 1, dek) != 0) {
        free(out);
        return NULL;
    }
    out[got] = '\0';
    if (plain_len) *plain_len = (size_t)got;
    return out;
}

void sm_key_new(const sm_keys *k, const char *subscriber_id, uint8_t dek[SM_KEY_BYTES],
                uint8_t wrapped[SM_WRAPPED_LEN])
{
    sm_sealer master;
    sm_sealer_init(&master, k->data);
    sm_key_new_sealed(&master, subscriber_id, dek, wrapped);
    sm_sealer_wipe(&master);
}

void sm_key_new_sealed(sm_sealer *master, const char *subscriber_id, uint8_t dek[SM_KEY_BYTES],
                       uint8_t wrapped[SM_WRAPPED_LEN])
{
    core_random_bytes(dek, SM_KEY_BYTES);
    sm_sealer_seal(master, subscriber_id, "dek", dek, SM_KEY_BYTES, wrapped);
}

bool sm_key_unwrap(const sm_keys *k, const char *subscriber_id, const uint8_t *wrapped, size_t len,
                   uint8_t dek[SM_KEY_BYTES])
{
    if (len != SM_WRAPPED_LEN) return false;
    size_t n = 0;
    char *p = sm_open(k->data, subscriber_id, "dek", wrapped, len, &n);
    if (!p) return false;
    bool ok = n == SM_KEY_BYTES;
    if (ok) memcpy(dek, p, SM_KEY_BYTES);
    sodium_memzero(p, n);
    free(p);
    return ok;
}

void sm_bytea_hex(core_buf *b, const uint8_t *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    core_buf_append(b, "\\x", 2);
    for (size_t i = 0; i < len; i++) {
        char two[2] = {hex[data[i] >> 4], hex[data[i] & 15]};
        core_buf_append(b, two, 2);
    }
}
