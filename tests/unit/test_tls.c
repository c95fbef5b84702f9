/*
 * test_tls.c - unit tests for the TLS contexts and connection calls
 * (src/tls.c).
 *
 * Build: gcc -Wall -Wextra -Isrc -Iinclude tests/unit/test_tls.c \
 *            src/tls.c src/log.c -lcmocka -lssl -lcrypto \
 *            -o /tmp/test_tls && /tmp/test_tls
 *
 * Certificates and keys are made here with OpenSSL's API (EC P-256,
 * self-signed) in a temporary folder.  Connections run over non-blocking
 * socket pairs: the server side through tls.c, the client side through
 * OpenSSL directly, each driven in turn until both are done, so every
 * WANT_READ path is taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"

/* ---- files ------------------------------------------------------------------ */

static char dir[64];

static const char *path(const char *name)
{
    static char buf[8][128];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A self-signed certificate for cn (and san, a DNS name) and its key. */
static void make_cert(const char *name, const char *cn, const char *san)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    char file[64];

    assert_non_null(k);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(random() & 0xffffff));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3,
                                            NID_subject_alt_name, san);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);

    snprintf(file, sizeof file, "%s.pem", name);
    FILE *f = fopen(path(file), "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(file, sizeof file, "%s.key", name);
    f = fopen(path(file), "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    snprintf(file, sizeof file, "%s-enc.key", name);
    f = fopen(path(file), "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(),
                         (const unsigned char *)"secret", 6, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/snowd-test-tls.XXXXXX");
    assert_non_null(mkdtemp(dir));
    make_cert("local", "localhost", "DNS:localhost");
    make_cert("other", "other.test", "DNS:other.test, DNS:*.wild.test");
    make_cert("exact", "exact.wild.test", "DNS:exact.wild.test");
    make_cert("stray", "stray.test", "DNS:stray.test");
    write_text("not-pem.pem", "this is not PEM\n");
    log_threshold = LOG_DEBUG;   /* every log line is formatted */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- configurations ------------------------------------------------------- */

#define MAX_REPORTS 16
static struct {
    unsigned line[MAX_REPORTS];
    char msg[MAX_REPORTS][700];
    int n;
} R;

static void collect(void *arg, unsigned line, const char *msg)
{
    (void)arg;
    assert_true(R.n < MAX_REPORTS);
    R.line[R.n] = line;
    snprintf(R.msg[R.n], sizeof R.msg[0], "%s", msg);
    R.n++;
}

/* Whether a report at `line` contains `words`. */
static bool reported(unsigned line, const char *words)
{
    for (int i = 0; i < R.n; i++)
        if (R.line[i] == line && strstr(R.msg[i], words))
            return true;
    return false;
}

static struct tls_cert_conf cert_conf(const char *cert, const char *key,
                                      unsigned line)
{
    return (struct tls_cert_conf){
        .certificate = (char *)path(cert),
        .key = key ? (char *)path(key) : NULL,
        .line = line, .certificate_line = line + 1, .key_line = line + 2,
        .chain_line = line + 3 };
}

static struct tls *build(struct tls_cert_conf *certs, size_t n,
                         const char *ciphers, const char *suites)
{
    struct tls_conf conf = { .certs = certs, .ncerts = n,
                             .ciphers = (char *)ciphers,
                             .ciphersuites = (char *)suites,
                             .ciphers_line = 90, .ciphersuites_line = 91 };
    memset(&R, 0, sizeof R);
    struct tls *t = tls_new(&conf, collect, NULL);
    assert_int_equal(ERR_peek_error(), 0);   /* the queue is left empty */
    return t;
}

/* The default, other.test and *.wild.test, and exact.wild.test. */
static struct tls *build_sites(void)
{
    static char *other_names[] = { "other.test", "*.wild.test" };
    static char *exact_names[] = { "exact.wild.test" };
    struct tls_cert_conf c[3] = {
        cert_conf("other.pem", "other.key", 10),
        cert_conf("local.pem", "local.key", 1),
        cert_conf("exact.pem", "exact.key", 20),
    };
    c[0].names = other_names;
    c[0].nnames = 2;
    c[2].names = exact_names;
    c[2].nnames = 1;
    struct tls *t = build(c, 3, NULL, NULL);
    assert_int_equal(R.n, 0);
    assert_non_null(t);
    return t;
}

static void test_tls_name_matches_exact_and_one_label_wildcards(void **state)
{
    (void)state;
    assert_true(tls_name_matches("example.org", "example.org"));
    assert_true(tls_name_matches("example.org", "EXAMPLE.Org"));
    assert_false(tls_name_matches("example.org", "www.example.org"));
    assert_false(tls_name_matches("example.org", "example.org."));
    assert_true(tls_name_matches("*.example.org", "a.example.org"));
    assert_true(tls_name_matches("*.example.org", "A-1.EXAMPLE.ORG"));
    assert_false(tls_name_matches("*.example.org", "example.org"));
    assert_false(tls_name_matches("*.example.org", "a.b.example.org"));
    assert_false(tls_name_matches("*.example.org", ".example.org"));
    assert_false(tls_name_matches("*.example.org", "aexample.org"));
    assert_false(tls_name_matches("*.example.org", ""));
}

static void test_tls_ctx_for_name_prefers_exact_names(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    struct ssl_ctx_st *def = tls_server_ctx(t);
    struct ssl_ctx_st *other = tls_ctx_for_name(t, "other.test");
    struct ssl_ctx_st *exact = tls_ctx_for_name(t, "exact.wild.test");

    assert_ptr_not_equal(other, def);
    assert_ptr_not_equal(exact, def);
    assert_ptr_not_equal(exact, other);
    assert_ptr_equal(tls_ctx_for_name(t, "a.wild.test"), other);
    assert_ptr_equal(tls_ctx_for_name(t, "OTHER.TEST"), other);
    assert_ptr_equal(tls_ctx_for_name(t, "wild.test"), def);
    assert_ptr_equal(tls_ctx_for_name(t, "localhost"), def);
    assert_ptr_equal(tls_ctx_for_name(t, ""), def);
    tls_free(t);
    tls_free(NULL);
}

static void test_tls_new_reports_file_problems_at_their_lines(void **state)
{
    (void)state;
    struct tls_cert_conf c;

    c = cert_conf("missing.pem", "local.key", 1);
    assert_null(build(&c, 1, NULL, NULL));
    assert_true(reported(2, "certificate: '"));
    assert_true(reported(2, "No such file or directory"));

    c = cert_conf("not-pem.pem", "local.key", 1);
    assert_null(build(&c, 1, NULL, NULL));
    assert_true(reported(2, "holds no PEM certificate"));

    c = cert_conf("local.pem", "not-pem.pem", 1);
    assert_null(build(&c, 1, NULL, NULL));
    assert_true(reported(3, "holds no PEM private key"));

    c = cert_conf("local.pem", "stray.key", 1);
    assert_null(build(&c, 1, NULL, NULL));
    assert_int_equal(R.n, 1);
    assert_true(reported(3, "does not match the certificate"));

    c = cert_conf("local.pem", "local-enc.key", 1);
    assert_null(build(&c, 1, NULL, NULL));
    assert_true(reported(3, "is encrypted with a passphrase"));

    /* No key: it is looked for in the certificate file. */
    c = cert_conf("local.pem", NULL, 1);
    assert_null(build(&c, 1, NULL, NULL));
    assert_true(reported(2, "holds no PEM private key"));

    c = cert_conf("local.pem", "local.key", 1);
    c.chain = (char *)path("not-pem.pem");
    assert_null(build(&c, 1, NULL, NULL));
    assert_true(reported(4, "chain: '"));

    c = cert_conf("local.pem", "local.key", 1);
    c.certificate = dir;
    assert_null(build(&c, 1, NULL, NULL));
    assert_true(reported(2, "is not a file"));
}

static void test_tls_new_reports_every_certificate(void **state)
{
    (void)state;
    static char *names[] = { "other.test" };
    struct tls_cert_conf c[2] = {
        cert_conf("local.pem", "stray.key", 1),
        cert_conf("missing.pem", "other.key", 10),
    };
    c[1].names = names;
    c[1].nnames = 1;
    assert_null(build(c, 2, NULL, NULL));
    assert_int_equal(R.n, 2);
    assert_true(reported(3, "does not match"));
    assert_true(reported(11, "No such file"));
}

static void test_tls_new_reports_bad_cipher_lists_once(void **state)
{
    (void)state;
    static char *names[] = { "other.test" };
    struct tls_cert_conf c[2] = {
        cert_conf("local.pem", "local.key", 1),
        cert_conf("other.pem", "other.key", 10),
    };
    c[1].names = names;
    c[1].nnames = 1;
    assert_null(build(c, 2, "NOPE", NULL));
    assert_int_equal(R.n, 1);
    assert_true(reported(90, "ciphers: 'NOPE'"));
    assert_null(build(c, 2, NULL, "TLS_NOPE"));
    assert_int_equal(R.n, 1);
    assert_true(reported(91, "ciphersuites: 'TLS_NOPE'"));
    struct tls *t = build(c, 2, "ECDHE-ECDSA-CHACHA20-POLY1305",
                          "TLS_AES_128_GCM_SHA256");
    assert_non_null(t);
    tls_free(t);
}

/* ---- connections ------------------------------------------------------------ */

struct pair {
    int sv[2];          /* sv[0]: the server's socket */
    SSL *server, *client;
    SSL_CTX *cctx;
};

static void nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* A server connection from t and a client for it, not yet shaken. */
static void pair_open(struct pair *p, struct tls *t, const char *sni,
                      const char *alpn, size_t alpn_len, int client_max)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->sv), 0);
    nonblock(p->sv[0]);
    nonblock(p->sv[1]);
    p->server = tls_conn_new(tls_server_ctx(t), p->sv[0]);
    assert_non_null(p->server);
    p->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->cctx);
    if (client_max) {
        SSL_CTX_set_min_proto_version(p->cctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(p->cctx, client_max);
        SSL_CTX_set_cipher_list(p->cctx, "DEFAULT@SECLEVEL=0");
    }
    p->client = SSL_new(p->cctx);
    SSL_set_fd(p->client, p->sv[1]);
    SSL_set_connect_state(p->client);
    if (sni)
        SSL_set_tlsext_host_name(p->client, sni);
    if (alpn)
        SSL_set_alpn_protos(p->client, (const unsigned char *)alpn,
                            (unsigned)alpn_len);
}

