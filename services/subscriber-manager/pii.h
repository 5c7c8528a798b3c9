/*
 * subscriber-manager's pure domain code (no loop, no database): personal data protection,
 * validation, the segment rule compiler and the CSV reader. Unit-tested in tests/.
 */
#ifndef SM_PII_H
#define SM_PII_H

#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#define SM_KEY_BYTES     32
#define SM_INDEX_BYTES   16
#define SM_EMAIL_MAX     254
#define SM_NAME_MAX      200
#define SM_WRAPPED_LEN   (1 + 24 + SM_KEY_BYTES + 16)
#define SM_SEAL_OVERHEAD (1 + 24 + 16)

/* ---------------------------------------------------------------- email and name */

/* Trims, lower-cases and validates an address (RFC 5321 lengths, a dot-atom local part, a
 * dotted domain of letters, digits and hyphens). false with *why on a bad address. */
bool sm_email_normalize(const char *in, size_t len, char out[SM_EMAIL_MAX + 1], const char **why);
/* Whether s holds valid UTF-8 (shortest forms, no surrogates, at most U+10FFFF). */
bool sm_utf8_valid(const char *s, size_t len);
/* Trims and validates a display name (valid UTF-8, no control characters, at most SM_NAME_MAX
 * bytes). An empty name is allowed (the caller may default it). */
bool sm_name_normalize(const char *in, size_t len, char out[SM_NAME_MAX + 1], const char **why);

/* ---------------------------------------------------------------- keys */

/* The keys of the service, decoded from the environment. */
typedef struct sm_keys {
    uint8_t data[SM_KEY_BYTES];  /* SUBSCRIBER_DATA_KEY: wraps per-subscriber keys */
    uint8_t index[SM_KEY_BYTES]; /* SUBSCRIBER_INDEX_KEY: blind index HMAC */
    uint8_t token[SM_KEY_BYTES]; /* TOKEN_SIGNING_KEY: confirm / unsubscribe / preference links */
    /* set by sm_keys_ready: the blind index HMAC with the key already absorbed (two of its
     * four SHA-256 blocks for a usual address, paid once instead of per row of an import) */
    crypto_auth_hmacsha256_state index_state;
    bool index_ready;
} sm_keys;

/* Precomputes what every blind index shares; call after filling the keys (without it
 * sm_blind_index computes the whole HMAC each time, with the same result). */
void sm_keys_ready(sm_keys *k);

/* Keyed blind index of a normalized email: HMAC-SHA-256(index key, "email:" + email) truncated
 * to 128 bits (collisions need ~2^64 addresses). Stored in a uuid column: PostgreSQL's fixed
 * 16-byte type, compared with one memcmp where a bytea is a varlena and a function call per
 * comparison (half the cost of the unique index in a million-row import). */
void sm_blind_index(const sm_keys *k, const char *email, uint8_t out[SM_INDEX_BYTES]);
/* The same as the uuid text of a SQL parameter ($n::uuid). */
void sm_blind_index_text(const sm_keys *k, const char *email, char out[CORE_UUID_STRLEN + 1]);

/* A fresh per-subscriber data key, wrapped with the master key (bound to the subscriber id). */
void sm_key_new(const sm_keys *k, const char *subscriber_id, uint8_t dek[SM_KEY_BYTES],
                uint8_t wrapped[SM_WRAPPED_LEN]);
bool sm_key_unwrap(const sm_keys *k, const char *subscriber_id, const uint8_t *wrapped, size_t len,
                   uint8_t dek[SM_KEY_BYTES]);

/* XChaCha20-Poly1305 with the subscriber's key; the associated data binds the ciphertext to
 * the subscriber and the field ("email", "name", "ip", "event"). out holds len +
 * SM_SEAL_OVERHEAD bytes. */
void sm_seal(const uint8_t dek[SM_KEY_BYTES], const char *subscriber_id, const char *field,
             const void *plain, size_t len, uint8_t *out);
/* Several seals under one key, as sm_seal makes them and sm_open opens them, for a third of
 * the cost of the key setup: XChaCha20's subkey is HChaCha20 of the key and the nonce's first
 * 16 bytes, so the sealer draws those once, derives the subkey once, and gives each seal its
 * own last 8 bytes (a counter from a random start). Nonces stay unique: the prefix is random
 * per sealer. */
