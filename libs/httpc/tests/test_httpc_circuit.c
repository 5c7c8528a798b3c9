/* httpc's per-origin circuit breaker against a real local server: it opens after N
 * consecutive failures, then fails fast without touching the network (the server's hit count
 * does not move), half-opens after the cool-down, lets one probe through, and closes or
 * re-opens on the probe's outcome. */
#include "httpc_fixture.h"

typedef struct env {
    uv_loop_t loop;
    httpc_client *c;
    core_metrics *reg;
    core_metric *gauge;
    char origin[64], host[64];
} env;

static void env_open(env *e, unsigned threshold, int64_t cooldown_ms)
{
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->reg = core_metrics_new();
    httpc_config cfg = {.breaker_threshold = threshold,
                        .breaker_cooldown_ms = cooldown_ms,
                        .backoff_base_ms = 10,
                        .backoff_max_ms = 10,
                        .metrics = e->reg};
    e->c = httpc_new(&e->loop, &cfg);
    assert_non_null(e->c);
    e->gauge = core_metric_gauge(e->reg, "httpc_circuit_open", "", "host");
    fx_origin(e->origin, sizeof e->origin, &fx_srv);
    fx_host(e->host, sizeof e->host, &fx_srv);
}

static void env_close(env *e)
{
    fx_close_client(&e->loop, e->c);
    fx_loop_done(&e->loop);
    core_metrics_free(e->reg);
}

static fx_result get(env *e, const char *path_fmt, const char *key)
{
    char url[256], path[192];
    snprintf(path, sizeof path, path_fmt, key);
    fx_url(url, sizeof url, &fx_srv, "%s", path);
    fx_result r = {0};
    httpc_request_opts o = {.url = url};
    fx_fetch(&e->loop, e->c, &o, &r);
    return r;
}

static httpc_circuit state_of(env *e)
{
    return httpc_circuit_state(e->c, e->origin);
}

/* Drives the circuit open with 5xx answers. */
static void open_circuit(env *e, unsigned threshold)
{
    char key[64];
    fx_key(key, sizeof key);
    for (unsigned i = 0; i < threshold; i++) {
        assert_int_equal(state_of(e), HTTPC_CIRCUIT_CLOSED);
        fx_result r = get(e, "/status/500?key=%s", key);
        assert_int_equal(r.status, 500);
        fx_result_free(&r);
    }
    assert_int_equal(state_of(e), HTTPC_CIRCUIT_OPEN);
    assert_int_equal(fx_hits(&fx_srv, key), (int)threshold);
}

static bool half_open(void *data)
{
    return state_of(data) == HTTPC_CIRCUIT_HALF_OPEN;
}

static void test_opens_fails_fast_and_recovers(void **state)
{
    (void)state;
    env e;
    env_open(&e, 3, 400);
    assert_true(fx_nz(core_metric_value(e.gauge, e.host)) == 0.0);
    open_circuit(&e, 3);
    assert_true(core_metric_value(e.gauge, e.host) == 1.0);

    /* Open: fails fast, from the loop, without a single byte to the server. */
    char key[64];
    fx_key(key, sizeof key);
    fx_result r = get(&e, "/ok?key=%s", key);
    assert_int_equal(r.error, HTTPC_ERR_CIRCUIT_OPEN);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.attempts, 0);
    char msg[128];
    snprintf(msg, sizeof msg, "circuit open for %s", e.host);
    assert_string_equal(r.message, msg);
    assert_int_equal(fx_hits(&fx_srv, key), 0);
    fx_result_free(&r);
    /* The state reads the same through any URL of the origin. */
    char other_spelling[128];
    snprintf(other_spelling, sizeof other_spelling, "HTTP://127.0.0.1:%d/some/path?q=1",
             fx_srv.port);
    assert_int_equal(httpc_circuit_state(e.c, other_spelling), HTTPC_CIRCUIT_OPEN);

    /* After the cool-down: half-open; one probe succeeds and closes it. */
    assert_true(ts_run_until(&e.loop, half_open, &e, 5000));
    fx_result p = get(&e, "/ok?key=%s", key);
    assert_int_equal(p.status, 200);
    assert_int_equal(fx_hits(&fx_srv, key), 1);
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_CLOSED);
    assert_true(core_metric_value(e.gauge, e.host) == 0.0);
    fx_result_free(&p);
    env_close(&e);
}

static void test_probe_failure_reopens(void **state)
{
    (void)state;
    env e;
    env_open(&e, 2, 300);
    open_circuit(&e, 2);
    assert_true(ts_run_until(&e.loop, half_open, &e, 5000));
    char key[64];
    fx_key(key, sizeof key);
    fx_result p = get(&e, "/status/503?key=%s", key);
    assert_int_equal(p.status, 503);
    fx_result_free(&p);
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_OPEN); /* a new cool-down */
    assert_true(core_metric_value(e.gauge, e.host) == 1.0);
    fx_result f = get(&e, "/ok?key=%s", key);
    assert_int_equal(f.error, HTTPC_ERR_CIRCUIT_OPEN);
    assert_int_equal(fx_hits(&fx_srv, key), 1);
    fx_result_free(&f);
    env_close(&e);
}