static void pair_close(struct pair *p)
{
    tls_conn_free(p->server);
    SSL_free(p->client);
    SSL_CTX_free(p->cctx);
    close(p->sv[0]);
    close(p->sv[1]);
    ERR_clear_error();
}

/* Both sides in turn until both are done or one fails; returns the
 * server's last status. */
static enum tls_rc shake(struct pair *p)
{
    enum tls_rc srv = TLS_WANT_READ;
    int cli = 0;

    for (int i = 0; i < 100; i++) {
        if (srv != TLS_OK)
            srv = tls_accept(p->server);
        if (cli != 1) {
            cli = SSL_do_handshake(p->client);
            if (cli != 1) {
                int e = SSL_get_error(p->client, cli);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    cli = -2;   /* failed for good */
            }
        }
        if ((srv == TLS_OK && cli == 1) || srv == TLS_FAILED || cli == -2)
            break;
    }
    /* The client has read everything the server sent. */
    ERR_clear_error();
    return srv;
}

static void test_tls_handshake_selects_http11_by_alpn(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    struct pair p;
    const unsigned char *sel;
    unsigned len;

    pair_open(&p, t, NULL, "\x02h2\x08http/1.1", 12, 0);
    assert_int_equal(shake(&p), TLS_OK);
    SSL_get0_alpn_selected(p.client, &sel, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    assert_string_equal(SSL_get_version(p.client), "TLSv1.3");
    pair_close(&p);

    pair_open(&p, t, NULL, NULL, 0, 0);   /* no ALPN: served without */
    assert_int_equal(shake(&p), TLS_OK);
    SSL_get0_alpn_selected(p.client, &sel, &len);
    assert_int_equal(len, 0);
    pair_close(&p);

    pair_open(&p, t, NULL, "\x02h2", 3, 0);   /* h2 alone: refused */
    assert_int_equal(shake(&p), TLS_FAILED);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
    tls_free(t);
}

static void test_tls_handshake_switches_certificate_by_sni(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    const struct { const char *sni, *cn; } cases[] = {
        { "other.test", "other.test" }, { "x.wild.test", "other.test" },
        { "exact.wild.test", "exact.wild.test" },
        { "nowhere.test", "localhost" }, { NULL, "localhost" },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pair p;
        char cn[64] = "";
        pair_open(&p, t, cases[i].sni, NULL, 0, 0);
        assert_int_equal(shake(&p), TLS_OK);
        X509 *peer = SSL_get1_peer_certificate(p.client);
        assert_non_null(peer);
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
                                  cn, sizeof cn);
        assert_string_equal(cn, cases[i].cn);
        X509_free(peer);
        pair_close(&p);
    }
    tls_free(t);
}

