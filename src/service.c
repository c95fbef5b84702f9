/*
 * service.c - service actors: start, deliver, crash, restart, escalate.
 *
 * A service definition (struct service_def) lives as long as the worker;
 * each start makes a fresh instance (struct service) with zeroed state
 * and a new pid, so that nothing of a crashed instance survives into the
 * next one, as in OTP.  An ended instance is kept until the safe point,
 * because the actor runtime may still be inside its delivery.
 */
#include "service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor.h"
#include "channel.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "plugin.h"
#include "worker.h"

#define DEFAULT_MAX_RESTARTS 3
#define DEFAULT_WINDOW_MS 5000

struct service;

struct service_def {
    const struct snow_service *desc;
    uint32_t label;
    bool start_due;
    struct service *live;
    unsigned max_restarts;
    uint64_t window_ms;
    uint64_t *restarts;      /* ring of the last max_restarts + 1 times */
    unsigned nrestarts, ring_head;
};

struct service {
    struct actor actor;      /* first: the runtime hands us &actor */
    struct service_def *def;
    struct service *dead_next;
    _Alignas(16) unsigned char state[];
};

static struct service_def *defs;
static size_t ndefs;
static struct service *dead;
/* After service_stop_all: nothing starts again, and the names stay
 * reserved, so that no other actor of a draining worker can take a name
 * the next generation's service needs. */
static bool all_stopped;

static struct service *service_of(struct actor *a)
{
    return (struct service *)a;
}

void service_init(const struct plugin_set *plugins)
{
    for (size_t p = 0; p < plugins->nplugins; p++) {
        const struct snow_plugin *d = plugins->plugins[p].desc;
        for (size_t i = 0; i < d->nservices; i++) {
            const struct snow_service *s = &d->services[i];
            defs = realloc(defs, (ndefs + 1) * sizeof *defs);
            struct service_def *def = &defs[ndefs++];
            *def = (struct service_def){
                .desc = s,
                .label = worker_label("service", s->name),
                .max_restarts = s->max_restarts ? s->max_restarts
                                                : DEFAULT_MAX_RESTARTS,
                .window_ms = s->restart_window_ms ? s->restart_window_ms
                                                  : DEFAULT_WINDOW_MS,
            };
            def->restarts = calloc(def->max_restarts + 1,
                                   sizeof *def->restarts);
        }
    }
}

size_t service_names(char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < ndefs; i++) {
        size_t len = strlen(defs[i].desc->name) + 1;
        if (n + len > cap)
            break;
        memcpy(out + n, defs[i].desc->name, len);
        n += len;
    }
    return n;
}

static struct service_def *find(const char *name, size_t len)
{
    for (size_t i = 0; i < ndefs; i++)
        if (strlen(defs[i].desc->name) == len &&
            memcmp(defs[i].desc->name, name, len) == 0)
            return &defs[i];
    return NULL;
}

bool service_is_reserved(const char *name, size_t len)
{
    return find(name, len) != NULL;
}

void service_request_start(const char *name, size_t len)
{
    struct service_def *d = find(name, len);

    if (all_stopped)
        return;
    if (!d) {
        log_error("master placed unknown service '%.*s' here; ignored",
                  (int)len, name);
        return;
    }
    if (!d->live)
        d->start_due = true;
}

void *service_state(struct actor *a)
{
    struct service *s = service_of(a);
    return s->def->desc->state_size ? s->state : NULL;
}

const char *service_name(struct actor *a)
{
    return service_of(a)->def->desc->name;
}

static const char *policy_name(enum snow_restart r)
{
    return r == SNOW_PERMANENT ? "permanent"
         : r == SNOW_TRANSIENT ? "transient" : "temporary";
}

/* Records a restart; false when the intensity limit is passed. */
static bool within_intensity(struct service_def *d, uint64_t now)
{
    unsigned size = d->max_restarts + 1;

    d->restarts[d->ring_head] = now;
    d->ring_head = (d->ring_head + 1) % size;
    if (d->nrestarts < size)
        d->nrestarts++;
    if (d->nrestarts < size)
        return true;
    /* The ring is full: the oldest of the last max_restarts + 1 restarts
     * sits at ring_head.  All of them within the window is one too many. */
    return now - d->restarts[d->ring_head] > d->window_ms;
}

/* Ends a live instance: terminate, DOWNs, name released, restart decided.
 * `crash` is NULL for a normal stop. */
