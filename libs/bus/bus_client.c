/* A librdkafka handle on the libuv loop: eventfd wake-ups, a safety timer, a broker probe on the
 * thread pool, and the shutdown sequence that keeps every blocking call off the loop. */
#include "bus_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* eventfd(2) only accepts 8-byte writes: this is the payload librdkafka writes, too. */
static const uint64_t bus_one = 1;

/* Probe the brokers every this many ms while not connected. */
#define BUS_PROBE_EVERY_MS 2000

static void client_probe_start(bus_client *cl);
static void client_final_start(bus_client *cl);

static void client_poll_cb(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    bus_client *cl = h->data;
    uint64_t v;
    /* Reset the counter; EAGAIN (already read) is fine. */
    while (read(cl->efd, &v, sizeof v) < 0 && errno == EINTR) {
    }
    if (!cl->shutting_down) cl->drain(cl);
}

static void client_tick_cb(uv_timer_t *t)
{
    bus_client *cl = t->data;
    if (cl->shutting_down) return;
    cl->drain(cl);
    cl->ticks++;
    int64_t every = BUS_PROBE_EVERY_MS / (cl->tick_ms > 0 ? cl->tick_ms : 1);
    if (every < 1) every = 1;
    if (!cl->connected && !cl->probe_running && cl->ticks % (unsigned)every == 0)
        client_probe_start(cl);
}

bool bus_client_start(bus_client *cl, uv_loop_t *loop, rd_kafka_t *rk, rd_kafka_queue_t *q,
                      void (*drain)(bus_client *), void *owner, int64_t tick_ms, char *err,
                      size_t errlen)
{
    cl->loop = loop;
    cl->rk = rk;
    cl->q = q;
    cl->drain = drain;
    cl->owner = owner;
    cl->tick_ms = tick_ms > 0 ? tick_ms : 100;
    cl->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cl->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return false;
    }
    int rc = uv_poll_init(loop, &cl->poll, cl->efd);
    if (rc) {
        snprintf(err, errlen, "uv_poll_init: %s", uv_strerror(rc));
        close(cl->efd);
        cl->efd = -1;
        return false;
    }
    cl->poll.data = cl;
    uv_timer_init(loop, &cl->tick);
    cl->tick.data = cl;
    cl->open_handles = 2;
    uv_poll_start(&cl->poll, UV_READABLE, client_poll_cb);
    uv_timer_start(&cl->tick, client_tick_cb, (uint64_t)cl->tick_ms, (uint64_t)cl->tick_ms);
    rd_kafka_queue_io_event_enable(q, cl->efd, &bus_one, sizeof bus_one);
    /* Whatever was queued before the wake-ups were enabled is served on the first turn. */
    bus_client_kick(cl);
    client_probe_start(cl);
    return true;
}

void bus_client_kick(bus_client *cl)
{
    if (cl->efd < 0) return;
    while (write(cl->efd, &bus_one, sizeof bus_one) < 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- broker probe */

static void client_probe_work(uv_work_t *w)
{
    bus_client *cl = w->data;
    const struct rd_kafka_metadata *md = NULL;
    /* Blocking: a metadata round trip to any broker. Short, because a close waits for it. */
    rd_kafka_resp_err_t e = rd_kafka_metadata(cl->rk, 0, NULL, &md, 1000);
    cl->probe_ok = e == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0;
    if (md) rd_kafka_metadata_destroy(md);
}

static void client_probe_after(uv_work_t *w, int status)
{
    (void)status;
    bus_client *cl = w->data;
    cl->probe_running = false;
    if (cl->shutting_down) {
        client_final_start(cl);
        return;
    }
    cl->connected = cl->probe_ok && !cl->fatal;
}

static void client_probe_start(bus_client *cl)
{
    if (cl->probe_running || cl->shutting_down) return;
    cl->probe_running = true;
    cl->probe_work.data = cl;
    if (uv_queue_work(cl->loop, &cl->probe_work, client_probe_work, client_probe_after) != 0)
        cl->probe_running = false;
}

void bus_client_on_error(bus_client *cl, int err, const char *reason)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(cl->rk, why, sizeof why);
        core_log_error("kafka client failed fatally; it must be recreated",
                       CORE_F_STR("client", rd_kafka_name(cl->rk)),
                       CORE_F_STR("error", rd_kafka_err2name(orig)), CORE_F_STR("detail", why));
        if (!cl->shutting_down) {
            cl->connected = false;
            cl->fatal = true;
        }
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!cl->shutting_down) cl->connected = false;
        core_log_warn("kafka: all brokers down", CORE_F_STR("client", rd_kafka_name(cl->rk)),
                      CORE_F_STR("detail", reason));
        return;
    }
    /* Transport and resolve errors repeat while a broker is away; librdkafka reconnects. */
    bool transient = err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE ||
                     err == RD_KAFKA_RESP_ERR__TIMED_OUT;
    core_log_emit(transient ? CORE_LOG_WARN : CORE_LOG_ERROR, "kafka client error",
                  CORE_F_STR("client", rd_kafka_name(cl->rk)),
                  CORE_F_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)err)),
                  CORE_F_STR("detail", reason), CORE_LOG_END);
}

bool bus_client_connected(const bus_client *cl)
{
    return cl->connected && !cl->fatal;
}

void bus_client_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    bus_client_on_error(opaque, err, reason);
}

/* ---------------------------------------------------------------- shutdown */

static void client_handle_closed(uv_handle_t *h)
{
    bus_client *cl = h->data;
    if (--cl->open_handles > 0) return;
    close(cl->efd);
    cl->efd = -1;
    cl->closed(cl);
}

static void client_final_work(uv_work_t *w)
{
    bus_client *cl = w->data;
    cl->final_fn(cl);
    cl->rk = NULL;
}

static void client_final_after(uv_work_t *w, int status)
{
    (void)status;
    bus_client *cl = w->data;
    uv_close((uv_handle_t *)&cl->poll, client_handle_closed);
    uv_close((uv_handle_t *)&cl->tick, client_handle_closed);
}

static void client_final_start(bus_client *cl)
{
    cl->final_work.data = cl;
    if (uv_queue_work(cl->loop, &cl->final_work, client_final_work, client_final_after) != 0) {
        /* Only fails for a NULL callback or a closing loop: finish here rather than leak. */
        client_final_work(&cl->final_work);
        client_final_after(&cl->final_work, 0);
    }
}

void bus_client_shutdown(bus_client *cl, void (*final_fn)(bus_client *),
                         void (*closed)(bus_client *))
{
    if (cl->shutting_down) return;
    cl->shutting_down = true;
    cl->final_fn = final_fn;
    cl->closed = closed;
    rd_kafka_queue_io_event_enable(cl->q, -1, NULL, 0);
    uv_poll_stop(&cl->poll);
    uv_timer_stop(&cl->tick);
    rd_kafka_queue_destroy(cl->q);
    cl->q = NULL;
    if (!cl->probe_running) client_final_start(cl);
    /* else client_probe_after starts it */
}
