/*
 * test_metrics.c - unit tests for the counter blocks and the Prometheus
 * exposition (src/metrics.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_metrics.c \
 *            src/metrics.c src/utf8.c src/ws.c \
 *            -lcmocka -o /tmp/test_metrics && /tmp/test_metrics
 *
 * One process plays both sides: it maps the blocks as the master does,
 * attaches to some as workers do (metrics_attach only points metrics_self
 * at a block, so a test can attach to several in turn), counts, and reads
 * the text back.  Every rendering is checked line by line against the
 * text format (check_format), and values are read back by exact series
 * name (value_of).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"
#include "route.h"

/* ---- helpers ---------------------------------------------------------- */

static char *render(void)
{
    struct metrics_extra x = { .rooms = 3, .room_members = 7 };
    size_t len = 0;
    char *text = metrics_render(&x, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static bool is_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == ':' || (!first && c >= '0' && c <= '9');
}

/* Every line is a HELP, a TYPE, or a sample of the family whose TYPE
 * came last; each family is declared once; label values are escaped. */
static void check_format(const char *text)
{
    char family[128] = "", declared[64][128];
    size_t nfamilies = 0;
    const char *p = text;

    assert_true(text[0] != '\0' && text[strlen(text) - 1] == '\n');
    while (*p) {
        const char *end = strchr(p, '\n');
        assert_non_null(end);
        size_t n = (size_t)(end - p);
        char line[1024];
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        p = end + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_true(strlen(line) > 7);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char type[32];
            assert_int_equal(sscanf(line + 7, "%127s %31s", family, type), 2);
            assert_true(strcmp(type, "counter") == 0 ||
                        strcmp(type, "gauge") == 0);
            for (size_t i = 0; i < nfamilies; i++)
                assert_string_not_equal(declared[i], family);
            assert_true(nfamilies < 64);
            strcpy(declared[nfamilies++], family);
            continue;
        }
        /* A sample: name, optional {label="value"}, a space, a number. */
        assert_true(family[0] != '\0');
        size_t i = 0;
        while (is_name_char(line[i], i == 0))
            i++;
        assert_true(i > 0);
        assert_true(strncmp(line, family, i) == 0 && family[i] == '\0');
        if (line[i] == '{') {
            i++;
            while (is_name_char(line[i], false))
                i++;
            assert_true(line[i] == '=' && line[i + 1] == '"');
            for (i += 2; line[i] != '"'; i++) {
                assert_true(line[i] != '\0');
                if (line[i] == '\\') {
                    i++;
                    assert_true(line[i] == '\\' || line[i] == '"' ||
                                line[i] == 'n');
                }
            }
            assert_true(line[++i] == '}');
            i++;
        }
        assert_true(line[i] == ' ');
        char *num_end;
        strtod(line + i + 1, &num_end);
        assert_true(num_end > line + i + 1 && *num_end == '\0');
    }
}

/* The value of the series written exactly as `series` (name and labels),
 * or -1 when there is none. */
static long long value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;

    while ((p = strstr(p, series))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        p += n;
    }
    return -1;
}

