/*
 * Feeds and sitemaps with libxml2's XML parser (no network, no entity expansion): RSS 2.0
 * (and 1.0/RDF), Atom 1.0, sitemap urlsets and sitemap indexes, gzip-compressed or not.
 */
#include <ctype.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlreader.h>
#include <libxml/uri.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include "scraper.h"

#define NS_CONTENT "http://purl.org/rss/1.0/modules/content/"
#define NS_DC      "http://purl.org/dc/elements/1.1/"

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

/* ---------------------------------------------------------------- XML helpers */

static bool is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && xmlStrcasecmp(n->name, (const xmlChar *)name) == 0;
}

static bool in_ns(const xmlNode *n, const char *ns)
{
    return n->ns && n->ns->href && strcmp((const char *)n->ns->href, ns) == 0;
}

static char *text_of(const xmlNode *n)
{
    xmlChar *c = xmlNodeGetContent(n);
    if (!c) return NULL;
    const char *s = (const char *)c;
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    char *out = len ? core_xstrndup(s, len) : NULL;
    xmlFree(c);
    return out;
}

static char *attr(const xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    if (!v) return NULL;
    char *out = core_xstrdup((const char *)v);
    xmlFree(v);
    return out;
}

static void set_once(char **dst, char *v)
{
    if (*dst || !v) {
        free(v);
        return;
    }
    *dst = v;
}

/* Resolves a link against xml:base / the document URL. */
static char *resolve(const xmlNode *n, const char *href)
{
    if (!href) return NULL;
    xmlChar *base = xmlNodeGetBase(n->doc, n);
    xmlChar *abs = xmlBuildURI((const xmlChar *)href, base);
    char *out = core_xstrdup(abs ? (const char *)abs : href);
    xmlFree(abs);
    xmlFree(base);
    return out;
}

