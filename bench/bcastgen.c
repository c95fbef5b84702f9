/*
 * bcastgen - broadcast load generator for the snowd rooms benchmark
 * (bench/bcast.sh).  Single-threaded, epoll, non-blocking; plain libc.
 *
 *   bcastgen -p PORT [-h 127.0.0.1] [-u /bcast] [-s subscribers] [-n publishers]
 *            [-m size] [-w window] [-d secs] [-W warmup] [-D drain_secs]
 *            [-T stall_secs] [-P pid[,pid...]] [-q]
 *
 * The server protocol (the same for every server in bench/bcast.sh):
 *   - every client connection on the path is a member of one group;
 *   - a binary message from a client is sent unchanged to every OTHER
 *     connected client;
 *   - a text message "count" is answered (text, to the sender only) with
 *     the number of connected clients, in decimal;
 *   - a text message "stats" is answered with one line of server-specific
 *     text (counters), which ends up in the JSON as "server_stats".
 *
 * What it does:
 *   1. Opens -n publisher and -s subscriber connections (publishers first;
 *      at most 500 connects/handshakes in flight), checks the 101 answer.
 *   2. Asks "count" on the first connection every 20 ms until the server
 *      counts all of them (bounded: 10 s).
 *   3. Publishers send binary messages of -m bytes (at least 32) holding
 *      magic, publisher id, sequence number, CLOCK_MONOTONIC send time and
 *      a check word.  Every connection but the sender receives each one
 *      (publishers receive each other's messages too), so a message is
 *      complete when R = connections - 1 receivers have it.
 *   4. Flow control: each publisher has at most -w (default 64) messages in flight,
 *      i.e. not yet received by all R receivers.  It counts deliveries per
 *      sequence number in a ring of -w counters; when the oldest message's
 *      counter reaches R, the window slides.  New messages are written once
 *      per event-loop turn, all the window allows in one write(), so the
 *      server sees bursts it can batch.
 *   5. Every receiver checks each publisher's sequence: a gap counts the
 *      skipped messages as lost, a sequence number below the expected one
 *      is a late (reordered) message if that receiver saw a gap from that
 *      publisher before, and a duplicate otherwise.  Latency = receive time
 *      (taken once per read()) - send timestamp, into a log-linear
 *      histogram.  "complete" latency = time until the last receiver had
 *      a message.
 *   6. After the warmup (-W) the measured interval (-d) runs; at its exact
 *      edges the CPU time of the -P pids (utime+stime from /proc/PID/stat),
 *      our own CPU time and the machine's busy time are sampled, and
 *      MEASURE_START / MEASURE_END are written to stderr.
 *   7. Drain: publishing stops and in-flight messages are awaited (at most
 *      -D seconds), so that loss accounting is exact: a message still
 *      missing at a live receiver after the drain is lost.
 *   8. Optional "stats" query, then a close handshake (1000) on every
 *      connection (bounded: 3 s), then one JSON line on stdout.
 *
 * A server closing a connection is counted ("closed_by_server", with the
 * first close code) and the run goes on with the others; R shrinks.  If no
 * delivery arrives for -T seconds the run is "stalled" and ends.  Every
 * phase has a deadline.  Exit status: 0 with a JSON line, 1 when nothing
 * could be measured, 2 for bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTING 500          /* connects/handshakes in progress at once */
#define RBUF_SIZE (256 * 1024)      /* shared read buffer */
#define HS_BUF_SIZE 2048            /* handshake response buffer */
#define MAX_PAYLOAD 1024            /* largest frame payload accepted from a server */
#define MAX_FRAME (14 + MAX_PAYLOAD)
#define MIN_MSG 32
#define MAX_ERR_MSGS 20
#define READY_TIMEOUT_NS 10000000000ull
#define COUNT_INTERVAL_NS 20000000ull
#define STATS_TIMEOUT_NS 1000000000ull
#define CLOSE_TIMEOUT_NS 3000000000ull

#define MAGIC 0x54534342u           /* "BCST" little-endian */

/* fixed key from RFC 6455 section 1.3 and its accept value */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const uint8_t mask_key[4] = { 0x5a, 0xc3, 0x17, 0x8e };

/* ---------------------------------------------------------------- histogram */
/* Log-linear buckets over microseconds: values < 128 are exact, above that
 * each power of two is split into 64 sub-buckets (< 1.6 % relative error). */
#define H_SUB 64
#define H_MAXEXP 40
#define H_NBUCKETS ((H_MAXEXP + 2) * H_SUB)

struct hist {
	uint64_t b[H_NBUCKETS];
	uint64_t total;
	uint64_t max;
};

static int hist_index(uint64_t v)
{
	if (v < 2 * H_SUB)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	int shift = msb - 6;
	int idx = (shift + 1) * H_SUB + (int)(v >> shift) - H_SUB;
	if (idx >= H_NBUCKETS)
		idx = H_NBUCKETS - 1;
	return idx;
}

/* representative value (bucket midpoint) of a bucket, in microseconds */
static double hist_value(int idx)
{
	if (idx < 2 * H_SUB)
		return (double)idx;
	int shift = idx / H_SUB - 1;
	uint64_t sub = (uint64_t)(idx % H_SUB) + H_SUB;
	uint64_t lo = sub << shift;
	uint64_t hi = ((sub + 1) << shift) - 1;
	return ((double)lo + (double)hi) / 2.0;
}

static inline void hist_record(struct hist *h, uint64_t us)
{
	h->b[hist_index(us)]++;
	h->total++;
	if (us > h->max)
		h->max = us;
}

