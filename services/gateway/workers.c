/*
 * The pre-fork master (see workers.h).
 */
#include "workers.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core.h"

typedef struct master {
    uv_loop_t *loop;
    pid_t *pids;
    int n, alive;
    bool stopping;
    int status;
    uv_signal_t sigchld;
    core_signals *signals;
} master;

static void master_kill_all(master *m, int sig)
{
    for (int i = 0; i < m->n; i++)
        if (m->pids[i] > 0) kill(m->pids[i], sig);
}

static void master_on_signal(int signum, void *data)
{
    master *m = data;
    core_log_info("stopping workers", CORE_F_INT("signal", signum),
                  CORE_F_INT("workers", m->alive));
    m->stopping = true;
    master_kill_all(m, SIGTERM);
}

static void master_on_sigchld(uv_signal_t *h, int signum)
{
    (void)signum;
    master *m = h->data;
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i < m->n; i++) {
            if (m->pids[i] != pid) continue;
            m->pids[i] = 0;
            m->alive--;
            int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            if (code != 0 || !m->stopping) {
                core_log_error("worker exited", CORE_F_INT("pid", pid), CORE_F_INT("status", code),
                               CORE_F_BOOL("expected", m->stopping));
                m->status = 1;
                if (!m->stopping) {
                    m->stopping = true;
                    master_kill_all(m, SIGTERM);
                }
            }
        }
    }
    if (m->alive == 0) {
        uv_signal_stop(&m->sigchld);
        uv_close((uv_handle_t *)&m->sigchld, NULL);
        core_signals_close(m->signals);
        m->signals = NULL;
    }
}

int gw_workers_run(int n, int (*worker)(void *data), void *data)
{
    master m = {.n = n};
    m.pids = core_xcalloc((size_t)n, sizeof *m.pids);
    /* SIGCHLD is blocked until the loop watches it, so no exit goes unnoticed */
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    pid_t parent = getpid();
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            core_log_error("fork failed", CORE_F_INT("errno", errno));
            m.stopping = true;
            master_kill_all(&m, SIGTERM);
            m.status = 1;
            break;
        }
        if (pid == 0) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(1);
            free(m.pids);
            exit(worker(data));
        }
        m.pids[i] = pid;
        m.alive++;
    }
    m.loop = uv_default_loop();
    uv_signal_init(m.loop, &m.sigchld);
    m.sigchld.data = &m;
    uv_signal_start(&m.sigchld, master_on_sigchld, SIGCHLD);
    sigprocmask(SIG_SETMASK, &old, NULL);
    m.signals = core_signals_watch(m.loop, master_on_signal, &m);
    core_log_info("workers started", CORE_F_INT("workers", m.alive));
    if (m.alive > 0) {
        uv_run(m.loop, UV_RUN_DEFAULT);
    } else {
        uv_close((uv_handle_t *)&m.sigchld, NULL);
    }
    if (m.signals) core_signals_close(m.signals);
    uv_run(m.loop, UV_RUN_DEFAULT);
    uv_loop_close(m.loop);
    free(m.pids);
    return m.status;
}
