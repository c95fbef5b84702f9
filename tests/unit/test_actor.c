/*
 * test_actor.c - unit tests for the actor runtime (src/actor.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_actor.c \
 *            src/actor.c -lcmocka -o /tmp/test_actor && /tmp/test_actor
 *
 * The runtime is driven without a loop, through recording hooks: every
 * deliver, remote call and exit is kept in `rec` for the test to check.
 * Each test gets a fresh runtime (setup) and tears it down with
 * actor_rt_fini (teardown), so a leak anywhere shows up under ASan.
 * Actors still alive at teardown are static: fini forgets them but still
 * reads their mailboxes, so their memory must outlive the test body.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cmocka.h>

#include "actor.h"

#define NODE 1
#define SLOT 2
#define GEN 3
#define LIMIT 8
#define BUDGET 4

/* ---- recording hooks ---------------------------------------------------- */

#define MAX_REC 512

struct delivery {
    struct actor *a;
    enum snow_msg_type type;
    uint32_t tag;
    snow_pid from;
    size_t len;
    char data[72];          /* first bytes, NUL-terminated */
};

struct remote_call {
    snow_pid a, b;          /* (to, from) or (watcher, target) */
    uint32_t tag;
    size_t len;
    char reason[72];
};

struct exit_call {
    struct actor *a;
    snow_pid pid;
    char reason[72];
    char name[72];          /* the name actor_name gave during the hook */
    bool had_name;
};

static struct {
    struct delivery d[MAX_REC];
    size_t nd;              /* all deliveries, even those not kept */
    struct remote_call tell[MAX_REC], mon[MAX_REC], demon[MAX_REC],
        down[MAX_REC];
    size_t ntell, nmon, ndemon, ndown;
    struct exit_call exits[MAX_REC];
    size_t nexits;
    int tell_rc;            /* what remote_tell answers */
    /* Optional behaviour of the actors' code, per test. */
    void (*on_deliver)(struct actor *a, const struct snow_msg *msg);
} rec;

