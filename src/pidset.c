/*
 * pidset.c - a set of actor pids (see pidset.h).
 */
#include "pidset.h"

#include <stdlib.h>

static uint32_t home(const struct pidset *s, snow_pid pid)
{
    uint64_t x = pid;
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    return (uint32_t)x & (s->cap - 1);
}

/* The place of pid, or of the empty place where it would go. */
static uint32_t probe(const struct pidset *s, snow_pid pid)
{
    uint32_t i = home(s, pid);
    while (s->keys[i] && s->keys[i] != pid)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static void grow(struct pidset *s)
{
    struct pidset bigger = { .cap = s->cap ? s->cap * 2 : 8 };

    bigger.keys = calloc(bigger.cap, sizeof *bigger.keys);
    if (!bigger.keys)
        abort();
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->keys[i]) {
            bigger.keys[probe(&bigger, s->keys[i])] = s->keys[i];
            bigger.n++;
        }
    free(s->keys);
    *s = bigger;
}

bool pidset_add(struct pidset *s, snow_pid pid)
{
    if (!pid)
        return false;
    /* At most 3/4 full, so that probes stay short. */
    if ((s->n + 1) * 4 > s->cap * 3)
        grow(s);
    uint32_t i = probe(s, pid);
    if (s->keys[i])
        return false;
    s->keys[i] = pid;
    s->n++;
    return true;
}

bool pidset_has(const struct pidset *s, snow_pid pid)
{
    return s->n && pid && s->keys[probe(s, pid)] == pid;
}

/* Empties place i, then moves back each later entry of the run that the
 * hole would otherwise cut off from its home. */
static void remove_at(struct pidset *s, uint32_t i)
{
    uint32_t mask = s->cap - 1, j = i;

    s->keys[i] = 0;
    s->n--;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->keys[j])
            return;
        uint32_t h = home(s, s->keys[j]);
        /* Stays if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
            continue;
        s->keys[i] = s->keys[j];
        s->keys[j] = 0;
        i = j;
    }
}

bool pidset_remove(struct pidset *s, snow_pid pid)
{
    if (!s->n || !pid)
        return false;
    uint32_t i = probe(s, pid);
    if (!s->keys[i])
        return false;
    remove_at(s, i);
    return true;
}

void pidset_remove_if(struct pidset *s,
                      bool (*take)(snow_pid pid, void *arg), void *arg)
{
    /* A removal may shift a later entry into place i, so i is looked at
     * again.  An entry that wraps around from the front may be looked at
     * twice; it was kept the first time, so it is kept again. */
    for (uint32_t i = 0; i < s->cap;) {
        if (s->keys[i] && take(s->keys[i], arg))
            remove_at(s, i);
        else
            i++;
    }
}

void pidset_clear(struct pidset *s)
{
    free(s->keys);
    *s = (struct pidset){ 0 };
}
