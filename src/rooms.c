/*
 * rooms.c - rooms, members and fan-out (see rooms.h).
 */
#include "rooms.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "actor.h"
#include "outq.h"
#include "pidset.h"
#include "utf8.h"
#include "ws.h"

/* The first block of a room in a turn is small, and each next one twice
 * the size: a room that gets one message a turn pins little memory in a
 * slow member's queue, a busy one fills large blocks densely. */
#define BLOCK_FIRST 256

struct rooms_member {
    struct room *room;
    struct actor *actor;
    struct rooms_member *next;     /* the actor's next room */
    uint32_t index;                /* in room->members */
    uint8_t flags;                 /* SNOW_JOIN_* */
};

struct room {
    struct room *chain;            /* hash bucket */
    uint64_t hash;
    struct rooms_member **members; /* this worker's */
    uint32_t n, cap;
    uint32_t count[ROOMS_MAX_WORKERS];
    uint64_t others;               /* members on other workers */
    uint32_t sent;                 /* count[self] as the master knows it */
    uint32_t npresence;            /* local members with PRESENCE */
    /* Members elsewhere whose join a local presence member heard (kept
     * only while there is one): a worker that dies cannot say that they
     * left, so their leave is announced here when its count drops to 0. */
    struct pidset heard;
    struct block *cur;             /* this turn's frames */
    uint32_t next_block;           /* size of the next block this turn */
    struct room *turn_next;        /* on the turn list */
    bool on_turn;
    bool count_dirty;              /* count[self] not yet sent */
    uint16_t len;
    char name[];                   /* NUL-terminated */
};

static struct {
    struct room **buckets;
    size_t cap;                    /* a power of two, or 0 */
    size_t count;
    uint64_t seed;
    unsigned self;                 /* this worker's slot, or ROOMS_NO_SLOT */
    const struct rooms_hooks *hooks;
    struct room *turn;             /* rooms to visit at rooms_flush */
    struct rooms_stats stats;
    /* a room name and a payload side by side, for actor messages */
    uint8_t scratch[SNOW_ROOM_MAX + 1 + SNOW_MSG_MAX];
} R = { .self = ROOMS_NO_SLOT };

/* ---- the table ------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    return x ^ (x >> 32);
}

/* Room names come from clients: the hash is keyed by a secret seed so
 * that nobody can choose names that share a bucket. */
static uint64_t hash_name(const char *p, size_t n)
{
    uint64_t h = R.seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);

    for (; n >= 8; p += 8, n -= 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        h = mix(h ^ k);
    }
    uint64_t k = 0;
    memcpy(&k, p, n);
    return mix(h ^ k ^ 0xff);
}

static struct room *find(const char *name, size_t len, uint64_t h)
{
    if (!R.cap)
        return NULL;
    for (struct room *r = R.buckets[h & (R.cap - 1)]; r; r = r->chain)
        if (r->hash == h && r->len == len && memcmp(r->name, name, len) == 0)
            return r;
    return NULL;
}

static void grow_table(void)
{
    size_t cap = R.cap ? R.cap * 2 : 64;
    struct room **b = calloc(cap, sizeof *b);

    if (!b)
        abort();
    for (size_t i = 0; i < R.cap; i++) {
        struct room *r = R.buckets[i], *next;
        for (; r; r = next) {
            next = r->chain;
            r->chain = b[r->hash & (cap - 1)];
            b[r->hash & (cap - 1)] = r;
        }
    }
    free(R.buckets);
    R.buckets = b;
    R.cap = cap;
}

static struct room *get_or_create(const char *name, size_t len)
{
    uint64_t h = hash_name(name, len);
    struct room *r = find(name, len, h);

    if (r)
        return r;
    if (R.count + 1 > R.cap / 4 * 3)
        grow_table();
    r = calloc(1, sizeof *r + len + 1);
    if (!r)
        abort();
    r->hash = h;
    r->next_block = BLOCK_FIRST;
    r->len = (uint16_t)len;
    memcpy(r->name, name, len);
    r->chain = R.buckets[h & (R.cap - 1)];
    R.buckets[h & (R.cap - 1)] = r;
    R.count++;
    R.stats.rooms = R.count;
    return r;
}

static uint32_t own_count(const struct room *r)
{
    return R.self == ROOMS_NO_SLOT ? 0 : r->count[R.self];
}

/* Frees r when nothing needs it any more. */
static void release_if_unused(struct room *r)
{
    if (r->n || r->others || own_count(r) || r->sent || r->on_turn)
        return;
    struct room **p = &R.buckets[r->hash & (R.cap - 1)];
    while (*p != r)
        p = &(*p)->chain;
    *p = r->chain;
    R.count--;
    R.stats.rooms = R.count;
    pidset_clear(&r->heard);
    free(r->members);
    free(r);
}