static sc_entry *new_entry(sc_feed *f)
{
    f->entries = core_xrealloc(f->entries, (f->n + 1) * sizeof *f->entries);
    sc_entry *e = &f->entries[f->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static void rss_item(sc_feed *f, const xmlNode *item)
{
    sc_entry *e = new_entry(f);
    char *guid = NULL;
    for (const xmlNode *c = item->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (is(c, "encoded") && in_ns(c, NS_CONTENT))
            set_once(&e->content, text_of(c));
        else if (is(c, "title"))
            set_once(&e->title, text_of(c));
        else if (is(c, "link") && !c->ns) {
            char *t = text_of(c);
            set_once(&e->link, resolve(c, t));
            free(t);
        } else if (is(c, "description"))
            set_once(&e->summary, text_of(c));
        else if (is(c, "creator") || is(c, "author"))
            set_once(&e->author, text_of(c));
        else if ((is(c, "pubDate") || is(c, "date")) && !e->published_ms) {
            char *t = text_of(c);
            e->published_ms = sc_parse_date(t);
            free(t);
        } else if (is(c, "guid")) {
            char *perma = attr(c, "isPermaLink");
            if (!perma || strcasecmp(perma, "false") != 0) set_once(&guid, text_of(c));
            free(perma);
        }
    }
    if (!e->link && guid && (strncmp(guid, "http://", 7) == 0 || strncmp(guid, "https://", 8) == 0))
        e->link = core_xstrdup(guid);
    free(guid);
}

static void atom_entry(sc_feed *f, const xmlNode *entry)
{
    sc_entry *e = new_entry(f);
    int64_t updated = 0;
    for (const xmlNode *c = entry->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (is(c, "title"))
            set_once(&e->title, text_of(c));
        else if (is(c, "link")) {
            char *rel = attr(c, "rel");
            if (!rel || strcmp(rel, "alternate") == 0) {
                char *href = attr(c, "href");
                set_once(&e->link, resolve(c, href));
                free(href);
            }
            free(rel);
        } else if (is(c, "author")) {
            for (const xmlNode *a = c->children; a; a = a->next)
                if (is(a, "name")) set_once(&e->author, text_of(a));
        } else if (is(c, "published")) {
            char *t = text_of(c);
            e->published_ms = sc_parse_date(t);
            free(t);
        } else if (is(c, "updated")) {
            char *t = text_of(c);
            updated = sc_parse_date(t);
            free(t);
        } else if (is(c, "summary"))
            set_once(&e->summary, text_of(c));
        else if (is(c, "content")) {
            char *src = attr(c, "src");
            if (!src) set_once(&e->content, text_of(c));
            free(src);
        }
    }
    if (!e->published_ms) e->published_ms = updated;
}

static char *trimmed(const xmlChar *v)
{
    if (!v) return NULL;
    const char *s = (const char *)v;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return n ? core_xstrndup(s, n) : NULL;
}

/* Sitemaps are read as a stream (xmlTextReader): a sitemap may list 50 000 URLs, whose tree
 * would take tens of megabytes; the entries alone take a few. Returns false (nothing done)
 * when the document is not a sitemap, so that the caller parses it as a feed. */
static bool sitemap_stream(const char *body, size_t len, const char *base_url, sc_feed *out)
{
    xmlTextReaderPtr r =
        xmlReaderForMemory(body, (int)len, base_url, NULL,
                           XML_PARSE_NONET | XML_PARSE_RECOVER | XML_PARSE_NOERROR |
                               XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
    if (!r) return false;
    int rc;
    while ((rc = xmlTextReaderRead(r)) == 1 && xmlTextReaderNodeType(r) != XML_READER_TYPE_ELEMENT)
        ;
    const char *root = rc == 1 ? (const char *)xmlTextReaderConstLocalName(r) : NULL;
    if (!root || (strcmp(root, "urlset") != 0 && strcmp(root, "sitemapindex") != 0)) {
        xmlFreeTextReader(r);
        return false;
    }
    out->kind = strcmp(root, "urlset") == 0 ? SC_DOC_URLSET : SC_DOC_SITEMAP_INDEX;
    const char *entry = out->kind == SC_DOC_URLSET ? "url" : "sitemap";
    sc_entry *cur = NULL;
    while (xmlTextReaderRead(r) == 1) {
        int type = xmlTextReaderNodeType(r);
        const char *name = (const char *)xmlTextReaderConstLocalName(r);
        if (!name) continue;
        if (type == XML_READER_TYPE_ELEMENT && strcmp(name, entry) == 0) {
            cur = new_entry(out);
        } else if (type == XML_READER_TYPE_END_ELEMENT && strcmp(name, entry) == 0) {
            if (cur && !cur->link) out->n--; /* an entry without <loc> */
            cur = NULL;
        } else if (type == XML_READER_TYPE_ELEMENT && cur && strcmp(name, "loc") == 0) {
            xmlChar *v = xmlTextReaderReadString(r);
            set_once(&cur->link, trimmed(v));
            xmlFree(v);
        } else if (type == XML_READER_TYPE_ELEMENT && cur && strcmp(name, "lastmod") == 0) {
            xmlChar *v = xmlTextReaderReadString(r);
            cur->published_ms = sc_parse_date((const char *)v);
            xmlFree(v);
        }
    }
    xmlFreeTextReader(r);
    return true;
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
    if (sitemap_stream(body, len, base_url, out)) {
        free(inflated);
        return true;
    }
    xmlDoc *doc = xmlReadMemory(body, (int)len, base_url, NULL,
                                XML_PARSE_NONET | XML_PARSE_RECOVER | XML_PARSE_NOERROR |
                                    XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
    free(inflated);
    xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root) {
        snprintf(err, errlen, "not an XML document");
        xmlFreeDoc(doc);
        return false;
    }
    if (is(root, "rss") || is(root, "RDF")) {
        out->kind = SC_DOC_RSS;
        for (xmlNode *c = root->children; c; c = c->next) {
            if (is(c, "item")) rss_item(out, c); /* RSS 1.0 */
            if (!is(c, "channel")) continue;
            for (xmlNode *i = c->children; i; i = i->next) {
                if (is(i, "item"))
                    rss_item(out, i);
                else if (is(i, "title"))
                    set_once(&out->title, text_of(i));
            }
        }
    } else if (is(root, "feed")) {
        out->kind = SC_DOC_ATOM;
        for (xmlNode *c = root->children; c; c = c->next) {
            if (is(c, "entry"))
                atom_entry(out, c);
            else if (is(c, "title"))
                set_once(&out->title, text_of(c));
        }
    } else {
        snprintf(err, errlen, "XML root <%s> is not RSS, Atom or a sitemap",
                 (const char *)root->name);
        xmlFreeDoc(doc);
        return false;
    }
    xmlFreeDoc(doc);
    return true;
}

void sc_feed_free(sc_feed *f)
{
    for (size_t i = 0; i < f->n; i++) {
        sc_entry *e = &f->entries[i];
        free(e->link);
        free(e->title);
        free(e->author);
        free(e->summary);
        free(e->content);
    }
    free(f->entries);
    free(f->title);
    memset(f, 0, sizeof *f);
}
