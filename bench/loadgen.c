/*
 * loadgen - single-threaded epoll WebSocket load generator for the snowd
 * benchmarks.  libc, and OpenSSL for -T (wss://: TLS on every connection;
 * the certificate is not verified).
 *
 * Echo mode (default): opens -c connections, keeps -w masked messages of
 * -s bytes in flight on each, and measures round trips and their latency
 * for -d seconds after a -W seconds warmup.  Prints one JSON line to stdout.
 *
 * Idle mode (-k): opens -c connections, completes the handshakes, writes
 * "READY" to stderr, prints one JSON line and holds the connections open,
 * idle, for -d seconds.
 *
 * Measurement markers: "MEASURE_START" / "MEASURE_END" lines are written to
 * stderr at the exact edges of the measured interval.  With -P PID the
 * generator additionally samples the CPU time (/proc/PID/stat utime+stime)
 * and, in idle mode, VmRSS of that process itself at those edges, so a
 * driving script does not depend on how quickly it reacts to the markers.
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_CONNECTING 500          /* connects/handshakes in progress at once */
#define RBUF_SIZE (256 * 1024)      /* shared read buffer */
#define HS_BUF_SIZE 2048            /* handshake response buffer */
#define MAX_IOV 64
#define MAX_ERR_MSGS 20

/* fixed key from RFC 6455 section 1.3 and its accept value */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* ---------------------------------------------------------------- histogram */
/* Log-linear buckets over microseconds: values < 128 are exact, above that
 * each power of two is split into 64 sub-buckets (< 1.6 % relative error). */
#define H_SUB 64
#define H_MAXEXP 40
#define H_NBUCKETS ((H_MAXEXP + 2) * H_SUB)

static uint64_t hist[H_NBUCKETS];
static uint64_t hist_total;

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

static void hist_record(uint64_t us)
{
	hist[hist_index(us)]++;
	hist_total++;
}

static double hist_pct(double p)
{
	if (!hist_total)
		return 0;
	uint64_t target = (uint64_t)(p * (double)hist_total + 0.999999);
	if (target < 1)
		target = 1;
	uint64_t acc = 0;
	for (int i = 0; i < H_NBUCKETS; i++) {
		acc += hist[i];
		if (acc >= target)
			return hist_value(i);
	}
	return hist_value(H_NBUCKETS - 1);
}