typedef struct sm_sealer {
    uint8_t subkey[32];
    uint8_t prefix[16];
    uint64_t next;
} sm_sealer;
void sm_sealer_init(sm_sealer *s, const uint8_t dek[SM_KEY_BYTES]);
void sm_sealer_seal(sm_sealer *s, const char *subscriber_id, const char *field, const void *plain,
                    size_t len, uint8_t *out);
void sm_sealer_wipe(sm_sealer *s);
/* sm_key_new with a sealer of the master key (sm_sealer_init(master, k->data)): a batch of new
 * subscribers' keys wrapped with one key setup. */
void sm_key_new_sealed(sm_sealer *master, const char *subscriber_id, uint8_t dek[SM_KEY_BYTES],
                       uint8_t wrapped[SM_WRAPPED_LEN]);
/* Returns a malloc'd NUL-terminated plaintext (length in *len), NULL when it does not open. */
char *sm_open(const uint8_t dek[SM_KEY_BYTES], const char *subscriber_id, const char *field,
              const uint8_t *sealed, size_t len, size_t *plain_len);

/* Lower-case hex of bytes, "\\x..." for a bytea text parameter. */
void sm_bytea_hex(core_buf *b, const uint8_t *data, size_t len);

/* ---------------------------------------------------------------- segment rules */

/*
 * The rule language (JSON), compiled to a parameterized SQL boolean expression over the table
 * alias "s" (subscribers). Nothing of the rule is pasted into SQL: field names and operators
 * are looked up in fixed tables, every value becomes a parameter ($n).
 *
 *   rule  := {"all": [rule, ...]} | {"any": [rule, ...]} | {"not": rule} | cond
 *   cond  := {"field": F, "op": OP, "value": V}
 *   F     := "status" | "list" | "created_at" | "updated_at" | "confirmed_at"
 *            | "attributes.<key>"      (key: 1-64 of [A-Za-z0-9_-])
 *   status:       eq, ne (V a status), in, not_in (V an array of statuses)
 *   list:         in, not_in (V a list id: subscribed and not unsubscribed from it)
 *   *_at:         before, after (V an RFC 3339 time), within_days (V 1..36500)
 *   attributes.k: eq, ne (string, number or boolean), gt, gte, lt, lte (number),
 *                 contains (string, case-insensitive substring), exists (V true/false)
 *
 * At most 8 levels deep and 64 conditions.
 */
typedef struct sm_sql {
    core_buf sql;  /* the expression */
    char **params; /* text parameters, $1.. in order */
    int nparams;
    int cap;
} sm_sql;

/* first_param: the number of the first parameter ($first_param). false with an error message
 * in err (naming the offending part) when the rule is invalid. */
bool sm_rule_compile(const json_t *rule, int first_param, sm_sql *out, char *err, size_t errlen);
void sm_sql_free(sm_sql *s);

/* ---------------------------------------------------------------- CSV */

/*
 * A streaming RFC 4180 reader: feed bytes as they arrive, get whole records. Quoted fields may
 * hold commas, quotes ("") and line breaks; CRLF, LF or a lone CR end a record. A field longer than
 * SM_CSV_FIELD_MAX or a record with more than SM_CSV_MAX_FIELDS fields is an error for that
 * record (reported, the reader goes on with the next one).
 */
#define SM_CSV_MAX_FIELDS 32
#define SM_CSV_FIELD_MAX  4096

typedef struct sm_csv {
    char *fields[SM_CSV_MAX_FIELDS];
    size_t lens[SM_CSV_MAX_FIELDS];
    /* the record being read: its finished fields, each NUL-terminated, then the field being read
     * (from field_start) */
    core_buf rec;
    size_t field_start;
    size_t offs[SM_CSV_MAX_FIELDS];
    int nfields;
    int state;
    bool too_long;
    bool too_many;
    int64_t line; /* record number, 1-based (the header is record 1) */
} sm_csv;

typedef void (*sm_csv_record_fn)(void *data, int64_t recno, char **fields, const size_t *lens,
                                 int n, const char *error);
void sm_csv_init(sm_csv *c);
/* Calls fn for every complete record in data. */
void sm_csv_feed(sm_csv *c, const char *data, size_t len, sm_csv_record_fn fn, void *ud);
/* End of input: a last record without a line break. */
void sm_csv_finish(sm_csv *c, sm_csv_record_fn fn, void *ud);
void sm_csv_free(sm_csv *c);

#endif
