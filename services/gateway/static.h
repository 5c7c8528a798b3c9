/*
 * The dashboard's static files (GATEWAY_STATIC_DIR, built by make into build/dashboard), served
 * at "/" next to the routed API prefixes:
 *
 *   - every regular file under the directory is held in memory (loaded at start and again, on
 *     libuv's thread pool, whenever index.html changes: a rebuild needs no restart);
 *   - a path without a file extension that names no file gets index.html (the single-page
 *     app's own router takes it from there); "/api" and "/api/..." never do: 404 problem+json;
 *   - files under /assets/ (content-hashed names) are cached for a year, immutable;
 *     index.html and the rest are "no-cache" (revalidated with ETag / Last-Modified, 304);
 *   - no file outside the directory can be reached: lookups are exact matches against the
 *     loaded names; "." / ".." segments (also %2e), %2F, %5C and malformed escapes get 400;
 *   - no directory (not built yet): "/" answers 404 problem+json saying how to build it.
 */
#ifndef GATEWAY_STATIC_H
#define GATEWAY_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

typedef struct gw_static gw_static;

typedef struct gw_static_config {
    const char *dir;   /* the built app; may not exist (yet) */
    int64_t reload_ms; /* how often index.html is checked for a new build; 0: never */
    size_t max_bytes;  /* at most this much is loaded (the rest is skipped, logged) */
} gw_static_config;

/* Loads the directory and registers "/<star>" for every method on srv (the API prefixes are
 * longer and win). Never NULL. */
gw_static *gw_static_new(uv_loop_t *loop, http_server *srv, const gw_static_config *cfg);
/* Stops the reload timer; frees once any load in flight on the thread pool is over. */
void gw_static_close(gw_static *st);

/* ---- pure helpers, unit-tested ---- */

/* The Content-Type for a file name (by extension); "application/octet-stream" if unknown. */
const char *gw_static_content_type(const char *name);

typedef enum gw_static_path {
    GW_STATIC_PATH_OK,  /* out holds the decoded path relative to the directory */
    GW_STATIC_PATH_BAD, /* 400: malformed, a dot segment, an encoded slash or backslash */
} gw_static_path;
/* Decodes a raw request path ("/assets/a%20b.js") into a relative name ("assets/a b.js";
 * "" for "/"). */
gw_static_path gw_static_decode(const char *raw, char *out, size_t outlen);

/* The last segment of a decoded relative path has a '.' (a file, not an app route). */
bool gw_static_has_extension(const char *rel);
/* "/api" or "/api/..." (raw path): an API path, never answered with index.html. */
bool gw_static_is_api(const char *raw);

/* The Cache-Control value for a relative name: immutable for "assets/...", else no-cache. */
const char *gw_static_cache_control(const char *rel);

#endif
