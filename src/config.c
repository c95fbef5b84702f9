/*
 * config.c - loading snowd.ini.
 *
 * inih does the INI syntax; this file owns the schema.  inih does not
 * report line numbers to its handler, so the file is fed through a reader
 * that counts lines and notices section headers (which inih does not
 * report either: an empty [route] section must still be checked).
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confval.h"

struct loader {
    struct config *cfg;
    FILE *fp;
    unsigned line;                  /* of the line inih is handling */
    unsigned errors;
    unsigned first_error_line;
    char section[256];              /* current section, as written */
    struct route *route;            /* current [route] section, or NULL */
    struct tls_cert_conf *tls;      /* current [tls ...] section, or NULL */
    unsigned seen;                  /* bit set of single keys seen */
    unsigned user_line, group_line;
};

static void report(struct loader *ld, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct loader *ld, unsigned line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%u: %s\n", ld->cfg->file, line, msg);
    if (ld->errors++ == 0)
        ld->first_error_line = line;
}

static void defaults(struct config *cfg)
{
    cfg->log_level = LOG_INFO;
    cfg->backlog = 511;
    cfg->max_message = 16u << 20;
    cfg->max_header = 8u << 10;
    cfg->max_backpressure = 1u << 20;
    cfg->max_connections = 10000;
    cfg->handshake_timeout = 10000;
    cfg->idle_timeout = 120000;
    cfg->ping_interval = 30000;
    cfg->close_timeout = 5000;
    cfg->drain_timeout = 30000;
    cfg->mailbox_limit = 10000;
    cfg->workers = 0;
    cfg->hang_timeout = 10000;
    cfg->max_restarts = 5;
    cfg->restart_window = 60000;
    cfg->accept_mode = ACCEPT_REUSEPORT;
}

unsigned config_workers(const struct config *cfg)
{
    if (cfg->workers)
        return (unsigned)cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS
                                               : (unsigned)n;
}

/* Splits a list of words separated by commas or blanks into a new array. */
static char **split_words(const char *value, size_t *count)
{
    char **out = NULL;
    size_t n = 0;
    const char *p = value;

    for (;;) {
        p += strspn(p, ", \t");
        if (!*p)
            break;
        size_t len = strcspn(p, ", \t");
        out = realloc(out, (n + 1) * sizeof *out);
        out[n++] = strndup(p, len);
        p += len;
    }
    *count = n;
    return out;
}

static void free_words(char **words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(words[i]);
    free(words);
}

/* Each single-valued key may appear once per section. */
static int once(struct loader *ld, unsigned bit, const char *name)
{
    if (ld->seen & bit) {
        report(ld, ld->line, "'%s' is set twice in [%s]", name, ld->section);
        return -1;
    }
    ld->seen |= bit;
    return 0;
}

static void set_size(struct loader *ld, const char *name, const char *value,
                     uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (confval_size(value, &v) != 0 || v < min)
        report(ld, ld->line, "%s: '%s' is not a size of at least %llu bytes "
               "(use a number with an optional K, M or G suffix)",
               name, value, (unsigned long long)min);
    else if (max && v > max)
        report(ld, ld->line, "%s: '%s' is over the largest allowed, %llu "
               "bytes", name, value, (unsigned long long)max);
    else
        *out = v;
}

static void set_duration(struct loader *ld, const char *name,
                         const char *value, uint64_t *out)
{
    uint64_t v;
    if (confval_duration(value, &v) != 0)
        report(ld, ld->line, "%s: '%s' is not a duration "
               "(use e.g. 500ms, 10s, 2m, 1h; 0 turns it off)", name, value);
    else
        *out = v;
}

static char *beside_config(const struct config *cfg, const char *path);

/* pid_file = PATH: its folder must exist now; the master writes the file
 * only once its listeners are bound (pidfile.c). */
