/*
 * The scraper seen from outside: the real binary (build/<variant>/bin/scraper) on the real
 * Kafka and PostgreSQL, crawling a test site served by a real nginx on loopback that this test
 * starts itself (config generated into a temp dir; pages from tests/fixtures/scraper-site:
 * robots.txt, an RSS feed, a sitemap index with a gzip child, a redirect, a 429 with
 * Retry-After, a slow page, a page over the size limit, an ISO-8859-1 page, the same article
 * at two URLs and a near-duplicate). nginx's access log (with $msec and $request_time) is the
 * proof of what was and was not requested, and when. Events are read back from scraper.items
 * and scraper.runs with a libs/bus consumer.
 *
 * The scraper runs with SCRAPER_ALLOW_PRIVATE=127.0.0.1/32: loopback only, so that the test
 * site is reachable while 10.0.0.1 and 169.254.169.254 stay refused.
 * Needs KAFKA_BROKERS, SCRAPER_DATABASE_URL and nginx (skips without).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "bus.h"
#include "contentengine/v1/scraper.pb-c.h"
#include "core.h"
#include "test_support.h"

#define API "/api/scraper"

typedef struct rec {
    char topic[64];
    char key[64];
    char ce_type[128];
    char id[64]; /* item_id or run_id */
    char url[256];
    char title[160];
    char state[24];
    int64_t fetched, new_items, unchanged, failed;
} rec;

static uv_loop_t loop;
static bool have_infra;
static ts_child svc, web;
static bool svc_running, web_running;
static int port, site_port;
static char tmp[256], site_root[512], fixtures[4096];
static char svc_bin[4200], env_port[64], env_kafka[256], env_db[2048], env_mig[4300];
static char svc_log[600];
static bus_consumer *consumer;
static rec *recs;
static size_t nrecs, caprecs;

/* ---------------------------------------------------------------- plumbing */

static void on_message(bus_consumer *c, const bus_message *m, void *data)
{
    (void)data;
    if (nrecs == caprecs) {
        caprecs = caprecs ? caprecs * 2 : 256;
        recs = realloc(recs, caprecs * sizeof *recs);
    }
    rec *r = &recs[nrecs++];
    memset(r, 0, sizeof *r);
    snprintf(r->topic, sizeof r->topic, "%s", m->topic);
    snprintf(r->key, sizeof r->key, "%.*s", (int)(m->key_len < 60 ? m->key_len : 60),
             m->key ? (const char *)m->key : "");
    snprintf(r->ce_type, sizeof r->ce_type, "%s", m->ce_type);
    if (strcmp(m->topic, TOPIC_SCRAPER_ITEMS) == 0) {
        Contentengine__V1__ScrapedItem *it =
            contentengine__v1__scraped_item__unpack(NULL, m->value_len, m->value);
        if (it) {
            snprintf(r->id, sizeof r->id, "%s", it->item_id);
            snprintf(r->url, sizeof r->url, "%s", it->url);
            snprintf(r->title, sizeof r->title, "%s", it->title);
            contentengine__v1__scraped_item__free_unpacked(it, NULL);
        }
    } else {
        Contentengine__V1__ScrapeRunEvent *ev =
            contentengine__v1__scrape_run_event__unpack(NULL, m->value_len, m->value);
        if (ev) {
            snprintf(r->id, sizeof r->id, "%s", ev->run_id);
            snprintf(r->state, sizeof r->state, "%s", ev->state);
            r->fetched = ev->fetched;
            r->new_items = ev->new_items;
            r->unchanged = ev->unchanged;
            r->failed = ev->failed;
            contentengine__v1__scrape_run_event__free_unpacked(ev, NULL);
        }
    }
    bus_done(c, m, BUS_OK, NULL);
}

static void pump(int64_t ms)
{
    ts_run_for(&loop, ms);
}

static size_t count_recs(const char *topic, const char *key, const char *id, const char *state)
{
    size_t n = 0;
    for (size_t i = 0; i < nrecs; i++) {
        const rec *r = &recs[i];
        if (strcmp(r->topic, topic) || strcmp(r->key, key)) continue;
        if (id && strcmp(r->id, id)) continue;
        if (state && strcmp(r->state, state)) continue;
        n++;
    }
    return n;
}

static void wait_recs(const char *topic, const char *key, const char *id, const char *state,
                      size_t want)
{
    int64_t deadline = core_mono_ns() + 30 * 1000000000LL;
    while (count_recs(topic, key, id, state) < want && core_mono_ns() < deadline)
        pump(100);
    if (count_recs(topic, key, id, state) < want)
        fail_msg("%zu records on %s for %s (%s), wanted %zu", count_recs(topic, key, id, state),
                 topic, key, state ? state : "any", want);
}

typedef ts_resp resp;

static void call(resp *out, const char *method, const char *path, const char *body)
{
    ts_http_call(out, port, method, path, body, body ? strlen(body) : 0, NULL, NULL);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int64_t jint(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static void assert_problem(resp *r, long status, const char *field)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body.data ? r->body.data : "");
    assert_non_null(strstr(r->ctype, "application/problem+json"));
    assert_non_null(r->json);
    assert_int_equal(jint(r->json, "status"), status);
    if (field) {
        bool found = false;
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(r->json, "errors"), i, e)
        {
            if (strcmp(jstr(e, "field"), field) == 0) found = true;
        }
        if (!found) fail_msg("no error for field %s: %s", field, r->body.data);
    }
    ts_resp_free(r);
}

