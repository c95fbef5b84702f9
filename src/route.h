/*
 * route.h - a URL path mapped to a handler, with its upgrade policy, and
 * optionally to a folder of static files.
 *
 * Routes are built by config.c and resolved to handlers by plugin.c; the
 * connection code only reads them.  A WebSocket upgrade matches a route's
 * path exactly; a plain request for static files matches the longest
 * route path that is a prefix of it at a '/' boundary.
 */
#ifndef SNOWD_ROUTE_H
#define SNOWD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics_route;
struct snow_handler;

/* What happens to a connection whose output passes max_backpressure. */
enum backpressure_policy {
    BACKPRESSURE_CLOSE = 0,   /* close it with 1008 (the default) */
    BACKPRESSURE_DROP         /* drop room messages; sends fail */
};

struct route {
    char *path;                          /* exact match, e.g. "/echo" */
    char *handler_name;                  /* NULL: static files only */
    char *static_dir;                    /* canonical and absolute, or NULL */
    bool static_refused;                 /* config.c: its error is reported */
    const struct snow_handler *handler;  /* NULL until resolved */
    char **protocols;                    /* server preference order */
    size_t nprotocols;
    char **origins;                      /* empty: any origin */
    size_t norigins;
    enum backpressure_policy backpressure;
    unsigned line;                       /* of the [route] header */
    unsigned label;                      /* the handler's status label */
    struct metrics_route *metrics;       /* its counters, in a worker
                                            (set by metrics_attach) */
};

/* The route whose path equals path[0..len), or NULL. */
const struct route *route_find(const struct route *routes, size_t n,
                               const char *path, size_t len);

/* ROUTE_NO_MATCH, or the number of bytes of path[0..len) that the route
 * path `prefix` covers.  A prefix matches at a '/' boundary and without
 * its trailing slashes: "/demo" and "/demo/" both match "/demo",
 * "/demo/" and "/demo/x.js" (covering the 5 bytes "/demo"), but not
 * "/demox"; "/" matches every path that starts with '/' and covers
 * nothing.  What is left is empty or starts with '/'. */
#define ROUTE_NO_MATCH ((size_t)-1)
size_t route_prefix_len(const char *prefix, const char *path, size_t len);

/* The route with a static_dir whose path is the longest prefix of
 * path[0..len) (see route_prefix_len), or NULL. */
const struct route *route_find_static(const struct route *routes, size_t n,
                                      const char *path, size_t len);

#endif
