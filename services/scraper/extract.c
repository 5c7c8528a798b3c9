/*
 * Article extraction from HTML, on libxml2's HTML parser (a real tokenizer and tree builder
 * that recovers from broken markup the way browsers of its time did).
 *
 * Metadata: Open Graph and Twitter cards, <meta> name/property/itemprop, <link rel=canonical>,
 * JSON-LD (schema.org Article, NewsArticle, BlogPosting, also inside @graph), <html lang>,
 * <time datetime>, and byline elements.
 *
 * Main text, in the spirit of Arc90's Readability (the algorithm, not its code):
 *  1. drop what is never content: scripts, styles, forms, navigation, asides, headers,
 *     footers, hidden elements and ARIA landmarks other than main;
 *  2. score paragraph-like nodes (p, pre, td, text-only divs) by length and commas and credit
 *     their ancestors, weighted by class/id tokens (+25 "article", "content", ...; -25
 *     "comment", "sidebar", "share", ...) and discounted by link density;
 *  3. take the best candidate and those siblings that look like more of the same article;
 *  4. inside it, remove boilerplate by class/id (comments, share bars, related links, ads,
 *     bylines), link lists, and the title heading;
 *  5. render the text with one paragraph per block element, separated by blank lines.
 */
#include <ctype.h>
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <libxml/uri.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scraper.h"

/* ---------------------------------------------------------------- small helpers */

static bool tag_is(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && xmlStrcasecmp(n->name, (const xmlChar *)name) == 0;
}

static bool tag_in(const xmlNode *n, const char *const *names)
{
    if (!n || n->type != XML_ELEMENT_NODE) return false;
    for (int i = 0; names[i]; i++)
        if (xmlStrcasecmp(n->name, (const xmlChar *)names[i]) == 0) return true;
    return false;
}

static char *prop(const xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    if (!v) return NULL;
    char *s = core_xstrdup((const char *)v);
    xmlFree(v);
    return s;
}

/* Collapses whitespace and trims; returns s (modified in place). */
static char *squash(char *s)
{
    if (!s) return NULL;
    char *w = s;
    bool space = true;
    for (const unsigned char *r = (const unsigned char *)s; *r; r++) {
        bool sp = isspace(*r) || (r[0] == 0xC2 && r[1] == 0xA0);
        if (r[0] == 0xC2 && r[1] == 0xA0) r++;
        if (sp) {
            if (!space) *w++ = ' ';
            space = true;
        } else {
            *w++ = (char)*r;
            space = false;
        }
    }
    if (w > s && w[-1] == ' ') w--;
    *w = '\0';
    return s;
}

static char *node_text(const xmlNode *n)
{
    xmlChar *c = xmlNodeGetContent(n);
    char *s = core_xstrdup(c ? (const char *)c : "");
    xmlFree(c);
    return squash(s);
}

static void set_str(char **dst, const char *v)
{
    if (*dst || !v) return;
    char *s = squash(core_xstrdup(v));
    if (*s)
        *dst = s;
    else
        free(s);
}

static void set_owned(char **dst, char *v)
{
    if (!*dst && v && *v) {
        *dst = v;
        return;
    }
    free(v);
}

static char *absolute(const char *base, const char *href)
{
    if (!href || !*href) return NULL;
    char *n = sc_url_normalize(base, href);
    if (n) return n;
    xmlChar *b = xmlBuildURI((const xmlChar *)href, (const xmlChar *)(base ? base : ""));
    char *out = b ? core_xstrdup((const char *)b) : NULL;
    xmlFree(b);
    return out;
}

/* ---------------------------------------------------------------- class/id tokens */

static const char *const positive[] = {"article", "body",     "content", "entry", "main",
                                       "post",    "story",    "text",    "blog",  "hentry",
                                       "prose",   "markdown", "rich",    NULL};
static const char *const strong_negative[] = {
    "comment",       "comments", "disqus",  "share",     "sharing",  "social",     "related",
    "recommended",   "promo",    "sponsor", "sponsored", "ad",       "ads",        "advert",
    "advertisement", "adslot",   "banner",  "cookie",    "cookies",  "newsletter", "subscribe",
    "subscription",  "signup",   "popup",   "modal",     "outbrain", "taboola",    "footer",
    "sidebar",       "trending", "most",    "popular",   "paywall",  "gdpr",       "consent",
    "respond",       "reply",    "also",    NULL};