/* Creates a source; returns its id in out. */
static void create_source(char out[64], const char *json)
{
    resp r = {0};
    call(&r, "POST", API "/sources", json);
    if (r.status != 201) fail_msg("create source: %ld %s", r.status, r.body.data);
    snprintf(out, 64, "%s", jstr(r.json, "id"));
    ts_resp_free(&r);
}

/* A source on the test site: path on the site, kind, extra JSON members (",\"paused\":true"). */
static void site_source(char out[64], const char *path, const char *kind, const char *extra)
{
    char body[512];
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d%s\",\"kind\":\"%s\"%s}", site_port,
             path, kind, extra);
    create_source(out, body);
}

static void delete_source(const char *id)
{
    char path[160];
    snprintf(path, sizeof path, API "/sources/%s", id);
    resp r = {0};
    call(&r, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    ts_resp_free(&r);
}

static void start_run(const char *source, char run_id[64])
{
    char path[160];
    snprintf(path, sizeof path, API "/sources/%s/run", source);
    resp r = {0};
    call(&r, "POST", path, NULL);
    if (r.status != 202) fail_msg("run: %ld %s", r.status, r.body.data);
    assert_string_equal(jstr(r.json, "state"), "running");
    assert_string_equal(jstr(r.json, "trigger"), "manual");
    snprintf(run_id, 64, "%s", jstr(r.json, "id"));
    ts_resp_free(&r);
}

/* Polls the run until it is no longer running; returns its JSON (caller decrefs). */
static json_t *wait_run(const char *run_id, int64_t ms)
{
    char path[160];
    snprintf(path, sizeof path, API "/runs/%s", run_id);
    int64_t deadline = core_mono_ns() + ms * 1000000;
    for (;;) {
        resp r = {0};
        call(&r, "GET", path, NULL);
        assert_int_equal(r.status, 200);
        if (strcmp(jstr(r.json, "state"), "running") != 0) {
            json_t *j = json_incref(r.json);
            ts_resp_free(&r);
            return j;
        }
        ts_resp_free(&r);
        if (core_mono_ns() > deadline) fail_msg("run %s still running", run_id);
        pump(200);
    }
}

static json_t *list_items(const char *source)
{
    char path[200];
    snprintf(path, sizeof path, API "/items?source_id=%s&limit=500", source);
    resp r = {0};
    call(&r, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    json_t *items = json_incref(json_object_get(r.json, "items"));
    ts_resp_free(&r);
    return items;
}

static json_t *find_item(json_t *items, const char *url_suffix)
{
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *u = jstr(it, "url");
        size_t a = strlen(u), b = strlen(url_suffix);
        if (a >= b && strcmp(u + a - b, url_suffix) == 0) return it;
    }
    return NULL;
}

/* ---------------------------------------------------------------- the access log */

typedef struct hit {
    double start; /* $msec - $request_time: when nginx began reading the request */
    int status;
    char path[256];
    char inm[128]; /* If-None-Match */
    char ua[128];
} hit;

static size_t read_log(hit **out)
{
    char path[600];
    snprintf(path, sizeof path, "%s/access.log", tmp);
    FILE *f = fopen(path, "r");
    *out = NULL;
    if (!f) return 0;
    size_t n = 0, cap = 0;
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        double msec, rt;
        int status;
        char method[16], p[256], inm[128] = "", ua[128] = "";
        if (sscanf(line, "%lf %lf %d \"%15s %255s HTTP/%*[^\"]\" \"%127[^\"]\" \"%127[^\"]\"",
                   &msec, &rt, &status, method, p, inm, ua) < 5)
            continue;
        if (n == cap) *out = realloc(*out, (cap = cap ? cap * 2 : 64) * sizeof **out);
        hit *h = &(*out)[n++];
        h->start = msec - rt;
        h->status = status;
        snprintf(h->path, sizeof h->path, "%s", p);
        snprintf(h->inm, sizeof h->inm, "%s", inm);
        snprintf(h->ua, sizeof h->ua, "%s", ua);
    }
    fclose(f);
    return n;
}

static void truncate_log(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/access.log", tmp);
    FILE *f = fopen(path, "r+");
    if (f) {
        if (ftruncate(fileno(f), 0) != 0) fail_msg("truncate access log: %s", strerror(errno));
        fclose(f);
    }
}

static size_t hits_for(const hit *h, size_t n, const char *path, int status)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].path, path) == 0 && (!status || h[i].status == status)) k++;
    return k;
}

/* ---------------------------------------------------------------- the site */

