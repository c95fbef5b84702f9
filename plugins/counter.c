/*
 * counter - one number shared by every client of the daemon.
 *
 * The number lives in a service actor, "counter": exactly one runs in
 * the whole daemon, on one worker, so there is one count whatever worker
 * a client lands on, and no lock anywhere: the service handles one
 * message at a time.
 *
 * A client of the "counter" handler sends the text "incr" or "get".  Its
 * connection actor tells the service by name; the service tells the
 * connection back with the value; the connection sends it to its client
 * as text ("42").  The tell and the answer cross workers through the
 * master when the connection and the service live in different ones: the
 * code is the same either way.
 *
 * Route it in snowd.ini:
 *   [route /counter]
 *   handler = counter
 */
#include <snowd/snowd.h>
#include <stdio.h>
#include <string.h>

/* Message tags: what a message means, chosen by the plugin. */
enum {
    COUNTER_INCR = 1,    /* connection -> service: add one, answer */
    COUNTER_GET,         /* connection -> service: answer */
    COUNTER_VALUE        /* service -> connection: the count, as text */
};

/* ---- the service ---------------------------------------------------------- */

struct counter {
    uint64_t count;      /* zeroed at every start of the service */
};

static int counter_info(snow_actor *self, const struct snow_msg *msg)
{
    struct counter *c = snow_state(self);
    char text[24];

    if (msg->type != SNOW_MSG_TELL)
        return 0;
    if (msg->tag == COUNTER_INCR)
        c->count++;
    else if (msg->tag != COUNTER_GET)
        return 0;                       /* not ours: ignore it */
    /* Answer whoever asked.  A sender that has gone meanwhile is no
     * error for the counter, so the result is not checked. */
    int n = snprintf(text, sizeof text, "%llu", (unsigned long long)c->count);
    snow_tell(self, msg->from, COUNTER_VALUE, text, (size_t)n);
    return 0;
}

static const struct snow_service services[] = {
    { .name = "counter", .restart = SNOW_PERMANENT,
      .state_size = sizeof(struct counter), .on_info = counter_info },
};

/* ---- the connections ---------------------------------------------------------- */

static int client_message(snow_actor *self, enum snow_kind kind,
                          const void *data, size_t len)
{
    uint32_t tag;

    if (kind == SNOW_TEXT && len == 4 && memcmp(data, "incr", 4) == 0)
        tag = COUNTER_INCR;
    else if (kind == SNOW_TEXT && len == 3 && memcmp(data, "get", 3) == 0)
        tag = COUNTER_GET;
    else
        return snow_send(self, SNOW_TEXT, "error: send incr or get", 23);

    /* The answer comes later, as a message to on_info. */
    int rc = snow_tell_name(self, "counter", tag, NULL, 0);
    if (rc < 0) {
        /* The service is restarting, or its worker is: tell the client
         * rather than crash the connection. */
        char text[96];
        int n = snprintf(text, sizeof text, "error: %s", snow_strerror(rc));
        return snow_send(self, SNOW_TEXT, text, (size_t)n);
    }
    return 0;
}

static int client_info(snow_actor *self, const struct snow_msg *msg)
{
    if (msg->type == SNOW_MSG_TELL && msg->tag == COUNTER_VALUE)
        return snow_send(self, SNOW_TEXT, msg->data, msg->len);
    return 0;
}

static const struct snow_handler handlers[] = {
    { .name = "counter", .on_message = client_message,
      .on_info = client_info },
};

SNOW_PLUGIN(.name = "counter", .version = "1.0",
            .handlers = handlers, .nhandlers = 1,
            .services = services, .nservices = 1);
