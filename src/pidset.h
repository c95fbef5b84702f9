/*
 * pidset.h - a set of actor pids.
 *
 * Open addressing with linear probing; a removal shifts later entries
 * back, so there are no tombstones and a probe stops at the first empty
 * place.  Pid 0 is never an actor's and marks an empty place.  Pids are
 * made by the daemon, never chosen by clients, so a fixed mix suffices.
 */
#ifndef SNOWD_PIDSET_H
#define SNOWD_PIDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snowd/snowd.h"

struct pidset {
    snow_pid *keys;       /* cap places, 0 = empty */
    uint32_t cap;         /* a power of two, or 0 */
    uint32_t n;
};

/* Adds pid; false if it was there already, or is 0. */
bool pidset_add(struct pidset *s, snow_pid pid);

/* Removes pid; false if it was not there. */
bool pidset_remove(struct pidset *s, snow_pid pid);

bool pidset_has(const struct pidset *s, snow_pid pid);

/* Removes every pid for which take(pid, arg) returns true, in place;
 * take may act on the pid but not change the set, and must answer the
 * same for a pid it is asked about twice (a kept one may be). */
void pidset_remove_if(struct pidset *s,
                      bool (*take)(snow_pid pid, void *arg), void *arg);

/* Empties the set and frees its memory. */
void pidset_clear(struct pidset *s);

#endif
