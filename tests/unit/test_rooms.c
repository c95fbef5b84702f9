/*
 * test_rooms.c - unit tests for rooms, members and fan-out (src/rooms.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_rooms.c \
 *            src/rooms.c src/actor.c src/outq.c src/ws.c src/utf8.c \
 *            -lcmocka -o /tmp/test_rooms && /tmp/test_rooms
 *
 * rooms.c runs on the real actor runtime (SNOW_JOIN_INFO members and
 * services get actor messages) and on fake worker hooks that record
 * everything: each socket write (actor, block, range, and a copy of the
 * bytes), each count sent to the master, each remote publish.  The fake
 * write hook keeps a reference to the block, as a connection's output
 * queue would, and rec_reset lets go of them.  Room names and payloads
 * are placed just before a PROT_NONE page (guard.h), so reading one byte
 * past them faults.  Each test starts from rooms_init + rooms_attach and
 * a fresh runtime, and ends with rooms_fini, actor_rt_fini and
 * outq_pool_drain, so a leak anywhere shows up under ASan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "actor.h"
#include "guard.h"
#include "outq.h"
#include "rooms.h"

#define NODE 1
#define SLOT 0              /* this worker's slot, for actors and rooms */
#define GEN 1
#define LIMIT 64            /* mailbox limit */
#define NACTORS 128

/* ---- recording hooks ------------------------------------------------------ */

struct wrec {               /* a frame queued to a connection */
    struct actor *a;
    struct block *b;        /* referenced while recorded (if accepted) */
    uint32_t off, end;
    uint8_t *bytes;         /* a copy of b->data[off, end) */
    bool ok;                /* what the hook answered */
};

struct crec {               /* a count sent to the master */
    char room[SNOW_ROOM_MAX + 1];
    uint32_t count;
    bool first;
};

struct prec {               /* a publish sent to the other workers */
    char room[SNOW_ROOM_MAX + 1];
    snow_pid from;
    uint32_t kind;
    uint8_t *data;
    size_t dlen;
};

struct drec {               /* a message delivered to an actor */
    struct actor *a;
    enum snow_msg_type type;
    uint32_t tag;
    snow_pid from;
    uint8_t *data;
    size_t len;
};

static struct {
    struct wrec *w;
    size_t nw, capw;
    struct crec *c;
    size_t nc, capc;
    struct prec *p;
    size_t np, capp;
    struct drec *d;
    size_t nd, capd;
    size_t remote_room_calls;
    size_t last_remote_room_bytes;
    bool remote_ok;                 /* what remote_room answers */
    struct actor *refuse;           /* the connection whose write fails */
    struct outq *queue[NACTORS];    /* real queues, when use_queues */
    bool use_queues;
    size_t nexits;
} rec;

static struct actor actors[NACTORS];
static struct guard gname, gdata;

static void *grow(void *arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 64;
    arr = realloc(arr, *cap * size);
    assert_non_null(arr);
    return arr;
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

static void copy_name(char dst[SNOW_ROOM_MAX + 1], const char *name,
                      size_t len)
{
    assert_true(len >= 1 && len <= SNOW_ROOM_MAX);
    memcpy(dst, name, len);
    dst[len] = '\0';
}

static size_t actor_index(const struct actor *a)
{
    assert_true(a >= actors && a < actors + NACTORS);
    return (size_t)(a - actors);
}

static bool hook_write(struct actor *a, struct block *b, uint32_t off,
                       uint32_t end, uint32_t payload)
{
    /* Only connections without SNOW_JOIN_INFO are written to. */
    assert_int_equal(a->kind, ACTOR_CONN);
    assert_false(a->flags & ACTOR_EXITED);
    assert_true(off < end);
    assert_true(end <= b->len);
    assert_true(b->len <= b->cap);
    /* The payload ends the frame, after an unmasked header of 2, 4 or 10
     * bytes that announces its length (RFC 6455 section 5.2). */
    uint32_t hlen = end - off - payload;
    uint8_t len7 = b->data[off + 1] & 0x7f;
    assert_true(payload <= end - off);
    assert_int_equal(hlen, len7 < 126 ? 2 : len7 == 126 ? 4 : 10);
    assert_int_equal(b->data[off + 1] & 0x80, 0);
    if (len7 < 126)
        assert_int_equal(len7, payload);
    rec.w = grow(rec.w, &rec.capw, rec.nw, sizeof *rec.w);
    struct wrec *w = &rec.w[rec.nw++];
    *w = (struct wrec){ a, b, off, end, dup_bytes(b->data + off, end - off),
                        a != rec.refuse };
    if (!w->ok)
        return false;
    /* Hold the bytes as the connection's queue would. */
    if (rec.use_queues)
        outq_append_shared(&rec.queue[actor_index(a)], b, off, end);
    block_ref(b);
    return true;
}

static void hook_count(const char *room, size_t len, uint32_t count,
                       bool first)
{
    rec.c = grow(rec.c, &rec.capc, rec.nc, sizeof *rec.c);
    struct crec *c = &rec.c[rec.nc++];
    copy_name(c->room, room, len);
    c->count = count;
    c->first = first;
    /* The first member is announced as exactly one. */
    if (first)
        assert_int_equal(count, 1);
}

static bool hook_remote_room(size_t bytes)
{
    rec.remote_room_calls++;
    rec.last_remote_room_bytes = bytes;
    return rec.remote_ok;
}

static void hook_remote_publish(const char *room, size_t len, snow_pid from,
                                uint32_t kind, const void *data, size_t dlen)
{
    rec.p = grow(rec.p, &rec.capp, rec.np, sizeof *rec.p);
    struct prec *p = &rec.p[rec.np++];
    copy_name(p->room, room, len);
    p->from = from;
    p->kind = kind;
    p->data = dup_bytes(data, dlen);
    p->dlen = dlen;
}

static const struct rooms_hooks room_hooks = {
    .write = hook_write,
    .count = hook_count,
    .remote_room = hook_remote_room,
    .remote_publish = hook_remote_publish,
};

static void hook_deliver(struct actor *a, const struct snow_msg *msg)
{
    rec.d = grow(rec.d, &rec.capd, rec.nd, sizeof *rec.d);
    struct drec *d = &rec.d[rec.nd++];
    *d = (struct drec){ a, msg->type, msg->tag, msg->from,
                        dup_bytes(msg->data, msg->len), msg->len };
}

static int hook_remote_tell(snow_pid to, snow_pid from,
                            enum snow_msg_type type, uint32_t tag,
                            const void *data, size_t len)
{
    (void)to, (void)from, (void)type, (void)tag, (void)data, (void)len;
    fail_msg("rooms told a remote pid directly");
    return 0;
}

static void hook_remote_pair(snow_pid a, snow_pid b)
{
    (void)a, (void)b;
    fail_msg("unexpected remote monitor traffic");
}

static void hook_remote_down(snow_pid a, snow_pid b, const char *reason)
{
    (void)a, (void)b, (void)reason;
    fail_msg("unexpected remote DOWN");
}

/* What the worker does when an actor ends. */
static void hook_exited(struct actor *a, const char *reason)
{
    (void)reason;
    rec.nexits++;
    rooms_leave_all(a);
    assert_null(a->rooms);
}

static const struct actor_hooks actor_hooks = {
    .deliver = hook_deliver,
    .remote_tell = hook_remote_tell,
    .remote_monitor = hook_remote_pair,
    .remote_demonitor = hook_remote_pair,
    .remote_down = hook_remote_down,
    .exited = hook_exited,
};

/* Forgets every record, letting go of the blocks the fake connections
 * held. */
static void rec_reset(void)
{
    for (size_t i = 0; i < rec.nw; i++) {
        if (rec.w[i].ok)
            block_unref(rec.w[i].b);
        free(rec.w[i].bytes);
    }
    for (size_t i = 0; i < rec.np; i++)
        free(rec.p[i].data);
    for (size_t i = 0; i < rec.nd; i++)
        free(rec.d[i].data);
    for (size_t i = 0; i < NACTORS; i++)
        outq_free(&rec.queue[i]);
    rec.nw = rec.nc = rec.np = rec.nd = 0;
    rec.remote_room_calls = 0;
}

/* ---- fixtures --------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    memset(&rec, 0, sizeof rec);
    rec.remote_ok = true;
    memset(actors, 0, sizeof actors);
    guard_init(&gname, 4096);
    guard_init(&gdata, SNOW_MSG_MAX + 4096);
    actor_rt_init(&(struct actor_rt_config){
        .node = NODE, .slot = SLOT, .generation = GEN,
        .mailbox_limit = LIMIT, .budget = 1000, .hooks = &actor_hooks });
    rooms_init();
    rooms_attach(SLOT, &room_hooks);
    assert_int_equal(rooms_stats()->rooms, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rec_reset();
    rooms_fini();
    for (size_t i = 0; i < NACTORS; i++)
        assert_null(actors[i].rooms);
    actor_rt_fini();
    outq_pool_drain();
    free(rec.w);
    free(rec.c);
    free(rec.p);
    free(rec.d);
    memset(&rec, 0, sizeof rec);
    guard_free(&gname);
    guard_free(&gdata);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static struct actor *start(size_t i, enum actor_kind kind)
{
    assert_true(i < NACTORS);
    memset(&actors[i], 0x5a, sizeof actors[i]);   /* actor_start resets it */
    assert_int_equal(actor_start(&actors[i], kind), 0);
    assert_null(actors[i].rooms);
    return &actors[i];
}