static struct route make_route(const char *path, const char *handler)
{
    return (struct route){ .path = (char *)path,
                           .handler_name = (char *)handler };
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(metrics_map(), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    metrics_attach(NULL, NULL, 0);
    metrics_unmap();
    return 0;
}

/* ---- tests ------------------------------------------------------------ */

static void test_metrics_close_buckets(void **state)
{
    (void)state;
    assert_int_equal(metrics_close_bucket(1000), 0);
    assert_int_equal(metrics_close_bucket(1006), 6);
    assert_int_equal(metrics_close_bucket(1015), 15);
    assert_int_equal(metrics_close_bucket(3000), METRICS_CLOSE_3XXX);
    assert_int_equal(metrics_close_bucket(3999), METRICS_CLOSE_3XXX);
    assert_int_equal(metrics_close_bucket(4000), METRICS_CLOSE_4XXX);
    assert_int_equal(metrics_close_bucket(4999), METRICS_CLOSE_4XXX);
    assert_int_equal(metrics_close_bucket(999), METRICS_CLOSE_OTHER);
    assert_int_equal(metrics_close_bucket(1016), METRICS_CLOSE_OTHER);
    assert_int_equal(metrics_close_bucket(2999), METRICS_CLOSE_OTHER);
    assert_int_equal(metrics_close_bucket(5000), METRICS_CLOSE_OTHER);
}

static void test_metrics_blocks_are_page_aligned_and_zeroed(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (unsigned s = 0; s < METRICS_SLOTS; s++) {
        struct metrics_block *b = metrics_block(s);
        assert_non_null(b);
        assert_int_equal((uintptr_t)b % page, 0);
        assert_int_equal(b->state, METRICS_EMPTY);
        assert_int_equal(b->c.tcp_accepted, 0);
    }
    assert_null(metrics_block(METRICS_SLOTS));
}

static void test_metrics_render_when_idle_has_every_family(void **state)
{
    (void)state;
    char *t = render();
    check_format(t);
    static const char *const zero[] = {
        "snowd_tcp_connections_open", "snowd_tcp_connections_total",
        "snowd_handshake_failures_total{reason=\"bad_request\"}",
        "snowd_handshake_failures_total{reason=\"tls\"}",
        "snowd_handshake_failures_total{reason=\"aborted\"}",
        "snowd_closes_total{code=\"1000\"}",
        "snowd_closes_total{code=\"1006\"}",
        "snowd_closes_total{code=\"4xxx\"}",
        "snowd_actor_crashes_total{kind=\"connection\"}",
        "snowd_actor_crashes_total{kind=\"service\"}",
        "snowd_service_restarts_total", "snowd_mailbox_overflows_total",
        "snowd_room_drops_total", "snowd_backpressure_closes_total",
        "snowd_worker_restarts_total", "snowd_workers", "snowd_workers_ready",
        "snowd_channel_drops_total",
    };
    for (size_t i = 0; i < sizeof zero / sizeof *zero; i++)
        assert_int_equal(value_of(t, zero[i]), 0);
    assert_int_equal(value_of(t, "snowd_rooms"), 3);
    assert_int_equal(value_of(t, "snowd_room_members"), 7);
    assert_non_null(strstr(t, "\nsnowd_build_info{version=\""));
    assert_non_null(strstr(t, "\nsnowd_start_time_seconds "));
    /* Codes no connection can end with are left out until seen. */
    assert_int_equal(value_of(t, "snowd_closes_total{code=\"1004\"}"), -1);
    assert_int_equal(value_of(t, "snowd_closes_total{code=\"1015\"}"), -1);
    assert_int_equal(value_of(t, "snowd_closes_total{code=\"other\"}"), -1);
    /* No worker: no route. */
    assert_null(strstr(t, "route="));
    free(t);
}

static void test_metrics_attach_points_routes_and_copies_paths(void **state)
{
    (void)state;
    struct route r[3] = { make_route("/echo", "echo"),
                          make_route("/", NULL),     /* static files only */
                          make_route("/chat", "chat") };
    struct metrics_block *b = metrics_block(5);

    metrics_attach(b, r, 3);
    assert_ptr_equal(metrics_self, b);
    assert_int_equal(b->state, METRICS_STARTING);
    assert_ptr_equal(r[0].metrics, &b->routes[0]);
    assert_ptr_equal(r[2].metrics, &b->routes[2]);
    assert_string_equal(b->paths[0], "/echo");
    assert_string_equal(b->paths[1], "");
    metrics_add(&r[0].metrics->opened, 2);
    metrics_add(&r[0].metrics->open, 2);
    metrics_sub(&r[0].metrics->open, 1);
    metrics_add(&r[2].metrics->bytes_in, 300);

    char *t = render();
    check_format(t);
    assert_int_equal(value_of(t, "snowd_connections_total{route=\"/echo\"}"),
                     2);
    assert_int_equal(value_of(t, "snowd_connections_open{route=\"/echo\"}"),
                     1);
    assert_int_equal(value_of(t,
                     "snowd_received_bytes_total{route=\"/chat\"}"), 300);
    assert_int_equal(value_of(t, "snowd_connections_total{route=\"/\"}"), -1);
    assert_int_equal(value_of(t, "snowd_workers"), 1);
    assert_int_equal(value_of(t, "snowd_workers_ready"), 0);
    /* Sorted by path. */
    assert_true(strstr(t, "route=\"/chat\"") < strstr(t, "route=\"/echo\""));
    free(t);
}

static void test_metrics_states_count_workers(void **state)
{
    (void)state;
    unsigned ready = 99;
    assert_int_equal(metrics_workers(&ready), 0);
    assert_int_equal(ready, 0);
    metrics_attach(metrics_block(0), NULL, 0);
    metrics_set_state(METRICS_READY);
    metrics_attach(metrics_block(1), NULL, 0);
    metrics_set_state(METRICS_READY);
    metrics_attach(metrics_block(2), NULL, 0);
    metrics_set_state(METRICS_STOPPING);
    metrics_attach(metrics_block(63), NULL, 0);
    assert_int_equal(metrics_workers(&ready), 4);
    assert_int_equal(ready, 2);
    metrics_retire(1, false);
    assert_int_equal(metrics_workers(&ready), 3);
    assert_int_equal(ready, 1);
}

static void test_metrics_sum_blocks_by_path(void **state)
{
    (void)state;
    /* Two workers with the same routes in another order (as after a
     * reload), a third with a route of its own. */
    struct route a[2] = { make_route("/echo", "echo"),
                          make_route("/chat", "chat") };
    struct route b[2] = { make_route("/chat", "chat"),
                          make_route("/echo", "echo") };
    struct route c[1] = { make_route("/new", "echo") };

    metrics_attach(metrics_block(0), a, 2);
    metrics_add(&a[0].metrics->msgs_in, 10);
    metrics_add(&a[1].metrics->msgs_in, 1);
    metrics_add(&metrics_self->c.closes[metrics_close_bucket(1000)], 4);
    metrics_attach(metrics_block(1), b, 2);
    metrics_add(&b[1].metrics->msgs_in, 5);
    metrics_add(&b[0].metrics->msgs_in, 2);
    metrics_close(1000);
    metrics_close(4001);
    metrics_close(4999);
    metrics_close(3000);
    metrics_attach(metrics_block(2), c, 1);
    metrics_add(&c[0].metrics->msgs_in, 100);
    metrics_handshake_failure(METRICS_HS_TLS);
    metrics_crash(METRICS_ACTOR_SERVICE);

    char *t = render();
    check_format(t);
    assert_int_equal(value_of(t,
                     "snowd_messages_received_total{route=\"/echo\"}"), 15);
    assert_int_equal(value_of(t,
                     "snowd_messages_received_total{route=\"/chat\"}"), 3);
    assert_int_equal(value_of(t,
                     "snowd_messages_received_total{route=\"/new\"}"), 100);
    assert_int_equal(value_of(t, "snowd_closes_total{code=\"1000\"}"), 5);
    assert_int_equal(value_of(t, "snowd_closes_total{code=\"4xxx\"}"), 2);
    assert_int_equal(value_of(t, "snowd_closes_total{code=\"3xxx\"}"), 1);
    assert_int_equal(value_of(t,
                     "snowd_handshake_failures_total{reason=\"tls\"}"), 1);
    assert_int_equal(value_of(t,
                     "snowd_actor_crashes_total{kind=\"service\"}"), 1);
    free(t);
}

static void test_metrics_retire_keeps_counters_monotonic(void **state)
{
    (void)state;
    struct route r[1] = { make_route("/echo", "echo") };
    struct metrics_block *b = metrics_block(3);

    metrics_attach(b, r, 1);
    metrics_set_state(METRICS_READY);
    metrics_add(&r[0].metrics->opened, 7);
    metrics_add(&r[0].metrics->open, 4);
    metrics_add(&r[0].metrics->msgs_out, 70);
    metrics_add(&r[0].metrics->bytes_out, 700);
    metrics_add(&b->tcp_open, 5);
    metrics_add(&b->c.tcp_accepted, 9);
    metrics_add(&b->c.room_drops, 2);
    metrics_handshake_failure(METRICS_HS_NOT_FOUND);

    char *before = render();
    metrics_attach(NULL, NULL, 0);
    metrics_retire(3, true);
    assert_int_equal(b->state, METRICS_EMPTY);
    assert_int_equal(b->c.tcp_accepted, 0);
    assert_int_equal(b->routes[0].opened, 0);
    assert_string_equal(b->paths[0], "");
    char *after = render();
    check_format(after);

    static const char *const kept[] = {
        "snowd_connections_total{route=\"/echo\"}",
        "snowd_messages_sent_total{route=\"/echo\"}",
        "snowd_sent_bytes_total{route=\"/echo\"}",
        "snowd_tcp_connections_total", "snowd_room_drops_total",
        "snowd_handshake_failures_total{reason=\"not_found\"}",
    };
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        assert_true(value_of(before, kept[i]) > 0);
        assert_int_equal(value_of(after, kept[i]), value_of(before, kept[i]));
    }
    /* Gauges describe the living only. */
    assert_int_equal(value_of(before, "snowd_connections_open{route=\"/echo\"}"),
                     4);
    assert_int_equal(value_of(after, "snowd_connections_open{route=\"/echo\"}"),
                     0);
    assert_int_equal(value_of(after, "snowd_tcp_connections_open"), 0);
    assert_int_equal(value_of(after, "snowd_workers"), 0);
    assert_int_equal(value_of(after, "snowd_worker_restarts_total"), 1);