static void test_half_open_lets_one_probe(void **state)
{
    (void)state;
    env e;
    env_open(&e, 2, 300);
    open_circuit(&e, 2);
    assert_true(ts_run_until(&e.loop, half_open, &e, 5000));
    char key[64], url[256];
    fx_key(key, sizeof key);
    fx_url(url, sizeof url, &fx_srv, "/slow/300?key=%s", key);
    fx_result a = {0}, b = {0};
    httpc_request_opts o = {.url = url};
    assert_non_null(httpc_request(e.c, &o, fx_done, &a));
    assert_non_null(httpc_request(e.c, &o, fx_done, &b));
    assert_true(ts_run_until(&e.loop, fx_is_done, &a, 5000));
    assert_true(ts_run_until(&e.loop, fx_is_done, &b, 5000));
    assert_int_equal(a.status, 200); /* the probe */
    assert_int_equal(b.error, HTTPC_ERR_CIRCUIT_OPEN);
    assert_int_equal(fx_hits(&fx_srv, key), 1);
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_CLOSED);
    fx_result_free(&a);
    fx_result_free(&b);

    /* A cancelled probe says nothing about health: the next request may probe. */
    open_circuit(&e, 2);
    assert_true(ts_run_until(&e.loop, half_open, &e, 5000));
    fx_result c1 = {0};
    httpc_req *probe = httpc_request(e.c, &o, fx_done, &c1);
    ts_run_for(&e.loop, 50);
    httpc_cancel(probe);
    assert_int_equal(c1.error, HTTPC_ERR_CANCELLED);
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_HALF_OPEN);
    fx_result c2 = get(&e, "/ok?key=%s", key);
    assert_int_equal(c2.status, 200);
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_CLOSED);
    fx_result_free(&c1);
    fx_result_free(&c2);
    env_close(&e);
}

static void test_4xx_and_success_do_not_open(void **state)
{
    (void)state;
    env e;
    env_open(&e, 3, 1000);
    char key[64];
    fx_key(key, sizeof key);
    for (int i = 0; i < 6; i++) { /* the server is fine; the requests are not */
        fx_result r = get(&e, i % 2 ? "/status/404?key=%s" : "/status/429?key=%s", key);
        fx_result_free(&r);
    }
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_CLOSED);
    /* Consecutive means consecutive: a success in between resets the count. */
    for (int i = 0; i < 2; i++) {
        fx_result r = get(&e, "/status/500?key=%s", key);
        fx_result_free(&r);
    }
    fx_result ok = get(&e, "/ok?key=%s", key);
    fx_result_free(&ok);
    for (int i = 0; i < 2; i++) {
        fx_result r = get(&e, "/status/500?key=%s", key);
        fx_result_free(&r);
    }
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_CLOSED);
    fx_result r = get(&e, "/status/502?key=%s", key);
    fx_result_free(&r);
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_OPEN);
    env_close(&e);
}

static void test_transport_errors_open(void **state)
{
    (void)state;
    env e;
    env_open(&e, 2, 10000);
    char url[128], origin[64];
    int port = fx_unused_port();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(origin, sizeof origin, "http://127.0.0.1:%d", port);
    /* Retries count too, and stop as soon as the circuit opens. */
    fx_result r = {0};
    httpc_request_opts o = {.url = url, .max_attempts = 5};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.error, HTTPC_ERR_CIRCUIT_OPEN);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(httpc_circuit_state(e.c, origin), HTTPC_CIRCUIT_OPEN);
    fx_result_free(&r);
    /* Per origin: the fixture server's circuit is untouched. */
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_CLOSED);
    fx_result ok = get(&e, "/ok%s", "");
    assert_int_equal(ok.status, 200);
    fx_result_free(&ok);

    /* Timeouts are failures as well. */
    char key[64], slow[256];
    fx_key(key, sizeof key);
    fx_url(slow, sizeof slow, &fx_srv, "/slow/2000?key=%s", key);
    for (int i = 0; i < 2; i++) {
        fx_result t = {0};
        httpc_request_opts ot = {.url = slow, .timeout_ms = 100};
        fx_fetch(&e.loop, e.c, &ot, &t);
        assert_int_equal(t.error, HTTPC_ERR_TIMEOUT);
        fx_result_free(&t);
    }
    assert_int_equal(state_of(&e), HTTPC_CIRCUIT_OPEN);
    env_close(&e);
}

static void test_disabled(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    core_metrics *reg = core_metrics_new();
    httpc_config cfg = {.breaker_threshold = 1, .breaker_disabled = true, .metrics = reg};
    httpc_client *c = httpc_new(&loop, &cfg);
    char key[64], url[256], origin[64];
    fx_key(key, sizeof key);
    fx_url(url, sizeof url, &fx_srv, "/status/500?key=%s", key);
    fx_origin(origin, sizeof origin, &fx_srv);
    for (int i = 0; i < 3; i++) {
        fx_result r = {0};
        httpc_request_opts o = {.url = url};
        fx_fetch(&loop, c, &o, &r);
        assert_int_equal(r.status, 500);
        fx_result_free(&r);
    }
    assert_int_equal(httpc_circuit_state(c, origin), HTTPC_CIRCUIT_CLOSED);
    assert_int_equal(fx_hits(&fx_srv, key), 3);
    fx_close_client(&loop, c);
    fx_loop_done(&loop);
    core_metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_fails_fast_and_recovers),
        cmocka_unit_test(test_probe_failure_reopens),
        cmocka_unit_test(test_half_open_lets_one_probe),
        cmocka_unit_test(test_4xx_and_success_do_not_open),
        cmocka_unit_test(test_transport_errors_open),
        cmocka_unit_test(test_disabled),
    };
    return cmocka_run_group_tests_name("httpc_circuit", tests, fx_group_setup, fx_group_teardown);
}