static double hist_pct(const struct hist *h, double p)
{
	if (!h->total)
		return 0;
	uint64_t target = (uint64_t)(p * (double)h->total + 0.999999);
	if (target < 1)
		target = 1;
	uint64_t acc = 0;
	for (int i = 0; i < H_NBUCKETS; i++) {
		acc += h->b[i];
		if (acc >= target)
			return hist_value(i);
	}
	return hist_value(H_NBUCKETS - 1);
}

/* ---------------------------------------------------------------- state */
enum cstate { ST_FREE = 0, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

struct conn {
	int fd;
	uint8_t state;
	uint8_t want_out;          /* EPOLLOUT registered */
	uint8_t close_sent;        /* we sent a close frame */
	int pub;                   /* publisher index, -1 for a subscriber */
	/* handshake */
	size_t req_off;
	char *hs;
	size_t hs_len;
	/* pending output (publisher frames, queries, pongs, close) */
	uint8_t *obuf;
	size_t olen, ooff, ocap;
	/* receive: the unfinished frame of the last read */
	uint16_t carry_len;
	uint8_t carry[MAX_FRAME];
	/* per publisher: next expected sequence number, and "saw a gap" */
	uint64_t *exp;
	uint8_t *gapped;
};

struct pub {
	int conn;                  /* index in conns[] */
	uint64_t next_seq;         /* sequence number of the next message */
	uint64_t base;             /* oldest message not complete */
	uint32_t *cnt;             /* deliveries per in-flight message, [window] */
	uint64_t *ts;              /* send time per in-flight message, [window] */
	uint64_t published_meas;   /* sent during the measured interval */
};

static struct {
	const char *host;
	int port;
	const char *path;
	int nsub;
	int npub;
	size_t size;
	int window;
	double duration;
	double warmup;
	double drain;
	double stall;
	int quiet;
	int stats;
} opt = { "127.0.0.1", 0, "/bcast", 1000, 1, 32, 64, 10, 2, 5, 5, 0, 1 };

#define MAX_PIDS 64
static int pids[MAX_PIDS];
static int npids;

static struct conn *conns;
static int nconn;
static struct pub *pubs;
static int epfd;
static struct sockaddr_in addr;
static char *request;
static size_t request_len;
static uint8_t rbuf[RBUF_SIZE];
static uint64_t payload_fill[MAX_PAYLOAD / 8];

static int n_connecting, n_open, n_established_ever;
static uint64_t errors, err_msgs;
static volatile sig_atomic_t stop_flag;

/* measurement */
static int measuring, publishing;
static struct hist lat, complete;
static uint64_t deliveries_meas, deliveries_total;
static uint64_t lost, reordered, duplicates, corrupt, unexpected;
static uint64_t closed_by_server, undelivered_closed;
static int first_close_code = -1;
static uint64_t pings;
static uint64_t last_progress;
static uint64_t reads_meas, waits_meas;   /* read() and epoll_wait() calls while measuring */

/* text replies */
static int64_t count_reply = -1;   /* last "count" answer, -1 = none pending/seen */
static int count_pending;
static char stats_reply[MAX_PAYLOAD + 1];
static int stats_got;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void logerr(const char *fmt, ...)
{
	if (err_msgs++ >= MAX_ERR_MSGS) {
		if (err_msgs == MAX_ERR_MSGS + 1)
			fprintf(stderr, "bcastgen: further messages suppressed\n");
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	fputs("bcastgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* ---------------------------------------------------------------- /proc */
static int proc_cpu_ticks(int pid, unsigned long long *ticks,
			  unsigned long long *user_ticks)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');   /* comm may contain spaces */
	if (!p || !p[1])
		return -1;
	p += 2;                        /* field 3 (state) */
	unsigned long long ut = 0, st = 0;
	int field = 3;
	char *save = NULL;
	for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++) {
		if (field == 14)
			ut = strtoull(tok, NULL, 10);
		else if (field == 15) {
			st = strtoull(tok, NULL, 10);
			break;
		}
	}
	if (field != 15)
		return -1;
	*ticks = ut + st;
	*user_ticks = ut;
	return 0;
}

static int proc_cpu_ticks_all(unsigned long long *ticks, unsigned long long *user_ticks,
			      unsigned long long *per)
{
	unsigned long long t = 0, u = 0;
	for (int i = 0; i < npids; i++) {
		unsigned long long ti, ui;
		if (proc_cpu_ticks(pids[i], &ti, &ui) != 0)
			return -1;
		t += ti;
		u += ui;
		per[i] = ti;
	}
	*ticks = t;
	*user_ticks = u;
	return 0;
}

/* busy ticks of all CPUs (everything but idle and iowait) */
static int machine_busy_ticks(unsigned long long *busy)
{
	char buf[512];
	int fd = open("/proc/stat", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	unsigned long long v[8] = { 0 };
	int k = sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
		       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	if (k < 4)
		return -1;
	*busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	return 0;
}

static void parse_pids(const char *arg)
{
	char *copy = strdup(arg), *save = NULL;
	if (!copy) {
		perror("strdup");
		exit(2);
	}
	for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		int pid = atoi(tok);
		if (pid <= 0 || npids == MAX_PIDS) {
			fprintf(stderr, "bcastgen: bad or too many pids in -P '%s'\n", arg);
			exit(2);
		}
		pids[npids++] = pid;
	}
	free(copy);
}

static double cpu_self_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- messages */
struct msghdr_b {
	uint32_t magic;
	uint32_t pub;
	uint64_t seq;
	uint64_t ts;
	uint64_t check;
};

static inline uint64_t check_word(uint32_t pub, uint64_t seq, uint64_t ts)
{
	return (seq * 0x9e3779b97f4a7c15ull) ^ ts ^ ((uint64_t)pub << 32) ^ 0x5bd1e995u;
}

static void set_events(struct conn *c, int want_out)
{
	if (c->want_out == (uint8_t)!!want_out)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0),
				  .data.ptr = c };
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = !!want_out;
}

