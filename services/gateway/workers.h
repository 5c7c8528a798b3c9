/*
 * GATEWAY_WORKERS=N (N > 1): nginx's process model. A small master forks N workers, each a
 * complete gateway with its own loop listening on the same port with SO_REUSEPORT (the kernel
 * spreads connections). The master forwards SIGTERM/SIGINT to the workers and exits 0 once all
 * of them drained and exited 0. A worker that dies on its own takes the others down (exit 1):
 * restarting is the supervisor's job (docker, Kubernetes). Workers die with the master
 * (PR_SET_PDEATHSIG).
 */
#ifndef GATEWAY_WORKERS_H
#define GATEWAY_WORKERS_H

/* Runs worker(data) in n child processes and supervises them; returns the exit status. */
int gw_workers_run(int n, int (*worker)(void *data), void *data);

#endif