static bool write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* Fixture template with http://SITE replaced by the site's origin, written under site_root. */
static bool render(const char *tmpl, const char *out_rel, bool gz)
{
    char src[4400], dst[700];
    snprintf(src, sizeof src, "%s/%s", fixtures, tmpl);
    FILE *f = fopen(src, "rb");
    if (!f) return false;
    core_buf in = {0}, out = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        core_buf_append(&in, chunk, n);
    fclose(f);
    core_buf_append(&in, "", 0);
    char origin[64];
    snprintf(origin, sizeof origin, "http://127.0.0.1:%d", site_port);
    for (const char *p = in.data; *p;) {
        const char *m = strstr(p, "http://SITE");
        if (!m) {
            core_buf_puts(&out, p);
            break;
        }
        core_buf_append(&out, p, (size_t)(m - p));
        core_buf_puts(&out, origin);
        p = m + strlen("http://SITE");
    }
    snprintf(dst, sizeof dst, "%s/%s", site_root, out_rel);
    bool ok;
    if (gz) {
        gzFile g = gzopen(dst, "wb");
        ok = g && gzwrite(g, out.data, (unsigned)out.len) == (int)out.len;
        if (g) gzclose(g);
    } else {
        ok = write_file(dst, out.data, out.len);
    }
    core_buf_free(&in);
    core_buf_free(&out);
    return ok;
}

