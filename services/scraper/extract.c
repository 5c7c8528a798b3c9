/*
 * Article extraction from HTML, on gumbo (an HTML5 tokenizer and tree builder: pages are parsed
 * the way browsers parse them, broken markup included). Gumbo allocates from a bump arena that
 * is reset after each page, and tags are compared as gumbo's enum, never as strings.
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
#include <gumbo.h>
#include <math.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "scraper.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* poisoned gaps between arena allocations, so that ASan still sees overruns inside the arena */
#define ARENA_REDZONE 16u
#else
#define ARENA_REDZONE                     0u
#define ASAN_POISON_MEMORY_REGION(p, n)   ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

/* ---------------------------------------------------------------- parse arena */

/* Gumbo makes one allocation per node, attribute, string and vector, and gumbo_destroy_output
 * frees them one by one: with malloc, that is a large part of its time on a small page. From a
 * bump arena, allocating is an addition and freeing the whole tree is one reset. What does not
 * fit goes to malloc as a spill block, listed so that gumbo's frees during the parse and the
 * reset after it release it; the arena then grows to fit such a page next time, up to
 * ARENA_MAX (its pages stay resident, and the scraper is meant to be small).
 *
 * The arena also bounds the parse. HTML5 tree building has inputs that cost far more than
 * their size: each unclosed <font a=N> is re-opened in every later paragraph (a 6 KB page
 * made 27 MB of nodes), and every <div> start tag scans the open elements (200,000 nested
 * <div>s, 1 MB, took two minutes). Beyond PARSE_BUDGET bytes of allocations or PARSE_CPU_NS
 * of thread CPU time, the allocator jumps out of gumbo and the page counts as empty. Nothing
 * leaks: gumbo holds nothing but arena memory. Real pages take 8 to 25 times their size, and a
 * 14 MB one about half a second. */
#define ARENA_INITIAL            (256u * 1024)
#define ARENA_MAX                (1024u * 1024)
#define ARENA_ALIGN              alignof(max_align_t)
#define PARSE_BUDGET(len)        ((size_t)16 * 1024 * 1024 + (size_t)64 * (len))
#define PARSE_CPU_NS(len)        (INT64_C(1000000000) + INT64_C(250) * (int64_t)(len))
#define PARSE_CPU_CHECK_INTERVAL 1024 /* allocations between clock readings */

typedef struct arena_spill {
    struct arena_spill *prev, *next;
    max_align_t data[];
} arena_spill;

