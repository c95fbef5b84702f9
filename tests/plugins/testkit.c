/*
 * testkit - handlers that misbehave on command, for the integration
 * tests only (never installed, never routed in the shipped config).
 *
 * "testkit" handler, text commands:
 *   fail        on_message returns -1 (the connection closes with 1011)
 *   close CODE [REASON]  snow_close with that code
 *   state       replies with the per-connection message counter
 *   subprotocol replies with the negotiated subprotocol or "-"
 *   path        replies with the request path seen in on_open
 *   sendbad     tries to send invalid UTF-8 as text; replies with the error
 *   big N       replies with a binary message of N bytes
 *   anything else is echoed (binary messages too)
 * "twice" handler: echoes every message twice and returns the second
 * send's result; its on_close logs "NESTED on_close" if it ever runs
 * inside on_message (it must not).
 * "closeopen" handler: on_open starts the close handshake with 4001
 * "bye" and accepts.
 * "reject" handler: on_open refuses with 401 when the request has no
 * "X-Token: yes" header, and fails (answered 500) with "X-Token: crash".
 */
#include <snowd/snowd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct state {
    unsigned messages;
    char path[128];
};

static int kit_open(snow_actor *self, const snow_request *req)
{
    struct state *st = snow_state(self);
    size_t len;
    const char *path = snow_request_path(req, &len);

    snprintf(st->path, sizeof st->path, "%.*s", (int)len, path);
    return 0;
}

static int starts(const char *data, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(data, word, n) == 0;
}

static int kit_message(snow_actor *self, enum snow_kind kind,
                       const void *data, size_t len)
{
    struct state *st = snow_state(self);
    const char *s = data;
    char reply[256];

    st->messages++;
    if (kind != SNOW_TEXT)
        return snow_send(self, kind, data, len);
    if (starts(s, len, "fail"))
        return -1;
    if (starts(s, len, "close ")) {
        char buf[200];
        snprintf(buf, sizeof buf, "%.*s", (int)(len - 6), s + 6);
        char *reason = strchr(buf, ' ');
        if (reason)
            *reason++ = '\0';
        int rc = snow_close(self, atoi(buf), reason);
        if (rc < 0) {
            snprintf(reply, sizeof reply, "error %s", snow_strerror(rc));
            return snow_send(self, SNOW_TEXT, reply, strlen(reply));
        }
        return 0;
    }
    if (starts(s, len, "state")) {
        snprintf(reply, sizeof reply, "%u", st->messages);
        return snow_send(self, SNOW_TEXT, reply, strlen(reply));
    }
    if (starts(s, len, "subprotocol")) {
        const char *p = snow_subprotocol(self);
        return snow_send(self, SNOW_TEXT, p ? p : "-", p ? strlen(p) : 1);
    }
    if (starts(s, len, "path"))
        return snow_send(self, SNOW_TEXT, st->path, strlen(st->path));
    if (starts(s, len, "sendbad")) {
        int rc = snow_send(self, SNOW_TEXT, "\xc0\xaf", 2);
        snprintf(reply, sizeof reply, "%d", rc);
        return snow_send(self, SNOW_TEXT, reply, strlen(reply));
    }
    if (starts(s, len, "big ")) {
        char num[24];
        snprintf(num, sizeof num, "%.*s", (int)(len - 4), s + 4);
        size_t n = strtoul(num, NULL, 10);
        char *buf = calloc(1, n ? n : 1);
        int rc = snow_send(self, SNOW_BINARY, buf, n);
        free(buf);
        return rc;
    }
    return snow_send(self, kind, data, len);
}

static int in_message;

static int twice_message(snow_actor *self, enum snow_kind kind,
                         const void *data, size_t len)
{
    in_message = 1;
    int rc = snow_send(self, kind, data, len);
    if (rc == 0)
        rc = snow_send(self, kind, data, len);
    in_message = 0;
    return rc;
}

static void twice_close(snow_actor *self, int code, const char *reason,
                        size_t reason_len)
{
    (void)reason;
    (void)reason_len;
    if (in_message)
        snow_log(self, "NESTED on_close (code %d) inside on_message", code);
}

static int closeopen_open(snow_actor *self, const snow_request *req)
{
    (void)req;
    return snow_close(self, 4001, "bye");
}

static int reject_open(snow_actor *self, const snow_request *req)
{
    size_t len;
    const char *token = snow_request_header(req, "X-Token", &len);

    (void)self;
    if (token && len == 5 && memcmp(token, "crash", 5) == 0)
        return -1;
    if (!token || len != 3 || memcmp(token, "yes", 3) != 0)
        return 401;
    return 0;
}

static const struct snow_handler handlers[] = {
    { .name = "testkit", .state_size = sizeof(struct state),
      .on_open = kit_open, .on_message = kit_message },
    { .name = "reject", .on_open = reject_open, .on_message = kit_message,
      .state_size = sizeof(struct state) },
    { .name = "twice", .on_message = twice_message, .on_close = twice_close },
    { .name = "closeopen", .on_open = closeopen_open,
      .on_message = kit_message, .state_size = sizeof(struct state) },
};

SNOW_PLUGIN(.name = "testkit", .version = "1.0",
            .handlers = handlers,
            .nhandlers = sizeof handlers / sizeof handlers[0]);