/* 40 distinct generated articles for the kill-and-resume run, and their sitemap. */
#define GEN_PAGES        40
#define GEN_FEED_ENTRIES 6
static bool write_generated(void)
{
    /* words made of two syllables: a vocabulary of 576, so that random texts are far apart
     * (a small vocabulary makes every page a near-duplicate of every other) */
    static const char *const syl[] = {"ba", "ce", "di", "fo", "gu",  "ha",  "je",  "ki",
                                      "lo", "mu", "na", "pe", "qui", "ro",  "su",  "ta",
                                      "ve", "wi", "xo", "yu", "za",  "bre", "clo", "dra"};
    size_t ns = sizeof syl / sizeof syl[0];
    char path[800];
    snprintf(path, sizeof path, "%s/gen", site_root);
    mkdir(path, 0755);
    core_buf sm = {0};
    core_buf_puts(&sm, "<?xml version=\"1.0\"?><urlset "
                       "xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">");
    uint64_t seed = 88172645463325252ULL;
    for (int i = 0; i < GEN_PAGES; i++) {
        core_buf b = {0};
        core_buf_printf(&b,
                        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
                        "Generated story %d</title></head><body><nav><a href=\"/\">Home</a>"
                        "</nav><article><h1>Generated story %d</h1>",
                        i, i);
        for (int p = 0; p < 4; p++) {
            core_buf_puts(&b, "<p>");
            for (int w = 0; w < 30; w++) {
                seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                core_buf_printf(&b, "%s%s%s", w ? " " : "", syl[seed % ns], syl[(seed >> 8) % ns]);
            }
            core_buf_printf(&b, " story %d paragraph %d.</p>", i, p);
        }
        core_buf_puts(&b, "</article><footer>Generated site</footer></body></html>");
        snprintf(path, sizeof path, "%s/gen/p%03d.html", site_root, i);
        bool ok = write_file(path, b.data, b.len);
        core_buf_free(&b);
        if (!ok) return false;
        core_buf_printf(&sm, "<url><loc>http://127.0.0.1:%d/gen/p%03d.html</loc></url>", site_port,
                        i);
    }
    core_buf_puts(&sm, "</urlset>");
    snprintf(path, sizeof path, "%s/gen/sitemap.xml", site_root);
    bool ok = write_file(path, sm.data, sm.len);
    core_buf_free(&sm);
    /* a feed whose entries carry their full text: stored in one batch, one event each */
    core_buf feed = {0};
    core_buf_puts(&feed, "<?xml version=\"1.0\"?><rss version=\"2.0\" "
                         "xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"><channel>"
                         "<title>Generated</title>");
    for (int i = 0; i < GEN_FEED_ENTRIES; i++) {
        core_buf_printf(&feed,
                        "<item><title>Entry %d</title><link>http://127.0.0.1:%d/gen/entry%d.html"
                        "</link><content:encoded><![CDATA[<p>",
                        i, site_port, i);
        for (int w = 0; w < 40; w++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            core_buf_printf(&feed, "%s%s%s", w ? " " : "", syl[seed % ns], syl[(seed >> 8) % ns]);
        }
        core_buf_puts(&feed, ".</p>]]></content:encoded></item>");
    }
    core_buf_puts(&feed, "</channel></rss>");
    snprintf(path, sizeof path, "%s/gen/feed.xml", site_root);
    ok = ok && write_file(path, feed.data, feed.len);
    core_buf_free(&feed);
    return ok;
}

static bool start_site(void)
{
    const char *nginx = access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : NULL;
    if (!nginx) return false;
    snprintf(tmp, sizeof tmp, "/tmp/scraper-site-XXXXXX");
    if (!mkdtemp(tmp)) return false;
    chmod(tmp, 0755);
    snprintf(site_root, sizeof site_root, "%s/site", tmp);
    char d[700];
    mkdir(site_root, 0755);
    snprintf(d, sizeof d, "%s/sitemaps", site_root);
    mkdir(d, 0755);
    site_port = ts_free_port();
    if (!render("sitemap.xml.tmpl", "sitemap.xml", false) ||
        !render("feed.xml.tmpl", "feed.xml", false) ||
        !render("sitemaps/pages.xml.tmpl", "sitemaps/pages.xml", false) ||
        !render("sitemaps/more.xml.tmpl", "sitemaps/more.xml.gz", true) || !write_generated())
        return false;
    core_buf conf = {0};
    core_buf_printf(
        &conf,
        "worker_processes 1;\ndaemon off;\nmaster_process off;\nerror_log %s/error.log warn;\n"
        "pid %s/nginx.pid;\nevents { worker_connections 256; }\nhttp {\n"
        "  log_format timed '$msec $request_time $status \"$request\" \"$http_if_none_match\" "
        "\"$http_user_agent\"';\n"
        "  access_log %s/access.log timed;\n"
        "  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi;\n"
        "  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
        "  types { text/html html; application/xml xml; application/gzip gz; text/plain txt; }\n"
        "  default_type application/octet-stream;\n"
        "  server {\n    listen 127.0.0.1:%d;\n    root %s;\n"
        "    location = /ratelimited.html { add_header Retry-After 1 always; return 429; }\n"
        "    location = /slow.html { limit_rate 100; }\n"
        "    location = /old/beta.html { return 301 /articles/beta.html; }\n"
        "    location = /to-metadata { return 302 http://169.254.169.254/latest/meta-data/; }\n"
        "    location = /sitemap.xml { root %s; }\n    location /sitemaps/ { root %s; }\n"
        "    location = /feed.xml { root %s; }\n    location /gen/ { root %s; }\n  }\n}\n",
        tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp, site_port, fixtures, site_root, site_root,
        site_root, site_root);
    char conf_path[700], log[700];
    snprintf(conf_path, sizeof conf_path, "%s/nginx.conf", tmp);
    snprintf(log, sizeof log, "%s/nginx.out", tmp);
    bool ok = write_file(conf_path, conf.data, conf.len);
    core_buf_free(&conf);
    if (!ok) return false;
    /* master_process off: one process the test owns and kills */
    if (!ts_spawn_logged(&web, nginx,
                         (const char *const[]){"nginx", "-c", conf_path, "-p", tmp, NULL}, NULL,
                         log))
        return false;
    web_running = true;
    for (int i = 0; i < 100; i++) {
        core_buf out = {0};
        int st = ts_http_get_raw(site_port, "/robots.txt", &out);
        core_buf_free(&out);
        if (st == 200) {
            truncate_log();
            return true;
        }
        usleep(50000);
    }
    return false;
}

/* ---------------------------------------------------------------- the service */

static bool readyz(void)
{
    resp r = {0};
    call(&r, "GET", "/readyz", NULL);
    bool ok = r.status == 200;
    ts_resp_free(&r);
    return ok;
}

static bool start_service(void)
{
    if (!ts_spawn_logged(
            &svc, svc_bin, NULL,
            (const char *const[]){
                env_port, env_kafka, env_db, env_mig, "SCRAPER_ALLOW_PRIVATE=127.0.0.1/32",
                "SCRAPER_DELAY=0", "SCRAPER_PER_HOST_CONCURRENCY=1", "SCRAPER_TIMEOUT=2s",
                "SCRAPER_MAX_ATTEMPTS=3", "SCRAPER_MAX_BYTES=65536", "SCRAPER_MAX_RETRY_WAIT=5s",
                "SCRAPER_BACKOFF_BASE=200ms", "SCRAPER_PROGRESS_INTERVAL=500ms",
                "SCRAPER_SCHEDULER_TICK=200ms", "LOG_LEVEL=info", NULL},
            svc_log))
        return false;
    svc_running = true;
    int64_t deadline = core_mono_ns() + 60 * 1000000000LL;
    while (!readyz()) {
        if (core_mono_ns() > deadline) {
            fprintf(stderr, "scraper never became ready (log %s)\n", svc_log);
            return false;
        }
        pump(200);
    }
    return true;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&loop);
    const char *brokers = ts_env("KAFKA_BROKERS");
    const char *db = ts_env("SCRAPER_DATABASE_URL");
    if (!brokers || !db) return 0;
    core_log_init("scraper-test", CORE_LOG_WARN);
    ts_repo_path(fixtures, sizeof fixtures, "tests/fixtures/scraper-site");
    if (!start_site()) {
        fprintf(stderr, "cannot start nginx for the test site (is nginx installed?)\n");
        return 0;
    }
    char unique[96], err[512];
    ts_unique_name(unique, sizeof unique, "sctest");
    static const char *const topics[] = {TOPIC_SCRAPER_ITEMS, TOPIC_SCRAPER_RUNS, NULL};
    consumer = bus_consumer_new(&loop,
                                &(bus_consumer_config){.brokers = brokers,
                                                       .group_id = unique,
                                                       .client_id = unique,
                                                       .topics = topics,
                                                       .auto_offset_reset = "latest"},
                                on_message, NULL, err, sizeof err);
    if (!consumer) return -1;
    ts_bin_path(svc_bin, sizeof svc_bin, "scraper");
    char mig[4096];
    ts_repo_path(mig, sizeof mig, "services/scraper/migrations");
    snprintf(env_mig, sizeof env_mig, "MIGRATIONS_DIR=%s", mig);
    port = ts_free_port();
    snprintf(env_port, sizeof env_port, "HTTP_PORT=%d", port);
    snprintf(env_kafka, sizeof env_kafka, "KAFKA_BROKERS=%s", brokers);
    snprintf(env_db, sizeof env_db, "DATABASE_URL=%s", db);
    snprintf(svc_log, sizeof svc_log, "%s/scraper.log", tmp);
    if (!start_service()) return -1;
    /* let the consumer join its group before anything is produced ("latest") */
    int64_t deadline = core_mono_ns() + 30 * 1000000000LL;
    while (!bus_consumer_connected(consumer) && core_mono_ns() < deadline)
        pump(100);
    pump(3000);
    have_infra = true;
    return 0;
}

