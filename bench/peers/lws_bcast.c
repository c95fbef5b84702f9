/*
 * lws_bcast - broadcast server on libwebsockets, a peer for bench/bcast.sh.
 *
 *   lws_bcast PORT [RX_BUFFER_BYTES]
 *
 * Listens on 127.0.0.1:PORT, any path.  The bcast.sh protocol:
 *   - a binary message is sent, unchanged, to every OTHER open client;
 *   - text "count" is answered with the number of connected clients;
 *   - text "stats" is answered with this server's counters (JSON text).
 *
 * Design (the usual lws broadcast shape, as in lws' ring examples, with
 * O(1) bookkeeping per delivery):
 *   - One shared ring of messages.  A message is copied once, with LWS_PRE
 *     bytes of headroom, and the same buffer is written to every client.
 *   - Each connection keeps its own position in the ring (a 64-bit message
 *     index).  A new connection starts at the head: it gets what is
 *     published after it arrived.
 *   - Each message carries the number of clients that still have to write
 *     it (clients - 1 at publish time: the sender is skipped).  The last
 *     writer frees it and the ring's tail moves on.  This replaces the lws
 *     helper lws_ring_consume_and_update_oldest_tail(), whose oldest-tail
 *     scan over every connection would make each delivery O(clients).
 *   - On publish, lws_callback_on_writable_all_protocol() asks for a
 *     WRITEABLE callback on every connection; each WRITEABLE writes one
 *     message with one lws_write() (the lws rule) and asks again while the
 *     connection is behind the head.
 *   - If the ring is half full (a slow client), the publishing connection
 *     is paused with rx flow control until the ring is down to a quarter.
 *     A message that finds the ring full anyway is dropped and counted
 *     (never expected: the margin is larger than one rx buffer).
 * Single service thread, like lws_echo.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 8192                      /* messages, power of two */
#define PAUSE_AT (RING / 2)
#define RESUME_AT (RING / 4)
#define MAX_MESSAGE (1u << 20)
#define REPLY_MAX 512

struct pss;

struct slot {
	unsigned char *buf;            /* LWS_PRE headroom, then payload */
	size_t len;
	int refs;                      /* clients that still have to write it */
	const struct pss *from;        /* sender (skipped) */
};

struct pss {
	struct lws *wsi;
	struct pss *prev, *next_pss;   /* all connections */
	uint64_t pos;                  /* next ring index to write */
	int paused;                    /* rx flow control applied by us */
	/* incoming message being reassembled */
	unsigned char *rx;
	size_t rx_len, rx_cap;
	/* pending text reply */
	int reply_len;                 /* 0 = none */
	unsigned char reply[LWS_PRE + REPLY_MAX];
};

static struct slot ring[RING];
static uint64_t head, tail;            /* message indexes; ring[i % RING] */
static struct pss *clients;
static int nclients, npaused;
static struct lws_context *context;
static unsigned long long published, deliveries, dropped, pauses, max_used;
static volatile int interrupted;

static void reclaim(void)
{
	while (tail < head && ring[tail % RING].refs == 0)
		tail++;
	if (npaused && head - tail <= RESUME_AT) {
		for (struct pss *p = clients; p; p = p->next_pss) {
			if (p->paused) {
				p->paused = 0;
				lws_rx_flow_control(p->wsi, 1);
			}
		}
		npaused = 0;
	}
}

static void unref(uint64_t idx)
{
	struct slot *s = &ring[idx % RING];
	if (--s->refs == 0) {
		free(s->buf);
		s->buf = NULL;
		if (idx == tail)
			reclaim();
	}
}

static void publish(struct pss *from, const unsigned char *data, size_t len)
{
	if (head - tail >= RING) {
		dropped++;
		return;
	}
	struct slot *s = &ring[head % RING];
	s->refs = nclients - 1;
	s->from = from;
	s->len = len;
	s->buf = NULL;
	published++;
	if (s->refs <= 0) {            /* nobody to send it to */
		s->refs = 0;
		head++;
		reclaim();
		return;
	}
	s->buf = malloc(LWS_PRE + len);
	if (!s->buf) {
		dropped++;
		s->refs = 0;
		head++;
		reclaim();
		return;
	}
	memcpy(s->buf + LWS_PRE, data, len);
	head++;
	if (head - tail > max_used)
		max_used = head - tail;
	lws_callback_on_writable_all_protocol(lws_get_context(from->wsi),
					      lws_get_protocol(from->wsi));
	if (head - tail >= PAUSE_AT && !from->paused) {
		from->paused = 1;
		npaused++;
		pauses++;
		lws_rx_flow_control(from->wsi, 0);
	}
}

/* skips the messages this connection sent itself */
static void skip_own(struct pss *p)
{
	while (p->pos < head && ring[p->pos % RING].from == p)
		p->pos++;
}

