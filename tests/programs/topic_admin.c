/*
 * topic_admin: creates or deletes one Kafka topic (for benchmarks that must not write to the
 * catalog's topics). A tool, not a service: it runs its own loop until the Admin API answers.
 *
 *   topic_admin BROKERS create NAME PARTITIONS
 *   topic_admin BROKERS delete NAME
 * Exit status: 0 done, 1 failure, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "test_support.h"

static bool answered;
static char error[512];

static void on_done(void *data, const char *err)
{
    (void)data;
    answered = true;
    if (err) snprintf(error, sizeof error, "%s", err);
}

static bool is_answered(void *data)
{
    (void)data;
    return answered;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[2], "create") == 0 && argc != 5)) {
        fprintf(stderr, "usage: topic_admin BROKERS create NAME PARTITIONS | delete NAME\n");
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    if (strcmp(argv[2], "create") == 0) {
        char *end = NULL;
        long parts = strtol(argv[4], &end, 10);
        if (!end || *end || parts < 1 || parts > 1000) return 2;
        bus_admin_create_topic(&loop, argv[1], argv[3], (int)parts, NULL, on_done, NULL);
    } else if (strcmp(argv[2], "delete") == 0) {
        bus_admin_delete_topic(&loop, argv[1], argv[3], on_done, NULL);
    } else {
        return 2;
    }
    bool ok = ts_run_until(&loop, is_answered, NULL, 60000);
    ts_loop_close_all(&loop);
    uv_loop_close(&loop);
    if (!ok || error[0]) {
        fprintf(stderr, "topic_admin: %s\n", ok ? error : "no answer within 60 s");
        return 1;
    }
    return 0;
}
