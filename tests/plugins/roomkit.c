/*
 * roomkit - rooms on command, for the integration tests only (never
 * installed, never routed in the shipped config).
 *
 * "roomkit" handler.  Every message (text or binary: a binary frame can
 * carry room names that are not UTF-8) is one command, answered with
 * exactly one text reply, except those marked "(no reply)".  Replies
 * never start with "info "; what the connection's on_info receives is
 * forwarded to the client as a line that does:
 *   info room room=ROOM from=PID kind=K len=N data=TEXT
 *                         a room message (members that joined with
 *                         SNOW_JOIN_INFO), unless "quiet 1"
 *   info join room=ROOM from=PID        presence (SNOW_JOIN_PRESENCE)
 *   info leave room=ROOM from=PID
 *   info answer from=PID data=REPLY     the reply to an "ask"
 *   info tell from=PID tag=T data=TEXT  any other tell
 *   info type=N                         anything else
 * TEXT is the first 200 bytes, bytes outside 0x20..0x7e shown as '?'.
 * Errors are answered "err ENAME" (EINVAL, EEXIST, ENOENT, EFULL, ...).
 *
 * Room names are taken raw: for the commands that take only a room, the
 * room is everything after the first space (so "join" and "join " both
 * name the empty room); for the others, the room runs up to the next
 * single space (so "pub  x" publishes "x" to the empty room).
 *
 *   ping                  -> pong
 *   whoami                -> me slot=S ospid=P pid=PID
 *   join ROOM             -> ok | err E   snow_join (messages to the socket)
 *   joininfo ROOM         -> ok | err E   SNOW_JOIN_INFO
 *   joinpresence ROOM     -> ok | err E   SNOW_JOIN_PRESENCE
 *   joinall ROOM          -> ok | err E   SNOW_JOIN_INFO | SNOW_JOIN_PRESENCE
 *   joinf FLAGS ROOM      -> ok | err E   snow_join_flags(FLAGS, decimal)
 *   joinmany N PREFIX     -> joinmany ok=A err=E at=I
 *                            joins PREFIX0 .. PREFIX<N-1>, stopping at
 *                            the first error (E, at index I; "-" and N
 *                            when there was none)
 *   leave ROOM            -> ok | err E
 *   size ROOM             -> size N | err E        snow_room_size
 *   pub ROOM TEXT         -> ok | err E   text to every member
 *   pubx ROOM TEXT        -> ok | err E   ... but not to self
 *   pubb ROOM DATA        -> ok | err E   DATA as a binary message
 *   pubk KIND FLAGS ROOM DATA -> ok | err E   any kind and flags
 *   pubn ROOM N SIZE      -> pubn ok=A efull=B other=C err=E next=S
 *       N text messages "SEQ TAG SEQNO " padded with 'x' to SIZE bytes
 *       (the head alone if SIZE is shorter), in one callback.  TAG is
 *       "tag"'s word (default: this actor's pid); SEQNO counts this
 *       connection's accepted pubn messages (S: the next one), so that
 *       members see 0, 1, 2, ... from each publisher without gaps.
 *   tag WORD              -> ok
 *   send N SIZE           -> send ok=A efull=B closed=C other=D err=E
 *       N snow_send of SIZE bytes of text; also logged as
 *       "send ok=A ..." since the reply itself may not get through.
 *   quiet 0|1             -> ok    1: room messages are counted only
 *   stats                 -> stats room=N bytes=B joins=J leaves=L
 *                                  ooo=O gaps=G tells=T
 *       (N, B: room messages received through on_info; O and G: "SEQ"
 *       messages that came after a later one of the same tag, or after
 *       a missing one)
 *   ask PID CMD...        -> ok | err E
 *       tells actor PID (a roomkit connection) to run CMD as if its
 *       client had sent it; its reply comes back as "info answer".
 *       This reaches a connection whose client does not read (snowd
 *       does not read its input either then).
 *   close CODE            snow_close: no reply (closing) | err E
 *   crash                 (no reply) the callback returns -1: 1011
 *   fail                  (no reply) snow_fail: 1011
 *   stop                  (no reply) snow_stop: 1000
 *   segv                  (no reply) writes through a NULL pointer
 *   anything else         -> err unknown
 */