static uint8_t *out_reserve(struct conn *c, size_t n)
{
	if (c->ooff && c->ooff == c->olen)
		c->ooff = c->olen = 0;
	if (c->olen + n > c->ocap) {
		if (c->ooff) {          /* compact first */
			memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
			c->olen -= c->ooff;
			c->ooff = 0;
		}
		if (c->olen + n > c->ocap) {
			size_t cap = c->ocap ? c->ocap : 4096;
			while (cap < c->olen + n)
				cap *= 2;
			uint8_t *b = realloc(c->obuf, cap);
			if (!b) {
				perror("realloc");
				exit(2);
			}
			c->obuf = b;
			c->ocap = cap;
		}
	}
	uint8_t *p = c->obuf + c->olen;
	c->olen += n;
	return p;
}

/* appends one masked client frame */
static void out_frame(struct conn *c, uint8_t opcode, const void *data, size_t len)
{
	size_t hl = 2 + (len < 126 ? 0 : 2) + 4;
	uint8_t *p = out_reserve(c, hl + len);
	*p++ = 0x80 | opcode;
	if (len < 126) {
		*p++ = 0x80 | (uint8_t)len;
	} else {
		*p++ = 0x80 | 126;
		*p++ = (uint8_t)(len >> 8);
		*p++ = (uint8_t)len;
	}
	memcpy(p, mask_key, 4);
	p += 4;
	const uint8_t *d = data;
	for (size_t i = 0; i < len; i++)
		p[i] = d[i] ^ mask_key[i & 3];
}

static void conn_close(struct conn *c, const char *why, int by_server);

/* writes pending output; returns -1 if the connection was closed */
static int conn_flush(struct conn *c)
{
	while (c->ooff < c->olen) {
		ssize_t w = write(c->fd, c->obuf + c->ooff, c->olen - c->ooff);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_events(c, 1);
				return 0;
			}
			char m[128];
			snprintf(m, sizeof m, "write: %s", strerror(errno));
			conn_close(c, m, 1);
			return -1;
		}
		c->ooff += (size_t)w;
	}
	c->ooff = c->olen = 0;
	set_events(c, 0);
	return 0;
}

/* receivers a message of publisher pb still needs */
static inline int receivers_for(const struct pub *pb)
{
	return n_open - (conns[pb->conn].state == ST_OPEN ? 1 : 0);
}

static void pub_advance(struct pub *pb, uint64_t t)
{
	int r = receivers_for(pb);
	uint32_t w = (uint32_t)opt.window;
	while (pb->base < pb->next_seq && (int)pb->cnt[pb->base % w] >= r) {
		if (measuring)
			hist_record(&complete, (t - pb->ts[pb->base % w]) / 1000);
		pb->cnt[pb->base % w] = 0;
		pb->base++;
	}
}

static void conn_close(struct conn *c, const char *why, int by_server)
{
	if (c->state == ST_CLOSED || c->state == ST_FREE)
		return;
	int was_open = c->state == ST_OPEN;
	if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE)
		n_connecting--;
	else if (was_open)
		n_open--;
	if (why) {
		errors++;
		logerr("connection %d%s: %s", (int)(c - conns), c->pub >= 0 ? " (publisher)" : "", why);
	}
	if (by_server && was_open) {
		closed_by_server++;
		/* what this receiver will now never get */
		for (int p = 0; p < opt.npub; p++)
			if (pubs[p].conn != (int)(c - conns) && c->exp)
				undelivered_closed += pubs[p].next_seq - c->exp[p];
	}
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->state = ST_CLOSED;
	free(c->hs);
	c->hs = NULL;
	if (was_open) {   /* fewer receivers: in-flight messages may be complete now */
		uint64_t t = now_ns();
		for (int p = 0; p < opt.npub; p++)
			pub_advance(&pubs[p], t);
	}
}

static void conn_start(struct conn *c)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		errors++;
		c->state = ST_CLOSED;
		logerr("socket: %s", strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->state = ST_CONNECTING;
	n_connecting++;
	int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
	if (r < 0 && errno != EINPROGRESS) {
		logerr("connect: %s", strerror(errno));
		close(fd);
		c->fd = -1;
		n_connecting--;
		errors++;
		c->state = ST_CLOSED;
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	c->want_out = 1;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		logerr("epoll_ctl: %s", strerror(errno));
		close(fd);
		c->fd = -1;
		n_connecting--;
		errors++;
		c->state = ST_CLOSED;
	}
}