static const char *const weak_negative[] = {
    "meta",       "tags",      "tag",      "nav",        "navbar",      "menu",       "widget",
    "bio",        "byline",    "author",   "breadcrumb", "breadcrumbs", "pagination", "pager",
    "caption",    "credit",    "toolbar",  "masthead",   "header",      "print",      "skip",
    "hidden",     "rail",      "dateline", "date",       "timestamp",   "published",  "category",
    "categories", "taglist",   "topics",   "next",       "prev",        "previous",   "more",
    "read",       "copyright", "legal",    "disclaimer", "toc",         "contact",    "kicker",
    "rubric",     "endmark",   "bottom",   NULL};

static bool in_list(const char *tok, size_t n, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strlen(list[i]) == n && strncasecmp(tok, list[i], n) == 0) return true;
    return false;
}

/* +1 positive, -1 weak negative, -2 strong negative, 0 neutral; scanning class and id, split
 * into tokens at non-alphanumerics and at camelCase humps (CSS modules: "InlineNewsletter_x").
 * *any_negative (may be NULL) says whether any negative token was seen, positive or not. */
static int class_kind2(const xmlNode *n, bool *any_negative)
{
    bool pos = false, weak = false, strong = false;
    for (int a = 0; a < 2; a++) {
        char *v = prop(n, a ? "id" : "class");
        if (!v) continue;
        const char *p = v;
        while (*p) {
            while (*p && !isalnum((unsigned char)*p))
                p++;
            const char *st = p;
            if (*p) p++;
            while (*p && isalnum((unsigned char)*p) &&
                   !(isupper((unsigned char)*p) && islower((unsigned char)p[-1])))
                p++;
            size_t len = (size_t)(p - st);
            if (!len) continue;
            if (in_list(st, len, positive)) pos = true;
            if (in_list(st, len, strong_negative)) strong = true;
            if (in_list(st, len, weak_negative)) weak = true;
        }
        free(v);
    }
    if (any_negative) *any_negative = weak || strong;
    if (strong) return -2;
    if (weak && !pos) return -1;
    return pos ? 1 : 0;
}

static int class_kind(const xmlNode *n)
{
    return class_kind2(n, NULL);
}

/* ---------------------------------------------------------------- node info */

typedef struct info {
    double score;
    bool scored;
    long text_len; /* -1: not computed */
    long link_len;
} info;

typedef struct ex {
    const char *url;
    info *infos;
    size_t ninfos, cap;
    xmlNode **cands;
    size_t ncands, candcap;
} ex;

static info *info_of(ex *x, xmlNode *n)
{
    if (n->_private) return &x->infos[(size_t)(uintptr_t)n->_private - 1];
    if (x->ninfos == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 1024;
        x->infos = core_xrealloc(x->infos, x->cap * sizeof *x->infos);
    }
    x->infos[x->ninfos] = (info){0, false, -1, 0};
    n->_private = (void *)(uintptr_t)(++x->ninfos);
    return &x->infos[x->ninfos - 1];
}

static void count_text(const xmlNode *n, bool in_link, long *text, long *link)
{
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            long len = 0;
            bool space = true;
            for (const xmlChar *s = c->content; s && *s; s++) {
                bool sp = isspace(*s);
                if (!sp || !space) len++;
                space = sp;
            }
            *text += len;
            if (in_link) *link += len;
        } else if (c->type == XML_ELEMENT_NODE) {
            count_text(c, in_link || tag_is(c, "a"), text, link);
        }
    }
}

static long text_len(ex *x, xmlNode *n)
{
    info *i = info_of(x, n);
    if (i->text_len < 0) {
        long t = 0, l = 0;
        count_text(n, tag_is(n, "a"), &t, &l);
        i = info_of(x, n);
        i->text_len = t;
        i->link_len = l;
    }
    return i->text_len;
}

static double link_density(ex *x, xmlNode *n)
{
    long t = text_len(x, n);
    return t ? (double)info_of(x, n)->link_len / (double)t : 0;
}

static long count_char(const xmlNode *n, char ch)
{
    long k = 0;
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (c->type == XML_TEXT_NODE && c->content) {
            for (const xmlChar *s = c->content; *s; s++)
                if (*s == (xmlChar)ch) k++;
        } else if (c->type == XML_ELEMENT_NODE) {
            k += count_char(c, ch);
        }
    }
    return k;
}

/* ---------------------------------------------------------------- cleaning */