static void put_on_turn(struct room *r)
{
    if (r->on_turn)
        return;
    r->on_turn = true;
    r->turn_next = R.turn;
    R.turn = r;
}

/* ---- set-up ----------------------------------------------------------- */

void rooms_init(void)
{
    rooms_fini();
    if (getrandom(&R.seed, sizeof R.seed, GRND_NONBLOCK) != sizeof R.seed)
        R.seed = mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    R.self = ROOMS_NO_SLOT;
    R.hooks = NULL;
}

void rooms_attach(unsigned slot, const struct rooms_hooks *hooks)
{
    R.self = slot;
    R.hooks = hooks;
}

void rooms_fini(void)
{
    for (size_t i = 0; i < R.cap; i++) {
        struct room *r = R.buckets[i], *next;
        for (; r; r = next) {
            next = r->chain;
            for (uint32_t m = 0; m < r->n; m++) {
                r->members[m]->actor->rooms = NULL;
                free(r->members[m]);
            }
            if (r->cur)
                block_unref(r->cur);
            pidset_clear(&r->heard);
            free(r->members);
            free(r);
        }
    }
    free(R.buckets);
    R.buckets = NULL;
    R.cap = R.count = 0;
    R.turn = NULL;
    memset(&R.stats, 0, sizeof R.stats);
}

const struct rooms_stats *rooms_stats(void)
{
    return &R.stats;
}

bool rooms_name_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > SNOW_ROOM_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        /* C0, DEL, and C1 (U+0080..U+009F, encoded C2 80..C2 9F) */
        if (c < 0x20 || c == 0x7f ||
            (c == 0xc2 && i + 1 < len &&
             (unsigned char)name[i + 1] >= 0x80 &&
             (unsigned char)name[i + 1] <= 0x9f))
            return false;
    }
    return utf8_valid((const uint8_t *)name, len);
}

/* ---- delivery --------------------------------------------------------- */

/* Room messages and presence events reach an actor's on_info with the
 * room's name in front of the payload (split again by the worker). */
static void tell_member(struct rooms_member *m, snow_pid from,
                        enum snow_msg_type type, uint32_t tag,
                        const void *data, size_t dlen)
{
    struct room *r = m->room;

    if (dlen > SNOW_MSG_MAX)
        abort();   /* callers check: the scratch buffer holds no more */
    memcpy(R.scratch, r->name, r->len + 1u);
    if (dlen)
        memcpy(R.scratch + r->len + 1, data, dlen);
    if (actor_tell(from, m->actor->pid, type, tag, R.scratch,
                   r->len + 1u + dlen) == 0)
        R.stats.deliveries++;
    else
        R.stats.dropped++;
}

/* Builds the frame once, in the room's block for this turn. */
static struct block *encode(struct room *r, uint32_t kind, const void *data,
                            size_t dlen, uint32_t *off)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hlen = ws_encode_header(hdr, kind == SNOW_TEXT ? WS_OP_TEXT
                                                          : WS_OP_BINARY,
                                   true, dlen);
    size_t flen = hlen + dlen;

    if (!r->cur || r->cur->cap - r->cur->len < flen) {
        if (r->cur)
            block_unref(r->cur);
        size_t size = r->next_block > flen ? r->next_block : flen;
        r->cur = block_new(size);
        r->cur->pin = r->cur->cap;
        r->next_block = size * 2 < BLOCK_STD_SIZE ? (uint32_t)size * 2
                                                  : BLOCK_STD_SIZE;
        put_on_turn(r);
    }
    struct block *b = r->cur;
    *off = b->len;
    memcpy(b->data + b->len, hdr, hlen);
    if (dlen)
        memcpy(b->data + b->len + hlen, data, dlen);
    b->len += (uint32_t)flen;
    return b;
}

static void fan_out(struct room *r, snow_pid from, snow_pid exclude,
                    uint32_t kind, const void *data, size_t dlen)
{
    struct block *b = NULL;
    uint32_t off = 0;

    for (uint32_t i = 0; i < r->n; i++) {
        struct rooms_member *m = r->members[i];
        struct actor *a = m->actor;
        if (a->pid == exclude)
            continue;
        if (a->kind == ACTOR_CONN && !(m->flags & SNOW_JOIN_INFO)) {
            if (!b)
                b = encode(r, kind, data, dlen, &off);
            if (R.hooks->write(a, b, off, b->len, (uint32_t)dlen))
                R.stats.deliveries++;
            else
                R.stats.dropped++;
        } else {
            tell_member(m, from, SNOW_MSG_ROOM, kind, data, dlen);
        }
    }
}