/* ---------------------------------------------------------------- receive */
static void on_delivery(struct conn *c, const uint8_t *payload, uint64_t t)
{
	struct msghdr_b h;
	memcpy(&h, payload, sizeof h);
	if (h.magic != MAGIC || h.pub >= (uint32_t)opt.npub ||
	    h.check != check_word(h.pub, h.seq, h.ts)) {
		corrupt++;
		return;
	}
	struct pub *pb = &pubs[h.pub];
	if (h.seq >= pb->next_seq || pb->conn == (int)(c - conns)) {
		/* never sent, or our own message echoed back */
		corrupt++;
		return;
	}
	uint32_t w = (uint32_t)opt.window;
	uint64_t e = c->exp[h.pub];
	int counted = 1;
	if (h.seq == e) {
		c->exp[h.pub] = e + 1;
	} else if (h.seq > e) {
		/* the skipped ones are lost for this receiver; for flow control
		 * they count as done, so that a loss shows up as a count and
		 * does not stall the publisher's window */
		lost += h.seq - e;
		c->gapped[h.pub] = 1;
		for (uint64_t q = e > pb->base ? e : pb->base; q < h.seq; q++)
			pb->cnt[q % w]++;
		c->exp[h.pub] = h.seq + 1;
	} else if (c->gapped[h.pub]) {
		reordered++;          /* a late one, counted lost at its gap */
		if (lost)
			lost--;
		counted = 0;
	} else {
		duplicates++;
		counted = 0;
	}
	deliveries_total++;
	last_progress = t;
	if (measuring) {
		deliveries_meas++;
		hist_record(&lat, (t - h.ts) / 1000);
	}
	if (counted && h.seq >= pb->base)
		pb->cnt[h.seq % w]++;
	pub_advance(pb, t);
}

static void on_text(struct conn *c, const uint8_t *p, size_t len)
{
	if (c != &conns[0]) {
		unexpected++;
		return;
	}
	if (len && p[0] >= '0' && p[0] <= '9' && count_pending) {
		char tmp[32];
		size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
		memcpy(tmp, p, n);
		tmp[n] = 0;
		count_reply = strtoll(tmp, NULL, 10);
		count_pending = 0;
		return;
	}
	memcpy(stats_reply, p, len);
	stats_reply[len] = 0;
	stats_got = 1;
}

/* total length of the frame at p (header + payload), 0 if more bytes are
 * needed to know, SIZE_MAX for a frame this client refuses */
static size_t frame_total(const uint8_t *p, size_t n)
{
	if (n < 2)
		return 0;
	if (p[1] & 0x80)
		return SIZE_MAX;     /* masked frame from a server */
	uint8_t l = p[1] & 0x7f;
	size_t hl = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0);
	if (n < hl)
		return 0;
	uint64_t len = l;
	if (l == 126)
		len = ((uint64_t)p[2] << 8) | p[3];
	else if (l == 127)
		return SIZE_MAX;     /* > 64 KiB: never in this protocol */
	if (len > MAX_PAYLOAD)
		return SIZE_MAX;
	return hl + (size_t)len;
}

/* one complete frame; returns -1 if the connection was closed */
static int on_frame(struct conn *c, const uint8_t *f, size_t tot, uint64_t t)
{
	uint8_t op = f[0] & 0x0f;
	size_t hl = (f[1] & 0x7f) == 126 ? 4 : 2;
	const uint8_t *pl = f + hl;
	size_t len = tot - hl;
	if (!(f[0] & 0x80) || op == 0) {
		conn_close(c, "fragmented message from server (not expected here)", 1);
		return -1;
	}
	switch (op) {
	case 0x2:
		if (len != opt.size) {
			char m[96];
			snprintf(m, sizeof m, "binary message of %zu bytes, expected %zu", len, opt.size);
			conn_close(c, m, 1);
			return -1;
		}
		on_delivery(c, pl, t);
		return 0;
	case 0x1:
		on_text(c, pl, len);
		return 0;
	case 0x8: {
		int code = len >= 2 ? (pl[0] << 8) | pl[1] : 1005;
		if (c->close_sent) {
			conn_close(c, NULL, 0);   /* our close handshake completed */
			return -1;
		}
		if (first_close_code < 0)
			first_close_code = code;
		char m[96];
		snprintf(m, sizeof m, "closed by server with code %d", code);
		conn_close(c, m, 1);
		return -1;
	}
	case 0x9:
		pings++;
		out_frame(c, 0xA, pl, len);
		return conn_flush(c);
	case 0xA:
		return 0;
	default:
		conn_close(c, "unknown opcode from server", 1);
		return -1;
	}
}

static int parse(struct conn *c, const uint8_t *p, size_t n, uint64_t t)
{
	/* finish the frame left over from the last read */
	while (c->carry_len && n) {
		size_t tot = frame_total(c->carry, c->carry_len);
		size_t want;
		if (tot == SIZE_MAX)
			goto bad;
		if (tot)
			want = tot - c->carry_len;
		else if (c->carry_len < 2)
			want = 2 - c->carry_len;
		else
			want = ((c->carry[1] & 0x7f) == 126 ? 4 : 14) - c->carry_len;
		size_t take = want < n ? want : n;
		memcpy(c->carry + c->carry_len, p, take);
		c->carry_len += (uint16_t)take;
		p += take;
		n -= take;
		tot = frame_total(c->carry, c->carry_len);
		if (tot == SIZE_MAX)
			goto bad;
		if (tot && c->carry_len == tot) {
			c->carry_len = 0;
			if (on_frame(c, c->carry, tot, t) < 0)
				return -1;
		}
	}
	while (n) {
		size_t tot = frame_total(p, n);
		if (tot == SIZE_MAX)
			goto bad;
		if (tot == 0 || tot > n) {
			memcpy(c->carry, p, n);   /* n < MAX_FRAME here */
			c->carry_len = (uint16_t)n;
			return 0;
		}
		if (on_frame(c, p, tot, t) < 0)
			return -1;
		p += tot;
		n -= tot;
	}
	return 0;
bad:
	conn_close(c, "bad frame from server (masked, too large or 64-bit length)", 1);
	return -1;
}

