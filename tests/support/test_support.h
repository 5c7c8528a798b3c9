/*
 * Helpers shared by every test program (unit and integration). Linked into each test binary.
 */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

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

#endif
