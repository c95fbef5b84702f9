/*
 * actor.c - the actor runtime of one worker (contract in actor.h).
 *
 * Owns: the pid table, every queued message (and a free list of small
 * message blocks), the order of the run queue, the timer heap, monitor
 * records, and each actor's lazily allocated struct actor_ext (name,
 * timers, monitor lists).  The owner of a struct actor owns only the
 * struct.  A worker has exactly one runtime, so its state is file-static.
 *
 * Invariants:
 * - rt.slots holds exactly the started, not yet exited actors, keyed by
 *   pid; a slot whose pid is 0 is empty (0 is never a pid).  Linear
 *   probing with backward-shift deletion, so there are no tombstones and
 *   the load factor stays at most TABLE_LOAD_NUM / TABLE_LOAD_DEN.
 * - a->nmsgs counts the bounded messages in a's mailbox (tells, room
 *   messages and presence events: see counts_against_limit);
 *   stats.queued counts every message in every live actor's mailbox.
 * - ACTOR_RUNNABLE is set while an actor is on the run queue or is being
 *   run by actor_run.  An actor that exits while it sits on the queue
 *   stays there, flagged ACTOR_EXITED with an empty mailbox: the queue is
 *   singly linked through struct actor, so it cannot be unlinked in O(1).
 *   rt.zombies counts these; actor_run skips them and purges what is left
 *   before it returns, which is why the owner keeps the memory until then.
 * - every timer sits both in the heap (rt.heap[t->hidx] == t) and in its
 *   actor's ext->timers list.
 * - a monitor record is on its watcher's ext->out list when the watcher is
 *   local, and on its target's ext->in list when the target is local;
 *   every local end is a live actor.  At least one end is local.
 * - an ext is on rt.remote iff it holds a record with a remote end
 *   (ext->nremote > 0), so that actor_worker_down looks only at those.
 *
 * Does not: touch libev, sockets or logs; know plugins; read a clock (the
 * worker passes the time in); reach other workers except through hooks.
 */
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "metrics.h"

/* ---- small helpers ------------------------------------------------------ */

/* A circular doubly linked list with a sentinel head. */
struct dlist {
    struct dlist *prev, *next;
};

#define container_of(p, type, member) \
    ((type *)(void *)((char *)(p) - offsetof(type, member)))

static void dl_init(struct dlist *h)
{
    h->prev = h->next = h;
}

static bool dl_empty(const struct dlist *h)
{
    return h->next == h;
}

