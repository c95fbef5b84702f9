/*
 * actorbench.c - a snowd bench plugin: actor message throughput.
 *
 * Two sink services, "bench.sink0" and "bench.sink1" (with workers = 2 the
 * master places them on workers 0 and 1), and a handler "actorbench".
 * Route a path to it:
 *
 *     [route /actorbench]
 *     handler = actorbench
 *
 * Text commands on a connection (one reply each, JSON text):
 *
 *   whoami
 *       {"worker":W,"pid":"0x..."}: the worker of this connection actor.
 *
 *   sinks
 *       {"sink0":W0,"sink1":W1,"worker":W}: the workers the sinks run on
 *       (-1: not registered yet), as this worker's registry sees them.
 *
 *   run same|cross N [WINDOW [INFLIGHT]]
 *       Streams N tells of 64 bytes to a sink: "same" takes the sink on
 *       this connection's worker, "cross" the sink on another worker
 *       (chosen by comparing snow_pid_worker of the sinks' pids with our
 *       own).  Flow control is credit based: the messages are cut into
 *       windows of WINDOW (default 1024); the last message of each window
 *       asks the sink for an ack, and at most INFLIGHT (default 8) windows
 *       are unacknowledged at any time.  A whole window is sent inside one
 *       callback (the ack's on_info), so the daemon can batch it.  If
 *       snow_tell answers -SNOW_EFULL the rest waits for the next ack or a
 *       1 ms timer: never a busy loop.
 *       The clock (CLOCK_MONOTONIC) runs from the first send to the last
 *       ack.  Reply:
 *         {"mode":"same","messages":N,"seconds":S,"msgs_per_sec":R,
 *          "worker":W,"sink_worker":V,"sink_count":C,"seq_errors":E,
 *          "efull":F,"window":1024,"inflight":8,"ok":true}
 *       The sink checks the sequence number carried in every payload;
 *       sink_count is the number of messages it received from this
 *       connection in this run and seq_errors the gaps or reorderings it
 *       saw.  "ok" is true only when sink_count == N and seq_errors == 0.
 *
 *   Errors reply {"error":"..."}.  A run that makes no progress for
 *   STALL_MS replies {"error":"stalled",...} with its counters, so a lost
 *   message shows up as an answer rather than a hang.
 *
 * Build (from the repository root):
 *     cc -shared -fPIC -O2 -Wall -Wextra -Iinclude bench/actorbench.c \
 *        -o bench/build/plugins/actorbench.so
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snowd/snowd.h"

#define PAYLOAD 64
#define DEFAULT_WINDOW 1024
#define DEFAULT_INFLIGHT 8
#define MAX_SENDERS 64          /* concurrent runs one sink keeps apart */
#define RETRY_MS 1
#define STALL_MS 10000
#define WATCHDOG_MS 1000

enum tag {
    TAG_START = 1,   /* sender -> sink: a run begins (resets its counters) */
    TAG_DATA,        /* sender -> sink: one message */
    TAG_DATA_ACK,    /* sender -> sink: last message of a window: ack it */
    TAG_ACK,         /* sink -> sender: u64 count, u64 seq_errors */
    TAG_RETRY,       /* timer: sending was refused with EFULL */
    TAG_WATCHDOG     /* timer: stall detection */
};

static const char *const sink_names[2] = { "bench.sink0", "bench.sink1" };

/* ---- sinks ----------------------------------------------------------- */

struct sender_slot {
    snow_pid pid;
    uint64_t count;        /* messages received in this run */
    uint64_t next_seq;     /* sequence number expected next */
    uint64_t seq_errors;
};

struct sink_state {
    struct sender_slot slots[MAX_SENDERS];
    unsigned next_victim;
    struct sender_slot *last;   /* cache: the sender of the last message */
    uint64_t total;
    uint64_t ack_failures;
};

static struct sender_slot *sink_slot(struct sink_state *s, snow_pid pid)
{
    if (s->last && s->last->pid == pid)
        return s->last;
    for (unsigned i = 0; i < MAX_SENDERS; i++)
        if (s->slots[i].pid == pid)
            return s->last = &s->slots[i];
    return NULL;
}

static int sink_info(snow_actor *self, const struct snow_msg *msg)
{
    struct sink_state *s = snow_state(self);
    struct sender_slot *slot;

    if (msg->type != SNOW_MSG_TELL)
        return 0;
    switch (msg->tag) {
    case TAG_START:
        slot = sink_slot(s, msg->from);
        if (!slot) {
            unsigned i;
            for (i = 0; i < MAX_SENDERS && s->slots[i].pid; i++)
                ;
            if (i == MAX_SENDERS)
                i = s->next_victim++ % MAX_SENDERS;
            slot = &s->slots[i];
        }
        *slot = (struct sender_slot){ .pid = msg->from };
        s->last = slot;
        return 0;
    case TAG_DATA:
    case TAG_DATA_ACK: {
        slot = sink_slot(s, msg->from);
        if (!slot)       /* data without a start: cannot be checked */
            return 0;
        uint64_t seq = UINT64_MAX;
        if (msg->len == PAYLOAD)
            memcpy(&seq, msg->data, sizeof seq);
        if (seq != slot->next_seq)
            slot->seq_errors++;
        slot->next_seq = seq + 1;
        slot->count++;
        s->total++;
        if (msg->tag == TAG_DATA_ACK) {
            uint64_t ack[2] = { slot->count, slot->seq_errors };
            int rc = snow_tell(self, msg->from, TAG_ACK, ack, sizeof ack);
            if (rc != 0 && s->ack_failures++ < 10)
                snow_log(self, "ack to %#" PRIx64 " failed: %s",
                         msg->from, snow_strerror(rc));
        }
        return 0;
    }
    default:
        return 0;
    }
}

