/*
 * Helpers for libs/http's tests: the server runs on a uv loop in the test's main thread; a real
 * client (libcurl easy, or a raw socket for malformed input) runs in another thread. cmocka's
 * assertions stay in the main thread: client threads only record what they saw.
 */
#ifndef HTTP_TEST_UTIL_H
#define HTTP_TEST_UTIL_H

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"
#include "http.h"
#include "test_support.h"

#define TU_UNUSED __attribute__((unused))

/* ---------------------------------------------------------------- client thread */

typedef struct tu_job {
    pthread_t thread;
    void (*fn)(void *arg);
    void *arg;
    atomic_int done;
} tu_job;

static void *tu_thread_main(void *p)
{
    tu_job *j = p;
    j->fn(j->arg);
    atomic_store(&j->done, 1);
    return NULL;
}

static TU_UNUSED void tu_start(tu_job *j, void (*fn)(void *), void *arg)
{
    j->fn = fn;
    j->arg = arg;
    atomic_store(&j->done, 0);
    if (pthread_create(&j->thread, NULL, tu_thread_main, j) != 0) abort();
}

static bool tu_job_done(void *p)
{
    return atomic_load(&((tu_job *)p)->done) != 0;
}

/* Runs the loop until the job finished (at most timeout_ms), then joins it. */
static TU_UNUSED bool tu_finish(uv_loop_t *loop, tu_job *j, int64_t timeout_ms)
{
    bool ok = ts_run_until(loop, tu_job_done, j, timeout_ms);
    pthread_join(j->thread, NULL);
    return ok;
}

static TU_UNUSED bool tu_run(uv_loop_t *loop, void (*fn)(void *), void *arg)
{
    tu_job j;
    tu_start(&j, fn, arg);
    return tu_finish(loop, &j, 30000); /* above any client timeout */
}

/* ---------------------------------------------------------------- libcurl client */

typedef struct tu_http {
    /* in */
    const char *method; /* NULL: GET */
    char url[1024];
    const char *body;
    size_t body_len;
    const char *headers[8];
    long timeout_ms; /* 0: 5000 */
    bool http2_prior_knowledge;
    /* out */
    CURLcode rc;
    long status;
    core_buf head;
    core_buf resp;
} tu_http;

static size_t tu_curl_body(char *p, size_t size, size_t n, void *ud)
{
    core_buf_append(ud, p, size * n);
    return size * n;
}

static size_t tu_curl_head(char *p, size_t size, size_t n, void *ud)
{
    core_buf_append(ud, p, size * n);
    return size * n;
}

static TU_UNUSED void tu_http_perform(void *arg)
{
    tu_http *h = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    for (size_t i = 0; i < 8 && h->headers[i]; i++)
        hl = curl_slist_append(hl, h->headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, h->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms ? h->timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tu_curl_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &h->resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, tu_curl_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h->head);
    if (h->http2_prior_knowledge)
        curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    else
        curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    if (h->method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, h->method);
    if (h->method && strcmp(h->method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (h->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, h->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)h->body_len);
    }
    if (hl) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    h->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &h->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static TU_UNUSED void tu_http_free(tu_http *h)
{
    core_buf_free(&h->head);
    core_buf_free(&h->resp);
}

/* Value of the last response header called name (case-insensitive) copied into out. */
static TU_UNUSED bool tu_header(const core_buf *head, const char *name, char *out, size_t size)
{
    bool found = false;
    if (!head->data) return false;
    size_t nlen = strlen(name);
    const char *p = head->data, *end = head->data + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < eol && *v == ' ')
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            snprintf(out, size, "%.*s", (int)(ve - v), v);
            found = true;
        }
        p = eol + 1;
    }
    return found;
}

/* ---------------------------------------------------------------- raw sockets */

static TU_UNUSED int tu_connect(uint16_t port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static TU_UNUSED bool tu_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads until EOF, an error, until stop (when non-NULL) appears, or timeout_ms of silence.
 * Returns true on EOF. */
static TU_UNUSED bool tu_read(int fd, core_buf *out, int timeout_ms, const char *stop)
{
    char buf[8192];
    for (;;) {
        if (stop && out->data && memmem(out->data, out->len, stop, strlen(stop))) return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr <= 0) return false;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0) return true;
        if (n < 0) {
            if (errno == EINTR) continue;
            return true; /* reset: the peer is gone too */
        }
        core_buf_append(out, buf, (size_t)n);
    }
}

/* ---------------------------------------------------------------- server lifecycle */

static bool tu_flag(void *p)
{
    return *(bool *)p;
}

static void tu_on_closed(void *data)
{
    *(bool *)data = true;
}

/* Closes the server, runs the loop until it is freed, then closes the loop. */
static TU_UNUSED bool tu_server_close(uv_loop_t *loop, http_server *srv)
{
    bool closed = false;
    http_server_close(srv, tu_on_closed, &closed);
    bool ok = ts_run_until(loop, tu_flag, &closed, 20000);
    return ok;
}

static TU_UNUSED void tu_loop_done(uv_loop_t *loop)
{
    ts_loop_close_all(loop);
    uv_loop_close(loop);
}

#endif