static void dl_push(struct dlist *h, struct dlist *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void dl_del(struct dlist *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Adds without wrapping; UINT64_MAX - 1 at most, since UINT64_MAX means
 * "no deadline". */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return b >= UINT64_MAX - 1 - a ? UINT64_MAX - 1 : a + b;
}

/* ---- types -------------------------------------------------------------- */

struct actor_msg {
    struct actor_msg *next;
    snow_pid from;
    uint32_t tag;
    uint32_t len;
    uint32_t type;            /* enum snow_msg_type */
    /* Aligned so that a plugin may read a struct straight from data. */
    _Alignas(max_align_t) unsigned char data[];
};

/* Messages of up to MSG_SMALL payload bytes use a fixed block that is
 * recycled through rt.free, so that the tell-run-free path does not call
 * malloc at all once warm.  The cap bounds what an idle worker keeps
 * (2 MiB); it is large because glibc takes 100-150 ns for a malloc and
 * free of a 256-byte block once thousands are live, so a burst into a
 * service's mailbox (mailbox_limit is 10000 by default) should come from
 * the free list. */
#define MSG_BLOCK 256
#define MSG_SMALL (MSG_BLOCK - offsetof(struct actor_msg, data))
#define MSG_FREE_MAX 8192

struct actor_timer {
    uint64_t deadline;
    uint64_t repeat;          /* 0: one-shot */
    int64_t id;
    struct actor *a;
    struct dlist link;        /* in a->ext->timers */
    size_t hidx;              /* where it sits in rt.heap */
    uint32_t tag;
};

struct actor_mon {
    snow_pid watcher, target;
    struct actor *wa, *ta;    /* the local ends, NULL when remote */
    struct dlist out;         /* in wa->ext->out, when wa */
    struct dlist in;          /* in ta->ext->in, when ta */
};

struct actor_ext {
    struct actor *owner;
    char *name;
    struct dlist timers;
    struct dlist out;         /* records where this actor watches */
    struct dlist in;          /* records where this actor is watched */
    struct dlist remote;      /* in rt.remote while nremote > 0 */
    size_t nremote;           /* records here with a remote end */
};

struct table_slot {
    snow_pid pid;             /* 0: empty */
    struct actor *a;
};

#define TABLE_MIN 64
#define TABLE_LOAD_NUM 5      /* grow beyond 5/8 full */
#define TABLE_LOAD_DEN 8

static struct {
    struct actor_rt_config cfg;
    const struct actor_hooks *hooks;
    snow_pid prefix;          /* node, slot and generation of local pids */
    uint32_t serial;          /* the last serial handed out */
    struct actor_stats stats;

    struct table_slot *slots;
    size_t mask;              /* capacity - 1; capacity a power of two */
    unsigned shift;           /* 64 - log2(capacity) */

    struct actor *run_head, *run_tail;
    struct actor *running;    /* the actor inside actor_run's deliver */
    size_t zombies;           /* exited actors still on the run queue */

    struct actor_msg *free;   /* small blocks ready for reuse */
    size_t nfree;

    struct actor_timer **heap;
    size_t nheap, heap_cap;
    int64_t timer_id;         /* the last id handed out */

    struct dlist remote;      /* exts with a remote monitor end */
} rt;

/* ---- pids --------------------------------------------------------------- */

snow_pid actor_pid_make(unsigned node, unsigned slot, unsigned generation,
                        uint32_t serial)
{
    return (snow_pid)(node & 0xff) << 56 | (snow_pid)(slot & 0xff) << 48 |
           (snow_pid)(generation & 0xffff) << 32 | serial;
}

unsigned actor_pid_node(snow_pid pid)
{
    return (unsigned)(pid >> 56) & 0xff;
}

unsigned actor_pid_slot(snow_pid pid)
{
    return (unsigned)(pid >> 48) & 0xff;
}

unsigned actor_pid_generation(snow_pid pid)
{
    return (unsigned)(pid >> 32) & 0xffff;
}

uint32_t actor_pid_serial(snow_pid pid)
{
    return (uint32_t)pid;
}

bool actor_pid_is_local(snow_pid pid)
{
    return (pid & ~(snow_pid)UINT32_MAX) == rt.prefix;
}

/* ---- the pid table ------------------------------------------------------ */

/* Fibonacci hashing: local pids differ only in a sequential serial, and
 * the multiply spreads consecutive serials over the high bits we keep. */
static size_t table_home(snow_pid pid)
{
    return (size_t)((pid * UINT64_C(0x9e3779b97f4a7c15)) >> rt.shift);
}

static struct actor *table_get(snow_pid pid)
{
    if (!rt.slots)
        return NULL;
    for (size_t i = table_home(pid);; i = (i + 1) & rt.mask) {
        if (rt.slots[i].pid == pid)
            return rt.slots[i].a;
        if (rt.slots[i].pid == 0)
            return NULL;
    }
}

static void table_insert(struct table_slot *slots, size_t mask, snow_pid pid,
                         struct actor *a)
{
    size_t i = table_home(pid);

    while (slots[i].pid)
        i = (i + 1) & mask;
    slots[i].pid = pid;
    slots[i].a = a;
}

/* Makes room for one more actor.  Returns 0 or -SNOW_ENOMEM. */
static int table_reserve(void)
{
    size_t cap = rt.slots ? rt.mask + 1 : 0;

    if ((rt.stats.actors + 1) * TABLE_LOAD_DEN <= cap * TABLE_LOAD_NUM)
        return 0;
    size_t ncap = cap ? cap * 2 : TABLE_MIN;
    struct table_slot *slots = calloc(ncap, sizeof *slots);
    if (!slots)
        return -SNOW_ENOMEM;
    unsigned bits = 0;
    while (((size_t)1 << bits) < ncap)
        bits++;
    rt.shift = 64 - bits;      /* table_home now answers for ncap */
    for (size_t i = 0; i < cap; i++)
        if (rt.slots[i].pid)
            table_insert(slots, ncap - 1, rt.slots[i].pid, rt.slots[i].a);
    free(rt.slots);
    rt.slots = slots;
    rt.mask = ncap - 1;
    return 0;
}

static void table_remove(snow_pid pid)
{
    size_t i = table_home(pid);

    while (rt.slots[i].pid != pid) {
        if (rt.slots[i].pid == 0)
            return;
        i = (i + 1) & rt.mask;
    }
    /* Backward shift: pull later entries of the probe run into the hole
     * when the hole lies between their home and where they sit, so that
     * every lookup still meets its key before an empty slot. */
    for (size_t j = (i + 1) & rt.mask; rt.slots[j].pid;
         j = (j + 1) & rt.mask) {
        size_t home = table_home(rt.slots[j].pid);
        if (((j - home) & rt.mask) >= ((j - i) & rt.mask)) {
            rt.slots[i] = rt.slots[j];
            i = j;
        }
    }
    rt.slots[i].pid = 0;
    rt.slots[i].a = NULL;
}

/* ---- messages and mailboxes --------------------------------------------- */

/* Messages anyone can send as fast as they like are bounded by
 * mailbox_limit; timers and DOWNs are bounded by what the actor holds. */
static bool counts_against_limit(enum snow_msg_type type)
{
    return type != SNOW_MSG_TIMER && type != SNOW_MSG_DOWN;
}

static struct actor_msg *msg_new(enum snow_msg_type type, snow_pid from,
                                 uint32_t tag, const void *data, size_t len)
{
    struct actor_msg *m;

    if (len <= MSG_SMALL && rt.free) {
        m = rt.free;
        rt.free = m->next;
        rt.nfree--;
    } else {
        m = malloc(len <= MSG_SMALL ? MSG_BLOCK
                                    : offsetof(struct actor_msg, data) + len);
        if (!m)
            return NULL;
    }
    m->next = NULL;
    m->from = from;
    m->tag = tag;
    m->len = (uint32_t)len;
    m->type = (uint32_t)type;
    if (len)
        memcpy(m->data, data, len);
    return m;
}

static void msg_free(struct actor_msg *m)
{
    if (m->len <= MSG_SMALL && rt.nfree < MSG_FREE_MAX) {
        m->next = rt.free;
        rt.free = m;
        rt.nfree++;
    } else {
        free(m);
    }
}

static void runq_push(struct actor *a)
{
    a->run_next = NULL;
    if (rt.run_tail)
        rt.run_tail->run_next = a;
    else
        rt.run_head = a;
    rt.run_tail = a;
}

static struct actor *runq_pop(void)
{
    struct actor *a = rt.run_head;

    rt.run_head = a->run_next;
    if (!rt.run_head)
        rt.run_tail = NULL;
    a->run_next = NULL;
    return a;
}

/* Unlinks the exited actors left on the run queue, so that no pointer to
 * them survives actor_run. */
static void runq_purge(void)
{
    struct actor **pp = &rt.run_head;

    rt.run_tail = NULL;
    while (*pp) {
        struct actor *a = *pp;
        if (a->flags & ACTOR_EXITED) {
            *pp = a->run_next;
            a->run_next = NULL;
            a->flags &= (uint8_t)~ACTOR_RUNNABLE;
        } else {
            rt.run_tail = a;
            pp = &a->run_next;
        }
    }
    rt.zombies = 0;
}

static void mailbox_push(struct actor *a, struct actor_msg *m)
{
    if (a->tail)
        a->tail->next = m;
    else
        a->head = m;
    a->tail = m;
    if (counts_against_limit(m->type))
        a->nmsgs++;
    rt.stats.queued++;
    if (!(a->flags & ACTOR_RUNNABLE)) {
        a->flags |= ACTOR_RUNNABLE;
        runq_push(a);
    }
}

static void mailbox_drop(struct actor *a)
{
    while (a->head) {
        struct actor_msg *m = a->head;
        a->head = m->next;
        rt.stats.queued--;
        msg_free(m);
    }
    a->tail = NULL;
    a->nmsgs = 0;
}

/* Queues a message no mailbox limit applies to (TIMER, DOWN). */
static int push_unbounded(struct actor *a, enum snow_msg_type type,
                          snow_pid from, uint32_t tag, const void *data,
                          size_t len)
{
    struct actor_msg *m = msg_new(type, from, tag, data, len);

    if (!m)
        return -SNOW_ENOMEM;
    mailbox_push(a, m);
    return 0;
}

static int push_down(struct actor *watcher, snow_pid from, const char *reason)
{
    size_t len = strnlen(reason, SNOW_MSG_MAX);

    return push_unbounded(watcher, SNOW_MSG_DOWN, from, 0, reason, len);
}

/* ---- the runtime -------------------------------------------------------- */

void actor_rt_init(const struct actor_rt_config *cfg)
{
    memset(&rt, 0, sizeof rt);
    rt.cfg = *cfg;
    rt.hooks = cfg->hooks;
    /* A budget of 0 would never make progress; a limit of 0 means none. */
    if (rt.cfg.budget == 0)
        rt.cfg.budget = 1;
    if (rt.cfg.mailbox_limit == 0)
        rt.cfg.mailbox_limit = UINT32_MAX;
    rt.prefix = actor_pid_make(cfg->node, cfg->slot, cfg->generation, 0);
    dl_init(&rt.remote);
}

const struct actor_stats *actor_rt_stats(void)
{
    return &rt.stats;
}

static struct actor_ext *ext_get(struct actor *a)
{
    if (a->ext)
        return a->ext;
    struct actor_ext *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->owner = a;
    dl_init(&x->timers);
    dl_init(&x->out);
    dl_init(&x->in);
    dl_init(&x->remote);
    a->ext = x;
    return x;
}

/* Counts a record with a remote end on x, keeping rt.remote exact. */
static void remote_hold(struct actor_ext *x)
{
    if (x->nremote++ == 0)
        dl_push(&rt.remote, &x->remote);
}

static void remote_release(struct actor_ext *x)
{
    if (--x->nremote == 0)
        dl_del(&x->remote);
}

int actor_start(struct actor *a, enum actor_kind kind)
{
    /* The serial never wraps: a pid must never come back.  A generation
     * that used all 2^32 - 1 serials must be replaced by a new one. */
    if (rt.serial == UINT32_MAX || table_reserve() != 0)
        return -SNOW_ENOMEM;
    a->head = a->tail = NULL;
    a->nmsgs = 0;
    a->kind = (uint8_t)kind;
    a->flags = 0;
    a->run_next = NULL;
    a->ext = NULL;
    a->rooms = NULL;
    a->pid = rt.prefix | ++rt.serial;
    table_insert(rt.slots, rt.mask, a->pid, a);
    rt.stats.actors++;
    return 0;
}

struct actor *actor_find(snow_pid pid)
{
    if (!actor_pid_is_local(pid) || actor_pid_serial(pid) == 0)
        return NULL;
    return table_get(pid);
}

/* ---- tell and run ------------------------------------------------------- */

int actor_tell(snow_pid from, snow_pid to, enum snow_msg_type type,
               uint32_t tag, const void *data, size_t len)
{
    /* Room messages carry the room's name in front of the payload. */
    if (len > (type >= SNOW_MSG_ROOM ? SNOW_MSG_MAX + SNOW_ROOM_MAX + 1
                                     : SNOW_MSG_MAX))
        return -SNOW_ETOOBIG;
    if ((!data && len) || type < SNOW_MSG_TELL || type > SNOW_MSG_LEAVE)
        return -SNOW_EINVAL;
    if (to == 0)
        return -SNOW_ENOENT;
    if (!actor_pid_is_local(to))
        return rt.hooks->remote_tell(to, from, type, tag, data, len);
    struct actor *a = table_get(to);
    if (!a)
        return -SNOW_ENOENT;
    if (counts_against_limit(type) && a->nmsgs >= rt.cfg.mailbox_limit) {
        rt.stats.mailbox_overflows++;
        metrics_add(&metrics_self->c.mailbox_overflows, 1);
        return -SNOW_EFULL;
    }
    struct actor_msg *m = msg_new(type, from, tag, data, len);
    if (!m)
        return -SNOW_ENOMEM;
    mailbox_push(a, m);
    return 0;
}

/* Delivers up to `max` of a's messages.  Each message leaves the mailbox
 * before deliver sees it, so that an actor_exit inside deliver, which
 * drops the mailbox, cannot free the message being read. */
static size_t run_one(struct actor *a, size_t max)
{
    const struct actor_hooks *hooks = rt.hooks;
    size_t n = 0;

    rt.running = a;
    while (n < max && a->head) {
        struct actor_msg *m = a->head;
        a->head = m->next;
        if (!a->head)
            a->tail = NULL;
        if (counts_against_limit(m->type))
            a->nmsgs--;
        rt.stats.queued--;
        struct snow_msg msg = {
            .type = (enum snow_msg_type)m->type, .tag = m->tag,
            .from = m->from, .data = m->data, .len = m->len,
        };
        hooks->deliver(a, &msg);
        msg_free(m);
        n++;
        if (a->flags & ACTOR_EXITED)
            break;
    }
    rt.running = NULL;
    return n;
}

size_t actor_run(size_t max)
{
    size_t done = 0;

    while (done < max && rt.run_head) {
        struct actor *a = runq_pop();
        if (a->flags & ACTOR_EXITED) {
            a->flags &= (uint8_t)~ACTOR_RUNNABLE;
            rt.zombies--;
            continue;
        }
        size_t room = max - done;
        done += run_one(a, room < rt.cfg.budget ? room : rt.cfg.budget);
        /* ACTOR_RUNNABLE stayed set while it ran, so that tells it got
         * meanwhile did not queue it twice. */
        if (a->head && !(a->flags & ACTOR_EXITED))
            runq_push(a);
        else
            a->flags &= (uint8_t)~ACTOR_RUNNABLE;
    }
    if (rt.zombies)
        runq_purge();
    rt.stats.delivered += done;
    return done;
}

bool actor_pending(void)
{
    /* Exited actors hold no messages, so queued counts live work only. */
    return rt.stats.queued > 0;
}

/* ---- timers ------------------------------------------------------------- */

static bool timer_before(const struct actor_timer *x,
                         const struct actor_timer *y)
{
    return x->deadline < y->deadline ||
           (x->deadline == y->deadline && x->id < y->id);
}

static void heap_set(size_t i, struct actor_timer *t)
{
    rt.heap[i] = t;
    t->hidx = i;
}

static void heap_up(size_t i)
{
    struct actor_timer *t = rt.heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, rt.heap[parent]))
            break;
        heap_set(i, rt.heap[parent]);
        i = parent;
    }
    heap_set(i, t);
}