typedef struct parse_arena {
    char *block;
    size_t size, used;
    size_t spilled;      /* bytes this page took from malloc: how much the block should grow */
    arena_spill *spills; /* spill blocks gumbo has not freed */
    jmp_buf *abandon;    /* set while gumbo parses: where to give up to */
    size_t budget;
    int64_t cpu_deadline_ns;
    unsigned allocations;
} parse_arena;

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *arena_alloc(void *userdata, size_t size)
{
    parse_arena *a = userdata;
    size_t need = ((size ? size : 1) + ARENA_REDZONE + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (a->abandon && (a->used + a->spilled + need > a->budget ||
                       (++a->allocations % PARSE_CPU_CHECK_INTERVAL == 0 &&
                        thread_cpu_ns() > a->cpu_deadline_ns)))
        longjmp(*a->abandon, 1);
    if (size < a->size && need <= a->size - a->used) {
        char *p = a->block + a->used;
        a->used += need;
        ASAN_UNPOISON_MEMORY_REGION(p, size);
        return p;
    }
    arena_spill *s = core_xrealloc(NULL, sizeof *s + size);
    *s = (arena_spill){.prev = NULL, .next = a->spills};
    if (a->spills) a->spills->prev = s;
    a->spills = s;
    a->spilled += need;
    return s->data;
}

static void arena_free(void *userdata, void *ptr)
{
    parse_arena *a = userdata;
    uintptr_t p = (uintptr_t)ptr, start = (uintptr_t)a->block;
    if (!ptr || (p >= start && p < start + a->size)) return; /* the reset reclaims it */
    arena_spill *s = (arena_spill *)((char *)ptr - offsetof(arena_spill, data));
    if (s->prev)
        s->prev->next = s->next;
    else
        a->spills = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
}

static void arena_set_block(parse_arena *a, size_t size)
{
    if (a->block) ASAN_UNPOISON_MEMORY_REGION(a->block, a->size);
    free(a->block);
    a->block = size ? core_xrealloc(NULL, size) : NULL;
    a->size = size;
    a->used = 0;
    if (a->block) ASAN_POISON_MEMORY_REGION(a->block, a->size);
}

static void arena_free_spills(parse_arena *a)
{
    while (a->spills) {
        arena_spill *s = a->spills;
        a->spills = s->next;
        free(s);
    }
}

/* Forgets a page's allocations without learning from them (an abandoned parse). */
static void arena_discard(parse_arena *a)
{
    arena_free_spills(a);
    ASAN_POISON_MEMORY_REGION(a->block, a->used);
    a->used = a->spilled = 0;
}

/* After a page: everything gumbo allocated goes at once. */
static void arena_reset(parse_arena *a)
{
    arena_free_spills(a);
    size_t want = a->size;
    while (want < a->used + a->spilled && want < ARENA_MAX)
        want *= 2;
    if (want > ARENA_MAX) want = ARENA_MAX;
    a->spilled = 0;
    if (want != a->size) {
        arena_set_block(a, want);
        return;
    }
    ASAN_POISON_MEMORY_REGION(a->block, a->used);
    a->used = 0;
}

/* One arena for the process: extraction runs on the event loop's thread (or in the offline
 * CLI's only one). A concurrent or reentrant caller finds it taken and uses one of its own. */
static parse_arena shared_arena;
static atomic_flag shared_arena_taken = ATOMIC_FLAG_INIT;

typedef struct parsed_html {
    GumboOutput *output;
    parse_arena *arena;
    parse_arena own_arena;
} parsed_html;

/* No gumbo_destroy_output: every allocation is in the arena or on its spill list (and nodes
 * pruned from the tree would not be reached by it anyway). */
static void parsed_html_free(parsed_html *doc)
{
    if (doc->arena == &shared_arena) {
        arena_reset(&shared_arena);
        atomic_flag_clear(&shared_arena_taken);
    } else {
        arena_free_spills(&doc->own_arena);
        arena_set_block(&doc->own_arena, 0);
    }
    doc->output = NULL;
}

/* ---------------------------------------------------------------- tree helpers */

/* Template contents count as elements, as they did to the HTML4 parser used before. */
static bool is_element(const GumboNode *n)
{
    return n->type == GUMBO_NODE_ELEMENT || n->type == GUMBO_NODE_TEMPLATE;
}

static bool is_text(const GumboNode *n)
{
    return n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE ||
           n->type == GUMBO_NODE_CDATA;
}

static GumboVector *children_of(GumboNode *n)
{
    static GumboVector none; /* text and comments */
    if (n->type == GUMBO_NODE_DOCUMENT) return &n->v.document.children;
    return is_element(n) ? &n->v.element.children : &none;
}

static GumboNode *child_at(const GumboVector *kids, unsigned i)
{
    return kids->data[i];
}

/* GUMBO_TAG_LAST (which no element has) for what is not an element. */
static GumboTag tag_of(const GumboNode *n)
{
    return is_element(n) ? n->v.element.tag : GUMBO_TAG_LAST;
}

static bool tag_is(const GumboNode *n, GumboTag tag)
{
    return tag_of(n) == tag;
}

static GumboNode *first_element_child(GumboNode *n)
{
    GumboVector *kids = children_of(n);
    for (unsigned i = 0; i < kids->length; i++)
        if (is_element(child_at(kids, i))) return child_at(kids, i);
    return NULL;
}

/* Puts c back as the kept-th child while a loop filters the children in place: removing that
 * way costs one pass however many children go. */
static void keep_child(GumboVector *kids, GumboNode *c, unsigned *kept)
{
    c->index_within_parent = *kept;
    kids->data[(*kept)++] = c;
}

/* name in lower case: gumbo lowers attribute names (gumbo_get_attribute would compare them
 * ignoring case again, which is most of the time attributes take) */
static const char *attr(const GumboNode *n, const char *name)
{
    if (!is_element(n)) return NULL;
    const GumboVector *attrs = &n->v.element.attributes;
    for (unsigned i = 0; i < attrs->length; i++) {
        const GumboAttribute *a = attrs->data[i];
        if (a->name[0] == name[0] && strcmp(a->name, name) == 0) return a->value;
    }
    return NULL;
}

enum {
    NEVER_CONTENT = 1 << 0, /* dropped before scoring */
    BLOCK = 1 << 1,         /* its text is a paragraph of its own */
};

static const unsigned char tag_classes[GUMBO_TAG_LAST + 1] = {
    [GUMBO_TAG_SCRIPT] = NEVER_CONTENT,
    [GUMBO_TAG_STYLE] = NEVER_CONTENT,
    [GUMBO_TAG_NOSCRIPT] = NEVER_CONTENT,
    [GUMBO_TAG_TEMPLATE] = NEVER_CONTENT,
    [GUMBO_TAG_IFRAME] = NEVER_CONTENT,
    [GUMBO_TAG_SVG] = NEVER_CONTENT,
    [GUMBO_TAG_CANVAS] = NEVER_CONTENT,
    [GUMBO_TAG_FORM] = NEVER_CONTENT,
    [GUMBO_TAG_BUTTON] = NEVER_CONTENT,
    [GUMBO_TAG_SELECT] = NEVER_CONTENT,
    [GUMBO_TAG_INPUT] = NEVER_CONTENT,
    [GUMBO_TAG_TEXTAREA] = NEVER_CONTENT,
    [GUMBO_TAG_NAV] = NEVER_CONTENT,
    [GUMBO_TAG_ASIDE] = NEVER_CONTENT,
    [GUMBO_TAG_FOOTER] = NEVER_CONTENT,
    [GUMBO_TAG_HEADER] = NEVER_CONTENT,
    [GUMBO_TAG_OBJECT] = NEVER_CONTENT,
    [GUMBO_TAG_EMBED] = NEVER_CONTENT,
    [GUMBO_TAG_MENU] = NEVER_CONTENT,
    [GUMBO_TAG_LINK] = NEVER_CONTENT,
    [GUMBO_TAG_META] = NEVER_CONTENT,
    [GUMBO_TAG_FIGURE] = NEVER_CONTENT | BLOCK,
    [GUMBO_TAG_FIGCAPTION] = NEVER_CONTENT,
    [GUMBO_TAG_VIDEO] = NEVER_CONTENT,
    [GUMBO_TAG_AUDIO] = NEVER_CONTENT,
    [GUMBO_TAG_SOURCE] = NEVER_CONTENT,
    [GUMBO_TAG_MAP] = NEVER_CONTENT,
    [GUMBO_TAG_LABEL] = NEVER_CONTENT,
    /* fallbacks for browsers without frames or plugins; their content is raw text to HTML5,
     * so it would come out as markup */
    [GUMBO_TAG_NOFRAMES] = NEVER_CONTENT,
    [GUMBO_TAG_NOEMBED] = NEVER_CONTENT,
    [GUMBO_TAG_P] = BLOCK,
    [GUMBO_TAG_DIV] = BLOCK,
    [GUMBO_TAG_SECTION] = BLOCK,
    [GUMBO_TAG_ARTICLE] = BLOCK,
    [GUMBO_TAG_MAIN] = BLOCK,
    [GUMBO_TAG_BLOCKQUOTE] = BLOCK,
    [GUMBO_TAG_PRE] = BLOCK,
    [GUMBO_TAG_UL] = BLOCK,
    [GUMBO_TAG_OL] = BLOCK,
    [GUMBO_TAG_LI] = BLOCK,
    [GUMBO_TAG_TABLE] = BLOCK,
    [GUMBO_TAG_TR] = BLOCK,
    [GUMBO_TAG_TD] = BLOCK,
    [GUMBO_TAG_TH] = BLOCK,
    [GUMBO_TAG_H1] = BLOCK,
    [GUMBO_TAG_H2] = BLOCK,
    [GUMBO_TAG_H3] = BLOCK,
    [GUMBO_TAG_H4] = BLOCK,
    [GUMBO_TAG_H5] = BLOCK,
    [GUMBO_TAG_H6] = BLOCK,
    [GUMBO_TAG_DL] = BLOCK,
    [GUMBO_TAG_DD] = BLOCK,
    [GUMBO_TAG_DT] = BLOCK,
    [GUMBO_TAG_HR] = BLOCK,
    [GUMBO_TAG_BR] = BLOCK,
    [GUMBO_TAG_ADDRESS] = BLOCK,
    [GUMBO_TAG_CENTER] = BLOCK,
    [GUMBO_TAG_TBODY] = BLOCK,
    [GUMBO_TAG_THEAD] = BLOCK,
};

/* Tags newer than gumbo's list come as GUMBO_TAG_UNKNOWN, named only in the source text. */
static const struct {
    const char *name;
    unsigned char classes;
} unknown_tag_classes[] = {{"dialog", NEVER_CONTENT}, {"picture", NEVER_CONTENT}};

static unsigned tag_class(const GumboNode *n)
{
    if (!is_element(n)) return 0;
    if (n->v.element.tag != GUMBO_TAG_UNKNOWN) return tag_classes[n->v.element.tag];
    /* original_tag is the start tag as written, "<dialog open>" */
    const GumboStringPiece *src = &n->v.element.original_tag;
    if (src->length < 2 || src->data[0] != '<') return 0;
    size_t len = 0;
    while (len + 1 < src->length && !isspace((unsigned char)src->data[1 + len]) &&
           src->data[1 + len] != '/' && src->data[1 + len] != '>')
        len++;
    for (size_t i = 0; i < sizeof unknown_tag_classes / sizeof unknown_tag_classes[0]; i++)
        if (strlen(unknown_tag_classes[i].name) == len &&
            strncasecmp(src->data + 1, unknown_tag_classes[i].name, len) == 0)
            return unknown_tag_classes[i].classes;
    return 0;
}

/* ---------------------------------------------------------------- tree repairs */

/* Elements nested deeper are dropped (the parser used before stopped at that depth too): the
 * walks below recurse, and a page of a million nested <div>s must not reach them. */
#define MAX_DEPTH 256

/* Written "<div class=clear/>" or "<a name=x/>", XHTML style: HTML5 ignores the slash on an
 * element that is not void and nests what follows inside it (into copies of it, even, for
 * formatting elements such as <a>), while the author meant it empty. Not for an unquoted
 * value that ends in a slash, "<a href=/>". */
static bool written_self_closed(const GumboNode *n)
{
    const GumboStringPiece *src = &n->v.element.original_tag;
    if (src->length < 3 || memcmp(src->data + src->length - 2, "/>", 2) != 0) return false;
    const GumboVector *attrs = &n->v.element.attributes;
    if (!attrs->length) return true;
    const GumboAttribute *last = attrs->data[attrs->length - 1];
    const GumboStringPiece *value = &last->original_value; /* as written, quotes and all */
    return !value->data || value->data + value->length <= src->data + src->length - 2;
}

/* Elements whose content is not markup, or that the parser makes itself: left as they are. */
static bool keeps_children(GumboTag tag)
{
    switch (tag) {
    case GUMBO_TAG_HTML:
    case GUMBO_TAG_HEAD:
    case GUMBO_TAG_BODY:
    case GUMBO_TAG_SCRIPT:
    case GUMBO_TAG_STYLE:
    case GUMBO_TAG_IFRAME:
    case GUMBO_TAG_TEXTAREA:
    case GUMBO_TAG_TITLE:
    case GUMBO_TAG_XMP:
    case GUMBO_TAG_NOEMBED:
    case GUMBO_TAG_NOFRAMES:
    case GUMBO_TAG_PLAINTEXT:
    case GUMBO_TAG_TEMPLATE:
        return true;
    default:
        return false;
    }
}

static unsigned index_in_parent(const GumboNode *n)
{
    const GumboVector *sibs = children_of(n->parent);
    unsigned i = (unsigned)n->index_within_parent;
    if (i < sibs->length && sibs->data[i] == n) return i;
    for (i = 0; sibs->data[i] != n; i++)
        ;
    return i;
}

/* Moves n's children to right after n; returns how many. */
static unsigned hoist_children(parse_arena *arena, GumboNode *n)
{
    GumboVector *sibs = children_of(n->parent), *moved = children_of(n);
    unsigned at = index_in_parent(n) + 1, count = moved->length;
    if (sibs->length + count > sibs->capacity) {
        unsigned capacity = sibs->length + count;
        void **data = arena_alloc(arena, capacity * sizeof *data);
        memcpy(data, sibs->data, sibs->length * sizeof *data);
        arena_free(arena, sibs->data);
        sibs->data = data;
        sibs->capacity = capacity;
    }
    memmove(&sibs->data[at + count], &sibs->data[at], (sibs->length - at) * sizeof *sibs->data);
    memcpy(&sibs->data[at], moved->data, count * sizeof *sibs->data);
    sibs->length += count;
    moved->length = 0;
    for (unsigned i = at; i < sibs->length; i++) {
        GumboNode *c = child_at(sibs, i);
        c->parent = n->parent;
        c->index_within_parent = i;
    }
    return count;
}

/* Drops elements nested deeper than MAX_DEPTH and empties self-closed ones, in one walk that
 * does not recurse (the tree may be arbitrarily deep before it). */
static void repair_tree(parse_arena *arena, GumboNode *root)
{
    GumboNode *n = root;
    unsigned depth = 0;
    for (;;) {
        GumboVector *kids = children_of(n);
        if (depth == MAX_DEPTH && kids->length) {
            unsigned kept = 0;
            for (unsigned i = 0; i < kids->length; i++)
                if (!is_element(child_at(kids, i))) keep_child(kids, child_at(kids, i), &kept);
            kids->length = kept;
        }
        if (kids->length) {
            n = child_at(kids, 0);
            depth++;
            continue;
        }
        /* n and everything under it are done: on to the next node after them */
        for (;;) {
            if (n == root) return;
            unsigned next = index_in_parent(n) + 1;
            if (is_element(n) && children_of(n)->length && written_self_closed(n) &&
                !keeps_children(n->v.element.tag))
                next += hoist_children(arena, n); /* already walked, as n's children */
            GumboVector *sibs = children_of(n->parent);
            if (next < sibs->length) {
                n = child_at(sibs, next);
                break;
            }
            n = n->parent;
            depth--;
        }
    }
}

/* The document's <html> element. html (UTF-8) must outlive the tree: gumbo points into it. */
static GumboNode *parse_html(parsed_html *doc, const char *html, size_t len)
{
    doc->own_arena = (parse_arena){0};
    doc->arena = atomic_flag_test_and_set(&shared_arena_taken) ? &doc->own_arena : &shared_arena;
    if (!doc->arena->block) arena_set_block(doc->arena, ARENA_INITIAL);
    GumboOptions options = kGumboDefaultOptions;
    options.allocator = arena_alloc;
    options.deallocator = arena_free;
    options.userdata = doc->arena;
    options.max_errors = 0; /* parse errors are never looked at; recording them costs time */
    jmp_buf abandon;
    doc->arena->abandon = &abandon;
    doc->arena->budget = PARSE_BUDGET(len);
    doc->arena->cpu_deadline_ns = thread_cpu_ns() + PARSE_CPU_NS(len);
    if (setjmp(abandon) == 0) {
        doc->output = gumbo_parse_with_options(&options, html, len);
    } else {
        arena_discard(doc->arena);
        doc->arena->abandon = NULL;
        doc->output = gumbo_parse_with_options(&options, "", 0);
    }
    doc->arena->abandon = NULL;
    repair_tree(doc->arena, doc->output->root);
    return doc->output->root;
}

/* ---------------------------------------------------------------- small helpers */

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

/* The text of every text node under n, in document order (what the DOM calls textContent). */
static void append_content(GumboNode *n, core_buf *b)
{
    GumboVector *kids = children_of(n);
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *c = child_at(kids, i);
        if (is_text(c))
            core_buf_puts(b, c->v.text.text);
        else if (is_element(c))
            append_content(c, b);
    }
}