/* ---------------------------------------------------------------- events */
static void conn_opened(struct conn *c)
{
	c->state = ST_OPEN;
	n_connecting--;
	n_open++;
	n_established_ever++;
	set_events(c, 0);
}

static void handshake_read(struct conn *c)
{
	if (!c->hs) {
		c->hs = malloc(HS_BUF_SIZE);
		if (!c->hs) {
			conn_close(c, "out of memory", 0);
			return;
		}
	}
	ssize_t r = read(c->fd, c->hs + c->hs_len, HS_BUF_SIZE - 1 - c->hs_len);
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		char m[128];
		snprintf(m, sizeof m, "handshake read: %s", strerror(errno));
		conn_close(c, m, 0);
		return;
	}
	if (r == 0) {
		conn_close(c, "closed during handshake", 0);
		return;
	}
	c->hs_len += (size_t)r;
	c->hs[c->hs_len] = 0;
	char *end = strstr(c->hs, "\r\n\r\n");
	if (!end) {
		if (c->hs_len >= HS_BUF_SIZE - 1)
			conn_close(c, "handshake response too large", 0);
		return;
	}
	*end = 0;
	if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
		char m[160];
		char *eol = strstr(c->hs, "\r\n");
		if (eol)
			*eol = 0;
		snprintf(m, sizeof m, "handshake rejected: %.100s", c->hs);
		conn_close(c, m, 0);
		return;
	}
	if (!strstr(c->hs, WS_ACCEPT)) {
		conn_close(c, "bad Sec-WebSocket-Accept", 0);
		return;
	}
	size_t used = (size_t)(end + 4 - c->hs);
	size_t extra = c->hs_len - used;
	uint8_t tmp[HS_BUF_SIZE];
	memcpy(tmp, c->hs + used, extra);
	free(c->hs);
	c->hs = NULL;
	conn_opened(c);
	if (extra)
		parse(c, tmp, extra, now_ns());
}

static void handle_event(struct conn *c, uint32_t ev)
{
	if (c->state == ST_CONNECTING) {
		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = 0;
		socklen_t l = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			char m[128];
			snprintf(m, sizeof m, "connect: %s", strerror(err));
			conn_close(c, m, 0);
			return;
		}
		c->state = ST_HANDSHAKE;
		c->req_off = 0;
	}
	if (c->state == ST_HANDSHAKE) {
		if (c->req_off < request_len) {
			ssize_t w = write(c->fd, request + c->req_off, request_len - c->req_off);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				char m[128];
				snprintf(m, sizeof m, "handshake write: %s", strerror(errno));
				conn_close(c, m, 0);
				return;
			}
			if (w > 0)
				c->req_off += (size_t)w;
			if (c->req_off >= request_len)
				set_events(c, 0);
		}
		if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
			handshake_read(c);
		return;
	}
	if (c->state != ST_OPEN)
		return;
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		for (int rounds = 0; rounds < 4; rounds++) {
			ssize_t r = read(c->fd, rbuf, sizeof rbuf);
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				if (errno == EINTR)
					continue;
				char m[128];
				snprintf(m, sizeof m, "read: %s", strerror(errno));
				conn_close(c, c->close_sent ? NULL : m, !c->close_sent);
				return;
			}
			if (r == 0) {
				conn_close(c, c->close_sent ? NULL : "connection closed by server (EOF)",
					   !c->close_sent);
				return;
			}
			if (measuring)
				reads_meas++;
			if (parse(c, rbuf, (size_t)r, now_ns()) < 0)
				return;
			if ((size_t)r < sizeof rbuf)
				break;
		}
	}
	if ((ev & EPOLLOUT) && c->state == ST_OPEN)
		conn_flush(c);
}

/* Queues every message the publishers' windows allow, one write each. */
static void publish_all(void)
{
	uint64_t t = 0;
	uint32_t w = (uint32_t)opt.window;
	for (int p = 0; p < opt.npub; p++) {
		struct pub *pb = &pubs[p];
		struct conn *c = &conns[pb->conn];
		if (c->state != ST_OPEN || pb->next_seq - pb->base >= w)
			continue;
		if (receivers_for(pb) <= 0)
			continue;
		if (!t)
			t = now_ns();
		while (pb->next_seq - pb->base < w) {
			struct msghdr_b h = { MAGIC, (uint32_t)p, pb->next_seq, t,
					      check_word((uint32_t)p, pb->next_seq, t) };
			uint8_t msg[MAX_PAYLOAD];
			memcpy(msg, &h, sizeof h);
			if (opt.size > sizeof h)
				memcpy(msg + sizeof h, payload_fill, opt.size - sizeof h);
			out_frame(c, 0x2, msg, opt.size);
			pb->ts[pb->next_seq % w] = t;
			pb->cnt[pb->next_seq % w] = 0;
			pb->next_seq++;
			if (measuring)
				pb->published_meas++;
		}
		conn_flush(c);
	}
}

static void send_text(struct conn *c, const char *s)
{
	if (c->state != ST_OPEN)
		return;
	out_frame(c, 0x1, s, strlen(s));
	conn_flush(c);
}

static void send_close(struct conn *c)
{
	if (c->state != ST_OPEN || c->close_sent)
		return;
	uint8_t code[2] = { 1000 >> 8, 1000 & 0xff };
	out_frame(c, 0x8, code, 2);
	c->close_sent = 1;
	conn_flush(c);
}