static void heap_down(size_t i)
{
    struct actor_timer *t = rt.heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= rt.nheap)
            break;
        if (c + 1 < rt.nheap && timer_before(rt.heap[c + 1], rt.heap[c]))
            c++;
        if (!timer_before(rt.heap[c], t))
            break;
        heap_set(i, rt.heap[c]);
        i = c;
    }
    heap_set(i, t);
}

static void heap_remove(struct actor_timer *t)
{
    size_t i = t->hidx;
    struct actor_timer *last = rt.heap[--rt.nheap];

    if (last == t)
        return;
    heap_set(i, last);
    /* The moved timer may belong above or below the hole. */
    if (i > 0 && timer_before(last, rt.heap[(i - 1) / 2]))
        heap_up(i);
    else
        heap_down(i);
}

static void timer_destroy(struct actor_timer *t)
{
    heap_remove(t);
    dl_del(&t->link);
    free(t);
}

int64_t actor_timer_start(struct actor *a, uint64_t now_ms, uint64_t after_ms,
                          uint64_t repeat_ms, uint32_t tag)
{
    if (!a || !a->pid || (a->flags & ACTOR_EXITED))
        return -SNOW_EINVAL;
    if (rt.nheap == rt.heap_cap) {
        size_t cap = rt.heap_cap ? rt.heap_cap * 2 : 16;
        struct actor_timer **heap = realloc(rt.heap, cap * sizeof *heap);
        if (!heap)
            return -SNOW_ENOMEM;
        rt.heap = heap;
        rt.heap_cap = cap;
    }
    struct actor_ext *x = ext_get(a);
    struct actor_timer *t = malloc(sizeof *t);
    if (!x || !t) {
        free(t);
        return -SNOW_ENOMEM;
    }
    t->deadline = add_sat(now_ms, after_ms);
    t->repeat = repeat_ms;
    t->id = ++rt.timer_id;
    t->a = a;
    t->tag = tag;
    dl_push(&x->timers, &t->link);
    heap_set(rt.nheap++, t);
    heap_up(t->hidx);
    return t->id;
}

