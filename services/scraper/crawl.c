/*
 * The crawl engine: runs, per-host queues with politeness, robots.txt, fetching through httpc
 * (libcurl multi on the loop) with the address check in libcurl's open-socket hook, redirects
 * followed one hop at a time (each hop is a new request: new robots check, new address
 * check), and what each answer turns into: feed entries, sitemap URLs, extracted items.
 *
 * Politeness, per host (scheme://host:port): at most cfg.per_host transfers at once, request
 * starts at least max(cfg.delay_ms, Crawl-delay) apart, a Retry-After also holds back the
 * host's other requests. Globally at most cfg.concurrency transfers (httpc's slots).
 */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "run.h"

typedef enum task_kind { T_ROBOTS, T_PAGE, T_FEED, T_SITEMAP } task_kind;

typedef struct task {
    struct task *next;
    sc_run *run; /* NULL for robots.txt */
    sc_host *host;
    char *url;
    task_kind kind;
    int redirects;
    unsigned attempt; /* from 1; retries go back through the host's queue (politeness) */
    int depth;        /* sitemap nesting */
    bool root;        /* the source's own URL: its failure fails the run */
    sc_entry *hint;   /* a feed entry whose page is fetched for the full text */
    bool blocked;
    char *blocked_msg; /* why the address was refused */
} task;

struct sc_host {
    sc_host *next;
    sc_app *app;
    char *origin;
    sc_robots *robots;
    int64_t robots_until;
    int64_t robots_started;
    bool robots_fetching;
    int64_t next_ms;
    unsigned active;
    task *head, *tail;
    uv_timer_t timer;
};

static void host_pump(sc_host *h);

/* ---------------------------------------------------------------- tasks */

static void entry_free(sc_entry *e)
{
    if (!e) return;
    free(e->link);
    free(e->title);
    free(e->author);
    free(e->summary);
    free(e->content);
    free(e);
}

static void task_free(task *t)
{
    free(t->blocked_msg);
    free(t->url);
    entry_free(t->hint);
    free(t);
}

static int64_t host_delay(const sc_host *h)
{
    int64_t d = h->app->cfg.delay_ms;
    if (h->robots) {
        int64_t cd = sc_robots_crawl_delay_ms(h->robots);
        if (cd > h->app->cfg.max_crawl_delay_ms) cd = h->app->cfg.max_crawl_delay_ms;
        if (cd > d) d = cd;
    }
    return d;
}

static void on_host_timer(uv_timer_t *timer)
{
    host_pump(timer->data);
}

static sc_host *host_for(sc_app *app, const char *url)
{
    char *origin = sc_url_origin(url);
    if (!origin) return NULL;
    for (sc_host *h = app->hosts; h; h = h->next) {
        if (strcmp(h->origin, origin) == 0) {
            free(origin);
            return h;
        }
    }
    sc_host *h = core_xcalloc(1, sizeof *h);
    h->app = app;
    h->origin = origin;
    uv_timer_init(app->loop, &h->timer);
    h->timer.data = h;
    h->next = app->hosts;
    app->hosts = h;
    return h;
}

static void push(sc_host *h, task *t, bool front)
{
    t->host = h;
    if (front) {
        t->next = h->head;
        h->head = t;
        if (!h->tail) h->tail = t;
    } else {
        t->next = NULL;
        if (h->tail)
            h->tail->next = t;
        else
            h->head = t;
        h->tail = t;
    }
}

static task *pop(sc_host *h)
{
    task *t = h->head;
    if (!t) return NULL;
    h->head = t->next;
    if (!h->head) h->tail = NULL;
    t->next = NULL;
    return t;
}