#include <snowd/snowd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TAG_CMD 0xc0de
#define TAG_ANSWER 0xa115
#define TEXT_MAX 200
#define SEQ_TAGS 32

struct seq_track {
    char tag[80];
    uint64_t next;
};

struct conn_state {
    int quiet;
    snow_pid reply_to;          /* set while running an asked command */
    uint64_t pub_seq;
    char tag[32];
    uint64_t room_msgs, room_bytes, joins, leaves, tells;
    uint64_t ooo, gaps;
    struct seq_track seqs[SEQ_TAGS];
    unsigned nseqs;
};

/* ---- helpers ------------------------------------------------------------ */

static const char *errname(int rc)
{
    switch (rc < 0 ? -rc : rc) {
    case SNOW_EINVAL: return "EINVAL";
    case SNOW_ECLOSED: return "ECLOSED";
    case SNOW_ETOOBIG: return "ETOOBIG";
    case SNOW_ENOMEM: return "ENOMEM";
    case SNOW_EUTF8: return "EUTF8";
    case SNOW_ENOENT: return "ENOENT";
    case SNOW_EEXIST: return "EEXIST";
    case SNOW_EFULL: return "EFULL";
    case SNOW_ENOTCONN: return "ENOTCONN";
    default: return "EUNKNOWN";
    }
}

/* One reply line: to the client, or, while running a command asked by
 * another actor, back to that actor.  A failed send is not a crash. */