int actor_timer_cancel(struct actor *a, int64_t id)
{
    if (!a || !a->ext || id <= 0)
        return -SNOW_ENOENT;
    /* An actor holds few timers, so a walk of its own list is cheaper
     * than an id index for the whole runtime. */
    for (struct dlist *n = a->ext->timers.next; n != &a->ext->timers;
         n = n->next) {
        struct actor_timer *t = container_of(n, struct actor_timer, link);
        if (t->id == id) {
            timer_destroy(t);
            return 0;
        }
    }
    return -SNOW_ENOENT;
}

/* Fires the earliest timer, due at now_ms.  Returns whether it queued a
 * message. */
static bool timer_fire(struct actor_timer *t, uint64_t now_ms)
{
    struct actor *a = t->a;
    uint32_t tag = t->tag;

    if (t->repeat == 0) {
        /* A fired one-shot timer is gone: cancel then gives ENOENT. */
        timer_destroy(t);
        return push_unbounded(a, SNOW_MSG_TIMER, a->pid, tag, NULL, 0) == 0;
    }
    /* Re-arm on the timer's own grid; after a stall, restart the grid
     * from now instead of firing a burst of ticks to catch up. */
    uint64_t next = add_sat(t->deadline, t->repeat);
    if (next <= now_ms)
        next = add_sat(now_ms, t->repeat);
    t->deadline = next;
    heap_down(t->hidx);
    /* A tick for an actor that has not kept up would only add to its
     * backlog: skip it rather than grow the mailbox past its limit. */
    if (a->nmsgs >= rt.cfg.mailbox_limit) {
        rt.stats.timer_ticks_skipped++;
        return false;
    }
    return push_unbounded(a, SNOW_MSG_TIMER, a->pid, tag, NULL, 0) == 0;
}

