/*
 * metrics.c - the blocks of counters, their totals, and the Prometheus
 * text exposition (see metrics.h).
 *
 * The master owns the mapping and the totals of ended workers; a worker
 * owns only its block, and after metrics_isolate sees no other.  Nothing
 * here does socket I/O or knows the event loop: admin.c serves what
 * metrics_render returns.
 *
 * Format: https://prometheus.io/docs/instrumenting/exposition_formats/
 * (text format 0.0.4).  Each family has one HELP and one TYPE line, then
 * its samples; label values escape '\\', '"' and line feeds.
 */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "rooms.h"
#include "route.h"
#include "utf8.h"
#include "ws.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* Totals of ended workers are kept per path; past this many paths (only
 * reloads that keep changing the routes could get there) they go to
 * route="other". */
#define METRICS_RETIRED_MAX 1024
/* The values of struct metrics_route, in its order. */
#define ROUTE_VALUES 6
#define OTHER "other"

_Static_assert(METRICS_SLOTS >= ROOMS_MAX_WORKERS,
               "a block for every slot a worker may have");
_Static_assert(sizeof(struct metrics_counters) % sizeof(uint64_t) == 0,
               "the counters fold as an array of uint64_t");

static struct metrics_block private_block;
struct metrics_block *metrics_self = &private_block;

struct route_total {
    char path[METRICS_PATH_MAX];
    uint64_t v[ROUTE_VALUES];
};

static struct {
    unsigned char *base;          /* METRICS_SLOTS blocks, each `stride` */
    size_t stride;
    struct metrics_counters retired;
    struct route_total *routes;   /* totals of ended workers, by path */
    size_t nroutes, cap;
    uint64_t worker_restarts;
    uint64_t channel_drops;
    double start_time;
} M;

static const char *const hs_reasons[METRICS_HS_COUNT] = {
    [METRICS_HS_BAD_REQUEST] = "bad_request",
    [METRICS_HS_TOO_LARGE] = "too_large",
    [METRICS_HS_HTTP_VERSION] = "http_version",
    [METRICS_HS_NOT_FOUND] = "not_found",
    [METRICS_HS_METHOD] = "method",
    [METRICS_HS_UPGRADE] = "upgrade",
    [METRICS_HS_ORIGIN] = "origin",
    [METRICS_HS_REFUSED] = "refused",
    [METRICS_HS_ERROR] = "error",
    [METRICS_HS_UNAVAILABLE] = "unavailable",
    [METRICS_HS_TIMEOUT] = "timeout",
    [METRICS_HS_ABORTED] = "aborted",
    [METRICS_HS_TLS] = "tls",
};

static const char *const actor_kinds[METRICS_ACTOR_KINDS] = {
    [METRICS_ACTOR_CONNECTION] = "connection",
    [METRICS_ACTOR_SERVICE] = "service",
};