/* Presence: members that asked hear who joined or left, except the one
 * who did. */
static void announce(struct room *r, snow_pid who, uint32_t kind)
{
    enum snow_msg_type type = kind == ROOMS_PRESENCE_JOIN ? SNOW_MSG_JOIN
                                                          : SNOW_MSG_LEAVE;
    if (!r->npresence)
        return;
    for (uint32_t i = 0; i < r->n; i++) {
        struct rooms_member *m = r->members[i];
        if ((m->flags & SNOW_JOIN_PRESENCE) && m->actor->pid != who)
            tell_member(m, who, type, 0, NULL, 0);
    }
}

static void announce_everywhere(struct room *r, snow_pid who, uint32_t kind)
{
    announce(r, who, kind);
    if (r->others)
        R.hooks->remote_publish(r->name, r->len, who, kind, NULL, 0);
}

/* ---- membership ------------------------------------------------------- */

static struct rooms_member *membership(struct actor *a, const struct room *r)
{
    for (struct rooms_member *m = a->rooms; m; m = m->next)
        if (m->room == r)
            return m;
    return NULL;
}

static size_t memberships(const struct actor *a)
{
    size_t n = 0;
    for (const struct rooms_member *m = a->rooms; m; m = m->next)
        n++;
    return n;
}

static void own_count_changed(struct room *r)
{
    r->count[R.self] = r->n;
    r->count_dirty = true;
    put_on_turn(r);
}

int rooms_join(struct actor *a, const char *name, size_t len, unsigned flags)
{
    struct room *r = get_or_create(name, len);

    if (membership(a, r))
        return -SNOW_EEXIST;
    if (memberships(a) >= SNOW_ROOMS_PER_ACTOR) {
        release_if_unused(r);
        return -SNOW_EFULL;
    }
    if (r->n == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 4;
        struct rooms_member **mm = realloc(r->members, cap * sizeof *mm);
        if (!mm)
            abort();
        r->members = mm;
        r->cap = cap;
    }
    struct rooms_member *m = malloc(sizeof *m);
    if (!m)
        abort();
    *m = (struct rooms_member){ .room = r, .actor = a, .next = a->rooms,
                                .index = r->n, .flags = (uint8_t)flags };
    a->rooms = m;
    r->members[r->n++] = m;
    if (flags & SNOW_JOIN_PRESENCE)
        r->npresence++;
    own_count_changed(r);
    if (r->sent == 0) {
        /* The master routes no publish here yet: it must know of this
         * member before the call returns, so that no publish that follows
         * misses it.  (A room that emptied and filled again within one
         * turn never told the master it was empty, and needs no call.) */
        r->count_dirty = false;
        r->sent = r->n;
        R.hooks->count(r->name, r->len, r->n, true);
    }
    announce_everywhere(r, a->pid, ROOMS_PRESENCE_JOIN);
    return 0;
}

static void remove_member(struct rooms_member *m)
{
    struct room *r = m->room;
    struct rooms_member *last = r->members[--r->n];

    r->members[m->index] = last;
    last->index = m->index;
    if ((m->flags & SNOW_JOIN_PRESENCE) && --r->npresence == 0)
        pidset_clear(&r->heard);
    own_count_changed(r);
    announce_everywhere(r, m->actor->pid, ROOMS_PRESENCE_LEAVE);
    free(m);
}

int rooms_leave(struct actor *a, const char *name, size_t len)
{
    struct room *r = find(name, len, hash_name(name, len));
    struct rooms_member **p = &a->rooms;

    if (!r)
        return -SNOW_ENOENT;
    while (*p && (*p)->room != r)
        p = &(*p)->next;
    if (!*p)
        return -SNOW_ENOENT;
    struct rooms_member *m = *p;
    *p = m->next;
    remove_member(m);
    return 0;
}

void rooms_leave_all(struct actor *a)
{
    while (a->rooms) {
        struct rooms_member *m = a->rooms;
        a->rooms = m->next;
        remove_member(m);
    }
}

/* ---- publishing ------------------------------------------------------- */

int rooms_publish(struct actor *from, const char *name, size_t len,
                  uint32_t kind, const void *data, size_t dlen,
                  unsigned flags)
{
    struct room *r = find(name, len, hash_name(name, len));

    if (!r)
        return 0;
    /* All or nothing: check the channel before anyone here gets it. */
    if (r->others && !R.hooks->remote_room(dlen + len + 64))
        return -SNOW_EFULL;
    R.stats.publishes++;
    fan_out(r, from->pid,
            flags & SNOW_PUBLISH_EXCLUDE_SELF ? from->pid : 0, kind, data,
            dlen);
    if (r->others)
        R.hooks->remote_publish(r->name, r->len, from->pid, kind, data, dlen);
    return 0;
}