size_t actor_timers_run(uint64_t now_ms)
{
    size_t fired = 0;

    /* Each timer fires at most once per call: a repeating one is re-armed
     * strictly after now_ms. */
    while (rt.nheap && rt.heap[0]->deadline <= now_ms)
        fired += timer_fire(rt.heap[0], now_ms);
    return fired;
}

uint64_t actor_next_deadline(void)
{
    return rt.nheap ? rt.heap[0]->deadline : UINT64_MAX;
}

/* ---- monitors ----------------------------------------------------------- */

static struct actor_mon *mon_new(snow_pid watcher, snow_pid target,
                                 struct actor *wa, struct actor *ta)
{
    struct actor_mon *m = malloc(sizeof *m);

    if (!m)
        return NULL;
    m->watcher = watcher;
    m->target = target;
    m->wa = wa;
    m->ta = ta;
    dl_init(&m->out);
    dl_init(&m->in);
    return m;
}

/* Unlinks m from both ends' lists and frees it. */
static void mon_free(struct actor_mon *m)
{
    if (!m->wa || !m->ta)
        remote_release(m->wa ? m->wa->ext : m->ta->ext);
    dl_del(&m->out);
    dl_del(&m->in);
    free(m);
}

int actor_monitor(struct actor *watcher, snow_pid target)
{
    if (!watcher || !watcher->pid || (watcher->flags & ACTOR_EXITED))
        return -SNOW_EINVAL;
    bool local = target == 0 || actor_pid_is_local(target);
    struct actor *ta = local ? actor_find(target) : NULL;
    if (local && !ta)
        return push_down(watcher, target, "noproc");

    struct actor_ext *wx = ext_get(watcher);
    struct actor_ext *tx = ta ? ext_get(ta) : NULL;
    struct actor_mon *m = wx && (tx || !ta)
                              ? mon_new(watcher->pid, target, watcher, ta)
                              : NULL;
    if (!m)
        return -SNOW_ENOMEM;
    dl_push(&wx->out, &m->out);
    if (tx) {
        dl_push(&tx->in, &m->in);
        return 0;
    }
    remote_hold(wx);
    rt.hooks->remote_monitor(watcher->pid, target);
    return 0;
}

