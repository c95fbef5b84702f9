/*
 * test_outq.c - unit tests for output queues of refcounted blocks
 * (src/outq.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_outq.c \
 *            src/outq.c -lcmocka -o /tmp/test_outq && /tmp/test_outq
 *
 * Every test keeps a model next to the queue: the bytes it must send, in
 * order, and the ranges it must hold (block, off, end).  check_queue
 * compares the ring with the model range by range after every step, and
 * checks the queue's own invariants (bytes == sum of the ranges, no empty
 * range, n <= cap).  Writes go to a real non-blocking socketpair whose
 * sending side has a small SO_SNDBUF, so that sendmsg writes part of the
 * queue; the peer's bytes are read back and compared with the model.
 * Every test ends with outq_pool_drain, so ASan's leak check sees
 * everything freed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outq.h"

/* ---- the model ------------------------------------------------------------ */

#define MODEL_RANGES 16384
#define MODEL_BYTES (16 * 1024 * 1024)

static struct {
    /* What the queue should hold, oldest first, from ranges[first]. */
    struct outq_range r[MODEL_RANGES];
    size_t first, n;
    /* Every byte ever queued, and how many the peer has read back. */
    uint8_t *sent;
    size_t nsent, nread;
    uint8_t *readback;
} M;

static void model_reset(void)
{
    free(M.sent);
    free(M.readback);
    memset(&M, 0, sizeof M);
    M.sent = malloc(MODEL_BYTES);
    M.readback = malloc(MODEL_BYTES);
    assert_non_null(M.sent);
    assert_non_null(M.readback);
}

static void model_free(void)
{
    free(M.sent);
    free(M.readback);
    memset(&M, 0, sizeof M);
}

static struct outq_range *model_tail(void)
{
    return M.n ? &M.r[M.first + M.n - 1] : NULL;
}

static void model_push(struct block *b, uint32_t off, uint32_t end)
{
    assert_true(M.first + M.n < MODEL_RANGES);
    M.r[M.first + M.n++] = (struct outq_range){ b, off, end };
}

static void model_bytes(const void *p, size_t n)
{
    assert_true(M.nsent + n <= MODEL_BYTES);
    memcpy(M.sent + M.nsent, p, n);
    M.nsent += n;
}

static size_t model_unsent(void)
{
    size_t s = 0;
    for (size_t i = 0; i < M.n; i++)
        s += M.r[M.first + i].end - M.r[M.first + i].off;
    return s;
}

/* Drops the first `done` bytes from the model's ranges. */
static void model_consume(size_t done)
{
    while (done) {
        assert_true(M.n > 0);
        struct outq_range *r = &M.r[M.first];
        size_t len = r->end - r->off;
        if (done < len) {
            r->off += (uint32_t)done;
            return;
        }
        done -= len;
        M.first++;
        M.n--;
    }
}

/* The queue against the model, range by range. */
static void check_queue(const struct outq *q)
{
    if (M.n == 0) {
        assert_null(q);
        assert_int_equal(outq_size(q), 0);
        return;
    }
    assert_non_null(q);
    assert_true(q->n <= q->cap);
    assert_true(q->head < q->cap);
    assert_int_equal(q->n, M.n);
    size_t bytes = 0;
    for (uint32_t i = 0; i < q->n; i++) {
        const struct outq_range *r = &q->r[(q->head + i) % q->cap];
        const struct outq_range *m = &M.r[M.first + i];
        assert_ptr_equal(r->b, m->b);
        assert_int_equal(r->off, m->off);
        assert_int_equal(r->end, m->end);
        assert_true(r->off < r->end);
        assert_true(r->end <= r->b->len);
        assert_true(r->b->len <= r->b->cap);
        assert_true(r->b->refs >= 1);
        bytes += r->end - r->off;
    }
    assert_int_equal(q->bytes, bytes);
    assert_int_equal(outq_size(q), model_unsent());
}

/* ---- appending through the model ------------------------------------------ */

/* Private bytes: the model follows the documented rule (fill a tail
 * block the queue alone holds and whose end is ours, then one new block
 * for the rest). */
