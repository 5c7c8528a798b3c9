/*
 * Feeds and sitemaps, read as a stream with expat: RSS 2.0 (and 1.0/RDF), Atom 1.0, sitemap
 * urlsets and sitemap indexes, gzip-compressed or not. No tree is built (a sitemap may list
 * 50 000 URLs), nothing outside the document is read, entity expansion is bounded.
 *
 * Elements are matched by local name, case-insensitively for feeds, as the libxml2 version
 * did, so RSS 0.9x/1.0 and Atom 0.3 read like their successors; the namespace is checked where
 * a look-alike would mislead: content:encoded, an item's own <link> (not atom:link), a
 * sitemap's own <loc> (not image:loc). Namespaces are resolved here rather than by expat, so
 * that an undeclared prefix (media:title without xmlns:media) costs that element, not the
 * feed. Expat stops at the first well-formedness error, where libxml2 recovered: the entries
 * completed before it are kept, and the two errors most feeds have (a bare '&', bytes that are
 * not UTF-8) are repaired and the document read again.
 */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

/* Debian's libexpat is built with DTD support; its header declares the entity-expansion
 * limits only when told so. */
#define XML_DTD 1
#include <expat.h>

#include "scraper.h"

#define NS_CONTENT "http://purl.org/rss/1.0/modules/content/"

/* Entity expansion may make the parsed text at most this many times the document once it
 * passes the threshold (expat's defaults: 100 times, 8 MiB). Feeds hardly ever declare
 * entities: one that expands past a megabyte is an attack, not a feed. */
#define MAX_AMPLIFICATION    10.0f
#define AMPLIFICATION_ACTIVE (1ULL << 20)
/* Documents go to expat in pieces of this size. Whole, expat would copy them into a buffer of
 * its own (11 MB more for a 50 000-URL sitemap); but it counts the lines of every piece except
 * the last, a third of the parse, so a feed of ordinary size goes in one. */
#define PARSE_CHUNK (256 * 1024)

char *sc_gunzip(const char *data, size_t len, size_t max_bytes, size_t *out_len)
{
    if (len < 2 || (unsigned char)data[0] != 0x1f || (unsigned char)data[1] != 0x8b) return NULL;
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return NULL;
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    core_buf b = {0};
    char chunk[16384];
    int rc;
    do {
        zs.next_out = (Bytef *)chunk;
        zs.avail_out = sizeof chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) break;
        core_buf_append(&b, chunk, sizeof chunk - zs.avail_out);
        if (b.len > max_bytes) {
            rc = Z_MEM_ERROR;
            break;
        }
    } while (rc != Z_STREAM_END && zs.avail_in > 0);
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        core_buf_free(&b);
        return NULL;
    }
    core_buf_append(&b, "", 0);
    return core_buf_steal(&b, out_len);
}

/* ---------------------------------------------------------------- dates */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};

int64_t sc_parse_date(const char *s)
{
    if (!s) return 0;
    while (isspace((unsigned char)*s))
        s++;
    int64_t ms;
    if (core_parse_rfc3339(s, &ms)) return ms;
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    /* ISO 8601 without seconds or zone, or a bare date */
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10) {
        const char *t = s + 10;
        if (*t == 'T' || *t == ' ') sscanf(t + 1, "%2d:%2d:%2d", &h, &mi, &se);
        if (mo < 1 || mo > 12 || d < 1 || d > 31) return 0;
        return ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 24 + h) * 60 + mi) * 60000LL +
               se * 1000LL;
    }
    /* RFC 822: [Wdy,] DD Mon YYYY HH:MM[:SS] zone */
    const char *p = strchr(s, ',');
    p = p ? p + 1 : s;
    char mon[8] = "", zone[16] = "";
    int cnt = sscanf(p, "%d %3s %d %d:%d:%d %15s", &d, mon, &y, &h, &mi, &se, zone);
    if (cnt < 3) return 0;
    if (cnt == 5) { /* no seconds: the zone went where seconds were expected */
        se = 0;
        sscanf(p, "%*d %*3s %*d %*d:%*d %15s", zone);
    }
    mo = 0;
    for (int i = 0; i < 12; i++)
        if (strncasecmp(mon, months[i], 3) == 0) mo = i + 1;
    if (!mo || d < 1 || d > 31) return 0;
    if (y < 100) y += y < 50 ? 2000 : 1900;
    int64_t t = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 24 + h) * 60 + mi) * 60000LL +
                se * 1000LL;
    int off = 0;
    if ((zone[0] == '+' || zone[0] == '-') && isdigit((unsigned char)zone[1])) {
        long z = strtol(zone + 1, NULL, 10);
        off = (int)((z / 100) * 60 + z % 100) * (zone[0] == '-' ? -1 : 1);
    } else if (strcasecmp(zone, "EST") == 0)
        off = -300;
    else if (strcasecmp(zone, "EDT") == 0)
        off = -240;
    else if (strcasecmp(zone, "CST") == 0)
        off = -360;
    else if (strcasecmp(zone, "CDT") == 0)
        off = -300;
    else if (strcasecmp(zone, "MST") == 0)
        off = -420;
    else if (strcasecmp(zone, "MDT") == 0)
        off = -360;
    else if (strcasecmp(zone, "PST") == 0)
        off = -480;
    else if (strcasecmp(zone, "PDT") == 0)
        off = -420;
    return t - off * 60000LL;
}