unsigned metrics_close_bucket(unsigned code)
{
    if (code >= 1000 && code <= 1015)
        return code - 1000;
    if (code >= 3000 && code <= 3999)
        return METRICS_CLOSE_3XXX;
    if (code >= 4000 && code <= 4999)
        return METRICS_CLOSE_4XXX;
    return METRICS_CLOSE_OTHER;
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* The route entries of a block in use besides "other" (the count is the
 * worker's word: bounded here). */
static uint32_t block_nroutes(const struct metrics_block *b)
{
    uint32_t n = __atomic_load_n(&b->nroutes, __ATOMIC_RELAXED);
    return n < METRICS_ROUTES ? n : METRICS_ROUTES;
}

/* ---- in a worker -------------------------------------------------------- */

void metrics_attach(struct metrics_block *b, struct route *routes,
                    size_t nroutes)
{
    metrics_self = b ? b : &private_block;
    b = metrics_self;
    size_t n = nroutes < METRICS_ROUTES ? nroutes : METRICS_ROUTES;
    for (size_t i = 0; i < nroutes; i++) {
        routes[i].metrics = &b->routes[i < n ? i : METRICS_ROUTES];
        /* Static-only routes never upgrade: nothing to report. */
        if (i < n && routes[i].handler_name)
            snprintf(b->paths[i], METRICS_PATH_MAX, "%s", routes[i].path);
    }
    b->nroutes = (uint32_t)n;
    /* The paths are in place before the master can see the block live. */
    __atomic_store_n(&b->state, METRICS_STARTING, __ATOMIC_RELEASE);
}

void metrics_isolate(void)
{
    unsigned char *own = (unsigned char *)metrics_self;

    if (M.base) {
        size_t total = M.stride * METRICS_SLOTS;
        if (own >= M.base && own < M.base + total) {
            size_t before = (size_t)(own - M.base);
            if (before)
                munmap(M.base, before);
            if (before + M.stride < total)
                munmap(own + M.stride, total - before - M.stride);
        } else {
            munmap(M.base, total);
        }
        M.base = NULL;
    }
    free(M.routes);
    M.routes = NULL;
    M.nroutes = M.cap = 0;
}

void metrics_set_state(enum metrics_state state)
{
    __atomic_store_n(&metrics_self->state, (uint32_t)state,
                     __ATOMIC_RELEASE);
}

/* ---- in the master: blocks and totals ------------------------------------ */

int metrics_map(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t size = sizeof(struct metrics_block);
    struct timespec now;

    if (page <= 0)
        page = 4096;
    M.stride = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
    void *p = mmap(NULL, M.stride * METRICS_SLOTS, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    M.base = p;
    clock_gettime(CLOCK_REALTIME, &now);
    M.start_time = (double)now.tv_sec + now.tv_nsec / 1e9;
    return 0;
}

void metrics_unmap(void)
{
    if (M.base)
        munmap(M.base, M.stride * METRICS_SLOTS);
    free(M.routes);
    memset(&M, 0, sizeof M);
}

struct metrics_block *metrics_block(unsigned s)
{
    if (!M.base || s >= METRICS_SLOTS)
        return NULL;
    return (struct metrics_block *)(M.base + (size_t)s * M.stride);
}

/* A label value the master can print: at most METRICS_PATH_MAX - 1 bytes
 * up to the first NUL, controls shown as '?', and any byte above 0x7f
 * shown as '?' too unless the whole is valid UTF-8. */
static void copy_label(char *dst, const char *src)
{
    size_t n = strnlen(src, METRICS_PATH_MAX - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
    bool utf8 = utf8_valid((const uint8_t *)dst, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)dst[i];
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
            dst[i] = '?';
    }
}

static void route_values(const struct metrics_route *r,
                         uint64_t v[ROUTE_VALUES])
{
    v[0] = load(&r->open);
    v[1] = load(&r->opened);
    v[2] = load(&r->msgs_in);
    v[3] = load(&r->bytes_in);
    v[4] = load(&r->msgs_out);
    v[5] = load(&r->bytes_out);
}

/* The path of entry i of a live block, sanitized into out; false when
 * the entry is not reported. */
static bool block_path(const struct metrics_block *b, size_t i, char *out)
{
    if (i == METRICS_ROUTES) {
        strcpy(out, OTHER);
        return true;
    }
    copy_label(out, b->paths[i]);
    return out[0] != '\0';
}

static struct route_total *retired_route(const char *path)
{
    for (size_t i = 0; i < M.nroutes; i++)
        if (strcmp(M.routes[i].path, path) == 0)
            return &M.routes[i];
    if (M.nroutes == METRICS_RETIRED_MAX && strcmp(path, OTHER) != 0)
        return retired_route(OTHER);
    if (M.nroutes == M.cap) {
        M.cap = M.cap ? M.cap * 2 : 16;
        M.routes = realloc(M.routes, M.cap * sizeof *M.routes);
        if (!M.routes)
            abort();
    }
    struct route_total *t = &M.routes[M.nroutes++];
    memset(t, 0, sizeof *t);
    snprintf(t->path, sizeof t->path, "%s", path);
    return t;
}

void metrics_channel_dropped(void)
{
    M.channel_drops++;
}

void metrics_retire(unsigned s, bool restarted)
{
    struct metrics_block *b = metrics_block(s);
    char path[METRICS_PATH_MAX];

    if (restarted)
        M.worker_restarts++;
    if (!b)
        return;
    uint64_t *from = (uint64_t *)&b->c, *to = (uint64_t *)&M.retired;
    for (size_t i = 0; i < sizeof b->c / sizeof *from; i++)
        to[i] += load(&from[i]);
    uint32_t n = block_nroutes(b);
    for (size_t i = 0; i <= METRICS_ROUTES; i++) {
        if (i < METRICS_ROUTES && i >= n)
            continue;
        uint64_t v[ROUTE_VALUES];
        route_values(&b->routes[i], v);
        bool any = false;
        for (int k = 1; k < ROUTE_VALUES; k++)
            any |= v[k] != 0;
        if (!any || !block_path(b, i, path))
            continue;
        struct route_total *t = retired_route(path);
        /* The open gauge is left behind: those connections died with
         * their worker. */
        for (int k = 1; k < ROUTE_VALUES; k++)
            t->v[k] += v[k];
    }
    memset(b, 0, sizeof *b);
}

unsigned metrics_workers(unsigned *ready)
{
    unsigned live = 0, r = 0;

    for (unsigned s = 0; s < METRICS_SLOTS; s++) {
        const struct metrics_block *b = metrics_block(s);
        if (!b)
            break;
        uint32_t state = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
        live += state != METRICS_EMPTY;
        r += state == METRICS_READY;
    }
    if (ready)
        *ready = r;
    return live;
}

uint64_t metrics_connections(void)
{
    uint64_t open = 0;

    for (unsigned s = 0; s < METRICS_SLOTS; s++) {
        const struct metrics_block *b = metrics_block(s);
        if (!b)
            break;
        if (__atomic_load_n(&b->state, __ATOMIC_ACQUIRE) != METRICS_EMPTY)
            open += __atomic_load_n(&b->tcp_open, __ATOMIC_RELAXED);
    }
    return open;
}

/* ---- the exposition ----------------------------------------------------- */

struct table {
    struct route_total *rows;
    size_t n, cap;
};

static void table_add(struct table *t, const char *path,
                      const uint64_t v[ROUTE_VALUES])
{
    struct route_total *row = NULL;

    for (size_t i = 0; i < t->n && !row; i++)
        if (strcmp(t->rows[i].path, path) == 0)
            row = &t->rows[i];
    if (!row) {
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 16;
            t->rows = realloc(t->rows, t->cap * sizeof *t->rows);
            if (!t->rows)
                abort();
        }
        row = &t->rows[t->n++];
        memset(row, 0, sizeof *row);
        snprintf(row->path, sizeof row->path, "%s", path);
    }
    for (int k = 0; k < ROUTE_VALUES; k++)
        row->v[k] += v[k];
}

static int by_path(const void *a, const void *b)
{
    const struct route_total *x = a, *y = b;
    return strcmp(x->path, y->path);
}

/* Live blocks and the totals, summed by path, sorted ("other" last:
 * every path starts with '/'). */
static void collect_routes(struct table *t, struct metrics_counters *c)
{
    char path[METRICS_PATH_MAX];

    *c = M.retired;
    for (size_t i = 0; i < M.nroutes; i++)
        table_add(t, M.routes[i].path, M.routes[i].v);
    for (unsigned s = 0; s < METRICS_SLOTS; s++) {
        const struct metrics_block *b = metrics_block(s);
        if (!b)
            break;
        if (__atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == METRICS_EMPTY)
            continue;
        const uint64_t *from = (const uint64_t *)&b->c;
        uint64_t *to = (uint64_t *)c;
        for (size_t i = 0; i < sizeof *c / sizeof *from; i++)
            to[i] += load(&from[i]);
        uint32_t n = block_nroutes(b);
        for (size_t i = 0; i <= METRICS_ROUTES; i++) {
            if (i < METRICS_ROUTES && i >= n)
                continue;
            uint64_t v[ROUTE_VALUES];
            route_values(&b->routes[i], v);
            if (i == METRICS_ROUTES && !v[0] && !v[1])
                continue;   /* no route fell there */
            if (block_path(b, i, path))
                table_add(t, path, v);
        }
    }
    if (t->n)
        qsort(t->rows, t->n, sizeof *t->rows, by_path);
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '"')
            fputs("\\\"", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void family(FILE *f, const char *name, const char *type,
                   const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(FILE *f, const char *name, const char *label,
                   const char *value, uint64_t v)
{
    fputs(name, f);
    if (label) {
        fprintf(f, "{%s=\"", label);
        put_escaped(f, value);
        fputs("\"}", f);
    }
    fprintf(f, " %llu\n", (unsigned long long)v);
}

static void route_family(FILE *f, const struct table *t, int k,
                         const char *name, const char *type,
                         const char *help)
{
    family(f, name, type, help);
    for (size_t i = 0; i < t->n; i++)
        sample(f, name, "route", t->rows[i].path, t->rows[i].v[k]);
}

static void render_routes(FILE *f, const struct table *t)
{
    route_family(f, t, 0, "snowd_connections_open", "gauge",
                 "WebSocket connections open now, by route.");
    route_family(f, t, 1, "snowd_connections_total", "counter",
                 "WebSocket upgrades accepted, by route.");
    route_family(f, t, 2, "snowd_messages_received_total", "counter",
                 "Complete data messages (text and binary) received from "
                 "clients, by route.");
    route_family(f, t, 3, "snowd_received_bytes_total", "counter",
                 "Payload bytes of the data messages received from "
                 "clients, by route (frame headers and control frames are "
                 "not counted).");
    route_family(f, t, 4, "snowd_messages_sent_total", "counter",
                 "Data messages queued to clients, by route: each "
                 "snow_send, and each room message once per member.");
    route_family(f, t, 5, "snowd_sent_bytes_total", "counter",
                 "Payload bytes of the data messages queued to clients, by "
                 "route (frame headers and control frames are not "
                 "counted).");
}

static void render_workers(FILE *f, const struct metrics_counters *c,
                           uint64_t tcp_open)
{
    char code[8];

    family(f, "snowd_tcp_connections_open", "gauge",
           "Accepted TCP connections not closed yet, in any state.");
    sample(f, "snowd_tcp_connections_open", NULL, NULL, tcp_open);
    family(f, "snowd_tcp_connections_total", "counter",
           "TCP connections accepted.");
    sample(f, "snowd_tcp_connections_total", NULL, NULL, c->tcp_accepted);
    family(f, "snowd_handshake_failures_total", "counter",
           "Connections that did not become WebSocket connections, by "
           "reason.");
    for (int i = 0; i < METRICS_HS_COUNT; i++)
        sample(f, "snowd_handshake_failures_total", "reason", hs_reasons[i],
               c->handshake_failures[i]);
    family(f, "snowd_closes_total", "counter",
           "WebSocket connections ended, by close code: the first sent or "
           "received, 1005 for an empty close frame, 1006 for none; "
           "application codes as 3xxx and 4xxx.");
    for (unsigned i = 0; i < METRICS_CLOSE_BUCKETS; i++) {
        unsigned n = 1000 + i;
        /* Every code a connection can end with, and any other seen. */
        if (i < METRICS_CLOSE_3XXX && !ws_close_code_valid(n) &&
            n != WS_CLOSE_NO_STATUS && n != WS_CLOSE_ABNORMAL &&
            !c->closes[i])
            continue;
        if (i == METRICS_CLOSE_OTHER && !c->closes[i])
            continue;
        if (i < METRICS_CLOSE_3XXX)
            snprintf(code, sizeof code, "%u", n);
        else
            snprintf(code, sizeof code, "%s", i == METRICS_CLOSE_3XXX
                     ? "3xxx" : i == METRICS_CLOSE_4XXX ? "4xxx" : OTHER);
        sample(f, "snowd_closes_total", "code", code, c->closes[i]);
    }
    family(f, "snowd_actor_crashes_total", "counter",
           "Actors that crashed (a callback failed or called snow_fail), "
           "by kind.");
    for (int i = 0; i < METRICS_ACTOR_KINDS; i++)
        sample(f, "snowd_actor_crashes_total", "kind", actor_kinds[i],
               c->crashes[i]);
    family(f, "snowd_service_restarts_total", "counter",
           "Service actors restarted by their restart policy.");
    sample(f, "snowd_service_restarts_total", NULL, NULL,
           c->service_restarts);
    family(f, "snowd_mailbox_overflows_total", "counter",
           "Tells refused because the receiving mailbox was at "
           "mailbox_limit.");
    sample(f, "snowd_mailbox_overflows_total", NULL, NULL,
           c->mailbox_overflows);
    family(f, "snowd_room_drops_total", "counter",
           "Room messages a member missed because its output was over "
           "max_backpressure.");
    sample(f, "snowd_room_drops_total", NULL, NULL, c->room_drops);
    family(f, "snowd_backpressure_closes_total", "counter",
           "Connections closed with 1008 because their output was over "
           "max_backpressure.");
    sample(f, "snowd_backpressure_closes_total", NULL, NULL,
           c->backpressure_closes);
}

static void render_master(FILE *f, const struct metrics_extra *x)
{
    unsigned ready, live = metrics_workers(&ready);

    family(f, "snowd_worker_restarts_total", "counter",
           "Worker processes respawned after an unexpected death.");
    sample(f, "snowd_worker_restarts_total", NULL, NULL, M.worker_restarts);
    family(f, "snowd_channel_drops_total", "counter",
           "Messages between workers (tells, room messages, presence "
           "events) that the master dropped because the receiving worker "
           "was not reading its channel.");
    sample(f, "snowd_channel_drops_total", NULL, NULL, M.channel_drops);
    family(f, "snowd_workers", "gauge", "Worker processes running.");
    sample(f, "snowd_workers", NULL, NULL, live);
    family(f, "snowd_workers_ready", "gauge",
           "Worker processes ready and serving.");
    sample(f, "snowd_workers_ready", NULL, NULL, ready);
    family(f, "snowd_rooms", "gauge", "Rooms with at least one member.");
    sample(f, "snowd_rooms", NULL, NULL, x->rooms);
    family(f, "snowd_room_members", "gauge",
           "Room memberships, over every room and worker.");
    sample(f, "snowd_room_members", NULL, NULL, x->room_members);
    family(f, "snowd_start_time_seconds", "gauge",
           "When the master process started, in seconds since the Unix "
           "epoch.");
    fprintf(f, "snowd_start_time_seconds %.3f\n", M.start_time);
    family(f, "snowd_build_info", "gauge",
           "Always 1; the labels name the build.");
    sample(f, "snowd_build_info", "version", PACKAGE_VERSION, 1);
}

char *metrics_render(const struct metrics_extra *x, size_t *len)
{
    struct table t = { 0 };
    struct metrics_counters c;
    char *out = NULL;
    uint64_t tcp_open = 0;

    FILE *f = open_memstream(&out, len);
    if (!f)
        abort();
    /* The open sockets first: see metrics_tcp_closed. */
    for (unsigned s = 0; s < METRICS_SLOTS; s++) {
        const struct metrics_block *b = metrics_block(s);
        if (b && __atomic_load_n(&b->state, __ATOMIC_ACQUIRE))
            tcp_open += __atomic_load_n(&b->tcp_open, __ATOMIC_ACQUIRE);
    }
    collect_routes(&t, &c);
    render_routes(f, &t);
    render_workers(f, &c, tcp_open);
    render_master(f, x);
    if (fclose(f) != 0)
        abort();
    free(t.rows);
    return out;
}