/* ---------------------------------------------------------------- main */
static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s -p port [-h host] [-u path] [-s subscribers] [-n publishers]\n"
		"          [-m size] [-w window] [-d secs] [-W warmup] [-D drain_secs]\n"
		"          [-T stall_secs] [-P pid[,pid...]] [-S] [-q]\n"
		"  -w  messages in flight per publisher (not yet received by all)\n"
		"  -S  skip the final \"stats\" query\n"
		"  -P  sample CPU time of these pids (summed) at the measurement edges\n",
		argv0);
	exit(2);
}

static void raise_nofile(int need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)need ? rl.rlim_max : (rlim_t)need;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

enum phase { PH_CONNECT, PH_READY, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_STATS, PH_CLOSE, PH_DONE };

int main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "h:p:u:s:n:m:w:d:W:D:T:P:Sq")) != -1) {
		switch (ch) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'u': opt.path = optarg; break;
		case 's': opt.nsub = atoi(optarg); break;
		case 'n': opt.npub = atoi(optarg); break;
		case 'm': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
		case 'w': opt.window = atoi(optarg); break;
		case 'd': opt.duration = atof(optarg); break;
		case 'W': opt.warmup = atof(optarg); break;
		case 'D': opt.drain = atof(optarg); break;
		case 'T': opt.stall = atof(optarg); break;
		case 'P': parse_pids(optarg); break;
		case 'S': opt.stats = 0; break;
		case 'q': opt.quiet = 1; break;
		default: usage(argv[0]);
		}
	}
	if (opt.port <= 0 || opt.port > 65535 || opt.nsub < 0 || opt.npub < 1 ||
	    opt.nsub + opt.npub < 2 || opt.nsub + opt.npub > 100000 ||
	    opt.window < 1 || opt.window > 1000000 || opt.duration <= 0 || opt.warmup < 0 ||
	    opt.drain < 0 || opt.stall <= 0 || opt.size < MIN_MSG || opt.size > MAX_PAYLOAD)
		usage(argv[0]);

	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
		struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
		if (getaddrinfo(opt.host, NULL, &hints, &res) != 0) {
			fprintf(stderr, "bcastgen: cannot resolve %s\n", opt.host);
			return 2;
		}
		addr.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
		freeaddrinfo(res);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	nconn = opt.nsub + opt.npub;
	raise_nofile(nconn + 64);
	memset(payload_fill, 'x', sizeof payload_fill);

	char hostport[300];
	snprintf(hostport, sizeof hostport, "%s:%d", opt.host, opt.port);
	size_t cap = strlen(opt.path) + strlen(hostport) + 256;
	request = malloc(cap);
	if (!request) {
		perror("malloc");
		return 2;
	}
	request_len = (size_t)snprintf(request, cap,
				       "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
				       "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
				       "Sec-WebSocket-Version: 13\r\n\r\n",
				       opt.path, hostport);

	conns = calloc((size_t)nconn, sizeof *conns);
	pubs = calloc((size_t)opt.npub, sizeof *pubs);
	uint64_t *exp = calloc((size_t)nconn * (size_t)opt.npub, sizeof *exp);
	uint8_t *gapped = calloc((size_t)nconn * (size_t)opt.npub, 1);
	if (!conns || !pubs || !exp || !gapped) {
		perror("calloc");
		return 2;
	}
	for (int i = 0; i < nconn; i++) {
		conns[i].fd = -1;
		conns[i].pub = i < opt.npub ? i : -1;
		conns[i].exp = exp + (size_t)i * (size_t)opt.npub;
		conns[i].gapped = gapped + (size_t)i * (size_t)opt.npub;
	}
	for (int p = 0; p < opt.npub; p++) {
		pubs[p].conn = p;
		pubs[p].cnt = calloc((size_t)opt.window, sizeof *pubs[p].cnt);
		pubs[p].ts = calloc((size_t)opt.window, sizeof *pubs[p].ts);
		if (!pubs[p].cnt || !pubs[p].ts) {
			perror("calloc");
			return 2;
		}
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("epoll_create1");
		return 2;
	}

	uint64_t t0 = now_ns();
	uint64_t deadline = t0 + (uint64_t)((10.0 + nconn / 1000.0) * 1e9);
	enum phase ph = PH_CONNECT;
	uint64_t meas_start = 0, meas_end = 0, drain_start = 0, drain_end = 0;
	uint64_t next_count = 0;
	unsigned long long cpu_t0 = 0, cpu_t1 = 0, user_t0 = 0, user_t1 = 0;
	unsigned long long per_t0[MAX_PIDS] = { 0 }, per_t1[MAX_PIDS] = { 0 };
	unsigned long long mach_t0 = 0, mach_t1 = 0;
	int cpu_ok = 0, mach_ok = 0;
	double self_cpu0 = 0, self_cpu1 = 0;
	int stalled = 0, drained = 0, interrupted = 0, ready_count_mismatch = 0;
	int clean_closes_pending = 0;
	const char *fail = NULL;
	int next = 0;
	struct epoll_event evs[1024];

	while (ph != PH_DONE) {
		uint64_t t = now_ns();

		if (stop_flag && !interrupted) {
			interrupted = 1;
			logerr("interrupted");
			if (ph < PH_WARMUP) {
				fail = "interrupted";
				break;
			}
			if (ph == PH_WARMUP || ph == PH_MEASURE)
				deadline = t;       /* end measuring now */
			else if (ph == PH_DRAIN || ph == PH_STATS)
				deadline = t;
		}

		switch (ph) {
		case PH_CONNECT:
			while (next < nconn && n_connecting < MAX_CONNECTING)
				conn_start(&conns[next++]);
			if ((next >= nconn && n_connecting == 0) || t >= deadline) {
				for (int i = 0; i < nconn; i++)
					if (conns[i].state == ST_CONNECTING || conns[i].state == ST_HANDSHAKE)
						conn_close(&conns[i], "establish timeout", 0);
				if (n_open < nconn) {
					fail = "not every connection could be established";
					break;
				}
				ph = PH_READY;
				deadline = t + READY_TIMEOUT_NS;
				next_count = t;
			}
			break;
		case PH_READY:
			if (count_reply >= nconn) {
				if (count_reply > nconn && !ready_count_mismatch) {
					ready_count_mismatch = 1;
					logerr("server counts %lld clients, we opened %d (others connected?)",
					       (long long)count_reply, nconn);
				}
				ph = PH_WARMUP;
				publishing = 1;
				last_progress = t;
				deadline = t + (uint64_t)(opt.warmup * 1e9);
				break;
			}
			if (conns[0].state != ST_OPEN || n_open < nconn) {
				fail = "a connection closed before the server confirmed all clients";
				break;
			}
			if (t >= deadline) {
				static char m[128];
				snprintf(m, sizeof m, "server did not confirm %d clients within 10 s (last count %lld)",
					 nconn, (long long)count_reply);
				fail = m;
				break;
			}
			if (!count_pending && t >= next_count) {
				count_pending = 1;
				send_text(&conns[0], "count");
				next_count = t + COUNT_INTERVAL_NS;
			}
			break;
		case PH_WARMUP:
		case PH_MEASURE:
			if (t - last_progress >= (uint64_t)(opt.stall * 1e9) && !stalled) {
				stalled = 1;
				logerr("stalled: no delivery for %.1f s", opt.stall);
				deadline = t;
			}
			if (n_open < 2) {
				logerr("fewer than 2 connections left");
				deadline = t;
			}
			if (t < deadline)
				break;
			if (ph == PH_WARMUP) {
				ph = PH_MEASURE;
				measuring = 1;
				if (npids)
					cpu_ok = proc_cpu_ticks_all(&cpu_t0, &user_t0, per_t0) == 0;
				self_cpu0 = cpu_self_s();
				mach_ok = machine_busy_ticks(&mach_t0) == 0;
				meas_start = now_ns();
				fprintf(stderr, "MEASURE_START\n");
				fflush(stderr);
				deadline = (stalled || interrupted) ? meas_start
								   : meas_start + (uint64_t)(opt.duration * 1e9);
				break;
			}
			meas_end = now_ns();
			if (npids && cpu_ok)
				cpu_ok = proc_cpu_ticks_all(&cpu_t1, &user_t1, per_t1) == 0;
			self_cpu1 = cpu_self_s();
			if (mach_ok)
				mach_ok = machine_busy_ticks(&mach_t1) == 0;
			measuring = 0;
			publishing = 0;
			fprintf(stderr, "MEASURE_END\n");
			fflush(stderr);
			ph = PH_DRAIN;
			drain_start = meas_end;
			deadline = (stalled || interrupted) ? meas_end : meas_end + (uint64_t)(opt.drain * 1e9);
			break;
		case PH_DRAIN: {
			int busy = 0;
			for (int p = 0; p < opt.npub; p++)
				if (pubs[p].base < pubs[p].next_seq)
					busy = 1;
			if (!busy || t >= deadline || n_open < 2) {
				drained = !busy;
				drain_end = t;
				if (busy)
					logerr("drain: messages still in flight after %.1f s", opt.drain);
				ph = PH_STATS;
				deadline = t + STATS_TIMEOUT_NS;
				if (opt.stats && conns[0].state == ST_OPEN && !interrupted)
					send_text(&conns[0], "stats");
				else
					deadline = t;
			}
			break;
		}
		case PH_STATS:
			if (stats_got || t >= deadline || conns[0].state != ST_OPEN) {
				ph = PH_CLOSE;
				deadline = t + CLOSE_TIMEOUT_NS;
				for (int i = 0; i < nconn; i++)
					send_close(&conns[i]);
			}
			break;
		case PH_CLOSE:
			if (n_open == 0 || t >= deadline) {
				clean_closes_pending = n_open;
				for (int i = 0; i < nconn; i++)
					if (conns[i].state == ST_OPEN)
						conn_close(&conns[i], NULL, 0);
				ph = PH_DONE;
			}
			break;
		case PH_DONE:
			break;
		}
		if (fail || ph == PH_DONE)
			break;
		if (publishing)
			publish_all();

		int timeout_ms = 100;
		if (deadline > t) {
			uint64_t rem = (deadline - t) / 1000000ull;
			if (rem < (uint64_t)timeout_ms)
				timeout_ms = rem ? (int)rem : 1;
		} else {
			timeout_ms = 0;
		}
		if (ph == PH_READY)
			timeout_ms = timeout_ms > 5 ? 5 : timeout_ms;
		int n = epoll_wait(epfd, evs, (int)(sizeof evs / sizeof evs[0]), timeout_ms);
		if (measuring)
			waits_meas++;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->state != ST_CLOSED && c->state != ST_FREE)
				handle_event(c, evs[i].events);
		}
	}

	if (fail) {
		fprintf(stderr, "bcastgen: %s (%d of %d connections open)\n", fail, n_open, nconn);
		return 1;
	}

	/* loss still open at live receivers after the drain */
	uint64_t total_published = 0;
	for (int p = 0; p < opt.npub; p++)
		total_published += pubs[p].next_seq;
	uint64_t undelivered = 0;
	for (int i = 0; i < nconn; i++) {
		struct conn *c = &conns[i];
		/* receivers alive at the end of the drain: closed only by us */
		if (c->state != ST_CLOSED || !c->close_sent)
			continue;
		for (int p = 0; p < opt.npub; p++)
			if (pubs[p].conn != i && pubs[p].next_seq > c->exp[p])
				undelivered += pubs[p].next_seq - c->exp[p];
	}
	lost += undelivered;

	double dur = (double)(meas_end - meas_start) / 1e9;
	if (dur <= 0)
		dur = 1e-9;
	uint64_t published_meas = 0;
	for (int p = 0; p < opt.npub; p++)
		published_meas += pubs[p].published_meas;
	int ok = !lost && !reordered && !duplicates && !corrupt && !closed_by_server &&
		 !errors && !stalled && drained && !interrupted;

	printf("{\"subscribers\":%d,\"publishers\":%d,\"connections\":%d,\"established\":%d,"
	       "\"size\":%zu,\"window\":%d,\"duration_s\":%.3f,"
	       "\"deliveries\":%llu,\"deliveries_per_s\":%.1f,"
	       "\"published\":%llu,\"published_per_s\":%.1f,"
	       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%llu,"
	       "\"complete_p50_us\":%.1f,\"complete_p99_us\":%.1f,",
	       opt.nsub, opt.npub, nconn, n_established_ever, opt.size, opt.window, dur,
	       (unsigned long long)deliveries_meas, (double)deliveries_meas / dur,
	       (unsigned long long)published_meas, (double)published_meas / dur,
	       hist_pct(&lat, 0.50), hist_pct(&lat, 0.99), hist_pct(&lat, 0.999),
	       (unsigned long long)lat.max,
	       hist_pct(&complete, 0.50), hist_pct(&complete, 0.99));
	printf("\"total_published\":%llu,\"total_deliveries\":%llu,"
	       "\"lost\":%llu,\"undelivered_after_drain\":%llu,\"reordered\":%llu,"
	       "\"duplicates\":%llu,\"corrupt\":%llu,\"unexpected_text\":%llu,"
	       "\"closed_by_server\":%llu,\"first_close_code\":%d,\"undelivered_closed\":%llu,"
	       "\"pings\":%llu,\"errors\":%llu,\"stalled\":%s,\"drained\":%s,\"drain_s\":%.3f,"
	       "\"not_closed_cleanly\":%d,\"interrupted\":%s,",
	       (unsigned long long)total_published, (unsigned long long)deliveries_total,
	       (unsigned long long)lost, (unsigned long long)undelivered,
	       (unsigned long long)reordered, (unsigned long long)duplicates,
	       (unsigned long long)corrupt, (unsigned long long)unexpected,
	       (unsigned long long)closed_by_server, first_close_code,
	       (unsigned long long)undelivered_closed, (unsigned long long)pings,
	       (unsigned long long)errors, stalled ? "true" : "false",
	       drained ? "true" : "false",
	       drain_end > drain_start ? (double)(drain_end - drain_start) / 1e9 : 0.0,
	       clean_closes_pending, interrupted ? "true" : "false");
	printf("\"client_cpu_s\":%.3f,\"client_cpu_pct\":%.1f,"
	       "\"client_ns_per_delivery\":%.1f,\"deliveries_per_read\":%.2f,"
	       "\"reads_per_wait\":%.2f",
	       self_cpu1 - self_cpu0, (self_cpu1 - self_cpu0) / dur * 100.0,
	       deliveries_meas ? (self_cpu1 - self_cpu0) * 1e9 / (double)deliveries_meas : 0.0,
	       reads_meas ? (double)deliveries_meas / (double)reads_meas : 0.0,
	       waits_meas ? (double)reads_meas / (double)waits_meas : 0.0);
	if (npids && cpu_ok) {
		double hz = (double)sysconf(_SC_CLK_TCK);
		double cpu_s = (double)(cpu_t1 - cpu_t0) / hz;
		double user_s = (double)(user_t1 - user_t0) / hz;
		printf(",\"server_cpu_s\":%.3f,\"server_cpu_pct\":%.1f,"
		       "\"server_cpu_us_per_delivery\":%.4f,\"server_user_us_per_delivery\":%.4f",
		       cpu_s, cpu_s / dur * 100.0,
		       deliveries_meas ? cpu_s * 1e6 / (double)deliveries_meas : 0.0,
		       deliveries_meas ? user_s * 1e6 / (double)deliveries_meas : 0.0);
		printf(",\"server_pids\":[");
		for (int i = 0; i < npids; i++)
			printf("%s%d", i ? "," : "", pids[i]);
		printf("],\"server_cpu_s_per_pid\":[");
		for (int i = 0; i < npids; i++)
			printf("%s%.3f", i ? "," : "", (double)(per_t1[i] - per_t0[i]) / hz);
		printf("]");
	}
	if (mach_ok) {
		double hz = (double)sysconf(_SC_CLK_TCK);
		printf(",\"machine_busy_cpu_s\":%.3f,\"ncpu\":%ld",
		       (double)(mach_t1 - mach_t0) / hz, sysconf(_SC_NPROCESSORS_ONLN));
	}
	if (stats_got) {
		printf(",\"server_stats\":");
		json_string(stdout, stats_reply);
	}
	printf(",\"ok\":%s}\n", ok ? "true" : "false");
	fflush(stdout);
	if (!opt.quiet) {
		if (pings)
			fprintf(stderr, "bcastgen: answered %llu pings\n", (unsigned long long)pings);
		if (errors)
			fprintf(stderr, "bcastgen: %llu connection errors\n", (unsigned long long)errors);
	}
	return 0;
}