static void set_pid_file(struct loader *ld, const char *value)
{
    char *path = beside_config(ld->cfg, value);
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : slash == path ? strdup("/")
                : strndup(path, (size_t)(slash - path));
    struct stat st;

    if (!*value || path[strlen(path) - 1] == '/')
        report(ld, ld->line, "pid_file: '%s' is not a file name", value);
    else if (stat(dir, &st) != 0)
        report(ld, ld->line, "pid_file: folder '%s': %s", dir,
               strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        report(ld, ld->line, "pid_file: '%s' is not a folder", dir);
    else {
        ld->cfg->pid_file = path;
        path = NULL;
    }
    free(dir);
    free(path);
}

static void server_key(struct loader *ld, const char *name, const char *value)
{
    struct config *cfg = ld->cfg;

    if (strcmp(name, "listen") == 0) {
        struct listen_spec spec = { .line = ld->line };
        int rc = confval_listen_entry(value, &spec.addr, &spec.addr_len,
                                      &spec.tls);
        if (rc == -ENOTSUP) {
            report(ld, ld->line, "listen: '%s': the only word allowed after "
                   "the address is 'tls'", value);
            return;
        }
        if (rc != 0) {
            report(ld, ld->line, "listen: '%s' is not ADDRESS:PORT "
                   "(e.g. 127.0.0.1:8080, [::1]:8080, *:8080), optionally "
                   "followed by 'tls'", value);
            return;
        }
        spec.text = strdup(value);
        cfg->listens = realloc(cfg->listens,
                               (cfg->nlistens + 1) * sizeof *cfg->listens);
        cfg->listens[cfg->nlistens++] = spec;
    } else if (strcmp(name, "plugin_dir") == 0) {
        if (once(ld, 1u << 0, name) == 0) {
            free(cfg->plugin_dir);
            cfg->plugin_dir = strdup(value);
        }
    } else if (strcmp(name, "log_level") == 0) {
        if (once(ld, 1u << 1, name) == 0 &&
            log_level_parse(value, &cfg->log_level) != 0)
            report(ld, ld->line, "log_level: '%s' is not one of error, warn, "
                   "info, debug", value);
    } else if (strcmp(name, "backlog") == 0) {
        if (once(ld, 1u << 2, name) == 0 &&
            confval_uint(value, 1, INT_MAX, &cfg->backlog) != 0)
            report(ld, ld->line, "backlog: '%s' is not a number from 1 to %d",
                   value, INT_MAX);
    } else if (strcmp(name, "workers") == 0) {
        if (once(ld, 1u << 3, name) == 0 && strcmp(value, "auto") != 0 &&
            confval_uint(value, 1, CONFIG_MAX_WORKERS, &cfg->workers) != 0)
            report(ld, ld->line, "workers: '%s' is not 'auto' or a number "
                   "from 1 to %d", value, CONFIG_MAX_WORKERS);
    } else if (strcmp(name, "hang_timeout") == 0) {
        if (once(ld, 1u << 4, name) == 0)
            set_duration(ld, name, value, &cfg->hang_timeout);
    } else if (strcmp(name, "max_restarts") == 0) {
        if (once(ld, 1u << 5, name) == 0 &&
            confval_uint(value, 0, 1000000, &cfg->max_restarts) != 0)
            report(ld, ld->line, "max_restarts: '%s' is not a number from 0 "
                   "to 1000000", value);
    } else if (strcmp(name, "restart_window") == 0) {
        if (once(ld, 1u << 6, name) == 0) {
            set_duration(ld, name, value, &cfg->restart_window);
            if (cfg->restart_window == 0)
                report(ld, ld->line, "restart_window: must be longer than 0");
        }
    } else if (strcmp(name, "log_format") == 0) {
        if (once(ld, 1u << 8, name) == 0 &&
            log_format_parse(value, &cfg->log_format) != 0)
            report(ld, ld->line, "log_format: '%s' is not one of auto, "
                   "plain, journal", value);
    } else if (strcmp(name, "user") == 0) {
        if (once(ld, 1u << 9, name) == 0) {
            cfg->user = strdup(value);
            ld->user_line = ld->line;
        }
    } else if (strcmp(name, "group") == 0) {
        if (once(ld, 1u << 10, name) == 0) {
            cfg->group = strdup(value);
            ld->group_line = ld->line;
        }
    } else if (strcmp(name, "pid_file") == 0) {
        if (once(ld, 1u << 11, name) == 0)
            set_pid_file(ld, value);
    } else if (strcmp(name, "accept") == 0) {
        if (once(ld, 1u << 7, name) != 0)
            return;
        if (strcmp(value, "reuseport") == 0)
            cfg->accept_mode = ACCEPT_REUSEPORT;
        else if (strcmp(value, "shared") == 0)
            cfg->accept_mode = ACCEPT_SHARED;
        else
            report(ld, ld->line, "accept: '%s' is not 'reuseport' or "
                   "'shared'", value);
    } else {
        report(ld, ld->line, "unknown key '%s' in [server]", name);
    }
}

/* [admin]: the master's own HTTP listener (admin.c). */
static void admin_key(struct loader *ld, const char *name, const char *value)
{
    struct config *cfg = ld->cfg;

    if (strcmp(name, "listen") != 0) {
        report(ld, ld->line, "unknown key '%s' in [admin]", name);
        return;
    }
    if (once(ld, 1u << 0, name) != 0)
        return;
    struct listen_spec spec = { .line = ld->line };
    if (confval_listen(value, &spec.addr, &spec.addr_len) != 0) {
        report(ld, ld->line, "listen: '%s' is not ADDRESS:PORT "
               "(e.g. 127.0.0.1:9090, [::1]:9090)", value);
        return;
    }
    spec.text = strdup(value);
    cfg->admin = spec;
}

static void limits_key(struct loader *ld, const char *name, const char *value)
{
    struct config *cfg = ld->cfg;
    static const struct {
        const char *name;
        size_t offset;
        enum { SIZE, DURATION, COUNT } kind;
        uint64_t min, max;   /* max 0: no limit */
    } keys[] = {
        { "max_message", offsetof(struct config, max_message), SIZE, 1, 0 },
        /* A request head must fit well inside the worker's shared read
         * buffer, which any bytes left over from it pass through. */
        { "max_header", offsetof(struct config, max_header), SIZE, 256,
          64 * 1024 },
        { "max_backpressure", offsetof(struct config, max_backpressure), SIZE, 1024, 0 },
        { "max_connections", offsetof(struct config, max_connections), COUNT, 1, 0 },
        { "handshake_timeout", offsetof(struct config, handshake_timeout), DURATION, 0, 0 },
        { "idle_timeout", offsetof(struct config, idle_timeout), DURATION, 0, 0 },
        { "ping_interval", offsetof(struct config, ping_interval), DURATION, 0, 0 },
        { "close_timeout", offsetof(struct config, close_timeout), DURATION, 0, 0 },
        { "drain_timeout", offsetof(struct config, drain_timeout), DURATION, 0, 0 },
        { "mailbox_limit", offsetof(struct config, mailbox_limit), COUNT, 1, 0 },
    };

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(name, keys[i].name) != 0)
            continue;
        if (once(ld, 1u << i, name) != 0)
            return;
        uint64_t *out = (uint64_t *)((char *)cfg + keys[i].offset);
        if (keys[i].kind == SIZE)
            set_size(ld, name, value, keys[i].min, keys[i].max, out);
        else if (keys[i].kind == DURATION)
            set_duration(ld, name, value, out);
        else if (confval_uint(value, keys[i].min, 1000000000, out) != 0)
            report(ld, ld->line, "%s: '%s' is not a number from 1 to "
                   "1000000000", name, value);
        return;
    }
    report(ld, ld->line, "unknown key '%s' in [limits]", name);
}