/* ---------------------------------------------------------------- the parser's state */

typedef enum field {
    F_NONE,
    F_FEED_TITLE,
    F_TITLE,
    F_LINK, /* RSS: the text is the URL */
    F_SUMMARY,
    F_CONTENT,
    F_AUTHOR,
    F_RSS_DATE, /* pubDate or dc:date, the first that parses */
    F_GUID,
    F_PUBLISHED, /* Atom: the last one counts */
    F_UPDATED,
    F_LOC,
    F_LASTMOD,
} field;

typedef struct ns_binding {
    char *prefix; /* "" for the default namespace */
    char *uri;    /* NULL: no namespace (xmlns="") */
    int depth;    /* of the element that declares it */
} ns_binding;

typedef struct xml_base {
    char *url; /* absolute when the document's URL or an outer xml:base is */
    int depth;
} xml_base;

typedef struct feed_parser {
    XML_Parser xp;
    sc_feed *out;
    size_t cap; /* out->entries' allocated length */
    const char *doc_url;
    int depth; /* of the current element, the root's is 1 */
    bool root_seen, root_closed;
    char *foreign_root;   /* the local name of a root that is no feed */
    const char *root_ns;  /* sitemaps: entries and their fields are in the root's namespace */
    const char *entry_ns; /* RSS: an item's own <link> shares its namespace */
    int channel_depth;    /* RSS: of the open <channel>, 0 when none */
    int entry_depth;      /* of the open item, entry, url or sitemap */
    int author_depth;     /* Atom: of the entry's open <author> */
    sc_entry cur;         /* the open entry: added once its end tag is read */
    char *guid;           /* RSS: a permalink guid stands in for a missing link */
    int64_t updated_ms;   /* Atom: stands in for a missing <published> */
    field capture;        /* the field whose text is being read */
    int capture_depth;    /* of its element: the text of every descendant is part of it */
    core_buf text;
    ns_binding *ns;
    size_t n_ns, cap_ns;
    xml_base *bases;
    size_t n_bases, cap_bases;
    char *declared_encoding; /* from the XML declaration */
    char *foreign_encoding;  /* not one of expat's: sc_to_utf8 converts it if no byte map fits */
} feed_parser;

static void set_once(char **dst, char *v)
{
    if (*dst || !v) {
        free(v);
        return;
    }
    *dst = v;
}

static void entry_free(sc_entry *e)
{
    free(e->link);
    free(e->title);
    free(e->author);
    free(e->summary);
    free(e->content);
    memset(e, 0, sizeof *e);
}

/* Frees what one reading of the document built, the entries included. */
static void parser_clear(feed_parser *p)
{
    sc_feed_free(p->out);
    p->cap = 0;
    entry_free(&p->cur);
    free(p->guid);
    free(p->foreign_root);
    free(p->declared_encoding);
    core_buf_free(&p->text);
    for (size_t i = 0; i < p->n_ns; i++) {
        free(p->ns[i].prefix);
        free(p->ns[i].uri);
    }
    free(p->ns);
    for (size_t i = 0; i < p->n_bases; i++)
        free(p->bases[i].url);
    free(p->bases);
    free(p->foreign_encoding);
    sc_feed *out = p->out;
    const char *doc_url = p->doc_url;
    memset(p, 0, sizeof *p);
    p->out = out;
    p->doc_url = doc_url;
}

/* ---------------------------------------------------------------- names */