static void copy_str(char *dst, size_t cap, const void *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static void hook_deliver(struct actor *a, const struct snow_msg *msg)
{
    if (rec.nd < MAX_REC) {
        struct delivery *d = &rec.d[rec.nd];
        d->a = a;
        d->type = msg->type;
        d->tag = msg->tag;
        d->from = msg->from;
        d->len = msg->len;
        copy_str(d->data, sizeof d->data, msg->data, msg->len);
    }
    rec.nd++;
    if (rec.on_deliver)
        rec.on_deliver(a, msg);
}

static int hook_remote_tell(snow_pid to, snow_pid from,
                            enum snow_msg_type type, uint32_t tag,
                            const void *data, size_t len)
{
    assert_int_equal(type, SNOW_MSG_TELL);
    assert_true(rec.ntell < MAX_REC);
    struct remote_call *c = &rec.tell[rec.ntell++];
    c->a = to;
    c->b = from;
    c->tag = tag;
    c->len = len;
    copy_str(c->reason, sizeof c->reason, data, len);
    return rec.tell_rc;
}

static void record(struct remote_call *arr, size_t *n, snow_pid a, snow_pid b,
                   const char *reason)
{
    assert_true(*n < MAX_REC);
    struct remote_call *c = &arr[(*n)++];
    c->a = a;
    c->b = b;
    copy_str(c->reason, sizeof c->reason, reason ? reason : "",
             reason ? strlen(reason) : 0);
}

static void hook_remote_monitor(snow_pid watcher, snow_pid target)
{
    record(rec.mon, &rec.nmon, watcher, target, NULL);
}

static void hook_remote_demonitor(snow_pid watcher, snow_pid target)
{
    record(rec.demon, &rec.ndemon, watcher, target, NULL);
}

static void hook_remote_down(snow_pid watcher, snow_pid target,
                             const char *reason)
{
    record(rec.down, &rec.ndown, watcher, target, reason);
}

static void hook_exited(struct actor *a, const char *reason)
{
    /* The actor is already unreachable when its owner hears of it. */
    assert_true(a->flags & ACTOR_EXITED);
    assert_null(actor_find(a->pid));
    if (rec.nexits++ >= MAX_REC)
        return;
    struct exit_call *e = &rec.exits[rec.nexits - 1];
    const char *name = actor_name(a);
    e->a = a;
    e->pid = a->pid;
    copy_str(e->reason, sizeof e->reason, reason, strlen(reason));
    e->had_name = name != NULL;
    if (name)
        copy_str(e->name, sizeof e->name, name, strlen(name));
}

static const struct actor_hooks hooks = {
    .deliver = hook_deliver,
    .remote_tell = hook_remote_tell,
    .remote_monitor = hook_remote_monitor,
    .remote_demonitor = hook_remote_demonitor,
    .remote_down = hook_remote_down,
    .exited = hook_exited,
};

static void rt_start(uint32_t limit, uint32_t budget)
{
    actor_rt_init(&(struct actor_rt_config){
        .node = NODE, .slot = SLOT, .generation = GEN,
        .mailbox_limit = limit, .budget = budget, .hooks = &hooks });
}

static int setup(void **state)
{
    (void)state;
    memset(&rec, 0, sizeof rec);
    rt_start(LIMIT, BUDGET);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    actor_rt_fini();
    return 0;
}

/* Restarts the runtime with other limits. */
static void rt_restart(uint32_t limit, uint32_t budget)
{
    actor_rt_fini();
    rt_start(limit, budget);
}

static void start(struct actor *a)
{
    memset(a, 0xa5, sizeof *a);     /* actor_start must not trust it */
    assert_int_equal(actor_start(a, ACTOR_SERVICE), 0);
}

static int tell(snow_pid from, snow_pid to, uint32_t tag, const char *s)
{
    return actor_tell(from, to, SNOW_MSG_TELL, tag, s, s ? strlen(s) : 0);
}

/* A pid of another worker (slot 5, generation 7) on this node. */
static snow_pid remote_pid(unsigned slot, unsigned gen, uint32_t serial)
{
    return actor_pid_make(NODE, slot, gen, serial);
}

/* ---- pids --------------------------------------------------------------- */

static void test_actor_pid_fields_round_trip(void **state)
{
    (void)state;
    static const struct { unsigned node, slot, gen; uint32_t serial; } v[] = {
        { 0, 0, 0, 1 }, { 1, 2, 3, 4 }, { 255, 255, 65535, UINT32_MAX },
        { 7, 0, 1, 0x80000000u }, { 0, 128, 256, 12345 },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        snow_pid p = actor_pid_make(v[i].node, v[i].slot, v[i].gen,
                                    v[i].serial);
        assert_int_equal(actor_pid_node(p), v[i].node);
        assert_int_equal(actor_pid_slot(p), v[i].slot);
        assert_int_equal(actor_pid_generation(p), v[i].gen);
        assert_int_equal(actor_pid_serial(p), v[i].serial);
        assert_int_equal(snow_pid_worker(p), v[i].slot);
    }
    assert_int_equal(actor_pid_make(1, 2, 3, 4), 0x0102000300000004ull);
    /* Fields wider than their bits do not spill into their neighbours. */
    assert_int_equal(actor_pid_make(0x101, 0x102, 0x10003, 4),
                     actor_pid_make(1, 2, 3, 4));
}

static void test_actor_pid_is_local_only_for_own_worker_generation(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    assert_true(actor_pid_is_local(a.pid));
    assert_int_equal(actor_pid_node(a.pid), NODE);
    assert_int_equal(actor_pid_slot(a.pid), SLOT);
    assert_int_equal(actor_pid_generation(a.pid), GEN);
    assert_int_equal(actor_pid_serial(a.pid), 1);
    assert_true(actor_pid_is_local(actor_pid_make(NODE, SLOT, GEN, 999)));
    assert_false(actor_pid_is_local(actor_pid_make(NODE, SLOT, GEN + 1, 1)));
    assert_false(actor_pid_is_local(actor_pid_make(NODE, SLOT, GEN - 1, 1)));
    assert_false(actor_pid_is_local(actor_pid_make(NODE, SLOT + 1, GEN, 1)));
    assert_false(actor_pid_is_local(actor_pid_make(NODE + 1, SLOT, GEN, 1)));
    assert_false(actor_pid_is_local(0));
}

static void test_actor_pids_never_repeat_across_starts_and_exits(void **state)
{
    (void)state;
    enum { ROUNDS = 200, PER = 100 };
    struct actor *as = calloc(PER, sizeof *as);
    snow_pid last = 0;
    assert_non_null(as);
    for (int r = 0; r < ROUNDS; r++) {
        /* The same memory again and again: pids must still be new. */
        for (int i = 0; i < PER; i++) {
            assert_int_equal(actor_start(&as[i], ACTOR_CONN), 0);
            assert_true(as[i].pid > last);   /* serials only grow */
            assert_true(actor_pid_is_local(as[i].pid));
            last = as[i].pid;
        }
        for (int i = 0; i < PER; i++)
            actor_exit(&as[i], "normal");
        actor_run(0);   /* the point after which the memory may be reused */
    }
    assert_int_equal(actor_pid_serial(last), ROUNDS * PER);
    assert_int_equal(actor_rt_stats()->actors, 0);
    free(as);
}

static void test_actor_table_grows_with_thousands_of_actors(void **state)
{
    (void)state;
    enum { N = 5000 };
    struct actor *as = calloc(N, sizeof *as);
    assert_non_null(as);
    for (int i = 0; i < N; i++)
        assert_int_equal(actor_start(&as[i], ACTOR_CONN), 0);
    assert_int_equal(actor_rt_stats()->actors, N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(actor_find(as[i].pid), &as[i]);

    /* Removal in the middle of probe runs must keep the rest findable. */
    for (int i = 0; i < N; i += 2)
        actor_exit(&as[i], "normal");
    actor_run(0);
    assert_int_equal(actor_rt_stats()->actors, N / 2);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(actor_find(as[i].pid), i % 2 ? &as[i] : NULL);

    /* And the table keeps working when it fills again. */
    snow_pid old[N / 2];
    for (int i = 0; i < N; i += 2) {
        old[i / 2] = as[i].pid;
        assert_int_equal(actor_start(&as[i], ACTOR_CONN), 0);
    }
    for (int i = 0; i < N; i++)
        assert_ptr_equal(actor_find(as[i].pid), &as[i]);
    for (int i = 0; i < N / 2; i++)
        assert_null(actor_find(old[i]));
    assert_int_equal(tell(0, as[N - 1].pid, 1, "x"), 0);
    assert_int_equal(actor_run(10), 1);
    assert_ptr_equal(rec.d[0].a, &as[N - 1]);
    /* Forgotten by fini, not exited: the owner frees them afterwards. */
    actor_rt_fini();
    free(as);
}

static void test_actor_find_rejects_zero_and_foreign_pids(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    assert_null(actor_find(0));
    assert_null(actor_find(actor_pid_make(NODE, SLOT, GEN, 0)));
    assert_null(actor_find(actor_pid_make(NODE, SLOT, GEN + 1,
                                          actor_pid_serial(a.pid))));
    assert_null(actor_find(a.pid + 1));
    assert_ptr_equal(actor_find(a.pid), &a);
}

/* ---- telling ------------------------------------------------------------ */

static void test_actor_mailbox_is_fifo_per_sender(void **state)
{
    (void)state;
    static struct actor a, s1, s2;
    start(&a);
    start(&s1);
    start(&s2);
    char buf[16];
    for (uint32_t i = 0; i < LIMIT; i++) {
        snprintf(buf, sizeof buf, "m%u", i);
        assert_int_equal(tell(i % 2 ? s2.pid : s1.pid, a.pid, i, buf), 0);
    }
    assert_int_equal(a.nmsgs, LIMIT);
    assert_int_equal(actor_rt_stats()->queued, LIMIT);
    assert_true(actor_pending());
    assert_int_equal(actor_run(100), LIMIT);
    assert_false(actor_pending());
    assert_int_equal(actor_rt_stats()->queued, 0);
    assert_int_equal(actor_rt_stats()->delivered, LIMIT);
    for (uint32_t i = 0; i < LIMIT; i++) {
        snprintf(buf, sizeof buf, "m%u", i);
        assert_ptr_equal(rec.d[i].a, &a);
        assert_int_equal(rec.d[i].type, SNOW_MSG_TELL);
        assert_int_equal(rec.d[i].tag, i);
        assert_int_equal(rec.d[i].from, i % 2 ? s2.pid : s1.pid);
        assert_string_equal(rec.d[i].data, buf);
    }
    assert_int_equal(a.nmsgs, 0);
    assert_null(a.head);
    assert_false(a.flags & ACTOR_RUNNABLE);
}

static void test_actor_full_mailbox_refuses_with_efull_and_counts(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    for (int i = 0; i < LIMIT; i++)
        assert_int_equal(tell(0, a.pid, 1, "fill"), 0);
#ifdef __GLIBC__
    size_t before = mallinfo2().uordblks;
#endif
    for (int i = 0; i < 10000; i++)
        assert_int_equal(tell(0, a.pid, 2, "over"), -SNOW_EFULL);
#ifdef __GLIBC__
    /* A refused tell allocates nothing (0 == 0 under sanitizers, whose
     * allocator glibc does not see). */
    assert_true(mallinfo2().uordblks <= before);
#endif
    assert_int_equal(actor_rt_stats()->mailbox_overflows, 10000);
    assert_int_equal(actor_rt_stats()->queued, LIMIT);
    assert_int_equal(a.nmsgs, LIMIT);

    /* Draining one message makes room for one more. */
    assert_int_equal(actor_run(1), 1);
    assert_int_equal(tell(0, a.pid, 3, "again"), 0);
    assert_int_equal(tell(0, a.pid, 3, "again"), -SNOW_EFULL);
    assert_int_equal(actor_run(100), LIMIT);
    for (size_t i = 0; i < rec.nd; i++)
        assert_int_not_equal(rec.d[i].tag, 2);
}

static void test_actor_timer_and_down_messages_ignore_mailbox_limit(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    for (int i = 0; i < LIMIT; i++)
        assert_int_equal(tell(0, a.pid, 1, "fill"), 0);
    assert_int_equal(actor_tell(a.pid, a.pid, SNOW_MSG_TIMER, 7, NULL, 0), 0);
    assert_int_equal(actor_tell(5, a.pid, SNOW_MSG_DOWN, 0, "x", 1), 0);
    assert_int_equal(actor_monitor(&a, actor_pid_make(NODE, SLOT, GEN, 999)),
                     0);
    assert_int_equal(a.nmsgs, LIMIT);       /* only tells count */
    assert_int_equal(actor_rt_stats()->queued, LIMIT + 3);
    assert_int_equal(actor_rt_stats()->mailbox_overflows, 0);
    assert_int_equal(actor_run(100), LIMIT + 3);
    assert_int_equal(rec.d[LIMIT].type, SNOW_MSG_TIMER);
    assert_int_equal(rec.d[LIMIT + 1].type, SNOW_MSG_DOWN);
    assert_int_equal(rec.d[LIMIT + 2].type, SNOW_MSG_DOWN);
    assert_string_equal(rec.d[LIMIT + 2].data, "noproc");
}

static void test_actor_tell_to_ended_local_actor_is_enoent(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    snow_pid pid = a.pid;
    actor_exit(&a, "normal");
    assert_int_equal(tell(0, pid, 1, "late"), -SNOW_ENOENT);
    /* Never started, and not a pid at all. */
    assert_int_equal(tell(0, actor_pid_make(NODE, SLOT, GEN, 77), 1, "x"),
                     -SNOW_ENOENT);
    assert_int_equal(tell(0, 0, 1, "x"), -SNOW_ENOENT);
    assert_int_equal(rec.ntell, 0);
    assert_int_equal(actor_rt_stats()->queued, 0);
}

static void test_actor_tell_over_msg_max_is_etoobig(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    unsigned char *big = malloc(SNOW_MSG_MAX + 1);
    assert_non_null(big);
    for (size_t i = 0; i <= SNOW_MSG_MAX; i++)
        big[i] = (unsigned char)(i * 7 + 1);
    assert_int_equal(actor_tell(0, a.pid, SNOW_MSG_TELL, 1, big,
                                SNOW_MSG_MAX + 1), -SNOW_ETOOBIG);
    /* Too big for another worker too, before any hook is asked. */
    assert_int_equal(actor_tell(0, remote_pid(5, 7, 1), SNOW_MSG_TELL, 1, big,
                                SNOW_MSG_MAX + 1), -SNOW_ETOOBIG);
    assert_int_equal(rec.ntell, 0);

    /* Exactly SNOW_MSG_MAX arrives whole. */
    assert_int_equal(actor_tell(0, a.pid, SNOW_MSG_TELL, 2, big, SNOW_MSG_MAX),
                     0);
    assert_int_equal(actor_run(10), 1);
    assert_int_equal(rec.d[0].len, SNOW_MSG_MAX);
    assert_memory_equal(rec.d[0].data, big, sizeof rec.d[0].data - 1);
    free(big);
}

static void check_big_payload(struct actor *a, const struct snow_msg *msg)
{
    (void)a;
    const unsigned char *p = msg->data;
    for (size_t i = 0; i < msg->len; i++)
        if (p[i] != (unsigned char)(i * 13 + 5))
            fail_msg("byte %zu of a %zu-byte message differs", i, msg->len);
}

static void test_actor_messages_of_every_size_arrive_intact(void **state)
{
    (void)state;
    rt_restart(1000, BUDGET);
    static struct actor a;
    start(&a);
    unsigned char *p = malloc(SNOW_MSG_MAX);
    assert_non_null(p);
    for (size_t i = 0; i < SNOW_MSG_MAX; i++)
        p[i] = (unsigned char)(i * 13 + 5);
    /* Around the small-block boundary, and big ones. */
    static const size_t sizes[] = { 0, 1, 63, 64, 191, 192, 193, 223, 224,
                                    225, 256, 4096, SNOW_MSG_MAX };
    rec.on_deliver = check_big_payload;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            assert_int_equal(actor_tell(0, a.pid, SNOW_MSG_TELL, (uint32_t)i,
                                        p, sizes[i]), 0);
        assert_int_equal(actor_run(1000), sizeof sizes / sizeof sizes[0]);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(rec.d[i].len, sizes[i]);
        assert_int_equal(rec.d[i].tag, i);
    }
    free(p);
}

static void test_actor_tell_checks_arguments(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    assert_int_equal(actor_tell(0, a.pid, SNOW_MSG_TELL, 1, NULL, 3),
                     -SNOW_EINVAL);
    assert_int_equal(actor_tell(0, remote_pid(5, 7, 1), SNOW_MSG_TELL, 1,
                                NULL, 3), -SNOW_EINVAL);
    assert_int_equal(actor_tell(0, a.pid, (enum snow_msg_type)0, 1, "x", 1),
                     -SNOW_EINVAL);
    assert_int_equal(actor_tell(0, a.pid, (enum snow_msg_type)9, 1, "x", 1),
                     -SNOW_EINVAL);
    assert_int_equal(actor_rt_stats()->queued, 0);
    /* No data and no length is an empty message. */
    assert_int_equal(actor_tell(0, a.pid, SNOW_MSG_TELL, 1, NULL, 0), 0);
    assert_int_equal(actor_run(10), 1);
    assert_int_equal(rec.d[0].len, 0);
}

static void test_actor_tell_to_other_worker_calls_remote_tell(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    snow_pid other = remote_pid(5, 7, 42);
    snow_pid old_gen = actor_pid_make(NODE, SLOT, GEN - 1, 1);

    assert_int_equal(tell(a.pid, other, 9, "hello"), 0);
    rec.tell_rc = -SNOW_EFULL;
    assert_int_equal(tell(a.pid, old_gen, 10, "full"), -SNOW_EFULL);
    assert_int_equal(rec.ntell, 2);
    assert_int_equal(rec.tell[0].a, other);
    assert_int_equal(rec.tell[0].b, a.pid);
    assert_int_equal(rec.tell[0].tag, 9);
    assert_int_equal(rec.tell[0].len, 5);
    assert_string_equal(rec.tell[0].reason, "hello");
    assert_int_equal(rec.tell[1].a, old_gen);
    assert_false(actor_pending());
}

/* ---- scheduling --------------------------------------------------------- */

static void test_actor_flooded_actor_does_not_starve_another(void **state)
{
    (void)state;
    rt_restart(20000, BUDGET);
    static struct actor flood, quiet;
    start(&flood);
    start(&quiet);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(tell(0, flood.pid, 1, "f"), 0);
    assert_int_equal(tell(0, quiet.pid, 2, "q"), 0);
    assert_int_equal(actor_run(BUDGET * 2), BUDGET * 2);
    bool got = false;
    for (size_t i = 0; i < rec.nd; i++)
        got |= rec.d[i].a == &quiet;
    assert_true(got);
    assert_int_equal(actor_rt_stats()->queued, 10000 - (BUDGET * 2 - 1));
    while (actor_pending())
        actor_run(1000);
    assert_int_equal(rec.nd, 10001);
}

static void test_actor_run_gives_each_actor_its_budget_in_turn(void **state)
{
    (void)state;
    static struct actor a, b;
    start(&a);
    start(&b);
    for (int i = 0; i < LIMIT; i++) {
        assert_int_equal(tell(0, a.pid, (uint32_t)i, "a"), 0);
        assert_int_equal(tell(0, b.pid, (uint32_t)i, "b"), 0);
    }
    /* max cuts the turn short: only three of a's messages. */
    assert_int_equal(actor_run(3), 3);
    assert_true(actor_pending());
    /* a had its (short) turn and went to the back: b goes first now. */
    assert_int_equal(actor_run(2 * BUDGET), 2 * BUDGET);
    assert_int_equal(actor_run(100), 2 * LIMIT - 3 - 2 * BUDGET);
    assert_false(actor_pending());
    assert_int_equal(actor_run(100), 0);

    static const char order[] = "aaa" "bbbb" "aaaa" "bbbb" "a";
    assert_int_equal(rec.nd, strlen(order));
    uint32_t next_a = 0, next_b = 0;
    for (size_t i = 0; i < rec.nd; i++) {
        struct actor *want = order[i] == 'a' ? &a : &b;
        assert_ptr_equal(rec.d[i].a, want);
        assert_int_equal(rec.d[i].tag, want == &a ? next_a++ : next_b++);
    }
}

static void exit_on_tag_2(struct actor *a, const struct snow_msg *msg)
{
    if (msg->tag == 2) {
        actor_exit(a, "crashed: tag 2");
        /* Telling itself after exiting fails: it is unreachable. */
        assert_int_equal(tell(a->pid, a->pid, 9, "x"), -SNOW_ENOENT);
    }
}

static void test_actor_exit_inside_deliver_stops_delivery(void **state)
{
    (void)state;
    static struct actor w, other;
    struct actor *a = malloc(sizeof *a);
    assert_non_null(a);
    start(a);
    start(&w);
    start(&other);
    assert_int_equal(actor_monitor(&w, a->pid), 0);
    for (uint32_t i = 1; i <= 5; i++)
        assert_int_equal(tell(0, a->pid, i, "m"), 0);
    assert_int_equal(tell(0, other.pid, 7, "o"), 0);
    rec.on_deliver = exit_on_tag_2;
    /* a: 1, 2 (exits); other: 7; w: its DOWN. */
    assert_int_equal(actor_run(100), 4);
    assert_int_equal(rec.nd, 4);
    assert_int_equal(rec.d[1].tag, 2);
    assert_ptr_equal(rec.d[2].a, &other);
    assert_ptr_equal(rec.d[3].a, &w);
    assert_int_equal(rec.d[3].type, SNOW_MSG_DOWN);
    assert_string_equal(rec.d[3].data, "crashed: tag 2");
    assert_int_equal(rec.nexits, 1);
    assert_ptr_equal(rec.exits[0].a, a);
    assert_string_equal(rec.exits[0].reason, "crashed: tag 2");
    assert_int_equal(actor_rt_stats()->queued, 0);
    assert_false(actor_pending());
    assert_false(a->flags & ACTOR_RUNNABLE);
    /* actor_run has returned: the owner may free the memory now, and
     * nothing in the runtime may touch it again (ASan checks). */
    free(a);
    assert_int_equal(tell(0, w.pid, 1, "x"), 0);
    assert_int_equal(actor_run(100), 1);
}

static void tell_self_until_3(struct actor *a, const struct snow_msg *msg)
{
    if (msg->tag < 3)
        assert_int_equal(tell(a->pid, a->pid, msg->tag + 1, "again"), 0);
}

static void test_actor_tell_to_self_inside_deliver_is_delivered(void **state)
{
    (void)state;
    static struct actor a, b;
    start(&a);
    start(&b);
    rec.on_deliver = tell_self_until_3;
    assert_int_equal(tell(0, a.pid, 1, "first"), 0);
    assert_int_equal(tell(0, b.pid, 10, "b"), 0);
    assert_int_equal(actor_run(100), 4);
    assert_int_equal(rec.d[0].tag, 1);
    assert_int_equal(rec.d[1].tag, 2);   /* within a's budget */
    assert_int_equal(rec.d[2].tag, 3);
    assert_int_equal(rec.d[3].tag, 10);
    assert_int_equal(rec.d[1].from, a.pid);
    assert_false(actor_pending());
    assert_null(a.run_next);
    assert_false(a.flags & ACTOR_RUNNABLE);
}

static void ping_forever(struct actor *a, const struct snow_msg *msg)
{
    assert_int_equal(tell(a->pid, msg->from, msg->tag + 1, "ping"), 0);
}

static void test_actor_endless_ping_pong_is_bounded_by_max(void **state)
{
    (void)state;
    static struct actor a, b;
    start(&a);
    start(&b);
    rec.on_deliver = ping_forever;
    assert_int_equal(tell(b.pid, a.pid, 0, "ping"), 0);
    assert_int_equal(actor_run(50), 50);
    assert_true(actor_pending());
    assert_int_equal(actor_rt_stats()->queued, 1);
    for (size_t i = 0; i < 50; i++)
        assert_ptr_equal(rec.d[i].a, i % 2 ? &b : &a);
}

static struct actor *victim;

static void exit_victim(struct actor *a, const struct snow_msg *msg)
{
    (void)a;
    (void)msg;
    if (victim) {
        actor_exit(victim, "killed");
        victim = NULL;
    }
}

static void test_actor_exit_of_a_queued_actor_skips_it(void **state)
{
    (void)state;
    static struct actor killer, after;
    struct actor *v = malloc(sizeof *v);
    assert_non_null(v);
    start(&killer);
    start(v);
    start(&after);
    assert_int_equal(tell(0, killer.pid, 1, "k"), 0);
    assert_int_equal(tell(0, v->pid, 2, "v"), 0);
    assert_int_equal(tell(0, after.pid, 3, "a"), 0);
    victim = v;
    rec.on_deliver = exit_victim;
    assert_int_equal(actor_run(100), 2);
    assert_ptr_equal(rec.d[0].a, &killer);
    assert_ptr_equal(rec.d[1].a, &after);
    assert_int_equal(rec.nexits, 1);
    free(v);
    assert_false(actor_pending());
    assert_int_equal(actor_run(100), 0);
}

static void test_actor_exit_outside_run_is_purged_by_next_run(void **state)
{
    (void)state;
    static struct actor a, b, c;
    struct actor *v = malloc(sizeof *v);
    assert_non_null(v);
    start(&a);
    start(v);
    start(&b);
    start(&c);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tell(0, a.pid, 1, "a"), 0);
        assert_int_equal(tell(0, v->pid, 2, "v"), 0);
        assert_int_equal(tell(0, b.pid, 3, "b"), 0);
    }
    actor_exit(v, "closed");
    assert_int_equal(actor_rt_stats()->queued, 6);
    /* The run stops before reaching v, yet must not keep it queued. */
    assert_int_equal(actor_run(1), 1);
    free(v);
    assert_int_equal(tell(0, c.pid, 4, "c"), 0);
    assert_int_equal(actor_run(100), 6);
    for (size_t i = 0; i < rec.nd; i++)
        assert_int_not_equal(rec.d[i].tag, 2);
    assert_ptr_equal(rec.d[rec.nd - 1].a, &c);
}