static void append_private(struct outq **q, const void *p, size_t n)
{
    struct outq_range *t = model_tail();
    const uint8_t *src = p;
    size_t k = 0;

    if (n && t && t->b->refs == 1 && t->end == t->b->len) {
        size_t room = t->b->cap - t->b->len;
        k = n < room ? n : room;
    }
    outq_append(q, p, n);
    model_bytes(p, n);
    if (k) {
        t->end += (uint32_t)k;
        src += k;
        n -= k;
    }
    if (n) {
        struct outq_range *nt = &(*q)->r[((*q)->head + (*q)->n - 1) %
                                         (*q)->cap];
        assert_int_equal(nt->off, 0);
        assert_int_equal(nt->end, n);
        assert_int_equal(nt->b->refs, 1);
        assert_memory_equal(nt->b->data, src, n);
        model_push(nt->b, 0, (uint32_t)n);
    }
    check_queue(*q);
}

/* Shared bytes b->data[off, end): extends the tail range when it ends
 * where this one starts in the same block, otherwise adds a range and a
 * reference. */
static void append_shared(struct outq **q, struct block *b, uint32_t off,
                          uint32_t end)
{
    struct outq_range *t = model_tail();
    uint32_t refs = b->refs;

    outq_append_shared(q, b, off, end);
    if (off >= end) {
        assert_int_equal(b->refs, refs);
        check_queue(*q);
        return;
    }
    model_bytes(b->data + off, end - off);
    if (t && t->b == b && t->end == off) {
        t->end = end;
        assert_int_equal(b->refs, refs);
    } else {
        model_push(b, off, end);
        assert_int_equal(b->refs, refs + 1);
    }
    check_queue(*q);
}

/* A shared block of `cap` bytes filled with a pattern, like a room's. */
static struct block *shared_block(size_t cap, uint8_t seed)
{
    struct block *b = block_new(cap);
    assert_true(b->cap >= cap);
    for (size_t i = 0; i < cap; i++)
        b->data[i] = (uint8_t)(seed + i * 7);
    b->len = (uint32_t)cap;
    return b;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* ---- sockets --------------------------------------------------------------- */

static void nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* sv[0] writes (small send buffer), sv[1] reads; both non-blocking. */
static void pair(int sv[2], int sndbuf)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (sndbuf)
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
                                    sizeof sndbuf), 0);
    nonblock(sv[0]);
    nonblock(sv[1]);
}

/* Reads what the peer has (up to max bytes) and checks it against the
 * model's byte stream.  Returns the bytes read. */