/* ---------------------------------------------------------------- state */
enum cstate { ST_FREE = 0, ST_CONNECTING, ST_TLS, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

struct conn {
	int fd;
	enum cstate state;
	SSL *ssl;                  /* -T: TLS, else NULL */
	unsigned want_out : 1;     /* EPOLLOUT registered */
	/* handshake */
	size_t req_off;            /* bytes of upgrade request sent */
	char *hs;                  /* response buffer (freed once open) */
	size_t hs_len;
	/* frame parser (streaming: payload is skipped, never stored) */
	uint8_t hdr[14];
	unsigned hdr_len;
	unsigned hdr_need;
	uint64_t pay_left;         /* payload bytes left in current frame */
	uint64_t msg_len;          /* accumulated length of current message */
	uint8_t opcode;            /* opcode of current frame */
	uint8_t fin;
	/* sending: npend copies of the prebuilt frame, first one from woff */
	uint32_t npend;
	size_t woff;
	/* send-timestamp ring (ns), FIFO because echoes return in order */
	uint64_t *ts;
	uint32_t ts_head, ts_count;
};

static struct {
	const char *host;
	int port;
	const char *path;
	int nconn;
	size_t size;
	int window;
	double duration;
	double warmup;
	int idle;
	int binary;
	int quiet;
	int pid;                   /* first of pids[], 0 = none */
	int tls;
} opt = { "127.0.0.1", 0, "/echo", 100, 32, 1, 10, 2, 0, 0, 0, 0, 0 };

static SSL_CTX *ssl_ctx;

/* -P PID[,PID...]: every process of the server (e.g. a master and its
 * workers); CPU time and VmRSS are summed over all of them. */
#define MAX_PIDS 64
static int pids[MAX_PIDS];
static int npids;

static struct conn *conns;
static int epfd;
static struct sockaddr_in addr;
static char *request;
static size_t request_len;
static uint8_t *frame;     /* prebuilt masked frame, shared by all connections */
static size_t frame_len;
static uint8_t rbuf[RBUF_SIZE];

static int n_started, n_connecting, n_open, n_established_ever;
static uint64_t errors, err_msgs;
static int measuring;      /* 1 while inside measured interval */
static uint64_t round_trips;
static uint64_t ignored_ctrl;
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void logerr(const char *fmt, ...)
{
	if (opt.quiet && err_msgs >= 1)
		return;
	if (err_msgs++ >= MAX_ERR_MSGS) {
		if (err_msgs == MAX_ERR_MSGS + 1)
			fprintf(stderr, "loadgen: further error messages suppressed\n");
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
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
/* Server CPU ticks, user+system and user alone. */
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
	/* comm may contain spaces: fields are counted after the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2; /* now at field 3 (state) */
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

static long long proc_rss_bytes(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long long kb = -1;
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "VmRSS:", 6)) {
			kb = strtoll(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* Sums over pids[]; per-pid ticks go to per[] when it is not NULL.
 * Fails if any of the processes cannot be read. */
static int proc_cpu_ticks_all(unsigned long long *ticks,
			      unsigned long long *user_ticks,
			      unsigned long long *per)
{
	unsigned long long t = 0, u = 0;
	for (int i = 0; i < npids; i++) {
		unsigned long long ti, ui;
		if (proc_cpu_ticks(pids[i], &ti, &ui) != 0)
			return -1;
		t += ti;
		u += ui;
		if (per)
			per[i] = ti;
	}
	*ticks = t;
	*user_ticks = u;
	return 0;
}

static long long proc_rss_bytes_all(void)
{
	long long sum = 0;
	for (int i = 0; i < npids; i++) {
		long long r = proc_rss_bytes(pids[i]);
		if (r < 0)
			return -1;
		sum += r;
	}
	return sum;
}

/* Busy CPU ticks of the whole machine (all CPUs, everything but idle and
 * iowait), from the first line of /proc/stat.  With the server's and our
 * own CPU time it shows how much other load ran during the measurement. */
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
	unsigned long long v[10] = { 0 };
	int k = sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
		       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	if (k < 4)
		return -1;
	/* guest time (v[8], v[9]) is already included in user and nice */
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
			fprintf(stderr, "loadgen: bad or too many pids in -P '%s'\n", arg);
			exit(2);
		}
		pids[npids++] = pid;
	}
	free(copy);
	opt.pid = npids ? pids[0] : 0;
}

/* ---------------------------------------------------------------- setup */
static void build_frame(void)
{
	static const uint8_t mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
	size_t hl = 2 + (opt.size < 126 ? 0 : opt.size <= 0xffff ? 2 : 8) + 4;
	frame_len = hl + opt.size;
	frame = malloc(frame_len);
	if (!frame) {
		perror("malloc");
		exit(2);
	}
	uint8_t *p = frame;
	*p++ = 0x80 | (opt.binary ? 0x2 : 0x1);
	if (opt.size < 126) {
		*p++ = 0x80 | (uint8_t)opt.size;
	} else if (opt.size <= 0xffff) {
		*p++ = 0x80 | 126;
		*p++ = (uint8_t)(opt.size >> 8);
		*p++ = (uint8_t)opt.size;
	} else {
		*p++ = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			*p++ = (uint8_t)((uint64_t)opt.size >> (i * 8));
	}
	memcpy(p, mask, 4);
	p += 4;
	for (size_t i = 0; i < opt.size; i++)
		p[i] = (uint8_t)('a' + i % 26) ^ mask[i & 3];
}

static void build_request(void)
{
	char hostport[300];
	snprintf(hostport, sizeof hostport, "%s:%d", opt.host, opt.port);
	size_t cap = strlen(opt.path) + strlen(hostport) + 256;
	request = malloc(cap);
	if (!request) {
		perror("malloc");
		exit(2);
	}
	int n = snprintf(request, cap,
			 "GET %s HTTP/1.1\r\n"
			 "Host: %s\r\n"
			 "Upgrade: websocket\r\n"
			 "Connection: Upgrade\r\n"
			 "Sec-WebSocket-Key: " WS_KEY "\r\n"
			 "Sec-WebSocket-Version: 13\r\n"
			 "\r\n",
			 opt.path, hostport);
	request_len = (size_t)n;
}

/* ---------------------------------------------------------------- conns */
static void set_events(struct conn *c, int want_out)
{
	if (c->want_out == (unsigned)!!want_out)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0),
				  .data.ptr = c };
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = !!want_out;
}

