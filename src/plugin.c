/*
 * plugin.c - dlopen()ing handler plugins and checking their descriptor.
 *
 * Trust boundary: a plugin's descriptor is read only after its ABI version
 * and size match, and every handler is checked for a name before the
 * plugin is accepted.  Once accepted, plugin code runs in-process: faults
 * in it are contained one level up (the connection, later the worker).
 */
#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "snowd/snowd.h"

#define MAX_HANDLERS 1024
#define MAX_SERVICES 256

/* Version 2 grew the descriptors into their reserved slots, which a
 * version 1 plugin left NULL: its descriptor reads as one without
 * services or on_info. */
#define OLDEST_ABI 1

static const struct snow_service *find_service(const struct plugin_set *set,
                                               const char *name)
{
    for (size_t p = 0; p < set->nplugins; p++) {
        const struct snow_plugin *d = set->plugins[p].desc;
        for (size_t i = 0; i < d->nservices; i++)
            if (strcmp(d->services[i].name, name) == 0)
                return &d->services[i];
    }
    return NULL;
}

static int check_services(const struct plugin_set *set, const char *file,
                          const struct snow_plugin *d)
{
    if (d->nservices > MAX_SERVICES || (d->nservices && !d->services)) {
        log_error("plugin %s: bad service table", file);
        return -1;
    }
    for (size_t i = 0; i < d->nservices; i++) {
        const struct snow_service *s = &d->services[i];
        if (!s->name || !names_valid(s->name, strnlen(s->name, 256))) {
            log_error("plugin %s: service %zu needs a name of 1 to %d "
                      "printable characters", file, i, SNOW_NAME_MAX);
            return -1;
        }
        if (s->restart != SNOW_PERMANENT && s->restart != SNOW_TRANSIENT &&
            s->restart != SNOW_TEMPORARY) {
            log_error("plugin %s: service '%s' has an unknown restart "
                      "policy %d", file, s->name, (int)s->restart);
            return -1;
        }
        if (find_service(set, s->name)) {
            log_error("plugin %s: service '%s' is already defined by another "
                      "plugin", file, s->name);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->services[j].name, s->name) == 0) {
                log_error("plugin %s: service '%s' is defined twice", file,
                          s->name);
                return -1;
            }
    }
    return 0;
}

static int check_descriptor(const struct plugin_set *set, const char *file,
                            const struct snow_plugin *d)
{
    if (d->abi_version < OLDEST_ABI || d->abi_version > SNOW_ABI_VERSION) {
        log_error("plugin %s: built for plugin ABI %u, this snowd has ABI %u "
                  "(and reads %u and later); rebuild it against this snowd's "
                  "snowd.h", file, d->abi_version, SNOW_ABI_VERSION,
                  OLDEST_ABI);
        return -1;
    }
    if (d->size != sizeof *d) {
        log_error("plugin %s: descriptor size %u, expected %zu; rebuild it",
                  file, d->size, sizeof *d);
        return -1;
    }
    if (!d->name || !d->name[0]) {
        log_error("plugin %s: descriptor has no name", file);
        return -1;
    }
    if (d->nhandlers > MAX_HANDLERS || (d->nhandlers && !d->handlers)) {
        log_error("plugin %s: bad handler table", file);
        return -1;
    }
    for (size_t i = 0; i < d->nhandlers; i++) {
        const char *name = d->handlers[i].name;
        if (!name || !name[0]) {
            log_error("plugin %s: handler %zu has no name", file, i);
            return -1;
        }
        if (plugin_find_handler(set, name)) {
            log_error("plugin %s: handler '%s' is already defined by another "
                      "plugin", file, name);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->handlers[j].name, name) == 0) {
                log_error("plugin %s: handler '%s' is defined twice", file,
                          name);
                return -1;
            }
    }
    return check_services(set, file, d);
}

int plugin_load(struct plugin_set *set, const char *file)
{
    void *dl = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        log_error("plugin %s: cannot load: %s", file, dlerror());
        goto refused;
    }
    const struct snow_plugin *desc = dlsym(dl, "snow_plugin_v1");
    if (!desc) {
        log_error("plugin %s: no 'snow_plugin_v1' symbol; is it built with "
                  "SNOW_PLUGIN()?", file);
        goto refused_close;
    }
    if (check_descriptor(set, file, desc) != 0)
        goto refused_close;

    set->plugins = realloc(set->plugins,
                           (set->nplugins + 1) * sizeof *set->plugins);
    set->plugins[set->nplugins++] = (struct plugin){
        .file = strdup(file), .dl = dl, .desc = desc };
    log_info("plugin %s: loaded '%s' %s with %zu handler(s) and %zu "
             "service(s)", file, desc->name, desc->version ? desc->version : "",
             desc->nhandlers, desc->nservices);
    return 0;

refused_close:
    dlclose(dl);
refused:
    set->failures++;
    return -1;
}

static int has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

int plugin_load_dir(struct plugin_set *set, const char *dir)
{
    struct dirent **entries;
    int n = scandir(dir, &entries, NULL, alphasort);

    if (n < 0) {
        log_error("plugin_dir %s: cannot read: %s", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (has_so_suffix(entries[i]->d_name)) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, entries[i]->d_name);
            plugin_load(set, path);
        }
        free(entries[i]);
    }
    free(entries);
    return 0;
}

const struct snow_handler *plugin_find_handler(const struct plugin_set *set,
                                               const char *name)
{
    for (size_t p = 0; p < set->nplugins; p++) {
        const struct snow_plugin *d = set->plugins[p].desc;
        for (size_t h = 0; h < d->nhandlers; h++)
            if (strcmp(d->handlers[h].name, name) == 0)
                return &d->handlers[h];
    }
    return NULL;
}

unsigned plugin_resolve_routes(const struct plugin_set *set,
                               struct route *routes, size_t nroutes,
                               const char *config_file)
{
    unsigned missing = 0;

    for (size_t i = 0; i < nroutes; i++) {
        if (!routes[i].handler_name)
            continue;   /* static files only */
        routes[i].handler = plugin_find_handler(set, routes[i].handler_name);
        if (!routes[i].handler) {
            log_error("%s:%u: [route %s]: no loaded plugin has a handler "
                      "named '%s'; the route answers 503", config_file,
                      routes[i].line, routes[i].path, routes[i].handler_name);
            missing++;
        }
    }
    return missing;
}

void plugin_set_free(struct plugin_set *set)
{
    for (size_t i = 0; i < set->nplugins; i++) {
        dlclose(set->plugins[i].dl);
        free(set->plugins[i].file);
    }
    free(set->plugins);
    set->plugins = NULL;
    set->nplugins = 0;
}