static size_t read_back(int fd, size_t max)
{
    size_t got = 0;

    while (got < max) {
        size_t want = max - got;
        if (want > MODEL_BYTES - M.nread)
            want = MODEL_BYTES - M.nread;
        if (want == 0)
            break;
        ssize_t r = read(fd, M.readback + M.nread, want);
        if (r < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        assert_true(r > 0);
        assert_true(M.nread + (size_t)r <= M.nsent);
        assert_memory_equal(M.readback + M.nread, M.sent + M.nread,
                            (size_t)r);
        M.nread += (size_t)r;
        got += (size_t)r;
    }
    return got;
}

/* One outq_write, checked against the model.  Returns its result. */
static ssize_t write_once(struct outq **q, int fd)
{
    size_t before = outq_size(*q);
    ssize_t w = outq_write(q, fd);

    if (w < 0) {
        assert_int_equal(outq_size(*q), before);
        check_queue(*q);
        return w;
    }
    assert_true((size_t)w <= before);
    model_consume((size_t)w);
    assert_int_equal(outq_size(*q), before - (size_t)w);
    check_queue(*q);
    return w;
}

/* Writes and reads until the queue is gone and every byte came back. */
static unsigned drain(struct outq **q, int sv[2])
{
    unsigned writes = 0;

    while (*q) {
        ssize_t w = write_once(q, sv[0]);
        if (w == -EAGAIN)
            assert_true(read_back(sv[1], SIZE_MAX) > 0);
        else
            assert_true(w > 0);
        writes++;
    }
    while (M.nread < M.nsent)
        assert_true(read_back(sv[1], SIZE_MAX) > 0);
    assert_int_equal(M.nread, M.nsent);
    return writes;
}

/* ---- fixtures -------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    model_reset();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    model_free();
    outq_pool_drain();
    return 0;
}

/* ---- blocks ---------------------------------------------------------------- */

static void test_block_new_sizes_and_refs(void **state)
{
    (void)state;
    struct block *small = block_new(256);
    struct block *std = block_new(BLOCK_STD_SIZE);
    struct block *big = block_new(BLOCK_STD_SIZE + 1);

    /* Rooms ask for small blocks to pin little memory: they get them. */
    assert_int_equal(small->cap, 256);
    assert_int_equal(std->cap, BLOCK_STD_SIZE);
    assert_int_equal(big->cap, BLOCK_STD_SIZE + 1);
    assert_int_equal(small->refs, 1);
    assert_int_equal(small->len, 0);
    block_ref(small);
    assert_int_equal(small->refs, 2);
    block_unref(small);
    assert_int_equal(small->refs, 1);
    block_unref(small);
    block_unref(big);

    /* A pooled standard block comes back fresh. */
    std->len = 100;
    block_ref(std);
    block_unref(std);
    block_unref(std);
    struct block *again = block_new(BLOCK_STD_SIZE);
    assert_int_equal(again->refs, 1);
    assert_int_equal(again->len, 0);
    assert_int_equal(again->cap, BLOCK_STD_SIZE);
    block_unref(again);
}

/* ---- private bytes ---------------------------------------------------------- */

static void test_outq_append_small_fills_tail_block(void **state)
{
    (void)state;
    struct outq *q = NULL;
    uint8_t buf[1000];

    append_private(&q, "", 0);          /* nothing queued, nothing made */
    assert_null(q);
    fill(buf, sizeof buf, 1);
    /* 16 appends of 1000 bytes stay in one standard block... */
    for (int i = 0; i < 16; i++)
        append_private(&q, buf, sizeof buf);
    assert_int_equal(q->n, 1);
    assert_int_equal(q->r[q->head].b->cap, BLOCK_STD_SIZE);
    assert_int_equal(q->r[q->head].b->len, 16000);
    /* ...the 17th fills it up and spills into a second one. */
    append_private(&q, buf, sizeof buf);
    assert_int_equal(q->n, 2);
    assert_int_equal(q->r[q->head].b->len, BLOCK_STD_SIZE);
    assert_int_equal(q->r[(q->head + 1) % q->cap].end,
                     17000 - BLOCK_STD_SIZE);
    assert_int_equal(outq_size(q), 17000);
    outq_free(&q);
    assert_null(q);
}

static void test_outq_append_large_gets_own_block(void **state)
{
    (void)state;
    struct outq *q = NULL;
    size_t big = 3 * BLOCK_STD_SIZE + 5;
    uint8_t *buf = malloc(big);

    fill(buf, big, 2);
    /* Into an empty queue: one block of exactly that size. */
    append_private(&q, buf, big);
    assert_int_equal(q->n, 1);
    assert_int_equal(q->r[q->head].b->cap, big);
    /* That block is full: small bytes go to a new standard block. */
    append_private(&q, buf, 10);
    assert_int_equal(q->n, 2);
    /* A large append tops the tail block up first, then the rest gets a
     * block of its own. */
    append_private(&q, buf + 10, big - 10);
    assert_int_equal(q->n, 3);
    const struct outq_range *last = &q->r[(q->head + 2) % q->cap];
    assert_int_equal(last->end, big - 10 - (BLOCK_STD_SIZE - 10));
    assert_int_equal(outq_size(q), 2 * big);

    int sv[2];
    pair(sv, 4096);
    assert_true(drain(&q, sv) > 1);
    close(sv[0]);
    close(sv[1]);
    free(buf);
}

/* ---- shared bytes ----------------------------------------------------------- */

static void test_outq_shared_one_ref_per_range(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = shared_block(256, 3);

    append_shared(&q, b, 0, 10);
    assert_int_equal(b->refs, 2);
    /* The next message of the same block, right after: same range. */
    append_shared(&q, b, 10, 30);
    append_shared(&q, b, 30, 31);
    assert_int_equal(q->n, 1);
    assert_int_equal(b->refs, 2);
    /* Empty or inverted ranges queue nothing. */
    append_shared(&q, b, 40, 40);
    append_shared(&q, b, 50, 45);
    assert_int_equal(q->n, 1);
    /* A gap is a new range and a new reference. */
    append_shared(&q, b, 40, 50);
    assert_int_equal(q->n, 2);
    assert_int_equal(b->refs, 3);
    assert_int_equal(outq_size(q), 41);

    /* The tail is shared: private bytes must not be written into it. */
    append_private(&q, "xyz", 3);
    assert_int_equal(q->n, 3);
    assert_int_equal(b->len, 256);

    outq_free(&q);
    assert_null(q);
    assert_int_equal(b->refs, 1);
    block_unref(b);
}

static void test_outq_shared_into_empty_queue(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = shared_block(64, 4);

    append_shared(&q, b, 5, 5);
    assert_null(q);
    append_shared(&q, b, 5, 64);
    assert_non_null(q);

    int sv[2];
    pair(sv, 0);
    assert_int_equal(drain(&q, sv), 1);
    assert_null(q);
    assert_int_equal(b->refs, 1);
    close(sv[0]);
    close(sv[1]);
    block_unref(b);
}

static void test_outq_interleaved_private_and_shared_keep_order(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *a = shared_block(1000, 5), *b = shared_block(1000, 6);
    uint8_t buf[3000];

    fill(buf, sizeof buf, 7);
    append_private(&q, buf, 100);
    append_shared(&q, a, 0, 100);
    append_private(&q, buf + 100, 50);
    append_shared(&q, a, 100, 200);    /* not contiguous in the queue */
    append_shared(&q, b, 0, 10);
    append_shared(&q, b, 10, 20);      /* extends */
    append_shared(&q, a, 200, 300);
    append_private(&q, buf + 150, 2850);
    append_shared(&q, b, 20, 1000);
    assert_int_equal(a->refs, 4);
    assert_int_equal(b->refs, 3);

    int sv[2];
    pair(sv, 0);
    drain(&q, sv);
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 1);
    close(sv[0]);
    close(sv[1]);
    block_unref(a);
    block_unref(b);
}

