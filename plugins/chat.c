/*
 * chat - chat rooms with unique nicknames, over a small JSON protocol.
 *
 * Every client message is one text frame holding one JSON object whose
 * values are all strings; every server message is one text frame holding
 * one JSON object with an "ev" member.  Client to server:
 *
 *   {"op":"nick","nick":"ann"}            take a nickname (once)
 *   {"op":"join","room":"lobby"}          join a room (needs a nickname)
 *   {"op":"leave","room":"lobby"}         leave it
 *   {"op":"say","room":"lobby","text":"hi"}   say something in a room
 *   {"op":"members","room":"lobby"}       ask how many are in a room
 *
 * Server to client:
 *
 *   {"ev":"welcome","nick_max":32,"room_max":32,"text_max":2048,
 *    "rooms_max":16}                       once, on connecting
 *   {"ev":"nick","nick":"ann"}             the nickname is yours
 *   {"ev":"joined","room":"lobby","members":2}   you are in (2 members,
 *                                          you included)
 *   {"ev":"left","room":"lobby","members":1}     you are out
 *   {"ev":"msg","room":"lobby","from":"ann","text":"hi"}
 *                                          to every member, the sender
 *                                          included, once each
 *   {"ev":"presence","room":"lobby","nick":"bob","joined":true,"members":2}
 *                                          to the other members, when
 *                                          someone joins or leaves (or
 *                                          disconnects: "joined":false)
 *   {"ev":"members","room":"lobby","members":2}  the answer to "members"
 *   {"ev":"error","op":"join","error":"set a nick first"}
 *                                          a request failed ("op" is
 *                                          absent when there was none);
 *                                          the connection stays usable
 *
 * Errors: "bad json" (and the parser's other reasons: "values must be
 * strings", "bad escape", "lone surrogate", "duplicate key", ...),
 * "message too long", "send text frames", "missing op", "unknown op",
 * "missing nick", "bad nick", "nick taken", "nick already set",
 * "set a nick first", "missing room", "bad room", "already in room",
 * "not in room", "too many rooms", "missing text", "empty text",
 * "text too long", and a snowd error text when the daemon refuses
 * (e.g. "mailbox, channel or output full").  Unknown members of a
 * request are ignored.
 *
 * Nicknames and room names are 1..32 bytes of ASCII letters, digits,
 * '-', '_' and '.'.  A text is 1..2048 bytes of UTF-8.  A client message
 * is at most 8192 bytes.
 *
 * How it maps onto snowd:
 *  - A nickname is a registered name, "chat.nick.NICK", so it is unique in
 *    the whole daemon whatever worker each client lands on, and it is
 *    freed by snowd when the connection ends: nothing to clean up, no
 *    service to ask.  snowd gives an actor one name for life, so a
 *    connection takes one nickname.
 *  - A room is the snowd room "chat.ROOM".  The plugin joins with the
 *    default delivery: room messages go straight to each member's socket
 *    without running plugin code.  "say" builds the JSON text once and
 *    publishes it once; snowd writes the same frame to every member on
 *    every worker.
 *  - Presence is published by the plugin itself on join, leave and close,
 *    as ordinary room messages: snowd's own presence messages
 *    (SNOW_JOIN_PRESENCE) carry a pid, and only the joiner knows its
 *    nickname.  Member counts come from snow_room_size(): exact for this
 *    worker, while other workers' members are counted as soon as this
 *    worker hears of them (microseconds later).
 *
 * All input is hostile: lengths are checked before anything is copied,
 * the JSON parser (chat_json.c) accepts only the flat subset above, and
 * every string sent back is escaped.
 *
 * Route it in snowd.ini:
 *   [route /chat]
 *   handler = chat
 */
#include <snowd/snowd.h>
#include <stdio.h>
#include <string.h>

#include "chat_json.h"

