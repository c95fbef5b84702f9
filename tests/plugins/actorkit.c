/*
 * actorkit - actors that act on command, for the integration tests only
 * (never installed, never routed in the shipped config).
 *
 * "actorkit" handler.  Every text message is one command; each command
 * is answered with exactly one text reply, except the ones marked
 * "(no reply)", which end the connection or the worker.  Replies never
 * start with "info "; everything the connection's on_info receives is
 * forwarded to the client as a line that does:
 *   info tell from=PID tag=T len=N data=TEXT   (TEXT: the first 200 bytes,
 *                                              bytes outside 0x20..0x7e as ?)
 *   info timer tag=T
 *   info down from=PID reason=REASON
 * PIDs are decimal; a PID argument may also be "self".  Errors are
 * answered "err ENAME" (ENOENT, EEXIST, EFULL, EINVAL, ...).
 *
 *   ping                       -> pong
 *   whoami                     -> me slot=S ospid=P pid=PID
 *                                 (S = snow_pid_worker(PID), P = getpid())
 *   register NAME              -> ok | err E
 *   whereis NAME               -> whereis pid=PID   (0 when none)
 *   tell PID TAG TEXT          -> ok | err E        (snow_tell)
 *   tellname NAME TAG TEXT     -> ok | err E        (snow_tell_name)
 *   monitor PID                -> ok | err E
 *   monitor-name NAME          -> ok pid=PID | err ENOENT
 *   timer AFTER_MS REPEAT_MS TAG -> timer id=ID | err E
 *   cancel ID                  -> ok | err E
 *   flood PID COUNT SIZE       -> flood ok=A efull=B other=C err=E
 *       COUNT tells of SIZE bytes ('x's after a "seq=N " head, N counting
 *       the tells accepted so far); E is the first other error or "-".
 *   quiet 0|1                  -> ok   (1: tells are counted, not forwarded)
 *   stats                      -> stats tells=N bytes=B timers=T downs=D
 *                                 ooo=O gaps=G
 *       (O: flood tells that arrived before an earlier one; G: flood
 *       tells that arrived after a missing one)
 *   sleep MS                   -> ok   (blocks the whole worker)
 *   svc NAME CMD...            -> ok | err E   (tells service NAME "CMD...")
 *   infocrash                  -> ok   (the next on_info returns -1)
 *   infofail REASON            -> ok   (the next on_info calls snow_fail)
 *   fail [REASON]              (no reply) snow_fail, then returns 0: 1011
 *   crash                      (no reply) on_message returns -1: 1011
 *   stop                       (no reply) snow_stop: close 1000
 *   segv                       (no reply) writes through a NULL pointer
 *   abort                      (no reply) abort()
 *   hang                       (no reply) loops forever
 *   exit N                     (no reply) _exit(N): the worker exits
 *   anything else              -> err unknown
 *
 * Services, one instance each in the daemon:
 *   kit.permanent  SNOW_PERMANENT, up to 20 restarts within 60 s
 *   kit.transient  SNOW_TRANSIENT, default intensity
 *   kit.temporary  SNOW_TEMPORARY
 *   kit.fragile    SNOW_PERMANENT, max_restarts 2 within 60 s: the third
 *                  crash escalates to its worker
 * Each takes text commands by tell (the "svc" command above):
 *   get | incr   the service tells the sender back
 *                "state name=NAME count=C inits=I pid=PID slot=S downs=D
 *                 down=REASON" (incr adds 1 to C first; REASON is the
 *                 last DOWN it received, or "-"); C lives in the zeroed
 *                state, I counts init calls on that state (so 1 after
 *                every start)
 *   watch        monitors the sender; answers "watching pid=PID"
 *   crash        on_info returns -1
 *   fail REASON  snow_fail(REASON)
 *   stop         snow_stop
 *   segv | hang | exit N   as for the handler, inside the service
 * init and terminate log "init pid=PID slot=S" and "terminate: REASON".
 */