static bool closed_flag;
static void on_closed(void *data)
{
    (void)data;
    closed_flag = true;
}
static bool closed(void *data)
{
    (void)data;
    return closed_flag;
}

static void stop_child(ts_child *c, bool *running)
{
    if (!*running) return;
    kill(c->pid, SIGKILL);
    ts_wait(c, 10000);
    *running = false;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_child(&svc, &svc_running);
    stop_child(&web, &web_running);
    if (consumer) {
        closed_flag = false;
        bus_consumer_close(consumer, on_closed, NULL);
        ts_run_until(&loop, closed, NULL, 60000);
    }
    ts_loop_close_all(&loop);
    uv_loop_close(&loop);
    free(recs);
    curl_global_cleanup();
    if (tmp[0] && getenv("SCRAPER_TEST_KEEP") == NULL) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    return 0;
}

/* ---------------------------------------------------------------- tests */

static void test_api_validation(void **state)
{
    (void)state;
    if (!have_infra) skip();
    resp r = {0};
    call(&r, "POST", API "/sources", "{\"kind\":\"page\"}");
    assert_problem(&r, 400, "url");
    call(&r, "POST", API "/sources", "{\"url\":\"ftp://x.test/\",\"kind\":\"page\"}");
    assert_problem(&r, 400, "url");
    call(&r, "POST", API "/sources", "{\"url\":\"http://x.test/\",\"kind\":\"blog\"}");
    assert_problem(&r, 400, "kind");
    call(&r, "POST", API "/sources",
         "{\"url\":\"http://x.test/\",\"kind\":\"page\",\"include\":[\"(bad\"]}");
    assert_problem(&r, 400, "include");
    call(&r, "POST", API "/sources",
         "{\"url\":\"http://x.test/\",\"kind\":\"page\",\"interval\":\"soon\"}");
    assert_problem(&r, 400, "interval");
    call(&r, "POST", API "/sources",
         "{\"url\":\"http://x.test/\",\"kind\":\"page\",\"max_items\":0}");
    assert_problem(&r, 400, "max_items");
    call(&r, "POST", API "/sources", "{\"url\":\"http://x.test/\",\"kind\":\"page\",\"x\":1}");
    assert_problem(&r, 400, "x");
    call(&r, "POST", API "/sources", "[1,2]");
    assert_problem(&r, 400, NULL);
    call(&r, "POST", API "/sources", "{not json");
    assert_problem(&r, 400, NULL);
    call(&r, "GET", API "/sources/not-a-uuid", NULL);
    assert_problem(&r, 400, "id");
    call(&r, "GET", API "/sources/01890000-0000-7000-8000-000000000000", NULL);
    assert_problem(&r, 404, NULL);
    call(&r, "POST", API "/sources/01890000-0000-7000-8000-000000000000/run", NULL);
    assert_problem(&r, 404, NULL);
    call(&r, "GET", API "/items?source_id=nope", NULL);
    assert_problem(&r, 400, "source_id");
    call(&r, "GET", API "/items?limit=0", NULL);
    assert_problem(&r, 400, "limit");
    call(&r, "GET", API "/runs/01890000-0000-7000-8000-000000000000", NULL);
    assert_problem(&r, 404, NULL);

    /* create, read, list, pause, resume, delete */
    char id[64], path[160];
    create_source(id, "{\"url\":\"HTTP://Example.TEST/feed?utm_source=x\",\"kind\":\"feed\","
                      "\"name\":\"Example\",\"interval\":\"30m\",\"max_items\":5,"
                      "\"include\":[\"/news/\"],\"paused\":true}");
    snprintf(path, sizeof path, API "/sources/%s", id);
    call(&r, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "url"), "http://example.test/feed");
    assert_string_equal(jstr(r.json, "status"), "paused");
    assert_true(fabs(json_real_value(json_object_get(r.json, "interval_seconds")) - 1800) < 1e-6);
    assert_int_equal(jint(r.json, "max_items"), 5);
    ts_resp_free(&r);
    snprintf(path, sizeof path, API "/sources/%s/resume", id);
    call(&r, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "active");
    ts_resp_free(&r);
    snprintf(path, sizeof path, API "/sources/%s/pause", id);
    call(&r, "POST", path, NULL);
    assert_string_equal(jstr(r.json, "status"), "paused");
    ts_resp_free(&r);
    call(&r, "GET", API "/sources", NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_array_size(json_object_get(r.json, "sources")) >= 1);
    ts_resp_free(&r);
    snprintf(path, sizeof path, API "/sources/%s", id);
    call(&r, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    ts_resp_free(&r);
    call(&r, "GET", path, NULL);
    assert_problem(&r, 404, NULL);
}

static const char *contains(const char *hay, const char *needle)
{
    const char *p = strstr(hay, needle);
    if (!p) fail_msg("\"%s\" not in \"%s\"", needle, hay);
    return p;
}