/* ---- timers ------------------------------------------------------------- */

static void test_actor_one_shot_timer_fires_once_at_its_deadline(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    assert_int_equal(actor_next_deadline(), UINT64_MAX);
    int64_t id = actor_timer_start(&a, 1000, 50, 0, 77);
    assert_true(id > 0);
    assert_int_equal(actor_next_deadline(), 1050);
    assert_int_equal(actor_timers_run(1049), 0);
    assert_false(actor_pending());
    assert_int_equal(actor_timers_run(1050), 1);
    assert_int_equal(actor_next_deadline(), UINT64_MAX);
    assert_int_equal(actor_timers_run(5000), 0);
    assert_int_equal(actor_run(10), 1);
    assert_int_equal(rec.d[0].type, SNOW_MSG_TIMER);
    assert_int_equal(rec.d[0].tag, 77);
    assert_int_equal(rec.d[0].from, a.pid);
    assert_int_equal(rec.d[0].len, 0);
    /* A fired one-shot timer is gone. */
    assert_int_equal(actor_timer_cancel(&a, id), -SNOW_ENOENT);
}

static void test_actor_repeating_timer_rearms_without_catch_up(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    int64_t id = actor_timer_start(&a, 0, 10, 10, 5);
    assert_true(id > 0);
    assert_int_equal(actor_timers_run(10), 1);
    assert_int_equal(actor_next_deadline(), 20);
    assert_int_equal(actor_timers_run(25), 1);   /* late, still on the grid */
    assert_int_equal(actor_next_deadline(), 30);
    /* Stalled for several periods: one tick, then every 10 from now. */
    assert_int_equal(actor_timers_run(75), 1);
    assert_int_equal(actor_next_deadline(), 85);
    assert_int_equal(actor_run(10), 3);
    assert_int_equal(actor_timer_cancel(&a, id), 0);
    assert_int_equal(actor_timer_cancel(&a, id), -SNOW_ENOENT);
    assert_int_equal(actor_next_deadline(), UINT64_MAX);
    assert_int_equal(actor_timers_run(1000), 0);
}