static const char *lookup_ns(const feed_parser *p, const char *prefix, size_t len)
{
    for (size_t i = p->n_ns; i-- > 0;) {
        const ns_binding *b = &p->ns[i];
        if (strlen(b->prefix) == len && memcmp(b->prefix, prefix, len) == 0) return b->uri;
    }
    return NULL;
}

static void bind_namespaces(feed_parser *p, const XML_Char **atts)
{
    for (int i = 0; atts[i]; i += 2) {
        const char *a = atts[i];
        if (strncmp(a, "xmlns", 5) != 0 || (a[5] != '\0' && a[5] != ':')) continue;
        if (p->n_ns == p->cap_ns) {
            p->cap_ns = p->cap_ns ? 2 * p->cap_ns : 8;
            p->ns = core_xrealloc(p->ns, p->cap_ns * sizeof *p->ns);
        }
        p->ns[p->n_ns++] = (ns_binding){.prefix = core_xstrdup(a[5] ? a + 6 : ""),
                                        .uri = *atts[i + 1] ? core_xstrdup(atts[i + 1]) : NULL,
                                        .depth = p->depth};
    }
}

/* Splits a qualified name into namespace (NULL: none) and local name. A prefix nobody
 * declared leaves the whole name as the local name, as libxml2 did. */
static void expand_name(const feed_parser *p, const char *qname, const char **ns,
                        const char **local)
{
    const char *colon = strchr(qname, ':');
    *local = qname;
    if (!colon || colon == qname || !colon[1]) {
        *ns = lookup_ns(p, "", 0);
        return;
    }
    *ns = lookup_ns(p, qname, (size_t)(colon - qname));
    if (*ns) *local = colon + 1;
}

