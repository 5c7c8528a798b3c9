/* Unit tests of subscriber-manager's domain code: e-mail and name validation, blind index,
 * key wrapping and sealing, the segment rule compiler (injection attempts included), CSV. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pii.h"

#define ID "0190c3d4-0000-7000-8000-000000000001"

static void test_email(void **state)
{
    (void)state;
    char out[SM_EMAIL_MAX + 1];
    const char *why;
    const char *in = "  Jane.Doe+news@Example.ORG \n";
    assert_true(sm_email_normalize(in, strlen(in), out, &why));
    assert_string_equal(out, "jane.doe+news@example.org");
    assert_true(sm_email_normalize("a@b.co", 6, out, &why));
    const char *bad[] = {
        "",         "plain",      "a@b",         "a@@b.com",    "a@b@c.com", ".a@b.com",
        "a.@b.com", "a..b@c.com", "a b@c.com",   "a@-b.com",    "a@b-.com",  "a@b..com",
        "a@b.c",    "a@b.1com",   "\"a\"@b.com", "a@b.com\x01", "a@b_c.com", "<a@b.com>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (sm_email_normalize(bad[i], strlen(bad[i]), out, &why)) fail_msg("accepted %s", bad[i]);
        assert_non_null(why);
    }
    char longl[80];
    memset(longl, 'a', 65);
    snprintf(longl + 65, sizeof longl - 65, "@b.com");
    assert_false(sm_email_normalize(longl, strlen(longl), out, &why));
    char huge[400];
    memset(huge, 'a', sizeof huge);
    huge[10] = '@';
    memcpy(huge + sizeof huge - 5, ".com", 4);
    huge[sizeof huge - 1] = '\0';
    assert_false(sm_email_normalize(huge, strlen(huge), out, &why));
}

static void test_name(void **state)
{
    (void)state;
    char out[SM_NAME_MAX + 1];
    const char *why;
    const char *zoe = "  Zoë Ångström  ";
    assert_true(sm_name_normalize(zoe, strlen(zoe), out, &why));
    assert_string_equal(out, "Zoë Ångström");
    assert_true(sm_name_normalize("", 0, out, &why));
    assert_false(sm_name_normalize("a\x01"
                                   "b",
                                   3, out, &why));
    assert_false(sm_name_normalize("\xc3\x28", 2, out, &why));     /* bad continuation */
    assert_false(sm_name_normalize("\xed\xa0\x80", 3, out, &why)); /* surrogate */
    assert_false(sm_name_normalize("\xc0\xaf", 2, out, &why));     /* overlong */
    char big[300];
    memset(big, 'x', sizeof big);
    assert_false(sm_name_normalize(big, sizeof big, out, &why));
}

static sm_keys keys(void)
{
    sm_keys k = {0};
    for (int i = 0; i < SM_KEY_BYTES; i++) {
        k.data[i] = (uint8_t)i;
        k.index[i] = (uint8_t)(i + 1);
        k.token[i] = (uint8_t)(i + 2);
    }
    return k;
}

static void test_blind_index(void **state)
{
    (void)state;
    sm_keys k = keys(), k2 = keys();
    k2.index[0] ^= 1;
    uint8_t a[SM_INDEX_BYTES], b[SM_INDEX_BYTES], c[SM_INDEX_BYTES], d[SM_INDEX_BYTES];
    sm_blind_index(&k, "jane@example.org", a);
    sm_blind_index(&k, "jane@example.org", b);
    sm_blind_index(&k, "john@example.org", c);
    sm_blind_index(&k2, "jane@example.org", d);
    assert_memory_equal(a, b, sizeof a);     /* deterministic: lookups work */
    assert_memory_not_equal(a, c, sizeof a); /* different addresses differ */
    assert_memory_not_equal(a, d, sizeof a); /* keyed: no key, no dictionary attack */
    uint8_t plain[32];
    crypto_hash_sha256(plain, (const uint8_t *)"jane@example.org", 16);
    assert_memory_not_equal(a, plain, sizeof a);
    /* it is HMAC-SHA-256(index key, "email:" + address), with or without the precomputed
     * state: indexes stored before and after sm_keys_ready match */
    uint8_t want[crypto_auth_hmacsha256_BYTES]; /* truncated to its first SM_INDEX_BYTES */
    crypto_auth_hmacsha256(want, (const uint8_t *)"email:jane@example.org", 22, k.index);
    assert_memory_equal(a, want, sizeof a);
    char text[CORE_UUID_STRLEN + 1];
    sm_blind_index_text(&k, "jane@example.org", text);
    core_uuid u;
    assert_true(core_uuid_parse(text, &u));
    assert_memory_equal(u.b, want, SM_INDEX_BYTES);
    sm_keys_ready(&k);
    assert_true(k.index_ready);
    for (int i = 0; i < 3; i++) {
        sm_blind_index(&k, "jane@example.org", b);
        assert_memory_equal(b, want, SM_INDEX_BYTES);
    }
    sm_blind_index(&k, "john@example.org", d);
    assert_memory_equal(c, d, sizeof c);
}