/* A relative path is taken relative to the config file's folder, so a
 * config works wherever it is run from.  Returns a new string. */
static char *beside_config(const struct config *cfg, const char *path)
{
    const char *slash = strrchr(cfg->file, '/');
    char *out = NULL;

    if (path[0] == '/' || !slash)
        return strdup(path);
    if (asprintf(&out, "%.*s/%s", (int)(slash - cfg->file), cfg->file,
                 path) < 0)
        abort();
    return out;
}

/* static = DIR: a folder that exists and can be listed and read now,
 * kept by its canonical name, against which every file served is
 * checked (static_file.c). */
static void set_static(struct loader *ld, struct route *r, const char *value)
{
    char *path = beside_config(ld->cfg, value);
    char *canon = realpath(path, NULL);
    struct stat st;

    r->static_refused = true;   /* unless it passes every check */
    if (!canon)
        report(ld, ld->line, "static: '%s': %s", value, strerror(errno));
    else if (stat(canon, &st) != 0 || !S_ISDIR(st.st_mode))
        report(ld, ld->line, "static: '%s' is not a folder", value);
    else if (access(canon, R_OK | X_OK) != 0)
        report(ld, ld->line, "static: '%s' cannot be read: %s", value,
               strerror(errno));
    else {
        r->static_dir = strdup(canon);
        r->static_refused = false;
    }
    free(canon);
    free(path);
}