static void end(struct service *s, const char *crash)
{
    struct service_def *d = s->def;
    const struct snow_service *desc = d->desc;
    char reason[192];
    snow_pid pid = s->actor.pid;

    if (crash)
        snprintf(reason, sizeof reason, "crashed: %s", crash);
    else
        snprintf(reason, sizeof reason, "normal");
    if (desc->terminate) {
        worker_enter(&s->actor, d->label);
        desc->terminate(actor_handle(&s->actor), reason);
        worker_leave();
    }
    actor_exit(&s->actor, reason);
    d->live = NULL;
    s->dead_next = dead;
    dead = s;

    bool restart = desc->restart == SNOW_PERMANENT ||
                   (desc->restart == SNOW_TRANSIENT && crash);
    if (crash) {
        metrics_crash(METRICS_ACTOR_SERVICE);
        log_error("service '%s' (pid %llu) crashed: %s; %s (%s)", desc->name,
                  (unsigned long long)pid, crash,
                  restart ? "restarting" : "not restarted",
                  policy_name(desc->restart));
    } else {
        log_info("service '%s' stopped normally; %s (%s)", desc->name,
                 restart ? "restarting" : "not restarted",
                 policy_name(desc->restart));
    }
    if (!restart)
        return;
    if (!within_intensity(d, worker_now_ms())) {
        log_error("service '%s' ended %u times within %.1fs; escalating: "
                  "worker %u exits", desc->name, d->max_restarts + 1,
                  d->window_ms / 1000.0, worker.slot);
        _exit(3);
    }
    d->start_due = true;
    metrics_add(&metrics_self->c.service_restarts, 1);
}

/* Acts on what a callback returned and asked for. */
static void after_callback(struct service *s, int rc, const char *what)
{
    char why[160];

    if (s->actor.flags & ACTOR_EXITED)
        return;
    if (worker.outcome == OUTCOME_FAIL) {
        end(s, worker.fail_reason);
    } else if (rc < 0) {
        snprintf(why, sizeof why, "%s returned %d", what, rc);
        end(s, why);
    } else if (worker.outcome == OUTCOME_STOP) {
        end(s, NULL);
    }
}

static void start(struct service_def *d)
{
    const struct snow_service *desc = d->desc;
    struct service *s = calloc(1, sizeof *s + desc->state_size);

    d->start_due = false;
    if (!s || actor_start(&s->actor, ACTOR_SERVICE) != 0) {
        log_error("service '%s': out of memory; not started", desc->name);
        free(s);
        return;
    }
    s->def = d;
    d->live = s;
    int rc = channel_register(s->actor.pid, desc->name, strlen(desc->name));
    if (rc != 0) {
        log_error("service '%s': cannot register its name: %s", desc->name,
                  snow_strerror(rc));
        end(s, "name not registered");
        return;
    }
    actor_set_name(&s->actor, desc->name);
    names_put(&worker.names, desc->name, strlen(desc->name), s->actor.pid);
    log_info("service '%s' started (pid %llu, worker %u)", desc->name,
             (unsigned long long)s->actor.pid, worker.slot);
    if (desc->init) {
        worker_enter(&s->actor, d->label);
        rc = desc->init(actor_handle(&s->actor));
        worker_leave();
        after_callback(s, rc, "init");
    }
}

bool service_run_pending(void)
{
    bool more = false;

    while (dead) {
        struct service *s = dead;
        dead = s->dead_next;
        free(s);
    }
    for (size_t i = 0; i < ndefs; i++) {
        if (!defs[i].start_due || worker.stopping || all_stopped)
            continue;
        start(&defs[i]);
        more |= defs[i].start_due || dead;
    }
    return more || dead;
}

void service_deliver(struct actor *a, const struct snow_msg *msg)
{
    struct service *s = service_of(a);
    const struct snow_service *desc = s->def->desc;

    if (!desc->on_info)
        return;
    worker_enter(a, s->def->label);
    int rc = desc->on_info(actor_handle(a), msg);
    worker_leave();
    after_callback(s, rc, "on_info");
}

void service_stop_all(const char *reason)
{
    all_stopped = true;
    for (size_t i = 0; i < ndefs; i++) {
        struct service *s = defs[i].live;
        defs[i].start_due = false;
        if (!s)
            continue;
        if (s->def->desc->terminate) {
            worker_enter(&s->actor, s->def->label);
            s->def->desc->terminate(actor_handle(&s->actor), reason);
            worker_leave();
        }
        actor_exit(&s->actor, reason);
        defs[i].live = NULL;
        s->dead_next = dead;
        dead = s;
    }
    service_run_pending();
}

void service_fini(void)
{
    for (size_t i = 0; i < ndefs; i++)
        free(defs[i].restarts);
    free(defs);
    defs = NULL;
    ndefs = 0;
}
