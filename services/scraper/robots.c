/*
 * robots.txt as RFC 9309 says: records of user-agent lines followed by rules; the group whose
 * user-agent token matches ours (case-insensitive product token, the longest match) applies,
 * else the "*" group; among the rules matching a path the longest pattern wins, Allow on ties;
 * '*' matches any run of characters and a final '$' anchors the end. Crawl-delay (not in the
 * RFC, but honoured by Bing, Yandex and us) is read from the same group.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scraper.h"

typedef struct rule {
    char *pattern;
    size_t len;
    bool allow;
} rule;

struct sc_robots {
    rule *rules;
    size_t n, cap;
    int64_t delay_ms;
    bool deny_all;
};

static void add_rule(sc_robots *r, const char *pat, size_t len, bool allow)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->rules = core_xrealloc(r->rules, r->cap * sizeof *r->rules);
    }
    r->rules[r->n++] = (rule){core_xstrndup(pat, len), len, allow};
}

static void clear_rules(sc_robots *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->rules[i].pattern);
    r->n = 0;
    r->delay_ms = 0;
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* How well a user-agent line's token matches ours: -1 no match, 0 for "*", else its length. */
static int agent_match(const char *tok, size_t len, const char *agent)
{
    if (len == 1 && tok[0] == '*') return 0;
    size_t alen = strlen(agent);
    if (len == 0 || len > alen) return -1;
    return strncasecmp(tok, agent, len) == 0 ? (int)len : -1;
}

sc_robots *sc_robots_parse(const char *text, size_t len, const char *agent)
{
    sc_robots *r = core_xcalloc(1, sizeof *r);
    if (!text) return r;
    /* Two passes: find the best group's score, then collect every group with that score (a
     * crawler may be named in several groups; their rules combine). */
    int best = -1;
    for (int pass = 0; pass < 2; pass++) {
        const char *p = text, *end = text + len;
        bool in_agents = false; /* the previous line was a user-agent line */
        bool group_selected = false;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            const char *hash = memchr(p, '#', (size_t)(le - p));
            const char *ls = p, *lend = hash ? hash : le;
            p = nl ? nl + 1 : end;
            trim(&ls, &lend);
            if (ls == lend) continue;
            const char *colon = memchr(ls, ':', (size_t)(lend - ls));
            if (!colon) continue;
            const char *ks = ls, *ke = colon, *vs = colon + 1, *ve = lend;
            trim(&ks, &ke);
            trim(&vs, &ve);
            size_t klen = (size_t)(ke - ks), vlen = (size_t)(ve - vs);
            if (klen == 10 && strncasecmp(ks, "user-agent", 10) == 0) {
                if (!in_agents) group_selected = false;
                in_agents = true;
                /* the product token: up to the first '/' or blank */
                size_t t = 0;
                while (t < vlen && vs[t] != '/' && !isspace((unsigned char)vs[t]))
                    t++;
                int m = agent_match(vs, t, agent);
                if (pass == 0 && m > best) best = m;
                if (pass == 1 && m >= 0 && m == best) group_selected = true;
                continue;
            }
            in_agents = false;
            if (pass == 0 || !group_selected) continue;
            if (klen == 5 && strncasecmp(ks, "allow", 5) == 0) {
                if (vlen) add_rule(r, vs, vlen, true);
            } else if (klen == 8 && strncasecmp(ks, "disallow", 8) == 0) {
                if (vlen) add_rule(r, vs, vlen, false);
            } else if (klen == 11 && strncasecmp(ks, "crawl-delay", 11) == 0) {
                char buf[32];
                size_t n = vlen < sizeof buf - 1 ? vlen : sizeof buf - 1;
                memcpy(buf, vs, n);
                buf[n] = '\0';
                char *e;
                double d = strtod(buf, &e);
                if (e != buf && d >= 0 && d <= 86400) r->delay_ms = (int64_t)(d * 1000 + 0.5);
            }
        }
        if (best < 0) break; /* no group applies: everything allowed */
    }
    return r;
}

sc_robots *sc_robots_deny_all(void)
{
    sc_robots *r = core_xcalloc(1, sizeof *r);
    r->deny_all = true;
    return r;
}

/* Does pattern (with * and a final $) match a prefix of path (or all of it with $)? */
static bool pattern_match(const char *pat, size_t plen, const char *path)
{
    if (plen == 0) return true;
    if (pat[0] == '$' && plen == 1) return *path == '\0';
    if (pat[0] == '*') {
        /* collapse runs of '*' */
        while (plen > 1 && pat[1] == '*')
            pat++, plen--;
        for (const char *s = path;; s++) {
            if (pattern_match(pat + 1, plen - 1, s)) return true;
            if (!*s) return false;
        }
    }
    if (!*path || *path != pat[0]) return false;
    return pattern_match(pat + 1, plen - 1, path + 1);
}

bool sc_robots_allowed(const sc_robots *r, const char *path)
{
    if (r->deny_all) return false;
    if (!path || !*path) path = "/";
    if (strcmp(path, "/robots.txt") == 0) return true;
    size_t best = 0;
    bool allowed = true, matched = false;
    for (size_t i = 0; i < r->n; i++) {
        const rule *ru = &r->rules[i];
        if (!pattern_match(ru->pattern, ru->len, path)) continue;
        if (!matched || ru->len > best || (ru->len == best && ru->allow)) {
            best = ru->len;
            allowed = ru->allow;
            matched = true;
        }
    }
    return allowed;
}

int64_t sc_robots_crawl_delay_ms(const sc_robots *r)
{
    return r->delay_ms;
}

void sc_robots_free(sc_robots *r)
{
    if (!r) return;
    clear_rules(r);
    free(r->rules);
    free(r);
}
