/*
 * The segment rule compiler: JSON rules -> a parameterized SQL boolean expression. Field names
 * and operators come from fixed tables; every value the rule carries becomes a parameter. See
 * pii.h for the language.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pii.h"

#define MAX_DEPTH 8
#define MAX_CONDS 64

typedef struct ctx {
    sm_sql *out;
    int first;
    int conds;
    bool nonnull; /* the condition just compiled is never NULL: no COALESCE needed */
    char *err;
    size_t errlen;
} ctx;

static const char *const statuses[] = {"pending",     "active",  "unsubscribed",
                                       "blocklisted", "bounced", NULL};

static bool is_status(const char *s)
{
    for (int i = 0; s && statuses[i]; i++)
        if (strcmp(s, statuses[i]) == 0) return true;
    return false;
}

static bool fail(ctx *c, const char *fmt, const char *what)
{
    snprintf(c->err, c->errlen, fmt, what);
    return false;
}

/* Adds a parameter and appends "$n" (with a cast when given). */
static void param(ctx *c, const char *value, const char *cast)
{
    sm_sql *s = c->out;
    if (s->nparams == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->params = core_xrealloc(s->params, (size_t)s->cap * sizeof *s->params);
    }
    s->params[s->nparams++] = core_xstrdup(value);
    core_buf_printf(&s->sql, "$%d%s%s", c->first + s->nparams - 1, cast ? "::" : "",
                    cast ? cast : "");
}

static void put(ctx *c, const char *sql)
{
    core_buf_puts(&c->out->sql, sql);
}

static bool attr_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = k[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static bool compile(ctx *c, const json_t *rule, int depth);

static bool compile_group(ctx *c, const json_t *arr, const char *joiner, int depth)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return fail(c, "%s must be a non-empty array of rules", joiner);
    put(c, "(");
    size_t i;
    const json_t *r;
    json_array_foreach(arr, i, r)
    {
        if (i) put(c, strcmp(joiner, "all") == 0 ? " AND " : " OR ");
        if (!compile(c, r, depth + 1)) return false;
    }
    put(c, ")");
    return true;
}

static bool cond_status(ctx *c, const char *op, const json_t *v)
{
    if (!strcmp(op, "eq") || !strcmp(op, "ne")) {
        if (!is_status(json_string_value(v)))
            return fail(c, "%s: value must be a subscriber status", "status");
        put(c, !strcmp(op, "eq") ? "s.status = " : "s.status <> ");
        param(c, json_string_value(v), NULL);
        c->nonnull = true;
        return true;
    }
    if (!strcmp(op, "in") || !strcmp(op, "not_in")) {
        if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 5)
            return fail(c, "%s: value must be an array of statuses", "status");
        core_buf arr = {0};
        core_buf_puts(&arr, "{");
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!is_status(json_string_value(e))) {
                core_buf_free(&arr);
                return fail(c, "%s: value must be an array of statuses", "status");
            }
            core_buf_printf(&arr, "%s%s", i ? "," : "", json_string_value(e));
        }
        core_buf_puts(&arr, "}");
        put(c, !strcmp(op, "in") ? "s.status = ANY(" : "NOT (s.status = ANY(");
        param(c, arr.data, "text[]");
        put(c, !strcmp(op, "in") ? ")" : "))");
        core_buf_free(&arr);
        c->nonnull = true;
        return true;
    }
    return fail(c, "status: unknown operator %s (eq, ne, in, not_in)", op);
}

static bool cond_list(ctx *c, const char *op, const json_t *v)
{
    core_uuid u;
    const char *id = json_string_value(v);
    if (!id || !core_uuid_parse(id, &u)) return fail(c, "%s: value must be a list id", "list");
    char canon[CORE_UUID_STRLEN + 1];
    core_uuid_format(&u, canon);
    bool in = !strcmp(op, "in");
    if (!in && strcmp(op, "not_in") != 0)
        return fail(c, "list: unknown operator %s (in, not_in)", op);
    put(c, in ? "EXISTS (" : "NOT EXISTS (");
    put(c, "SELECT 1 FROM subscriptions l WHERE l.subscriber_id = s.id AND l.list_id = ");
    param(c, canon, "uuid");
    put(c, " AND l.status <> 'unsubscribed')");
    c->nonnull = true;
    return true;
}

static bool cond_date(ctx *c, const char *col, const char *op, const json_t *v)
{
    char field[64];
    snprintf(field, sizeof field, "s.%s", col);
    if (!strcmp(op, "before") || !strcmp(op, "after")) {
        int64_t ms;
        if (!json_is_string(v) || !core_parse_rfc3339(json_string_value(v), &ms))
            return fail(c, "%s: value must be an RFC 3339 time", col);
        char ts[CORE_RFC3339_LEN + 1];
        core_format_rfc3339(ms, ts);
        core_buf_printf(&c->out->sql, "%s %s ", field, !strcmp(op, "before") ? "<" : ">");
        param(c, ts, "timestamptz");
        return true;
    }
    if (!strcmp(op, "within_days")) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 36500)
            return fail(c, "%s: within_days needs an integer from 1 to 36500", col);
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)json_integer_value(v));
        core_buf_printf(&c->out->sql, "%s >= now() - make_interval(days => ", field);
        param(c, n, "int");
        put(c, ")");
        return true;
    }
    return fail(c, "%s: unknown operator (before, after, within_days)", col);
}

