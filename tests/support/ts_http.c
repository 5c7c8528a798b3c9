/* HTTP and Server-Sent Events clients for tests that talk to real services. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_support.h"

int ts_connect_port(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void ts_resp_free(ts_resp *r)
{
    core_buf_free(&r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

void ts_http_call(ts_resp *out, int port, const char *method, const char *path, const void *body,
                  size_t len, const char *ctype, const char *extra_header)
{
    ts_resp_free(out);
    char url[4096], ct[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/json");
    CURL *h = curl_easy_init();
    struct curl_slist *hs = curl_slist_append(NULL, ct);
    hs = curl_slist_append(hs, "Expect:");
    if (extra_header) hs = curl_slist_append(hs, extra_header);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ts_curl_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
        char *t = NULL;
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &t);
        if (t) snprintf(out->ctype, sizeof out->ctype, "%s", t);
    }
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    if (out->body.len) out->json = json_loadb(out->body.data, out->body.len, 0, NULL);
}

bool ts_sse_fill(ts_sse *s, int64_t timeout_ms)
{
    if (s->eof) return false;
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (poll(&p, 1, (int)timeout_ms) <= 0) return false;
    char tmp[65536];
    ssize_t n = recv(s->fd, tmp, sizeof tmp, 0);
    if (n <= 0) {
        s->eof = true;
        return false;
    }
    core_buf_append(&s->buf, tmp, (size_t)n);
    return true;
}

int ts_http_get_raw(int port, const char *path, core_buf *out)
{
    core_buf_reset(out);
    int fd = ts_connect_port(port, 0);
    if (fd < 0) return 0;
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: t\r\n\r\n", path);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return 0;
    }
    ts_sse s = {.fd = fd};
    while (ts_sse_fill(&s, 10000)) {
    }
    close(fd);
    if (s.buf.len) core_buf_append(out, s.buf.data, s.buf.len);
    core_buf_free(&s.buf);
    return out->len > 12 ? (int)strtol(out->data + 9, NULL, 10) : 0;
}

bool ts_wait_http_ok(int port, const char *path, int64_t timeout_ms)
{
    core_buf body = {0};
    int64_t deadline = core_mono_ns() + timeout_ms * 1000000;
    bool ok = false;
    while (!ok && core_mono_ns() < deadline) {
        ok = ts_http_get_raw(port, path, &body) == 200;
        if (!ok) usleep(100000);
    }
    core_buf_free(&body);
    return ok;
}

bool ts_sse_open_at(ts_sse *s, int port, const char *path, const char *last_id, int rcvbuf)
{
    *s = (ts_sse){.fd = ts_connect_port(port, rcvbuf)};
    if (s->fd < 0) return false;
    char req[2048];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: t\r\n%s%s%s\r\n", path,
                 last_id ? "Last-Event-ID: " : "", last_id ? last_id : "", last_id ? "\r\n" : "");
    return send(s->fd, req, (size_t)n, MSG_NOSIGNAL) == n;
}

bool ts_sse_open(ts_sse *s, int port, const char *path, const char *last_id)
{
    if (!ts_sse_open_at(s, port, path, last_id, 0)) return false;
    int64_t deadline = core_mono_ns() + 10000 * 1000000LL;
    while (!(s->buf.data && strstr(s->buf.data, "\r\n\r\n")) && core_mono_ns() < deadline &&
           !s->eof)
        ts_sse_fill(s, 100);
    char *end = s->buf.data ? strstr(s->buf.data, "\r\n\r\n") : NULL;
    if (!end) return false;
    s->status = (int)strtol(s->buf.data + 9, NULL, 10);
    s->pos = (size_t)(end + 4 - s->buf.data);
    return s->status == 200 && strstr(s->buf.data, "text/event-stream") != NULL;
}

void ts_sse_close(ts_sse *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    core_buf_free(&s->buf);
}

bool ts_sse_next(ts_sse *s, ts_sse_event *ev, int64_t timeout_ms)
{
    int64_t deadline = core_mono_ns() + timeout_ms * 1000000;
    for (;;) {
        char *start = s->buf.data ? s->buf.data + s->pos : NULL;
        char *end = start ? strstr(start, "\n\n") : NULL;
        if (end) {
            s->pos = (size_t)(end + 2 - s->buf.data);
            *ev = (ts_sse_event){0};
            bool any = false;
            for (char *line = start; line < end + 1;) {
                char *nl = memchr(line, '\n', (size_t)(end + 1 - line));
                size_t len = (size_t)(nl - line);
                if (len >= 4 && memcmp(line, ": hb", 4) == 0) s->heartbeats++;
                if (len > 4 && memcmp(line, "id: ", 4) == 0)
                    snprintf(ev->id, sizeof ev->id, "%.*s", (int)(len - 4), line + 4);
                if (len > 7 && memcmp(line, "event: ", 7) == 0) {
                    snprintf(ev->event, sizeof ev->event, "%.*s", (int)(len - 7), line + 7);
                    any = true;
                }
                if (len > 6 && memcmp(line, "data: ", 6) == 0)
                    snprintf(ev->data, sizeof ev->data, "%.*s", (int)(len - 6), line + 6);
                line = nl + 1;
            }
            if (any) return true;
            continue;
        }
        int64_t left = (deadline - core_mono_ns()) / 1000000;
        if (left <= 0) return false;
        if (!ts_sse_fill(s, left) && s->eof) return false;
    }
}

bool ts_sse_next_matching(ts_sse *s, const char *needle, ts_sse_event *ev, int64_t timeout_ms)
{
    int64_t deadline = core_mono_ns() + timeout_ms * 1000000;
    for (;;) {
        int64_t left = (deadline - core_mono_ns()) / 1000000;
        if (left <= 0 || !ts_sse_next(s, ev, left)) return false;
        if (strstr(ev->data, needle)) return true;
    }
}

bool ts_sse_next_for(ts_sse *s, const char *item, ts_sse_event *ev, int64_t timeout_ms)
{
    char needle[128];
    snprintf(needle, sizeof needle, "\"item_id\":\"%s\"", item);
    return ts_sse_next_matching(s, needle, ev, timeout_ms);
}