static void test_actor_cancelled_timer_never_fires(void **state)
{
    (void)state;
    static struct actor a, b;
    start(&a);
    start(&b);
    int64_t t1 = actor_timer_start(&a, 0, 10, 0, 1);
    int64_t t2 = actor_timer_start(&a, 0, 20, 0, 2);
    int64_t t3 = actor_timer_start(&b, 0, 5, 0, 3);
    assert_true(t1 > 0 && t2 > t1 && t3 > t2);
    /* Only its own actor can cancel it. */
    assert_int_equal(actor_timer_cancel(&b, t1), -SNOW_ENOENT);
    assert_int_equal(actor_timer_cancel(&a, t1), 0);
    assert_int_equal(actor_timer_cancel(&a, 0), -SNOW_ENOENT);
    assert_int_equal(actor_timer_cancel(&a, -3), -SNOW_ENOENT);
    assert_int_equal(actor_next_deadline(), 5);
    assert_int_equal(actor_timers_run(100), 2);
    assert_int_equal(actor_run(10), 2);
    assert_int_equal(rec.d[0].tag, 3);
    assert_int_equal(rec.d[1].tag, 2);
}

static void test_actor_timers_with_equal_deadlines_fire_in_start_order(void **state)
{
    (void)state;
    rt_restart(1000, 1000);
    static struct actor a;
    start(&a);
    /* Deadlines 30, 10, 20, 10, 30, 20, ... by start order (= tag). */
    static const uint64_t after[] = { 30, 10, 20, 10, 30, 20, 10, 30, 20, 10,
                                      20, 30, 10, 10, 30, 20 };
    enum { N = sizeof after / sizeof after[0] };
    for (uint32_t i = 0; i < N; i++)
        assert_true(actor_timer_start(&a, 0, after[i], 0, i) > 0);
    assert_int_equal(actor_timers_run(30), N);
    assert_int_equal(actor_run(100), N);
    size_t k = 0;
    for (uint64_t dl = 10; dl <= 30; dl += 10)
        for (uint32_t i = 0; i < N; i++)
            if (after[i] == dl)
                assert_int_equal(rec.d[k++].tag, i);
    assert_int_equal(k, N);
}