static void conn_close(struct conn *c, const char *why)
{
	if (c->state == ST_CLOSED || c->state == ST_FREE)
		return;
	if (c->state == ST_CONNECTING || c->state == ST_TLS ||
	    c->state == ST_HANDSHAKE)
		n_connecting--;
	else if (c->state == ST_OPEN)
		n_open--;
	errors++;
	logerr("connection %d: %s", (int)(c - conns), why);
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	close(c->fd);
	c->fd = -1;
	c->state = ST_CLOSED;
	free(c->hs);
	c->hs = NULL;
}

static void conn_start(struct conn *c)
{
	n_started++;
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
		char m[128];
		snprintf(m, sizeof m, "connect: %s", strerror(errno));
		close(fd);
		c->fd = -1;
		n_connecting--;
		errors++;
		c->state = ST_CLOSED;
		logerr("%s", m);
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

/* ---------------------------------------------------------------- TLS */
/* read(2) and writev(2), or their TLS counterparts, with the same
 * results: EAGAIN while OpenSSL waits for the socket. */
static ssize_t tls_status(struct conn *c)
{
	switch (SSL_get_error(c->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

static ssize_t io_read(struct conn *c, void *buf, size_t n)
{
	size_t got;

	if (!c->ssl)
		return read(c->fd, buf, n);
	if (SSL_read_ex(c->ssl, buf, n, &got))
		return (ssize_t)got;
	return tls_status(c);
}

/* Over TLS, one record of at most 16 KiB gathered from iov; a retry
 * after EAGAIN offers the same bytes first (the frames are copies of one
 * another), as OpenSSL requires. */
static ssize_t io_writev(struct conn *c, const struct iovec *iov, int n)
{
	static uint8_t rec[16384];
	size_t len = 0, done;

	if (!c->ssl)
		return writev(c->fd, iov, n);
	for (int i = 0; i < n && len < sizeof rec; i++) {
		size_t k = iov[i].iov_len < sizeof rec - len ? iov[i].iov_len
							      : sizeof rec - len;
		memcpy(rec + len, iov[i].iov_base, k);
		len += k;
	}
	if (SSL_write_ex(c->ssl, rec, len, &done))
		return (ssize_t)done;
	return tls_status(c);
}

static ssize_t io_write(struct conn *c, const void *p, size_t n)
{
	struct iovec iov = { (void *)p, n };
	return io_writev(c, &iov, 1);
}

/* write as much of the pending frames as the socket takes */
static int conn_flush(struct conn *c)
{
	while (c->npend) {
		struct iovec iov[MAX_IOV];
		int n = 0;
		uint32_t k = c->npend < MAX_IOV ? c->npend : MAX_IOV;
		iov[n].iov_base = frame + c->woff;
		iov[n].iov_len = frame_len - c->woff;
		n++;
		for (uint32_t i = 1; i < k; i++, n++) {
			iov[n].iov_base = frame;
			iov[n].iov_len = frame_len;
		}
		ssize_t w = io_writev(c, iov, n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_events(c, 1);
				return 0;
			}
			if (errno == EINTR)
				continue;
			char m[128];
			snprintf(m, sizeof m, "write: %s", strerror(errno));
			conn_close(c, m);
			return -1;
		}
		size_t left = (size_t)w;
		size_t first = frame_len - c->woff;
		if (left < first) {
			c->woff += left;
			if (c->ssl)
				continue;   /* one record at a time: not full */
			set_events(c, 1);
			return 0;
		}
		left -= first;
		c->npend--;
		c->woff = 0;
		size_t full = left / frame_len;
		c->npend -= (uint32_t)full;
		c->woff = left % frame_len;
		if (c->woff && !c->ssl) {
			set_events(c, 1);
			return 0;
		}
	}
	set_events(c, 0);
	return 0;
}

static void conn_queue(struct conn *c, uint64_t t)
{
	uint32_t pos = (c->ts_head + c->ts_count) % (uint32_t)opt.window;
	c->ts[pos] = t;
	c->ts_count++;
	c->npend++;
}

static void on_message(struct conn *c, uint64_t t)
{
	if (c->msg_len != opt.size) {
		char m[96];
		snprintf(m, sizeof m, "echo of %llu bytes, expected %zu",
			 (unsigned long long)c->msg_len, opt.size);
		conn_close(c, m);
		return;
	}
	if (!c->ts_count) {
		conn_close(c, "unexpected message (nothing in flight)");
		return;
	}
	uint64_t sent = c->ts[c->ts_head];
	c->ts_head = (c->ts_head + 1) % (uint32_t)opt.window;
	c->ts_count--;
	if (measuring) {
		round_trips++;
		hist_record((t - sent) / 1000);
	}
	if (!stop_flag)
		conn_queue(c, t);
}

/* streaming frame parser; returns -1 if the connection was closed */
static int parse(struct conn *c, const uint8_t *p, size_t n, uint64_t t)
{
	while (n) {
		if (c->pay_left == 0 && c->hdr_need) {
			/* collecting header bytes */
			while (n && c->hdr_len < c->hdr_need) {
				c->hdr[c->hdr_len++] = *p++;
				n--;
				if (c->hdr_len == 2) {
					if (c->hdr[1] & 0x80) {
						conn_close(c, "masked frame from server");
						return -1;
					}
					uint8_t l = c->hdr[1] & 0x7f;
					c->hdr_need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0);
				}
			}
			if (c->hdr_len < c->hdr_need)
				return 0;
			uint8_t l = c->hdr[1] & 0x7f;
			uint64_t len = l;
			if (l == 126)
				len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
			else if (l == 127) {
				len = 0;
				for (int i = 0; i < 8; i++)
					len = (len << 8) | c->hdr[2 + i];
			}
			c->fin = c->hdr[0] >> 7;
			c->opcode = c->hdr[0] & 0x0f;
			c->hdr_len = 0;
			c->hdr_need = 0; /* header complete, now payload */
			c->pay_left = len;
			if (c->opcode == 0x8) {
				conn_close(c, "close frame from server");
				return -1;
			}
			if (c->opcode == 0x1 || c->opcode == 0x2)
				c->msg_len = 0;
			if (c->opcode >= 0x8)
				ignored_ctrl++; /* ping/pong: payload skipped */
			else
				c->msg_len += len;
		}
		if (c->pay_left) {
			uint64_t take = c->pay_left < n ? c->pay_left : n;
			c->pay_left -= take;
			p += take;
			n -= take;
		}
		if (c->pay_left == 0 && c->hdr_need == 0) {
			/* frame done */
			if (c->opcode < 0x8 && c->fin) {
				on_message(c, t);
				if (c->state != ST_OPEN)
					return -1;
			}
			c->hdr_need = 2;
		}
	}
	return 0;
}

static void conn_opened(struct conn *c, uint64_t t)
{
	c->state = ST_OPEN;
	n_connecting--;
	n_open++;
	n_established_ever++;
	c->hdr_need = 2;
	if (!opt.idle) {
		for (int i = 0; i < opt.window; i++)
			conn_queue(c, t);
		conn_flush(c);
	} else {
		set_events(c, 0);
	}
}

static void handshake_read(struct conn *c)
{
	if (!c->hs) {
		c->hs = malloc(HS_BUF_SIZE);
		if (!c->hs) {
			conn_close(c, "out of memory");
			return;
		}
	}
	ssize_t r = io_read(c, c->hs + c->hs_len, HS_BUF_SIZE - 1 - c->hs_len);
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		char m[128];
		snprintf(m, sizeof m, "handshake read: %s", strerror(errno));
		conn_close(c, m);
		return;
	}
	if (r == 0) {
		conn_close(c, "closed during handshake");
		return;
	}
	c->hs_len += (size_t)r;
	c->hs[c->hs_len] = 0;
	char *end = strstr(c->hs, "\r\n\r\n");
	if (!end) {
		if (c->hs_len >= HS_BUF_SIZE - 1)
			conn_close(c, "handshake response too large");
		return;
	}
	*end = 0;
	if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
		char m[160];
		char *eol = strstr(c->hs, "\r\n");
		if (eol)
			*eol = 0;
		snprintf(m, sizeof m, "handshake rejected: %.100s", c->hs);
		conn_close(c, m);
		return;
	}
	if (!strstr(c->hs, WS_ACCEPT)) {
		conn_close(c, "bad Sec-WebSocket-Accept");
		return;
	}
	size_t used = (size_t)(end + 4 - c->hs);
	size_t extra = c->hs_len - used;
	uint8_t tmp[HS_BUF_SIZE];
	memcpy(tmp, c->hs + used, extra);
	free(c->hs);
	c->hs = NULL;
	uint64_t t = now_ns();
	conn_opened(c, t);
	if (extra && c->state == ST_OPEN)
		parse(c, tmp, extra, t);
}