static void test_tls_handshake_refuses_tls_1_1(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    struct pair p;

    pair_open(&p, t, NULL, NULL, 0, TLS1_1_VERSION);
    assert_int_equal(shake(&p), TLS_FAILED);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
    pair_open(&p, t, NULL, NULL, 0, TLS1_2_VERSION);
    assert_int_equal(shake(&p), TLS_OK);
    assert_string_equal(SSL_get_version(p.server), "TLSv1.2");
    pair_close(&p);
    tls_free(t);
}

/* Writes n bytes from the client, whole. */
static void client_send(struct pair *p, const void *data, size_t n)
{
    size_t done;
    assert_int_equal(SSL_write_ex(p->client, data, n, &done), 1);
    assert_int_equal(done, n);
}

static void test_tls_read_fills_buffers_and_says_what_is_left(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    struct pair p;
    uint8_t a[100], b[50], msg[3000];
    size_t got;

    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 7);
    pair_open(&p, t, NULL, NULL, 0, 0);
    assert_int_equal(shake(&p), TLS_OK);

    struct iovec one = { a, sizeof a };
    assert_int_equal(tls_read(p.server, &one, 1, &got), TLS_WANT_READ);
    assert_int_equal(got, 0);

    client_send(&p, msg, 1000);
    client_send(&p, msg + 1000, 2000);   /* two records */
    struct iovec two[2] = { { a, sizeof a }, { b, sizeof b } };
    /* Full buffers: more is held, and no event will say so. */
    assert_int_equal(tls_read(p.server, two, 2, &got), TLS_OK);
    assert_int_equal(got, 150);
    assert_memory_equal(a, msg, 100);
    assert_memory_equal(b, msg + 100, 50);
    assert_true(tls_has_pending(p.server));
    size_t total = 150;
    uint8_t rest[4096];
    struct iovec big = { rest, sizeof rest };
    enum tls_rc rc = tls_read(p.server, &big, 1, &got);
    assert_int_equal(rc, TLS_WANT_READ);   /* drained: wait for the socket */
    assert_int_equal(got, sizeof msg - total);
    assert_memory_equal(rest, msg + total, got);
    assert_false(tls_has_pending(p.server));

    /* close_notify: the end of the stream, after the bytes before it. */
    client_send(&p, "end", 3);
    assert_int_equal(SSL_shutdown(p.client), 0);
    rc = tls_read(p.server, &big, 1, &got);
    assert_int_equal(got, 3);
    assert_int_equal(tls_read(p.server, &big, 1, &got), TLS_CLOSED);
    assert_int_equal(got, 0);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
    tls_free(t);
}