void actor_monitor_from_remote(snow_pid watcher, snow_pid target)
{
    struct actor *ta = actor_find(target);

    if (!ta) {
        rt.hooks->remote_down(watcher, target, "noproc");
        return;
    }
    struct actor_ext *tx = ext_get(ta);
    struct actor_mon *m = tx ? mon_new(watcher, target, NULL, ta) : NULL;
    if (!m) {
        /* The watcher would otherwise wait forever for a DOWN that this
         * worker cannot promise: tell it now that the monitor failed. */
        rt.hooks->remote_down(watcher, target,
                              "monitor failed: out of memory");
        return;
    }
    dl_push(&tx->in, &m->in);
    remote_hold(tx);
}

void actor_demonitor_from_remote(snow_pid watcher, snow_pid target)
{
    struct actor *ta = actor_find(target);

    if (!ta || !ta->ext)
        return;
    struct dlist *h = &ta->ext->in;
    for (struct dlist *n = h->next, *next; n != h; n = next) {
        struct actor_mon *m = container_of(n, struct actor_mon, in);
        next = n->next;
        if (!m->wa && m->watcher == watcher)
            mon_free(m);
    }
}

/* The first record of w's watching `target` remotely, or NULL. */
static struct actor_mon *remote_out_find(struct actor *w, snow_pid target)
{
    struct dlist *h = &w->ext->out;