static const char *const never_content[] = {
    "script", "style",  "noscript", "template", "iframe", "svg",   "canvas", "form",
    "button", "select", "input",    "textarea", "nav",    "aside", "footer", "header",
    "object", "embed",  "dialog",   "menu",     "link",   "meta",  "figure", "figcaption",
    "video",  "audio",  "picture",  "source",   "map",    "label", NULL};

static bool hidden(const xmlNode *n)
{
    char *v = prop(n, "hidden");
    bool h = v != NULL;
    free(v);
    if (!h && (v = prop(n, "aria-hidden"))) {
        h = strcasecmp(v, "true") == 0;
        free(v);
    }
    if (!h && (v = prop(n, "style"))) {
        squash(v);
        h = strcasestr(v, "display:none") || strcasestr(v, "display: none") ||
            strcasestr(v, "visibility:hidden") || strcasestr(v, "visibility: hidden");
        free(v);
    }
    if (!h && (v = prop(n, "role"))) {
        h = strcasecmp(v, "navigation") == 0 || strcasecmp(v, "banner") == 0 ||
            strcasecmp(v, "contentinfo") == 0 || strcasecmp(v, "complementary") == 0 ||
            strcasecmp(v, "dialog") == 0 || strcasecmp(v, "alert") == 0 ||
            strcasecmp(v, "search") == 0;
        free(v);
    }
    return h;
}

static void remove_node(xmlNode *n)
{
    xmlUnlinkNode(n);
    xmlFreeNode(n);
}

static void prune(xmlNode *n)
{
    for (xmlNode *c = n->children, *next; c; c = next) {
        next = c->next;
        if (c->type == XML_COMMENT_NODE || c->type == XML_PI_NODE) {
            remove_node(c);
        } else if (c->type == XML_ELEMENT_NODE) {
            /* <header> inside an article holds its title and byline: drop it too, the title
             * is reported separately */
            if (tag_in(c, never_content) || hidden(c))
                remove_node(c);
            else
                prune(c);
        }
    }
}

/* ---------------------------------------------------------------- scoring */

static const char *const block_tags[] = {
    "p",  "div",     "section", "article", "main",  "blockquote", "pre", "ul",
    "ol", "li",      "table",   "tr",      "td",    "th",         "h1",  "h2",
    "h3", "h4",      "h5",      "h6",      "dl",    "dd",         "dt",  "hr",
    "br", "address", "center",  "figure",  "tbody", "thead",      NULL};

static bool has_block_child(const xmlNode *n)
{
    for (const xmlNode *c = n->children; c; c = c->next)
        if (tag_in(c, block_tags) && !tag_is(c, "br")) return true;
    return false;
}

static void init_candidate(ex *x, xmlNode *n)
{
    info *i = info_of(x, n);
    if (i->scored) return;
    i->scored = true;
    double s = 0;
    if (tag_is(n, "div") || tag_is(n, "article") || tag_is(n, "main") || tag_is(n, "section"))
        s = 5;
    if (tag_is(n, "article"))
        s += 10;
    else if (tag_is(n, "pre") || tag_is(n, "td") || tag_is(n, "blockquote"))
        s = 3;
    else if (tag_is(n, "ol") || tag_is(n, "ul") || tag_is(n, "li") || tag_is(n, "dl") ||
             tag_is(n, "dd") || tag_is(n, "dt") || tag_is(n, "address"))
        s = -3;
    else if (tag_is(n, "h1") || tag_is(n, "h2") || tag_is(n, "h3") || tag_is(n, "h4") ||
             tag_is(n, "th"))
        s = -5;
    char *ip = prop(n, "itemprop");
    if (ip && strcasestr(ip, "articleBody")) s += 30;
    free(ip);
    int k = class_kind(n);
    s += k > 0 ? 25 : k < 0 ? -25 : 0;
    i = info_of(x, n);
    i->score = s;
    if (x->ncands == x->candcap) {
        x->candcap = x->candcap ? x->candcap * 2 : 64;
        x->cands = core_xrealloc(x->cands, x->candcap * sizeof *x->cands);
    }
    x->cands[x->ncands++] = n;
}

static void score_paragraphs(ex *x, xmlNode *n)
{
    for (xmlNode *c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        bool para = tag_is(c, "p") || tag_is(c, "pre") || tag_is(c, "td") ||
                    ((tag_is(c, "div") || tag_is(c, "section")) && !has_block_child(c));
        if (para) {
            long len = text_len(x, c);
            if (len >= 25 && c->parent && c->parent->type == XML_ELEMENT_NODE) {
                double s = 1 + (double)count_char(c, ',') + fmin((double)len / 100.0, 3.0);
                xmlNode *a = c->parent;
                for (int level = 0; a && a->type == XML_ELEMENT_NODE && level < 3; level++) {
                    init_candidate(x, a);
                    info_of(x, a)->score += s / (level == 0 ? 1 : level == 1 ? 2 : 3 * level);
                    a = a->parent;
                }
            }
        }
        if (!tag_is(c, "p")) score_paragraphs(x, c);
    }
}