static char *node_content(GumboNode *n)
{
    core_buf b = {0};
    append_content(n, &b);
    core_buf_append(&b, "", 0);
    return core_buf_steal(&b, NULL);
}

static char *node_text(GumboNode *n)
{
    return squash(node_content(n));
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

static void set_copy(char **dst, const char *v)
{
    if (!*dst && v && *v) *dst = core_xstrdup(v);
}

/* A URI reference as RFC 3986 allows it: no blanks, controls or non-ASCII, valid escapes
 * (brackets, for IP literals, are refused, as they always were here). */
static bool uri_reference_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '%') {
            if (!isxdigit(p[1]) || !isxdigit(p[2])) return false;
            p += 2;
        } else if (!isalnum(*p) && !strchr("-._~:/?#@!$&'()*+,;=", *p)) {
            return false;
        }
    }
    return true;
}

/* An http(s) link resolved and normalised; otherwise, as written, a link that needs no base
 * ("data:...", "ftp://...") or has none to resolve against (offline, no --url). */
static char *absolute(const char *base, const char *href)
{
    if (!href || !*href) return NULL;
    char *n = sc_url_normalize(base, href);
    if (n) return n;
    if (!uri_reference_ok(href) || (!sc_url_has_scheme(href) && base && *base)) return NULL;
    return core_xstrdup(href);
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

/* list in lower case */
static bool in_list(const char *tok, size_t n, const char *const *list)
{
    char first = (char)tolower((unsigned char)*tok);
    for (int i = 0; list[i]; i++)
        if (list[i][0] == first && strncasecmp(tok, list[i], n) == 0 && list[i][n] == '\0')
            return true;
    return false;
}

/* +1 positive, -1 weak negative, -2 strong negative, 0 neutral; scanning class and id, split
 * into tokens at non-alphanumerics and at camelCase humps (CSS modules: "InlineNewsletter_x").
 * *any_negative (may be NULL) says whether any negative token was seen, positive or not. */
static int class_kind2(const GumboNode *n, bool *any_negative)
{
    bool pos = false, weak = false, strong = false;
    for (int a = 0; a < 2; a++) {
        const char *v = attr(n, a ? "id" : "class");
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
    }
    if (any_negative) *any_negative = weak || strong;
    if (strong) return -2;
    if (weak && !pos) return -1;
    return pos ? 1 : 0;
}

static int class_kind(const GumboNode *n)
{
    return class_kind2(n, NULL);
}

/* ---------------------------------------------------------------- node info */

typedef struct node_info {
    const GumboNode *node; /* NULL: a free slot */
    double score;
    bool scored;
    long text_len; /* -1: not computed */
    long link_len;
} node_info;

typedef struct ex {
    node_info *infos; /* open addressing on the node's address; cap is a power of two */
    size_t ninfos, cap;
    GumboNode **cands;
    size_t ncands, candcap;
} ex;

static size_t info_slot(const GumboNode *n, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)n * UINT64_C(0x9E3779B97F4A7C15); /* Fibonacci hashing */
    return (size_t)(h >> 32) & (cap - 1);
}