static void test_sitemap_run(void **state)
{
    (void)state;
    if (!have_infra) skip();
    truncate_log();
    char src[64], run[64];
    site_source(src, "/sitemap.xml", "sitemap", ",\"paused\":true,\"exclude\":[\"excluded\"]");
    start_run(src, run);
    /* one run at a time per source */
    char path[160];
    snprintf(path, sizeof path, API "/sources/%s/run", src);
    resp r = {0};
    call(&r, "POST", path, NULL);
    assert_problem(&r, 409, NULL);

    json_t *j = wait_run(run, 90000);
    const char *errors = jstr(j, "error_summary");
    if (strcmp(jstr(j, "state"), "finished") != 0) fail_msg("run: %s", json_dumps(j, 0));
    /* alpha, beta (through the redirect), latin1; alpha-copy and alpha-amp are duplicates;
     * 429 (after retries), slow (timeout), big (size limit), missing (404) failed */
    assert_int_equal(jint(j, "new"), 3);
    assert_int_equal(jint(j, "unchanged"), 2);
    assert_int_equal(jint(j, "failed"), 4);
    contains(errors, "ratelimited.html: HTTP 429 after 3 attempts");
    contains(errors, "slow.html: timed out");
    contains(errors, "big.html: response larger than 65536 bytes");
    contains(errors, "missing.html: HTTP 404");
    contains(errors, "1 URLs disallowed by robots.txt");
    json_decref(j);

    json_t *items = list_items(src);
    assert_int_equal(json_array_size(items), 3);
    json_t *alpha = find_item(items, "/articles/alpha.html");
    json_t *beta = find_item(items, "/articles/beta.html");
    json_t *latin = find_item(items, "/latin1.html");
    assert_non_null(alpha);
    assert_non_null(beta);
    assert_non_null(latin);
    assert_string_equal(jstr(alpha, "title"), "New Ferry Terminal Opens on the Eastern Pier");
    assert_string_equal(jstr(alpha, "author"), "Ada Lovelace");
    assert_string_equal(jstr(alpha, "published"), "2024-05-02T08:00:00.000Z");
    assert_string_equal(jstr(alpha, "lang"), "en");
    contains(jstr(alpha, "text"), "The harbour authority opened a new ferry terminal");
    assert_null(strstr(jstr(alpha, "text"), "Copyright 2024 Test Site"));
    assert_null(strstr(jstr(alpha, "text"), "Popular"));
    assert_int_equal(strlen(jstr(alpha, "content_fingerprint")), 64);
    assert_string_equal(jstr(beta, "author"), "Grace Hopper");
    /* ISO-8859-1 (declared in a <meta>) converted to UTF-8 */
    assert_string_equal(jstr(latin, "title"), "Le caf\xc3\xa9 du coin");
    contains(jstr(latin, "text"), "cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
                                  "e");
    contains(jstr(latin, "text"), "Z\xc3\xbcrich");
    assert_string_equal(jstr(latin, "author"), "\xc3\x89mile Zola");

    /* what the server saw */
    hit *h;
    size_t n = read_log(&h);
    assert_int_equal(hits_for(h, n, "/private/secret.html", 0), 0);          /* robots.txt */
    assert_int_equal(hits_for(h, n, "/articles/excluded-draft.html", 0), 0); /* exclude */
    assert_int_equal(hits_for(h, n, "/robots.txt", 200), 1);
    assert_int_equal(hits_for(h, n, "/sitemaps/more.xml.gz", 200), 1);
    assert_int_equal(hits_for(h, n, "/old/beta.html", 301), 1);
    assert_int_equal(hits_for(h, n, "/articles/beta.html", 200), 1);
    assert_int_equal(hits_for(h, n, "/ratelimited.html", 429), 3); /* bounded retries */
    assert_int_equal(hits_for(h, n, "/slow.html", 0), 3);
    /* alpha once, though the sitemap lists it twice (once with utm_source) */
    assert_int_equal(hits_for(h, n, "/articles/alpha.html", 0), 1);
    assert_int_equal(hits_for(h, n, "/articles/alpha.html?utm_source=newsletter", 0), 0);
    double last429 = 0;
    for (size_t i = 0; i < n; i++) {
        contains(h[i].ua, "ContentEngineScraper");
        /* per-host politeness: one request at a time, starts >= Crawl-delay 0.3 s apart (less
         * 50 ms for the log's clock: nginx caches its time per event-loop turn; without the
         * delay the gaps here are a few milliseconds) */
        if (i > 0) {
            double gap = h[i].start - h[i - 1].start;
            if (gap < 0.25) fail_msg("%s started %.3f s after %s", h[i].path, gap, h[i - 1].path);
        }
        if (strcmp(h[i].path, "/ratelimited.html") == 0) {
            if (last429 > 0 && h[i].start - last429 < 0.95)
                fail_msg("Retry-After: 1 not honoured (%.3f s)", h[i].start - last429);
            last429 = h[i].start;
        }
    }
    free(h);

    /* events: the three items and the run, keyed by the source id */
    wait_recs(TOPIC_SCRAPER_ITEMS, src, NULL, NULL, 3);
    assert_int_equal(count_recs(TOPIC_SCRAPER_ITEMS, src, NULL, NULL), 3);
    wait_recs(TOPIC_SCRAPER_RUNS, src, run, "started", 1);
    wait_recs(TOPIC_SCRAPER_RUNS, src, run, "finished", 1);
    for (size_t i = 0; i < nrecs; i++) {
        if (strcmp(recs[i].key, src) || strcmp(recs[i].state, "finished")) continue;
        assert_int_equal(recs[i].new_items, 3);
        assert_int_equal(recs[i].failed, 4);
        assert_string_equal(recs[i].ce_type, "contentengine.scraper.run.finished.v1");
    }
    bool title_seen = false;
    for (size_t i = 0; i < nrecs; i++)
        if (strcmp(recs[i].key, src) == 0 &&
            strcmp(recs[i].title, "Record Number of Cranes Counted Over the Wetlands") == 0) {
            title_seen = true;
            assert_string_equal(recs[i].ce_type, "contentengine.scraper.item.created.v1");
        }
    assert_true(title_seen);

    /* a second run: every page answers 304 to its conditional GET; nothing new is stored */
    truncate_log();
    start_run(src, run);
    j = wait_run(run, 90000);
    assert_string_equal(jstr(j, "state"), "finished");
    assert_int_equal(jint(j, "new"), 0);
    assert_int_equal(jint(j, "unchanged"), 5);
    json_decref(j);
    n = read_log(&h);
    assert_int_equal(hits_for(h, n, "/articles/alpha.html", 304), 1);
    assert_int_equal(hits_for(h, n, "/latin1.html", 304), 1);
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].path, "/articles/alpha.html") == 0) /* nginx logs '"' as \x22 */
            assert_true(strncmp(h[i].inm, "\\x22", 4) == 0 || h[i].inm[0] == '"');
    assert_int_equal(hits_for(h, n, "/robots.txt", 0), 0); /* cached per host */
    free(h);
    json_decref(items);
    items = list_items(src);
    assert_int_equal(json_array_size(items), 3);
    json_decref(items);
    pump(1000);
    assert_int_equal(count_recs(TOPIC_SCRAPER_ITEMS, src, NULL, NULL), 3);
    delete_source(src);
}

