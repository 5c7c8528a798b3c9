#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"

static void ts_tick(uv_timer_t *t)
{
    (void)t; /* only wakes uv_run so that the condition is checked again */
}

bool ts_run_until(uv_loop_t *loop, bool (*cond)(void *data), void *data, int64_t timeout_ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, ts_tick, 5, 5);
    int64_t deadline = core_mono_ns() + timeout_ms * 1000000;
    bool ok = cond(data);
    while (!ok && core_mono_ns() < deadline) {
        uv_run(loop, UV_RUN_ONCE);
        ok = cond(data);
    }
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool ts_never(void *data)
{
    (void)data;
    return false;
}

void ts_run_for(uv_loop_t *loop, int64_t ms)
{
    ts_run_until(loop, ts_never, NULL, ms);
}

void ts_set_flag(void *data)
{
    *(bool *)data = true;
}

bool ts_flag_set(void *data)
{
    return *(bool *)data;
}

size_t ts_curl_collect(char *ptr, size_t size, size_t nmemb, void *buf)
{
    core_buf_append(buf, ptr, size * nmemb);
    return size * nmemb;
}

static void ts_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void ts_loop_close_all(uv_loop_t *loop)
{
    uv_walk(loop, ts_close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

const char *ts_env(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

void ts_unique_name(char *out, size_t size, const char *prefix)
{
    uint8_t r[4];
    core_random_bytes(r, sizeof r);
    snprintf(out, size, "%s-%d-%02x%02x%02x%02x", prefix, (int)getpid(), r[0], r[1], r[2], r[3]);
}

/* ------------------------------------------------------------ child processes */

/* This test binary's path with its last `levels` components removed; the binary lives in
 * build/<variant>/tests/<dir>/<test>. */
static void ts_exe_dir_up(char *out, size_t size, int levels)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    for (int i = 0; i < levels; i++) {
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
    }
    snprintf(out, size, "%s", exe);
}

void ts_program_path(char *out, size_t size, const char *name)
{
    char tests[4096]; /* build/<variant>/tests */
    ts_exe_dir_up(tests, sizeof tests, 2);
    snprintf(out, size, "%s/programs/%s", tests, name);
}

void ts_bin_path(char *out, size_t size, const char *name)
{
    char build[4096]; /* build/<variant> */
    ts_exe_dir_up(build, sizeof build, 3);
    snprintf(out, size, "%s/bin/%s", build, name);
}

void ts_repo_path(char *out, size_t size, const char *rel)
{
    char root[4096]; /* two levels above build/<variant> */
    ts_exe_dir_up(root, sizeof root, 5);
    snprintf(out, size, "%s/%s", root, rel);
}

static bool ts_spawn_impl(ts_child *c, const char *path, const char *const *argv,
                          const char *const *set_env, const char *log_path)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, logfd = -1;
    if (log_path) {
        logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0) return false;
    } else {
        if (pipe(out) != 0) return false;
        if (pipe(err) != 0) {
            close(out[0]);
            close(out[1]);
            return false;
        }
    }
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        dup2(log_path ? logfd : out[1], 1);
        dup2(log_path ? logfd : err[1], 2);
        if (!log_path) {
            close(out[0]);
            close(err[0]);
        }
        for (size_t i = 0; set_env && set_env[i]; i++) {
            const char *eq = strchr(set_env[i], '=');
            if (!eq) continue;
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(eq - set_env[i]), set_env[i]);
            if (eq[1] == '\0')
                unsetenv(name);
            else
                setenv(name, eq + 1, 1);
        }
        const char *const default_argv[] = {path, NULL};
        execv(path, (char *const *)(argv ? argv : default_argv));
        _exit(127);
    }
    c->pid = pid;
    if (log_path) {
        close(logfd);
        c->out_fd = c->err_fd = -1;
        return true;
    }
    close(out[1]);
    close(err[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    c->out_fd = out[0];
    c->err_fd = err[0];
    return true;
}

bool ts_spawn(ts_child *c, const char *path, const char *const *argv, const char *const *set_env)
{
    return ts_spawn_impl(c, path, argv, set_env, NULL);
}

bool ts_spawn_logged(ts_child *c, const char *path, const char *const *argv,
                     const char *const *set_env, const char *log_path)
{
    return ts_spawn_impl(c, path, argv, set_env, log_path);
}

int ts_wait(ts_child *c, int64_t timeout_ms)
{
    int64_t deadline = core_mono_ns() + timeout_ms * 1000000;
    for (;;) {
        int status = 0;
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
            return -1;
        }
        if (r < 0 && errno != EINTR) return -1;
        if (core_mono_ns() > deadline) return -1;
        usleep(20000);
    }
}

int ts_wait_or_kill(ts_child *c, int64_t timeout_ms)
{
    int status = ts_wait(c, timeout_ms);
    if (status == -1) {
        kill(c->pid, SIGKILL);
        ts_wait(c, 5000);
    }
    return status;
}

void ts_close_pipes(ts_child *c)
{
    if (c->out_fd >= 0) close(c->out_fd);
    if (c->err_fd >= 0) close(c->err_fd);
    c->out_fd = c->err_fd = -1;
}

void ts_drain_fd(int fd, char *out, size_t size)
{
    size_t len = strlen(out);
    while (len + 1 < size) {
        ssize_t n = read(fd, out + len, size - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
    }
    out[len] = '\0';
}

int ts_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}
