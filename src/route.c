/*
 * route.c - route lookup.  Routes are few, so a linear scan beats
 * anything cleverer, for exact and for prefix matches alike.
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

size_t route_prefix_len(const char *prefix, const char *path, size_t len)
{
    size_t plen = strlen(prefix);

    /* "/demo/" serves the same tree as "/demo": dropping the trailing
     * slashes lets "/demo" itself match, and be redirected to "/demo/"
     * like any other folder asked for without its slash. */
    while (plen && prefix[plen - 1] == '/')
        plen--;
    if (len < plen || memcmp(prefix, path, plen) != 0)
        return ROUTE_NO_MATCH;
    if (len == plen && plen > 0)
        return plen;
    /* The boundary: "/demo" must not match "/demox".  For "/" (plen 0)
     * this also requires the path to start with '/', which refuses the
     * absolute form ("http://host/x") and "*". */
    return len > plen && path[plen] == '/' ? plen : ROUTE_NO_MATCH;
}

const struct route *route_find_static(const struct route *routes, size_t n,
                                      const char *path, size_t len)
{
    const struct route *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; i < n; i++) {
        if (!routes[i].static_dir)
            continue;
        size_t m = route_prefix_len(routes[i].path, path, len);
        if (m != ROUTE_NO_MATCH && (!best || m > best_len)) {
            best = &routes[i];
            best_len = m;
        }
    }
    return best;
}