static uint64_t heap_dl[2000];
static bool heap_cancelled[2000];
static long heap_prev;
static size_t heap_seen;

/* Timers fire in (deadline, id) order, and ids follow the tags here. */
static void check_fire_order(struct actor *a, const struct snow_msg *msg)
{
    (void)a;
    long c = (long)msg->tag;
    assert_false(heap_cancelled[c]);
    if (heap_prev >= 0)
        assert_true(heap_dl[heap_prev] < heap_dl[c] ||
                    (heap_dl[heap_prev] == heap_dl[c] && heap_prev < c));
    heap_prev = c;
    heap_seen++;
}

static void test_actor_timer_heap_orders_many_timers(void **state)
{
    (void)state;
    rt_restart(100000, 100000);
    enum { N = 2000 };
    static struct actor a;
    start(&a);
    int64_t ids[N];
    uint32_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        heap_dl[i] = (seed >> 8) % 500;
        ids[i] = actor_timer_start(&a, 0, heap_dl[i], 0, (uint32_t)i);
        assert_true(ids[i] > 0);
        heap_cancelled[i] = false;
    }
    size_t live = N;
    for (int i = 0; i < N; i += 3) {
        assert_int_equal(actor_timer_cancel(&a, ids[i]), 0);
        heap_cancelled[i] = true;
        live--;
    }
    /* Fire in slices: later slices only hold later deadlines, so the
     * whole sequence is in (deadline, id) order. */
    size_t fired = 0;
    for (uint64_t now = 0; now <= 500; now += 37) {
        fired += actor_timers_run(now);
        assert_true(actor_next_deadline() > now);
    }
    fired += actor_timers_run(500);
    assert_int_equal(fired, live);
    assert_int_equal(actor_next_deadline(), UINT64_MAX);
    heap_prev = -1;
    heap_seen = 0;
    rec.on_deliver = check_fire_order;
    while (actor_pending())
        actor_run(1000);
    assert_int_equal(heap_seen, live);
}

