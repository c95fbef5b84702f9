/*
 * test_names.c - unit tests for the name -> pid map (src/names.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_names.c \
 *            src/names.c -lcmocka -o /tmp/test_names && /tmp/test_names
 *
 * Names are handed over with explicit lengths and, where it matters,
 * placed just before a PROT_NONE page (guard.h), so reading one byte
 * past a name faults.  Besides the behaviours, every test checks the
 * table's own invariants (check_table): count, load, and that every
 * entry is found again from its name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stdio.h>

#include "guard.h"
#include "names.h"

static snow_pid make_pid(unsigned slot, unsigned gen, uint32_t serial)
{
    return (1ULL << 56) | ((snow_pid)slot << 48) | ((snow_pid)gen << 32) |
           serial;
}

static void check_table(const struct names *m)
{
    size_t used = 0;

    if (m->cap == 0) {
        assert_int_equal(m->count, 0);
        return;
    }
    assert_int_equal(m->cap & (m->cap - 1), 0);
    assert_true(m->count * 10 <= m->cap * 7);
    for (size_t i = 0; i < m->cap; i++) {
        const struct names_entry *e = &m->slots[i];
        if (!e->name)
            continue;
        used++;
        assert_int_equal(strlen(e->name), e->len);
        assert_true(names_valid(e->name, e->len));
        assert_int_not_equal(e->pid, 0);
        assert_int_equal(names_get(m, e->name, e->len), e->pid);
    }
    assert_int_equal(used, m->count);
}

/* ---- validity -------------------------------------------------------------- */

static void test_names_valid_lengths(void **state)
{
    (void)state;
    char buf[SNOW_NAME_MAX + 1];
    memset(buf, 'a', sizeof buf);
    assert_false(names_valid(buf, 0));
    assert_true(names_valid(buf, 1));
    assert_true(names_valid(buf, SNOW_NAME_MAX - 1));
    assert_true(names_valid(buf, SNOW_NAME_MAX));
    assert_false(names_valid(buf, SNOW_NAME_MAX + 1));
    assert_false(names_valid(buf, SIZE_MAX));
    assert_false(names_valid(NULL, 0));
}

static void test_names_valid_bytes(void **state)
{
    (void)state;
    assert_true(names_valid("!", 1));     /* 0x21, the first allowed */
    assert_true(names_valid("~", 1));     /* 0x7e, the last */
    assert_true(names_valid("room:lobby/1", 12));
    assert_false(names_valid(" ", 1));    /* 0x20 */
    assert_false(names_valid("a b", 3));
    assert_false(names_valid("\x7f", 1)); /* DEL */
    assert_false(names_valid("ab\x7f", 3));
    assert_false(names_valid("caf\xc3\xa9", 5));   /* UTF-8 */
    assert_false(names_valid("\x80", 1));
    assert_false(names_valid("\xff", 1));
    assert_false(names_valid("a\0b", 3)); /* an embedded NUL */
    assert_false(names_valid("\t", 1));
    assert_false(names_valid("a\n", 2));
    for (unsigned c = 0; c < 256; c++) {
        char ch = (char)c;
        assert_int_equal(names_valid(&ch, 1), c >= 0x21 && c <= 0x7e);
    }
}

static void test_names_valid_reads_only_len_bytes(void **state)
{
    (void)state;
    struct guard g;
    guard_init(&g, SNOW_NAME_MAX);
    char name[SNOW_NAME_MAX];
    memset(name, 'z', sizeof name);
    for (size_t len = 1; len <= SNOW_NAME_MAX; len++) {
        const char *p = (const char *)guard_place(&g, name, len);
        assert_true(names_valid(p, len));
    }
    guard_free(&g);
}

/* ---- put, get, del ----------------------------------------------------------- */