static void route_key(struct loader *ld, const char *name, const char *value)
{
    struct route *r = ld->route;

    if (strcmp(name, "handler") == 0) {
        if (once(ld, 1u << 0, name) == 0)
            r->handler_name = strdup(value);
    } else if (strcmp(name, "subprotocols") == 0) {
        if (once(ld, 1u << 1, name) == 0)
            r->protocols = split_words(value, &r->nprotocols);
    } else if (strcmp(name, "origins") == 0) {
        if (once(ld, 1u << 2, name) == 0)
            r->origins = split_words(value, &r->norigins);
    } else if (strcmp(name, "backpressure") == 0) {
        if (once(ld, 1u << 3, name) != 0)
            return;
        if (strcmp(value, "close") == 0)
            r->backpressure = BACKPRESSURE_CLOSE;
        else if (strcmp(value, "drop") == 0)
            r->backpressure = BACKPRESSURE_DROP;
        else
            report(ld, ld->line, "backpressure: '%s' is not 'close' or "
                   "'drop'", value);
    } else if (strcmp(name, "static") == 0) {
        if (once(ld, 1u << 4, name) == 0)
            set_static(ld, r, value);
    } else {
        report(ld, ld->line, "unknown key '%s' in [%s]", name, ld->section);
    }
}

/* A path key of a [tls ...] section: kept resolved, checked by tls.c. */
static void set_tls_path(struct loader *ld, char **out, unsigned *line,
                         const char *value)
{
    if (!*value) {
        report(ld, ld->line, "[%s]: an empty path", ld->section);
        return;
    }
    *out = beside_config(ld->cfg, value);
    *line = ld->line;
}

static void tls_key(struct loader *ld, const char *name, const char *value)
{
    struct tls_conf *tc = &ld->cfg->tls_conf;
    struct tls_cert_conf *c = ld->tls;
    bool is_default = c->nnames == 0;

    if (strcmp(name, "certificate") == 0) {
        if (once(ld, 1u << 0, name) == 0)
            set_tls_path(ld, &c->certificate, &c->certificate_line, value);
    } else if (strcmp(name, "key") == 0) {
        if (once(ld, 1u << 1, name) == 0)
            set_tls_path(ld, &c->key, &c->key_line, value);
    } else if (strcmp(name, "chain") == 0) {
        if (once(ld, 1u << 2, name) == 0)
            set_tls_path(ld, &c->chain, &c->chain_line, value);
    } else if (!is_default && (strcmp(name, "ciphers") == 0 ||
                               strcmp(name, "ciphersuites") == 0 ||
                               strcmp(name, "release_buffers") == 0)) {
        report(ld, ld->line, "'%s' belongs in [tls]: it applies to every "
               "certificate", name);
    } else if (strcmp(name, "ciphers") == 0) {
        if (once(ld, 1u << 3, name) == 0) {
            tc->ciphers = strdup(value);
            tc->ciphers_line = ld->line;
        }
    } else if (strcmp(name, "ciphersuites") == 0) {
        if (once(ld, 1u << 4, name) == 0) {
            tc->ciphersuites = strdup(value);
            tc->ciphersuites_line = ld->line;
        }
    } else if (strcmp(name, "release_buffers") == 0) {
        bool on;
        if (once(ld, 1u << 5, name) != 0)
            return;
        if (confval_bool(value, &on) != 0)
            report(ld, ld->line, "release_buffers: '%s' is not on or off",
                   value);
        else
            tc->keep_buffers = !on;
    } else {
        report(ld, ld->line, "unknown key '%s' in [%s]", name, ld->section);
    }
}

/* A server name of a [tls NAME ...] header: DNS labels of letters,
 * digits and '-', or "*." and such labels. */