/* The name, placed so that its last byte sits before the guard page. */
static const char *gn(const char *name, size_t len)
{
    return (const char *)guard_place(&gname, name, len);
}

static int join(struct actor *a, const char *name, unsigned flags)
{
    size_t len = strlen(name);
    return rooms_join(a, gn(name, len), len, flags);
}

static int leave(struct actor *a, const char *name)
{
    size_t len = strlen(name);
    return rooms_leave(a, gn(name, len), len);
}

static int publish_n(struct actor *from, const char *name, uint32_t kind,
                     const void *data, size_t dlen, unsigned flags)
{
    size_t len = strlen(name);
    const void *d = dlen ? guard_place(&gdata, data, dlen) : data;
    return rooms_publish(from, gn(name, len), len, kind, d, dlen, flags);
}

static int publish(struct actor *from, const char *name, const char *text)
{
    return publish_n(from, name, SNOW_TEXT, text, strlen(text), 0);
}

static uint64_t size_of(const char *name)
{
    size_t len = strlen(name);
    return rooms_size(gn(name, len), len);
}

static uint64_t mask_of(const char *name)
{
    size_t len = strlen(name);
    return rooms_worker_mask(gn(name, len), len);
}

static uint32_t set_count(const char *name, unsigned slot, uint32_t count)
{
    size_t len = strlen(name);
    return rooms_set_count(gn(name, len), len, slot, count);
}

static void deliver_remote(const char *name, snow_pid from, uint32_t kind,
                           const void *data, size_t dlen)
{
    size_t len = strlen(name);
    const void *d = dlen ? guard_place(&gdata, data, dlen) : data;
    rooms_deliver_remote(gn(name, len), len, from, kind, d, dlen);
}

static void run(void)
{
    actor_run(SIZE_MAX);
}

/* Checks that bytes[0, n) are exactly one unmasked, final WebSocket
 * frame with opcode op and this payload, with the shortest length
 * encoding (RFC 6455 section 5.2). */
static void check_frame(const uint8_t *bytes, size_t n, unsigned op,
                        const void *payload, size_t plen)
{
    size_t hlen;
    uint64_t len;

    assert_true(n >= 2);
    assert_int_equal(bytes[0], 0x80 | op);          /* FIN, no RSV */
    assert_int_equal(bytes[1] & 0x80, 0);           /* server: unmasked */
    len = bytes[1] & 0x7f;
    if (len < 126) {
        hlen = 2;
    } else if (len == 126) {
        assert_true(n >= 4);
        len = (uint64_t)bytes[2] << 8 | bytes[3];
        assert_true(len >= 126);
        hlen = 4;
    } else {
        assert_true(n >= 10);
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | bytes[2 + i];
        assert_true(len > 0xffff);
        assert_int_equal(len >> 63, 0);
        hlen = 10;
    }
    assert_int_equal(len, plen);
    assert_int_equal(n, hlen + plen);
    if (plen)
        assert_memory_equal(bytes + hlen, payload, plen);
}

static size_t frame_size(size_t plen)
{
    return plen + (plen < 126 ? 2 : plen <= 0xffff ? 4 : 10);
}

/* How many writes went to `a` among records [from, nw). */
static size_t writes_to(const struct actor *a, size_t from)
{
    size_t n = 0;
    for (size_t i = from; i < rec.nw; i++)
        n += rec.w[i].a == a;
    return n;
}

/* The deliveries to `a` of this type among the records. */
static size_t delivered(const struct actor *a, enum snow_msg_type type)
{
    size_t n = 0;
    for (size_t i = 0; i < rec.nd; i++)
        n += rec.d[i].a == a && rec.d[i].type == type;
    return n;
}

static const struct drec *delivery(const struct actor *a,
                                   enum snow_msg_type type)
{
    for (size_t i = 0; i < rec.nd; i++)
        if (rec.d[i].a == a && rec.d[i].type == type)
            return &rec.d[i];
    fail_msg("no delivery of type %d", (int)type);
    return NULL;
}

/* A room message or presence event: "room\0payload". */
static void check_info(const struct drec *d, enum snow_msg_type type,
                       uint32_t tag, snow_pid from, const char *room,
                       const void *payload, size_t plen)
{
    size_t rlen = strlen(room);

    assert_int_equal(d->type, type);
    assert_int_equal(d->tag, tag);
    assert_int_equal(d->from, from);
    assert_int_equal(d->len, rlen + 1 + plen);
    assert_memory_equal(d->data, room, rlen);
    assert_int_equal(d->data[rlen], 0);
    if (plen)
        assert_memory_equal(d->data + rlen + 1, payload, plen);
}

/* The last count call for a room, or NULL. */
static const struct crec *last_count(const char *room)
{
    for (size_t i = rec.nc; i-- > 0;)
        if (strcmp(rec.c[i].room, room) == 0)
            return &rec.c[i];
    return NULL;
}

static size_t counts_for(const char *room)
{
    size_t n = 0;
    for (size_t i = 0; i < rec.nc; i++)
        n += strcmp(rec.c[i].room, room) == 0;
    return n;
}