static bool same_ns(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool named(const char *local, const char *name)
{
    return strcasecmp(local, name) == 0;
}

/* The attribute whose local name is `name`, whatever its prefix (libxml2's xmlGetProp). */
static const char *attr(const XML_Char **atts, const char *name)
{
    for (int i = 0; atts[i]; i += 2) {
        const char *a = atts[i];
        if (strncmp(a, "xmlns", 5) == 0 && (a[5] == '\0' || a[5] == ':')) continue;
        const char *colon = strchr(a, ':');
        if (strcmp(colon && colon[1] ? colon + 1 : a, name) == 0) return atts[i + 1];
    }
    return NULL;
}

/* ---------------------------------------------------------------- links */

/* An absolute reference is kept as written; a relative one is resolved when it can be. */
static char *resolve_against(const char *base, const char *ref)
{
    if (!base || sc_url_has_scheme(ref)) return core_xstrdup(ref);
    char *abs = sc_url_resolve(base, ref);
    return abs ? abs : core_xstrdup(ref);
}

static const char *current_base(const feed_parser *p)
{
    return p->n_bases ? p->bases[p->n_bases - 1].url : p->doc_url;
}

static void push_base(feed_parser *p, const XML_Char **atts)
{
    const char *v = NULL;
    for (int i = 0; atts[i] && !v; i += 2)
        if (strcmp(atts[i], "xml:base") == 0) v = atts[i + 1];
    if (!v) return;
    char *url = resolve_against(current_base(p), v);
    if (p->n_bases == p->cap_bases) {
        p->cap_bases = p->cap_bases ? 2 * p->cap_bases : 4;
        p->bases = core_xrealloc(p->bases, p->cap_bases * sizeof *p->bases);
    }
    p->bases[p->n_bases++] = (xml_base){url, p->depth};
}

/* ---------------------------------------------------------------- entries */

static void open_entry(feed_parser *p, const char *ns)
{
    p->entry_depth = p->depth;
    p->entry_ns = ns;
}

static void close_entry(feed_parser *p)
{
    sc_entry *e = &p->cur;
    sc_feed *f = p->out;
    if (f->kind == SC_DOC_RSS && !e->link && p->guid &&
        (strncmp(p->guid, "http://", 7) == 0 || strncmp(p->guid, "https://", 8) == 0)) {
        e->link = p->guid;
        p->guid = NULL;
    }
    if (f->kind == SC_DOC_ATOM && !e->published_ms) e->published_ms = p->updated_ms;
    free(p->guid);
    p->guid = NULL;
    p->updated_ms = 0;
    p->entry_depth = 0;
    p->entry_ns = NULL;
    bool sitemap = f->kind == SC_DOC_URLSET || f->kind == SC_DOC_SITEMAP_INDEX;
    if (sitemap && !e->link) { /* an entry without <loc> */
        entry_free(e);
        return;
    }
    if (f->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        f->entries = core_xrealloc(f->entries, p->cap * sizeof *f->entries);
    }
    f->entries[f->n++] = *e;
    memset(e, 0, sizeof *e);
}

static void start_capture(feed_parser *p, field f)
{
    p->capture = f;
    p->capture_depth = p->depth;
    core_buf_reset(&p->text);
}

/* The text without the blanks around it; NULL when nothing else is left. */
static char *trimmed_text(const core_buf *b)
{
    const char *s = b->len ? b->data : "";
    size_t n = b->len;
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return n ? core_xstrndup(s, n) : NULL;
}

static void end_capture(feed_parser *p)
{
    char *v = trimmed_text(&p->text);
    sc_entry *e = &p->cur;
    switch (p->capture) {
    case F_FEED_TITLE:
        set_once(&p->out->title, v);
        break;
    case F_TITLE:
        set_once(&e->title, v);
        break;
    case F_LINK:
        set_once(&e->link, v ? resolve_against(current_base(p), v) : NULL);
        free(v);
        break;
    case F_SUMMARY:
        set_once(&e->summary, v);
        break;
    case F_CONTENT:
        set_once(&e->content, v);
        break;
    case F_AUTHOR:
        set_once(&e->author, v);
        break;
    case F_GUID:
        set_once(&p->guid, v);
        break;
    case F_LOC:
        set_once(&e->link, v);
        break;
    case F_RSS_DATE:
    case F_PUBLISHED:
    case F_LASTMOD:
        e->published_ms = sc_parse_date(v);
        free(v);
        break;
    case F_UPDATED:
        p->updated_ms = sc_parse_date(v);
        free(v);
        break;
    case F_NONE:
        free(v);
        break;
    }
    p->capture = F_NONE;
}

/* ---------------------------------------------------------------- elements */

static void root_element(feed_parser *p, const char *ns, const char *name)
{
    sc_feed *f = p->out;
    p->root_seen = true;
    p->root_ns = ns;
    if (strcmp(name, "urlset") == 0)
        f->kind = SC_DOC_URLSET;
    else if (strcmp(name, "sitemapindex") == 0)
        f->kind = SC_DOC_SITEMAP_INDEX;
    else if (named(name, "rss") || named(name, "RDF"))
        f->kind = SC_DOC_RSS;
    else if (named(name, "feed"))
        f->kind = SC_DOC_ATOM;
    else {
        p->foreign_root = core_xstrdup(name);
        XML_StopParser(p->xp, XML_FALSE);
    }
}

static void rss_element(feed_parser *p, const char *ns, const char *name, const XML_Char **atts)
{
    sc_entry *e = &p->cur;
    int d = p->depth;
    if (p->entry_depth) {
        if (d != p->entry_depth + 1) return;
        if (named(name, "encoded") && same_ns(ns, NS_CONTENT)) {
            if (!e->content) start_capture(p, F_CONTENT);
        } else if (named(name, "title")) {
            if (!e->title) start_capture(p, F_TITLE);
        } else if (named(name, "link") && same_ns(ns, p->entry_ns)) {
            if (!e->link) start_capture(p, F_LINK);
        } else if (named(name, "description")) {
            if (!e->summary) start_capture(p, F_SUMMARY);
        } else if (named(name, "creator") || named(name, "author")) {
            if (!e->author) start_capture(p, F_AUTHOR);
        } else if (named(name, "pubDate") || named(name, "date")) {
            if (!e->published_ms) start_capture(p, F_RSS_DATE);
        } else if (named(name, "guid")) {
            const char *perma = attr(atts, "isPermaLink");
            if ((!perma || strcasecmp(perma, "false") != 0) && !p->guid) start_capture(p, F_GUID);
        }
        return;
    }
    bool in_channel = p->channel_depth && d == p->channel_depth + 1;
    if (d == 2 && named(name, "channel"))
        p->channel_depth = d;
    else if ((d == 2 || in_channel) && named(name, "item")) /* RSS 1.0 items are not in it */
        open_entry(p, ns);
    else if (in_channel && named(name, "title") && !p->out->title)
        start_capture(p, F_FEED_TITLE);
}

static void atom_element(feed_parser *p, const char *name, const XML_Char **atts)
{
    sc_entry *e = &p->cur;
    int d = p->depth;
    if (p->author_depth) {
        if (d == p->author_depth + 1 && named(name, "name") && !e->author)
            start_capture(p, F_AUTHOR);
        return;
    }
    if (!p->entry_depth) {
        if (d == 2 && named(name, "entry"))
            open_entry(p, NULL);
        else if (d == 2 && named(name, "title") && !p->out->title)
            start_capture(p, F_FEED_TITLE);
        return;
    }
    if (d != p->entry_depth + 1) return;
    if (named(name, "title")) {
        if (!e->title) start_capture(p, F_TITLE);
    } else if (named(name, "link")) {
        const char *rel = attr(atts, "rel"), *href = attr(atts, "href");
        if ((!rel || strcmp(rel, "alternate") == 0) && href && !e->link)
            e->link = resolve_against(current_base(p), href);
    } else if (named(name, "author")) {
        p->author_depth = d;
    } else if (named(name, "published")) {
        start_capture(p, F_PUBLISHED);
    } else if (named(name, "updated")) {
        start_capture(p, F_UPDATED);
    } else if (named(name, "summary")) {
        if (!e->summary) start_capture(p, F_SUMMARY);
    } else if (named(name, "content")) {
        if (!attr(atts, "src") && !e->content) start_capture(p, F_CONTENT);
    }
}

static void sitemap_element(feed_parser *p, const char *ns, const char *name)
{
    if (!same_ns(ns, p->root_ns)) return;
    if (!p->entry_depth) {
        if (strcmp(name, p->out->kind == SC_DOC_URLSET ? "url" : "sitemap") == 0) open_entry(p, ns);
    } else if (strcmp(name, "loc") == 0) {
        if (!p->cur.link) start_capture(p, F_LOC);
    } else if (strcmp(name, "lastmod") == 0) {
        start_capture(p, F_LASTMOD);
    }
}

static void XMLCALL on_start(void *data, const XML_Char *qname, const XML_Char **atts)
{
    feed_parser *p = data;
    p->depth++;
    if (p->capture) return; /* markup inside a field is part of its text */
    bind_namespaces(p, atts);
    const char *ns, *name;
    expand_name(p, qname, &ns, &name);
    if (p->depth == 1) root_element(p, ns, name);
    switch (p->out->kind) {
    case SC_DOC_RSS:
        push_base(p, atts);
        if (p->depth > 1) rss_element(p, ns, name, atts);
        break;
    case SC_DOC_ATOM:
        push_base(p, atts);
        if (p->depth > 1) atom_element(p, name, atts);
        break;
    case SC_DOC_URLSET:
    case SC_DOC_SITEMAP_INDEX:
        if (p->depth > 1) sitemap_element(p, ns, name);
        break;
    case SC_DOC_UNKNOWN:
        break;
    }
}

static void XMLCALL on_end(void *data, const XML_Char *qname)
{
    (void)qname;
    feed_parser *p = data;
    int d = p->depth--;
    if (p->capture && d == p->capture_depth) end_capture(p);
    if (p->capture) return;
    if (d == p->author_depth) p->author_depth = 0;
    if (d == p->entry_depth) close_entry(p);
    if (d == p->channel_depth) p->channel_depth = 0;
    while (p->n_bases && p->bases[p->n_bases - 1].depth == d)
        free(p->bases[--p->n_bases].url);
    if (d == 1) { /* what follows is no part of the feed, not even an error in it */
        p->root_closed = true;
        p->root_ns = NULL;
    }
    while (p->n_ns && p->ns[p->n_ns - 1].depth == d) {
        p->n_ns--;
        free(p->ns[p->n_ns].prefix);
        free(p->ns[p->n_ns].uri);
    }
}

static void XMLCALL on_text(void *data, const XML_Char *s, int len)
{
    feed_parser *p = data;
    if (p->capture) core_buf_append(&p->text, s, (size_t)len);
}

static void XMLCALL on_xml_decl(void *data, const XML_Char *version, const XML_Char *encoding,
                                int standalone)
{
    (void)version;
    (void)standalone;
    feed_parser *p = data;
    free(p->declared_encoding);
    p->declared_encoding = encoding ? core_xstrdup(encoding) : NULL;
}

/* ---------------------------------------------------------------- entities, encodings */

/* Nothing outside the document is read: an external entity or DTD reads as empty. The DTD
 * expat is told to assume when there is none (XML_UseForeignDTD) is read as an empty one, so
 * that an entity it might have declared (&nbsp;, an HTML habit) is skipped instead of ending
 * the document, as libxml2 skipped it. */
static int XMLCALL on_external_entity(XML_Parser xp, const XML_Char *context, const XML_Char *base,
                                      const XML_Char *system_id, const XML_Char *public_id)
{
    (void)base;
    (void)public_id;
    if (system_id) return XML_STATUS_OK;
    XML_Parser dtd = XML_ExternalEntityParserCreate(xp, context, NULL);
    if (!dtd) return XML_STATUS_ERROR;
    enum XML_Status st = XML_Parse(dtd, "", 0, XML_TRUE);
    XML_ParserFree(dtd);
    return st;
}

/* Expat reads UTF-8, UTF-16, ISO-8859-1 and US-ASCII; any other single-byte charset is given
 * to it as a byte map, built with iconv once per document. A multi-byte or stateful one
 * (Shift_JIS, GBK ...) is refused here, and the document converted whole (sc_to_utf8). */
static int XMLCALL on_unknown_encoding(void *data, const XML_Char *name, XML_Encoding *info)
{
    feed_parser *p = data;
    free(p->foreign_encoding);
    p->foreign_encoding = core_xstrdup(name);
    iconv_t cd = iconv_open("UTF-32LE", name);
    if (cd == (iconv_t)-1) return XML_STATUS_ERROR;
    bool single_byte = true;
    for (int b = 0; b < 256 && single_byte; b++) {
        char in = (char)b, *inp = &in;
        unsigned char out[8];
        char *outp = (char *)out;
        size_t inleft = 1, outleft = sizeof out;
        iconv(cd, NULL, NULL, NULL, NULL);
        size_t rc = iconv(cd, &inp, &inleft, &outp, &outleft);
        if (rc == (size_t)-1 && errno == EILSEQ)
            info->map[b] = 0xFFFD; /* undefined in the charset (0x81 in windows-1252) */
        else if (rc == (size_t)-1 || sizeof out - outleft != 4)
            single_byte = false; /* the first byte of a sequence, or a shift */
        else
            info->map[b] = (int)((uint32_t)out[0] | (uint32_t)out[1] << 8 | (uint32_t)out[2] << 16 |
                                 (uint32_t)out[3] << 24);
    }
    iconv_close(cd);
    info->data = NULL;
    info->convert = NULL;
    info->release = NULL;
    return single_byte ? XML_STATUS_OK : XML_STATUS_ERROR;
}

/* ---------------------------------------------------------------- reading the document */

typedef struct outcome {
    enum XML_Error error; /* XML_ERROR_NONE, or where expat stopped */
    unsigned long line, column;
} outcome;

/* Reads the document once into p->out. encoding overrides the declared one (NULL: none). */
static outcome read_document(feed_parser *p, const char *body, size_t len, const char *encoding)
{
    outcome o = {0};
    XML_Parser xp = XML_ParserCreate(encoding);
    if (!xp) {
        o.error = XML_ERROR_NO_MEMORY;
        return o;
    }
    p->xp = xp;
    XML_SetUserData(xp, p);
    XML_SetElementHandler(xp, on_start, on_end);
    XML_SetCharacterDataHandler(xp, on_text);
    XML_SetXmlDeclHandler(xp, on_xml_decl);
    XML_SetExternalEntityRefHandler(xp, on_external_entity);
    XML_SetUnknownEncodingHandler(xp, on_unknown_encoding, p);
    XML_SetParamEntityParsing(xp, XML_PARAM_ENTITY_PARSING_UNLESS_STANDALONE);
    XML_UseForeignDTD(xp, XML_TRUE);
    XML_SetBillionLaughsAttackProtectionMaximumAmplification(xp, MAX_AMPLIFICATION);
    XML_SetBillionLaughsAttackProtectionActivationThreshold(xp, AMPLIFICATION_ACTIVE);
    enum XML_Status st;
    size_t done = 0;
    do {
        size_t n = len - done < PARSE_CHUNK ? len - done : PARSE_CHUNK;
        st = XML_Parse(xp, body + done, (int)n, done + n == len);
        done += n;
    } while (st == XML_STATUS_OK && done < len);
    if (st != XML_STATUS_OK) {
        o.error = XML_GetErrorCode(xp);
        o.line = XML_GetCurrentLineNumber(xp);
        o.column = XML_GetCurrentColumnNumber(xp);
    }
    XML_ParserFree(xp);
    p->xp = NULL;
    /* an entry or field still open was cut short: it is not kept */
    entry_free(&p->cur);
    if (p->out->n < p->cap) {
        p->cap = p->out->n;
        p->out->entries = core_xrealloc(p->out->entries, p->cap * sizeof *p->out->entries);
    }
    return o;
}

static bool utf8_named(const char *charset)
{
    return !charset || strcasecmp(charset, "UTF-8") == 0 || strcasecmp(charset, "UTF8") == 0;
}

/* Whether s (at most end) starts a character or entity reference: "&name;", "&#10;", "&#xA;". */
static bool reference_at(const char *s, const char *end)
{
    const char *q = s + 1;
    if (q < end && *q == '#') {
        q++;
        bool hex = q < end && *q == 'x';
        q += hex;
        const char *digits = q;
        while (q < end && (hex ? isxdigit((unsigned char)*q) : isdigit((unsigned char)*q)))
            q++;
        return q > digits && q < end && *q == ';';
    }
    const char *name = q;
    while (q < end && (isalnum((unsigned char)*q) || *q == '_' || *q == ':' || *q == '-' ||
                       *q == '.' || (unsigned char)*q >= 0x80))
        q++;
    return q > name && !isdigit((unsigned char)*name) && *name != '-' && *name != '.' && q < end &&
           *q == ';';
}

/* Whether s (before end) is a '<' that starts markup: a tag, "</", "<!", "<?". */
static bool markup_at(const char *s, const char *end)
{
    unsigned char c = s + 1 < end ? (unsigned char)s[1] : 0;
    return isalpha(c) || c == '_' || c == ':' || c >= 0x80 || c == '/' || c == '!' || c == '?';
}

/* What libxml2's recovery absorbed, made well-formed: a '&' that starts no reference and a
 * '<' that starts no markup are escaped (not inside CDATA sections, comments and processing
 * instructions, where they are text), and in a UTF-8 document invalid sequences become
 * U+FFFD. NULL when nothing needed it, or when it would more than double the document. */
static char *repaired(const char *body, size_t len, bool utf8, size_t *out_len)
{
    char *clean = NULL;
    size_t clean_len = 0;
    if (utf8) {
        clean = sc_to_utf8(body, len, "UTF-8", &clean_len);
        if (clean_len == len && memcmp(clean, body, len) == 0) {
            free(clean);
            clean = NULL;
        } else {
            body = clean;
            len = clean_len;
        }
    }
    static const struct {
        const char *open, *close;
    } verbatim[] = {{"<![CDATA[", "]]>"}, {"<!--", "-->"}, {"<?", "?>"}};
    core_buf b = {0};
    const char *s = body, *end = body + len, *copied = body;
    while (s < end) {
        const char *special = s;
        while (special < end && *special != '&' && *special != '<')
            special++;
        if (special == end) break;
        s = special + 1;
        if (*special == '<' && !markup_at(special, end)) {
            core_buf_append(&b, copied, (size_t)(special - copied));
            core_buf_puts(&b, "&lt;");
            copied = s;
        } else if (*special == '<') {
            for (size_t i = 0; i < sizeof verbatim / sizeof *verbatim; i++) {
                size_t ol = strlen(verbatim[i].open);
                if ((size_t)(end - special) < ol || memcmp(special, verbatim[i].open, ol) != 0)
                    continue;
                const char *close = memmem(special + ol, (size_t)(end - special - ol),
                                           verbatim[i].close, strlen(verbatim[i].close));
                s = close ? close + strlen(verbatim[i].close) : end;
                break;
            }
        } else if (!reference_at(special, end)) {
            core_buf_append(&b, copied, (size_t)(special - copied));
            core_buf_puts(&b, "&amp;");
            copied = s;
        }
        if (b.len > 2 * len) { /* mostly faults: not a feed worth the memory */
            core_buf_free(&b);
            free(clean);
            return NULL;
        }
    }
    if (copied == body && !clean) return NULL;
    core_buf_append(&b, copied, (size_t)(end - copied));
    free(clean);
    return core_buf_steal(&b, out_len);
}

/* The name of the first element after the prolog, found by hand when expat stopped before it
 * (an HTML 4 doctype without a system literal, an unquoted attribute): what the error message
 * names. false when the document does not start like markup. */
static bool first_element_name(const char *s, size_t len, char *out, size_t size)
{
    const char *end = s + len;
    for (;;) {
        while (s < end && isspace((unsigned char)*s))
            s++;
        if (end - s < 2 || *s != '<') return false;
        const char *close = NULL;
        if (s[1] == '?')
            close = memmem(s, (size_t)(end - s), "?>", 2);
        else if (end - s >= 4 && memcmp(s, "<!--", 4) == 0)
            close = memmem(s, (size_t)(end - s), "-->", 3);
        else if (s[1] == '!')
            close = memchr(s, '>', (size_t)(end - s));
        else
            break;
        if (!close) return false;
        s = close + 1;
    }
    const char *name = ++s;
    while (s < end && !isspace((unsigned char)*s) && *s != '>' && *s != '/' && *s)
        s++;
    if (s == name || !(isalpha((unsigned char)*name) || *name == '_')) return false;
    snprintf(out, size, "%.*s", (int)(s - name), name);
    return true;
}

static bool feed_root_name(const char *name)
{
    const char *colon = strchr(name, ':');
    const char *local = colon ? colon + 1 : name;
    return strcmp(local, "urlset") == 0 || strcmp(local, "sitemapindex") == 0 ||
           named(local, "rss") || named(local, "RDF") || named(local, "feed");
}

bool sc_feed_parse(const char *body, size_t len, const char *base_url, size_t max_bytes,
                   sc_feed *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t glen = 0;
    char *inflated = sc_gunzip(body, len, max_bytes, &glen);
    if (inflated) {
        body = inflated;
        len = glen;
    } else if (len >= 2 && (unsigned char)body[0] == 0x1f && (unsigned char)body[1] == 0x8b) {
        snprintf(err, errlen, "gzip data is corrupt or inflates beyond %zu bytes", max_bytes);
        return false;
    }
    /* blank lines before the XML declaration (a PHP habit) are an error expat does not
     * forgive; a UTF-8 byte order mark may come before them */
    size_t lead = len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    size_t blanks = lead;
    while (blanks < len && isspace((unsigned char)body[blanks]))
        blanks++;
    if (blanks > lead && blanks + 1 < len && body[blanks] == '<' && body[blanks + 1]) {
        body += blanks;
        len -= blanks;
    }

    feed_parser p = {.out = out, .doc_url = base_url};
    const char *encoding = NULL;
    outcome o = read_document(&p, body, len, NULL);
    char *converted = NULL;
    if (o.error == XML_ERROR_UNKNOWN_ENCODING && p.foreign_encoding) {
        size_t clen = 0;
        converted = sc_to_utf8(body, len, p.foreign_encoding, &clen);
        body = converted;
        len = clen;
        encoding = "UTF-8";
        parser_clear(&p);
        o = read_document(&p, body, len, encoding);
    }
    bool broken = o.error != XML_ERROR_NONE && o.error != XML_ERROR_ABORTED && !p.root_closed;
    /* UTF-16 and UTF-32 documents are left as they are */
    bool ascii_based = len >= 2 && body[0] && body[1] && memcmp(body, "\xFE\xFF", 2) != 0 &&
                       memcmp(body, "\xFF\xFE", 2) != 0;
    if (broken && out->kind != SC_DOC_UNKNOWN && ascii_based) {
        size_t rlen = 0;
        bool utf8 = encoding || utf8_named(p.declared_encoding);
        char *fixed = repaired(body, len, utf8, &rlen);
        if (fixed) {
            parser_clear(&p);
            o = read_document(&p, fixed, rlen, encoding);
            broken = o.error != XML_ERROR_NONE && o.error != XML_ERROR_ABORTED && !p.root_closed;
            free(fixed);
        }
    }
    char root[64] = "";
    if (p.foreign_root)
        snprintf(root, sizeof root, "%s", p.foreign_root);
    else if (!p.root_seen)
        first_element_name(body, len, root, sizeof root);
    free(converted);
    free(inflated);

    bool ok = false;
    if (*root && !feed_root_name(root))
        snprintf(err, errlen, "XML root <%s> is not RSS, Atom or a sitemap", root);
    else if (!*root && (!p.root_seen || out->kind == SC_DOC_UNKNOWN))
        snprintf(err, errlen, "not an XML document");
    else if (broken && out->n == 0)
        snprintf(err, errlen, "malformed XML before the first entry (line %lu, column %lu): %s",
                 o.line, o.column, XML_ErrorString(o.error));
    else
        ok = true;
    sc_feed saved = *out;
    memset(out, 0, sizeof *out); /* parser_clear frees what out holds */
    parser_clear(&p);
    if (ok)
        *out = saved;
    else
        sc_feed_free(&saved);
    return ok;
}

void sc_feed_free(sc_feed *f)
{
    for (size_t i = 0; i < f->n; i++)
        entry_free(&f->entries[i]);
    free(f->entries);
    free(f->title);
    memset(f, 0, sizeof *f);
}
