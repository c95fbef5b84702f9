/*
 * roombench.c - a snowd bench plugin: broadcast through a room, for
 * bench/bcast.sh (the server side of bench/bcastgen.c).
 *
 * Handler "roombench".  Route a path to it:
 *
 *     [route /bcast]
 *     handler = roombench
 *
 * The bcast.sh protocol, the same as peers/lws_bcast.c and
 * peers/ws_bcast.js:
 *   - on open, the connection joins the room "bcast" with snow_join():
 *     default delivery, i.e. room messages are written to the socket by
 *     snowd without running plugin code;
 *   - a binary message is published to the room with
 *     SNOW_PUBLISH_EXCLUDE_SELF: every other member gets it unchanged;
 *   - text "count" is answered with snow_room_size("bcast");
 *   - text "stats" is answered with this worker's publish counters as
 *     JSON text ({"server":"snowd","worker":W,"published":N,"efull":N,
 *     "failed":N,"last_error":"..."}).
 * A failed snow_publish is not retried: it is counted, logged (the first
 * few times), and shows up in bcastgen as lost messages.
 *
 * Build (from the repository root):
 *     cc -shared -fPIC -O2 -Wall -Wextra -Iinclude bench/roombench.c \
 *        -o bench/build/plugins/roombench.so
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "snowd/snowd.h"

#define ROOM "bcast"
#define LOG_FAILURES 10

/* per worker process: each worker loads its own copy of the plugin */
static uint64_t published, efull, failed;
static int last_error;

static int bcast_open(snow_actor *self, const snow_request *req)
{
    (void)req;
    int rc = snow_join(self, ROOM);
    if (rc != 0) {
        snow_log(self, "snow_join(%s) failed: %s", ROOM, snow_strerror(rc));
        return 500;
    }
    return 0;
}

static int bcast_message(snow_actor *self, enum snow_kind kind,
                         const void *data, size_t len)
{
    if (kind == SNOW_BINARY) {
        int rc = snow_publish(self, ROOM, kind, data, len,
                              SNOW_PUBLISH_EXCLUDE_SELF);
        if (rc == 0) {
            published++;
            return 0;
        }
        if (rc == -SNOW_EFULL)
            efull++;
        else
            failed++;
        last_error = rc;
        if (efull + failed <= LOG_FAILURES)
            snow_log(self, "snow_publish failed: %s (efull %" PRIu64
                     ", other %" PRIu64 ")", snow_strerror(rc), efull, failed);
        return 0;
    }

    char buf[256];
    int n;
    if (len == 5 && memcmp(data, "count", 5) == 0) {
        n = snprintf(buf, sizeof buf, "%" PRId64, snow_room_size(ROOM));
    } else if (len == 5 && memcmp(data, "stats", 5) == 0) {
        n = snprintf(buf, sizeof buf,
                     "{\"server\":\"snowd\",\"worker\":%u,\"published\":%" PRIu64
                     ",\"efull\":%" PRIu64 ",\"failed\":%" PRIu64
                     ",\"last_error\":\"%s\"}",
                     snow_pid_worker(snow_self(self)), published, efull, failed,
                     last_error ? snow_strerror(last_error) : "");
    } else {
        return 0;
    }
    if (n < 0)
        return 0;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    snow_send(self, SNOW_TEXT, buf, (size_t)n);
    return 0;
}

static const struct snow_handler handlers[] = {
    { .name = "roombench", .on_open = bcast_open,
      .on_message = bcast_message },
};

SNOW_PLUGIN(.name = "roombench", .version = "1.0",
            .handlers = handlers, .nhandlers = 1);