static void handle_event(struct conn *c, uint32_t ev)
{
	if (c->state == ST_CONNECTING) {
		if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
			int err = 0;
			socklen_t l = sizeof err;
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (err) {
				char m[128];
				snprintf(m, sizeof m, "connect: %s", strerror(err));
				conn_close(c, m);
				return;
			}
			c->state = ST_HANDSHAKE;
			c->req_off = 0;
			if (opt.tls) {
				c->ssl = SSL_new(ssl_ctx);
				if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
					conn_close(c, "SSL_new failed");
					return;
				}
				SSL_set_connect_state(c->ssl);
				c->state = ST_TLS;
			}
		} else {
			return;
		}
	}
	if (c->state == ST_TLS) {
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int err = SSL_get_error(c->ssl, r);
			if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
				set_events(c, err == SSL_ERROR_WANT_WRITE);
				return;
			}
			char m[160];
			snprintf(m, sizeof m, "TLS handshake: %s",
				 ERR_reason_error_string(ERR_peek_error()) ?
				 ERR_reason_error_string(ERR_peek_error()) : strerror(errno));
			conn_close(c, m);
			return;
		}
		c->state = ST_HANDSHAKE;
		set_events(c, 1);
	}
	if (c->state == ST_HANDSHAKE) {
		if (c->req_off < request_len) {
			ssize_t w = io_write(c, request + c->req_off, request_len - c->req_off);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				char m[128];
				snprintf(m, sizeof m, "handshake write: %s", strerror(errno));
				conn_close(c, m);
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
		uint32_t before = c->npend;
		/* Over TLS, read until OpenSSL waits for the socket: bytes it
		 * holds would never be announced by epoll. */
		for (int rounds = 0; rounds < 16 || c->ssl; rounds++) {
			ssize_t r = io_read(c, rbuf, sizeof rbuf);
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				if (errno == EINTR)
					continue;
				char m[128];
				snprintf(m, sizeof m, "read: %s", strerror(errno));
				conn_close(c, m);
				return;
			}
			if (r == 0) {
				conn_close(c, "closed by server");
				return;
			}
			if (parse(c, rbuf, (size_t)r, now_ns()) < 0)
				return;
			if ((size_t)r < sizeof rbuf && !c->ssl)
				break;
		}
		/* all replacements produced by this read go out in one writev */
		if (c->npend != before || (ev & EPOLLOUT))
			conn_flush(c);
	} else if (ev & EPOLLOUT) {
		conn_flush(c);
	}
}