static void command(struct pss *p, const unsigned char *data, size_t len)
{
	char *out = (char *)p->reply + LWS_PRE;
	int n;
	if (len == 5 && !memcmp(data, "count", 5))
		n = snprintf(out, REPLY_MAX, "%d", nclients);
	else if (len == 5 && !memcmp(data, "stats", 5))
		n = snprintf(out, REPLY_MAX,
			     "{\"server\":\"lws\",\"published\":%llu,\"deliveries\":%llu,"
			     "\"dropped\":%llu,\"pauses\":%llu,\"max_ring_used\":%llu,"
			     "\"ring\":%d,\"clients\":%d}",
			     published, deliveries, dropped, pauses, max_used, RING, nclients);
	else
		return;
	p->reply_len = n < REPLY_MAX ? n : REPLY_MAX - 1;
	lws_callback_on_writable(p->wsi);
}

static int callback_bcast(struct lws *wsi, enum lws_callback_reasons reason,
			  void *user, void *in, size_t len)
{
	struct pss *p = user;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		memset(p, 0, sizeof *p);
		p->wsi = wsi;
		p->pos = head;
		p->next_pss = clients;
		if (clients)
			clients->prev = p;
		clients = p;
		nclients++;
		break;

	case LWS_CALLBACK_CLOSED:
		if (!p->wsi)
			break;
		if (p->prev)
			p->prev->next_pss = p->next_pss;
		else
			clients = p->next_pss;
		if (p->next_pss)
			p->next_pss->prev = p->prev;
		if (p->paused)
			npaused--;
		nclients--;
		/* give up this connection's share of everything still queued */
		for (uint64_t i = p->pos; i < head; i++)
			if (ring[i % RING].from != p)
				unref(i);
		free(p->rx);
		p->rx = NULL;
		p->wsi = NULL;
		reclaim();
		break;

	case LWS_CALLBACK_RECEIVE: {
		if (!p->wsi)
			break;
		int final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
		const unsigned char *msg = in;
		size_t mlen = len;
		if (!final || p->rx_len) {
			/* reassemble fragments / partial frames */
			if (p->rx_len + len > MAX_MESSAGE)
				return -1;
			if (p->rx_len + len > p->rx_cap) {
				size_t cap = p->rx_cap ? p->rx_cap * 2 : 1024;
				while (cap < p->rx_len + len)
					cap *= 2;
				unsigned char *b = realloc(p->rx, cap);
				if (!b)
					return -1;
				p->rx = b;
				p->rx_cap = cap;
			}
			memcpy(p->rx + p->rx_len, in, len);
			p->rx_len += len;
			if (!final)
				break;
			msg = p->rx;
			mlen = p->rx_len;
			p->rx_len = 0;
		}
		if (lws_frame_is_binary(wsi))
			publish(p, msg, mlen);
		else
			command(p, msg, mlen);
		break;
	}

	case LWS_CALLBACK_SERVER_WRITEABLE: {
		if (!p->wsi)
			break;
		if (p->reply_len) {
			int n = p->reply_len;
			p->reply_len = 0;
			if (lws_write(wsi, p->reply + LWS_PRE, (size_t)n, LWS_WRITE_TEXT) < n)
				return -1;
			skip_own(p);
			if (p->pos < head)
				lws_callback_on_writable(wsi);
			break;
		}
		skip_own(p);
		if (p->pos >= head)
			break;
		uint64_t i = p->pos;
		struct slot *s = &ring[i % RING];
		if (lws_write(wsi, s->buf + LWS_PRE, s->len, LWS_WRITE_BINARY) < (int)s->len)
			return -1;
		p->pos++;
		deliveries++;
		unref(i);
		skip_own(p);
		if (p->pos < head)
			lws_callback_on_writable(wsi);
		break;
	}

	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static struct lws_protocols protocols[] = {
	{ "bcast", callback_bcast, sizeof(struct pss), 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void sigint_handler(int sig)
{
	(void)sig;
	interrupted = 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PORT [RX_BUFFER_BYTES]\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]);
	if (argc > 2)
		protocols[0].rx_buffer_size = (size_t)strtoul(argv[2], NULL, 10);
	protocols[0].tx_packet_size = protocols[0].rx_buffer_size;

	signal(SIGINT, sigint_handler);
	signal(SIGTERM, sigint_handler);
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);

	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = port;
	info.iface = "127.0.0.1";
	info.protocols = protocols;
	info.count_threads = 1;
	info.pt_serv_buf_size = 65536;
	info.max_http_header_pool = 512;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6 |
		       LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;

	context = lws_create_context(&info);
	if (!context) {
		fprintf(stderr, "lws_bcast: lws_create_context failed\n");
		return 1;
	}
	fprintf(stderr, "lws_bcast: listening on 127.0.0.1:%d\n", port);
	while (!interrupted)
		if (lws_service(context, 0) < 0)
			break;
	lws_context_destroy(context);
	for (uint64_t i = tail; i < head; i++)
		free(ring[i % RING].buf);
	return 0;
}