#define CHAT_NAME_MAX 32       /* nickname or room name, bytes */
#define CHAT_ROOMS_MAX 16      /* rooms one connection may be in */
#define CHAT_TEXT_MAX 2048     /* one "say" text, bytes of UTF-8 */
#define CHAT_INPUT_MAX 8192    /* one client message, bytes */
/* The largest server message: a text escaped at worst 6 bytes per byte
 * (\u00XX), a room and a nick, and the keys. */
#define CHAT_OUTPUT_MAX (6 * CHAT_TEXT_MAX + 12 * CHAT_NAME_MAX + 256)

#define NICK_PREFIX "chat.nick."
#define ROOM_PREFIX "chat."

struct chat_conn {
    char nick[CHAT_NAME_MAX + 1];                 /* "" until taken */
    size_t nrooms;
    char rooms[CHAT_ROOMS_MAX][CHAT_NAME_MAX + 1];
};

/* A request being served: the decoded object and where to answer. */
struct req {
    snow_actor *self;
    struct chat_conn *c;
    const struct chat_json_obj *obj;
    const char *op;
};

/* ---- answers ------------------------------------------------------------ */

/* Sends a finished object to this client.  A client that is closing, or
 * whose output is over max_backpressure on a `drop` route, misses it: that
 * is no reason to crash the connection. */
static int send_obj(snow_actor *self, struct chat_jw *w)
{
    long n = chat_jw_end(w);
    if (n < 0)   /* cannot happen: CHAT_OUTPUT_MAX bounds every answer */
        return snow_fail(self, "answer too large"), -1;
    int rc = snow_send(self, SNOW_TEXT, w->buf, (size_t)n);
    return rc == -SNOW_ECLOSED || rc == -SNOW_EFULL ? 0 : rc;
}

static int send_error(snow_actor *self, const char *op, const char *why)
{
    char buf[512];
    struct chat_jw w;

    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "ev", "error", 5);
    if (op)   /* one of the names in ops[], never the client's bytes */
        chat_jw_str(&w, "op", op, strlen(op));
    chat_jw_str(&w, "error", why, strlen(why));
    return send_obj(self, &w);
}

static int fail(const struct req *r, const char *why)
{
    return send_error(r->self, r->op, why);
}

/* ---- names -------------------------------------------------------------- */

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > CHAT_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return false;
    }
    return true;
}

/* The request's "room", checked; NULL after answering an error. */
static const char *want_room(const struct req *r)
{
    const struct chat_json_field *f = chat_json_get(r->obj, "room");

    if (!f) {
        fail(r, "missing room");
        return NULL;
    }
    if (!valid_name(f->val, f->val_len)) {
        fail(r, "bad room");
        return NULL;
    }
    return f->val;
}

static void room_key(char *key, size_t cap, const char *room)
{
    snprintf(key, cap, ROOM_PREFIX "%s", room);
}

static int member_index(const struct chat_conn *c, const char *room)
{
    for (size_t i = 0; i < c->nrooms; i++)
        if (strcmp(c->rooms[i], room) == 0)
            return (int)i;
    return -1;
}

/* Tells the room's members that this client came or went.  Published by
 * the plugin (not snowd's pid-only presence) so that it carries the
 * nickname.  A failed publish only costs the others a notice. */
static void publish_presence(snow_actor *self, const struct chat_conn *c,
                             const char *room, bool joined, int64_t members)
{
    char buf[512], key[sizeof ROOM_PREFIX + CHAT_NAME_MAX];
    struct chat_jw w;

    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "ev", "presence", 8);
    chat_jw_str(&w, "room", room, strlen(room));
    chat_jw_str(&w, "nick", c->nick, strlen(c->nick));
    chat_jw_bool(&w, "joined", joined);
    chat_jw_uint(&w, "members", members < 0 ? 0 : (uint64_t)members);
    long n = chat_jw_end(&w);
    room_key(key, sizeof key, room);
    if (n > 0)
        snow_publish(self, key, SNOW_TEXT, buf, (size_t)n,
                     SNOW_PUBLISH_EXCLUDE_SELF);
}