static void test_keys_and_sealing(void **state)
{
    (void)state;
    sm_keys k = keys(), other = keys();
    other.data[5] ^= 0x40;
    uint8_t dek[SM_KEY_BYTES], wrapped[SM_WRAPPED_LEN], back[SM_KEY_BYTES];
    sm_key_new(&k, ID, dek, wrapped);
    assert_true(sm_key_unwrap(&k, ID, wrapped, sizeof wrapped, back));
    assert_memory_equal(dek, back, sizeof dek);
    assert_false(sm_key_unwrap(&other, ID, wrapped, sizeof wrapped, back)); /* wrong master */
    assert_false(sm_key_unwrap(&k, "0190c3d4-0000-7000-8000-000000000002", wrapped, sizeof wrapped,
                               back)); /* bound to the subscriber */
    assert_null(memmem(wrapped, sizeof wrapped, dek, sizeof dek));

    const char *email = "jane@example.org";
    uint8_t sealed[64 + SM_SEAL_OVERHEAD];
    sm_seal(dek, ID, "email", email, strlen(email), sealed);
    assert_null(memmem(sealed, strlen(email) + SM_SEAL_OVERHEAD, "jane", 4));
    size_t n = 0;
    char *p = sm_open(dek, ID, "email", sealed, strlen(email) + SM_SEAL_OVERHEAD, &n);
    assert_non_null(p);
    assert_string_equal(p, email);
    free(p);
    /* another field, another subscriber, a flipped bit: refused */
    assert_null(sm_open(dek, ID, "name", sealed, strlen(email) + SM_SEAL_OVERHEAD, NULL));
    assert_null(sm_open(dek, "x", "email", sealed, strlen(email) + SM_SEAL_OVERHEAD, NULL));
    sealed[30] ^= 1;
    assert_null(sm_open(dek, ID, "email", sealed, strlen(email) + SM_SEAL_OVERHEAD, NULL));
    assert_null(sm_open(dek, ID, "email", sealed, 10, NULL));
    /* two seals of the same text differ (random nonce) */
    uint8_t s1[64], s2[64];
    sm_seal(dek, ID, "name", "Jane", 4, s1);
    sm_seal(dek, ID, "name", "Jane", 4, s2);
    assert_memory_not_equal(s1, s2, 4 + SM_SEAL_OVERHEAD);
}

/* A sealer's seals are plain XChaCha20-Poly1305 (libsodium's own encryption with the same nonce
 * gives the same bytes), open with sm_open, and never share a nonce. */
