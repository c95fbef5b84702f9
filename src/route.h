/*
 * route.h - a URL path mapped to a handler, with its upgrade policy.
 *
 * Routes are built by config.c and resolved to handlers by plugin.c; the
 * connection code only reads them.
 */
#ifndef SNOWD_ROUTE_H
#define SNOWD_ROUTE_H

#include <stddef.h>
#include <stdint.h>

struct snow_handler;

/* What happens to a connection whose output passes max_backpressure. */
enum backpressure_policy {
    BACKPRESSURE_CLOSE = 0,   /* close it with 1008 (the default) */
    BACKPRESSURE_DROP         /* drop room messages; sends fail */
};

struct route {
    char *path;                          /* exact match, e.g. "/echo" */
    char *handler_name;
    const struct snow_handler *handler;  /* NULL until resolved */
    char **protocols;                    /* server preference order */
    size_t nprotocols;
    char **origins;                      /* empty: any origin */
    size_t norigins;
    enum backpressure_policy backpressure;
    unsigned line;                       /* of the [route] header */
    unsigned label;                      /* the handler's status label */
};

/* The route whose path equals path[0..len), or NULL. */
const struct route *route_find(const struct route *routes, size_t n,
                               const char *path, size_t len);

#endif
