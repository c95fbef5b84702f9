/*
 * lws_echo - WebSocket echo server on libwebsockets, the "peer" snowd is
 * compared against in bench/run.sh.
 *
 *   lws_echo PORT [RX_BUFFER_BYTES]
 *
 * Listens on 127.0.0.1:PORT, accepts WebSocket upgrades on any path, echoes
 * text as text and binary as binary.  Messages are reassembled across
 * fragments and rx chunks, queued per session and written one per
 * WRITEABLE callback (the lws rule).  When a client pipelines faster than
 * we can write, rx flow control pauses reading instead of queueing without
 * bound.  Single service thread.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE (64u << 20)        /* refuse messages above 64 MiB */
#define QUEUE_HIGH_BYTES (4u << 20)    /* pause rx above this much queued */
#define QUEUE_HIGH_MSGS 1024

struct msg {
	struct msg *next;
	size_t len;
	size_t cap;        /* payload capacity (excluding LWS_PRE) */
	int binary;
	unsigned char data[]; /* LWS_PRE bytes of headroom, then payload */
};

struct pss {
	struct msg *cur;               /* message being reassembled */
	struct msg *head, *tail;       /* complete messages awaiting echo */
	size_t q_bytes;
	unsigned q_msgs;
	int rx_paused;
};

static volatile int interrupted;

static struct msg *msg_new(size_t cap)
{
	struct msg *m = malloc(sizeof *m + LWS_PRE + cap);
	if (!m)
		return NULL;
	m->next = NULL;
	m->len = 0;
	m->cap = cap;
	m->binary = 0;
	return m;
}

static void pss_free(struct pss *p)
{
	struct msg *m = p->head;
	while (m) {
		struct msg *n = m->next;
		free(m);
		m = n;
	}
	free(p->cur);
	memset(p, 0, sizeof *p);
}

static int append(struct pss *p, struct lws *wsi, const void *in, size_t len)
{
	size_t remaining = lws_remaining_packet_payload(wsi);
	if (!p->cur) {
		size_t cap = len + remaining;
		if (cap < 256)
			cap = 256;
		p->cur = msg_new(cap);
		if (!p->cur)
			return -1;
		p->cur->binary = lws_frame_is_binary(wsi);
	}
	struct msg *m = p->cur;
	if (m->len + len > MAX_MESSAGE)
		return -1;
	if (m->len + len + remaining > m->cap) {
		size_t cap = m->cap * 2;
		if (cap < m->len + len + remaining)
			cap = m->len + len + remaining;
		struct msg *n = realloc(m, sizeof *m + LWS_PRE + cap);
		if (!n)
			return -1;
		n->cap = cap;
		p->cur = m = n;
	}
	if (len)
		memcpy(m->data + LWS_PRE + m->len, in, len);
	m->len += len;
	return 0;
}

static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason,
			 void *user, void *in, size_t len)
{
	struct pss *p = user;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		memset(p, 0, sizeof *p);
		break;

	case LWS_CALLBACK_RECEIVE:
		if (append(p, wsi, in, len))
			return -1;
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
			struct msg *m = p->cur;
			p->cur = NULL;
			if (p->tail)
				p->tail->next = m;
			else
				p->head = m;
			p->tail = m;
			p->q_bytes += m->len;
			p->q_msgs++;
			if (!p->rx_paused &&
			    (p->q_bytes > QUEUE_HIGH_BYTES || p->q_msgs > QUEUE_HIGH_MSGS)) {
				lws_rx_flow_control(wsi, 0);
				p->rx_paused = 1;
			}
			lws_callback_on_writable(wsi);
		}
		break;

	case LWS_CALLBACK_SERVER_WRITEABLE: {
		struct msg *m = p->head;
		if (!m)
			break;
		int n = lws_write(wsi, m->data + LWS_PRE, m->len,
				  m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
		if (n < (int)m->len)
			return -1;
		p->head = m->next;
		if (!p->head)
			p->tail = NULL;
		p->q_bytes -= m->len;
		p->q_msgs--;
		free(m);
		if (p->rx_paused && p->q_bytes <= QUEUE_HIGH_BYTES / 2 &&
		    p->q_msgs <= QUEUE_HIGH_MSGS / 2) {
			p->rx_paused = 0;
			lws_rx_flow_control(wsi, 1);
		}
		if (p->head)
			lws_callback_on_writable(wsi);
		break;
	}

	case LWS_CALLBACK_CLOSED:
		pss_free(p);
		break;

	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static struct lws_protocols protocols[] = {
	{ "echo", callback_echo, sizeof(struct pss), 65536, 0, NULL, 0 },
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
	/* send in chunks as large as what we receive; lws buffers the rest */
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

	struct lws_context *ctx = lws_create_context(&info);
	if (!ctx) {
		fprintf(stderr, "lws_echo: lws_create_context failed\n");
		return 1;
	}
	fprintf(stderr, "lws_echo: listening on 127.0.0.1:%d\n", port);
	while (!interrupted)
		if (lws_service(ctx, 0) < 0)
			break;
	lws_context_destroy(ctx);
	return 0;
}