    for (struct dlist *n = h->next; n != h; n = n->next) {
        struct actor_mon *m = container_of(n, struct actor_mon, out);
        if (!m->ta && m->target == target)
            return m;
    }
    return NULL;
}

void actor_down_from_remote(snow_pid watcher, snow_pid target,
                            const char *reason)
{
    struct actor *w = actor_find(watcher);

    if (!w || !w->ext)
        return;
    /* Without a record there is nothing to answer: actor_worker_down
     * already gave this monitor its DOWN, and each monitor gives one. */
    struct actor_mon *m = remote_out_find(w, target);
    if (!m)
        return;
    mon_free(m);
    push_down(w, target, reason ? reason : "");
}

/* Drops what x holds on the ended worker: its watches of actors there
 * (each with a DOWN) and the watches of its actor by actors there, whose
 * demonitor will never come. */
static void worker_down_ext(struct actor_ext *x, snow_pid prefix)
{
    const snow_pid high = ~(snow_pid)UINT32_MAX;

    for (struct dlist *n = x->out.next, *next; n != &x->out; n = next) {
        struct actor_mon *m = container_of(n, struct actor_mon, out);
        next = n->next;
        if (m->ta || (m->target & high) != prefix)
            continue;
        snow_pid target = m->target;
        mon_free(m);
        push_down(x->owner, target, "worker exited");
    }
    for (struct dlist *n = x->in.next, *next; n != &x->in; n = next) {
        struct actor_mon *m = container_of(n, struct actor_mon, in);
        next = n->next;
        if (!m->wa && (m->watcher & high) == prefix)
            mon_free(m);
    }
}

void actor_worker_down(unsigned slot, unsigned generation)
{
    /* Workers of this node only: the master reporting it knows no other.
     * The cost is one pass over the actors that hold a remote monitor end
     * and over their records, not over every actor. */
    snow_pid prefix = actor_pid_make(actor_pid_node(rt.prefix), slot,
                                     generation, 0);

    if (prefix == rt.prefix)
        return;
    for (struct dlist *n = rt.remote.next, *next; n != &rt.remote; n = next) {
        /* mon_free may unlink x from rt.remote, never its successor. */
        next = n->next;
        worker_down_ext(container_of(n, struct actor_ext, remote), prefix);
    }
}