static void test_sealer(void **state)
{
    (void)state;
    uint8_t dek[SM_KEY_BYTES];
    randombytes_buf(dek, sizeof dek);
    sm_sealer s;
    sm_sealer_init(&s, dek);
    const char *texts[] = {"jane@example.org", "Jane Doe", "{\"email\":\"jane@example.org\"}"};
    const char *fields[] = {"email", "name", "event"};
    uint8_t sealed[3][64 + SM_SEAL_OVERHEAD];
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(texts[i]);
        sm_sealer_seal(&s, ID, fields[i], texts[i], len, sealed[i]);
        assert_int_equal(sealed[i][0], 1);
        char *p = sm_open(dek, ID, fields[i], sealed[i], len + SM_SEAL_OVERHEAD, NULL);
        assert_non_null(p);
        assert_string_equal(p, texts[i]);
        free(p);
        /* the same nonce through libsodium's XChaCha20-Poly1305 */
        char ad[128];
        snprintf(ad, sizeof ad, "%s|%s", ID, fields[i]);
        uint8_t want[64 + SM_SEAL_OVERHEAD];
        crypto_aead_xchacha20poly1305_ietf_encrypt(want, NULL, (const uint8_t *)texts[i], len,
                                                   (const uint8_t *)ad, strlen(ad), NULL,
                                                   sealed[i] + 1, dek);
        assert_memory_equal(want, sealed[i] + 25, len + 16);
    }
    /* one nonce prefix (one subkey), three different nonces */
    assert_memory_equal(sealed[0] + 1, sealed[1] + 1, 16);
    assert_memory_equal(sealed[0] + 1, sealed[2] + 1, 16);
    assert_memory_not_equal(sealed[0] + 1, sealed[1] + 1, 24);
    assert_memory_not_equal(sealed[1] + 1, sealed[2] + 1, 24);
    assert_memory_not_equal(sealed[0] + 1, sealed[2] + 1, 24);
    /* another sealer of the same key: another prefix */
    sm_sealer t;
    sm_sealer_init(&t, dek);
    assert_memory_not_equal(s.prefix, t.prefix, sizeof s.prefix);
    sm_sealer_wipe(&s);
    sm_sealer_wipe(&t);
    uint8_t zero[sizeof s] = {0};
    assert_memory_equal(&s, zero, sizeof s);

    /* keys wrapped by one sealer of the master key: each unwraps, for its subscriber only */
    sm_keys k = keys();
    sm_sealer master;
    sm_sealer_init(&master, k.data);
    static const char *ids[] = {ID, "0190c3d4-0000-7000-8000-000000000002"};
    uint8_t deks[2][SM_KEY_BYTES], wrapped[2][SM_WRAPPED_LEN], back[SM_KEY_BYTES];
    for (int i = 0; i < 2; i++)
        sm_key_new_sealed(&master, ids[i], deks[i], wrapped[i]);
    sm_sealer_wipe(&master);
    assert_memory_not_equal(deks[0], deks[1], SM_KEY_BYTES);
    assert_memory_not_equal(wrapped[0] + 1, wrapped[1] + 1, 24); /* nonces */
    for (int i = 0; i < 2; i++) {
        assert_true(sm_key_unwrap(&k, ids[i], wrapped[i], SM_WRAPPED_LEN, back));
        assert_memory_equal(back, deks[i], SM_KEY_BYTES);
        assert_false(sm_key_unwrap(&k, ids[1 - i], wrapped[i], SM_WRAPPED_LEN, back));
    }
}

/* ---------------------------------------------------------------- rules */

static sm_sql compile_ok(const char *json)
{
    json_error_t e;
    json_t *r = json_loads(json, 0, &e);
    if (!r) fail_msg("bad test JSON: %s", e.text);
    sm_sql q;
    char err[256];
    if (!sm_rule_compile(r, 1, &q, err, sizeof err)) fail_msg("rejected %s: %s", json, err);
    json_decref(r);
    return q;
}

static void compile_bad(const char *json, const char *expect)
{
    json_t *r = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(r);
    sm_sql q;
    char err[256] = "";
    if (sm_rule_compile(r, 1, &q, err, sizeof err)) fail_msg("accepted %s", json);
    if (expect && !strstr(err, expect)) fail_msg("error for %s was: %s", json, err);
    json_decref(r);
}

