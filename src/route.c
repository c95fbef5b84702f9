/*
 * route.c - route lookup.  Routes are few, so a linear scan of exact
 * matches beats anything cleverer.
 */
#include "route.h"

#include <string.h>

const struct route *route_find(const struct route *routes, size_t n,
                               const char *path, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(routes[i].path) == len &&
            memcmp(routes[i].path, path, len) == 0)
            return &routes[i];
    return NULL;
}