static bool cond_attr(ctx *c, const char *key, const char *op, const json_t *v)
{
    if (!attr_key_ok(key))
        return fail(c, "%s: attribute names are 1-64 of A-Z a-z 0-9 _ -", "attributes");
    if (!strcmp(op, "eq") || !strcmp(op, "ne")) {
        if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v))
            return fail(c, "attributes.%s: eq/ne need a string, number or boolean", key);
        char *js = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!strcmp(op, "eq")) {
            /* containment: never NULL, and served by the GIN index on attributes */
            put(c, "s.attributes @> jsonb_build_object(");
            param(c, key, "text");
            put(c, ", ");
            param(c, js, "jsonb");
            put(c, ")");
            c->nonnull = true;
        } else {
            put(c, "s.attributes -> ");
            param(c, key, "text");
            put(c, " <> ");
            param(c, js, "jsonb");
        }
        free(js);
        return true;
    }
    static const char *const cmp_ops[][2] = {
        {"gt", ">"}, {"gte", ">="}, {"lt", "<"}, {"lte", "<="}};
    for (size_t i = 0; i < sizeof cmp_ops / sizeof cmp_ops[0]; i++) {
        if (strcmp(op, cmp_ops[i][0]) != 0) continue;
        if (!json_is_number(v)) return fail(c, "attributes.%s: comparisons need a number", key);
        char num[64];
        snprintf(num, sizeof num, "%.17g", json_number_value(v));
        put(c, "(CASE WHEN jsonb_typeof(s.attributes -> ");
        param(c, key, "text");
        put(c, ") = 'number' THEN (s.attributes ->> ");
        param(c, key, "text");
        core_buf_printf(&c->out->sql, ")::numeric END) %s ", cmp_ops[i][1]);
        param(c, num, "numeric");
        return true;
    }
    if (!strcmp(op, "contains")) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256)
            return fail(c, "attributes.%s: contains needs a string of 1-256 bytes", key);
        put(c, "strpos(lower(s.attributes ->> ");
        param(c, key, "text");
        put(c, "), lower(");
        param(c, json_string_value(v), "text");
        put(c, ")) > 0");
        return true;
    }
    if (!strcmp(op, "exists")) {
        if (!json_is_boolean(v)) return fail(c, "attributes.%s: exists needs true or false", key);
        put(c, json_is_true(v) ? "s.attributes ? " : "NOT (s.attributes ? ");
        param(c, key, "text");
        if (!json_is_true(v)) put(c, ")");
        c->nonnull = true;
        return true;
    }
    return fail(c, "attributes: unknown operator %s", op);
}

static bool compile_cond(ctx *c, const json_t *rule)
{
    const char *field = json_string_value(json_object_get(rule, "field"));
    const char *op = json_string_value(json_object_get(rule, "op"));
    const json_t *v = json_object_get(rule, "value");
    if (!field || !op || !v || json_object_size(rule) != 3)
        return fail(c, "%s", "a condition is exactly {\"field\", \"op\", \"value\"}");
    if (++c->conds > MAX_CONDS) return fail(c, "%s", "at most 64 conditions");
    /* A condition that can be NULL (a missing attribute, a NULL date) is wrapped in
     * COALESCE(..., false), so it is false, also under "not". The others stay bare, so the
     * planner can use the status index and the GIN index on attributes. */
    size_t start = c->out->sql.len;
    c->nonnull = false;
    bool ok;
    if (!strcmp(field, "status"))
        ok = cond_status(c, op, v);
    else if (!strcmp(field, "list"))
        ok = cond_list(c, op, v);
    else if (!strcmp(field, "created_at") || !strcmp(field, "updated_at") ||
             !strcmp(field, "confirmed_at"))
        ok = cond_date(c, field, op, v);
    else if (!strncmp(field, "attributes.", 11))
        ok = cond_attr(c, field + 11, op, v);
    else
        return fail(c, "unknown field %s", field);
    if (ok && !c->nonnull) {
        core_buf *b = &c->out->sql;
        char *cond = core_xstrdup(b->data + start);
        b->len = start;
        b->data[start] = '\0';
        core_buf_printf(b, "COALESCE((%s), false)", cond);
        free(cond);
    }
    return ok;
}

static bool compile(ctx *c, const json_t *rule, int depth)
{
    if (depth > MAX_DEPTH) return fail(c, "%s", "rules nest at most 8 levels deep");
    if (!json_is_object(rule)) return fail(c, "%s", "a rule must be an object");
    const json_t *v;
    if ((v = json_object_get(rule, "all")) || (v = json_object_get(rule, "any"))) {
        if (json_object_size(rule) != 1)
            return fail(c, "%s", "all/any must be the only key of its rule");
        return compile_group(c, v, json_object_get(rule, "all") ? "all" : "any", depth);
    }
    if ((v = json_object_get(rule, "not"))) {
        if (json_object_size(rule) != 1)
            return fail(c, "%s", "not must be the only key of its rule");
        put(c, "NOT (");
        if (!compile(c, v, depth + 1)) return false;
        put(c, ")");
        return true;
    }
    return compile_cond(c, rule);
}

bool sm_rule_compile(const json_t *rule, int first_param, sm_sql *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    ctx c = {.out = out, .first = first_param, .err = err, .errlen = errlen};
    if (!compile(&c, rule, 0)) {
        sm_sql_free(out);
        return false;
    }
    return true;
}

void sm_sql_free(sm_sql *s)
{
    for (int i = 0; i < s->nparams; i++)
        free(s->params[i]);
    free(s->params);
    core_buf_free(&s->sql);
    memset(s, 0, sizeof *s);
}
