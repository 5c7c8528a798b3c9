/*
 * scraper: the pure parts of the service (no loop, no network, no database), unit-tested in
 * services/scraper/tests/.
 *
 *   sc_robots_*     robots.txt (RFC 9309): groups by user agent, Allow/Disallow with * and $,
 *                   longest match wins, Allow on ties; Crawl-delay
 *   sc_url_*        resolution against a base, normalisation, fingerprints
 *   sc_patterns_*   include/exclude URL patterns (POSIX extended regular expressions)
 *   sc_simhash*     64-bit SimHash of a text (word 3-shingles), content hashes
 *   sc_addr_*       address classification (private, loopback, link-local, multicast ...) and
 *                   the CIDR allowlist
 *   sc_charset_*    charset detection (BOM, Content-Type header, <meta>) and iconv to UTF-8
 *   sc_feed_*       RSS 2.0, Atom, sitemaps (urlset, sitemapindex; gzip), streamed with expat
 *   sc_extract      article extraction from HTML with gumbo (an HTML5 parser)
 */
#ifndef SCRAPER_H
#define SCRAPER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core.h"

/* ---------------------------------------------------------------- robots.txt */

typedef struct sc_robots sc_robots;

/* Parses robots.txt for the user agent `agent` (its product token, e.g. "content-engine");
 * never NULL. A NULL text means "no robots.txt" (everything allowed). */
sc_robots *sc_robots_parse(const char *text, size_t len, const char *agent);
/* Everything disallowed (robots.txt answered 401/403 or could not be fetched: 5xx). */
sc_robots *sc_robots_deny_all(void);
/* path is the URL's path with its query, e.g. "/a/b?c=d" ("" counts as "/"). */
bool sc_robots_allowed(const sc_robots *r, const char *path);
/* Crawl-delay in milliseconds for the matched group; 0 when none. */
int64_t sc_robots_crawl_delay_ms(const sc_robots *r);
void sc_robots_free(sc_robots *r);

/* ---------------------------------------------------------------- URLs */

/* Resolves ref against base (base may be NULL when ref is absolute) and normalises: http and
 * https only, lower-case scheme and host, default port dropped, empty path "/", fragment
 * dropped, tracking parameters (utm_*, fbclid, gclid, mc_cid, mc_eid) dropped, query
 * parameters sorted. NULL when the result is not an http(s) URL. Free the result. */
char *sc_url_normalize(const char *base, const char *ref);
/* Resolves ref against base (RFC 3986) without normalising: what a document's relative link
 * points to. NULL when the result is not an http(s) URL. Free the result. */
char *sc_url_resolve(const char *base, const char *ref);
/* Whether ref starts with a scheme ("http:", "data:", "mailto:"): an absolute reference. */
bool sc_url_has_scheme(const char *ref);
/* "host:port" (port only when not the scheme's default), lower-case; NULL on failure. */
char *sc_url_host(const char *url);
/* Path and query ("/a?b"); NULL on failure. */
char *sc_url_path(const char *url);
/* Origin "scheme://host[:port]"; NULL on failure. */
char *sc_url_origin(const char *url);
/* 32 hex characters: the first 128 bits of SHA-256 of the normalised URL. */
void sc_url_fingerprint(const char *normalized, char out[33]);

/* ---------------------------------------------------------------- patterns */

typedef struct sc_patterns sc_patterns;

/* From a JSON array of strings (NULL or [] = none); NULL with err set when an entry is not a
 * string or not a valid regular expression. */
sc_patterns *sc_patterns_new(const json_t *array, char *err, size_t errlen);
void sc_patterns_free(sc_patterns *p);
size_t sc_patterns_count(const sc_patterns *p);
/* True when the URL matches one of the patterns (search, not whole match). */
bool sc_patterns_match(const sc_patterns *p, const char *url);
/* Include (when any) must match and no exclude may match. */
bool sc_url_wanted(const sc_patterns *include, const sc_patterns *exclude, const char *url);

/* ---------------------------------------------------------------- fingerprints */

uint64_t sc_simhash(const char *text);
int sc_hamming(uint64_t a, uint64_t b);
/* SHA-256 (64 hex) of the text with case and whitespace folded. */
void sc_content_hash(const char *text, char out[65]);
/* Near-duplicate threshold on the SimHash distance. */
#define SC_NEAR_DUP_BITS 3