/* What conn.c relies on: after TLS_WANT_WRITE the same bytes, from
 * another buffer and followed by more, finish the write. */
static void test_tls_write_retries_from_a_moved_buffer(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    struct pair p;
    enum { TOTAL = 1 << 20 };
    uint8_t *src = malloc(TOTAL), *moved = malloc(TOTAL);
    uint8_t *seen = malloc(TOTAL);
    size_t sent = 0, recvd = 0, done;
    int sndbuf = 4096, blocked = 0;

    assert_non_null(src);
    assert_non_null(moved);
    assert_non_null(seen);
    for (size_t i = 0; i < TOTAL; i++)
        src[i] = (uint8_t)(i * 31 + (i >> 10));
    pair_open(&p, t, NULL, NULL, 0, 0);
    assert_int_equal(setsockopt(p.sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
                                sizeof sndbuf), 0);
    assert_int_equal(shake(&p), TLS_OK);
    bool odd = false;
    while (recvd < TOTAL) {
        if (sent < TOTAL) {
            /* Each try comes from the other buffer, with up to 40 KB. */
            size_t n = TOTAL - sent < 40000 ? TOTAL - sent : 40000;
            uint8_t *from = odd ? moved + sent : src + sent;
            if (odd)
                memcpy(moved + sent, src + sent, n);
            odd = !odd;
            enum tls_rc rc = tls_write(p.server, from, n, &done);
            if (rc == TLS_OK) {
                /* Records written by calls that then waited count
                 * here, once the write goes through. */
                assert_true(done > 0 && done <= n);
                sent += done;
            } else {
                assert_int_equal(rc, TLS_WANT_WRITE);
                assert_int_equal(done, 0);
                blocked++;
            }
        }
        size_t r;
        while (SSL_read_ex(p.client, seen + recvd, TOTAL - recvd, &r)) {
            recvd += r;
            if (recvd % 3 == 0)
                break;   /* read slowly, so the server blocks again */
        }
        ERR_clear_error();
    }
    assert_true(blocked > 0);
    assert_memory_equal(seen, src, TOTAL);
    pair_close(&p);
    tls_free(t);
    free(src);
    free(moved);
    free(seen);
}