static bool server_name_valid(const char *name)
{
    const char *p = strncmp(name, "*.", 2) == 0 ? name + 2 : name;
    size_t label = 0;

    if (!*p || strlen(p) > 253)
        return false;
    for (; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || *p == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* [tls] or [tls NAME ...]: starts a certificate. */
static void begin_tls_section(struct loader *ld, const char *names)
{
    struct tls_conf *tc = &ld->cfg->tls_conf;
    struct tls_cert_conf c = { .line = ld->line };
    bool bad = false;

    c.names = split_words(names, &c.nnames);
    for (size_t i = 0; i < c.nnames; i++) {
        if (!server_name_valid(c.names[i])) {
            report(ld, ld->line, "[%s]: '%s' is not a server name (e.g. "
                   "example.org, *.example.org)", ld->section, c.names[i]);
            bad = true;
        }
        for (size_t k = 0; k < tc->ncerts; k++)
            for (size_t j = 0; j < tc->certs[k].nnames; j++)
                if (strcasecmp(tc->certs[k].names[j], c.names[i]) == 0) {
                    report(ld, ld->line, "[%s]: '%s' already has a "
                           "certificate, in the section at line %u",
                           ld->section, c.names[i], tc->certs[k].line);
                    bad = true;
                }
    }
    for (size_t k = 0; c.nnames == 0 && k < tc->ncerts; k++)
        if (tc->certs[k].nnames == 0) {
            report(ld, ld->line, "[tls] appears twice (first at line %u)",
                   tc->certs[k].line);
            bad = true;
        }
    if (bad) {
        free_words(c.names, c.nnames);
        return;
    }
    tc->certs = realloc(tc->certs, (tc->ncerts + 1) * sizeof *tc->certs);
    tc->certs[tc->ncerts] = c;
    ld->tls = &tc->certs[tc->ncerts++];
}

/* Called by the reader for each section header, before inih sees it. */
static void begin_section(struct loader *ld, const char *name)
{
    struct config *cfg = ld->cfg;

    snprintf(ld->section, sizeof ld->section, "%s", name);
    ld->route = NULL;
    ld->tls = NULL;
    ld->seen = 0;
    if (strcmp(name, "server") == 0 || strcmp(name, "limits") == 0 ||
        strcmp(name, "admin") == 0)
        return;
    if (strncmp(name, "tls", 3) == 0 &&
        (name[3] == '\0' || name[3] == ' ' || name[3] == '\t')) {
        begin_tls_section(ld, name + 3);
        return;
    }
    if (strncmp(name, "route", 5) == 0 && (name[5] == ' ' || name[5] == '\t')) {
        const char *path = name + 6 + strspn(name + 6, " \t");
        if (path[0] != '/' || strpbrk(path, " \t?#")) {
            report(ld, ld->line, "[%s]: a route path starts with '/' and has "
                   "no blanks, '?' or '#'", name);
            return;
        }
        if (route_find(cfg->routes, cfg->nroutes, path, strlen(path))) {
            report(ld, ld->line, "[%s]: this path already has a route", name);
            return;
        }
        cfg->routes = realloc(cfg->routes,
                              (cfg->nroutes + 1) * sizeof *cfg->routes);
        ld->route = &cfg->routes[cfg->nroutes++];
        *ld->route = (struct route){ .path = strdup(path), .line = ld->line };
        return;
    }
    report(ld, ld->line, "unknown section [%s] (expected [server], [limits], "
           "[admin], [tls], [tls NAME] or [route /PATH])", name);
}

/* inih's reader: fgets that counts lines and spots section headers. */
static char *read_line(char *str, int num, void *stream)
{
    struct loader *ld = stream;

    if (!fgets(str, num, ld->fp))
        return NULL;
    ld->line++;
    if (!strchr(str, '\n') && !feof(ld->fp)) {
        /* inih's line buffer is fixed; a longer line would be cut and its
         * tail read as a line of its own.  Refuse it whole instead. */
        report(ld, ld->line, "line longer than %d characters", num - 2);
        int ch;
        while ((ch = fgetc(ld->fp)) != EOF && ch != '\n')
            ;
        strcpy(str, ";\n");   /* inih sees a comment */
        return str;
    }
    const char *p = str + strspn(str, " \t");
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (end) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
            begin_section(ld, name);
        }
    }
    return str;
}

static int on_key(void *user, const char *section, const char *name,
                  const char *value)
{
    struct loader *ld = user;
    unsigned errors = ld->errors;

    (void)section;  /* begin_section already classified it */
    if (strcmp(ld->section, "server") == 0)
        server_key(ld, name, value);
    else if (strcmp(ld->section, "limits") == 0)
        limits_key(ld, name, value);
    else if (strcmp(ld->section, "admin") == 0)
        admin_key(ld, name, value);
    else if (ld->route)
        route_key(ld, name, value);
    else if (ld->tls)
        tls_key(ld, name, value);
    else if (ld->section[0] == '\0')
        report(ld, ld->line, "'%s' is outside any section", name);
    /* else: the section itself was already reported as unknown */
    return ld->errors == errors;
}

