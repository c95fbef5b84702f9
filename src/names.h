/*
 * names.h - a map from registered names to pids.
 *
 * The master holds the authoritative map (names are unique across the
 * daemon); every worker holds a copy it reads for snow_whereis.  Names
 * are checked by names_valid before they enter either map.  Open
 * addressing, so a lookup costs one hash and a short probe, no
 * allocation.
 */
#ifndef SNOWD_NAMES_H
#define SNOWD_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "snowd/snowd.h"

struct names_entry {
    char *name;           /* owned; NULL = empty slot */
    size_t len;
    snow_pid pid;
};

struct names {
    struct names_entry *slots;
    size_t cap;           /* a power of two, or 0 */
    size_t count;
};

/* True for 1..SNOW_NAME_MAX bytes of printable ASCII (0x21..0x7e). */
bool names_valid(const char *name, size_t len);

/* Adds name -> pid (the name is copied).  Returns 0, -SNOW_EEXIST when
 * the name is taken (by any pid, the same one included), -SNOW_EINVAL for
 * an invalid name or a pid of 0. */
int names_put(struct names *m, const char *name, size_t len, snow_pid pid);

/* The pid of name, or 0. */
snow_pid names_get(const struct names *m, const char *name, size_t len);

/* Removes name if it maps to pid.  Returns true when it did. */
bool names_del(struct names *m, const char *name, size_t len, snow_pid pid);

/* Removes every name whose pid matches (pid & mask) == value, calling
 * fn(arg, name, len, pid) for each before it goes (may be NULL; the name
 * is NUL-terminated and freed after fn returns).  fn must not change the
 * map.  Returns how many were removed. */
size_t names_del_matching(struct names *m, snow_pid mask, snow_pid value,
                          void (*fn)(void *arg, const char *name, size_t len,
                                     snow_pid pid),
                          void *arg);

/* Calls fn for every entry, in no particular order. */
void names_each(const struct names *m,
                void (*fn)(void *arg, const char *name, size_t len,
                           snow_pid pid),
                void *arg);

void names_free(struct names *m);

#endif