/* ---------------------------------------------------------------- addresses */

typedef struct sc_allowlist sc_allowlist;

/* "127.0.0.0/8,::1, 10.1.2.3" (blank or NULL: empty). NULL with err set when malformed. */
sc_allowlist *sc_allowlist_parse(const char *text, char *err, size_t errlen);
void sc_allowlist_free(sc_allowlist *a);
bool sc_allowlist_contains(const sc_allowlist *a, const struct sockaddr *sa);
/* NULL for a public unicast address, else its class: "loopback", "private", "link-local",
 * "multicast", "unspecified", "carrier-grade NAT", "reserved", "unique-local", "broadcast",
 * "documentation". IPv4-mapped IPv6 addresses are classified as IPv4. */
const char *sc_addr_class(const struct sockaddr *sa);
/* Formats the address (no port). */
void sc_addr_format(const struct sockaddr *sa, char *out, size_t size);

/* ---------------------------------------------------------------- charsets */

/* The body's charset: BOM, else the Content-Type header's charset, else a <meta> in the first
 * 4 KiB (is_html), else "UTF-8". Written upper-case into out. */
void sc_charset_detect(const char *content_type, const char *body, size_t len, bool is_html,
                       char *out, size_t size);
/* Converts to UTF-8 (BOM removed; invalid sequences replaced by U+FFFD). Always returns a
 * NUL-terminated buffer (free it); *out_len its length. */
char *sc_to_utf8(const char *body, size_t len, const char *charset, size_t *out_len);

/* ---------------------------------------------------------------- feeds and sitemaps */

typedef enum sc_doc_kind {
    SC_DOC_UNKNOWN,
    SC_DOC_RSS,
    SC_DOC_ATOM,
    SC_DOC_URLSET,
    SC_DOC_SITEMAP_INDEX,
} sc_doc_kind;

typedef struct sc_entry {
    char *link; /* absolute, as found (normalise it yourself) */
    char *title;
    char *author;
    int64_t published_ms; /* 0: unknown */
    char *summary;        /* HTML or text */
    char *content;        /* full content (content:encoded, atom content); NULL when none */
} sc_entry;

typedef struct sc_feed {
    sc_doc_kind kind;
    char *title;
    sc_entry *entries;
    size_t n;
} sc_feed;

/* Parses an XML document (gzip-compressed bodies are inflated first, up to max_bytes). false
 * with err set when it is not XML or not a known kind. */
bool sc_feed_parse(const char *body, size_t len, const char *base_url, size_t max_bytes,
                   sc_feed *out, char *err, size_t errlen);
void sc_feed_free(sc_feed *f);
/* Inflates gzip data; NULL when not gzip or beyond max_bytes. */
char *sc_gunzip(const char *data, size_t len, size_t max_bytes, size_t *out_len);
/* RFC 822 dates (RSS), RFC 3339 / ISO 8601 dates (Atom, sitemaps, meta tags); 0 when not. */
int64_t sc_parse_date(const char *s);

/* ---------------------------------------------------------------- extraction */

typedef struct sc_item {
    char *url;
    char *canonical_url;
    char *title;
    char *author;
    int64_t published_ms;
    char *lang;
    char *description;
    char *image_url;
    char *site_name;
    char *text; /* paragraphs separated by "\n\n" */
} sc_item;

/* Extracts the item of an HTML document (UTF-8). url (may be NULL) resolves relative links. */
void sc_extract(const char *html, size_t len, const char *url, sc_item *out);
/* Text of an HTML fragment (feed content), paragraphs kept, no boilerplate removal. */
char *sc_html_text(const char *html, size_t len);
void sc_item_free(sc_item *it);
/* The item as JSON (the offline `scraper extract` output). */
json_t *sc_item_json(const sc_item *it);
/* A whole file (NUL-terminated; *len its length); NULL when it cannot be read. */
char *sc_read_file(const char *path, size_t *len);
/* Token-level precision, recall and F1 of got against want (bags of lower-case words). */
void sc_token_prf(const char *got, const char *want, double *p, double *r, double *f1);

#endif
