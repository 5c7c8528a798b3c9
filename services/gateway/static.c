/*
 * The dashboard's static files (see static.h).
 *
 * The whole build is a few hundred kilobytes, so it is read into memory: a request is a binary
 * search and a copy, nothing touches the disk on the loop. A new build is noticed by polling
 * index.html's identity (inode, size, mtime; uv_fs_stat on the thread pool); once two polls in
 * a row agree on a new identity (the build is over), the directory is read again on the thread
 * pool (uv_queue_work) and the new set replaces the old one on the loop.
 */
#include "static.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define STATIC_MAX_FILES 4096
#define STATIC_MAX_DEPTH 8
#define STATIC_CSP                                                                                 \
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "                 \
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

static const char *const static_methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                             "PATCH", "DELETE", "OPTIONS", NULL};

typedef struct static_file {
    char *name; /* relative: "index.html", "assets/index-3f2a.js" */
    char *data;
    size_t len;
    const char *ctype;
    char etag[24];          /* "\"<16 hex digits>\"" */
    char last_modified[40]; /* IMF-fixdate */
} static_file;

/* What identifies a build: index.html's inode, size and mtime (all zero: no index.html). */
typedef struct static_ident {
    uint64_t ino;
    int64_t size, mtime_ns;
} static_ident;

typedef struct static_set {
    static_file *files; /* sorted by name */
    size_t n, bytes;
    const static_file *index;
    static_ident ident;
    bool truncated; /* max_bytes or STATIC_MAX_FILES was reached */
} static_set;

struct gw_static {
    uv_loop_t *loop;
    char *dir;
    char *index_path;
    gw_static_config cfg;
    static_set *set;
    uv_timer_t timer;
    uv_fs_t stat_req;
    uv_work_t work;
    static_set *loaded; /* the work's result */
    static_ident seen;  /* the last poll's identity */
    bool stat_busy;     /* a uv_fs_stat is in flight */
    bool work_busy;     /* a reload is in flight */
    bool closing;       /* gw_static_close was called */
    bool timer_open;
};

/* ---------------------------------------------------------------- pure helpers */

const char *gw_static_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"webmanifest", "application/manifest+json"},
        {"txt", "text/plain; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/x-icon"},
        {"woff2", "font/woff2"},
        {"woff", "font/woff"},
        {"wasm", "application/wasm"},
    };
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash : name, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

static int static_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

gw_static_path gw_static_decode(const char *raw, char *out, size_t outlen)
{
    if (!raw || raw[0] != '/' || outlen == 0) return GW_STATIC_PATH_BAD;
    size_t o = 0;
    for (const char *p = raw + 1; *p; p++) {
        char c = *p;
        if (c == '%') {
            int hi = static_hex(p[1]), lo = hi < 0 ? -1 : static_hex(p[2]);
            if (hi < 0 || lo < 0) return GW_STATIC_PATH_BAD;
            c = (char)(hi * 16 + lo);
            /* an encoded separator or NUL would name something the raw path does not */
            if (c == '\0' || c == '/' || c == '\\') return GW_STATIC_PATH_BAD;
            p += 2;
        } else if ((unsigned char)c <= 0x20 || c == 0x7f || c == '\\') {
            return GW_STATIC_PATH_BAD;
        }
        if (o + 1 >= outlen) return GW_STATIC_PATH_BAD;
        out[o++] = c;
    }
    out[o] = '\0';
    /* no "." or ".." segment, no empty one inside ("a//b") */
    const char *seg = out;
    for (size_t i = 0; i <= o; i++) {
        if (i == o || out[i] == '/') {
            size_t sl = (size_t)(out + i - seg);
            if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
                return GW_STATIC_PATH_BAD;
            if (sl == 0 && i != o) return GW_STATIC_PATH_BAD;
            seg = out + i + 1;
        }
    }
    return GW_STATIC_PATH_OK;
}

bool gw_static_has_extension(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    const char *last = slash ? slash + 1 : rel;
    const char *dot = strrchr(last, '.');
    return dot && dot != last && dot[1] != '\0';
}

bool gw_static_is_api(const char *raw)
{
    return strncmp(raw, "/api", 4) == 0 && (raw[4] == '\0' || raw[4] == '/');
}

const char *gw_static_cache_control(const char *rel)
{
    if (strncmp(rel, "assets/", 7) == 0) return "public, max-age=31536000, immutable";
    return "no-cache";
}

/* ---------------------------------------------------------------- loading (any thread) */

static void static_set_free(static_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->files[i].name);
        free(s->files[i].data);
    }
    free(s->files);
    free(s);
}

static int static_file_cmp(const void *a, const void *b)
{
    return strcmp(((const static_file *)a)->name, ((const static_file *)b)->name);
}