static node_info *info_find_slot(node_info *infos, size_t cap, const GumboNode *n)
{
    size_t i = info_slot(n, cap);
    while (infos[i].node && infos[i].node != n)
        i = (i + 1) & (cap - 1);
    return &infos[i];
}

/* The node's entry, created on first use. Creating one may move the others: pointers from
 * earlier calls are stale after a call that can create. */
static node_info *info_of(ex *x, const GumboNode *n)
{
    if (x->cap) {
        node_info *e = info_find_slot(x->infos, x->cap, n);
        if (e->node) return e;
    }
    if ((x->ninfos + 1) * 2 > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 512;
        node_info *infos = core_xcalloc(cap, sizeof *infos);
        for (size_t i = 0; i < x->cap; i++)
            if (x->infos[i].node) *info_find_slot(infos, cap, x->infos[i].node) = x->infos[i];
        free(x->infos);
        x->infos = infos;
        x->cap = cap;
    }
    node_info *e = info_find_slot(x->infos, x->cap, n);
    *e = (node_info){.node = n, .score = 0, .scored = false, .text_len = -1, .link_len = 0};
    x->ninfos++;
    return e;
}

/* Characters of a text node, runs of blanks counted as one and leading blanks not at all. */
static long count_text(const char *s)
{
    long len = 0;
    bool space = true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool sp = isspace(*p);
        if (!sp || !space) len++;
        space = sp;
    }
    return len;
}