    /* The successor counts on top of the totals. */
    metrics_attach(b, r, 1);
    metrics_add(&r[0].metrics->opened, 1);
    metrics_add(&b->c.tcp_accepted, 1);
    char *next = render();
    assert_int_equal(value_of(next, "snowd_connections_total{route=\"/echo\"}"),
                     8);
    assert_int_equal(value_of(next, "snowd_tcp_connections_total"), 10);
    metrics_attach(NULL, NULL, 0);
    /* A death that is not followed by a respawn (a stop, a reload) does
     * not count as a restart, and an empty slot folds nothing. */
    metrics_retire(3, false);
    metrics_retire(4, false);
    char *last = render();
    assert_int_equal(value_of(last, "snowd_connections_total{route=\"/echo\"}"),
                     8);
    assert_int_equal(value_of(last, "snowd_worker_restarts_total"), 1);
    /* The master's own drops are kept by the master: no death moves them. */
    metrics_channel_dropped();
    metrics_channel_dropped();
    metrics_retire(1, true);
    char *drops = render();
    assert_int_equal(value_of(drops, "snowd_channel_drops_total"), 2);
    free(drops);
    free(before);
    free(after);
    free(next);
    free(last);
}

static void test_metrics_routes_past_the_cap_share_other(void **state)
{
    (void)state;
    enum { N = METRICS_ROUTES + 6 };
    static char paths[N][16];
    struct route r[N];

    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "/r%03d", i);
        r[i] = make_route(paths[i], "echo");
    }
    metrics_attach(metrics_block(0), r, N);
    assert_int_equal(metrics_self->nroutes, METRICS_ROUTES);
    for (int i = METRICS_ROUTES; i < N; i++)
        assert_ptr_equal(r[i].metrics, &metrics_self->routes[METRICS_ROUTES]);
    metrics_add(&r[METRICS_ROUTES - 1].metrics->opened, 1);
    for (int i = METRICS_ROUTES; i < N; i++)
        metrics_add(&r[i].metrics->opened, 1);

    char *t = render();
    check_format(t);
    char series[64];
    snprintf(series, sizeof series, "snowd_connections_total{route=\"%s\"}",
             paths[METRICS_ROUTES - 1]);
    assert_int_equal(value_of(t, series), 1);
    snprintf(series, sizeof series, "snowd_connections_total{route=\"%s\"}",
             paths[METRICS_ROUTES]);
    assert_int_equal(value_of(t, series), -1);
    assert_int_equal(value_of(t,
                     "snowd_connections_total{route=\"other\"}"), 6);
    /* "other" comes after every path. */
    const char *other = strstr(t, "snowd_connections_total{route=\"other\"}");
    const char *last = strstr(t, "snowd_connections_total{route=\"/r063\"}");
    assert_true(last && other && last < other);

    /* Retired, "other" keeps its counts under the same label. */
    metrics_attach(NULL, NULL, 0);
    metrics_retire(0, false);
    char *after = render();
    assert_int_equal(value_of(after,
                     "snowd_connections_total{route=\"other\"}"), 6);
    free(t);
    free(after);
}