static double final_score(ex *x, xmlNode *n)
{
    return info_of(x, n)->score * (1 - link_density(x, n));
}

/* ---------------------------------------------------------------- content cleaning */

static bool looks_like_boilerplate(ex *x, xmlNode *n, long top_len)
{
    bool negative = false;
    int k = class_kind2(n, &negative);
    long len = text_len(x, n);
    /* inside the article any negative token counts ("entry-meta", "bottom-of-article"),
     * unless the element holds most of the article ("content has-sidebar") */
    if ((k < 0 || negative) && len * 2 < top_len) return true;
    if (tag_is(n, "h1")) return true;
    double ld = link_density(x, n);
    if ((tag_is(n, "ul") || tag_is(n, "ol") || tag_is(n, "div") || tag_is(n, "section") ||
         tag_is(n, "p") || tag_is(n, "table")) &&
        ld > 0.5 && len < 1000)
        return true;
    if (tag_in(n, (const char *const[]){"div", "section", "ul", "table", NULL}) && len == 0 &&
        !xmlFirstElementChild(n))
        return true;
    return false;
}

static void clean_content(ex *x, xmlNode *n, long top_len)
{
    for (xmlNode *c = n->children, *next; c; c = next) {
        next = c->next;
        if (c->type != XML_ELEMENT_NODE) continue;
        if (looks_like_boilerplate(x, c, top_len))
            remove_node(c);
        else
            clean_content(x, c, top_len);
    }
}

/* ---------------------------------------------------------------- rendering */

typedef struct render_state {
    core_buf out;
    core_buf para;
} render_state;

static void flush_para(render_state *st)
{
    if (!st->para.len) return;
    squash(st->para.data);
    size_t n = strlen(st->para.data);
    if (n) {
        if (st->out.len) core_buf_puts(&st->out, "\n\n");
        core_buf_append(&st->out, st->para.data, n);
    }
    core_buf_reset(&st->para);
}

static void render(const xmlNode *n, render_state *st)
{
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            if (c->content) core_buf_puts(&st->para, (const char *)c->content);
        } else if (c->type == XML_ELEMENT_NODE) {
            if (tag_is(c, "pre")) { /* preformatted: kept as it is */
                flush_para(st);
                xmlChar *raw = xmlNodeGetContent(c);
                const char *t = raw ? (const char *)raw : "";
                size_t tl = strlen(t);
                while (tl && isspace((unsigned char)t[tl - 1]))
                    tl--;
                while (tl && (*t == '\n' || *t == '\r'))
                    t++, tl--;
                if (tl) {
                    if (st->out.len) core_buf_puts(&st->out, "\n\n");
                    core_buf_append(&st->out, t, tl);
                }
                xmlFree(raw);
                continue;
            }
            bool block = tag_in(c, block_tags);
            if (block)
                flush_para(st);
            else if (tag_is(c, "img"))
                continue;
            render(c, st);
            if (block) flush_para(st);
        }
    }
}

static char *render_text(const xmlNode *n)
{
    render_state st = {0};
    render(n, &st);
    flush_para(&st);
    core_buf_free(&st.para);
    core_buf_append(&st.out, "", 0);
    return core_buf_steal(&st.out, NULL);
}

/* ---------------------------------------------------------------- metadata */

typedef struct meta {
    char *og_title, *tw_title, *title_tag, *h1;
    char *og_url, *canonical;
    char *description, *og_description;
    char *image, *site_name, *lang, *locale;
    char *author, *published;
    char *ld_headline, *ld_author, *ld_published, *ld_image, *ld_lang;
    char *byline, *time_dt;
} meta;

static void meta_free(meta *m)
{
    char **f[] = {&m->og_title,     &m->tw_title,  &m->title_tag,   &m->h1,
                  &m->og_url,       &m->canonical, &m->description, &m->og_description,
                  &m->image,        &m->site_name, &m->lang,        &m->locale,
                  &m->author,       &m->published, &m->ld_headline, &m->ld_author,
                  &m->ld_published, &m->ld_image,  &m->ld_lang,     &m->byline,
                  &m->time_dt};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        free(*f[i]);
}