/* getpwnam and getgrnam leave errno 0 or one of these for a name that
 * is simply not there (getpwnam(3)). */
static bool not_found(int err)
{
    return err == 0 || err == ENOENT || err == ESRCH || err == EBADF ||
           err == EPERM;
}

/* The user's supplementary groups, gid among them, as initgroups(3) would
 * set them; read here once, so that every worker gets the same list. */
static void lookup_groups(struct config *cfg)
{
    int n = 16;

    for (;;) {
        int want = n;
        cfg->groups = realloc(cfg->groups, (size_t)n * sizeof *cfg->groups);
        if (!cfg->groups)
            abort();
        if (getgrouplist(cfg->user, cfg->gid, cfg->groups, &n) >= 0)
            break;
        if (n <= want)   /* no larger size asked for: do not loop */
            n = want * 2;
    }
    cfg->ngroups = (size_t)n;
}

/* user and group name who workers run as (privs.c).  A name that does
 * not exist is an error here, in `snowd -t` too, rather than a worker
 * that fails at every start until the master gives up. */
static void check_identity(struct loader *ld)
{
    struct config *cfg = ld->cfg;

    if (cfg->group && !cfg->user) {
        report(ld, ld->group_line, "group: set 'user' too; 'group' alone "
               "would leave the workers root");
        return;
    }
    if (!cfg->user)
        return;
    errno = 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        if (not_found(errno))
            report(ld, ld->user_line, "user: no user named '%s'", cfg->user);
        else
            report(ld, ld->user_line, "user: cannot look up '%s': %s",
                   cfg->user, strerror(errno));
        return;
    }
    cfg->uid = pw->pw_uid;
    cfg->gid = pw->pw_gid;
    if (cfg->group) {
        errno = 0;
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            if (not_found(errno))
                report(ld, ld->group_line, "group: no group named '%s'",
                       cfg->group);
            else
                report(ld, ld->group_line, "group: cannot look up '%s': %s",
                       cfg->group, strerror(errno));
            return;
        }
        cfg->gid = gr->gr_gid;
    }
    /* Only root can switch; anyone else may name who it already is. */
    if (geteuid() != 0 && (cfg->uid != geteuid() ||
                           (cfg->group && cfg->gid != getegid())))
        report(ld, cfg->uid != geteuid() ? ld->user_line : ld->group_line,
               "%s: snowd runs as uid %u and gid %u, not as root, so its "
               "workers cannot switch to user '%s' (uid %u) and gid %u; run "
               "it as root, or remove 'user' and 'group'",
               cfg->uid != geteuid() ? "user" : "group",
               (unsigned)geteuid(), (unsigned)getegid(), cfg->user,
               (unsigned)cfg->uid, (unsigned)cfg->gid);
    else
        lookup_groups(cfg);
}

static void report_tls(void *arg, unsigned line, const char *msg)
{
    struct loader *ld = arg;
    const struct tls_conf *tc = &ld->cfg->tls_conf;

    report(ld, line ? line : tc->certs[0].line, "%s", msg);
}

/* Every tls listener needs the default certificate, every section a
 * certificate; then tls.c reads the files and builds the contexts. */
static void check_tls(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    const struct tls_conf *tc = &cfg->tls_conf;
    const struct tls_cert_conf *def = NULL;
    unsigned errors = ld->errors;

    for (size_t i = 0; i < tc->ncerts; i++) {
        if (tc->certs[i].nnames == 0)
            def = &tc->certs[i];
        if (!tc->certs[i].certificate)
            report(ld, tc->certs[i].line, "[%s%s%s] needs 'certificate'",
                   "tls", tc->certs[i].nnames ? " " : "",
                   tc->certs[i].nnames ? tc->certs[i].names[0] : "");
    }
    if (tc->ncerts && !def)
        report(ld, tc->certs[0].line, "[tls %s] needs a [tls] section too: "
               "its certificate is the default, for clients that name "
               "another server or none", tc->certs[0].names[0]);
    for (size_t i = 0; i < cfg->nlistens; i++)
        if (cfg->listens[i].tls && (!def || !def->certificate))
            report(ld, cfg->listens[i].line, "listen: '%s' needs a [tls] "
                   "section with a 'certificate' (and its 'key')",
                   cfg->listens[i].text);
    if (tc->ncerts && ld->errors == errors)
        cfg->tls = tls_new(tc, report_tls, ld);
}