/* Text under n, and how much of it is link text: summed from its children's figures and kept.
 * Subtrees are only cut below nodes already measured, so this is what counting the whole
 * subtree again would give, once per node instead of once per ancestor. */
static long text_len(ex *x, GumboNode *n)
{
    node_info *i = info_of(x, n);
    if (i->text_len >= 0) return i->text_len;
    long text = 0, link = 0;
    GumboVector *kids = children_of(n);
    for (unsigned k = 0; k < kids->length; k++) {
        GumboNode *c = child_at(kids, k);
        if (is_text(c)) {
            text += count_text(c->v.text.text);
        } else if (is_element(c)) {
            long len = text_len(x, c);
            text += len;
            link += tag_is(c, GUMBO_TAG_A) ? len : info_of(x, c)->link_len;
        }
    }
    i = info_of(x, n); /* the children's entries may have moved it */
    i->text_len = text;
    i->link_len = tag_is(n, GUMBO_TAG_A) ? text : link;
    return text;
}

static double link_density(ex *x, GumboNode *n)
{
    long t = text_len(x, n);
    return t ? (double)info_of(x, n)->link_len / (double)t : 0;
}

static long count_char(GumboNode *n, char ch)
{
    long k = 0;
    GumboVector *kids = children_of(n);
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *c = child_at(kids, i);
        if (c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE) {
            for (const char *s = c->v.text.text; *s; s++)
                if (*s == ch) k++;
        } else if (is_element(c)) {
            k += count_char(c, ch);
        }
    }
    return k;
}