static void test_metrics_label_values_are_escaped(void **state)
{
    (void)state;
    struct route r[1] = { make_route("/a\"b\\c", "echo") };

    metrics_attach(metrics_block(0), r, 1);
    metrics_add(&r[0].metrics->opened, 1);
    char *t = render();
    check_format(t);
    assert_int_equal(value_of(t,
                     "snowd_connections_total{route=\"/a\\\"b\\\\c\"}"), 1);
    free(t);
}

static void test_metrics_block_paths_are_not_trusted(void **state)
{
    (void)state;
    struct route r[3] = { make_route("/x", "echo"), make_route("/y", "echo"),
                          make_route("/z", "echo") };
    struct metrics_block *b = metrics_block(0);

    metrics_attach(b, r, 3);
    /* As a misbehaving plugin might leave them: no NUL at all, control
     * characters and a line feed, bytes that are not UTF-8. */
    memset(b->paths[0], 'a', METRICS_PATH_MAX);
    memcpy(b->paths[1], "/q\n\x01\"x", 7);
    memcpy(b->paths[2], "/\xff\xfe", 4);
    metrics_add(&r[0].metrics->opened, 1);
    /* And a route count far beyond the block. */
    b->nroutes = 1000000;
    char *t = render();
    check_format(t);
    char series[METRICS_PATH_MAX + 64];
    char longest[METRICS_PATH_MAX];
    memset(longest, 'a', METRICS_PATH_MAX - 1);
    longest[METRICS_PATH_MAX - 1] = '\0';
    snprintf(series, sizeof series, "snowd_connections_total{route=\"%s\"}",
             longest);
    assert_int_equal(value_of(t, series), 1);
    assert_int_equal(value_of(t, "snowd_connections_total{route=\"/q??\\\"x\"}"),
                     0);
    assert_int_equal(value_of(t, "snowd_connections_total{route=\"/??\"}"), 0);
    free(t);
    metrics_attach(NULL, NULL, 0);
    metrics_retire(0, false);
    t = render();
    check_format(t);
    assert_int_equal(value_of(t, series), 1);
    free(t);
}

static void test_metrics_private_block_without_attach(void **state)
{
    (void)state;
    /* Counting before attach (or in the master) goes nowhere visible. */
    metrics_attach(NULL, NULL, 0);
    metrics_handshake_failure(METRICS_HS_TLS);
    metrics_close(1000);
    char *t = render();
    assert_int_equal(value_of(t,
                     "snowd_handshake_failures_total{reason=\"tls\"}"), 0);
    assert_int_equal(value_of(t, "snowd_closes_total{code=\"1000\"}"), 0);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_close_buckets),
        cmocka_unit_test_setup_teardown(
            test_metrics_blocks_are_page_aligned_and_zeroed, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_render_when_idle_has_every_family, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_attach_points_routes_and_copies_paths, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_states_count_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_sum_blocks_by_path, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_retire_keeps_counters_monotonic, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_routes_past_the_cap_share_other, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_label_values_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_block_paths_are_not_trusted, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_metrics_private_block_without_attach, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
