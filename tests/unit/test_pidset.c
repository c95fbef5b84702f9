/*
 * test_pidset.c - the pid set: membership against a plain model under
 * random adds and removes (removals shift entries back, which is where
 * open addressing goes wrong), growth, and remove_if.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pidset.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Pids shaped like the daemon's: node 0 | slot | generation | serial. */
static snow_pid make_pid(unsigned slot, uint32_t serial)
{
    return (snow_pid)slot << 48 | (snow_pid)1 << 32 | serial;
}

static void test_pidset_add_remove_has(void **state)
{
    (void)state;
    struct pidset s = { 0 };

    assert_false(pidset_has(&s, 5));
    assert_false(pidset_remove(&s, 5));
    assert_false(pidset_add(&s, 0));
    assert_true(pidset_add(&s, 5));
    assert_false(pidset_add(&s, 5));
    assert_true(pidset_has(&s, 5));
    assert_false(pidset_has(&s, 0));
    assert_int_equal(s.n, 1);
    assert_true(pidset_remove(&s, 5));
    assert_false(pidset_remove(&s, 5));
    assert_false(pidset_has(&s, 5));
    assert_int_equal(s.n, 0);
    pidset_clear(&s);
    assert_null(s.keys);
}

/* A model of 512 possible pids, with long runs of collisions made likely
 * by a small universe relative to the table. */
static void test_pidset_matches_a_model(void **state)
{
    (void)state;
    enum { UNIVERSE = 512, STEPS = 200000 };
    static bool in[UNIVERSE];
    struct pidset s = { 0 };
    uint32_t n = 0;

    memset(in, 0, sizeof in);
    for (int step = 0; step < STEPS; step++) {
        uint64_t r = next_random();
        unsigned k = (unsigned)(r % UNIVERSE);
        snow_pid pid = make_pid(k % 7, k);
        /* Adds win a little more often, so that the set grows, then
         * removals drain it again in the second half. */
        bool add = step < STEPS / 2 ? (r >> 32) % 5 < 3 : (r >> 32) % 5 < 2;
        if (add) {
            assert_int_equal(pidset_add(&s, pid), !in[k]);
            n += !in[k];
            in[k] = true;
        } else {
            assert_int_equal(pidset_remove(&s, pid), in[k]);
            n -= in[k];
            in[k] = false;
        }
        assert_int_equal(s.n, n);
        if (step % 997 == 0)
            for (unsigned j = 0; j < UNIVERSE; j++)
                assert_int_equal(pidset_has(&s, make_pid(j % 7, j)), in[j]);
    }
    assert_true(s.n * 4 <= s.cap * 3);
    pidset_clear(&s);
}

static bool take_slot(snow_pid pid, void *arg)
{
    unsigned *want = arg;
    if (snow_pid_worker(pid) != want[0])
        return false;
    want[1]++;
    return true;
}

static void test_pidset_remove_if(void **state)
{
    (void)state;
    struct pidset s = { 0 };
    unsigned want[2] = { 3, 0 };   /* slot to take, pids taken */

    for (uint32_t i = 1; i <= 1000; i++)
        assert_true(pidset_add(&s, make_pid(i % 4, i)));
    pidset_remove_if(&s, take_slot, want);
    assert_int_equal(want[1], 250);
    assert_int_equal(s.n, 750);
    for (uint32_t i = 1; i <= 1000; i++)
        assert_int_equal(pidset_has(&s, make_pid(i % 4, i)), i % 4 != 3);
    want[0] = 9;
    want[1] = 0;
    pidset_remove_if(&s, take_slot, want);
    assert_int_equal(want[1], 0);
    assert_int_equal(s.n, 750);
    pidset_clear(&s);
    pidset_remove_if(&s, take_slot, want);   /* empty: nothing to call */
    assert_int_equal(s.n, 0);
}

struct taken {
    unsigned slot;
    snow_pid pids[4096];
    size_t n;
};

static bool take_recorded(snow_pid pid, void *arg)
{
    struct taken *t = arg;
    if (snow_pid_worker(pid) != t->slot)
        return false;
    assert_true(t->n < sizeof t->pids / sizeof *t->pids);
    t->pids[t->n++] = pid;
    return true;
}

/* In-place removal shifts entries back, across the end of the table too:
 * against a model, over many random tables, each matching pid is taken
 * exactly once and every other one stays. */
static void test_pidset_remove_if_matches_a_model(void **state)
{
    (void)state;
    enum { UNIVERSE = 2048 };
    static bool in[UNIVERSE];
    static struct taken t;

    for (int round = 0; round < 300; round++) {
        struct pidset s = { 0 };
        unsigned size = 1 + (unsigned)(next_random() % 1500);
        memset(in, 0, sizeof in);
        for (unsigned i = 0; i < size; i++) {
            unsigned k = (unsigned)(next_random() % UNIVERSE);
            in[k] = true;
            pidset_add(&s, make_pid(k % 5, k));
        }
        t.slot = (unsigned)(next_random() % 5);
        t.n = 0;
        pidset_remove_if(&s, take_recorded, &t);
        size_t want = 0;
        for (unsigned k = 0; k < UNIVERSE; k++) {
            bool taken = in[k] && k % 5 == t.slot;
            want += taken;
            assert_int_equal(pidset_has(&s, make_pid(k % 5, k)),
                             in[k] && !taken);
        }
        assert_int_equal(t.n, want);
        for (size_t i = 0; i < t.n; i++) {
            assert_int_equal(snow_pid_worker(t.pids[i]), t.slot);
            for (size_t j = i + 1; j < t.n; j++)
                assert_true(t.pids[i] != t.pids[j]);
        }
        pidset_clear(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pidset_add_remove_has),
        cmocka_unit_test(test_pidset_matches_a_model),
        cmocka_unit_test(test_pidset_remove_if),
        cmocka_unit_test(test_pidset_remove_if_matches_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