/* ---------------------------------------------------------------- cleaning */

static bool hidden(const GumboNode *n)
{
    if (attr(n, "hidden")) return true;
    const char *v = attr(n, "aria-hidden");
    if (v && strcasecmp(v, "true") == 0) return true;
    v = attr(n, "style");
    if (v && (strcasestr(v, "display") || strcasestr(v, "visibility"))) {
        char *style = squash(core_xstrdup(v));
        bool h = strcasestr(style, "display:none") || strcasestr(style, "display: none") ||
                 strcasestr(style, "visibility:hidden") || strcasestr(style, "visibility: hidden");
        free(style);
        if (h) return true;
    }
    v = attr(n, "role");
    return v && (strcasecmp(v, "navigation") == 0 || strcasecmp(v, "banner") == 0 ||
                 strcasecmp(v, "contentinfo") == 0 || strcasecmp(v, "complementary") == 0 ||
                 strcasecmp(v, "dialog") == 0 || strcasecmp(v, "alert") == 0 ||
                 strcasecmp(v, "search") == 0);
}

static void prune(GumboNode *n)
{
    GumboVector *kids = children_of(n);
    unsigned kept = 0;
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *c = child_at(kids, i);
        if (c->type == GUMBO_NODE_COMMENT) continue;
        if (is_element(c)) {
            /* <header> inside an article holds its title and byline: drop it too, the title
             * is reported separately */
            if ((tag_class(c) & NEVER_CONTENT) || hidden(c)) continue;
            prune(c);
        }
        keep_child(kids, c, &kept);
    }
    kids->length = kept;
}

/* ---------------------------------------------------------------- scoring */

static bool has_block_child(GumboNode *n)
{
    GumboVector *kids = children_of(n);
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *c = child_at(kids, i);
        if ((tag_class(c) & BLOCK) && !tag_is(c, GUMBO_TAG_BR)) return true;
    }
    return false;
}

static double tag_score(GumboTag tag)
{
    switch (tag) {
    case GUMBO_TAG_ARTICLE:
        return 15;
    case GUMBO_TAG_DIV:
    case GUMBO_TAG_MAIN:
    case GUMBO_TAG_SECTION:
        return 5;
    case GUMBO_TAG_PRE:
    case GUMBO_TAG_TD:
    case GUMBO_TAG_BLOCKQUOTE:
        return 3;
    case GUMBO_TAG_OL:
    case GUMBO_TAG_UL:
    case GUMBO_TAG_LI:
    case GUMBO_TAG_DL:
    case GUMBO_TAG_DD:
    case GUMBO_TAG_DT:
    case GUMBO_TAG_ADDRESS:
        return -3;
    case GUMBO_TAG_H1:
    case GUMBO_TAG_H2:
    case GUMBO_TAG_H3:
    case GUMBO_TAG_H4:
    case GUMBO_TAG_TH:
        return -5;
    default:
        return 0;
    }
}

static void init_candidate(ex *x, GumboNode *n)
{
    node_info *i = info_of(x, n);
    if (i->scored) return;
    i->scored = true;
    double s = tag_score(tag_of(n));
    const char *ip = attr(n, "itemprop");
    if (ip && strcasestr(ip, "articleBody")) s += 30;
    int k = class_kind(n);
    s += k > 0 ? 25 : k < 0 ? -25 : 0;
    i->score = s;
    if (x->ncands == x->candcap) {
        x->candcap = x->candcap ? x->candcap * 2 : 64;
        x->cands = core_xrealloc(x->cands, x->candcap * sizeof *x->cands);
    }
    x->cands[x->ncands++] = n;
}

