/*
 * ticker - a service that sends "tick N" to every subscriber once a
 * second, and a handler whose connections subscribe to it.
 *
 * The "ticker" service starts a repeating timer in init.  Each connection
 * of the "ticker" handler tells the service TICKER_SUBSCRIBE from
 * on_open; the service keeps the sender's pid and monitors it, so that a
 * connection that ends (wherever it lives) is dropped when its DOWN
 * message arrives, with no unsubscribe call to forget.  At every tick the
 * service tells each subscriber "tick N", and the connection sends that
 * text to its client.
 *
 * The subscriber list is bounded: past TICKER_MAX_SUBSCRIBERS a new
 * subscriber is refused (closed with 1013, "try again later") rather
 * than grown without limit.  The connections monitor the service in
 * turn: if it crashes, its subscribers are gone with its state, so they
 * close with 1012 ("service restart") and their clients reconnect.
 *
 * Route it in snowd.ini:
 *   [route /ticker]
 *   handler = ticker
 */
#include <snowd/snowd.h>
#include <stdio.h>

#define TICKER_MAX_SUBSCRIBERS 4096
#define TICKER_PERIOD_MS 1000

enum {
    TICKER_SUBSCRIBE = 1,  /* connection -> service */
    TICKER_TICK,           /* service -> connection: "tick N"; the timer's
                              tag too */
    TICKER_FULL            /* service -> connection: refused */
};

/* ---- the service ---------------------------------------------------------- */

struct ticker {
    uint64_t ticks;
    size_t n;
    snow_pid subscribers[TICKER_MAX_SUBSCRIBERS];
};

static int ticker_init(snow_actor *self)
{
    int64_t id = snow_timer(self, TICKER_PERIOD_MS, TICKER_PERIOD_MS,
                            TICKER_TICK);
    return id < 0 ? -1 : 0;    /* no timer: crash, and be restarted */
}

static void subscribe(snow_actor *self, struct ticker *t, snow_pid pid)
{
    if (t->n == TICKER_MAX_SUBSCRIBERS) {
        snow_tell(self, pid, TICKER_FULL, NULL, 0);
        return;
    }
    /* The DOWN message will say when to forget this pid. */
    if (snow_monitor(self, pid) == 0)
        t->subscribers[t->n++] = pid;
}

static void unsubscribe(struct ticker *t, snow_pid pid)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->subscribers[i] == pid) {
            t->subscribers[i] = t->subscribers[--t->n];   /* order is free */
            return;
        }
}

static void tick(snow_actor *self, struct ticker *t)
{
    char text[32];
    int n = snprintf(text, sizeof text, "tick %llu",
                     (unsigned long long)++t->ticks);

    /* A subscriber whose mailbox is full misses this tick; one that has
     * ended is removed when its DOWN arrives.  Neither stops the others. */
    for (size_t i = 0; i < t->n; i++)
        snow_tell(self, t->subscribers[i], TICKER_TICK, text, (size_t)n);
}

static int ticker_info(snow_actor *self, const struct snow_msg *msg)
{
    struct ticker *t = snow_state(self);

    switch (msg->type) {
    case SNOW_MSG_TELL:
        if (msg->tag == TICKER_SUBSCRIBE)
            subscribe(self, t, msg->from);
        break;
    case SNOW_MSG_TIMER:
        tick(self, t);
        break;
    case SNOW_MSG_DOWN:
        unsubscribe(t, msg->from);
        break;
    default:
        break;
    }
    return 0;
}

static const struct snow_service services[] = {
    { .name = "ticker", .restart = SNOW_PERMANENT,
      .state_size = sizeof(struct ticker), .init = ticker_init,
      .on_info = ticker_info },
};

/* ---- the connections ---------------------------------------------------------- */

static int client_open(snow_actor *self, const snow_request *req)
{
    snow_pid ticker = snow_whereis("ticker");

    (void)req;
    /* No ticker right now (it is starting or restarting): 503 tells the
     * client to come back. */
    if (!ticker || snow_tell(self, ticker, TICKER_SUBSCRIBE, NULL, 0) < 0)
        return 503;
    return snow_monitor(self, ticker);
}

static int client_info(snow_actor *self, const struct snow_msg *msg)
{
    if (msg->type == SNOW_MSG_DOWN)            /* the ticker ended */
        snow_close(self, 1012, "ticker restarted");
    else if (msg->tag == TICKER_FULL)
        snow_close(self, 1013, "too many subscribers");
    else if (msg->tag == TICKER_TICK)
        return snow_send(self, SNOW_TEXT, msg->data, msg->len);
    return 0;
}

static const struct snow_handler handlers[] = {
    { .name = "ticker", .on_open = client_open, .on_info = client_info },
};

SNOW_PLUGIN(.name = "ticker", .version = "1.0",
            .handlers = handlers, .nhandlers = 1,
            .services = services, .nservices = 1);