/* ---- exit --------------------------------------------------------------- */

/* Removes the monitors a holds on others. */
static void exit_watches(struct actor *a, struct actor_ext *x)
{
    while (!dl_empty(&x->out)) {
        struct actor_mon *m = container_of(x->out.next, struct actor_mon, out);
        snow_pid target = m->target;
        bool remote = !m->ta;
        /* Unlinked before the hook runs, so a hook that calls back in
         * finds a consistent list. */
        mon_free(m);
        if (remote)
            rt.hooks->remote_demonitor(a->pid, target);
    }
}

/* Tells everyone watching a that it ended. */
static void exit_watchers(struct actor *a, struct actor_ext *x,
                          const char *reason)
{
    while (!dl_empty(&x->in)) {
        struct actor_mon *m = container_of(x->in.next, struct actor_mon, in);
        struct actor *wa = m->wa;
        snow_pid watcher = m->watcher;
        mon_free(m);
        if (wa)
            push_down(wa, a->pid, reason);
        else
            rt.hooks->remote_down(watcher, a->pid, reason);
    }
}

static void timers_drop(struct actor_ext *x)
{
    while (!dl_empty(&x->timers))
        timer_destroy(container_of(x->timers.next, struct actor_timer, link));
}

/* Frees a's ext; its monitor lists are empty by now. */
static void ext_free(struct actor *a)
{
    struct actor_ext *x = a->ext;

    if (!x)
        return;
    timers_drop(x);
    free(x->name);
    free(x);
    a->ext = NULL;
}

void actor_exit(struct actor *a, const char *reason)
{
    if (!a || !a->pid || (a->flags & ACTOR_EXITED))
        return;
    if (!reason)
        reason = "";
    /* Unreachable first: nothing a hook below does can queue to it. */
    a->flags |= ACTOR_EXITED;
    table_remove(a->pid);
    rt.stats.actors--;
    mailbox_drop(a);
    if ((a->flags & ACTOR_RUNNABLE) && a != rt.running)
        rt.zombies++;
    struct actor_ext *x = a->ext;
    if (x) {
        timers_drop(x);
        exit_watches(a, x);
        exit_watchers(a, x, reason);
    }
    /* The name is still readable here: the hook releases it. */
    rt.hooks->exited(a, reason);
    ext_free(a);
}

/* ---- names -------------------------------------------------------------- */

int actor_set_name(struct actor *a, const char *name)
{
    if (!a || !name || !a->pid || (a->flags & ACTOR_EXITED))
        return -SNOW_EINVAL;
    struct actor_ext *x = ext_get(a);
    char *copy = strdup(name);
    if (!x || !copy) {
        free(copy);
        return -SNOW_ENOMEM;
    }
    free(x->name);
    x->name = copy;
    return 0;
}

const char *actor_name(const struct actor *a)
{
    return a && a->ext ? a->ext->name : NULL;
}

/* ---- teardown ----------------------------------------------------------- */

void actor_rt_fini(void)
{
    size_t cap = rt.slots ? rt.mask + 1 : 0;

    /* Every monitor record has a live local end, and every timer and
     * queued message a live actor, so a pass over the table reaches all
     * of them.  Exited actors on the run queue are not touched: their
     * owners may have freed them already. */
    for (size_t i = 0; i < cap; i++) {
        struct actor *a = rt.slots[i].a;
        if (!a)
            continue;
        struct actor_ext *x = a->ext;
        while (x && !dl_empty(&x->out))
            mon_free(container_of(x->out.next, struct actor_mon, out));
        while (x && !dl_empty(&x->in))
            mon_free(container_of(x->in.next, struct actor_mon, in));
        mailbox_drop(a);
        ext_free(a);
        /* Forgotten, not exited: the owner may still look at it. */
        a->flags &= (uint8_t)~ACTOR_RUNNABLE;
        a->run_next = NULL;
    }
    while (rt.free) {
        struct actor_msg *m = rt.free;
        rt.free = m->next;
        free(m);
    }
    free(rt.heap);
    free(rt.slots);
    memset(&rt, 0, sizeof rt);
    dl_init(&rt.remote);
}