static void test_rules_compile(void **state)
{
    (void)state;
    sm_sql q = compile_ok("{\"all\":[{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\"},"
                          "{\"any\":[{\"field\":\"attributes.city\",\"op\":\"eq\",\"value\":"
                          "\"Paris\"},{\"field\":\"attributes.age\",\"op\":\"gte\",\"value\":30}]},"
                          "{\"not\":{\"field\":\"list\",\"op\":\"in\",\"value\":"
                          "\"0190c3d4-0000-7000-8000-0000000000aa\"}}]}");
    assert_int_equal(q.nparams, 7);
    assert_string_equal(q.params[0], "active");
    assert_string_equal(q.params[1], "city");
    assert_string_equal(q.params[2], "\"Paris\"");
    assert_non_null(strstr(q.sql.data, "$7::uuid"));
    /* all joins with AND, any with OR */
    const char *any = strstr(q.sql.data, " OR ");
    assert_non_null(any);
    assert_non_null(strstr(q.sql.data, " AND "));
    assert_true(any > strstr(q.sql.data, "attributes"));
    assert_null(strstr(q.sql.data, "Paris"));
    sm_sql_free(&q);

    q = compile_ok(
        "{\"field\":\"created_at\",\"op\":\"after\",\"value\":\"2026-01-01T00:00:00Z\"}");
    assert_string_equal(q.params[0], "2026-01-01T00:00:00.000Z");
    sm_sql_free(&q);
    q = compile_ok("{\"field\":\"status\",\"op\":\"in\",\"value\":[\"active\",\"bounced\"]}");
    assert_string_equal(q.params[0], "{active,bounced}");
    sm_sql_free(&q);
    q = compile_ok("{\"field\":\"confirmed_at\",\"op\":\"within_days\",\"value\":30}");
    sm_sql_free(&q);
    q = compile_ok("{\"field\":\"attributes.vip\",\"op\":\"exists\",\"value\":false}");
    sm_sql_free(&q);

    compile_bad("{\"field\":\"status\",\"op\":\"eq\",\"value\":\"gone\"}", "status");
    compile_bad("{\"field\":\"email\",\"op\":\"eq\",\"value\":\"a@b.c\"}", "unknown field");
    compile_bad("{\"field\":\"status\",\"op\":\"like\",\"value\":\"active\"}", "operator");
    compile_bad("{\"field\":\"attributes.age\",\"op\":\"gt\",\"value\":\"30\"}", "number");
    compile_bad("{\"field\":\"created_at\",\"op\":\"after\",\"value\":\"yesterday\"}", "RFC 3339");
    compile_bad("{\"all\":[]}", "non-empty");
    compile_bad("{\"all\":[{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\"}],"
                "\"any\":[]}",
                "only key");
    compile_bad("[]", "object");
    compile_bad("{\"field\":\"status\",\"op\":\"eq\"}", "exactly");
    compile_bad("{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\",\"x\":1}", "exactly");
    /* too deep */
    core_buf deep = {0};
    for (int i = 0; i < 10; i++)
        core_buf_puts(&deep, "{\"not\":");
    core_buf_puts(&deep, "{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\"}");
    for (int i = 0; i < 10; i++)
        core_buf_puts(&deep, "}");
    compile_bad(deep.data, "deep");
    core_buf_free(&deep);
    /* too many conditions */
    core_buf many = {0};
    core_buf_puts(&many, "{\"any\":[");
    for (int i = 0; i < 65; i++)
        core_buf_printf(&many, "%s{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\"}",
                        i ? "," : "");
    core_buf_puts(&many, "]}");
    compile_bad(many.data, "64");
    core_buf_free(&many);
}

static void test_rules_injection(void **state)
{
    (void)state;
    /* SQL in field names, operators and list ids is refused outright */
    compile_bad("{\"field\":\"status; DROP TABLE subscribers; --\",\"op\":\"eq\",\"value\":"
                "\"active\"}",
                NULL);
    compile_bad("{\"field\":\"attributes.x') OR 1=1 --\",\"op\":\"eq\",\"value\":\"a\"}", NULL);
    compile_bad("{\"field\":\"status\",\"op\":\"= 'active' OR 1=1 --\",\"value\":\"active\"}",
                NULL);
    compile_bad("{\"field\":\"list\",\"op\":\"in\",\"value\":\"x' OR '1'='1\"}", NULL);
    compile_bad("{\"field\":\"status\",\"op\":\"in\",\"value\":[\"active}','{x\"]}", NULL);
    /* SQL in values only ever travels as a parameter */
    const char *evil = "x' OR '1'='1'; DROP TABLE subscribers; --";
    char json[512];
    snprintf(json, sizeof json,
             "{\"any\":[{\"field\":\"attributes.city\",\"op\":\"eq\",\"value\":\"%s\"},"
             "{\"field\":\"attributes.city\",\"op\":\"contains\",\"value\":\"%s\"}]}",
             evil, evil);
    sm_sql q = compile_ok(json);
    assert_null(strstr(q.sql.data, "DROP"));
    assert_null(strstr(q.sql.data, "'1'"));
    bool found = false;
    for (int i = 0; i < q.nparams; i++)
        if (strstr(q.params[i], "DROP TABLE")) found = true;
    assert_true(found);
    /* the SQL text is made only of our fixed fragments: no quote other than ours */
    const char *allowed[] = {"'unsubscribed'", "'number'", NULL};
    core_buf copy = {0};
    core_buf_puts(&copy, q.sql.data);
    for (int i = 0; allowed[i]; i++) {
        char *p;
        while ((p = strstr(copy.data, allowed[i])))
            memset(p, '_', strlen(allowed[i]));
    }
    assert_null(strchr(copy.data, '\''));
    assert_null(strchr(copy.data, ';'));
    core_buf_free(&copy);
    sm_sql_free(&q);
}

/* ---------------------------------------------------------------- CSV */