static bool same_listen_address(const struct listen_spec *a,
                                const struct listen_spec *b)
{
    return a->addr_len == b->addr_len &&
           memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

/* Two listens on one address would bind it twice: with SO_REUSEPORT the
 * kernel would split clients between them without a word, with
 * accept = shared the second bind would fail only at start. */
static void check_listen_duplicates(struct loader *ld)
{
    const struct config *cfg = ld->cfg;

    for (size_t i = 1; i < cfg->nlistens; i++)
        for (size_t j = 0; j < i; j++)
            if (same_listen_address(&cfg->listens[i], &cfg->listens[j])) {
                report(ld, cfg->listens[i].line, "listen: %s is already "
                       "listed at line %u", cfg->listens[i].text,
                       cfg->listens[j].line);
                break;
            }
}

static void check_whole(struct loader *ld)
{
    struct config *cfg = ld->cfg;

    if (cfg->nlistens == 0)
        report(ld, ld->line, "[server] needs at least one 'listen'");
    check_listen_duplicates(ld);
    if (cfg->nroutes == 0)
        report(ld, ld->line, "no [route /PATH] section: nothing to serve");
    /* A route whose 'static' was refused has already been reported. */
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (!cfg->routes[i].handler_name && !cfg->routes[i].static_dir &&
            !cfg->routes[i].static_refused)
            report(ld, cfg->routes[i].line, "[route %s] has neither "
                   "'handler' nor 'static'", cfg->routes[i].path);
    if (!cfg->plugin_dir)
        report(ld, ld->line, "[server] needs 'plugin_dir'");
    /* The admin endpoints stay off the public port; an exact clash is
     * caught here, an overlap with a wildcard when binding. */
    for (size_t i = 0; cfg->admin.text && i < cfg->nlistens; i++)
        if (same_listen_address(&cfg->listens[i], &cfg->admin))
            report(ld, cfg->admin.line, "listen: %s is also a [server] "
                   "listen (line %u); the admin endpoints need an address "
                   "of their own", cfg->admin.text, cfg->listens[i].line);
    check_identity(ld);
    check_tls(ld);
}

/* A relative plugin_dir is taken relative to the config file's folder. */
static void resolve_plugin_dir(struct config *cfg)
{
    if (!cfg->plugin_dir)
        return;
    char *abs = beside_config(cfg, cfg->plugin_dir);
    free(cfg->plugin_dir);
    cfg->plugin_dir = abs;
}

struct config *config_load(const char *file)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    struct loader ld = { .cfg = cfg };

    cfg->file = strdup(file);
    defaults(cfg);
    ld.fp = fopen(file, "r");
    if (!ld.fp) {
        fprintf(stderr, "%s: cannot open: %s\n", file, strerror(errno));
        config_free(cfg);
        return NULL;
    }
    int bad_line = ini_parse_stream(read_line, &ld, on_key, &ld);
    fclose(ld.fp);
    /* inih returns the first line it could not use: a syntax error unless
     * it is a line our handler already reported. */
    if (bad_line > 0 && (ld.errors == 0 || (unsigned)bad_line < ld.first_error_line))
        report(&ld, (unsigned)bad_line, "syntax error (expected "
               "'key = value' or '[section]')");
    check_whole(&ld);
    if (ld.errors) {
        config_free(cfg);
        return NULL;
    }
    resolve_plugin_dir(cfg);
    /* auto is read once per reading of the file, so that every part of
     * the daemon sees the same count for this configuration. */
    cfg->workers = config_workers(cfg);
    return cfg;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nlistens; i++)
        free(cfg->listens[i].text);
    free(cfg->listens);
    free(cfg->admin.text);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct route *r = &cfg->routes[i];
        free(r->path);
        free(r->handler_name);
        free(r->static_dir);
        free_words(r->protocols, r->nprotocols);
        free_words(r->origins, r->norigins);
    }
    free(cfg->routes);
    tls_free(cfg->tls);
    tls_conf_free(&cfg->tls_conf);
    free(cfg->plugin_dir);
    free(cfg->pid_file);
    free(cfg->user);
    free(cfg->group);
    free(cfg->groups);
    free(cfg->file);
    free(cfg);
}