static void test_names_put_get_del(void **state)
{
    (void)state;
    struct names m = { 0 };
    snow_pid a = make_pid(1, 1, 10), b = make_pid(2, 1, 11);

    assert_int_equal(names_get(&m, "lobby", 5), 0);
    assert_false(names_del(&m, "lobby", 5, a));
    assert_int_equal(names_put(&m, "lobby", 5, a), 0);
    assert_int_equal(names_put(&m, "chat", 4, b), 0);
    assert_int_equal(m.count, 2);
    assert_int_equal(names_get(&m, "lobby", 5), a);
    assert_int_equal(names_get(&m, "chat", 4), b);
    assert_int_equal(names_get(&m, "lobb", 4), 0);
    assert_int_equal(names_get(&m, "lobbyx", 6), 0);
    assert_int_equal(names_get(&m, "", 0), 0);
    check_table(&m);

    assert_true(names_del(&m, "lobby", 5, a));
    assert_int_equal(names_get(&m, "lobby", 5), 0);
    assert_int_equal(names_get(&m, "chat", 4), b);
    assert_false(names_del(&m, "lobby", 5, a));
    assert_int_equal(m.count, 1);
    /* a freed name can be taken again, by anyone */
    assert_int_equal(names_put(&m, "lobby", 5, b), 0);
    assert_int_equal(names_get(&m, "lobby", 5), b);
    check_table(&m);
    names_free(&m);
    assert_null(m.slots);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.count, 0);
}

static void test_names_put_taken_name_gives_eexist(void **state)
{
    (void)state;
    struct names m = { 0 };
    snow_pid a = make_pid(1, 1, 1), b = make_pid(1, 1, 2);

    assert_int_equal(names_put(&m, "svc", 3, a), 0);
    assert_int_equal(names_put(&m, "svc", 3, b), -SNOW_EEXIST);
    assert_int_equal(names_put(&m, "svc", 3, a), -SNOW_EEXIST);
    assert_int_equal(names_get(&m, "svc", 3), a);
    assert_int_equal(m.count, 1);
    /* the same pid may hold several names: the map does not judge */
    assert_int_equal(names_put(&m, "svc2", 4, a), 0);
    check_table(&m);
    names_free(&m);
}

static void test_names_put_refuses_bad_name_or_zero_pid(void **state)
{
    (void)state;
    struct names m = { 0 };
    char long_name[SNOW_NAME_MAX + 1];
    memset(long_name, 'n', sizeof long_name);

    assert_int_equal(names_put(&m, "", 0, 5), -SNOW_EINVAL);
    assert_int_equal(names_put(&m, long_name, SNOW_NAME_MAX + 1, 5),
                     -SNOW_EINVAL);
    assert_int_equal(names_put(&m, "a b", 3, 5), -SNOW_EINVAL);
    assert_int_equal(names_put(&m, "del\x7f", 4, 5), -SNOW_EINVAL);
    assert_int_equal(names_put(&m, "\xc3\xa9", 2, 5), -SNOW_EINVAL);
    assert_int_equal(names_put(&m, "zero", 4, 0), -SNOW_EINVAL);
    assert_int_equal(m.count, 0);
    assert_int_equal(names_put(&m, long_name, SNOW_NAME_MAX, 5), 0);
    assert_int_equal(names_get(&m, long_name, SNOW_NAME_MAX), 5);
    assert_int_equal(names_get(&m, long_name, SNOW_NAME_MAX + 1), 0);
    check_table(&m);
    names_free(&m);
}

static void test_names_del_needs_the_owning_pid(void **state)
{
    (void)state;
    struct names m = { 0 };
    snow_pid a = make_pid(3, 7, 1);

    assert_int_equal(names_put(&m, "ticker", 6, a), 0);
    assert_false(names_del(&m, "ticker", 6, a + 1));
    assert_false(names_del(&m, "ticker", 6, 0));
    assert_false(names_del(&m, "ticke", 5, a));
    assert_int_equal(names_get(&m, "ticker", 6), a);
    assert_true(names_del(&m, "ticker", 6, a));
    assert_int_equal(m.count, 0);
    names_free(&m);
}

/* Names arrive as bytes inside IPC frames: no NUL after them.  The map
 * must read exactly len bytes, and keep a NUL-terminated copy. */