static void score_paragraphs(ex *x, GumboNode *n)
{
    GumboVector *kids = children_of(n);
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *c = child_at(kids, i);
        if (!is_element(c)) continue;
        GumboTag tag = c->v.element.tag;
        bool para = tag == GUMBO_TAG_P || tag == GUMBO_TAG_PRE || tag == GUMBO_TAG_TD ||
                    ((tag == GUMBO_TAG_DIV || tag == GUMBO_TAG_SECTION) && !has_block_child(c));
        if (para) {
            long len = text_len(x, c);
            if (len >= 25 && c->parent && is_element(c->parent)) {
                double s = 1 + (double)count_char(c, ',') + fmin((double)len / 100.0, 3.0);
                GumboNode *a = c->parent;
                for (int level = 0; a && is_element(a) && level < 3; level++) {
                    init_candidate(x, a);
                    info_of(x, a)->score += s / (level == 0 ? 1 : level == 1 ? 2 : 3 * level);
                    a = a->parent;
                }
            }
        }
        if (tag != GUMBO_TAG_P) score_paragraphs(x, c);
    }
}

static double final_score(ex *x, GumboNode *n)
{
    double density = link_density(x, n);
    return info_of(x, n)->score * (1 - density);
}

/* ---------------------------------------------------------------- content cleaning */

static bool looks_like_boilerplate(ex *x, GumboNode *n, long top_len)
{
    bool negative = false;
    int k = class_kind2(n, &negative);
    long len = text_len(x, n);
    /* inside the article any negative token counts ("entry-meta", "bottom-of-article"),
     * unless the element holds most of the article ("content has-sidebar") */
    if ((k < 0 || negative) && len * 2 < top_len) return true;
    GumboTag tag = tag_of(n);
    if (tag == GUMBO_TAG_H1) return true;
    double ld = link_density(x, n);
    bool box = tag == GUMBO_TAG_DIV || tag == GUMBO_TAG_SECTION || tag == GUMBO_TAG_UL ||
               tag == GUMBO_TAG_TABLE;
    if ((box || tag == GUMBO_TAG_OL || tag == GUMBO_TAG_P) && ld > 0.5 && len < 1000) return true;
    if (box && len == 0 && !first_element_child(n)) return true;
    return false;
}

static void clean_content(ex *x, GumboNode *n, long top_len)
{
    GumboVector *kids = children_of(n);
    unsigned kept = 0;
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *c = child_at(kids, i);
        if (is_element(c)) {
            if (looks_like_boilerplate(x, c, top_len)) continue;
            clean_content(x, c, top_len);
        }
        keep_child(kids, c, &kept);
    }
    kids->length = kept;
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

static void render(GumboNode *n, render_state *st)
{
    GumboVector *kids = children_of(n);
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *c = child_at(kids, i);
        if (is_text(c)) {
            core_buf_puts(&st->para, c->v.text.text);
            continue;
        }
        if (!is_element(c)) continue;
        if (c->v.element.tag == GUMBO_TAG_PRE) { /* preformatted: kept as it is */
            flush_para(st);
            char *raw = node_content(c);
            const char *t = raw;
            size_t tl = strlen(t);
            while (tl && isspace((unsigned char)t[tl - 1]))
                tl--;
            while (tl && (*t == '\n' || *t == '\r'))
                t++, tl--;
            if (tl) {
                if (st->out.len) core_buf_puts(&st->out, "\n\n");
                core_buf_append(&st->out, t, tl);
            }
            free(raw);
            continue;
        }
        bool block = tag_class(c) & BLOCK;
        if (block)
            flush_para(st);
        else if (c->v.element.tag == GUMBO_TAG_IMG)
            continue;
        render(c, st);
        if (block) flush_para(st);
    }
}

static char *render_text(GumboNode *n)
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