static const struct snow_service services[] = {
    { .name = "bench.sink0", .restart = SNOW_PERMANENT,
      .state_size = sizeof(struct sink_state), .on_info = sink_info },
    { .name = "bench.sink1", .restart = SNOW_PERMANENT,
      .state_size = sizeof(struct sink_state), .on_info = sink_info },
};

/* ---- the connection actor -------------------------------------------- */

struct conn_state {
    int running;
    int same;
    snow_pid sink;
    unsigned sink_worker;
    uint64_t n, sent, acked, seq_errors;
    uint32_t window, max_inflight, inflight;
    uint64_t efull;
    int retry_armed;
    int64_t watchdog;
    uint64_t progress_ms;       /* last time an ack arrived */
    struct timespec t0;
    unsigned char payload[PAYLOAD];
};

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void reply(snow_actor *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply(snow_actor *self, const char *fmt, ...)
{
    char buf[768];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    snow_send(self, SNOW_TEXT, buf, (size_t)n);
}

static void run_end(snow_actor *self, struct conn_state *c)
{
    c->running = 0;
    if (c->watchdog > 0)
        snow_timer_cancel(self, c->watchdog);
    c->watchdog = 0;
}

/* Sends as much as the credit allows, inside this one callback. */
static int pump(snow_actor *self, struct conn_state *c)
{
    while (c->sent < c->n) {
        if (c->sent % c->window == 0 && c->inflight >= c->max_inflight)
            return 0;                         /* out of credit */
        int last = (c->sent + 1) % c->window == 0 || c->sent + 1 == c->n;
        memcpy(c->payload, &c->sent, sizeof c->sent);
        int rc = snow_tell(self, c->sink, last ? TAG_DATA_ACK : TAG_DATA,
                           c->payload, PAYLOAD);
        if (rc == -SNOW_EFULL) {
            c->efull++;
            if (!c->retry_armed && snow_timer(self, RETRY_MS, 0, TAG_RETRY) > 0)
                c->retry_armed = 1;
            return 0;
        }
        if (rc != 0) {
            reply(self, "{\"error\":\"snow_tell: %s\",\"sent\":%" PRIu64 "}",
                  snow_strerror(rc), c->sent);
            run_end(self, c);
            return 0;
        }
        c->sent++;
        if (last)
            c->inflight++;
    }
    return 0;
}

static void finish(snow_actor *self, struct conn_state *c)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - c->t0.tv_sec) +
                  (double)(t1.tv_nsec - c->t0.tv_nsec) / 1e9;
    int ok = c->acked == c->n && c->seq_errors == 0;
    reply(self,
          "{\"mode\":\"%s\",\"messages\":%" PRIu64 ",\"seconds\":%.6f,"
          "\"msgs_per_sec\":%.0f,\"worker\":%u,\"sink_worker\":%u,"
          "\"sink_count\":%" PRIu64 ",\"seq_errors\":%" PRIu64 ","
          "\"efull\":%" PRIu64 ",\"window\":%u,\"inflight\":%u,"
          "\"payload\":%d,\"ok\":%s}",
          c->same ? "same" : "cross", c->n, secs,
          secs > 0 ? (double)c->n / secs : 0.0,
          snow_pid_worker(snow_self(self)), c->sink_worker, c->acked,
          c->seq_errors, c->efull, c->window, c->max_inflight, PAYLOAD,
          ok ? "true" : "false");
    run_end(self, c);
}