/* Records as "recno:[field][field]|", or "recno:!error|". */
typedef struct recs {
    core_buf out;
    int n;
    int errors;
} recs;

static void on_rec(void *ud, int64_t recno, char **f, const size_t *lens, int n, const char *error)
{
    recs *r = ud;
    r->n++;
    core_buf_printf(&r->out, "%lld:", (long long)recno);
    if (error) {
        r->errors++;
        core_buf_printf(&r->out, "!%s|", error);
        return;
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal(f[i][lens[i]], '\0'); /* callers may use a field as a C string */
        core_buf_puts(&r->out, "[");
        core_buf_append(&r->out, f[i], lens[i]);
        core_buf_puts(&r->out, "]");
    }
    core_buf_puts(&r->out, "|");
}

static const char *recs_text(const recs *r)
{
    return r->out.data ? r->out.data : "";
}

static void parse_in_pieces(const char *text, size_t piece, recs *r)
{
    sm_csv c;
    sm_csv_init(&c);
    size_t len = strlen(text);
    for (size_t i = 0; i < len; i += piece)
        sm_csv_feed(&c, text + i, len - i < piece ? len - i : piece, on_rec, r);
    sm_csv_finish(&c, on_rec, r);
    sm_csv_free(&c);
}

/* Two feeds, the first ending at `at` (0: an empty first feed). */
static void parse_split(const char *text, size_t at, recs *r)
{
    sm_csv c;
    sm_csv_init(&c);
    sm_csv_feed(&c, text, at, on_rec, r);
    sm_csv_feed(&c, text + at, strlen(text) - at, on_rec, r);
    sm_csv_finish(&c, on_rec, r);
    sm_csv_free(&c);
}

/* Input arrives split anywhere: text must read as want in pieces of every size (every size up
 * to 256, then sparser) and in two feeds split at every position. */
static void check_csv(const char *text, const char *want)
{
    size_t len = strlen(text);
    for (size_t piece = 1; piece <= len; piece += piece < 256 ? 1 : 997) {
        recs r = {0};
        parse_in_pieces(text, piece, &r);
        if (strcmp(recs_text(&r), want) != 0)
            fail_msg("pieces of %zu: got %.300s\nwant %.300s", piece, recs_text(&r), want);
        core_buf_free(&r.out);
    }
    for (size_t at = 0; at <= len; at++) {
        recs r = {0};
        parse_split(text, at, &r);
        if (strcmp(recs_text(&r), want) != 0)
            fail_msg("split at %zu: got %.300s\nwant %.300s", at, recs_text(&r), want);
        core_buf_free(&r.out);
    }
}

static void repeat(core_buf *b, char ch, size_t n)
{
    for (size_t i = 0; i < n; i++)
        core_buf_append(b, &ch, 1);
}