static void meta_tag(meta *m, const GumboNode *n)
{
    const char *content = attr(n, "content");
    if (!content) return;
    static const char *const key_attrs[] = {"property", "name", "itemprop", "http-equiv"};
    for (int a = 0; a < 4; a++) {
        const char *k = attr(n, key_attrs[a]);
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
    }
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

/* n and the elements under it, in document order. */
static void collect_meta(meta *m, GumboNode *n)
{
    GumboTag tag = n->v.element.tag;
    if (tag == GUMBO_TAG_META) {
        meta_tag(m, n);
    } else if (tag == GUMBO_TAG_TITLE && !m->title_tag) {
        m->title_tag = node_text(n);
    } else if (tag == GUMBO_TAG_H1 && !m->h1) {
        set_owned(&m->h1, node_text(n));
    } else if (tag == GUMBO_TAG_LINK) {
        const char *rel = attr(n, "rel");
        if (rel && strcasecmp(rel, "canonical") == 0)
            set_copy(&m->canonical, attr(n, "href"));
        else if (rel && strcasecmp(rel, "image_src") == 0)
            set_copy(&m->image, attr(n, "href"));
    } else if (tag == GUMBO_TAG_SCRIPT) {
        const char *type = attr(n, "type");
        if (type && strcasecmp(type, "application/ld+json") == 0) {
            char *txt = node_content(n);
            json_t *j = json_loads(txt, 0, NULL);
            ld_object(m, j);
            json_decref(j);
            free(txt);
        }
        return;
    } else if (tag == GUMBO_TAG_HTML) {
        set_copy(&m->lang, attr(n, "lang"));
        if (!m->lang) set_copy(&m->lang, attr(n, "xml:lang"));
    } else if (tag == GUMBO_TAG_TIME && !m->time_dt) {
        set_copy(&m->time_dt, attr(n, "datetime"));
    }
    if (!m->published && tag != GUMBO_TAG_META) {
        const char *ip = attr(n, "itemprop");
        const char *cls = attr(n, "class");
        bool pub = (ip && strcmp(ip, "datePublished") == 0) ||
                   (cls && (strstr(cls, "published") || strstr(cls, "dt-published")));
        if (pub) {
            const char *v = attr(n, "datetime");
            if (!v) v = attr(n, "content");
            if (!v) v = attr(n, "title");
            if (v && sc_parse_date(v)) set_copy(&m->published, v);
        }
    }
    if (!m->byline) {
        const char *rel = attr(n, "rel");
        const char *ip = attr(n, "itemprop");
        bool by = (rel && strcasecmp(rel, "author") == 0) || (ip && strcmp(ip, "author") == 0);
        if (!by) {
            const char *dc = attr(n, "data-component");
            by = dc && strcasestr(dc, "byline");
        }
        if (!by) {
            const char *cls = attr(n, "class");
            by = cls && (strcasestr(cls, "byline") || strcasestr(cls, "author-name") ||
                         strcmp(cls, "author") == 0 || strcasestr(cls, "p-author"));
        }
        if (by) {
            char *t = render_text(n);
            char *br = strstr(t, "\n\n");
            if (br) *br = '\0';
            if (strlen(t) > 0 && strlen(t) < 100)
                m->byline = t;
            else
                free(t);
        }
    }
    GumboVector *kids = children_of(n);
    for (unsigned i = 0; i < kids->length; i++)
        if (is_element(child_at(kids, i))) collect_meta(m, child_at(kids, i));
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

static char *main_text(ex *x, GumboNode *root)
{
    GumboNode *body = NULL;
    GumboVector *kids = children_of(root);
    for (unsigned i = 0; i < kids->length; i++)
        if (tag_is(child_at(kids, i), GUMBO_TAG_BODY)) body = child_at(kids, i);
    if (!body) body = root;
    prune(body);
    score_paragraphs(x, body);
    GumboNode *top = NULL;
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
    while (top != body && top->parent && is_element(top->parent) && top->parent != body) {
        GumboNode *p = top->parent;
        double ps = info_of(x, p)->scored ? final_score(x, p) : 0;
        int strong = 0;
        GumboVector *sibs = children_of(p);
        for (unsigned i = 0; i < sibs->length; i++) {
            GumboNode *s = child_at(sibs, i);
            if (s != top && is_element(s) && info_of(x, s)->scored &&
                final_score(x, s) >= best * 0.5 && class_kind(s) >= 0)
                strong++;
        }
        if (strong == 0) break;
        if (class_kind(p) < 0) break;
        top = p;
        best = fmax(best, ps);
    }
    /* the candidate's siblings that look like more article */
    core_buf text = {0};
    double threshold = fmax(10, best * 0.2);
    GumboVector *sibs = top != body && top->parent ? children_of(top->parent) : NULL;
    unsigned nsibs = sibs ? sibs->length : 1;
    for (unsigned i = 0; i < nsibs; i++) {
        GumboNode *s = sibs ? child_at(sibs, i) : top;
        if (!is_element(s)) continue;
        bool take = s == top, negative = false;
        if (!take && class_kind2(s, &negative) >= 0 && !negative) {
            if (info_of(x, s)->scored && final_score(x, s) >= threshold) {
                take = true;
            } else if (tag_is(s, GUMBO_TAG_P)) {
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
    }
    if (!text.len) return core_xstrdup("");
    return core_buf_steal(&text, NULL);
}

void sc_extract(const char *html, size_t len, const char *url, sc_item *out)
{
    memset(out, 0, sizeof *out);
    out->url = url ? core_xstrdup(url) : NULL;
    parsed_html doc;
    GumboNode *root = parse_html(&doc, html, len);
    meta m = {0};
    collect_meta(&m, root);
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
    ex x = {0};
    out->text = filter_paragraphs(main_text(&x, root), out);
    free(x.infos);
    free(x.cands);
    meta_free(&m);
    parsed_html_free(&doc);
}

char *sc_html_text(const char *html, size_t len)
{
    /* a fragment, or plain text that happens to contain no tags */
    if (!memchr(html, '<', len)) return squash(core_xstrndup(html, len));
    core_buf wrapped = {0};
    core_buf_puts(&wrapped, "<html><body><div>");
    core_buf_append(&wrapped, html, len);
    core_buf_puts(&wrapped, "</div></body></html>");
    parsed_html doc;
    GumboNode *root = parse_html(&doc, wrapped.data, wrapped.len);
    prune(root);
    char *t = render_text(root);
    parsed_html_free(&doc);
    core_buf_free(&wrapped);
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