void rooms_deliver_remote(const char *name, size_t len, snow_pid from,
                          uint32_t kind, const void *data, size_t dlen)
{
    struct room *r = find(name, len, hash_name(name, len));

    if (!r || !r->n)
        return;
    if (kind == ROOMS_PRESENCE_JOIN || kind == ROOMS_PRESENCE_LEAVE) {
        if (kind == ROOMS_PRESENCE_LEAVE)
            pidset_remove(&r->heard, from);
        else if (r->npresence)
            pidset_add(&r->heard, from);
        announce(r, from, kind);
    }
    else if (kind == SNOW_TEXT || kind == SNOW_BINARY)
        fan_out(r, from, 0, kind, data, dlen);
}

uint64_t rooms_size(const char *name, size_t len)
{
    struct room *r = find(name, len, hash_name(name, len));
    return r ? r->others + own_count(r) : 0;
}

/* ---- counts ----------------------------------------------------------- */

struct gone {
    struct room *room;
    unsigned slot;
};

static bool leave_if_gone(snow_pid pid, void *arg)
{
    const struct gone *g = arg;

    if (actor_pid_slot(pid) != g->slot)
        return false;
    announce(g->room, pid, ROOMS_PRESENCE_LEAVE);
    return true;
}

/* A worker has no members left in r.  Those who left said so, and are no
 * longer in `heard`; any still there ended without a word, with their
 * worker (or their leave was dropped on a full channel): presence members
 * hear it now, so that every join they heard is followed by a leave. */
static void announce_gone(struct room *r, unsigned slot)
{
    struct gone g = { r, slot };

    pidset_remove_if(&r->heard, leave_if_gone, &g);
}

uint32_t rooms_set_count(const char *name, size_t len, unsigned slot,
                         uint32_t count)
{
    if (slot >= ROOMS_MAX_WORKERS || slot == R.self)
        return 0;
    struct room *r = count ? get_or_create(name, len)
                           : find(name, len, hash_name(name, len));
    if (!r)
        return 0;
    uint32_t old = r->count[slot];
    r->count[slot] = count;
    r->others = r->others - old + count;
    if (!count)
        announce_gone(r, slot);
    release_if_unused(r);
    return old;
}

uint64_t rooms_worker_mask(const char *name, size_t len)
{
    struct room *r = find(name, len, hash_name(name, len));
    uint64_t mask = 0;

    if (!r)
        return 0;
    for (unsigned s = 0; s < ROOMS_MAX_WORKERS; s++)
        if (r->count[s])
            mask |= 1ull << s;
    return mask;
}

void rooms_forget_worker(unsigned slot,
                         void (*fn)(void *arg, const char *name, size_t len),
                         void *arg)
{
    if (slot >= ROOMS_MAX_WORKERS)
        return;
    for (size_t i = 0; i < R.cap; i++) {
        struct room *r = R.buckets[i], *next;
        for (; r; r = next) {
            next = r->chain;
            if (!r->count[slot] || slot == R.self)
                continue;
            if (fn)
                fn(arg, r->name, r->len);
            r->others -= r->count[slot];
            r->count[slot] = 0;
            announce_gone(r, slot);
            release_if_unused(r);
        }
    }
}

void rooms_each_count(unsigned slot,
                      void (*fn)(void *arg, const char *name, size_t len,
                                 uint32_t count),
                      void *arg)
{
    if (slot >= ROOMS_MAX_WORKERS)
        return;
    for (size_t i = 0; i < R.cap; i++)
        for (struct room *r = R.buckets[i]; r; r = r->chain)
            if (r->count[slot])
                fn(arg, r->name, r->len, r->count[slot]);
}

size_t rooms_totals(uint64_t *members)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < R.cap; i++)
        for (struct room *r = R.buckets[i]; r; r = r->chain)
            sum += r->others;
    *members = sum;
    return R.count;
}

void rooms_flush(void)
{
    struct room *r = R.turn;

    R.turn = NULL;
    while (r) {
        struct room *next = r->turn_next;
        r->on_turn = false;
        if (r->count_dirty && r->n != r->sent) {
            r->sent = r->n;
            R.hooks->count(r->name, r->len, r->n, false);
        }
        r->count_dirty = false;
        /* Members keep their references; the room starts afresh. */
        if (r->cur) {
            block_unref(r->cur);
            r->cur = NULL;
        }
        r->next_block = BLOCK_FIRST;
        release_if_unused(r);
        r = next;
    }
}
