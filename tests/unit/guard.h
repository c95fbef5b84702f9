/*
 * guard.h - test helper: places bytes so that they end exactly where an
 * inaccessible (PROT_NONE) page begins, so any read or write past the end
 * of the input faults at once instead of silently reading garbage.
 *
 * Header-only so each unit test stays a single translation unit.
 */
#ifndef SNOWD_TEST_GUARD_H
#define SNOWD_TEST_GUARD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
    uint8_t *base;     /* start of the mapping */
    size_t map_len;    /* accessible pages + the guard page */
    size_t room;       /* accessible bytes before the guard page */
};

/* Maps enough pages for `capacity` bytes, followed by one PROT_NONE page. */
static inline void guard_init(struct guard *g, size_t capacity)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t npages = (capacity + page - 1) / page;

    if (npages == 0)
        npages = 1;
    g->room = npages * page;
    g->map_len = g->room + page;
    void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        abort();
    }
    g->base = m;
    if (mprotect(g->base + g->room, page, PROT_NONE) != 0) {
        perror("mprotect");
        abort();
    }
}

static inline void guard_free(struct guard *g)
{
    munmap(g->base, g->map_len);
    g->base = NULL;
}

/* Copies len bytes so that they end right before the guard page; returns
 * where they start.  len must not exceed the capacity given to init. */
static inline uint8_t *guard_place(struct guard *g, const void *src,
                                   size_t len)
{
    if (len > g->room)
        abort();
    uint8_t *dst = g->base + g->room - len;
    if (len)
        memcpy(dst, src, len);
    return dst;
}

#endif