static bool static_read_file(const char *path, size_t size, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    char *buf = malloc(size ? size : 1);
    size_t got = 0;
    while (buf && got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != size) {
        free(buf);
        return false;
    }
    *out = buf;
    return true;
}

static void static_add(static_set *s, const char *rel, const struct stat *sb, char *data)
{
    if (s->n % 64 == 0) s->files = core_xrealloc(s->files, (s->n + 64) * sizeof *s->files);
    static_file *f = &s->files[s->n++];
    memset(f, 0, sizeof *f);
    f->name = core_xstrdup(rel);
    f->data = data;
    f->len = (size_t)sb->st_size;
    f->ctype = gw_static_content_type(rel);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 of the content */
    for (size_t i = 0; i < f->len; i++)
        h = (h ^ (unsigned char)data[i]) * 1099511628211ULL;
    snprintf(f->etag, sizeof f->etag, "\"%016llx\"", (unsigned long long)h);
    struct tm tm;
    time_t mt = sb->st_mtim.tv_sec;
    gmtime_r(&mt, &tm);
    strftime(f->last_modified, sizeof f->last_modified, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->bytes += f->len;
}

/* Reads every regular file under dir/rel (no dot files, no symbolic links). */
static void static_walk(static_set *s, const char *dir, const char *rel, int depth, size_t max)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char sub[2048], full[4096];
        int sl = snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        if (sl < 0 || (size_t)sl >= sizeof sub) continue;
        snprintf(full, sizeof full, "%s/%s", dir, sub);
        struct stat sb;
        if (lstat(full, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth < STATIC_MAX_DEPTH) static_walk(s, dir, sub, depth + 1, max);
            continue;
        }
        if (!S_ISREG(sb.st_mode)) continue;
        if (s->n >= STATIC_MAX_FILES || s->bytes + (size_t)sb.st_size > max) {
            s->truncated = true;
            continue;
        }
        char *data;
        if (static_read_file(full, (size_t)sb.st_size, &data)) static_add(s, sub, &sb, data);
    }
    closedir(d);
}

static static_set *static_load(const char *dir, size_t max)
{
    static_set *s = core_xcalloc(1, sizeof *s);
    static_walk(s, dir, "", 0, max);
    if (s->n) qsort(s->files, s->n, sizeof *s->files, static_file_cmp);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->files[i].name, "index.html") == 0) s->index = &s->files[i];
    char path[4096];
    snprintf(path, sizeof path, "%s/index.html", dir);
    struct stat sb;
    if (s->index && stat(path, &sb) == 0)
        s->ident = (static_ident){(uint64_t)sb.st_ino, (int64_t)sb.st_size,
                                  (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec};
    return s;
}

static const static_file *static_find(const static_set *s, const char *rel)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(rel, s->files[mid].name);
        if (c == 0) return &s->files[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---------------------------------------------------------------- serving */

static bool static_etag_matches(const char *inm, const char *etag)
{
    if (strcmp(inm, "*") == 0) return true;
    size_t el = strlen(etag);
    for (const char *p = inm; (p = strstr(p, etag)) != NULL; p += el) {
        char after = p[el];
        if (after == '\0' || after == ',' || after == ' ') return true;
    }
    return false;
}

static void static_handle(http_req *req, void *data)
{
    gw_static *st = data;
    const char *raw = http_path(req);
    if (gw_static_is_api(raw)) {
        http_respond_problem(req, 404, NULL, "no route for this path");
        return;
    }
    const char *m = http_method(req);
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
        http_set_header(req, "Allow", "GET, HEAD");
        http_respond_problem(req, 405, NULL, "the dashboard's files answer GET and HEAD only");
        return;
    }
    char rel[1024];
    if (gw_static_decode(raw, rel, sizeof rel) != GW_STATIC_PATH_OK) {
        http_respond_problem(req, 400, NULL,
                             "malformed path: dot segment, encoded slash or bad escape");
        return;
    }
    const static_set *s = st->set;
    if (!s || !s->index) {
        core_buf d = {0};
        core_buf_printf(&d,
                        "the dashboard is not built: no index.html in GATEWAY_STATIC_DIR (%s); "
                        "run make (it needs node and npm), the gateway picks the build up",
                        st->dir);
        http_respond_problem(req, 404, NULL, d.data);
        core_buf_free(&d);
        return;
    }
    const static_file *f = rel[0] ? static_find(s, rel) : s->index;
    if (!f) {
        if (gw_static_has_extension(rel)) {
            http_respond_problem(req, 404, NULL, "no such file");
            return;
        }
        f = s->index; /* an app route: the single-page app's router shows it */
    }
    http_set_header(req, "Cache-Control", gw_static_cache_control(f->name));
    http_set_header(req, "ETag", f->etag);
    http_set_header(req, "Last-Modified", f->last_modified);
    http_set_header(req, "X-Content-Type-Options", "nosniff");
    if (f == s->index) {
        http_set_header(req, "Content-Security-Policy", STATIC_CSP);
        http_set_header(req, "Referrer-Policy", "same-origin");
    }
    const char *inm = http_header(req, "If-None-Match");
    if (inm && static_etag_matches(inm, f->etag)) {
        http_respond(req, 304, NULL, NULL, 0);
        return;
    }
    http_respond(req, 200, f->ctype, f->data, f->len);
}