#include <snowd/snowd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAG_FLOOD 0xf100d
#define TAG_SVC 0x5e
#define TAG_STATE 0x57
#define INFO_DATA_MAX 200
#define CMD_MAX 4096

struct conn_state {
    int quiet;
    int info_action;            /* 0 none, 1 crash, 2 fail */
    char info_reason[100];
    uint64_t tells, bytes, timers, downs;
    uint64_t ooo, gaps;
    uint64_t next_seq;          /* the flood seq expected next */
};

struct svc_state {
    uint64_t count;
    unsigned inits;
    uint64_t downs;
    char last_down[128];
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

/* Sends one text line.  A failed send (the connection is closing) is not
 * a crash of the kit. */
static int reply(snow_actor *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int reply(snow_actor *self, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return 0;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    snow_send(self, SNOW_TEXT, line, (size_t)n);
    return 0;
}

static int reply_rc(snow_actor *self, int rc)
{
    return rc == 0 ? reply(self, "ok") : reply(self, "err %s", errname(rc));
}

/* Printable copy of at most INFO_DATA_MAX bytes of data. */
static void printable(char *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t n = len < INFO_DATA_MAX ? len : INFO_DATA_MAX;

    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[n] = '\0';
}

static snow_pid parse_pid(snow_actor *self, const char *s)
{
    if (s && strcmp(s, "self") == 0)
        return snow_self(self);
    return s ? strtoull(s, NULL, 10) : 0;
}

/* Splits the next space-separated word off *rest. */
static char *word(char **rest)
{
    char *s = *rest;

    if (!s)
        return NULL;
    while (*s == ' ')
        s++;
    if (!*s) {
        *rest = NULL;
        return NULL;
    }
    char *end = strchr(s, ' ');
    if (end) {
        *end = '\0';
        *rest = end + 1;
    } else {
        *rest = NULL;
    }
    return s;
}

/* Not instrumented: under --enable-sanitizers, UBSan would report the
 * NULL store and exit instead of letting the signal kill the worker. */
__attribute__((no_sanitize("address", "undefined")))
static void do_segv(void)
{
    /* A volatile store through a pointer the compiler cannot see is
     * NULL: a real write to address 0, a real SIGSEGV.  (With only the
     * pointer volatile, GCC 12 -O2 drops the store.) */
    volatile int *volatile p = NULL;
    *p = 1;
}

static void do_hang(void)
{
    volatile unsigned long spin = 0;
    for (;;)
        spin++;
}

static void do_sleep_ms(unsigned long ms)
{
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000),
                           .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- the connection ------------------------------------------------------ */

static int cmd_flood(snow_actor *self, char *rest)
{
    snow_pid to = parse_pid(self, word(&rest));
    char *count_s = word(&rest), *size_s = word(&rest);
    unsigned long count = count_s ? strtoul(count_s, NULL, 10) : 0;
    size_t size = size_s ? strtoul(size_s, NULL, 10) : 0;
    unsigned long ok = 0, efull = 0, other = 0;
    int first_err = 0;

    if (size > 4u << 20)
        return reply(self, "err EINVAL");
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return reply(self, "err ENOMEM");
    memset(buf, 'x', size);
    for (unsigned long i = 0; i < count; i++) {
        char head[32];
        int n = snprintf(head, sizeof head, "seq=%lu ", ok);
        memcpy(buf, head, (size_t)n < size ? (size_t)n : size);
        int rc = snow_tell(self, to, TAG_FLOOD, buf, size);
        if (rc == 0) {
            ok++;
        } else if (rc == -SNOW_EFULL) {
            efull++;
        } else {
            other++;
            if (!first_err)
                first_err = rc;
        }
    }
    free(buf);
    return reply(self, "flood ok=%lu efull=%lu other=%lu err=%s", ok, efull,
                 other, first_err ? errname(first_err) : "-");
}

static int cmd_tell(snow_actor *self, char *rest, int by_name)
{
    char *to = word(&rest), *tag = word(&rest);
    const char *text = rest ? rest : "";

    if (!to || !tag)
        return reply(self, "err EINVAL");
    uint32_t t = (uint32_t)strtoul(tag, NULL, 10);
    int rc = by_name
        ? snow_tell_name(self, to, t, text, strlen(text))
        : snow_tell(self, parse_pid(self, to), t, text, strlen(text));
    return reply_rc(self, rc);
}

static int cmd_timer(snow_actor *self, char *rest)
{
    char *after = word(&rest), *repeat = word(&rest), *tag = word(&rest);

    if (!after || !repeat || !tag)
        return reply(self, "err EINVAL");
    int64_t id = snow_timer(self, strtoull(after, NULL, 10),
                            strtoull(repeat, NULL, 10),
                            (uint32_t)strtoul(tag, NULL, 10));
    if (id < 0)
        return reply(self, "err %s", errname((int)id));
    return reply(self, "timer id=%lld", (long long)id);
}

static int cmd_stats(snow_actor *self)
{
    struct conn_state *st = snow_state(self);
    return reply(self, "stats tells=%llu bytes=%llu timers=%llu downs=%llu "
                 "ooo=%llu gaps=%llu", (unsigned long long)st->tells,
                 (unsigned long long)st->bytes,
                 (unsigned long long)st->timers,
                 (unsigned long long)st->downs,
                 (unsigned long long)st->ooo, (unsigned long long)st->gaps);
}

/* Commands that end the connection or the worker.  Returns 1 when `cmd`
 * was one of them, with *rc set. */
static int fatal_command(snow_actor *self, const char *cmd, char *rest,
                         int *rc)
{
    *rc = 0;
    if (strcmp(cmd, "fail") == 0)
        snow_fail(self, rest && *rest ? rest : "fail command");
    else if (strcmp(cmd, "crash") == 0)
        *rc = -1;
    else if (strcmp(cmd, "stop") == 0)
        snow_stop(self);
    else if (strcmp(cmd, "segv") == 0)
        do_segv();
    else if (strcmp(cmd, "abort") == 0)
        abort();
    else if (strcmp(cmd, "hang") == 0)
        do_hang();
    else if (strcmp(cmd, "exit") == 0)
        _exit(rest ? atoi(rest) : 0);
    else
        return 0;
    return 1;
}

static int kit_message(snow_actor *self, enum snow_kind kind,
                       const void *data, size_t len)
{
    struct conn_state *st = snow_state(self);
    char line[CMD_MAX];
    int rc;

    if (kind != SNOW_TEXT || len >= sizeof line)
        return reply(self, "err EINVAL");
    memcpy(line, data, len);
    line[len] = '\0';
    char *rest = line, *cmd = word(&rest);
    if (!cmd)
        return reply(self, "err unknown");

    if (fatal_command(self, cmd, rest, &rc))
        return rc;
    if (strcmp(cmd, "ping") == 0)
        return reply(self, "pong");
    if (strcmp(cmd, "whoami") == 0) {
        snow_pid me = snow_self(self);
        return reply(self, "me slot=%u ospid=%d pid=%llu",
                     snow_pid_worker(me), (int)getpid(),
                     (unsigned long long)me);
    }
    if (strcmp(cmd, "register") == 0) {
        char *name = word(&rest);
        return reply_rc(self, snow_register(self, name ? name : ""));
    }
    if (strcmp(cmd, "whereis") == 0) {
        char *name = word(&rest);
        return reply(self, "whereis pid=%llu",
                     (unsigned long long)snow_whereis(name ? name : ""));
    }
    if (strcmp(cmd, "tell") == 0)
        return cmd_tell(self, rest, 0);
    if (strcmp(cmd, "tellname") == 0)
        return cmd_tell(self, rest, 1);
    if (strcmp(cmd, "monitor") == 0)
        return reply_rc(self, snow_monitor(self, parse_pid(self,
                                                           word(&rest))));
    if (strcmp(cmd, "monitor-name") == 0) {
        char *name = word(&rest);
        snow_pid pid = snow_whereis(name ? name : "");
        if (!pid)
            return reply(self, "err ENOENT");
        rc = snow_monitor(self, pid);
        if (rc < 0)
            return reply(self, "err %s", errname(rc));
        return reply(self, "ok pid=%llu", (unsigned long long)pid);
    }
    if (strcmp(cmd, "timer") == 0)
        return cmd_timer(self, rest);
    if (strcmp(cmd, "cancel") == 0) {
        char *id = word(&rest);
        return reply_rc(self, snow_timer_cancel(self,
                                                id ? strtoll(id, NULL, 10)
                                                   : 0));
    }
    if (strcmp(cmd, "flood") == 0)
        return cmd_flood(self, rest);
    if (strcmp(cmd, "quiet") == 0) {
        char *v = word(&rest);
        st->quiet = v && atoi(v) != 0;
        return reply(self, "ok");
    }
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(self);
    if (strcmp(cmd, "sleep") == 0) {
        char *ms = word(&rest);
        do_sleep_ms(ms ? strtoul(ms, NULL, 10) : 0);
        return reply(self, "ok");
    }
    if (strcmp(cmd, "svc") == 0) {
        char *name = word(&rest);
        const char *text = rest ? rest : "";
        if (!name)
            return reply(self, "err EINVAL");
        return reply_rc(self, snow_tell_name(self, name, TAG_SVC, text,
                                             strlen(text)));
    }
    if (strcmp(cmd, "infocrash") == 0) {
        st->info_action = 1;
        return reply(self, "ok");
    }
    if (strcmp(cmd, "infofail") == 0) {
        st->info_action = 2;
        snprintf(st->info_reason, sizeof st->info_reason, "%s",
                 rest && *rest ? rest : "infofail command");
        return reply(self, "ok");
    }
    return reply(self, "err unknown");
}

/* Flood tells carry "seq=N ": check that they come in order. */
static void check_seq(struct conn_state *st, const struct snow_msg *msg)
{
    char head[24];
    size_t n = msg->len < sizeof head - 1 ? msg->len : sizeof head - 1;

    if (msg->tag != TAG_FLOOD || n < 5 || memcmp(msg->data, "seq=", 4) != 0)
        return;
    memcpy(head, msg->data, n);
    head[n] = '\0';
    uint64_t seq = strtoull(head + 4, NULL, 10);
    if (seq == 0)               /* a new flood starts */
        st->next_seq = 0;
    if (seq < st->next_seq)
        st->ooo++;
    else if (seq > st->next_seq)
        st->gaps++;
    st->next_seq = seq + 1;
}

static int kit_info(snow_actor *self, const struct snow_msg *msg)
{
    struct conn_state *st = snow_state(self);
    char text[INFO_DATA_MAX + 1];

    if (st->info_action == 1)
        return -1;
    if (st->info_action == 2) {
        snow_fail(self, st->info_reason);
        return 0;
    }
    switch (msg->type) {
    case SNOW_MSG_TELL:
        st->tells++;
        st->bytes += msg->len;
        check_seq(st, msg);
        if (st->quiet)
            return 0;
        printable(text, msg->data, msg->len);
        return reply(self, "info tell from=%llu tag=%u len=%zu data=%s",
                     (unsigned long long)msg->from, msg->tag, msg->len, text);
    case SNOW_MSG_TIMER:
        st->timers++;
        return reply(self, "info timer tag=%u", msg->tag);
    case SNOW_MSG_DOWN:
        st->downs++;
        printable(text, msg->data, msg->len);
        return reply(self, "info down from=%llu reason=%s",
                     (unsigned long long)msg->from, text);
    default:   /* rooms: see roomkit */
        break;
    }
    return reply(self, "info type=%d", (int)msg->type);
}

/* ---- the services ---------------------------------------------------------- */

static const char *svc_name(snow_actor *self);

static int svc_init(snow_actor *self)
{
    struct svc_state *st = snow_state(self);
    snow_pid me = snow_self(self);

    st->inits++;
    snow_log(self, "init pid=%llu slot=%u", (unsigned long long)me,
             snow_pid_worker(me));
    return 0;
}

static void svc_terminate(snow_actor *self, const char *reason)
{
    snow_log(self, "terminate: %s", reason);
}

static int svc_tell_state(snow_actor *self, snow_pid to)
{
    struct svc_state *st = snow_state(self);
    snow_pid me = snow_self(self);
    char line[512];

    int n = snprintf(line, sizeof line, "state name=%s count=%llu inits=%u "
                     "pid=%llu slot=%u downs=%llu down=%s", svc_name(self),
                     (unsigned long long)st->count, st->inits,
                     (unsigned long long)me, snow_pid_worker(me),
                     (unsigned long long)st->downs,
                     st->last_down[0] ? st->last_down : "-");
    snow_tell(self, to, TAG_STATE, line, (size_t)n);
    return 0;
}

static int svc_info(snow_actor *self, const struct snow_msg *msg)
{
    struct svc_state *st = snow_state(self);
    char line[CMD_MAX];

    if (msg->type == SNOW_MSG_DOWN) {
        st->downs++;
        printable(st->last_down, msg->data,
                  msg->len < sizeof st->last_down - 1
                  ? msg->len : sizeof st->last_down - 1);
        return 0;
    }
    if (msg->type != SNOW_MSG_TELL || msg->len >= sizeof line)
        return 0;
    memcpy(line, msg->data, msg->len);
    line[msg->len] = '\0';
    char *rest = line, *cmd = word(&rest);
    if (!cmd)
        return 0;
    if (strcmp(cmd, "get") == 0)
        return svc_tell_state(self, msg->from);
    if (strcmp(cmd, "incr") == 0) {
        st->count++;
        return svc_tell_state(self, msg->from);
    }
    if (strcmp(cmd, "watch") == 0) {
        int rc = snow_monitor(self, msg->from);
        char ans[64];
        int n = rc == 0
            ? snprintf(ans, sizeof ans, "watching pid=%llu",
                       (unsigned long long)msg->from)
            : snprintf(ans, sizeof ans, "err %s", errname(rc));
        snow_tell(self, msg->from, TAG_STATE, ans, (size_t)n);
        return 0;
    }
    if (strcmp(cmd, "crash") == 0)
        return -1;
    if (strcmp(cmd, "fail") == 0)
        return snow_fail(self, rest && *rest ? rest : "fail command");
    if (strcmp(cmd, "stop") == 0)
        return snow_stop(self);
    if (strcmp(cmd, "segv") == 0)
        do_segv();
    if (strcmp(cmd, "hang") == 0)
        do_hang();
    if (strcmp(cmd, "exit") == 0)
        _exit(rest ? atoi(rest) : 0);
    return 0;
}

#define KIT_SERVICE(NAME, POLICY, MAX, WINDOW)                             \
    { .name = NAME, .restart = POLICY,                                   \
      .state_size = sizeof(struct svc_state), .max_restarts = MAX,       \
      .restart_window_ms = WINDOW, .init = svc_init,                     \
      .on_info = svc_info, .terminate = svc_terminate }

static const struct snow_service services[] = {
    KIT_SERVICE("kit.permanent", SNOW_PERMANENT, 20, 60000),
    KIT_SERVICE("kit.transient", SNOW_TRANSIENT, 0, 0),
    KIT_SERVICE("kit.temporary", SNOW_TEMPORARY, 20, 60000),
    KIT_SERVICE("kit.fragile", SNOW_PERMANENT, 2, 60000),
};

/* The service's own name, found through its registered pid. */
static const char *svc_name(snow_actor *self)
{
    snow_pid me = snow_self(self);

    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
        if (snow_whereis(services[i].name) == me)
            return services[i].name;
    return "?";
}

static const struct snow_handler handlers[] = {
    { .name = "actorkit", .state_size = sizeof(struct conn_state),
      .on_message = kit_message, .on_info = kit_info },
};

SNOW_PLUGIN(.name = "actorkit", .version = "1.0",
            .handlers = handlers,
            .nhandlers = sizeof handlers / sizeof handlers[0],
            .services = services,
            .nservices = sizeof services / sizeof services[0]);
