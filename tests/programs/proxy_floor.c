/*
 * proxy_floor PORT UPSTREAM_PORT: the cheapest possible HTTP/1.1 reverse proxy, for
 * scripts/bench-gateway.sh only. It measures the floor of any proxy that sends each client
 * request on its own upstream exchange: one thread, raw epoll, every client connection paired
 * with its own keep-alive connection to the upstream (opened at accept), and bytes forwarded
 * verbatim both ways: one read and one write per direction, no parsing, no headers added, no
 * log, no timers, no metrics. Nothing a real gateway must do is done here, so no real gateway
 * can be cheaper per request on the same machine. Not a server: it trusts both ends, and a
 * short write (a peer not reading) closes the pair.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct floor_end {
    int fd; /* -1 once closed */
    struct floor_end *peer;
    struct floor_end *next_closed;
} floor_end;

/* Pairs closed during one epoll batch: freed after it, since a later event of the same batch
 * may name the peer. */
static floor_end *floor_closed;

static int floor_port(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!end || *end || v <= 0 || v > 65535) {
        fprintf(stderr, "proxy_floor: bad port '%s'\n", s);
        exit(2);
    }
    return (int)v;
}

static struct sockaddr_in floor_loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void floor_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void floor_watch(int ep, floor_end *e)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev) != 0) perror("proxy_floor: epoll_ctl");
}

static void floor_close_pair(floor_end *e)
{
    close(e->peer->fd);
    close(e->fd);
    e->fd = e->peer->fd = -1;
    e->next_closed = floor_closed;
    floor_closed = e;
}

static void floor_free_closed(void)
{
    while (floor_closed) {
        floor_end *e = floor_closed;
        floor_closed = e->next_closed;
        free(e->peer);
        free(e);
    }
}

static void floor_accept(int ep, int ls, int up_port)
{
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) return;
        int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = floor_loopback(up_port);
        /* connected while blocking, then non-blocking: the pair is whole before any byte */
        if (u < 0 || connect(u, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("proxy_floor: upstream connect");
            if (u >= 0) close(u);
            close(c);
            continue;
        }
        if (fcntl(u, F_SETFL, O_NONBLOCK) != 0) perror("proxy_floor: fcntl");
        floor_nodelay(c);
        floor_nodelay(u);
        floor_end *ce = calloc(1, sizeof *ce), *ue = calloc(1, sizeof *ue);
        if (!ce || !ue) abort();
        ce->fd = c;
        ue->fd = u;
        ce->peer = ue;
        ue->peer = ce;
        floor_watch(ep, ce);
        floor_watch(ep, ue);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: proxy_floor PORT UPSTREAM_PORT\n");
        return 2;
    }
    int port = floor_port(argv[1]), up_port = floor_port(argv[2]);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = floor_loopback(port);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1024) != 0) {
        perror("proxy_floor: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev) != 0) {
        perror("proxy_floor: epoll");
        return 1;
    }
    static char buf[65536];
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR) {
            perror("proxy_floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            floor_end *e = evs[i].data.ptr;
            if (e && e->fd < 0) continue;
            if (!e) {
                floor_accept(ep, ls, up_port);
                continue;
            }
            ssize_t r = read(e->fd, buf, sizeof buf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0 || write(e->peer->fd, buf, (size_t)r) != r) floor_close_pair(e);
        }
        floor_free_closed();
    }
}
