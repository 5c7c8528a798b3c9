/*
 * Kafka scaffolding shared by the integration tests that talk to the broker through libs/bus
 * (bus_consume, bus_kcat, bus_txn, realtime_service, db_test.h): topics made and deleted with the
 * bus admin API, producers and consumers closed while the loop runs. Header-only (static), because
 * every file in tests/support is linked into the unit tests of every library too, and those do not
 * link libs/bus. Include <cmocka.h> before this header.
 */
#ifndef BUS_TEST_H
#define BUS_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "test_support.h"

/* How long one admin call (create or delete a topic) may take on a busy broker. */
#define TS_BUS_ADMIN_TIMEOUT_MS 30000

/* ---------------------------------------------------------------- topics */

typedef struct ts_admin_waiter {
    bool done;
    char err[512]; /* "" when the admin call succeeded */
} ts_admin_waiter;

static inline void ts_on_admin(void *data, const char *err)
{
    ts_admin_waiter *w = data;
    w->done = true;
    snprintf(w->err, sizeof w->err, "%s", err ? err : "");
}

static inline bool ts_admin_done(void *data)
{
    return ((ts_admin_waiter *)data)->done;
}

/* Topics a test program made, so that its group teardown can delete them all. */
#define TS_BUS_MAX_TOPICS 64

typedef struct ts_bus_topics {
    char name[TS_BUS_MAX_TOPICS][128];
    int n;
} ts_bus_topics;

/* Creates a uniquely named topic ("<prefix>-<pid>-<hex>", written to name) and fails the test
 * unless the broker confirms it. created (may be NULL) remembers it for ts_bus_delete_topics. */
static inline void ts_bus_make_topic(uv_loop_t *loop, const char *brokers, char *name, size_t size,
                                     const char *prefix, int partitions, const char *const *config,
                                     ts_bus_topics *created)
{
    ts_unique_name(name, size, prefix);
    ts_admin_waiter w = {0};
    bus_admin_create_topic(loop, brokers, name, partitions, config, ts_on_admin, &w);
    assert_true(ts_run_until(loop, ts_admin_done, &w, TS_BUS_ADMIN_TIMEOUT_MS));
    assert_string_equal(w.err, "");
    if (created && created->n < TS_BUS_MAX_TOPICS)
        snprintf(created->name[created->n++], sizeof created->name[0], "%s", name);
}

/* Creates the topic named name (config: NULL-terminated name, value pairs, or NULL); false,
 * with the reason on stderr, when the broker refused or did not answer in time. For setup
 * functions, which report failure by returning -1 rather than asserting. */
static inline bool ts_bus_create_topic(uv_loop_t *loop, const char *brokers, const char *name,
                                       int partitions, const char *const *config)
{
    ts_admin_waiter w = {0};
    bus_admin_create_topic(loop, brokers, name, partitions, config, ts_on_admin, &w);
    ts_run_until(loop, ts_admin_done, &w, TS_BUS_ADMIN_TIMEOUT_MS);
    if (!w.done || w.err[0]) fprintf(stderr, "create topic %s: %s\n", name, w.err);
    return w.done && !w.err[0];
}

/* Deletes one topic and waits for the answer; errors are ignored (cleanup only). */
static inline void ts_bus_delete_topic(uv_loop_t *loop, const char *brokers, const char *name)
{
    ts_admin_waiter w = {0};
    bus_admin_delete_topic(loop, brokers, name, ts_on_admin, &w);
    ts_run_until(loop, ts_admin_done, &w, TS_BUS_ADMIN_TIMEOUT_MS);
}

static inline void ts_on_topic_deleted(void *data, const char *err)
{
    (void)err; /* cleanup: a topic that is already gone is fine */
    (*(int *)data)--;
}

static inline bool ts_all_topics_deleted(void *data)
{
    return *(int *)data == 0;
}

/* Deletes every topic in created at once and waits up to a minute for all of them. */
static inline void ts_bus_delete_topics(uv_loop_t *loop, const char *brokers,
                                        const ts_bus_topics *created)
{
    int pending = created->n;
    for (int i = 0; i < created->n; i++)
        bus_admin_delete_topic(loop, brokers, created->name[i], ts_on_topic_deleted, &pending);
    ts_run_until(loop, ts_all_topics_deleted, &pending, 60000);
}

/* The group teardown of a bus test program: its topics deleted, its loop closed. */
static inline void ts_bus_teardown(uv_loop_t *loop, const char *brokers,
                                   const ts_bus_topics *created)
{
    ts_bus_delete_topics(loop, brokers, created);
    ts_loop_close_all(loop);
    uv_loop_close(loop);
}

/* ---------------------------------------------------------------- closing clients */

static inline void ts_on_producer_closed(void *data, size_t remaining)
{
    assert_int_equal(remaining, 0); /* everything produced was delivered before the close */
    *(bool *)data = true;
}

/* Closes p (flushing for up to 10 s) and fails the test unless it closes within 30 s with
 * nothing left undelivered. */
static inline void ts_bus_close_producer(uv_loop_t *loop, bus_producer *p)
{
    bool closed = false;
    bus_producer_close(p, 10000, ts_on_producer_closed, &closed);
    assert_true(ts_run_until(loop, ts_flag_set, &closed, 30000));
}

/* Closes c (committing what it handled) and fails the test unless that ends in timeout_ms. */
static inline void ts_bus_close_consumer(uv_loop_t *loop, bus_consumer *c, int64_t timeout_ms)
{
    bool closed = false;
    bus_consumer_close(c, ts_set_flag, &closed);
    assert_true(ts_run_until(loop, ts_flag_set, &closed, timeout_ms));
}

/* ---------------------------------------------------------------- without a broker */

/* Named like a test, not ts_..., because cmocka reports the skip under this name. */
static inline void test_needs_kafka(void **state)
{
    (void)state;
    skip();
}

/* What main() returns when KAFKA_BROKERS is not set: the reason on stdout and one skipped
 * test, so that the run reports a skip rather than passing in silence. */
static inline int ts_bus_skip_all(const char *program)
{
    printf("SKIP %s: KAFKA_BROKERS is not set\n", program);
    const struct CMUnitTest skipped[] = {cmocka_unit_test(test_needs_kafka)};
    return cmocka_run_group_tests_name(program, skipped, NULL, NULL);
}

#endif