static int reply(snow_actor *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int reply(snow_actor *self, const char *fmt, ...)
{
    struct conn_state *st = snow_state(self);
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return 0;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    if (st->reply_to)
        snow_tell(self, st->reply_to, TAG_ANSWER, line, (size_t)n);
    else
        snow_send(self, SNOW_TEXT, line, (size_t)n);
    return 0;
}

static int reply_rc(snow_actor *self, int rc)
{
    return rc == 0 ? reply(self, "ok") : reply(self, "err %s", errname(rc));
}

static void printable(char *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t n = len < TEXT_MAX ? len : TEXT_MAX;

    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[n] = '\0';
}

/* Splits *rest at its first single space: returns the part before it
 * (all of *rest when there is none) and leaves *rest after it (NULL
 * when there was no space).  Empty parts stay empty. */
static char *field(char **rest)
{
    char *s = *rest;

    if (!s)
        return NULL;
    char *sp = strchr(s, ' ');
    if (sp) {
        *sp = '\0';
        *rest = sp + 1;
    } else {
        *rest = NULL;
    }
    return s;
}

__attribute__((no_sanitize("address", "undefined")))
static void do_segv(void)
{
    volatile int *volatile p = NULL;
    *p = 1;
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_join(snow_actor *self, const char *room, unsigned flags)
{
    return reply_rc(self, flags ? snow_join_flags(self, room, flags)
                                : snow_join(self, room));
}

static int cmd_joinmany(snow_actor *self, char *rest)
{
    char *n_s = field(&rest);
    const char *prefix = rest ? rest : "";
    unsigned long n = n_s ? strtoul(n_s, NULL, 10) : 0;
    unsigned long ok = 0;
    int err = 0;
    char room[SNOW_ROOM_MAX + 32];

    for (unsigned long i = 0; i < n; i++) {
        snprintf(room, sizeof room, "%s%lu", prefix, i);
        int rc = snow_join(self, room);
        if (rc < 0) {
            err = rc;
            break;
        }
        ok++;
    }
    return reply(self, "joinmany ok=%lu err=%s at=%lu", ok,
                 err ? errname(err) : "-", ok);
}

static int cmd_pub(snow_actor *self, char *rest, enum snow_kind kind,
                   unsigned flags)
{
    char *room = field(&rest);
    const char *data = rest ? rest : "";

    if (!room)
        room = "";
    return reply_rc(self, snow_publish(self, room, kind, data, strlen(data),
                                       flags));
}

static int cmd_pubk(snow_actor *self, char *rest)
{
    char *kind = field(&rest), *flags = field(&rest), *room = field(&rest);
    const char *data = rest ? rest : "";

    if (!kind || !flags || !room)
        return reply(self, "err EINVAL");
    return reply_rc(self, snow_publish(self, room,
                                       (enum snow_kind)atoi(kind), data,
                                       strlen(data),
                                       (unsigned)strtoul(flags, NULL, 10)));
}

static int cmd_pubn(snow_actor *self, char *rest)
{
    struct conn_state *st = snow_state(self);
    char *room = field(&rest), *n_s = field(&rest), *size_s = field(&rest);
    unsigned long n = n_s ? strtoul(n_s, NULL, 10) : 0;
    size_t size = size_s ? strtoul(size_s, NULL, 10) : 0;
    unsigned long ok = 0, efull = 0, other = 0;
    int first_err = 0;
    char head[96];

    if (!room || size > 4u << 20)
        return reply(self, "err EINVAL");
    char *buf = malloc(size + sizeof head);
    if (!buf)
        return reply(self, "err ENOMEM");
    for (unsigned long i = 0; i < n; i++) {
        int h = snprintf(head, sizeof head, "SEQ %s %llu ", st->tag,
                         (unsigned long long)st->pub_seq);
        size_t len = size > (size_t)h ? size : (size_t)h;
        memcpy(buf, head, (size_t)h);
        memset(buf + h, 'x', len - (size_t)h);
        int rc = snow_publish(self, room, SNOW_TEXT, buf, len, 0);
        if (rc == 0) {
            ok++;
            st->pub_seq++;
        } else if (rc == -SNOW_EFULL) {
            efull++;
        } else {
            other++;
            if (!first_err)
                first_err = rc;
        }
    }
    free(buf);
    return reply(self, "pubn ok=%lu efull=%lu other=%lu err=%s next=%llu",
                 ok, efull, other, first_err ? errname(first_err) : "-",
                 (unsigned long long)st->pub_seq);
}

static int cmd_send(snow_actor *self, char *rest)
{
    char *n_s = field(&rest), *size_s = field(&rest);
    unsigned long n = n_s ? strtoul(n_s, NULL, 10) : 0;
    size_t size = size_s ? strtoul(size_s, NULL, 10) : 0;
    unsigned long ok = 0, efull = 0, closed = 0, other = 0;
    int first_err = 0;

    if (size > 4u << 20)
        return reply(self, "err EINVAL");
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return reply(self, "err ENOMEM");
    memset(buf, 's', size);
    for (unsigned long i = 0; i < n; i++) {
        int rc = snow_send(self, SNOW_TEXT, buf, size);
        if (rc == 0) {
            ok++;
            continue;
        }
        if (rc == -SNOW_EFULL)
            efull++;
        else if (rc == -SNOW_ECLOSED)
            closed++;
        else
            other++;
        if (!first_err)
            first_err = rc;
    }
    free(buf);
    snow_log(self, "send ok=%lu efull=%lu closed=%lu other=%lu err=%s", ok,
             efull, closed, other, first_err ? errname(first_err) : "-");
    return reply(self, "send ok=%lu efull=%lu closed=%lu other=%lu err=%s",
                 ok, efull, closed, other,
                 first_err ? errname(first_err) : "-");
}

static int cmd_ask(snow_actor *self, char *rest)
{
    char *pid_s = field(&rest);
    const char *text = rest ? rest : "";

    if (!pid_s || !*pid_s)
        return reply(self, "err EINVAL");
    snow_pid to = strtoull(pid_s, NULL, 10);
    return reply_rc(self, snow_tell(self, to, TAG_CMD, text, strlen(text)));
}

/* Runs one command line (NUL-terminated, may hold any other byte).
 * Returns what the callback returns. */
static int run_command(snow_actor *self, char *line)
{
    struct conn_state *st = snow_state(self);
    char *rest = line;
    char *cmd = field(&rest);
    /* The commands that take only a room: all the rest, raw. */
    const char *room = rest ? rest : "";

    if (strcmp(cmd, "ping") == 0)
        return reply(self, "pong");
    if (strcmp(cmd, "whoami") == 0) {
        snow_pid me = snow_self(self);
        return reply(self, "me slot=%u ospid=%d pid=%llu",
                     snow_pid_worker(me), (int)getpid(),
                     (unsigned long long)me);
    }
    if (strcmp(cmd, "join") == 0)
        return cmd_join(self, room, 0);
    if (strcmp(cmd, "joininfo") == 0)
        return cmd_join(self, room, SNOW_JOIN_INFO);
    if (strcmp(cmd, "joinpresence") == 0)
        return cmd_join(self, room, SNOW_JOIN_PRESENCE);
    if (strcmp(cmd, "joinall") == 0)
        return cmd_join(self, room, SNOW_JOIN_INFO | SNOW_JOIN_PRESENCE);
    if (strcmp(cmd, "joinf") == 0) {
        char *flags = field(&rest);
        if (!flags)
            return reply(self, "err EINVAL");
        return reply_rc(self, snow_join_flags(self, rest ? rest : "",
                                              (unsigned)strtoul(flags, NULL,
                                                                10)));
    }
    if (strcmp(cmd, "joinmany") == 0)
        return cmd_joinmany(self, rest);
    if (strcmp(cmd, "leave") == 0)
        return reply_rc(self, snow_leave(self, room));
    if (strcmp(cmd, "size") == 0) {
        int64_t n = snow_room_size(room);
        if (n < 0)
            return reply(self, "err %s", errname((int)n));
        return reply(self, "size %lld", (long long)n);
    }
    if (strcmp(cmd, "pub") == 0)
        return cmd_pub(self, rest, SNOW_TEXT, 0);
    if (strcmp(cmd, "pubx") == 0)
        return cmd_pub(self, rest, SNOW_TEXT, SNOW_PUBLISH_EXCLUDE_SELF);
    if (strcmp(cmd, "pubb") == 0)
        return cmd_pub(self, rest, SNOW_BINARY, 0);
    if (strcmp(cmd, "pubk") == 0)
        return cmd_pubk(self, rest);
    if (strcmp(cmd, "pubn") == 0)
        return cmd_pubn(self, rest);
    if (strcmp(cmd, "tag") == 0) {
        snprintf(st->tag, sizeof st->tag, "%s", room);
        return reply(self, "ok");
    }
    if (strcmp(cmd, "send") == 0)
        return cmd_send(self, rest);
    if (strcmp(cmd, "quiet") == 0) {
        st->quiet = atoi(room) != 0;
        return reply(self, "ok");
    }
    if (strcmp(cmd, "stats") == 0)
        return reply(self, "stats room=%llu bytes=%llu joins=%llu "
                     "leaves=%llu ooo=%llu gaps=%llu tells=%llu",
                     (unsigned long long)st->room_msgs,
                     (unsigned long long)st->room_bytes,
                     (unsigned long long)st->joins,
                     (unsigned long long)st->leaves,
                     (unsigned long long)st->ooo,
                     (unsigned long long)st->gaps,
                     (unsigned long long)st->tells);
    if (strcmp(cmd, "ask") == 0)
        return cmd_ask(self, rest);
    if (strcmp(cmd, "close") == 0)
        return reply_rc(self, snow_close(self, atoi(room), NULL));
    if (strcmp(cmd, "crash") == 0)
        return -1;
    if (strcmp(cmd, "fail") == 0)
        return snow_fail(self, "fail command");
    if (strcmp(cmd, "stop") == 0)
        return snow_stop(self);
    if (strcmp(cmd, "segv") == 0)
        do_segv();
    return reply(self, "err unknown");
}

/* Runs `len` bytes of data as a command. */
static int run_bytes(snow_actor *self, const void *data, size_t len)
{
    char *line = malloc(len + 1);

    if (!line)
        return reply(self, "err ENOMEM");
    memcpy(line, data, len);
    line[len] = '\0';
    int rc = run_command(self, line);
    free(line);
    return rc;
}

static int kit_open(snow_actor *self, const snow_request *req)
{
    struct conn_state *st = snow_state(self);

    (void)req;
    snprintf(st->tag, sizeof st->tag, "%llu",
             (unsigned long long)snow_self(self));
    return 0;
}

static int kit_message(snow_actor *self, enum snow_kind kind,
                       const void *data, size_t len)
{
    (void)kind;
    return run_bytes(self, data, len);
}

/* "SEQ TAG N ..." room messages: per-tag order check. */
static void check_seq(struct conn_state *st, const void *data, size_t len)
{
    char head[80];
    size_t n = len < sizeof head - 1 ? len : sizeof head - 1;

    if (n < 4 || memcmp(data, "SEQ ", 4) != 0)
        return;
    memcpy(head, data, n);
    head[n] = '\0';
    char *tag = head + 4;
    char *sp = strchr(tag, ' ');
    if (!sp)
        return;
    *sp = '\0';
    uint64_t seq = strtoull(sp + 1, NULL, 10);
    struct seq_track *t = NULL;
    for (unsigned i = 0; i < st->nseqs; i++)
        if (strcmp(st->seqs[i].tag, tag) == 0)
            t = &st->seqs[i];
    if (!t) {
        if (st->nseqs == SEQ_TAGS)
            return;
        t = &st->seqs[st->nseqs++];
        snprintf(t->tag, sizeof t->tag, "%s", tag);
        t->next = 0;
    }
    if (seq < t->next)
        st->ooo++;
    else if (seq > t->next)
        st->gaps++;
    t->next = seq + 1;
}

static int kit_info(snow_actor *self, const struct snow_msg *msg)
{
    struct conn_state *st = snow_state(self);
    char text[TEXT_MAX + 1];
    const char *room = msg->room ? msg->room : "(null)";

    switch (msg->type) {
    case SNOW_MSG_TELL:
        if (msg->tag == TAG_CMD) {
            st->reply_to = msg->from;
            int rc = run_bytes(self, msg->data, msg->len);
            st->reply_to = 0;
            return rc;
        }
        if (msg->tag == TAG_ANSWER) {
            printable(text, msg->data, msg->len);
            return reply(self, "info answer from=%llu data=%s",
                         (unsigned long long)msg->from, text);
        }
        st->tells++;
        printable(text, msg->data, msg->len);
        return reply(self, "info tell from=%llu tag=%u data=%s",
                     (unsigned long long)msg->from, msg->tag, text);
    case SNOW_MSG_ROOM:
        st->room_msgs++;
        st->room_bytes += msg->len;
        check_seq(st, msg->data, msg->len);
        if (st->quiet)
            return 0;
        printable(text, msg->data, msg->len);
        return reply(self, "info room room=%s from=%llu kind=%u len=%zu "
                     "data=%s", room, (unsigned long long)msg->from,
                     msg->tag, msg->len, text);
    case SNOW_MSG_JOIN:
        st->joins++;
        return reply(self, "info join room=%s from=%llu", room,
                     (unsigned long long)msg->from);
    case SNOW_MSG_LEAVE:
        st->leaves++;
        return reply(self, "info leave room=%s from=%llu", room,
                     (unsigned long long)msg->from);
    default:
        return reply(self, "info type=%d", (int)msg->type);
    }
}

static const struct snow_handler handlers[] = {
    { .name = "roomkit", .state_size = sizeof(struct conn_state),
      .on_open = kit_open, .on_message = kit_message, .on_info = kit_info },
};

SNOW_PLUGIN(.name = "roomkit", .version = "1.0",
            .handlers = handlers,
            .nhandlers = sizeof handlers / sizeof handlers[0]);