static void test_actor_repeating_tick_is_skipped_when_mailbox_full(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    int64_t rep = actor_timer_start(&a, 0, 10, 10, 1);
    assert_true(actor_timer_start(&a, 0, 10, 0, 2) > 0);
    for (int i = 0; i < LIMIT; i++)
        assert_int_equal(tell(0, a.pid, 100, "fill"), 0);
    /* The repeating tick is skipped; the one-shot is always queued. */
    assert_int_equal(actor_timers_run(10), 1);
    assert_int_equal(actor_rt_stats()->timer_ticks_skipped, 1);
    assert_int_equal(actor_next_deadline(), 20);
    assert_int_equal(actor_run(100), LIMIT + 1);
    assert_int_equal(rec.d[LIMIT].tag, 2);
    /* Room again: the next tick arrives. */
    assert_int_equal(actor_timers_run(20), 1);
    assert_int_equal(actor_run(100), 1);
    assert_int_equal(rec.d[LIMIT + 1].tag, 1);
    assert_int_equal(actor_rt_stats()->timer_ticks_skipped, 1);
    assert_int_equal(actor_timer_cancel(&a, rep), 0);
}

static void test_actor_timers_end_with_their_actor(void **state)
{
    (void)state;
    static struct actor a, b;
    start(&a);
    start(&b);
    int64_t ta = actor_timer_start(&a, 0, 10, 10, 1);
    assert_true(actor_timer_start(&a, 0, 5, 0, 2) > 0);
    int64_t tb = actor_timer_start(&b, 0, 15, 0, 3);
    actor_exit(&a, "normal");
    assert_int_equal(actor_next_deadline(), 15);
    assert_int_equal(actor_timer_cancel(&a, ta), -SNOW_ENOENT);
    assert_int_equal(actor_timer_start(&a, 0, 5, 0, 4), -SNOW_EINVAL);
    assert_int_equal(actor_timers_run(100), 1);
    assert_int_equal(actor_run(10), 1);
    assert_ptr_equal(rec.d[0].a, &b);
    assert_int_equal(actor_timer_cancel(&b, tb), -SNOW_ENOENT);
}

static void test_actor_timer_ids_are_positive_and_unique(void **state)
{
    (void)state;
    static struct actor a, b;
    start(&a);
    start(&b);
    int64_t last = 0;
    for (int i = 0; i < 100; i++) {
        int64_t id = actor_timer_start(i % 2 ? &a : &b, 0, 1, 0, 0);
        assert_true(id > last);
        last = id;
        if (i % 4 == 0)
            assert_int_equal(actor_timer_cancel(i % 2 ? &a : &b, id), 0);
    }
    actor_timers_run(1);
    assert_true(actor_timer_start(&a, 0, 1, 0, 0) > last);
    /* Deadlines saturate rather than wrap. */
    assert_true(actor_timer_start(&a, UINT64_MAX - 1, 10, 0, 0) > 0);
    assert_int_equal(actor_next_deadline(), 1);
}

/* ---- monitors ----------------------------------------------------------- */

static void test_actor_monitor_gives_down_with_reason(void **state)
{
    (void)state;
    static struct actor w, t;
    start(&w);
    start(&t);
    assert_int_equal(actor_monitor(&w, t.pid), 0);
    assert_int_equal(actor_monitor(&w, t.pid), 0);   /* each call, one DOWN */
    actor_exit(&t, "crashed: boom");
    assert_int_equal(actor_run(10), 2);
    for (int i = 0; i < 2; i++) {
        assert_ptr_equal(rec.d[i].a, &w);
        assert_int_equal(rec.d[i].type, SNOW_MSG_DOWN);
        assert_int_equal(rec.d[i].from, t.pid);
        assert_int_equal(rec.d[i].len, strlen("crashed: boom"));
        assert_string_equal(rec.d[i].data, "crashed: boom");
    }
    assert_int_equal(rec.nexits, 1);
    assert_string_equal(rec.exits[0].reason, "crashed: boom");
    assert_int_equal(rec.ndemon + rec.ndown + rec.nmon, 0);
}

static void test_actor_monitor_of_ended_actor_gives_noproc(void **state)
{
    (void)state;
    static struct actor w, t;
    start(&w);
    start(&t);
    snow_pid dead = t.pid;
    actor_exit(&t, "normal");
    assert_int_equal(actor_monitor(&w, dead), 0);
    assert_int_equal(actor_monitor(&w, 0), 0);
    assert_int_equal(actor_run(10), 2);
    assert_int_equal(rec.d[0].type, SNOW_MSG_DOWN);
    assert_int_equal(rec.d[0].from, dead);
    assert_string_equal(rec.d[0].data, "noproc");
    assert_string_equal(rec.d[1].data, "noproc");
    assert_int_equal(rec.nmon, 0);
    /* An ended watcher cannot monitor. */
    actor_exit(&w, "normal");
    assert_int_equal(actor_monitor(&w, dead), -SNOW_EINVAL);
}

static void test_actor_ended_watcher_gets_no_down(void **state)
{
    (void)state;
    static struct actor t, self;
    struct actor *w = malloc(sizeof *w);
    assert_non_null(w);
    start(w);
    start(&t);
    start(&self);
    assert_int_equal(actor_monitor(w, t.pid), 0);
    assert_int_equal(actor_monitor(&self, self.pid), 0);
    actor_exit(w, "normal");
    actor_run(0);
    free(w);   /* t's record of it must be gone too (ASan) */
    actor_exit(&t, "normal");
    actor_exit(&self, "normal");   /* no DOWN to itself */
    assert_int_equal(actor_run(10), 0);
    assert_int_equal(rec.nd, 0);
}