static void test_tls_shutdown_sends_close_notify_once(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    struct pair p;
    char buf[16];
    size_t n;

    pair_open(&p, t, NULL, NULL, 0, 0);
    assert_int_equal(shake(&p), TLS_OK);
    tls_shutdown(p.server);
    tls_shutdown(p.server);   /* once only: nothing more is written */
    assert_int_equal(SSL_read_ex(p.client, buf, sizeof buf, &n), 0);
    assert_int_equal(SSL_get_error(p.client, 0), SSL_ERROR_ZERO_RETURN);
    assert_int_equal(recv(p.sv[1], buf, sizeof buf, 0), -1);
    assert_int_equal(errno, EAGAIN);
    ERR_clear_error();
    pair_close(&p);

    /* Before the handshake, nothing at all is sent. */
    pair_open(&p, t, NULL, NULL, 0, 0);
    tls_shutdown(p.server);
    assert_int_equal(recv(p.sv[1], buf, sizeof buf, 0), -1);
    assert_int_equal(errno, EAGAIN);
    pair_close(&p);
    tls_free(t);
}

/* A peer that vanishes mid-handshake fails that connection alone. */
static void test_tls_failure_leaves_no_error_behind(void **state)
{
    (void)state;
    struct tls *t = build_sites();
    struct pair p, q;

    pair_open(&p, t, NULL, NULL, 0, 0);
    pair_open(&q, t, NULL, NULL, 0, 0);
    assert_int_equal(send(p.sv[1], "\x16\x03\x01\x00\x05garbage", 12, 0),
                     12);
    assert_int_equal(tls_accept(p.server), TLS_FAILED);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(shake(&q), TLS_OK);   /* the other one is unharmed */
    pair_close(&p);
    pair_close(&q);
    tls_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_name_matches_exact_and_one_label_wildcards),
        cmocka_unit_test(test_tls_ctx_for_name_prefers_exact_names),
        cmocka_unit_test(test_tls_new_reports_file_problems_at_their_lines),
        cmocka_unit_test(test_tls_new_reports_every_certificate),
        cmocka_unit_test(test_tls_new_reports_bad_cipher_lists_once),
        cmocka_unit_test(test_tls_handshake_selects_http11_by_alpn),
        cmocka_unit_test(test_tls_handshake_switches_certificate_by_sni),
        cmocka_unit_test(test_tls_handshake_refuses_tls_1_1),
        cmocka_unit_test(test_tls_read_fills_buffers_and_says_what_is_left),
        cmocka_unit_test(test_tls_write_retries_from_a_moved_buffer),
        cmocka_unit_test(test_tls_shutdown_sends_close_notify_once),
        cmocka_unit_test(test_tls_failure_leaves_no_error_behind),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