/* ---- names ------------------------------------------------------------------ */

static bool valid(const void *name, size_t len)
{
    return rooms_name_valid(gn(name, len), len);
}

static void test_rooms_name_valid_lengths(void **state)
{
    (void)state;
    char name[SNOW_ROOM_MAX + 2];

    memset(name, 'a', sizeof name);
    assert_false(rooms_name_valid(NULL, 0));
    assert_false(rooms_name_valid(NULL, 4));
    assert_false(valid("", 0));
    assert_true(valid("a", 1));
    assert_true(valid(name, SNOW_ROOM_MAX));
    assert_false(valid(name, SNOW_ROOM_MAX + 1));
    assert_true(valid("lobby/general chat", 18));
}

static void test_rooms_name_rejects_control_chars(void **state)
{
    (void)state;
    assert_false(valid("\0", 1));
    assert_false(valid("a\0b", 3));
    assert_false(valid("\x01", 1));
    assert_false(valid("tab\there", 8));
    assert_false(valid("line\n", 5));
    assert_false(valid("\x1f", 1));
    assert_false(valid("del\x7f", 4));
    assert_false(valid("\x7f", 1));
    assert_true(valid(" ", 1));
    assert_true(valid("~", 1));
    assert_false(valid("\xc2\x80", 2));                    /* U+0080, C1 */
    assert_false(valid("a\xc2\x9f", 3));                   /* U+009F, C1 */
    assert_true(valid("\xc2\xa0", 2));                     /* U+00A0 */
}

static void test_rooms_name_utf8(void **state)
{
    (void)state;
    char name[SNOW_ROOM_MAX + 4];

    assert_true(valid("caf\xc3\xa9", 5));                   /* é */
    assert_true(valid("\xe2\x82\xac", 3));                  /* € */
    assert_true(valid("\xf0\x9f\x98\x80 room", 9));         /* 😀 */
    assert_false(valid("\xff", 1));
    assert_false(valid("\x80", 1));                        /* lone cont. */
    assert_false(valid("\xc0\x80", 2));                    /* overlong NUL */
    assert_false(valid("\xe0\x80\xaf", 3));                /* overlong / */
    assert_false(valid("\xed\xa0\x80", 3));                /* surrogate */
    assert_false(valid("\xf4\x90\x80\x80", 4));            /* > U+10FFFF */
    assert_false(valid("ab\xe2\x82", 4));                  /* cut short */
    /* 32 four-byte characters: exactly the limit. */
    for (int i = 0; i < 32; i++)
        memcpy(name + 4 * i, "\xf0\x9f\x98\x80", 4);
    assert_true(valid(name, 128));
    assert_false(valid(name, 127));                        /* cut inside */
    memcpy(name + 128, "\xc3\xa9", 2);
    assert_false(valid(name, 130));                        /* too long */
    /* A sequence cut by the end of the input, right at the guard page. */
    memset(name, 'a', 127);
    name[127] = (char)0xc3;
    assert_false(valid(name, 128));
}

/* ---- membership ---------------------------------------------------------------- */

static void test_rooms_join_leave(void **state)
{
    (void)state;
    struct actor *a = start(0, ACTOR_CONN), *b = start(1, ACTOR_CONN);

    assert_int_equal(size_of("r"), 0);
    assert_int_equal(leave(a, "r"), -SNOW_ENOENT);       /* no such room */
    assert_int_equal(join(a, "r", 0), 0);
    assert_int_equal(size_of("r"), 1);
    assert_int_equal(join(a, "r", 0), -SNOW_EEXIST);
    assert_int_equal(join(a, "r", SNOW_JOIN_INFO), -SNOW_EEXIST);
    assert_int_equal(size_of("r"), 1);
    assert_int_equal(leave(b, "r"), -SNOW_ENOENT);       /* not a member */
    assert_int_equal(join(b, "r", 0), 0);
    assert_int_equal(size_of("r"), 2);
    assert_int_equal(rooms_stats()->rooms, 1);
    assert_int_equal(leave(a, "r"), 0);
    assert_int_equal(leave(a, "r"), -SNOW_ENOENT);
    assert_int_equal(size_of("r"), 1);
    assert_null(a->rooms);
    assert_int_equal(leave(b, "r"), 0);
    assert_int_equal(size_of("r"), 0);
    /* The empty room lives until the end of the turn (a count to send). */
    rooms_flush();
    assert_int_equal(rooms_stats()->rooms, 0);
    assert_int_equal(leave(b, "r"), -SNOW_ENOENT);
    /* Names are compared by bytes and length. */
    assert_int_equal(join(a, "room", 0), 0);
    assert_int_equal(join(a, "roo", 0), 0);
    assert_int_equal(join(a, "Room", 0), 0);
    assert_int_equal(size_of("room"), 1);
    assert_int_equal(rooms_stats()->rooms, 3);
}

static void test_rooms_per_actor_limit(void **state)
{
    (void)state;
    struct actor *a = start(0, ACTOR_CONN), *b = start(1, ACTOR_CONN);
    char name[32];

    for (int i = 0; i < SNOW_ROOMS_PER_ACTOR; i++) {
        snprintf(name, sizeof name, "room-%d", i);
        assert_int_equal(join(a, name, 0), 0);
    }
    assert_int_equal(rooms_stats()->rooms, SNOW_ROOMS_PER_ACTOR);
    assert_int_equal(rec.nc, SNOW_ROOMS_PER_ACTOR);
    /* One more: refused, and the room made for it is gone again. */
    assert_int_equal(join(a, "one-too-many", 0), -SNOW_EFULL);
    assert_int_equal(size_of("one-too-many"), 0);
    assert_int_equal(rooms_stats()->rooms, SNOW_ROOMS_PER_ACTOR);
    assert_int_equal(rec.nc, SNOW_ROOMS_PER_ACTOR);
    /* An existing room is refused as well, and keeps its members. */
    assert_int_equal(join(b, "shared", 0), 0);
    assert_int_equal(join(a, "shared", 0), -SNOW_EFULL);
    assert_int_equal(size_of("shared"), 1);
    /* Leaving one makes room for one. */
    assert_int_equal(leave(a, "room-7"), 0);
    assert_int_equal(join(a, "shared", 0), 0);
    assert_int_equal(size_of("shared"), 2);
    assert_int_equal(join(a, "room-7", 0), -SNOW_EFULL);
    /* Every room is still found (the table grew many times). */
    for (int i = 0; i < SNOW_ROOMS_PER_ACTOR; i++) {
        snprintf(name, sizeof name, "room-%d", i);
        assert_int_equal(size_of(name), i == 7 ? 0 : 1);
    }
    rooms_leave_all(a);
    assert_null(a->rooms);
    rooms_flush();
    assert_int_equal(rooms_stats()->rooms, 1);          /* "shared" */
}