static int start_run(snow_actor *self, struct conn_state *c, const char *mode,
                     uint64_t n, uint32_t window, uint32_t inflight)
{
    unsigned me = snow_pid_worker(snow_self(self));
    int same;

    if (strcmp(mode, "same") == 0)
        same = 1;
    else if (strcmp(mode, "cross") == 0)
        same = 0;
    else {
        reply(self, "{\"error\":\"mode must be same or cross\"}");
        return 0;
    }
    if (n == 0 || window == 0 || inflight == 0) {
        reply(self, "{\"error\":\"N, WINDOW and INFLIGHT must be > 0\"}");
        return 0;
    }
    snow_pid sink = 0;
    unsigned sw = 0;
    for (int i = 0; i < 2 && !sink; i++) {
        snow_pid p = snow_whereis(sink_names[i]);
        if (!p)
            continue;
        if ((snow_pid_worker(p) == me) == same) {
            sink = p;
            sw = snow_pid_worker(p);
        }
    }
    if (!sink) {
        reply(self, "{\"error\":\"no sink %s worker %u (sink0 on %d, sink1 "
              "on %d; -1 = not registered)\"}",
              same ? "on" : "off", me,
              snow_whereis(sink_names[0])
                  ? (int)snow_pid_worker(snow_whereis(sink_names[0])) : -1,
              snow_whereis(sink_names[1])
                  ? (int)snow_pid_worker(snow_whereis(sink_names[1])) : -1);
        return 0;
    }
    memset(c, 0, sizeof *c);
    memset(c->payload, 'x', sizeof c->payload);
    c->same = same;
    c->sink = sink;
    c->sink_worker = sw;
    c->n = n;
    c->window = window;
    c->max_inflight = inflight;
    int rc = snow_tell(self, sink, TAG_START, NULL, 0);
    if (rc != 0) {
        reply(self, "{\"error\":\"start: %s\"}", snow_strerror(rc));
        return 0;
    }
    c->running = 1;
    c->progress_ms = now_ms();
    c->watchdog = snow_timer(self, WATCHDOG_MS, WATCHDOG_MS, TAG_WATCHDOG);
    clock_gettime(CLOCK_MONOTONIC, &c->t0);
    return pump(self, c);
}

static int conn_message(snow_actor *self, enum snow_kind kind,
                        const void *data, size_t len)
{
    struct conn_state *c = snow_state(self);
    char cmd[128], mode[16];
    unsigned long long n = 0;
    unsigned window = DEFAULT_WINDOW, inflight = DEFAULT_INFLIGHT;

    (void)kind;
    if (len >= sizeof cmd)
        len = sizeof cmd - 1;
    memcpy(cmd, data, len);
    cmd[len] = '\0';

    if (strcmp(cmd, "whoami") == 0) {
        reply(self, "{\"worker\":%u,\"pid\":\"%#" PRIx64 "\"}",
              snow_pid_worker(snow_self(self)), snow_self(self));
        return 0;
    }
    if (strcmp(cmd, "sinks") == 0) {
        snow_pid p0 = snow_whereis(sink_names[0]);
        snow_pid p1 = snow_whereis(sink_names[1]);
        reply(self, "{\"sink0\":%d,\"sink1\":%d,\"worker\":%u}",
              p0 ? (int)snow_pid_worker(p0) : -1,
              p1 ? (int)snow_pid_worker(p1) : -1,
              snow_pid_worker(snow_self(self)));
        return 0;
    }
    if (sscanf(cmd, "run %15s %llu %u %u", mode, &n, &window, &inflight) >= 2) {
        if (c->running) {
            reply(self, "{\"error\":\"a run is in progress\"}");
            return 0;
        }
        return start_run(self, c, mode, n, window, inflight);
    }
    reply(self, "{\"error\":\"commands: whoami | sinks | run same|cross N "
          "[WINDOW [INFLIGHT]]\"}");
    return 0;
}

static int conn_info(snow_actor *self, const struct snow_msg *msg)
{
    struct conn_state *c = snow_state(self);

    if (msg->type == SNOW_MSG_TIMER && msg->tag == TAG_RETRY) {
        c->retry_armed = 0;
        return c->running ? pump(self, c) : 0;
    }
    if (msg->type == SNOW_MSG_TIMER && msg->tag == TAG_WATCHDOG) {
        if (c->running && now_ms() - c->progress_ms >= STALL_MS) {
            reply(self, "{\"error\":\"stalled\",\"mode\":\"%s\",\"messages\":%"
                  PRIu64 ",\"sent\":%" PRIu64 ",\"sink_count\":%" PRIu64
                  ",\"seq_errors\":%" PRIu64 ",\"inflight\":%u,\"efull\":%"
                  PRIu64 ",\"worker\":%u,\"sink_worker\":%u,\"ok\":false}",
                  c->same ? "same" : "cross", c->n, c->sent, c->acked,
                  c->seq_errors, c->inflight, c->efull,
                  snow_pid_worker(snow_self(self)),
                  c->sink_worker);
            run_end(self, c);
        }
        return 0;
    }
    if (msg->type != SNOW_MSG_TELL || msg->tag != TAG_ACK || !c->running ||
        msg->from != c->sink)
        return 0;
    if (msg->len == 2 * sizeof(uint64_t)) {
        uint64_t ack[2];
        memcpy(ack, msg->data, sizeof ack);
        c->acked = ack[0];
        c->seq_errors = ack[1];
    }
    if (c->inflight)
        c->inflight--;
    c->progress_ms = now_ms();
    if (c->sent == c->n && c->inflight == 0) {
        finish(self, c);
        return 0;
    }
    return pump(self, c);
}

static const struct snow_handler handlers[] = {
    { .name = "actorbench", .state_size = sizeof(struct conn_state),
      .on_message = conn_message, .on_info = conn_info },
};

SNOW_PLUGIN(.name = "actorbench", .version = "1.0",
            .handlers = handlers, .nhandlers = 1,
            .services = services, .nservices = 2);