static void test_names_take_unterminated_names(void **state)
{
    (void)state;
    struct names m = { 0 };
    struct guard g;
    guard_init(&g, 16);

    const char *p = (const char *)guard_place(&g, "players", 7);
    assert_int_equal(names_put(&m, p, 7, 42), 0);
    assert_int_equal(names_get(&m, p, 7), 42);
    assert_int_equal(names_put(&m, p, 7, 43), -SNOW_EEXIST);
    assert_int_equal(names_get(&m, "players", 7), 42);
    /* a prefix of a longer buffer is its own name */
    const char *q = (const char *)guard_place(&g, "playersXYZ", 10);
    assert_int_equal(names_get(&m, q, 7), 42);
    assert_int_equal(names_put(&m, q, 10, 44), 0);
    assert_true(names_del(&m, q, 7, 42));
    assert_int_equal(names_get(&m, "playersXYZ", 10), 44);

    size_t i;
    for (i = 0; i < m.cap && !m.slots[i].name; i++)
        ;
    assert_true(i < m.cap);
    assert_int_equal(m.slots[i].len, 10);
    assert_string_equal(m.slots[i].name, "playersXYZ");
    assert_ptr_not_equal(m.slots[i].name, q);   /* a copy */
    guard_free(&g);
    names_free(&m);
}

/* ---- growth ------------------------------------------------------------------ */

static void test_names_grow_to_10000_names(void **state)
{
    (void)state;
    struct names m = { 0 };
    char name[32];

    for (uint32_t i = 0; i < 10000; i++) {
        int n = snprintf(name, sizeof name, "actor-%u", i);
        assert_int_equal(names_put(&m, name, (size_t)n, make_pid(i % 7, 1,
                                   i + 1)), 0);
    }
    assert_int_equal(m.count, 10000);
    assert_true(m.cap >= 10000 * 10 / 7);
    check_table(&m);
    for (uint32_t i = 0; i < 10000; i++) {
        int n = snprintf(name, sizeof name, "actor-%u", i);
        assert_int_equal(names_get(&m, name, (size_t)n),
                         make_pid(i % 7, 1, i + 1));
    }
    assert_int_equal(names_get(&m, "actor-10000", 11), 0);

    /* delete every odd one: the even ones must all stay reachable */
    for (uint32_t i = 1; i < 10000; i += 2) {
        int n = snprintf(name, sizeof name, "actor-%u", i);
        assert_true(names_del(&m, name, (size_t)n, make_pid(i % 7, 1, i + 1)));
    }
    assert_int_equal(m.count, 5000);
    check_table(&m);
    for (uint32_t i = 0; i < 10000; i++) {
        int n = snprintf(name, sizeof name, "actor-%u", i);
        assert_int_equal(names_get(&m, name, (size_t)n),
                         i % 2 ? 0 : make_pid(i % 7, 1, i + 1));
    }
    names_free(&m);
}

/* Random puts and deletes over few names in a small table, checked
 * against a plain array: clusters wrap around the end of the table and
 * deletions shift them back, which is where open addressing breaks. */
static void test_names_random_ops_match_a_reference(void **state)
{
    (void)state;
    enum { POOL = 24 };
    struct names m = { 0 };
    snow_pid ref[POOL] = { 0 };
    char names[POOL][16];
    uint64_t x = 88172645463325252ULL;

    for (int i = 0; i < POOL; i++)
        snprintf(names[i], sizeof names[i], "n%u", (unsigned)i);
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int i = (int)(x % POOL);
        size_t len = strlen(names[i]);
        snow_pid pid = (x >> 8) % 3 + 1;
        if ((x >> 20) & 1) {
            int rc = names_put(&m, names[i], len, pid);
            assert_int_equal(rc, ref[i] ? -SNOW_EEXIST : 0);
            if (!ref[i])
                ref[i] = pid;
        } else {
            bool gone = names_del(&m, names[i], len, pid);
            assert_int_equal(gone, ref[i] == pid);
            if (gone)
                ref[i] = 0;
        }
        if (step % 97 == 0) {
            size_t live = 0;
            for (int k = 0; k < POOL; k++) {
                assert_int_equal(names_get(&m, names[k], strlen(names[k])),
                                 ref[k]);
                live += ref[k] != 0;
            }
            assert_int_equal(m.count, live);
        }
    }
    check_table(&m);
    names_free(&m);
}

/* ---- names_del_matching and names_each ------------------------------------- */

struct seen {
    size_t n;
    snow_pid mask, value;
    bool bad;
    char last[SNOW_NAME_MAX + 1];
};

static void note_removed(void *arg, const char *name, size_t len,
                         snow_pid pid)
{
    struct seen *s = arg;
    s->n++;
    if ((pid & s->mask) != s->value || strlen(name) != len ||
        !names_valid(name, len))
        s->bad = true;
    memcpy(s->last, name, len + 1);
}