/* A queue that held a room's bytes alone (the room let go) may take
 * private bytes in the room's block: nobody else can see them. */
static void test_outq_private_fills_block_left_by_room(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = block_new(256);

    memcpy(b->data, "room message", 12);
    b->len = 12;
    append_shared(&q, b, 0, 12);
    block_unref(b);                     /* the room's turn ends */
    assert_int_equal(b->refs, 1);
    append_private(&q, "tail", 4);
    assert_int_equal(q->n, 1);
    assert_int_equal(b->len, 16);

    int sv[2];
    pair(sv, 0);
    drain(&q, sv);
    close(sv[0]);
    close(sv[1]);
}

/* ---- writing ---------------------------------------------------------------- */

static void test_outq_write_null_queue(void **state)
{
    (void)state;
    struct outq *q = NULL;
    int sv[2];

    pair(sv, 0);
    assert_int_equal(outq_write(&q, sv[0]), 0);
    assert_null(q);
    close(sv[0]);
    close(sv[1]);
}

static void test_outq_write_frees_queue_when_empty(void **state)
{
    (void)state;
    struct outq *q = NULL;
    int sv[2];

    pair(sv, 0);
    append_private(&q, "hello", 5);
    assert_int_equal(write_once(&q, sv[0]), 5);
    assert_null(q);
    assert_int_equal(read_back(sv[1], SIZE_MAX), 5);
    /* And again: a queue from the pool starts empty. */
    append_private(&q, " world", 6);
    assert_int_equal(q->n, 1);
    assert_int_equal(q->head, 0);
    assert_int_equal(write_once(&q, sv[0]), 6);
    assert_null(q);
    assert_int_equal(read_back(sv[1], SIZE_MAX), 6);
    close(sv[0]);
    close(sv[1]);
}

static void test_outq_write_full_socket_is_eagain(void **state)
{
    (void)state;
    struct outq *q = NULL;
    int sv[2];
    uint8_t junk[4096] = { 0 };

    pair(sv, 4096);
    while (write(sv[0], junk, sizeof junk) > 0)
        ;
    append_private(&q, "abc", 3);
    assert_int_equal(write_once(&q, sv[0]), -EAGAIN);
    assert_int_equal(outq_size(q), 3);
    /* Make the peer read the filler, then the queue goes out. */
    size_t filler = 0;
    for (;;) {
        ssize_t r = read(sv[1], junk, sizeof junk);
        if (r <= 0)
            break;
        filler += (size_t)r;
    }
    assert_true(filler > 0);
    assert_int_equal(write_once(&q, sv[0]), 3);
    assert_null(q);
    assert_int_equal(read_back(sv[1], SIZE_MAX), 3);
    close(sv[0]);
    close(sv[1]);
}

/* Partial writes through many range boundaries: ranges of every small
 * size, each write consuming whatever the socket took, checked range by
 * range against the model. */