static bool key_is(const char *k, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (strcasecmp(k, names[i]) == 0) return true;
    return false;
}

static void meta_tag(meta *m, const xmlNode *n)
{
    char *content = prop(n, "content");
    if (!content) return;
    const char *attrs[] = {"property", "name", "itemprop", "http-equiv"};
    for (int a = 0; a < 4; a++) {
        char *k = prop(n, attrs[a]);
        if (!k) continue;
        if (key_is(k, (const char *const[]){"og:title", NULL}))
            set_str(&m->og_title, content);
        else if (key_is(k, (const char *const[]){"twitter:title", NULL}))
            set_str(&m->tw_title, content);
        else if (key_is(k, (const char *const[]){"og:url", NULL}))
            set_str(&m->og_url, content);
        else if (key_is(k, (const char *const[]){"description", "dc.description", NULL}))
            set_str(&m->description, content);
        else if (key_is(k, (const char *const[]){"og:description", "twitter:description", NULL}))
            set_str(&m->og_description, content);
        else if (key_is(k,
                        (const char *const[]){"og:image", "og:image:url", "og:image:secure_url",
                                              "twitter:image", "twitter:image:src", "image", NULL}))
            set_str(&m->image, content);
        else if (key_is(k, (const char *const[]){"og:site_name", "application-name", NULL}))
            set_str(&m->site_name, content);
        else if (key_is(k, (const char *const[]){"og:locale", "content-language", "dc.language",
                                                 "language", NULL}))
            set_str(&m->locale, content);
        else if (key_is(k, (const char *const[]){"author", "article:author", "dc.creator",
                                                 "parsely-author", "sailthru.author", "byl",
                                                 "citation_author", NULL})) {
            if (strncmp(content, "http", 4) != 0) set_str(&m->author, content);
        } else if (key_is(k, (const char *const[]){
                                 "article:published_time", "og:article:published_time",
                                 "datePublished", "date", "dc.date", "dc.date.issued", "pubdate",
                                 "publishdate", "publish-date", "sailthru.date", "parsely-pub-date",
                                 "citation_publication_date", "dcterms.created", NULL}))
            set_str(&m->published, content);
        free(k);
    }
    free(content);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool ld_is_article(const json_t *o)
{
    const json_t *t = json_object_get(o, "@type");
    const char *types[8] = {0};
    size_t nt = 0;
    if (json_is_string(t))
        types[nt++] = json_string_value(t);
    else if (json_is_array(t))
        for (size_t i = 0; i < json_array_size(t) && nt < 8; i++)
            if (json_is_string(json_array_get(t, i)))
                types[nt++] = json_string_value(json_array_get(t, i));
    for (size_t i = 0; i < nt; i++)
        if (strstr(types[i], "Article") || strstr(types[i], "BlogPosting") ||
            strcmp(types[i], "Report") == 0 || strcmp(types[i], "WebPage") == 0)
            return true;
    return false;
}

static char *ld_name(const json_t *v)
{
    if (json_is_string(v)) return core_xstrdup(json_string_value(v));
    if (json_is_object(v) && jstr(v, "name")) return core_xstrdup(jstr(v, "name"));
    if (json_is_array(v) && json_array_size(v)) {
        core_buf b = {0};
        for (size_t i = 0; i < json_array_size(v); i++) {
            char *n = ld_name(json_array_get(v, i));
            if (n && *n) {
                if (b.len) core_buf_puts(&b, ", ");
                core_buf_puts(&b, n);
            }
            free(n);
        }
        return b.len ? core_buf_steal(&b, NULL) : NULL;
    }
    return NULL;
}

static char *ld_url(const json_t *v)
{
    if (json_is_string(v)) return core_xstrdup(json_string_value(v));
    if (json_is_object(v) && jstr(v, "url")) return core_xstrdup(jstr(v, "url"));
    if (json_is_array(v) && json_array_size(v)) return ld_url(json_array_get(v, 0));
    return NULL;
}

static void ld_object(meta *m, const json_t *o)
{
    if (json_is_array(o)) {
        for (size_t i = 0; i < json_array_size(o); i++)
            ld_object(m, json_array_get(o, i));
        return;
    }
    if (!json_is_object(o)) return;
    if (json_object_get(o, "@graph")) ld_object(m, json_object_get(o, "@graph"));
    if (!ld_is_article(o)) return;
    set_str(&m->ld_headline, jstr(o, "headline"));
    set_str(&m->ld_published, jstr(o, "datePublished"));
    set_str(&m->ld_lang, jstr(o, "inLanguage"));
    set_owned(&m->ld_author, ld_name(json_object_get(o, "author")));
    set_owned(&m->ld_image, ld_url(json_object_get(o, "image")));
}

static void collect_meta(meta *m, xmlNode *n)
{
    for (xmlNode *c = n; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (tag_is(c, "meta"))
            meta_tag(m, c);
        else if (tag_is(c, "title") && !m->title_tag)
            m->title_tag = node_text(c);
        else if (tag_is(c, "h1") && !m->h1)
            set_owned(&m->h1, node_text(c));
        else if (tag_is(c, "link")) {
            char *rel = prop(c, "rel");
            if (rel && strcasecmp(rel, "canonical") == 0)
                set_owned(&m->canonical, prop(c, "href"));
            else if (rel && strcasecmp(rel, "image_src") == 0)
                set_owned(&m->image, prop(c, "href"));
            free(rel);
        } else if (tag_is(c, "script")) {
            char *type = prop(c, "type");
            if (type && strcasecmp(type, "application/ld+json") == 0) {
                xmlChar *txt = xmlNodeGetContent(c);
                json_t *j = txt ? json_loads((const char *)txt, 0, NULL) : NULL;
                ld_object(m, j);
                json_decref(j);
                xmlFree(txt);
            }
            free(type);
            continue;
        } else if (tag_is(c, "html")) {
            set_owned(&m->lang, prop(c, "lang"));
            if (!m->lang) set_owned(&m->lang, prop(c, "xml:lang"));
        } else if (tag_is(c, "time") && !m->time_dt) {
            set_owned(&m->time_dt, prop(c, "datetime"));
        }
        if (!m->published && c->type == XML_ELEMENT_NODE && !tag_is(c, "meta")) {
            char *ip = prop(c, "itemprop");
            char *cls = prop(c, "class");
            bool pub = (ip && strcmp(ip, "datePublished") == 0) ||
                       (cls && (strstr(cls, "published") || strstr(cls, "dt-published")));
            if (pub) {
                char *v = prop(c, "datetime");
                if (!v) v = prop(c, "content");
                if (!v) v = prop(c, "title");
                if (v && sc_parse_date(v))
                    set_owned(&m->published, v);
                else
                    free(v);
            }
            free(ip);
            free(cls);
        }
        if (!m->byline) {
            char *rel = prop(c, "rel");
            char *ip = prop(c, "itemprop");
            bool by = (rel && strcasecmp(rel, "author") == 0) || (ip && strcmp(ip, "author") == 0);
            if (!by) {
                char *dc = prop(c, "data-component");
                by = dc && strcasestr(dc, "byline");
                free(dc);
            }
            if (!by) {
                char *cls = prop(c, "class");
                by = cls && (strcasestr(cls, "byline") || strcasestr(cls, "author-name") ||
                             strcmp(cls, "author") == 0 || strcasestr(cls, "p-author"));
                free(cls);
            }
            if (by) {
                char *t = render_text(c);
                char *br = strstr(t, "\n\n");
                if (br) *br = '\0';
                if (strlen(t) > 0 && strlen(t) < 100)
                    m->byline = t;
                else
                    free(t);
            }
            free(rel);
            free(ip);
        }
        collect_meta(m, c->children);
    }
}

static char *clean_author(char *a)
{
    if (!a) return NULL;
    char *s = a;
    if (strncasecmp(s, "by ", 3) == 0)
        s += 3;
    else if (strncasecmp(s, "written by ", 11) == 0)
        s += 11;
    else if (strncasecmp(s, "posted by ", 10) == 0)
        s += 10;
    /* "Jane Doe | March 3" or "Jane Doe, Reporter": keep the name */
    size_t n = strcspn(s, "|\xE2\n");
    char *out = squash(core_xstrndup(s, n));
    free(a);
    if (!*out) {
        free(out);
        return NULL;
    }
    return out;
}

static char *pick_title(meta *m)
{
    if (m->og_title) return core_xstrdup(m->og_title);
    if (m->ld_headline) return core_xstrdup(m->ld_headline);
    if (m->tw_title) return core_xstrdup(m->tw_title);
    if (m->h1 && m->title_tag && strstr(m->title_tag, m->h1)) return core_xstrdup(m->h1);
    if (m->title_tag) {
        /* "Headline | Site" or "Headline - Site": cut the shorter site part */
        static const char *const seps[] = {
            " | ", " - ", " \xE2\x80\x94 ", " \xE2\x80\x93 ", " :: ", " \xC2\xB7 ", NULL};
        for (int i = 0; seps[i]; i++) {
            const char *p = strstr(m->title_tag, seps[i]);
            if (p && (size_t)(p - m->title_tag) * 2 > strlen(m->title_tag) / 2)
                return core_xstrndup(m->title_tag, (size_t)(p - m->title_tag));
        }
        return core_xstrdup(m->title_tag);
    }
    return m->h1 ? core_xstrdup(m->h1) : NULL;
}

/* ---------------------------------------------------------------- main text */

static size_t count_words(const char *s)
{
    size_t n = 0;
    bool in = false;
    for (; *s; s++) {
        bool w = isalnum((unsigned char)*s) || (unsigned char)*s >= 0x80;
        if (w && !in) n++;
        in = w;
    }
    return n;
}

/* Paragraphs that are metadata rather than article: the title or the standfirst repeated, a
 * short byline naming the author, a lone kicker or counter ("Features", "1.2K"), an end mark. */
static bool boilerplate_para(const char *p, const sc_item *it)
{
    size_t len = strlen(p), words = count_words(p);
    if (words == 0) return true;
    if (it->title && strcasecmp(p, it->title) == 0) return true;
    if (it->description && strcasecmp(p, it->description) == 0) return true;
    if (it->author && len < 120 && strstr(p, it->author)) return true;
    if (words <= 2 && !strchr(".!?:", p[len - 1])) return true;
    return false;
}

static char *filter_paragraphs(char *text, const sc_item *it)
{
    core_buf out = {0};
    char *p = text;
    while (*p) {
        char *end = strstr(p, "\n\n");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char save = p[n];
        p[n] = '\0';
        if (!boilerplate_para(p, it)) {
            if (out.len) core_buf_puts(&out, "\n\n");
            core_buf_append(&out, p, n);
        }
        p[n] = save;
        p += n;
        if (*p) p += 2;
    }
    free(text);
    core_buf_append(&out, "", 0);
    return core_buf_steal(&out, NULL);
}

static char *main_text(ex *x, xmlDoc *doc)
{
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root) return core_xstrdup("");
    xmlNode *body = NULL;
    for (xmlNode *c = root->children; c; c = c->next)
        if (tag_is(c, "body")) body = c;
    if (!body) body = root;
    prune(body);
    score_paragraphs(x, body);
    xmlNode *top = NULL;
    double best = 0;
    for (size_t i = 0; i < x->ncands; i++) {
        double s = final_score(x, x->cands[i]);
        if (!top || s > best) {
            top = x->cands[i];
            best = s;
        }
    }
    if (!top) top = body;
    /* Articles split over sibling containers: climb while the parent's paragraphs are mostly
     * ours plus siblings as strong as we are. */
    while (top != body && top->parent && top->parent->type == XML_ELEMENT_NODE &&
           top->parent != body) {
        xmlNode *p = top->parent;
        double ps = info_of(x, p)->scored ? final_score(x, p) : 0;
        int strong = 0;
        for (xmlNode *s = p->children; s; s = s->next)
            if (s != top && s->type == XML_ELEMENT_NODE && info_of(x, s)->scored &&
                final_score(x, s) >= best * 0.5 && class_kind(s) >= 0)
                strong++;
        (void)ps;
        if (strong == 0) break;
        if (class_kind(p) < 0) break;
        top = p;
        best = fmax(best, ps);
    }
    /* the candidate's siblings that look like more article */
    core_buf text = {0};
    xmlNode *parent = top->parent;
    double threshold = fmax(10, best * 0.2);
    for (xmlNode *s = parent && top != body ? parent->children : top; s;
         s = top != body ? s->next : NULL) {
        if (s->type != XML_ELEMENT_NODE) continue;
        bool take = s == top, negative = false;
        if (!take && class_kind2(s, &negative) >= 0 && !negative) {
            if (info_of(x, s)->scored && final_score(x, s) >= threshold)
                take = true;
            else if (tag_is(s, "p")) {
                long len = text_len(x, s);
                double ld = link_density(x, s);
                char *t = node_text(s);
                size_t tl = strlen(t);
                if ((len > 80 && ld < 0.25) ||
                    (len > 0 && ld == 0 && tl > 1 && (t[tl - 1] == '.' || t[tl - 1] == '"')))
                    take = true;
                free(t);
            }
        }
        if (!take) continue;
        clean_content(x, s, text_len(x, s));
        char *t = render_text(s);
        if (*t) {
            if (text.len) core_buf_puts(&text, "\n\n");
            core_buf_puts(&text, t);
        }
        free(t);
        if (top == body) break;
    }
    /* a paragraph block rendered from the <p> itself */
    if (!text.len) return core_xstrdup("");
    return core_buf_steal(&text, NULL);
}

