/*
 * plugin.h - handler plugins: loading, checking, and finding handlers.
 *
 * A plugin that cannot be loaded is refused with a log line naming its
 * file, and loading goes on with the others: a bad plugin never takes the
 * daemon down.
 */
#ifndef SNOWD_PLUGIN_H
#define SNOWD_PLUGIN_H

#include <stddef.h>

#include "route.h"

struct snow_plugin;
struct snow_handler;

struct plugin {
    char *file;
    void *dl;
    const struct snow_plugin *desc;
};

struct plugin_set {
    struct plugin *plugins;
    size_t nplugins;
    unsigned failures;        /* plugins refused */
};

/* Loads every *.so in dir, in name order.  Returns 0, or -1 when the
 * directory cannot be read; refused plugins are counted in failures. */
int plugin_load_dir(struct plugin_set *set, const char *dir);

/* Loads one file; returns 0, or -1 after logging why it was refused. */
int plugin_load(struct plugin_set *set, const char *file);

/* The handler named `name` in any loaded plugin, or NULL. */
const struct snow_handler *plugin_find_handler(const struct plugin_set *set,
                                               const char *name);

/* Points each route that names a handler at it; logs every route whose
 * handler is missing and returns how many there were. */
unsigned plugin_resolve_routes(const struct plugin_set *set,
                               struct route *routes, size_t nroutes,
                               const char *config_file);

/* dlcloses everything. */
void plugin_set_free(struct plugin_set *set);

#endif