static void test_names_del_matching_by_slot_and_generation(void **state)
{
    (void)state;
    struct names m = { 0 };
    char name[32];
    /* node 8 bits | slot 8 | generation 16 | serial 32 */
    snow_pid mask = (0xffULL << 48) | (0xffffULL << 32);
    snow_pid value = (3ULL << 48) | (5ULL << 32);
    size_t doomed = 0;

    for (uint32_t i = 0; i < 3000; i++) {
        unsigned slot = i % 4, gen = 4 + i % 3;
        int n = snprintf(name, sizeof name, "svc.%u", i);
        snow_pid pid = make_pid(slot, gen, i + 1);
        assert_int_equal(names_put(&m, name, (size_t)n, pid), 0);
        doomed += (pid & mask) == value;
    }
    assert_true(doomed > 0);

    struct seen s = { .mask = mask, .value = value };
    assert_int_equal(names_del_matching(&m, mask, value, note_removed, &s),
                     doomed);
    assert_int_equal(s.n, doomed);
    assert_false(s.bad);
    assert_int_equal(m.count, 3000 - doomed);
    check_table(&m);
    for (uint32_t i = 0; i < 3000; i++) {
        unsigned slot = i % 4, gen = 4 + i % 3;
        int n = snprintf(name, sizeof name, "svc.%u", i);
        snow_pid pid = make_pid(slot, gen, i + 1);
        assert_int_equal(names_get(&m, name, (size_t)n),
                         (pid & mask) == value ? 0 : pid);
    }
    /* nothing left to match; no callback is fine */
    assert_int_equal(names_del_matching(&m, mask, value, NULL, NULL), 0);
    /* the same slot, the next generation, without a callback */
    value = (3ULL << 48) | (6ULL << 32);
    size_t left = m.count;
    size_t gone = names_del_matching(&m, mask, value, NULL, NULL);
    assert_true(gone > 0);
    assert_int_equal(m.count, left - gone);
    check_table(&m);
    names_free(&m);
}

/* The slot a name lands in when it is alone in a 16-slot table, i.e.
 * its home there. */
static size_t home16(const char *name)
{
    struct names m = { 0 };
    size_t i;
    assert_int_equal(names_put(&m, name, strlen(name), 1), 0);
    assert_int_equal(m.cap, 16);
    for (i = 0; !m.slots[i].name; i++)
        ;
    names_free(&m);
    return i;
}

/* Eleven names whose homes are the last three slots and the first one
 * of a 16-slot table: one long cluster that wraps around its end. */
static void pick_wrapping_names(char names[11][16])
{
    unsigned found = 0;
    for (unsigned k = 0; found < 11; k++) {
        assert_true(k < 100000);
        snprintf(names[found], 16, "w%u", k);
        size_t h = home16(names[found]);
        if (h >= 13 || h == 0)
            found++;
    }
}

static void test_names_del_matching_in_a_wrapping_cluster(void **state)
{
    (void)state;
    char names[11][16];
    pick_wrapping_names(names);

    /* every other name removed, for both phases of the pattern, and
     * every single name removed on its own */
    for (unsigned round = 0; round < 13; round++) {
        struct names m = { 0 };
        for (unsigned i = 0; i < 11; i++) {
            unsigned doomed = round < 2 ? (i + round) % 2 : i == round - 2;
            assert_int_equal(names_put(&m, names[i], strlen(names[i]),
                                       make_pid(doomed, 0, i + 1)), 0);
        }
        assert_int_equal(m.cap, 16);
        /* the cluster really wraps: the last slot and the first are used */
        assert_non_null(m.slots[15].name);
        assert_non_null(m.slots[0].name);

        size_t want = round == 0 ? 5 : round == 1 ? 6 : 1;
        assert_int_equal(names_del_matching(&m, 0xffULL << 48, 1ULL << 48,
                                            NULL, NULL), want);
        check_table(&m);
        for (unsigned i = 0; i < 11; i++) {
            unsigned doomed = round < 2 ? (i + round) % 2 : i == round - 2;
            assert_int_equal(names_get(&m, names[i], strlen(names[i])),
                             doomed ? 0 : make_pid(0, 0, i + 1));
        }
        names_free(&m);
    }
}

