/*
 * names.c - the name -> pid map (see names.h).
 *
 * Owns the slot array and a NUL-terminated copy of every name in it.
 * Open addressing with linear probing over a power-of-two table.
 *
 * Invariants:
 *   - cap is 0 or a power of two, and count <= cap * 7 / 10, so at least
 *     one slot is always empty and every probe ends.
 *   - Every stored entry is reachable from its home slot (hash & mask)
 *     without crossing an empty slot.  Deletion keeps this by shifting
 *     the rest of the cluster back (no tombstones), so lookups never
 *     slow down as names come and go.
 *   - Stored names are valid (names_valid) and pids are never 0, so 0
 *     can mean "absent" in names_get.
 *
 * It does not decide who may own a name (master.c does), and it is not
 * safe to change the map from inside a names_each or names_del_matching
 * callback.
 */
#include "names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAMES_MIN_CAP 16

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

/* FNV-1a, then the high half folded down: the index uses the low bits,
 * and FNV's low bits alone mix the last bytes less well. */
static uint64_t name_hash(const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 32);
}

bool names_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > SNOW_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

/* The slot holding name, or the empty slot where the probe ended.
 * Requires cap > 0. */
static size_t find(const struct names *m, const char *name, size_t len)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)name_hash(name, len) & mask;

    for (;;) {
        const struct names_entry *e = &m->slots[i];
        if (!e->name ||
            (e->len == len && memcmp(e->name, name, len) == 0))
            return i;
        i = (i + 1) & mask;
    }
}

static void grow(struct names *m)
{
    size_t cap = m->cap ? m->cap * 2 : NAMES_MIN_CAP;
    size_t mask = cap - 1;
    struct names_entry *slots = xcalloc(cap, sizeof *slots);

    /* Names are unique, so re-inserting needs no comparison. */
    for (size_t j = 0; j < m->cap; j++) {
        struct names_entry *e = &m->slots[j];
        if (!e->name)
            continue;
        size_t i = (size_t)name_hash(e->name, e->len) & mask;
        while (slots[i].name)
            i = (i + 1) & mask;
        slots[i] = *e;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

int names_put(struct names *m, const char *name, size_t len, snow_pid pid)
{
    /* pid 0 is what names_get says for "absent"; storing it would make
     * the name look free while it is taken. */
    if (!names_valid(name, len) || pid == 0)
        return -SNOW_EINVAL;
    size_t i = 0;
    if (m->cap) {
        i = find(m, name, len);
        if (m->slots[i].name)
            return -SNOW_EEXIST;
    }
    if ((m->count + 1) * 10 > m->cap * 7) {
        grow(m);
        i = find(m, name, len);
    }

    struct names_entry *e = &m->slots[i];
    e->name = xmalloc(len + 1);
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    e->len = len;
    e->pid = pid;
    m->count++;
    return 0;
}

snow_pid names_get(const struct names *m, const char *name, size_t len)
{
    if (!m->cap || !name)
        return 0;
    return m->slots[find(m, name, len)].pid;
}

/* Empties slot i and shifts back the entries after it that probed past
 * it, so that none is cut off from its home by the new hole. */
static void remove_at(struct names *m, size_t i)
{
    size_t mask = m->cap - 1;

    free(m->slots[i].name);
    for (size_t j = (i + 1) & mask; m->slots[j].name; j = (j + 1) & mask) {
        size_t home = (size_t)name_hash(m->slots[j].name, m->slots[j].len)
                      & mask;
        /* The entry at j may fill the hole unless its home lies in
         * (i, j], cyclically: then it would sit before its home. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i] = (struct names_entry){ 0 };
    m->count--;
}

bool names_del(struct names *m, const char *name, size_t len, snow_pid pid)
{
    if (!m->cap || !name)
        return false;
    size_t i = find(m, name, len);
    if (!m->slots[i].name || m->slots[i].pid != pid)
        return false;
    remove_at(m, i);
    return true;
}

size_t names_del_matching(struct names *m, snow_pid mask, snow_pid value,
                          void (*fn)(void *arg, const char *name, size_t len,
                                     snow_pid pid),
                          void *arg)
{
    size_t removed = 0, start, n;

    if (!m->count)
        return 0;
    /* Start right after an empty slot: remove_at only moves entries back
     * towards the hole and never past the empty slot that ends their
     * cluster, so every entry not yet visited stays ahead of us, and an
     * entry shifted into slot i is looked at before moving on. */
    for (start = 0; m->slots[start].name; start++)
        ;
    for (n = 1; n < m->cap; ) {
        size_t i = (start + n) & (m->cap - 1);
        struct names_entry *e = &m->slots[i];
        if (e->name && (e->pid & mask) == value) {
            if (fn)
                fn(arg, e->name, e->len, e->pid);
            remove_at(m, i);
            removed++;
            continue;
        }
        n++;
    }
    return removed;
}

void names_each(const struct names *m,
                void (*fn)(void *arg, const char *name, size_t len,
                           snow_pid pid),
                void *arg)
{
    for (size_t i = 0; i < m->cap; i++) {
        const struct names_entry *e = &m->slots[i];
        if (e->name)
            fn(arg, e->name, e->len, e->pid);
    }
}

void names_free(struct names *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].name);
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}