static void test_rooms_count_first_sync_then_coalesced(void **state)
{
    (void)state;
    struct actor *a = start(0, ACTOR_CONN), *b = start(1, ACTOR_CONN),
                 *c = start(2, ACTOR_SERVICE);

    assert_int_equal(join(a, "x", 0), 0);
    /* The first member: told at once, before join returns. */
    assert_int_equal(rec.nc, 1);
    assert_string_equal(rec.c[0].room, "x");
    assert_int_equal(rec.c[0].count, 1);
    assert_true(rec.c[0].first);
    assert_int_equal(join(b, "x", 0), 0);
    assert_int_equal(join(c, "x", 0), 0);
    assert_int_equal(leave(a, "x"), 0);
    assert_int_equal(join(a, "y", 0), 0);
    assert_int_equal(join(b, "y", 0), 0);
    assert_int_equal(rec.nc, 2);                 /* only y's first member */
    assert_true(rec.c[1].first);
    /* The end of the turn: one call per room, with the final count. */
    rooms_flush();
    assert_int_equal(rec.nc, 4);
    assert_int_equal(counts_for("x"), 2);
    assert_int_equal(counts_for("y"), 2);
    assert_int_equal(last_count("x")->count, 2);
    assert_false(last_count("x")->first);
    assert_int_equal(last_count("y")->count, 2);
    assert_false(last_count("y")->first);
    /* Nothing changed: nothing sent. */
    rooms_flush();
    assert_int_equal(rec.nc, 4);
    /* Down to 0 and back to 1 in one turn: the master never heard of the
     * 0, so it still routes here; no call, only the new count at the
     * end of the turn. */
    assert_int_equal(leave(b, "y"), 0);
    assert_int_equal(leave(a, "y"), 0);
    assert_int_equal(rec.nc, 4);
    assert_int_equal(join(a, "y", 0), 0);
    assert_int_equal(rec.nc, 4);
    rooms_flush();
    assert_int_equal(rec.nc, 5);
    assert_int_equal(last_count("y")->count, 1);
    assert_false(last_count("y")->first);
    /* A join/leave storm within one turn costs nothing until the turn
     * ends, and then one count. */
    for (int k = 0; k < 1000; k++) {
        assert_int_equal(leave(a, "y"), 0);
        assert_int_equal(join(a, "y", 0), 0);
    }
    assert_int_equal(rec.nc, 5);
    rooms_flush();
    assert_int_equal(rec.nc, 5);   /* back where the master has it: 1 */
    /* Down to 0: 0 goes out, then the room goes. */
    assert_int_equal(leave(a, "y"), 0);
    rooms_flush();
    assert_int_equal(rec.nc, 6);
    assert_int_equal(last_count("y")->count, 0);
    assert_false(last_count("y")->first);
    assert_int_equal(rooms_stats()->rooms, 1);
    assert_int_equal(size_of("x"), 2);
}

/* ---- publishing --------------------------------------------------------------- */