static void test_feed_run(void **state)
{
    (void)state;
    if (!have_infra) skip();
    truncate_log();
    char src[64], run[64];
    site_source(src, "/feed.xml", "feed", ",\"paused\":true");
    start_run(src, run);
    json_t *j = wait_run(run, 60000);
    assert_string_equal(jstr(j, "state"), "finished");
    assert_int_equal(jint(j, "new"), 2);
    json_decref(j);
    json_t *items = list_items(src);
    json_t *delta = find_item(items, "/articles/delta.html");
    json_t *gamma = find_item(items, "/articles/gamma.html");
    assert_non_null(delta);
    assert_non_null(gamma);
    /* the entry with full content is stored from the feed; its page is never fetched */
    assert_string_equal(jstr(delta, "title"), "Lighthouse Lamp Restored");
    assert_string_equal(jstr(delta, "author"), "Rosalind Franklin");
    assert_string_equal(jstr(delta, "published"), "2024-06-04T07:15:00.000Z");
    contains(jstr(delta, "text"), "The lighthouse lamp, removed for repairs last winter");
    /* the summary-only entry: its page was fetched and extracted */
    contains(jstr(gamma, "text"), "The town orchestra will perform its first concert");
    assert_string_equal(jstr(gamma, "author"), "Clara Schumann");
    hit *h;
    size_t n = read_log(&h);
    assert_int_equal(hits_for(h, n, "/articles/delta.html", 0), 0);
    assert_int_equal(hits_for(h, n, "/articles/gamma.html", 200), 1);
    free(h);
    json_decref(items);
    wait_recs(TOPIC_SCRAPER_ITEMS, src, NULL, NULL, 2);
    delete_source(src);
}

/* Several items stored by one batch: each has its own event, with its own fields. */
static void test_batch_events(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char src[64], run[64];
    site_source(src, "/gen/feed.xml", "feed", ",\"paused\":true");
    start_run(src, run);
    json_t *j = wait_run(run, 60000);
    assert_string_equal(jstr(j, "state"), "finished");
    assert_int_equal(jint(j, "new"), GEN_FEED_ENTRIES);
    json_decref(j);
    wait_recs(TOPIC_SCRAPER_ITEMS, src, NULL, NULL, GEN_FEED_ENTRIES);
    json_t *items = list_items(src);
    assert_int_equal(json_array_size(items), GEN_FEED_ENTRIES);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *id = jstr(it, "id");
        assert_int_equal(count_recs(TOPIC_SCRAPER_ITEMS, src, id, NULL), 1);
        for (size_t k = 0; k < nrecs; k++)
            if (strcmp(recs[k].id, id) == 0) {
                assert_string_equal(recs[k].url, jstr(it, "url"));
                assert_string_equal(recs[k].title, jstr(it, "title"));
            }
    }
    json_decref(items);
    delete_source(src);
}