/* Queues url for the run; false when it is a duplicate, unwanted or over the limit. */
static bool run_enqueue(sc_run *run, const char *base, const char *ref, task_kind kind, int depth,
                        sc_entry *hint, bool root)
{
    char *url = sc_url_normalize(base, ref);
    if (!url) {
        entry_free(hint);
        return false;
    }
    if (kind == T_PAGE && !root) {
        if (!sc_url_wanted(run->include, run->exclude, url) ||
            run->pages_enqueued >= run->max_items) {
            free(url);
            entry_free(hint);
            return false;
        }
    }
    if (!sc_strmap_add(&run->seen, url, NULL)) {
        free(url);
        entry_free(hint);
        return false;
    }
    sc_host *h = host_for(run->app, url);
    if (!h) {
        free(url);
        entry_free(hint);
        return false;
    }
    if (kind == T_PAGE) run->pages_enqueued++;
    task *t = core_xcalloc(1, sizeof *t);
    t->run = run;
    t->url = url;
    t->kind = kind;
    t->depth = depth;
    t->hint = hint;
    t->root = root;
    t->attempt = 1;
    run->pending++;
    push(h, t, false);
    host_pump(h);
    return true;
}

/* ---------------------------------------------------------------- the address check */

static curl_socket_t open_socket(void *data, curlsocktype purpose, struct curl_sockaddr *a)
{
    task *t = data;
    sc_app *app = t->host->app;
    (void)purpose;
    const struct sockaddr *sa = &a->addr;
    const char *cls = sc_addr_class(sa);
    if (cls && !sc_allowlist_contains(app->cfg.allow, sa)) {
        char ip[64];
        sc_addr_format(sa, ip, sizeof ip);
        t->blocked = true;
        core_buf msg = {0};
        core_buf_printf(&msg,
                        "refused %s: it resolves to %s, a %s address (not in "
                        "SCRAPER_ALLOW_PRIVATE)",
                        t->url, ip, cls);
        free(t->blocked_msg);
        t->blocked_msg = core_buf_steal(&msg, NULL);
        core_counter_add(app->m_refused, 1);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* Called by libcurl just before the request goes out (connection made, address checked): the
 * origin's delay counts from here, so that the gaps the server sees are the delay, not the
 * delay minus whatever queueing and connecting took. */
static int before_send(void *data, char *primary_ip, char *local_ip, int primary_port,
                       int local_port)
{
    task *t = data;
    sc_host *h = t->host;
    (void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;
    uv_update_time(h->app->loop);
    int64_t next = (int64_t)uv_now(h->app->loop) + host_delay(h);
    if (next > h->next_ms) h->next_ms = next;
    return CURL_PREREQFUNC_OK;
}

static bool curl_hook(CURL *easy, unsigned attempt, void *data)
{
    task *t = data;
    (void)attempt;
    if (t->blocked) return false; /* no retry of a refused address */
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, before_send);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, t);
    curl_easy_setopt(easy, CURLOPT_PROXY, ""); /* never through a proxy from the environment */
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
    return true;
}

/* ---------------------------------------------------------------- results */

static void task_failed(task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void task_failed(task *t, const char *fmt, ...)
{
    sc_run *run = t->run;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    run->failed++;
    run->dirty = true;
    if (t->root) run->root_failed = true;
    sc_run_error(run, "%s", msg);
    core_log_info("fetch failed", CORE_F_STR("run_id", run->id), CORE_F_STR("error", msg));
}

static bool is_html(const char *ctype)
{
    return !ctype || !*ctype || strcasestr(ctype, "html") || strcasestr(ctype, "xml");
}

static void process_page(task *t, httpc_response *resp)
{
    sc_run *run = t->run;
    const char *ctype = httpc_response_header(resp, "Content-Type");
    if (!is_html(ctype) || (ctype && strcasestr(ctype, "xml") && !strcasestr(ctype, "xhtml"))) {
        /* a feed or sitemap where a page was expected is handled as such */
        if (ctype && strcasestr(ctype, "xml")) {
            t->kind = T_FEED;
            return;
        }
        task_failed(t, "%s is not HTML (%s)", t->url, ctype);
        return;
    }
    char cs[48];
    sc_charset_detect(ctype, resp->body.data, resp->body.len, true, cs, sizeof cs);
    size_t len = 0;
    char *html = sc_to_utf8(resp->body.data ? resp->body.data : "", resp->body.len, cs, &len);
    sc_store_item *si = core_xcalloc(1, sizeof *si);
    sc_extract(html, len, t->url, &si->it);
    free(html);
    if (!si->it.text || strlen(si->it.text) < 20) {
        task_failed(t, "no article text found at %s", t->url);
        sc_store_item_free(si);
        return;
    }
    /* the item's identity: its canonical URL when it stays on the same host */
    const char *id_url = t->url;
    if (si->it.canonical_url) {
        char *h1 = sc_url_host(si->it.canonical_url), *h2 = sc_url_host(t->url);
        if (h1 && h2 && strcmp(h1, h2) == 0) id_url = si->it.canonical_url;
        free(h1);
        free(h2);
    }
    sc_url_fingerprint(id_url, si->url_fp);
    free(si->it.url);
    si->it.url = core_xstrdup(t->url);
    if (t->hint) {
        if (!si->it.title && t->hint->title) si->it.title = core_xstrdup(t->hint->title);
        if (!si->it.author && t->hint->author) si->it.author = core_xstrdup(t->hint->author);
        if (!si->it.published_ms) si->it.published_ms = t->hint->published_ms;
    }
    si->page_url = core_xstrdup(t->url);
    sc_url_fingerprint(t->url, si->page_fp);
    const char *etag = httpc_response_header(resp, "ETag");
    const char *lm = httpc_response_header(resp, "Last-Modified");
    si->etag = etag ? core_xstrdup(etag) : NULL;
    si->last_modified = lm ? core_xstrdup(lm) : NULL;
    run->pending++;
    sc_store_enqueue(run, si);
}

/* A feed entry with its full content: an item without fetching its page. */
static void store_entry(sc_run *run, const char *feed_url, const sc_entry *e, const char *url)
{
    sc_store_item *si = core_xcalloc(1, sizeof *si);
    si->it.url = core_xstrdup(url);
    si->it.title = e->title ? core_xstrdup(e->title) : NULL;
    si->it.author = e->author ? core_xstrdup(e->author) : NULL;
    si->it.published_ms = e->published_ms;
    si->it.text = sc_html_text(e->content, strlen(e->content));
    if (e->summary) si->it.description = sc_html_text(e->summary, strlen(e->summary));
    (void)feed_url;
    if (!*si->it.text) {
        sc_store_item_free(si);
        run->failed++;
        sc_run_error(run, "feed entry %s has no text", url);
        return;
    }
    sc_url_fingerprint(url, si->url_fp);
    memcpy(si->page_fp, si->url_fp, sizeof si->page_fp);
    si->page_url = core_xstrdup(url);
    run->pending++;
    sc_store_enqueue(run, si);
}

static sc_entry *entry_copy(const sc_entry *e)
{
    sc_entry *c = core_xcalloc(1, sizeof *c);
    c->title = e->title ? core_xstrdup(e->title) : NULL;
    c->author = e->author ? core_xstrdup(e->author) : NULL;
    c->published_ms = e->published_ms;
    return c;
}

static void process_xml(task *t, httpc_response *resp)
{
    sc_run *run = t->run;
    sc_feed f;
    char err[256];
    if (!sc_feed_parse(resp->body.data ? resp->body.data : "", resp->body.len, t->url,
                       run->app->cfg.max_bytes * 4, &f, err, sizeof err)) {
        task_failed(t, "%s: %s", t->url, err);
        return;
    }
    for (size_t i = 0; i < f.n; i++) {
        sc_entry *e = &f.entries[i];
        if (!e->link) continue;
        switch (f.kind) {
        case SC_DOC_SITEMAP_INDEX:
            if (t->depth < 4) run_enqueue(run, t->url, e->link, T_SITEMAP, t->depth + 1, NULL, 0);
            break;
        case SC_DOC_URLSET:
            run_enqueue(run, t->url, e->link, T_PAGE, 0, NULL, false);
            break;
        default: {
            char *url = sc_url_normalize(t->url, e->link);
            if (!url) break;
            bool wanted = sc_url_wanted(run->include, run->exclude, url) &&
                          run->pages_enqueued < run->max_items;
            if (wanted && e->content && *e->content) {
                if (sc_strmap_add(&run->seen, url, NULL)) {
                    run->pages_enqueued++;
                    store_entry(run, t->url, e, url);
                }
            } else if (wanted) {
                run_enqueue(run, t->url, url, T_PAGE, 0, entry_copy(e), false);
            }
            free(url);
            break;
        }
        }
    }
    sc_feed_free(&f);
    malloc_trim(0); /* a large sitemap's tree is gone: give its pages back */
}

static bool redirect(task *t, httpc_response *resp)
{
    const char *loc = httpc_response_header(resp, "Location");
    if (!loc) return false;
    sc_app *app = t->host->app;
    sc_run *run = t->run;
    char *next = sc_url_normalize(t->url, loc);
    if (!next) {
        task_failed(t, "%s redirects to %s, which is not an http(s) URL", t->url, loc);
        return true;
    }
    if (t->redirects >= app->cfg.max_redirects) {
        task_failed(t, "%s: more than %d redirects", t->url, app->cfg.max_redirects);
        free(next);
        return true;
    }
    if (!sc_strmap_add(&run->seen, next, NULL)) { /* reached by another way already */
        free(next);
        return true;
    }
    sc_host *h = host_for(app, next);
    task *n = core_xcalloc(1, sizeof *n);
    *n = (task){.run = run,
                .url = next,
                .kind = t->kind,
                .redirects = t->redirects + 1,
                .attempt = 1,
                .depth = t->depth,
                .root = t->root,
                .hint = t->hint};
    t->hint = NULL;
    run->pending++;
    push(h, n, true);
    host_pump(h);
    return true;
}

/* Network errors, timeouts, 429 and 5xx are retried (at most cfg.max_attempts in all) after
 * max(backoff, Retry-After, the host's delay), through the host's queue, holding back the
 * whole host meanwhile. A Retry-After beyond cfg.max_retry_wait_ms ends retrying. */
static bool retry_later(task *t, httpc_response *resp)
{
    sc_host *h = t->host;
    sc_app *app = h->app;
    if (t->blocked || app->stopping) return false;
    bool transient = resp->error == HTTPC_ERR_TIMEOUT || resp->error == HTTPC_ERR_NETWORK ||
                     resp->error == HTTPC_ERR_CONNECT || resp->error == HTTPC_ERR_RESOLVE;
    bool status = resp->error == HTTPC_OK &&
                  (resp->status == 429 || (resp->status >= 500 && resp->status != 501));
    if ((!transient && !status) || t->attempt >= app->cfg.max_attempts) return false;
    int64_t wait = core_backoff_ms(t->attempt - 1, app->cfg.backoff_base_ms, 30000);
    if (wait < host_delay(h)) wait = host_delay(h);
    if (resp->retry_after_ms > app->cfg.max_retry_wait_ms) return false;
    if (resp->retry_after_ms > wait) wait = resp->retry_after_ms;
    core_log_info("fetch retry", CORE_F_STR("url", t->url), CORE_F_INT("attempt", t->attempt),
                  CORE_F_INT("status", resp->status),
                  CORE_F_STR("error", resp->error ? resp->message : ""),
                  CORE_F_INT("wait_ms", wait));
    int64_t until = (int64_t)uv_now(app->loop) + wait;
    if (until > h->next_ms) h->next_ms = until;
    t->attempt++;
    push(h, t, true);
    host_pump(h);
    return true;
}

static void on_fetched(httpc_response *resp, void *data)
{
    task *t = data;
    sc_host *h = t->host;
    sc_app *app = h->app;
    sc_run *run = t->run;
    h->active--;
    if (resp->retry_after_ms > 0) {
        int64_t ra = resp->retry_after_ms < app->cfg.max_retry_wait_ms ? resp->retry_after_ms
                                                                       : app->cfg.max_retry_wait_ms;
        int64_t until = (int64_t)uv_now(app->loop) + ra;
        if (until > h->next_ms) h->next_ms = until;
    }
    const char *klass = resp->error          ? "error"
                        : resp->status < 300 ? "2xx"
                        : resp->status < 400 ? "3xx"
                        : resp->status < 500 ? "4xx"
                                             : "5xx";
    core_counter_add(app->m_fetches, 1, t->blocked ? "refused" : klass);
    if (retry_later(t, resp)) return;
    if (resp->error == HTTPC_ERR_CANCELLED && app->stopping) {
        /* draining: the run is recorded as interrupted */
    } else if (t->blocked) {
        task_failed(t, "%s", t->blocked_msg);
    } else if (resp->error != HTTPC_OK) {
        task_failed(t, "GET %s: %s (%u attempts)", t->url, resp->message, t->attempt);
    } else if (resp->status >= 300 && resp->status < 400 && resp->status != 304) {
        if (!redirect(t, resp))
            task_failed(t, "GET %s: HTTP %ld without Location", t->url, resp->status);
    } else if (resp->status == 304) {
        run->fetched++;
        run->unchanged++;
        run->dirty = true;
    } else if (resp->status >= 200 && resp->status < 300) {
        run->fetched++;
        run->dirty = true;
        if (t->kind == T_PAGE) process_page(t, resp);
        if (t->kind == T_FEED || t->kind == T_SITEMAP) process_xml(t, resp);
    } else {
        if (resp->retry_after_ms > app->cfg.max_retry_wait_ms)
            task_failed(t,
                        "GET %s: HTTP %ld, asked to retry after %lld s (more than "
                        "SCRAPER_MAX_RETRY_WAIT)",
                        t->url, resp->status, (long long)(resp->retry_after_ms / 1000));
        else
            task_failed(t, "GET %s: HTTP %ld after %u attempts", t->url, resp->status, t->attempt);
    }
    task_free(t);
    host_pump(h);
    sc_run_task_done(run);
}

static void on_robots(httpc_response *resp, void *data)
{
    task *t = data;
    sc_host *h = t->host;
    sc_app *app = h->app;
    h->active--;
    h->robots_fetching = false;
    int64_t now = (int64_t)uv_now(app->loop);
    sc_robots_free(h->robots);
    h->robots_until = now + app->cfg.robots_ttl_ms;
    if (resp->error == HTTPC_OK && resp->status >= 200 && resp->status < 300) {
        h->robots = sc_robots_parse(resp->body.data ? resp->body.data : "", resp->body.len,
                                    app->cfg.robots_agent);
    } else if ((resp->error == HTTPC_OK && resp->status >= 400 && resp->status < 500) ||
               t->blocked) {
        /* RFC 9309: "unavailable" means no restrictions; a refused address fails each
         * request with its own clear error anyway */
        h->robots = sc_robots_parse(NULL, 0, app->cfg.robots_agent);
        if (t->blocked) h->robots_until = now + 1000;
    } else {
        /* "unreachable" (5xx, network): assume complete disallow, try again soon */
        h->robots = sc_robots_deny_all();
        h->robots_until = now + 60000;
        core_log_warn("robots.txt unreachable, host disallowed for a minute",
                      CORE_F_STR("origin", h->origin),
                      CORE_F_STR("error", resp->error ? resp->message : "server error"));
    }
    if (resp->retry_after_ms > 0 && now + resp->retry_after_ms > h->next_ms)
        h->next_ms = now + resp->retry_after_ms;
    /* the first request after robots.txt waits for the delay robots.txt asked for */
    if (h->robots_started + host_delay(h) > h->next_ms)
        h->next_ms = h->robots_started + host_delay(h);
    task_free(t);
    host_pump(h);
}

static void start_fetch(sc_host *h, task *t)
{
    sc_app *app = h->app;
    httpc_header hdrs[3];
    size_t nh = 0;
    char *etag = NULL, *lm = NULL;
    if (t->run && t->kind != T_SITEMAP) {
        char fp[33];
        bool found;
        sc_url_fingerprint(t->url, fp);
        const char *v = sc_strmap_get(&t->run->validators, fp, &found);
        if (v) {
            const char *nl = strchr(v, '\n');
            if (nl && nl > v) etag = core_xstrndup(v, (size_t)(nl - v));
            if (nl && nl[1]) lm = core_xstrdup(nl + 1);
        }
        if (etag) hdrs[nh++] = (httpc_header){"If-None-Match", etag};
        if (lm) hdrs[nh++] = (httpc_header){"If-Modified-Since", lm};
    }
    hdrs[nh++] = (httpc_header){"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,"
                                          "application/rss+xml,application/atom+xml,*/*;q=0.5"};
    httpc_request_opts o = {.url = t->url,
                            .headers = hdrs,
                            .nheaders = nh,
                            .max_redirects = t->kind == T_ROBOTS ? 5 : -1,
                            .max_attempts = t->kind == T_ROBOTS ? 2 : 1,
                            .backoff_base_ms = app->cfg.backoff_base_ms,
                            .curl_hook = curl_hook,
                            .curl_hook_data = t};
    httpc_req *r = httpc_request(app->httpc, &o, t->kind == T_ROBOTS ? on_robots : on_fetched, t);
    free(etag);
    free(lm);
    if (!r) { /* the client is closing */
        h->active--;
        if (t->kind == T_ROBOTS) h->robots_fetching = false;
        sc_run *run = t->run;
        task_free(t);
        if (run) sc_run_task_done(run);
    }
}

static void fetch_robots(sc_host *h)
{
    task *t = core_xcalloc(1, sizeof *t);
    t->kind = T_ROBOTS;
    t->host = h;
    core_buf u = {0};
    core_buf_printf(&u, "%s/robots.txt", h->origin);
    t->url = core_buf_steal(&u, NULL);
    h->robots_fetching = true;
    h->active++;
    h->robots_started = (int64_t)uv_now(h->app->loop);
    h->next_ms = h->robots_started + host_delay(h);
    start_fetch(h, t);
}

static void host_pump(sc_host *h)
{
    sc_app *app = h->app;
    if (app->stopping) return;
    int64_t now = (int64_t)uv_now(app->loop);
    if (app->cfg.robots && h->head && (!h->robots || now >= h->robots_until)) {
        if (!h->robots_fetching) fetch_robots(h);
        if (!h->robots) return;
    }
    while (h->head && h->active < app->cfg.per_host) {
        task *t = h->head;
        sc_run *run = t->run;
        if (run->cancelled) {
            task_free(pop(h));
            sc_run_task_done(run);
            continue;
        }
        if (h->robots) {
            char *path = sc_url_path(t->url);
            bool ok = path && sc_robots_allowed(h->robots, path);
            free(path);
            if (!ok) {
                pop(h);
                run->disallowed++;
                if (t->root) {
                    task_failed(t, "%s is disallowed by robots.txt", t->url);
                    run->failed--; /* counted as disallowed, not as a failed fetch */
                }
                core_log_debug("disallowed by robots.txt", CORE_F_STR("url", t->url));
                task_free(t);
                sc_run_task_done(run);
                continue;
            }
        }
        if (run->sq_len >= SC_STORE_BACKLOG) { /* the store is behind: wait for it */
            run->throttled = true;
            return;
        }
        if (now < h->next_ms) {
            uv_timer_start(&h->timer, on_host_timer, (uint64_t)(h->next_ms - now), 0);
            return;
        }
        pop(h);
        h->next_ms = now + host_delay(h);
        h->active++;
        start_fetch(h, t);
    }
}

void sc_hosts_pump_all(sc_app *app)
{
    for (sc_host *h = app->hosts; h; h = h->next)
        host_pump(h);
}

static void host_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void sc_hosts_close(sc_app *app)
{
    for (sc_host *h = app->hosts, *next; h; h = next) {
        next = h->next;
        while (h->head) {
            task *t = pop(h);
            sc_run *run = t->run;
            task_free(t);
            if (run) sc_run_task_done(run);
        }
        free(h->origin);
        sc_robots_free(h->robots);
        uv_close((uv_handle_t *)&h->timer, host_closed);
    }
    app->hosts = NULL;
}

/* Drops every queued task (draining): each counts as done for its run. */
void sc_hosts_drop_queued(sc_app *app)
{
    for (sc_host *h = app->hosts; h; h = h->next) {
        uv_timer_stop(&h->timer);
        while (h->head) {
            task *t = pop(h);
            sc_run *run = t->run;
            task_free(t);
            if (run) sc_run_task_done(run);
        }
    }
}

/* Queues the run's own URL. */
void sc_run_begin_crawl(sc_run *run)
{
    task_kind k = strcmp(run->kind, "page") == 0   ? T_PAGE
                  : strcmp(run->kind, "feed") == 0 ? T_FEED
                                                   : T_SITEMAP;
    run->pending++; /* held until the root is queued, so the run cannot end early */
    if (run->app->stopping) {
        sc_run_task_done(run);
        return;
    }
    if (!run_enqueue(run, NULL, run->url, k, 0, NULL, true)) {
        run->failed++;
        run->root_failed = true;
        sc_run_error(run, "%s is not an http(s) URL", run->url);
    }
    sc_run_task_done(run);
}