static void test_rooms_publish_encodes_once(void **state)
{
    (void)state;
    struct actor *c1 = start(0, ACTOR_CONN), *c2 = start(1, ACTOR_CONN),
                 *c3 = start(2, ACTOR_CONN), *i1 = start(3, ACTOR_CONN),
                 *s1 = start(4, ACTOR_SERVICE), *s2 = start(5, ACTOR_SERVICE),
                 *p = start(6, ACTOR_SERVICE), *out = start(7, ACTOR_CONN);

    assert_int_equal(join(c1, "chat", 0), 0);
    assert_int_equal(join(c2, "chat", SNOW_JOIN_PRESENCE), 0);
    assert_int_equal(join(i1, "chat", SNOW_JOIN_INFO), 0);
    assert_int_equal(join(s1, "chat", 0), 0);
    assert_int_equal(join(c3, "chat", 0), 0);
    assert_int_equal(join(s2, "chat", SNOW_JOIN_INFO), 0);
    assert_int_equal(join(out, "elsewhere", 0), 0);
    run();
    rec_reset();
    /* c2 heard the others join: those count as deliveries too. */
    uint64_t deliveries = rooms_stats()->deliveries;
    assert_int_equal(deliveries, 4);

    assert_int_equal(publish(p, "chat", "hello"), 0);
    assert_int_equal(rooms_stats()->publishes, 1);
    /* Three sockets, one frame: same block, same bytes. */
    assert_int_equal(rec.nw, 3);
    assert_int_equal(writes_to(c1, 0), 1);
    assert_int_equal(writes_to(c2, 0), 1);
    assert_int_equal(writes_to(c3, 0), 1);
    for (size_t i = 0; i < rec.nw; i++) {
        assert_ptr_equal(rec.w[i].b, rec.w[0].b);
        assert_int_equal(rec.w[i].off, rec.w[0].off);
        assert_int_equal(rec.w[i].end, rec.w[0].end);
        assert_true(rec.w[i].ok);
        check_frame(rec.w[i].bytes, rec.w[i].end - rec.w[i].off, 0x1,
                    "hello", 5);
    }
    assert_int_equal(rec.w[0].off, 0);
    assert_int_equal(rec.w[0].b->len, 7);
    /* The room's reference and one per connection. */
    assert_int_equal(rec.w[0].b->refs, 4);
    /* INFO members and services: actor messages, "room\0payload". */
    assert_int_equal(rec.nd, 0);
    run();
    assert_int_equal(rec.nd, 3);
    check_info(delivery(i1, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_TEXT,
               p->pid, "chat", "hello", 5);
    check_info(delivery(s1, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_TEXT,
               p->pid, "chat", "hello", 5);
    check_info(delivery(s2, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_TEXT,
               p->pid, "chat", "hello", 5);
    assert_int_equal(rooms_stats()->deliveries, deliveries + 6);
    assert_int_equal(rooms_stats()->dropped, 0);

    /* Binary, with bytes text could not hold. */
    static const uint8_t bin[] = { 0, 0xff, 0x80, 'x', 0 };
    rec_reset();
    assert_int_equal(publish_n(p, "chat", SNOW_BINARY, bin, sizeof bin, 0),
                     0);
    assert_int_equal(rec.nw, 3);
    for (size_t i = 0; i < rec.nw; i++)
        check_frame(rec.w[i].bytes, rec.w[i].end - rec.w[i].off, 0x2, bin,
                    sizeof bin);
    run();
    assert_int_equal(rec.nd, 3);
    check_info(delivery(s1, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_BINARY,
               p->pid, "chat", bin, sizeof bin);

    /* An empty message is a frame with no payload. */
    rec_reset();
    assert_int_equal(publish_n(p, "chat", SNOW_TEXT, NULL, 0, 0), 0);
    assert_int_equal(rec.nw, 3);
    check_frame(rec.w[0].bytes, rec.w[0].end - rec.w[0].off, 0x1, NULL, 0);
    run();
    check_info(delivery(i1, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_TEXT,
               p->pid, "chat", NULL, 0);

    /* Nobody in the room, or no room: nothing, and still success. */
    rec_reset();
    assert_int_equal(publish(p, "nobody", "x"), 0);
    assert_int_equal(rec.nw + rec.nd + rec.np, 0);
    assert_int_equal(rooms_stats()->rooms, 2);
    assert_int_equal(writes_to(out, 0), 0);
}

static void test_rooms_publish_length_encodings(void **state)
{
    (void)state;
    struct actor *c = start(0, ACTOR_CONN), *i = start(1, ACTOR_SERVICE);
    static uint8_t data[SNOW_MSG_MAX];
    static const size_t sizes[] = { 1, 125, 126, 127, 1000, 0xffff,
                                    0x10000 };

    for (size_t k = 0; k < sizeof data; k++)
        data[k] = (uint8_t)(k * 31 + 7);
    assert_int_equal(join(c, "len", 0), 0);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        rec_reset();
        assert_true(sizes[k] <= SNOW_MSG_MAX);
        assert_int_equal(publish_n(c, "len", SNOW_BINARY, data, sizes[k], 0),
                         0);
        assert_int_equal(rec.nw, 1);
        assert_int_equal(rec.w[0].end - rec.w[0].off, frame_size(sizes[k]));
        check_frame(rec.w[0].bytes, rec.w[0].end - rec.w[0].off, 0x2, data,
                    sizes[k]);
        rooms_flush();
    }
    /* An actor member gets the name and the payload in one message, and
     * the largest payload a publish takes reaches it whole. */
    assert_int_equal(join(i, "len", 0), 0);
    rec_reset();
    size_t most = SNOW_MSG_MAX;
    assert_int_equal(publish_n(c, "len", SNOW_BINARY, data, most, 0), 0);
    run();
    assert_int_equal(rec.nd, 1);
    check_info(delivery(i, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_BINARY,
               c->pid, "len", data, most);
    assert_int_equal(rooms_stats()->dropped, 0);
}

static void test_rooms_publish_exclude_self(void **state)
{
    (void)state;
    struct actor *me = start(0, ACTOR_CONN), *other = start(1, ACTOR_CONN),
                 *svc = start(2, ACTOR_SERVICE);

    assert_int_equal(join(me, "r", 0), 0);
    assert_int_equal(join(other, "r", 0), 0);
    assert_int_equal(join(svc, "r", 0), 0);
    assert_int_equal(publish_n(me, "r", SNOW_TEXT, "a", 1,
                               SNOW_PUBLISH_EXCLUDE_SELF), 0);
    assert_int_equal(rec.nw, 1);
    assert_int_equal(writes_to(other, 0), 1);
    assert_int_equal(publish_n(me, "r", SNOW_TEXT, "b", 1, 0), 0);
    assert_int_equal(rec.nw, 3);
    assert_int_equal(writes_to(me, 1), 1);
    assert_int_equal(writes_to(other, 1), 1);
    /* A service excludes itself from its actor messages too. */
    assert_int_equal(publish_n(svc, "r", SNOW_TEXT, "c", 1,
                               SNOW_PUBLISH_EXCLUDE_SELF), 0);
    assert_int_equal(rec.nw, 5);
    run();
    assert_int_equal(delivered(svc, SNOW_MSG_ROOM), 2);      /* a and b */
}

static void test_rooms_presence(void **state)
{
    (void)state;
    struct actor *watch = start(0, ACTOR_CONN), *plain = start(1, ACTOR_CONN),
                 *svc = start(2, ACTOR_SERVICE), *d = start(3, ACTOR_CONN);

    assert_int_equal(join(watch, "p", SNOW_JOIN_PRESENCE), 0);
    assert_int_equal(join(plain, "p", 0), 0);
    assert_int_equal(join(svc, "p", SNOW_JOIN_PRESENCE | SNOW_JOIN_INFO), 0);
    run();
    /* watch heard plain and svc join; svc heard nobody (it came last). */
    assert_int_equal(delivered(watch, SNOW_MSG_JOIN), 2);
    assert_int_equal(delivered(plain, SNOW_MSG_JOIN), 0);
    assert_int_equal(delivered(svc, SNOW_MSG_JOIN), 0);
    rec_reset();

    /* A joiner that asks for presence does not hear itself. */
    assert_int_equal(join(d, "p", SNOW_JOIN_PRESENCE), 0);
    run();
    assert_int_equal(rec.nd, 2);
    check_info(delivery(watch, SNOW_MSG_JOIN), SNOW_MSG_JOIN, 0, d->pid, "p",
               NULL, 0);
    check_info(delivery(svc, SNOW_MSG_JOIN), SNOW_MSG_JOIN, 0, d->pid, "p",
               NULL, 0);
    assert_int_equal(rec.nw, 0);         /* presence never hits a socket */
    assert_int_equal(rec.np, 0);         /* nobody elsewhere */
    rec_reset();

    assert_int_equal(leave(d, "p"), 0);
    run();
    assert_int_equal(rec.nd, 2);
    check_info(delivery(watch, SNOW_MSG_LEAVE), SNOW_MSG_LEAVE, 0, d->pid,
               "p", NULL, 0);
    check_info(delivery(svc, SNOW_MSG_LEAVE), SNOW_MSG_LEAVE, 0, d->pid, "p",
               NULL, 0);
    assert_int_equal(delivered(d, SNOW_MSG_LEAVE), 0);
    rec_reset();

    /* Someone in another room: no presence here. */
    assert_int_equal(join(d, "q", 0), 0);
    run();
    assert_int_equal(rec.nd, 0);
}

static void test_rooms_leave_all_on_exit(void **state)
{
    (void)state;
    struct actor *x = start(0, ACTOR_CONN), *w = start(1, ACTOR_SERVICE);

    rooms_leave_all(x);                       /* in no room: nothing */
    assert_int_equal(join(w, "r1", SNOW_JOIN_PRESENCE), 0);
    assert_int_equal(join(x, "r1", 0), 0);
    assert_int_equal(join(x, "r2", SNOW_JOIN_INFO), 0);
    assert_int_equal(join(x, "r3", SNOW_JOIN_PRESENCE), 0);
    rooms_flush();
    run();
    rec_reset();
    snow_pid xpid = x->pid;

    actor_exit(x, "normal");
    assert_int_equal(rec.nexits, 1);
    assert_null(x->rooms);
    assert_int_equal(size_of("r1"), 1);
    assert_int_equal(size_of("r2"), 0);
    assert_int_equal(size_of("r3"), 0);
    run();
    assert_int_equal(rec.nd, 1);
    check_info(delivery(w, SNOW_MSG_LEAVE), SNOW_MSG_LEAVE, 0, xpid, "r1",
               NULL, 0);
    rooms_flush();
    assert_int_equal(rooms_stats()->rooms, 1);
    assert_int_equal(last_count("r1")->count, 1);
    assert_int_equal(last_count("r2")->count, 0);
    assert_int_equal(last_count("r3")->count, 0);
    /* A publish no longer reaches it. */
    assert_int_equal(publish(w, "r1", "after"), 0);
    assert_int_equal(rec.nw, 0);
    run();
    assert_int_equal(delivered(w, SNOW_MSG_ROOM), 1);
}

/* Members are removed by swapping the last one in: after any sequence of
 * leaves, exactly the members left get a publish, once each. */
static void test_rooms_swap_remove_keeps_members(void **state)
{
    (void)state;
    enum { N = 100 };
    struct actor *p = start(N, ACTOR_SERVICE);
    bool in[N];
    size_t order[N];

    for (size_t i = 0; i < N; i++) {
        start(i, ACTOR_CONN);
        assert_int_equal(join(&actors[i], "big", 0), 0);
        in[i] = true;
        order[i] = i;
    }
    srand(4242);
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t k = 0; k < N; k++) {
        assert_int_equal(leave(&actors[order[k]], "big"), 0);
        in[order[k]] = false;
        rec_reset();
        assert_int_equal(publish(p, "big", "tick"), 0);
        assert_int_equal(rec.nw, N - 1 - k);
        assert_int_equal(size_of("big"), N - 1 - k);
        for (size_t i = 0; i < N; i++)
            assert_int_equal(writes_to(&actors[i], 0), in[i] ? 1 : 0);
        if (k % 10 == 9) {
            rooms_flush();
            assert_int_equal(last_count("big")->count, N - 1 - k);
        }
    }
    rooms_flush();
    assert_int_equal(rooms_stats()->rooms, 0);
}

/* A burst in one turn: contiguous frames in one block, and a member's
 * real output queue extends one range instead of adding ranges. */
static void test_rooms_burst_is_contiguous(void **state)
{
    (void)state;
    struct actor *a = start(0, ACTOR_CONN), *b = start(1, ACTOR_CONN);

    rec.use_queues = true;
    assert_int_equal(join(a, "burst", 0), 0);
    assert_int_equal(join(b, "burst", 0), 0);
    assert_int_equal(publish(a, "burst", "first"), 0);
    assert_int_equal(publish(a, "burst", "second"), 0);
    assert_int_equal(rec.nw, 4);
    struct block *blk = rec.w[0].b;
    for (size_t i = 0; i < 4; i++)
        assert_ptr_equal(rec.w[i].b, blk);
    assert_int_equal(rec.w[0].off, 0);
    assert_int_equal(rec.w[2].off, rec.w[0].end);
    assert_int_equal(rec.w[2].end, blk->len);
    check_frame(blk->data + rec.w[2].off, rec.w[2].end - rec.w[2].off, 0x1,
                "second", 6);
    /* Each queue: one range with both frames. */
    for (size_t i = 0; i < 2; i++) {
        struct outq *q = rec.queue[i];
        assert_non_null(q);
        assert_int_equal(q->n, 1);
        assert_int_equal(outq_size(q), 7 + 8);
    }
    /* room + two writes per member, each held by the test. */
    assert_int_equal(blk->refs, 1 + 4 + 2);

    /* The turn ends: the room lets go, the members keep the bytes, and
     * the next publish starts a new block. */
    rooms_flush();
    assert_int_equal(blk->refs, 4 + 2);
    assert_int_equal(publish(a, "burst", "third"), 0);
    assert_int_equal(rec.nw, 6);
    assert_ptr_not_equal(rec.w[4].b, blk);
    assert_int_equal(rec.w[4].off, 0);
    assert_int_equal(rec.w[4].b->cap, 256);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(rec.queue[i]->n, 2);
}

/* Blocks of a turn start small and double up to BLOCK_STD_SIZE; a frame
 * larger than that gets a block of its own. */
static void test_rooms_block_growth(void **state)
{
    (void)state;
    struct actor *a = start(0, ACTOR_CONN);
    static uint8_t data[BLOCK_STD_SIZE + 4000];
    static const uint32_t caps[] = { 256, 512, 1024, 2048, 4096, 8192,
                                     BLOCK_STD_SIZE, BLOCK_STD_SIZE };
    size_t nb = 0;

    memset(data, 'z', sizeof data);
    assert_int_equal(join(a, "g", 0), 0);
    /* 100-byte payloads: 102-byte frames. */
    while (nb < sizeof caps / sizeof caps[0]) {
        size_t before = rec.nw;
        assert_int_equal(publish_n(a, "g", SNOW_BINARY, data, 100, 0), 0);
        assert_int_equal(rec.nw, before + 1);
        const struct wrec *w = &rec.w[before];
        assert_int_equal(w->end - w->off, 102);
        if (before == 0 || w->b != rec.w[before - 1].b) {
            /* A new block: the last one was too full for this frame. */
            assert_int_equal(w->off, 0);
            assert_int_equal(w->b->cap, caps[nb]);
            if (before)
                assert_true(rec.w[before - 1].b->cap -
                            rec.w[before - 1].b->len < 102);
            nb++;
        } else {
            assert_int_equal(w->off, rec.w[before - 1].end);
        }
    }
    /* A frame larger than a standard block: a block of its own. */
    size_t big = BLOCK_STD_SIZE + 100;
    size_t before = rec.nw;
    assert_int_equal(publish_n(a, "g", SNOW_BINARY, data, big, 0), 0);
    const struct wrec *w = &rec.w[before];
    struct block *bigb = w->b;
    assert_ptr_not_equal(bigb, rec.w[before - 1].b);
    assert_int_equal(w->off, 0);
    assert_int_equal(w->end, frame_size(big));
    assert_true(bigb->cap >= frame_size(big));
    check_frame(w->bytes, w->end - w->off, 0x2, data, big);
    /* After it, standard blocks again. */
    assert_int_equal(publish_n(a, "g", SNOW_BINARY, data, 100, 0), 0);
    assert_ptr_not_equal(rec.w[before + 1].b, bigb);
    assert_int_equal(rec.w[before + 1].b->cap, BLOCK_STD_SIZE);
    /* A new turn starts small again. */
    rooms_flush();
    assert_int_equal(publish_n(a, "g", SNOW_BINARY, data, 100, 0), 0);
    assert_int_equal(rec.w[before + 2].b->cap, 256);
    /* A first frame larger than the first block gets a block its size. */
    rooms_flush();
    assert_int_equal(publish_n(a, "g", SNOW_BINARY, data, 1000, 0), 0);
    assert_int_equal(rec.w[before + 3].off, 0);
    assert_true(rec.w[before + 3].b->cap >= frame_size(1000));
}

static void test_rooms_refused_writes_count_as_dropped(void **state)
{
    (void)state;
    struct actor *c1 = start(0, ACTOR_CONN), *c2 = start(1, ACTOR_CONN),
                 *c3 = start(2, ACTOR_CONN), *s = start(3, ACTOR_SERVICE);

    assert_int_equal(join(c1, "d", 0), 0);
    assert_int_equal(join(c2, "d", 0), 0);
    assert_int_equal(join(c3, "d", 0), 0);
    rec.refuse = c2;
    assert_int_equal(publish(c1, "d", "m"), 0);
    assert_int_equal(rec.nw, 3);
    assert_int_equal(rooms_stats()->deliveries, 2);
    assert_int_equal(rooms_stats()->dropped, 1);
    assert_int_equal(rooms_stats()->publishes, 1);
    /* A service whose mailbox is full drops too. */
    rec.refuse = NULL;
    assert_int_equal(join(s, "d", 0), 0);
    for (int i = 0; i < LIMIT + 3; i++)
        assert_int_equal(publish(c1, "d", "m"), 0);
    assert_int_equal(rooms_stats()->dropped, 1 + 3);
    assert_int_equal(rooms_stats()->deliveries, 2 + (LIMIT + 3) * 3 + LIMIT);
    run();
    assert_int_equal(delivered(s, SNOW_MSG_ROOM), LIMIT);
}

/* ---- other workers ---------------------------------------------------------- */

static void test_rooms_publish_remote(void **state)
{
    (void)state;
    struct actor *c = start(0, ACTOR_CONN), *p = start(1, ACTOR_SERVICE);

    assert_int_equal(set_count("r", 1, 3), 0);
    assert_int_equal(size_of("r"), 3);
    assert_int_equal(rooms_stats()->rooms, 1);
    /* A join is announced to the others. */
    assert_int_equal(join(c, "r", 0), 0);
    assert_int_equal(size_of("r"), 4);
    assert_int_equal(rec.np, 1);
    assert_string_equal(rec.p[0].room, "r");
    assert_int_equal(rec.p[0].kind, ROOMS_PRESENCE_JOIN);
    assert_int_equal(rec.p[0].from, c->pid);
    assert_int_equal(rec.p[0].dlen, 0);
    rec_reset();

    assert_int_equal(publish(p, "r", "to all"), 0);
    assert_int_equal(rec.remote_room_calls, 1);
    assert_true(rec.last_remote_room_bytes >= strlen("to all") + 1);
    assert_int_equal(rec.np, 1);
    assert_string_equal(rec.p[0].room, "r");
    assert_int_equal(rec.p[0].from, p->pid);
    assert_int_equal(rec.p[0].kind, SNOW_TEXT);
    assert_int_equal(rec.p[0].dlen, 6);
    assert_memory_equal(rec.p[0].data, "to all", 6);
    assert_int_equal(rec.nw, 1);
    assert_int_equal(rooms_stats()->publishes, 1);
    rec_reset();

    /* The channel is full: all or nothing, so nothing. */
    rec.remote_ok = false;
    uint64_t deliveries = rooms_stats()->deliveries;
    assert_int_equal(publish(p, "r", "lost"), -SNOW_EFULL);
    assert_int_equal(rec.remote_room_calls, 1);
    assert_int_equal(rec.np, 0);
    assert_int_equal(rec.nw, 0);
    assert_int_equal(rooms_stats()->publishes, 1);
    assert_int_equal(rooms_stats()->deliveries, deliveries);

    /* Nobody elsewhere: the channel is not asked. */
    assert_int_equal(set_count("r", 1, 0), 3);
    assert_int_equal(publish(p, "r", "local"), 0);
    assert_int_equal(rec.remote_room_calls, 1);
    assert_int_equal(rec.np, 0);
    assert_int_equal(rec.nw, 1);
    /* And a leave is not announced to nobody. */
    assert_int_equal(leave(c, "r"), 0);
    assert_int_equal(rec.np, 0);
}

static void test_rooms_set_count_and_mask(void **state)
{
    (void)state;
    struct actor *c = start(0, ACTOR_CONN);

    /* A 0 for an unknown room makes no room. */
    assert_int_equal(set_count("m", 2, 0), 0);
    assert_int_equal(rooms_stats()->rooms, 0);
    assert_int_equal(mask_of("m"), 0);

    assert_int_equal(set_count("m", 1, 2), 0);
    assert_int_equal(set_count("m", 3, 5), 0);
    assert_int_equal(size_of("m"), 7);
    assert_int_equal(mask_of("m"), (1u << 1) | (1u << 3));
    assert_int_equal(set_count("m", 1, 4), 2);
    assert_int_equal(size_of("m"), 9);
    assert_int_equal(set_count("m", 63, 1), 0);
    assert_true(mask_of("m") == ((1ull << 1) | (1ull << 3) | (1ull << 63)));
    /* Our own slot and slots out of range are not taken from outside. */
    assert_int_equal(set_count("m", SLOT, 50), 0);
    assert_int_equal(set_count("m", ROOMS_MAX_WORKERS, 50), 0);
    assert_int_equal(size_of("m"), 10);
    assert_int_equal(rooms_stats()->rooms, 1);

    /* Our own members show in the mask (for the master's view). */
    assert_int_equal(join(c, "m", 0), 0);
    assert_true(mask_of("m") & (1ull << SLOT));
    assert_int_equal(size_of("m"), 11);

    /* Everything back to 0: the room stays while we are in it... */
    assert_int_equal(set_count("m", 1, 0), 4);
    assert_int_equal(set_count("m", 3, 0), 5);
    assert_int_equal(set_count("m", 63, 0), 1);
    assert_int_equal(rooms_stats()->rooms, 1);
    assert_int_equal(mask_of("m"), 1ull << SLOT);
    /* ...and goes once we left and the turn ended. */
    assert_int_equal(leave(c, "m"), 0);
    assert_int_equal(rooms_stats()->rooms, 1);
    rooms_flush();
    assert_int_equal(rooms_stats()->rooms, 0);
    assert_int_equal(size_of("m"), 0);

    /* Only remote counts: the room goes as soon as they are 0. */
    assert_int_equal(set_count("n", 5, 1), 0);
    assert_int_equal(rooms_stats()->rooms, 1);
    assert_int_equal(set_count("n", 5, 0), 1);
    assert_int_equal(rooms_stats()->rooms, 0);
}

struct forgotten {
    char names[8][SNOW_ROOM_MAX + 1];
    size_t n;
};

static void on_forget(void *arg, const char *name, size_t len)
{
    struct forgotten *f = arg;
    assert_true(f->n < 8);
    /* The room still has the slot's count while fn runs. */
    assert_true(rooms_size(name, len) > 0);
    copy_name(f->names[f->n++], name, len);
}

static bool forgot(const struct forgotten *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0)
            return true;
    return false;
}

static void test_rooms_forget_worker(void **state)
{
    (void)state;
    struct actor *c = start(0, ACTOR_CONN);
    struct forgotten f = { .n = 0 };

    set_count("a", 1, 2);
    set_count("a", 2, 1);
    set_count("b", 1, 1);
    set_count("c", 2, 5);
    assert_int_equal(join(c, "d", 0), 0);
    set_count("d", 1, 7);
    assert_int_equal(rooms_stats()->rooms, 4);

    rooms_forget_worker(1, on_forget, &f);
    assert_int_equal(f.n, 3);
    assert_true(forgot(&f, "a"));
    assert_true(forgot(&f, "b"));
    assert_true(forgot(&f, "d"));
    assert_int_equal(size_of("a"), 1);
    assert_int_equal(mask_of("a"), 1u << 2);
    assert_int_equal(size_of("b"), 0);
    assert_int_equal(size_of("c"), 5);
    assert_int_equal(size_of("d"), 1);
    assert_int_equal(rooms_stats()->rooms, 3);          /* b is gone */
    /* Again: nothing left of slot 1. */
    f.n = 0;
    rooms_forget_worker(1, on_forget, &f);
    assert_int_equal(f.n, 0);
    /* Without a callback, and our own slot is never forgotten. */
    rooms_forget_worker(2, NULL, NULL);
    assert_int_equal(rooms_stats()->rooms, 1);          /* d */
    rooms_forget_worker(SLOT, on_forget, &f);
    rooms_forget_worker(ROOMS_MAX_WORKERS, on_forget, &f);
    assert_int_equal(f.n, 0);
    assert_int_equal(size_of("d"), 1);
}

struct counted {
    char names[8][SNOW_ROOM_MAX + 1];
    uint32_t counts[8];
    size_t n;
};

static void on_count(void *arg, const char *name, size_t len, uint32_t count)
{
    struct counted *c = arg;
    assert_true(c->n < 8);
    copy_name(c->names[c->n], name, len);
    c->counts[c->n++] = count;
}

static void test_rooms_each_count(void **state)
{
    (void)state;
    struct counted c = { .n = 0 };

    set_count("one", 4, 1);
    set_count("two", 4, 2);
    set_count("other", 5, 9);
    rooms_each_count(4, on_count, &c);
    assert_int_equal(c.n, 2);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.counts[i],
                         strcmp(c.names[i], "one") == 0 ? 1 : 2);
    c.n = 0;
    rooms_each_count(ROOMS_MAX_WORKERS, on_count, &c);
    assert_int_equal(c.n, 0);
}

static void test_rooms_deliver_remote(void **state)
{
    (void)state;
    struct actor *c = start(0, ACTOR_CONN), *w = start(1, ACTOR_CONN),
                 *s = start(2, ACTOR_SERVICE);
    snow_pid far = actor_pid_make(NODE, 3, 1, 42);

    assert_int_equal(join(c, "r", 0), 0);
    assert_int_equal(join(w, "r", SNOW_JOIN_PRESENCE), 0);
    assert_int_equal(join(s, "r", 0), 0);
    set_count("r", 3, 1);
    run();
    rec_reset();

    deliver_remote("r", far, SNOW_TEXT, "from afar", 9);
    assert_int_equal(rec.nw, 2);
    assert_ptr_equal(rec.w[0].b, rec.w[1].b);
    check_frame(rec.w[0].bytes, rec.w[0].end - rec.w[0].off, 0x1,
                "from afar", 9);
    run();
    assert_int_equal(rec.nd, 1);
    check_info(delivery(s, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_TEXT, far, "r",
               "from afar", 9);
    /* Local fan-out only: nothing goes back out. */
    assert_int_equal(rec.np, 0);
    assert_int_equal(rec.remote_room_calls, 0);
    rec_reset();

    deliver_remote("r", far, SNOW_BINARY, "\0\1", 2);
    assert_int_equal(rec.nw, 2);
    check_frame(rec.w[1].bytes, rec.w[1].end - rec.w[1].off, 0x2, "\0\1", 2);
    run();
    check_info(delivery(s, SNOW_MSG_ROOM), SNOW_MSG_ROOM, SNOW_BINARY, far,
               "r", "\0\1", 2);
    rec_reset();

    deliver_remote("r", far, ROOMS_PRESENCE_JOIN, NULL, 0);
    deliver_remote("r", far, ROOMS_PRESENCE_LEAVE, NULL, 0);
    assert_int_equal(rec.nw, 0);
    run();
    assert_int_equal(rec.nd, 2);
    check_info(delivery(w, SNOW_MSG_JOIN), SNOW_MSG_JOIN, 0, far, "r", NULL,
               0);
    check_info(delivery(w, SNOW_MSG_LEAVE), SNOW_MSG_LEAVE, 0, far, "r",
               NULL, 0);
    assert_int_equal(rec.np, 0);
    rec_reset();

    /* Unknown kinds, unknown rooms, rooms with no member here: nothing. */
    deliver_remote("r", far, 0, "x", 1);
    deliver_remote("r", far, 3, "x", 1);
    deliver_remote("r", far, 0x102, "x", 1);
    deliver_remote("nowhere", far, SNOW_TEXT, "x", 1);
    set_count("remote-only", 3, 2);
    deliver_remote("remote-only", far, SNOW_TEXT, "x", 1);
    run();
    assert_int_equal(rec.nw + rec.nd + rec.np, 0);
    assert_int_equal(rooms_stats()->rooms, 2);
}

static size_t leaves_from(const struct actor *a, snow_pid from)
{
    size_t n = 0;
    for (size_t i = 0; i < rec.nd; i++)
        n += rec.d[i].a == a && rec.d[i].type == SNOW_MSG_LEAVE &&
             rec.d[i].from == from;
    return n;
}

/* A worker that dies says nothing: when its count of a room drops to 0,
 * each of its members whose join a presence member here heard, and whose
 * leave did not come, is announced as gone; no one twice, no one from
 * another worker. */
static void test_rooms_presence_of_a_lost_worker(void **state)
{
    (void)state;
    struct actor *w = start(0, ACTOR_CONN), *svc = start(1, ACTOR_SERVICE),
                 *plain = start(2, ACTOR_CONN);
    snow_pid x1 = actor_pid_make(NODE, 3, 1, 1),
             x2 = actor_pid_make(NODE, 3, 1, 2),
             early = actor_pid_make(NODE, 3, 1, 3),
             y = actor_pid_make(NODE, 4, 1, 1);

    /* Heard by nobody: no presence member here yet. */
    assert_int_equal(join(plain, "r", 0), 0);
    set_count("r", 3, 1);
    deliver_remote("r", early, ROOMS_PRESENCE_JOIN, NULL, 0);
    assert_int_equal(join(w, "r", SNOW_JOIN_PRESENCE), 0);
    assert_int_equal(join(svc, "s", SNOW_JOIN_PRESENCE), 0);
    set_count("r", 3, 3);
    set_count("r", 4, 1);
    set_count("s", 3, 1);
    deliver_remote("r", x1, ROOMS_PRESENCE_JOIN, NULL, 0);
    deliver_remote("r", x2, ROOMS_PRESENCE_JOIN, NULL, 0);
    deliver_remote("r", y, ROOMS_PRESENCE_JOIN, NULL, 0);
    deliver_remote("s", x1, ROOMS_PRESENCE_JOIN, NULL, 0);
    deliver_remote("r", x2, ROOMS_PRESENCE_LEAVE, NULL, 0);   /* said so */
    run();
    rec_reset();

    set_count("r", 3, 0);      /* worker 3 is gone */
    run();
    assert_int_equal(leaves_from(w, x1), 1);
    assert_int_equal(leaves_from(w, x2), 0);
    assert_int_equal(leaves_from(w, early), 0);
    assert_int_equal(leaves_from(w, y), 0);
    assert_int_equal(rec.nd, 1);
    check_info(delivery(w, SNOW_MSG_LEAVE), SNOW_MSG_LEAVE, 0, x1, "r", NULL,
               0);
    assert_int_equal(rec.nw + rec.np, 0);   /* local news only */
    rec_reset();

    set_count("s", 3, 0);      /* each room on its own */
    set_count("r", 3, 0);      /* and never twice */
    run();
    assert_int_equal(rec.nd, 1);
    check_info(delivery(svc, SNOW_MSG_LEAVE), SNOW_MSG_LEAVE, 0, x1, "s",
               NULL, 0);
    rec_reset();

    /* The last presence member leaving forgets what was heard. */
    assert_int_equal(leave(w, "r"), 0);
    assert_int_equal(join(w, "r", SNOW_JOIN_PRESENCE), 0);
    run();
    rec_reset();
    set_count("r", 4, 0);
    run();
    assert_int_equal(leaves_from(w, y), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_rooms_name_valid_lengths),
        T(test_rooms_name_rejects_control_chars),
        T(test_rooms_name_utf8),
        T(test_rooms_join_leave),
        T(test_rooms_per_actor_limit),
        T(test_rooms_count_first_sync_then_coalesced),
        T(test_rooms_publish_encodes_once),
        T(test_rooms_publish_length_encodings),
        T(test_rooms_publish_exclude_self),
        T(test_rooms_presence),
        T(test_rooms_leave_all_on_exit),
        T(test_rooms_swap_remove_keeps_members),
        T(test_rooms_burst_is_contiguous),
        T(test_rooms_block_growth),
        T(test_rooms_refused_writes_count_as_dropped),
        T(test_rooms_publish_remote),
        T(test_rooms_set_count_and_mask),
        T(test_rooms_forget_worker),
        T(test_rooms_each_count),
        T(test_rooms_deliver_remote),
        T(test_rooms_presence_of_a_lost_worker),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
