/*
 * service.h - the service supervisor of a worker.
 *
 * Every worker loads the same plugins, so every worker knows every
 * service; the master places each one on a single worker
 * (IPC_SERVICE_START), and that worker runs it: registers its name,
 * calls init, delivers its messages, and restarts it by policy when it
 * crashes, up to its intensity limit, past which the failure escalates to
 * the worker (it exits, and the master restarts it).
 *
 * Instances are started, restarted and freed only at the loop's safe
 * point (service_run_pending), never inside a callback.
 */
#ifndef SNOWD_SERVICE_H
#define SNOWD_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "snowd/snowd.h"

struct actor;
struct plugin_set;

/* Collects the services of the loaded plugins. */
void service_init(const struct plugin_set *plugins);

/* The names of all services, NUL-separated, for the READY frame. */
size_t service_names(char *out, size_t cap);

/* True when `name` belongs to a service: other actors may not take it. */
bool service_is_reserved(const char *name, size_t len);

/* The master placed this service here: start it at the next safe point. */
void service_request_start(const char *name, size_t len);

/* The safe point: frees ended instances, then starts what is due.
 * Returns true when work remains for the next turn. */
bool service_run_pending(void);

/* The actor runtime's delivery for service actors. */
void service_deliver(struct actor *a, const struct snow_msg *msg);

/* snow_state and snow_log for a service actor. */
void *service_state(struct actor *a);
const char *service_name(struct actor *a);

/* Ends every instance with `reason` (terminate runs) and frees them;
 * none starts again.  Their names stay reserved until service_fini. */
void service_stop_all(const char *reason);

/* Forgets the services' definitions (at exit). */
void service_fini(void);

#endif