static void clear_private(xmlNode *n)
{
    for (; n; n = n->next) {
        n->_private = NULL;
        if (n->type == XML_ELEMENT_NODE) clear_private(n->children);
    }
}

static xmlDoc *parse_html(const char *html, size_t len, const char *url)
{
    return htmlReadMemory(html, (int)len, url, "UTF-8",
                          HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                              HTML_PARSE_NONET | HTML_PARSE_COMPACT);
}

void sc_extract(const char *html, size_t len, const char *url, sc_item *out)
{
    memset(out, 0, sizeof *out);
    out->url = url ? core_xstrdup(url) : NULL;
    xmlDoc *doc = parse_html(html, len, url);
    if (!doc) {
        out->text = core_xstrdup("");
        return;
    }
    meta m = {0};
    collect_meta(&m, xmlDocGetRootElement(doc));
    out->title = pick_title(&m);
    if (out->title) squash(out->title);
    const char *canon = m.canonical ? m.canonical : m.og_url;
    out->canonical_url = absolute(url, canon);
    char *author = m.ld_author ? core_xstrdup(m.ld_author)
                   : m.author  ? core_xstrdup(m.author)
                   : m.byline  ? core_xstrdup(m.byline)
                               : NULL;
    out->author = clean_author(author);
    const char *pub = m.ld_published ? m.ld_published : m.published ? m.published : m.time_dt;
    out->published_ms = sc_parse_date(pub);
    const char *lang = m.lang ? m.lang : m.ld_lang ? m.ld_lang : m.locale;
    if (lang) {
        out->lang = core_xstrdup(lang);
        for (char *c = out->lang; *c; c++)
            *c = *c == '_' ? '-' : *c;
    }
    set_str(&out->description, m.og_description ? m.og_description : m.description);
    out->image_url = absolute(url, m.image ? m.image : m.ld_image);
    set_str(&out->site_name, m.site_name);
    ex x = {.url = url};
    out->text = filter_paragraphs(main_text(&x, doc), out);
    clear_private(xmlDocGetRootElement(doc));
    free(x.infos);
    free(x.cands);
    meta_free(&m);
    xmlFreeDoc(doc);
}