static void test_actor_exit_is_idempotent(void **state)
{
    (void)state;
    static struct actor w, t;
    start(&w);
    start(&t);
    assert_int_equal(actor_monitor(&w, t.pid), 0);
    assert_int_equal(actor_monitor(&t, remote_pid(5, 7, 1)), 0);
    actor_monitor_from_remote(remote_pid(5, 7, 2), t.pid);
    assert_int_equal(tell(0, t.pid, 1, "x"), 0);
    actor_exit(&t, "first");
    actor_exit(&t, "second");
    actor_exit(&t, NULL);
    assert_int_equal(rec.nexits, 1);
    assert_int_equal(rec.ndemon, 1);
    assert_int_equal(rec.ndown, 1);
    assert_int_equal(actor_rt_stats()->actors, 1);
    assert_int_equal(actor_run(10), 1);   /* one DOWN, no tell */
    assert_string_equal(rec.d[0].data, "first");
    /* Never started: nothing to end. */
    static struct actor never;
    memset(&never, 0, sizeof never);
    actor_exit(&never, "normal");
    assert_int_equal(rec.nexits, 1);
}

static void test_actor_monitor_of_remote_target_uses_hooks(void **state)
{
    (void)state;
    static struct actor w;
    start(&w);
    snow_pid r1 = remote_pid(5, 7, 1), r2 = remote_pid(6, 1, 9);
    assert_int_equal(actor_monitor(&w, r1), 0);
    assert_int_equal(actor_monitor(&w, r2), 0);
    assert_int_equal(rec.nmon, 2);
    assert_int_equal(rec.mon[0].a, w.pid);
    assert_int_equal(rec.mon[0].b, r1);
    assert_int_equal(rec.mon[1].b, r2);
    assert_int_equal(actor_run(10), 0);
    actor_exit(&w, "normal");
    assert_int_equal(rec.ndemon, 2);
    assert_int_equal(rec.demon[0].a, w.pid);
    assert_int_equal(rec.demon[0].b, r1);
    assert_int_equal(rec.demon[1].b, r2);
    assert_int_equal(rec.ndown, 0);
}

static void test_actor_down_from_remote_delivers_once(void **state)
{
    (void)state;
    static struct actor w;
    start(&w);
    snow_pid r = remote_pid(5, 7, 1);
    assert_int_equal(actor_monitor(&w, r), 0);
    assert_int_equal(actor_monitor(&w, r), 0);
    actor_down_from_remote(w.pid, r, "crashed: far away");
    assert_int_equal(actor_run(10), 1);
    assert_int_equal(rec.d[0].type, SNOW_MSG_DOWN);
    assert_int_equal(rec.d[0].from, r);
    assert_string_equal(rec.d[0].data, "crashed: far away");
    actor_down_from_remote(w.pid, r, "normal");
    actor_down_from_remote(w.pid, r, "normal");   /* no record left */
    actor_down_from_remote(w.pid, remote_pid(5, 7, 2), "normal");
    actor_down_from_remote(remote_pid(9, 9, 9), r, "normal");
    assert_int_equal(actor_run(10), 1);
    assert_int_equal(rec.nd, 2);
    actor_exit(&w, "normal");
    assert_int_equal(rec.ndemon, 0);   /* both records answered */
}

static void test_actor_monitor_from_remote_gets_remote_down(void **state)
{
    (void)state;
    static struct actor t;
    start(&t);
    snow_pid rw = remote_pid(5, 7, 1), rw2 = remote_pid(6, 2, 3);
    actor_monitor_from_remote(rw, t.pid);
    actor_monitor_from_remote(rw2, t.pid);
    assert_int_equal(rec.ndown, 0);
    actor_exit(&t, "crashed: oops");
    assert_int_equal(rec.ndown, 2);
    assert_int_equal(rec.down[0].a, rw);
    assert_int_equal(rec.down[0].b, t.pid);
    assert_string_equal(rec.down[0].reason, "crashed: oops");
    assert_int_equal(rec.down[1].a, rw2);
    assert_int_equal(actor_run(10), 0);
}

static void test_actor_monitor_from_remote_of_ended_actor_is_noproc(void **state)
{
    (void)state;
    static struct actor t;
    start(&t);
    snow_pid dead = t.pid, rw = remote_pid(5, 7, 1);
    actor_exit(&t, "normal");
    actor_monitor_from_remote(rw, dead);
    actor_monitor_from_remote(rw, actor_pid_make(NODE, SLOT, GEN + 1, 1));
    assert_int_equal(rec.ndown, 2);
    assert_int_equal(rec.down[0].a, rw);
    assert_int_equal(rec.down[0].b, dead);
    assert_string_equal(rec.down[0].reason, "noproc");
}

static void test_actor_demonitor_from_remote_forgets_the_watch(void **state)
{
    (void)state;
    static struct actor t;
    start(&t);
    snow_pid rw = remote_pid(5, 7, 1), other = remote_pid(5, 7, 2);
    actor_monitor_from_remote(rw, t.pid);
    actor_monitor_from_remote(rw, t.pid);
    actor_monitor_from_remote(other, t.pid);
    actor_demonitor_from_remote(rw, t.pid);
    actor_demonitor_from_remote(rw, actor_pid_make(NODE, SLOT, GEN, 999));
    actor_exit(&t, "normal");
    assert_int_equal(rec.ndown, 1);
    assert_int_equal(rec.down[0].a, other);
}

static void test_actor_worker_down_ends_monitors_of_that_worker(void **state)
{
    (void)state;
    static struct actor w, w2, t;
    start(&w);
    start(&w2);
    start(&t);
    snow_pid gone1 = remote_pid(5, 7, 1), gone2 = remote_pid(5, 7, 2);
    snow_pid newer = remote_pid(5, 8, 1), elsewhere = remote_pid(6, 7, 1);
    assert_int_equal(actor_monitor(&w, gone1), 0);
    assert_int_equal(actor_monitor(&w, newer), 0);
    assert_int_equal(actor_monitor(&w, elsewhere), 0);
    assert_int_equal(actor_monitor(&w2, gone2), 0);
    assert_int_equal(actor_monitor(&w2, t.pid), 0);
    /* Watchers that lived there never demonitor: forget them too. */
    actor_monitor_from_remote(remote_pid(5, 7, 3), t.pid);
    actor_monitor_from_remote(remote_pid(6, 7, 3), t.pid);

    actor_worker_down(5, 7);
    assert_int_equal(actor_run(10), 2);
    assert_ptr_equal(rec.d[0].a, &w);
    assert_int_equal(rec.d[0].type, SNOW_MSG_DOWN);
    assert_int_equal(rec.d[0].from, gone1);
    assert_string_equal(rec.d[0].data, "worker exited");
    assert_ptr_equal(rec.d[1].a, &w2);
    assert_int_equal(rec.d[1].from, gone2);

    actor_worker_down(5, 7);   /* nothing left there */
    actor_worker_down(SLOT, GEN);   /* this worker is not down */
    assert_int_equal(actor_run(10), 0);

    actor_exit(&w, "normal");
    assert_int_equal(rec.ndemon, 2);
    assert_int_equal(rec.demon[0].b, newer);
    assert_int_equal(rec.demon[1].b, elsewhere);
    actor_exit(&t, "normal");
    assert_int_equal(rec.ndown, 1);
    assert_int_equal(rec.down[0].a, remote_pid(6, 7, 3));
    assert_int_equal(actor_run(10), 1);   /* w2's local DOWN */
    assert_ptr_equal(rec.d[2].a, &w2);
    assert_int_equal(rec.d[2].from, t.pid);
}