static int send_count(const struct req *r, const char *ev, const char *room,
                      int64_t members)
{
    char buf[256];
    struct chat_jw w;

    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "ev", ev, strlen(ev));
    chat_jw_str(&w, "room", room, strlen(room));
    chat_jw_uint(&w, "members", members < 0 ? 0 : (uint64_t)members);
    return send_obj(r->self, &w);
}

/* ---- operations --------------------------------------------------------- */

static int op_nick(const struct req *r)
{
    const struct chat_json_field *f = chat_json_get(r->obj, "nick");
    char name[sizeof NICK_PREFIX + CHAT_NAME_MAX];

    if (r->c->nick[0])
        return fail(r, "nick already set");
    if (!f)
        return fail(r, "missing nick");
    if (!valid_name(f->val, f->val_len))
        return fail(r, "bad nick");
    snprintf(name, sizeof name, NICK_PREFIX "%s", f->val);
    /* The registry makes the nickname unique in the whole daemon; snowd
     * frees it when this connection ends. */
    int rc = snow_register(r->self, name);
    if (rc == -SNOW_EEXIST)
        return fail(r, "nick taken");
    if (rc < 0)
        return fail(r, snow_strerror(rc));
    memcpy(r->c->nick, f->val, f->val_len + 1);

    char buf[128];
    struct chat_jw w;
    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "ev", "nick", 4);
    chat_jw_str(&w, "nick", r->c->nick, f->val_len);
    return send_obj(r->self, &w);
}

static int op_join(const struct req *r)
{
    char key[sizeof ROOM_PREFIX + CHAT_NAME_MAX];
    struct chat_conn *c = r->c;

    if (!c->nick[0])
        return fail(r, "set a nick first");
    const char *room = want_room(r);
    if (!room)
        return 0;
    if (member_index(c, room) >= 0)
        return fail(r, "already in room");
    if (c->nrooms == CHAT_ROOMS_MAX)
        return fail(r, "too many rooms");
    room_key(key, sizeof key, room);
    int rc = snow_join(r->self, key);
    if (rc < 0)
        return fail(r, snow_strerror(rc));
    strcpy(c->rooms[c->nrooms++], room);     /* checked: <= CHAT_NAME_MAX */

    int64_t members = snow_room_size(key);
    rc = send_count(r, "joined", room, members);
    publish_presence(r->self, c, room, true, members);
    return rc;
}

static int op_leave(const struct req *r)
{
    char key[sizeof ROOM_PREFIX + CHAT_NAME_MAX];
    char room[CHAT_NAME_MAX + 1];
    struct chat_conn *c = r->c;

    const char *want = want_room(r);
    if (!want)
        return 0;
    int i = member_index(c, want);
    if (i < 0)
        return fail(r, "not in room");
    strcpy(room, want);
    room_key(key, sizeof key, room);
    snow_leave(r->self, key);   /* -SNOW_ENOENT cannot be: we joined */
    c->rooms[i][0] = '\0';
    if ((size_t)i != --c->nrooms)            /* order is free */
        memcpy(c->rooms[i], c->rooms[c->nrooms], sizeof c->rooms[i]);

    int64_t members = snow_room_size(key);
    int rc = send_count(r, "left", room, members);
    publish_presence(r->self, c, room, false, members);
    return rc;
}

static int op_say(const struct req *r)
{
    static char buf[CHAT_OUTPUT_MAX];   /* one per worker; callbacks of a
                                           worker never run concurrently */
    char key[sizeof ROOM_PREFIX + CHAT_NAME_MAX];
    struct chat_jw w;

    const char *room = want_room(r);
    if (!room)
        return 0;
    if (member_index(r->c, room) < 0)
        return fail(r, "not in room");
    const struct chat_json_field *text = chat_json_get(r->obj, "text");
    if (!text)
        return fail(r, "missing text");
    if (text->val_len == 0)
        return fail(r, "empty text");
    if (text->val_len > CHAT_TEXT_MAX)
        return fail(r, "text too long");

    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "ev", "msg", 3);
    chat_jw_str(&w, "room", room, strlen(room));
    chat_jw_str(&w, "from", r->c->nick, strlen(r->c->nick));
    chat_jw_str(&w, "text", text->val, text->val_len);
    long n = chat_jw_end(&w);
    if (n < 0)
        return snow_fail(r->self, "message too large"), -1;   /* a bug */
    /* Built once, published once: snowd writes the same frame to every
     * member, this client included, on every worker. */
    room_key(key, sizeof key, room);
    int rc = snow_publish(r->self, key, SNOW_TEXT, buf, (size_t)n, 0);
    if (rc < 0)
        return fail(r, snow_strerror(rc));
    return 0;
}