static void test_csv(void **state)
{
    (void)state;
    check_csv("email,name\r\na@b.com,\"Doe, Jane\"\r\n\"x\"\"y@b.com\",\"multi\nline\"\n"
              "\nlast@b.com,end",
              "1:[email][name]|2:[a@b.com][Doe, Jane]|3:[x\"y@b.com][multi\nline]|"
              "5:[last@b.com][end]|");
    /* a quoted field with a CRLF, a comma and doubled quotes, one at its very end */
    check_csv("id,note\r\n1,\"say \"\"hi\"\"\r\nthen, \"\"bye\"\"\"\r\n2,x\r\n",
              "1:[id][note]|2:[1][say \"hi\"\r\nthen, \"bye\"]|3:[2][x]|");
    /* lone CRs end records; a CR's LF is not a blank line, a second CR is */
    check_csv("a,b\rc,d\r\re\r", "1:[a][b]|2:[c][d]|4:[e]|");
    check_csv("a\r\r\nb", "1:[a]|3:[b]|");
    check_csv("a\n\rb\r\n", "1:[a]|3:[b]|");
    check_csv("\"a\rb\"\r\"c\"\r\n", "1:[a\rb]|2:[c]|");
    /* the last record without a line break */
    check_csv("a,b\nc,\"d", "1:[a][b]|2:[c][d]|");
    check_csv("a,b\nc,", "1:[a][b]|2:[c][]|");
    check_csv("a\n\"open\r\nstill", "1:[a]|2:[open\r\nstill]|");
    check_csv("a\n\"x\"", "1:[a]|2:[x]|");
    check_csv("a\n", "1:[a]|");
    check_csv("", "");
    check_csv("\n\r\n\r", "");
    /* text after a closing quote is kept; a quote inside an unquoted field is text */
    check_csv("\"a\"b,\"c\"\"\"d,e\"f\n", "1:[ab][c\"d][e\"f]|");
    check_csv(",,\n\"\",x\n", "1:[][][]|2:[][x]|");

    /* fields of exactly SM_CSV_FIELD_MAX bytes are accepted, one byte more is an error for
     * that record only; a doubled quote counts as one byte */
    const char *too_long = "2:!a field is longer than 4096 bytes|";
    for (int extra = 0; extra <= 1; extra++) {
        core_buf in = {0}, want = {0};
        core_buf_puts(&in, "a,b\n");
        repeat(&in, 'x', SM_CSV_FIELD_MAX + (size_t)extra);
        core_buf_puts(&in, ",y\nc,d");
        core_buf_puts(&want, "1:[a][b]|");
        if (extra) {
            core_buf_puts(&want, too_long);
        } else {
            core_buf_puts(&want, "2:[");
            repeat(&want, 'x', SM_CSV_FIELD_MAX);
            core_buf_puts(&want, "][y]|");
        }
        core_buf_puts(&want, "3:[c][d]|");
        check_csv(in.data, want.data);

        core_buf_reset(&in);
        core_buf_reset(&want);
        core_buf_puts(&in, "a,b\n\"\r\n");
        repeat(&in, 'x', SM_CSV_FIELD_MAX - 3 + (size_t)extra);
        core_buf_puts(&in, "\"\"\"\r\nc,d\r\n");
        core_buf_puts(&want, "1:[a][b]|");
        if (extra) {
            core_buf_puts(&want, too_long);
        } else {
            core_buf_puts(&want, "2:[\r\n");
            repeat(&want, 'x', SM_CSV_FIELD_MAX - 3);
            core_buf_puts(&want, "\"]|");
        }
        core_buf_puts(&want, "3:[c][d]|");
        check_csv(in.data, want.data);
        core_buf_free(&in);
        core_buf_free(&want);
    }

    /* a huge quoted field, with separators and line breaks past the limit, then a good record:
     * the reader keeps its place, and does not keep the field */
    core_buf big = {0};
    core_buf_puts(&big, "a,b\n\"");
    for (int i = 0; i < 20000; i++)
        core_buf_puts(&big, "xx,\"\"\r\n");
    core_buf_puts(&big, "\",z\nc,d\n");
    for (size_t piece = 1; piece <= big.len; piece = piece * 3 + 1) {
        recs r = {0};
        sm_csv c;
        sm_csv_init(&c);
        for (size_t i = 0; i < big.len; i += piece)
            sm_csv_feed(&c, big.data + i, big.len - i < piece ? big.len - i : piece, on_rec, &r);
        sm_csv_finish(&c, on_rec, &r);
        assert_string_equal(recs_text(&r),
                            "1:[a][b]|2:!a field is longer than 4096 bytes|3:[c][d]|");
        assert_true(c.rec.cap <= 4 * SM_CSV_FIELD_MAX);
        sm_csv_free(&c);
        core_buf_free(&r.out);
    }
    core_buf_free(&big);

    /* SM_CSV_MAX_FIELDS fields are accepted, one more is an error for that record only */
    core_buf in = {0}, want = {0};
    for (int extra = 0; extra <= 1; extra++) {
        core_buf_reset(&in);
        core_buf_reset(&want);
        core_buf_puts(&want, "1:");
        for (int i = 0; i < SM_CSV_MAX_FIELDS + extra; i++) {
            core_buf_printf(&in, i ? ",f%d" : "f%d", i);
            core_buf_printf(&want, "[f%d]", i);
        }
        core_buf_puts(&in, "\nc,d\n");
        core_buf_puts(&want, "|");
        if (extra) {
            core_buf_reset(&want);
            core_buf_puts(&want, "1:!more than 32 fields|");
        }
        core_buf_puts(&want, "2:[c][d]|");
        check_csv(in.data, want.data);
    }
    core_buf_free(&in);
    core_buf_free(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_email),           cmocka_unit_test(test_name),
        cmocka_unit_test(test_blind_index),     cmocka_unit_test(test_keys_and_sealing),
        cmocka_unit_test(test_sealer),          cmocka_unit_test(test_rules_compile),
        cmocka_unit_test(test_rules_injection), cmocka_unit_test(test_csv),
    };
    return cmocka_run_group_tests_name("subscriber-manager domain", tests, NULL, NULL);
}