char *sc_html_text(const char *html, size_t len)
{
    /* a fragment, or plain text that happens to contain no tags */
    if (!memchr(html, '<', len)) return squash(core_xstrndup(html, len));
    core_buf wrapped = {0};
    core_buf_puts(&wrapped, "<html><body><div>");
    core_buf_append(&wrapped, html, len);
    core_buf_puts(&wrapped, "</div></body></html>");
    xmlDoc *doc = parse_html(wrapped.data, wrapped.len, NULL);
    core_buf_free(&wrapped);
    if (!doc) return core_xstrdup("");
    xmlNode *root = xmlDocGetRootElement(doc);
    prune(root);
    char *t = render_text(root);
    xmlFreeDoc(doc);
    return t;
}

void sc_item_free(sc_item *it)
{
    free(it->url);
    free(it->canonical_url);
    free(it->title);
    free(it->author);
    free(it->lang);
    free(it->description);
    free(it->image_url);
    free(it->site_name);
    free(it->text);
    memset(it, 0, sizeof *it);
}

static json_t *js(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *sc_item_json(const sc_item *it)
{
    char published[CORE_RFC3339_LEN + 1] = "";
    if (it->published_ms) core_format_rfc3339(it->published_ms, published);
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "url", js(it->url),
                     "canonical_url", js(it->canonical_url), "title", js(it->title), "author",
                     js(it->author), "published", js(it->published_ms ? published : NULL), "lang",
                     js(it->lang), "description", js(it->description), "image_url",
                     js(it->image_url), "site_name", js(it->site_name), "text",
                     js(it->text ? it->text : ""));
}

char *sc_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    core_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        core_buf_append(&b, chunk, n);
    fclose(f);
    core_buf_append(&b, "", 0);
    return core_buf_steal(&b, len);
}