static void test_private_addresses_refused(void **state)
{
    (void)state;
    if (!have_infra) skip();
    truncate_log();
    char src[64], run[64];
    /* a private address, though the scraper allowlists loopback */
    create_source(src, "{\"url\":\"http://10.0.0.1/feed.xml\",\"kind\":\"feed\",\"paused\":true}");
    start_run(src, run);
    json_t *j = wait_run(run, 60000);
    assert_string_equal(jstr(j, "state"), "failed");
    contains(jstr(j, "error_summary"), "refused http://10.0.0.1/feed.xml: it resolves to "
                                       "10.0.0.1, a private address");
    json_decref(j);
    wait_recs(TOPIC_SCRAPER_RUNS, src, run, "failed", 1);
    delete_source(src);
    /* a loopback page that redirects to the cloud metadata address */
    site_source(src, "/to-metadata", "page", ",\"paused\":true");
    start_run(src, run);
    j = wait_run(run, 60000);
    assert_string_equal(jstr(j, "state"), "failed");
    contains(jstr(j, "error_summary"), "169.254.169.254, a link-local address");
    json_decref(j);
    hit *h;
    size_t n = read_log(&h);
    assert_int_equal(hits_for(h, n, "/to-metadata", 302), 1);
    free(h);
    json_t *items = list_items(src);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    delete_source(src);
}

static int64_t count_items(const char *src)
{
    json_t *items = list_items(src);
    int64_t n = (int64_t)json_array_size(items);
    json_decref(items);
    return n;
}

static void test_kill_and_resume(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char src[64], path[160];
    /* paused: no scheduled runs (another scraper sharing the database, e.g. `make up`, would
     * pick up an active one); the run is started by hand and resumed after the crash */
    char first_run[64];
    site_source(src, "/gen/sitemap.xml", "sitemap", ",\"paused\":true");
    start_run(src, first_run);
    int64_t deadline = core_mono_ns() + 60 * 1000000000LL;
    while (count_items(src) < 5 && core_mono_ns() < deadline)
        pump(100);
    int64_t before = count_items(src);
    assert_true(before >= 5 && before < GEN_PAGES);
    kill(svc.pid, SIGKILL); /* in the middle of the run */
    assert_int_equal(ts_wait(&svc, 10000), 128 + SIGKILL);
    svc_running = false;
    assert_true(start_service());
    snprintf(path, sizeof path, API "/sources/%s/runs", src);
    json_t *runs = NULL;
    deadline = core_mono_ns() + 90 * 1000000000LL;
    for (;;) {
        resp r = {0};
        call(&r, "GET", path, NULL);
        json_t *list = json_object_get(r.json, "runs");
        if (json_array_size(list) == 2 &&
            strcmp(jstr(json_array_get(list, 0), "state"), "finished") == 0) {
            runs = json_incref(list);
            ts_resp_free(&r);
            break;
        }
        ts_resp_free(&r);
        if (core_mono_ns() > deadline) fail_msg("the source's run was not resumed");
        pump(300);
    }
    json_t *first = json_array_get(runs, 1), *second = json_array_get(runs, 0);
    assert_string_equal(jstr(first, "id"), first_run);
    assert_string_equal(jstr(first, "state"), "interrupted");
    contains(jstr(first, "error_summary"), "interrupted");
    assert_string_equal(jstr(second, "trigger"), "resume");
    assert_string_equal(jstr(second, "resumed_from"), jstr(first, "id"));
    /* every page stored exactly once */
    json_t *items = list_items(src);
    assert_int_equal(json_array_size(items), GEN_PAGES);
    size_t i, k;
    json_t *a, *b;
    json_array_foreach(items, i, a)
    {
        json_array_foreach(items, k, b)
        {
            if (k > i) assert_string_not_equal(jstr(a, "url"), jstr(b, "url"));
        }
    }
    json_decref(items);
    wait_recs(TOPIC_SCRAPER_RUNS, src, jstr(first, "id"), "interrupted", 1);
    wait_recs(TOPIC_SCRAPER_RUNS, src, jstr(second, "id"), "finished", 1);
    /* each item announced: as many distinct item ids as pages */
    wait_recs(TOPIC_SCRAPER_ITEMS, src, NULL, NULL, GEN_PAGES);
    size_t distinct = 0;
    for (size_t x = 0; x < nrecs; x++) {
        if (strcmp(recs[x].topic, TOPIC_SCRAPER_ITEMS) || strcmp(recs[x].key, src)) continue;
        bool seen = false;
        for (size_t y = 0; y < x; y++)
            if (strcmp(recs[y].id, recs[x].id) == 0) seen = true;
        if (!seen) distinct++;
    }
    assert_int_equal(distinct, GEN_PAGES);
    json_decref(runs);
    delete_source(src);
}

static void test_sigterm_drains(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char src[64], run[64];
    site_source(src, "/sitemap.xml", "sitemap", ",\"paused\":true");
    start_run(src, run);
    pump(1500);
    kill(svc.pid, SIGTERM);
    int status = ts_wait_or_kill(&svc, 30000);
    svc_running = false;
    assert_int_equal(status, 0);
    assert_true(start_service());
    json_t *j = wait_run(run, 10000);
    assert_string_equal(jstr(j, "state"), "interrupted");
    json_decref(j);
    delete_source(src); /* its resumed run stops */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_validation),
        cmocka_unit_test(test_sitemap_run),
        cmocka_unit_test(test_feed_run),
        cmocka_unit_test(test_batch_events),
        cmocka_unit_test(test_private_addresses_refused),
        cmocka_unit_test(test_kill_and_resume),
        cmocka_unit_test(test_sigterm_drains),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