static void test_outq_partial_writes_consume_across_ranges(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = shared_block(BLOCK_STD_SIZE, 8);
    int sv[2];
    uint32_t off = 0;

    pair(sv, 4096);
    /* Shared ranges with gaps (no extension), of sizes 1, 2, 3, ... */
    for (uint32_t len = 1; off + len + 1 <= b->len && len < 150; len++) {
        append_shared(&q, b, off, off + len);
        off += len + 1;
    }
    unsigned nranges = q->n;
    assert_true(nranges > 64);
    assert_true(q->cap >= nranges);
    unsigned partial = 0, writes = 0;
    while (q) {
        size_t before = outq_size(q);
        ssize_t w = write_once(&q, sv[0]);
        if (w == -EAGAIN) {
            /* Read a little only, so that the next write is partial. */
            assert_true(read_back(sv[1], 1500) > 0);
            continue;
        }
        assert_true(w > 0);
        writes++;
        if ((size_t)w < before && q && q->r[q->head].off != 0)
            partial++;       /* stopped inside a range */
        read_back(sv[1], 700);
    }
    while (M.nread < M.nsent)
        assert_true(read_back(sv[1], SIZE_MAX) > 0);
    assert_true(writes > 1);
    assert_true(partial > 0);
    assert_int_equal(b->refs, 1);
    close(sv[0]);
    close(sv[1]);
    block_unref(b);
}

/* More ranges than one writev batch (64): a write takes at most 64, in
 * order, and the ring grew past its initial 8 in order. */
static void test_outq_ring_grows_in_order(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *a = shared_block(4096, 9), *b = shared_block(4096, 10);
    uint8_t buf[16];
    uint32_t caps_seen = 0, last_cap = 0;

    fill(buf, sizeof buf, 11);
    for (uint32_t i = 0; i < 200; i++) {
        /* a, b, private, a, b, private...: never contiguous. */
        if (i % 3 == 0)
            append_shared(&q, a, i * 10, i * 10 + 7);
        else if (i % 3 == 1)
            append_shared(&q, b, i * 10, i * 10 + 5);
        else
            append_private(&q, buf, 1 + i % 16);
        if (q->cap != last_cap) {
            caps_seen++;
            last_cap = q->cap;
        }
    }
    assert_true(q->n > 64);
    assert_true(caps_seen >= 4);      /* 8, 16, 32, 64, 128, 256 */
    assert_true(q->cap >= q->n);

    /* A socket with room for everything still takes 64 ranges a write. */
    int sv[2];
    pair(sv, 0);
    size_t first64 = 0;
    for (size_t i = 0; i < 64; i++)
        first64 += M.r[M.first + i].end - M.r[M.first + i].off;
    uint32_t n = q->n;
    assert_int_equal(write_once(&q, sv[0]), (ssize_t)first64);
    assert_int_equal(q->n, n - 64);
    assert_true(drain(&q, sv) >= 1);
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 1);
    close(sv[0]);
    close(sv[1]);
    block_unref(a);
    block_unref(b);
}

/* Appends and partial writes mixed at random: the ring wraps, then grows
 * while wrapped, and the bytes still come out in order. */
static void test_outq_random_appends_and_writes(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *blocks[4];
    uint32_t used[4] = { 0 };
    uint8_t buf[3 * BLOCK_STD_SIZE];
    int sv[2];
    unsigned grew_wrapped = 0;

    srand(12345);
    for (int i = 0; i < 4; i++)
        blocks[i] = shared_block(BLOCK_STD_SIZE, (uint8_t)(20 + i));
    fill(buf, sizeof buf, 12);
    pair(sv, 4096);
    for (int step = 0; step < 4000 && M.nsent < MODEL_BYTES - sizeof buf;
         step++) {
        int op = rand() % 10;
        uint32_t cap_before = q ? q->cap : 0;
        bool wrapped = q && q->head != 0 && q->head + q->n > q->cap;
        if (op < 3) {
            size_t n = rand() % 4 == 0 ? (size_t)rand() % sizeof buf
                                       : (size_t)rand() % 200;
            append_private(&q, buf, n);
        } else if (op < 7) {
            int k = rand() % 4;
            uint32_t len = 1 + (uint32_t)rand() % 100;
            if (used[k] + len > BLOCK_STD_SIZE)
                used[k] = 0;
            /* Sometimes skip a byte, so the range cannot extend. */
            if (rand() % 2)
                used[k] = (used[k] + 1) % (BLOCK_STD_SIZE - len);
            append_shared(&q, blocks[k], used[k], used[k] + len);
            used[k] += len;
        } else {
            ssize_t w = write_once(&q, sv[0]);
            if (w == -EAGAIN || rand() % 2)
                read_back(sv[1], (size_t)rand() % 8192);
        }
        if (wrapped && q && q->cap > cap_before)
            grew_wrapped++;
    }
    drain(&q, sv);
    assert_true(grew_wrapped > 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(blocks[i]->refs, 1);
        block_unref(blocks[i]);
    }
    close(sv[0]);
    close(sv[1]);
}