/* ---------------------------------------------------------------- reloading */

static void static_maybe_free(gw_static *st)
{
    if (!st->closing || st->stat_busy || st->work_busy || st->timer_open) return;
    static_set_free(st->set);
    free(st->dir);
    free(st->index_path);
    free(st);
}

static void static_log_set(const gw_static *st, const static_set *s, const char *msg)
{
    core_log_info(msg, CORE_F_STR("dir", st->dir), CORE_F_INT("files", (int64_t)s->n),
                  CORE_F_INT("bytes", (int64_t)s->bytes), CORE_F_BOOL("index", s->index != NULL));
    if (s->truncated)
        core_log_warn("static files skipped: more than the limit", CORE_F_STR("dir", st->dir),
                      CORE_F_INT("max_bytes", (int64_t)st->cfg.max_bytes));
}

static void static_work(uv_work_t *w)
{
    gw_static *st = w->data;
    st->loaded = static_load(st->dir, st->cfg.max_bytes);
}

static void static_work_done(uv_work_t *w, int status)
{
    gw_static *st = w->data;
    st->work_busy = false;
    if (status == 0 && !st->closing) {
        static_set_free(st->set);
        st->set = st->loaded;
        static_log_set(st, st->set, "static files reloaded");
    } else {
        static_set_free(st->loaded);
    }
    st->loaded = NULL;
    static_maybe_free(st);
}

static void static_stat_done(uv_fs_t *r)
{
    gw_static *st = r->data;
    static_ident now = {0};
    if (r->result == 0)
        now = (static_ident){(uint64_t)r->statbuf.st_ino, (int64_t)r->statbuf.st_size,
                             (int64_t)r->statbuf.st_mtim.tv_sec * 1000000000 +
                                 (int64_t)r->statbuf.st_mtim.tv_nsec};
    uv_fs_req_cleanup(r);
    st->stat_busy = false;
    bool changed = memcmp(&now, &st->set->ident, sizeof now) != 0;
    bool settled = memcmp(&now, &st->seen, sizeof now) == 0; /* two polls agree */
    st->seen = now;
    if (!st->closing && changed && settled && !st->work_busy) {
        st->work_busy = true;
        st->work.data = st;
        uv_queue_work(st->loop, &st->work, static_work, static_work_done);
    }
    static_maybe_free(st);
}

static void static_on_timer(uv_timer_t *t)
{
    gw_static *st = t->data;
    if (st->stat_busy || st->work_busy) return;
    st->stat_busy = true;
    st->stat_req.data = st;
    if (uv_fs_stat(st->loop, &st->stat_req, st->index_path, static_stat_done) != 0)
        st->stat_busy = false;
}

static void static_timer_closed(uv_handle_t *h)
{
    gw_static *st = h->data;
    st->timer_open = false;
    static_maybe_free(st);
}

/* ---------------------------------------------------------------- life */

gw_static *gw_static_new(uv_loop_t *loop, http_server *srv, const gw_static_config *cfg)
{
    gw_static *st = core_xcalloc(1, sizeof *st);
    st->loop = loop;
    st->cfg = *cfg;
    if (!st->cfg.max_bytes) st->cfg.max_bytes = 64u << 20;
    st->dir = core_xstrdup(cfg->dir);
    core_buf p = {0};
    core_buf_printf(&p, "%s/index.html", st->dir);
    st->index_path = core_buf_steal(&p, NULL);
    st->set = static_load(st->dir, st->cfg.max_bytes);
    st->seen = st->set->ident;
    static_log_set(st, st->set, "static files loaded");
    for (size_t i = 0; static_methods[i]; i++)
        http_route(srv, static_methods[i], "/*", static_handle, st);
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    st->timer_open = true;
    if (cfg->reload_ms > 0) {
        uv_timer_start(&st->timer, static_on_timer, (uint64_t)cfg->reload_ms,
                       (uint64_t)cfg->reload_ms);
        uv_unref((uv_handle_t *)&st->timer);
    }
    return st;
}

void gw_static_close(gw_static *st)
{
    if (!st || st->closing) return;
    st->closing = true;
    uv_close((uv_handle_t *)&st->timer, static_timer_closed);
}