/* ---------------------------------------------------------------- main */
static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s -p port [-h host] [-u path] [-c conns] [-s size] [-w window]\n"
		"          [-d seconds] [-W warmup_seconds] [-k] [-b] [-q] [-T] [-P pid[,pid...]]\n"
		"  -k  idle mode: hold connections open without traffic\n"
		"  -T  TLS (wss://), without verifying the certificate\n"
		"  -b  binary frames (default text)\n"
		"  -P  sample CPU time / VmRSS of these pids (summed) at the measurement edges\n",
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

static double cpu_self_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "h:p:u:c:s:w:d:W:kbqTP:")) != -1) {
		switch (ch) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'u': opt.path = optarg; break;
		case 'c': opt.nconn = atoi(optarg); break;
		case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
		case 'w': opt.window = atoi(optarg); break;
		case 'd': opt.duration = atof(optarg); break;
		case 'W': opt.warmup = atof(optarg); break;
		case 'k': opt.idle = 1; break;
		case 'b': opt.binary = 1; break;
		case 'q': opt.quiet = 1; break;
		case 'T': opt.tls = 1; break;
		case 'P': parse_pids(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (opt.port <= 0 || opt.port > 65535 || opt.nconn <= 0 || opt.window <= 0 ||
	    opt.duration <= 0 || opt.warmup < 0 || opt.size > (64u << 20))
		usage(argv[0]);

	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
		struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
		if (getaddrinfo(opt.host, NULL, &hints, &res) != 0) {
			fprintf(stderr, "loadgen: cannot resolve %s\n", opt.host);
			return 2;
		}
		addr.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
		freeaddrinfo(res);
	}

	if (opt.tls) {
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (!ssl_ctx) {
			fprintf(stderr, "loadgen: SSL_CTX_new failed\n");
			return 2;
		}
		SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				 SSL_MODE_RELEASE_BUFFERS);
		SSL_CTX_set_read_ahead(ssl_ctx, 1);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	raise_nofile(opt.nconn + 64);
	build_frame();
	build_request();

	conns = calloc((size_t)opt.nconn, sizeof *conns);
	if (!conns) {
		perror("calloc");
		return 2;
	}
	if (!opt.idle) {
		uint64_t *ts = calloc((size_t)opt.nconn * (size_t)opt.window, sizeof *ts);
		if (!ts) {
			perror("calloc");
			return 2;
		}
		for (int i = 0; i < opt.nconn; i++)
			conns[i].ts = ts + (size_t)i * (size_t)opt.window;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("epoll_create1");
		return 2;
	}

	long long rss_before = -1, rss_after = -1;
	if (opt.pid && opt.idle)
		rss_before = proc_rss_bytes_all();

	/* Phase deadlines.  Establishing is bounded: 10 s plus 1 s per 1000 conns. */
	uint64_t t0 = now_ns();
	uint64_t est_deadline = t0 + (uint64_t)((10.0 + opt.nconn / 1000.0) * 1e9);
	uint64_t phase_end = 0;         /* end of current timed phase */
	int phase = 0;                  /* 0 establishing, 1 warmup/ready-wait, 2 measuring/idle hold */
	uint64_t meas_start = 0, meas_end = 0;
	unsigned long long cpu_t0 = 0, cpu_t1 = 0, user_t0 = 0, user_t1 = 0;
	unsigned long long per_t0[MAX_PIDS] = { 0 }, per_t1[MAX_PIDS] = { 0 };
	unsigned long long mach_t0 = 0, mach_t1 = 0;
	int mach_ok = 0;
	int cpu_ok = 0;
	double self_cpu0 = 0, self_cpu1 = 0;
	int next = 0;
	struct epoll_event evs[512];

	for (;;) {
		uint64_t t = now_ns();
		if (stop_flag && phase < 2) {
			fprintf(stderr, "loadgen: interrupted\n");
			return 3;
		}
		/* start new connections, paced */
		while (phase == 0 && next < opt.nconn && n_connecting < MAX_CONNECTING)
			conn_start(&conns[next++]);

		if (phase == 0 && ((next >= opt.nconn && n_connecting == 0) || t >= est_deadline)) {
			if (t >= est_deadline && n_connecting)
				logerr("%d connections still pending at establish deadline", n_connecting);
			for (int i = 0; i < opt.nconn; i++)
				if (conns[i].state == ST_CONNECTING || conns[i].state == ST_TLS ||
				    conns[i].state == ST_HANDSHAKE)
					conn_close(&conns[i], "establish timeout");
			if (n_open == 0) {
				fprintf(stderr, "loadgen: no connection could be established\n");
				return 1;
			}
			if (opt.idle) {
				fprintf(stderr, "READY\n");
				fflush(stderr);
				phase = 1;
				phase_end = t + 1000000000ull; /* let the server settle 1 s */
			} else {
				phase = 1;
				phase_end = t + (uint64_t)(opt.warmup * 1e9);
			}
			continue;
		}
		if (phase == 1 && t >= phase_end) {
			if (opt.idle) {
				if (opt.pid)
					rss_after = proc_rss_bytes_all();
				printf("{\"mode\":\"idle\",\"connections\":%d,\"established\":%d,\"errors\":%llu",
				       opt.nconn, n_open, (unsigned long long)errors);
				if (opt.pid && rss_before >= 0 && rss_after >= 0)
					printf(",\"rss_before\":%lld,\"rss_after\":%lld,\"bytes_per_conn\":%.1f",
					       rss_before, rss_after,
					       n_open ? (double)(rss_after - rss_before) / n_open : 0.0);
				printf("}\n");
				fflush(stdout);
				phase = 2;
				phase_end = t + (uint64_t)(opt.duration * 1e9);
			} else {
				measuring = 1;
				round_trips = 0;
				memset(hist, 0, sizeof hist);
				hist_total = 0;
				if (opt.pid)
					cpu_ok = proc_cpu_ticks_all(&cpu_t0, &user_t0, per_t0) == 0;
				self_cpu0 = cpu_self_s();
				mach_ok = machine_busy_ticks(&mach_t0) == 0;
				meas_start = now_ns();
				fprintf(stderr, "MEASURE_START\n");
				fflush(stderr);
				phase = 2;
				phase_end = meas_start + (uint64_t)(opt.duration * 1e9);
			}
			continue;
		}
		if (phase == 2 && (t >= phase_end || stop_flag)) {
			if (!opt.idle) {
				meas_end = now_ns();
				if (opt.pid && cpu_ok)
					cpu_ok = proc_cpu_ticks_all(&cpu_t1, &user_t1, per_t1) == 0;
				self_cpu1 = cpu_self_s();
				if (mach_ok)
					mach_ok = machine_busy_ticks(&mach_t1) == 0;
				measuring = 0;
				fprintf(stderr, "MEASURE_END\n");
				fflush(stderr);
			}
			break;
		}
		if (!opt.idle && phase >= 1 && n_open == 0) {
			fprintf(stderr, "loadgen: all connections lost\n");
			if (phase == 1)
				return 1;
			meas_end = now_ns();
			if (opt.pid && cpu_ok)
				cpu_ok = proc_cpu_ticks_all(&cpu_t1, &user_t1, per_t1) == 0;
			self_cpu1 = cpu_self_s();
			if (mach_ok)
				mach_ok = machine_busy_ticks(&mach_t1) == 0;
			measuring = 0;
			fprintf(stderr, "MEASURE_END\n");
			fflush(stderr);
			break;
		}

		/* wait, never beyond the next deadline */
		uint64_t dl = phase == 0 ? est_deadline : phase_end;
		uint64_t rem = dl > t ? dl - t : 0;
		int timeout_ms = (int)(rem / 1000000ull);
		if (timeout_ms > 100)
			timeout_ms = 100;
		if (rem && timeout_ms == 0)
			timeout_ms = 1;
		int n = epoll_wait(epfd, evs, 512, timeout_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			return 2;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->state != ST_CLOSED && c->state != ST_FREE)
				handle_event(c, evs[i].events);
		}
	}

	if (!opt.idle) {
		double dur = (double)(meas_end - meas_start) / 1e9;
		if (dur <= 0)
			dur = 1e-9;
		printf("{\"connections\":%d,\"established\":%d,\"size\":%zu,\"window\":%d,"
		       "\"duration_s\":%.3f,\"round_trips\":%llu,\"rtt_per_s\":%.1f,"
		       "\"mb_per_s\":%.3f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
		       "\"errors\":%llu,\"client_cpu_s\":%.3f",
		       opt.nconn, n_established_ever, opt.size, opt.window, dur,
		       (unsigned long long)round_trips, (double)round_trips / dur,
		       (double)round_trips * (double)opt.size / dur / 1e6,
		       hist_pct(0.50), hist_pct(0.99), hist_pct(0.999),
		       (unsigned long long)errors, self_cpu1 - self_cpu0);
		if (opt.pid && cpu_ok) {
			double hz = (double)sysconf(_SC_CLK_TCK);
			double cpu_s = (double)(cpu_t1 - cpu_t0) / hz;
			double user_s = (double)(user_t1 - user_t0) / hz;
			printf(",\"server_cpu_s\":%.3f,\"server_cpu_us_per_rt\":%.3f", cpu_s,
			       round_trips ? cpu_s * 1e6 / (double)round_trips : 0.0);
			printf(",\"server_user_us_per_rt\":%.3f",
			       round_trips ? user_s * 1e6 / (double)round_trips : 0.0);
			if (npids > 1) {
				printf(",\"server_pids\":[");
				for (int i = 0; i < npids; i++)
					printf("%s%d", i ? "," : "", pids[i]);
				printf("],\"server_cpu_s_per_pid\":[");
				for (int i = 0; i < npids; i++)
					printf("%s%.3f", i ? "," : "",
					       (double)(per_t1[i] - per_t0[i]) / hz);
				printf("]");
			}
		}
		if (mach_ok) {
			double hz = (double)sysconf(_SC_CLK_TCK);
			printf(",\"machine_busy_cpu_s\":%.3f,\"ncpu\":%ld",
			       (double)(mach_t1 - mach_t0) / hz, sysconf(_SC_NPROCESSORS_ONLN));
		}
		printf("}\n");
		fflush(stdout);
	}
	if (ignored_ctrl && !opt.quiet)
		fprintf(stderr, "loadgen: %llu control frames ignored\n",
			(unsigned long long)ignored_ctrl);
	if (errors && !opt.quiet)
		fprintf(stderr, "loadgen: %llu connection errors\n", (unsigned long long)errors);
	return 0;
}