static int op_members(const struct req *r)
{
    char key[sizeof ROOM_PREFIX + CHAT_NAME_MAX];

    const char *room = want_room(r);
    if (!room)
        return 0;
    room_key(key, sizeof key, room);
    return send_count(r, "members", room, snow_room_size(key));
}

static const struct {
    const char *name;
    int (*run)(const struct req *r);
} ops[] = {
    { "nick", op_nick },
    { "join", op_join },
    { "leave", op_leave },
    { "say", op_say },
    { "members", op_members },
};

/* ---- the connection ----------------------------------------------------- */

static int chat_open(snow_actor *self, const snow_request *req)
{
    char buf[160];
    struct chat_jw w;

    (void)req;
    /* Sends made in on_open follow the 101 answer. */
    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "ev", "welcome", 7);
    chat_jw_uint(&w, "nick_max", CHAT_NAME_MAX);
    chat_jw_uint(&w, "room_max", CHAT_NAME_MAX);
    chat_jw_uint(&w, "text_max", CHAT_TEXT_MAX);
    chat_jw_uint(&w, "rooms_max", CHAT_ROOMS_MAX);
    return send_obj(self, &w);
}

static int chat_message(snow_actor *self, enum snow_kind kind,
                        const void *data, size_t len)
{
    /* Decoded strings never outgrow their input, plus a NUL each. */
    static char decoded[CHAT_INPUT_MAX + 2 * CHAT_JSON_MAX_FIELDS];
    struct chat_json_obj obj;
    struct req r = { .self = self, .c = snow_state(self), .obj = &obj };

    if (kind != SNOW_TEXT)
        return send_error(self, NULL, "send text frames");
    if (len > CHAT_INPUT_MAX)
        return send_error(self, NULL, "message too long");
    enum chat_json_rc jrc = chat_json_parse(data, len, decoded,
                                            sizeof decoded, &obj);
    if (jrc != CHAT_JSON_OK)
        return send_error(self, NULL, chat_json_strerror(jrc));

    const struct chat_json_field *op = chat_json_get(&obj, "op");
    if (!op)
        return send_error(self, NULL, "missing op");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(op->val, ops[i].name) == 0) {
            r.op = ops[i].name;
            return ops[i].run(&r);
        }
    return send_error(self, NULL, "unknown op");
}

static void chat_close(snow_actor *self, int code, const char *reason,
                       size_t reason_len)
{
    struct chat_conn *c = snow_state(self);
    char key[sizeof ROOM_PREFIX + CHAT_NAME_MAX];

    (void)code, (void)reason, (void)reason_len;
    /* snowd would take this actor out of its rooms anyway once it ends;
     * leaving here first makes the counts in the notices right. */
    for (size_t i = 0; i < c->nrooms; i++) {
        room_key(key, sizeof key, c->rooms[i]);
        snow_leave(self, key);
        publish_presence(self, c, c->rooms[i], false, snow_room_size(key));
    }
    c->nrooms = 0;
}

static const struct snow_handler handlers[] = {
    { .name = "chat", .state_size = sizeof(struct chat_conn),
      .on_open = chat_open, .on_message = chat_message,
      .on_close = chat_close },
};

SNOW_PLUGIN(.name = "chat", .version = "1.0",
            .handlers = handlers, .nhandlers = 1);