/* ---- gathering (the TLS writer) ----------------------------------------------- */

#define GATHER_CAP 1000

/* One gather and a consume of `take` of its bytes (all when take is
 * larger), checked against the model: the bytes offered are the next
 * unsent ones of the stream.  Returns how many were offered. */
static size_t gather_once(struct outq **q, size_t take)
{
    static uint8_t scratch[GATHER_CAP];
    const uint8_t *p = NULL;
    size_t before = outq_size(*q);
    size_t n = outq_gather(*q, scratch, GATHER_CAP, &p);
    size_t sent = M.nread;   /* "read" by the consumer, here */

    assert_true(n <= before);
    if (before)
        assert_true(n > 0);
    if (n > GATHER_CAP)   /* the head range itself, never copied */
        assert_ptr_not_equal(p, scratch);
    assert_memory_equal(p, M.sent + sent, n);
    if (take > n)
        take = n;
    outq_consume(q, take);
    model_consume(take);
    M.nread += take;
    assert_int_equal(outq_size(*q), before - take);
    check_queue(*q);
    return n;
}

static void test_outq_gather_empty_queue(void **state)
{
    (void)state;
    uint8_t scratch[16];
    const uint8_t *p = NULL;

    assert_int_equal(outq_gather(NULL, scratch, sizeof scratch, &p), 0);
    assert_ptr_equal(p, scratch);
    struct outq *q = NULL;
    outq_consume(&q, 0);
    assert_null(q);
}

static void test_outq_gather_large_head_range_is_not_copied(void **state)
{
    (void)state;
    struct outq *q = NULL;
    uint8_t big[3 * GATHER_CAP];

    fill(big, sizeof big, 3);
    append_private(&q, big, sizeof big);
    append_private(&q, "tail", 4);          /* fills the same block */
    assert_int_equal(gather_once(&q, 10), sizeof big + 4);
    assert_int_equal(gather_once(&q, 10), sizeof big + 4 - 10);
    while (q)
        gather_once(&q, SIZE_MAX);
    assert_int_equal(M.nread, M.nsent);
}

static void test_outq_gather_coalesces_small_ranges_in_order(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = shared_block(4096, 9);

    /* Alternate private and shared ranges so that none extends another. */
    for (uint32_t i = 0; i < 40; i++) {
        append_private(&q, "0123456789", 1 + i % 10);
        append_shared(&q, b, i * 100, i * 100 + 50);
    }
    assert_true(q->n > 40);
    size_t n = gather_once(&q, 0);
    assert_int_equal(n, GATHER_CAP);          /* a full record */
    /* Consuming part of a range, then the rest, in uneven steps. */
    while (q)
        gather_once(&q, 333);
    assert_int_equal(M.nread, M.nsent);
    assert_int_equal(b->refs, 1);
    block_unref(b);
}

/* What a TLS writer relies on after a short write: the retry offers the
 * same bytes first, and at least as many, however the queue grew. */
static void test_outq_gather_retry_offers_same_bytes_first(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = shared_block(BLOCK_STD_SIZE, 5);
    static uint8_t scratch[GATHER_CAP], first[GATHER_CAP];
    uint8_t buf[2 * GATHER_CAP];
    const uint8_t *p;

    fill(buf, sizeof buf, 77);
    srand(99);
    for (int round = 0; round < 300; round++) {
        if (rand() % 2)
            append_private(&q, buf, (size_t)rand() % (rand() % 3 ? 300
                                                       : sizeof buf));
        else
            append_shared(&q, b, 0, 1 + (uint32_t)rand() % 600);
        size_t n = outq_gather(q, scratch, GATHER_CAP, &p);
        memcpy(first, p, n < GATHER_CAP ? n : GATHER_CAP);
        /* The write "blocks": more is queued before the retry. */
        for (int k = rand() % 4; k > 0; k--)
            append_private(&q, buf + k, (size_t)rand() % 700);
        size_t again = outq_gather(q, scratch, GATHER_CAP, &p);
        assert_true(again >= n);
        assert_memory_equal(p, first, n < GATHER_CAP ? n : GATHER_CAP);
        gather_once(&q, (size_t)rand() % (2 * GATHER_CAP));
    }
    while (q)
        gather_once(&q, SIZE_MAX);
    assert_int_equal(M.nread, M.nsent);
    assert_int_equal(b->refs, 1);
    block_unref(b);
}