static void test_names_del_one_by_one_in_a_wrapping_cluster(void **state)
{
    (void)state;
    char names[11][16];
    pick_wrapping_names(names);

    /* remove in every rotation of the order: each removal shifts the
     * rest of the cluster back across the end of the table */
    for (unsigned first = 0; first < 11; first++) {
        struct names m = { 0 };
        for (unsigned i = 0; i < 11; i++)
            assert_int_equal(names_put(&m, names[i], strlen(names[i]),
                                       i + 1), 0);
        for (unsigned k = 0; k < 11; k++) {
            unsigned i = (first + k) % 11;
            assert_true(names_del(&m, names[i], strlen(names[i]), i + 1));
            check_table(&m);
            for (unsigned j = 0; j < 11; j++) {
                bool gone = (j + 11 - first) % 11 <= k;
                assert_int_equal(names_get(&m, names[j], strlen(names[j])),
                                 gone ? 0 : j + 1);
            }
        }
        assert_int_equal(m.count, 0);
        names_free(&m);
    }
}

static void test_names_del_matching_on_empty_map(void **state)
{
    (void)state;
    struct names m = { 0 };
    assert_int_equal(names_del_matching(&m, 0, 0, NULL, NULL), 0);
    assert_int_equal(names_put(&m, "a", 1, 9), 0);
    assert_true(names_del(&m, "a", 1, 9));
    assert_int_equal(names_del_matching(&m, 0, 0, NULL, NULL), 0);
    names_free(&m);
}

struct tally {
    size_t n;
    uint64_t pid_sum;
    bool bad;
};

static void count_entry(void *arg, const char *name, size_t len,
                        snow_pid pid)
{
    struct tally *t = arg;
    t->n++;
    t->pid_sum += pid;
    if (strlen(name) != len || !names_valid(name, len))
        t->bad = true;
}

static void test_names_each_visits_every_entry_once(void **state)
{
    (void)state;
    struct names m = { 0 };
    struct tally t = { 0 };
    char name[16];
    uint64_t sum = 0;

    names_each(&m, count_entry, &t);
    assert_int_equal(t.n, 0);
    for (uint32_t i = 1; i <= 500; i++) {
        int n = snprintf(name, sizeof name, "e%u", i);
        assert_int_equal(names_put(&m, name, (size_t)n, i), 0);
        sum += i;
    }
    names_each(&m, count_entry, &t);
    assert_int_equal(t.n, 500);
    assert_int_equal(t.pid_sum, sum);
    assert_false(t.bad);
    names_free(&m);
}

static void test_names_free_is_safe_on_zeroed_and_twice(void **state)
{
    (void)state;
    struct names m = { 0 };
    names_free(&m);
    assert_int_equal(names_put(&m, "x", 1, 1), 0);
    names_free(&m);
    names_free(&m);
    assert_int_equal(names_get(&m, "x", 1), 0);
    assert_int_equal(names_put(&m, "x", 1, 2), 0);
    assert_int_equal(names_get(&m, "x", 1), 2);
    names_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_valid_lengths),
        cmocka_unit_test(test_names_valid_bytes),
        cmocka_unit_test(test_names_valid_reads_only_len_bytes),
        cmocka_unit_test(test_names_put_get_del),
        cmocka_unit_test(test_names_put_taken_name_gives_eexist),
        cmocka_unit_test(test_names_put_refuses_bad_name_or_zero_pid),
        cmocka_unit_test(test_names_del_needs_the_owning_pid),
        cmocka_unit_test(test_names_take_unterminated_names),
        cmocka_unit_test(test_names_grow_to_10000_names),
        cmocka_unit_test(test_names_random_ops_match_a_reference),
        cmocka_unit_test(test_names_del_matching_by_slot_and_generation),
        cmocka_unit_test(test_names_del_matching_in_a_wrapping_cluster),
        cmocka_unit_test(test_names_del_one_by_one_in_a_wrapping_cluster),
        cmocka_unit_test(test_names_del_matching_on_empty_map),
        cmocka_unit_test(test_names_each_visits_every_entry_once),
        cmocka_unit_test(test_names_free_is_safe_on_zeroed_and_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
