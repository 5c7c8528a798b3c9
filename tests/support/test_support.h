/*
 * Helpers shared by every test program (unit and integration). Linked into each test binary.
 */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "core.h"

/* Runs the loop until cond(data) is true or timeout_ms passes; returns cond's final value.
 * The loop keeps running its handles; a timer inside wakes it to re-check the condition. */
bool ts_run_until(uv_loop_t *loop, bool (*cond)(void *data), void *data, int64_t timeout_ms);

/* Runs the loop for a fixed time (for "nothing else happens" checks). */
void ts_run_for(uv_loop_t *loop, int64_t ms);

/* For "closed" callbacks that take only a data pointer: ts_set_flag sets the bool at data,
 * ts_flag_set is the matching condition for ts_run_until. */
void ts_set_flag(void *data);
bool ts_flag_set(void *data);

/* A libcurl CURLOPT_WRITEFUNCTION that appends what arrives to the core_buf given as
 * CURLOPT_WRITEDATA (declared without curl's types so that this header needs no curl.h). */
size_t ts_curl_collect(char *ptr, size_t size, size_t nmemb, void *buf);

/* Closes every handle still open on the loop and runs it until they are closed, so that
 * AddressSanitizer sees no leak from a test that failed half way. */
void ts_loop_close_all(uv_loop_t *loop);

/* Value of an environment variable the integration tests need (KAFKA_BROKERS,
 * PLATFORM_TEST_DATABASE_URL, ...); NULL when unset or empty. */
const char *ts_env(const char *name);

/* A unique name for this test run: "<prefix>-<pid>-<random hex>", for topics and groups. */
void ts_unique_name(char *out, size_t size, const char *prefix);

/* ------------------------------------------------------------ child processes */

/* Path of a program built beside this test: build/<variant>/tests/programs/<name>. */
void ts_program_path(char *out, size_t size, const char *name);
/* Path of a service built beside this test: build/<variant>/bin/<name>. */
void ts_bin_path(char *out, size_t size, const char *name);
/* Path of rel inside the repository (the directory holding build/<variant>), for files such
 * as a service's migrations. */
void ts_repo_path(char *out, size_t size, const char *rel);

typedef struct ts_child {
    int pid;
    int out_fd; /* the child's stdout, read end (non-blocking); -1 when not captured */
    int err_fd; /* the child's stderr, read end (non-blocking) */
} ts_child;

/* Starts path with the current environment plus the "NAME=value" entries of set_env
 * (NULL-terminated; an entry "NAME=" without value unsets NAME). Returns false on failure. */
bool ts_spawn(ts_child *c, const char *path, const char *const *argv, const char *const *set_env);
/* Same, with the child's stdout and stderr appended to the file log_path (no pipes to drain:
 * for long-running services whose logs the test does not read). */
bool ts_spawn_logged(ts_child *c, const char *path, const char *const *argv,
                     const char *const *set_env, const char *log_path);
/* Waits up to timeout_ms for the child to exit; returns its exit status (128+signal when
 * killed), or -1 on timeout (the child is then still running). */
int ts_wait(ts_child *c, int64_t timeout_ms);
/* ts_wait, and a child still running after timeout_ms is then killed (SIGKILL) and reaped, so
 * that no test leaves a process behind; returns what ts_wait returned (-1: it had to be killed). */
int ts_wait_or_kill(ts_child *c, int64_t timeout_ms);
/* Closes the read ends of the child's stdout and stderr (after the last ts_drain_fd). */
void ts_close_pipes(ts_child *c);
/* Reads what is available from fd into out (appending). */
void ts_drain_fd(int fd, char *out, size_t size);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int ts_free_port(void);

/* ------------------------------------------------------------ HTTP and SSE clients */

/* A blocking TCP connection to 127.0.0.1:port (rcvbuf > 0 shrinks SO_RCVBUF, for slow-reader
 * tests); -1 when refused. */
int ts_connect_port(int port, int rcvbuf);

typedef struct ts_resp {
    long status; /* 0 when no response arrived */
    core_buf body;
    char ctype[128];
    json_t *json; /* the body parsed, when it is JSON */
} ts_resp;
void ts_resp_free(ts_resp *r);

/* One request to http://127.0.0.1:port<path> with libcurl (15 s timeout). body may be NULL;
 * ctype NULL means application/json; extra_header ("If-Match: 3") may be NULL. */
void ts_http_call(ts_resp *out, int port, const char *method, const char *path, const void *body,
                  size_t len, const char *ctype, const char *extra_header);
/* GET over a raw HTTP/1.0 connection; the whole answer (head and body) in out; the status, or 0
 * when the connection failed. */
int ts_http_get_raw(int port, const char *path, core_buf *out);
/* Polls GET path until it answers 200 or timeout_ms passes. */
bool ts_wait_http_ok(int port, const char *path, int64_t timeout_ms);

/* A Server-Sent Events client over HTTP/1.0 (the body is the bare event stream). */
typedef struct ts_sse {
    int fd;
    core_buf buf;
    size_t pos; /* start of the unparsed body */
    bool eof;
    int status;
    int heartbeats;
} ts_sse;
typedef struct ts_sse_event {
    char id[1024];
    char event[64];
    char data[8192];
} ts_sse_event;

/* Sends GET <path> (with Last-Event-ID when last_id is not NULL); false when refused. */
bool ts_sse_open_at(ts_sse *s, int port, const char *path, const char *last_id, int rcvbuf);
/* ts_sse_open_at, then waits for the response head: false unless it is 200 text/event-stream
 * within 10 s (s->status says what came). */
bool ts_sse_open(ts_sse *s, int port, const char *path, const char *last_id);
/* Reads what arrives within timeout_ms (until something does); false at EOF or timeout. */
bool ts_sse_fill(ts_sse *s, int64_t timeout_ms);
/* Next event with an event: line (comments count as heartbeats; retry: is ignored). */
bool ts_sse_next(ts_sse *s, ts_sse_event *ev, int64_t timeout_ms);
/* Next event whose data contains needle, skipping others. */
bool ts_sse_next_matching(ts_sse *s, const char *needle, ts_sse_event *ev, int64_t timeout_ms);
/* Next event whose data names item ("item_id":"<item>"), skipping others. */
bool ts_sse_next_for(ts_sse *s, const char *item, ts_sse_event *ev, int64_t timeout_ms);
void ts_sse_close(ts_sse *s);

#endif