/* ---- names -------------------------------------------------------------- */

static void test_actor_name_is_a_copy_kept_until_exit(void **state)
{
    (void)state;
    static struct actor a;
    start(&a);
    assert_null(actor_name(&a));
    char buf[16] = "chat";
    assert_int_equal(actor_set_name(&a, buf), 0);
    buf[0] = 'X';
    assert_string_equal(actor_name(&a), "chat");
    assert_int_equal(actor_set_name(&a, "lobby"), 0);
    assert_string_equal(actor_name(&a), "lobby");
    assert_int_equal(actor_set_name(&a, NULL), -SNOW_EINVAL);
    actor_exit(&a, "normal");
    assert_true(rec.exits[0].had_name);
    assert_string_equal(rec.exits[0].name, "lobby");
    assert_null(actor_name(&a));
    assert_null(a.ext);
    assert_int_equal(actor_set_name(&a, "again"), -SNOW_EINVAL);
}

/* ---- teardown ----------------------------------------------------------- */

static void test_actor_fini_frees_everything(void **state)
{
    (void)state;
    rt_restart(100, BUDGET);
    enum { N = 300 };
    struct actor *as = calloc(N, sizeof *as);
    unsigned char *big = calloc(1, 4096);
    assert_non_null(as);
    assert_non_null(big);
    for (int i = 0; i < N; i++)
        assert_int_equal(actor_start(&as[i], ACTOR_CONN), 0);
    /* Warm the free list, then leave messages of both sizes queued. */
    for (int i = 0; i < N; i++)
        assert_int_equal(tell(0, as[i].pid, 1, "warm"), 0);
    actor_run(SIZE_MAX);
    for (int i = 0; i < N; i++) {
        assert_int_equal(tell(0, as[i].pid, 1, "small"), 0);
        assert_int_equal(actor_tell(0, as[i].pid, SNOW_MSG_TELL, 2, big,
                                    4096), 0);
        assert_true(actor_timer_start(&as[i], 0, (uint64_t)i, i % 2, 3) > 0);
        assert_int_equal(actor_monitor(&as[i], as[(i + 1) % N].pid), 0);
        assert_int_equal(actor_monitor(&as[i], remote_pid(5, 7, (uint32_t)i)),
                         0);
        actor_monitor_from_remote(remote_pid(6, 1, (uint32_t)i), as[i].pid);
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(actor_set_name(&as[i], name), 0);
    }
    /* Some exit, leaving DOWNs queued; one sits exited on the run queue. */
    for (int i = 0; i < N; i += 10)
        actor_exit(&as[i], "normal");
    actor_timers_run(N / 2);

    actor_rt_fini();
    /* Forgotten, not exited: no hook ran, and the structs are clean. */
    assert_int_equal(rec.nexits, N / 10);
    for (int i = 1; i < N; i++) {
        if (i % 10 == 0)
            continue;
        assert_null(as[i].ext);
        assert_null(as[i].head);
        assert_int_equal(as[i].nmsgs, 0);
    }
    assert_int_equal(actor_rt_stats()->actors, 0);
    assert_int_equal(actor_rt_stats()->queued, 0);
    assert_int_equal(actor_next_deadline(), UINT64_MAX);
    free(as);
    free(big);

    /* A runtime started again works from scratch. */
    rt_start(LIMIT, BUDGET);
    static struct actor a;
    start(&a);
    assert_int_equal(actor_pid_serial(a.pid), 1);
    assert_int_equal(tell(0, a.pid, 1, "x"), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_actor_pid_fields_round_trip),
        T(test_actor_pid_is_local_only_for_own_worker_generation),
        T(test_actor_pids_never_repeat_across_starts_and_exits),
        T(test_actor_table_grows_with_thousands_of_actors),
        T(test_actor_find_rejects_zero_and_foreign_pids),
        T(test_actor_mailbox_is_fifo_per_sender),
        T(test_actor_full_mailbox_refuses_with_efull_and_counts),
        T(test_actor_timer_and_down_messages_ignore_mailbox_limit),
        T(test_actor_tell_to_ended_local_actor_is_enoent),
        T(test_actor_tell_over_msg_max_is_etoobig),
        T(test_actor_messages_of_every_size_arrive_intact),
        T(test_actor_tell_checks_arguments),
        T(test_actor_tell_to_other_worker_calls_remote_tell),
        T(test_actor_flooded_actor_does_not_starve_another),
        T(test_actor_run_gives_each_actor_its_budget_in_turn),
        T(test_actor_exit_inside_deliver_stops_delivery),
        T(test_actor_tell_to_self_inside_deliver_is_delivered),
        T(test_actor_endless_ping_pong_is_bounded_by_max),
        T(test_actor_exit_of_a_queued_actor_skips_it),
        T(test_actor_exit_outside_run_is_purged_by_next_run),
        T(test_actor_one_shot_timer_fires_once_at_its_deadline),
        T(test_actor_repeating_timer_rearms_without_catch_up),
        T(test_actor_cancelled_timer_never_fires),
        T(test_actor_timers_with_equal_deadlines_fire_in_start_order),
        T(test_actor_timer_heap_orders_many_timers),
        T(test_actor_repeating_tick_is_skipped_when_mailbox_full),
        T(test_actor_timers_end_with_their_actor),
        T(test_actor_timer_ids_are_positive_and_unique),
        T(test_actor_monitor_gives_down_with_reason),
        T(test_actor_monitor_of_ended_actor_gives_noproc),
        T(test_actor_ended_watcher_gets_no_down),
        T(test_actor_exit_is_idempotent),
        T(test_actor_monitor_of_remote_target_uses_hooks),
        T(test_actor_down_from_remote_delivers_once),
        T(test_actor_monitor_from_remote_gets_remote_down),
        T(test_actor_monitor_from_remote_of_ended_actor_is_noproc),
        T(test_actor_demonitor_from_remote_forgets_the_watch),
        T(test_actor_worker_down_ends_monitors_of_that_worker),
        T(test_actor_name_is_a_copy_kept_until_exit),
        T(test_actor_fini_frees_everything),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