/* ---- freeing and errors ------------------------------------------------------ */

static void test_outq_free_drops_references(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = shared_block(512, 13);

    outq_free(&q);                      /* NULL is fine */
    for (uint32_t i = 0; i < 20; i++) {
        append_shared(&q, b, i * 20, i * 20 + 10);
        append_private(&q, "p", 1);
    }
    assert_int_equal(b->refs, 21);
    outq_free(&q);
    assert_null(q);
    assert_int_equal(b->refs, 1);
    block_unref(b);
}

static void test_outq_write_to_closed_peer_is_epipe(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b = shared_block(100, 14);
    int sv[2];

    /* With SIGPIPE at its default a signal would end the test here. */
    signal(SIGPIPE, SIG_DFL);
    pair(sv, 0);
    close(sv[1]);
    append_private(&q, "bye", 3);
    append_shared(&q, b, 0, 100);
    assert_int_equal(write_once(&q, sv[0]), -EPIPE);
    assert_int_equal(outq_size(q), 103);
    outq_free(&q);
    assert_int_equal(b->refs, 1);
    block_unref(b);
    close(sv[0]);
}

/* A queue pays for every shared block it keeps alive, once per range:
 * a slow member holding a few bytes of a large room block is charged
 * the block (what max_backpressure bounds is real memory). */
static void test_outq_cost_counts_pinned_blocks(void **state)
{
    (void)state;
    struct outq *q = NULL;
    struct block *b1 = block_new(4096), *b2 = block_new(256);
    int sv[2];

    b1->pin = b1->cap;
    b2->pin = b2->cap;
    memset(b1->data, 'a', 64);
    b1->len = 64;
    memset(b2->data, 'b', 16);
    b2->len = 16;
    assert_int_equal(outq_cost(q), 0);
    outq_append_shared(&q, b1, 0, 8);
    assert_int_equal(q->pinned, 4096);
    assert_int_equal(outq_cost(q), 4096 + OUTQ_RANGE_COST);
    outq_append_shared(&q, b1, 8, 64);          /* extends: no new pin */
    assert_int_equal(q->pinned, 4096);
    outq_append(&q, "xyz", 3);                  /* private: no pin */
    assert_int_equal(q->pinned, 4096);
    outq_append_shared(&q, b2, 0, 16);
    assert_int_equal(q->pinned, 4096 + 256);
    assert_int_equal(q->own, 3);
    assert_int_equal(outq_cost(q), 3 + 4096 + 256 + 3 * OUTQ_RANGE_COST);
    pair(sv, 0);
    /* Writing past the first range releases its pin. */
    assert_int_equal(outq_write(&q, sv[0]), 64 + 3 + 16);
    assert_null(q);
    assert_int_equal(outq_cost(q), 0);
    assert_int_equal(b1->refs, 1);
    assert_int_equal(b2->refs, 1);
    block_unref(b1);
    block_unref(b2);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_block_new_sizes_and_refs),
        T(test_outq_append_small_fills_tail_block),
        T(test_outq_append_large_gets_own_block),
        T(test_outq_shared_one_ref_per_range),
        T(test_outq_shared_into_empty_queue),
        T(test_outq_interleaved_private_and_shared_keep_order),
        T(test_outq_private_fills_block_left_by_room),
        T(test_outq_write_null_queue),
        T(test_outq_write_frees_queue_when_empty),
        T(test_outq_write_full_socket_is_eagain),
        T(test_outq_partial_writes_consume_across_ranges),
        T(test_outq_ring_grows_in_order),
        T(test_outq_random_appends_and_writes),
        T(test_outq_free_drops_references),
        T(test_outq_gather_empty_queue),
        T(test_outq_gather_large_head_range_is_not_copied),
        T(test_outq_gather_coalesces_small_ranges_in_order),
        T(test_outq_gather_retry_offers_same_bytes_first),
        T(test_outq_write_to_closed_peer_is_epipe),
        T(test_outq_cost_counts_pinned_blocks),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
