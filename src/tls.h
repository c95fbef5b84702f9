/*
 * tls.h - TLS with OpenSSL 3: the server contexts built from [tls] when
 * the configuration is read, and non-blocking connection calls for
 * conn.c.
 *
 * Contexts are built where the configuration is loaded, in the master,
 * before any worker forks.  So workers inherit keys that only root may
 * read (as nginx's do), every worker holds the same session ticket keys
 * (a ticket one worker issued resumes in any other), and a reload, which
 * loads the configuration again, reads the certificates again.
 *
 * One context per certificate: [tls] is the default; each [tls NAME ...]
 * section is chosen instead when the client's server name (SNI) is one
 * of its names.  Every context allows TLS 1.2 and 1.3 only and selects
 * ALPN "http/1.1".
 *
 * The connection calls never touch the event loop: each says what it
 * waits for (TLS_WANT_READ, TLS_WANT_WRITE) and the caller watches the
 * socket.  They leave OpenSSL's error queue empty, so that a failure of
 * one connection never shows up as another's.
 */
#ifndef SNOWD_TLS_H
#define SNOWD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct ssl_ctx_st;      /* OpenSSL's SSL_CTX */
struct ssl_st;          /* OpenSSL's SSL */

/* The TLS 1.2 cipher list when [tls] sets none: forward secrecy and AEAD
 * only (ECDHE with AES-GCM or ChaCha20-Poly1305). */
#define TLS_DEFAULT_CIPHERS \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* ---- configuration ------------------------------------------------------ */

/* One certificate: the [tls] section (no names) or a [tls NAME ...]. */
struct tls_cert_conf {
    char **names;               /* server names that select it */
    size_t nnames;
    char *certificate;          /* PEM: the certificate, then perhaps its
                                   chain; paths resolved by config.c */
    char *key;                  /* PEM private key; NULL: in certificate */
    char *chain;                /* PEM intermediate certificates, or NULL */
    unsigned line;              /* of the section header */
    unsigned certificate_line, key_line, chain_line;
};

/* What config.c read from the [tls] sections. */
struct tls_conf {
    struct tls_cert_conf *certs;    /* in file order */
    size_t ncerts;
    char *ciphers;                  /* TLS 1.2; NULL: TLS_DEFAULT_CIPHERS */
    char *ciphersuites;             /* TLS 1.3; NULL: OpenSSL's default */
    bool keep_buffers;              /* release_buffers = off */
    unsigned ciphers_line, ciphersuites_line;
};

void tls_conf_free(struct tls_conf *conf);

/* The built contexts. */
struct tls;

/* How tls_new reports a problem: the config line it concerns, and a
 * message without the file name. */
typedef void tls_report_fn(void *arg, unsigned line, const char *msg);

/* Builds a context for each certificate of conf; conf->certs must hold
 * exactly one without names (the default).  Reads and checks every file
 * (it exists and can be read, holds PEM of the right kind, the key
 * matches the certificate) and the cipher settings.  Returns the
 * contexts, or NULL after reporting every problem. */
struct tls *tls_new(const struct tls_conf *conf, tls_report_fn *report,
                    void *arg);

/* Frees the contexts; NULL is fine.  Connections made from them keep
 * their own references and stay valid. */
void tls_free(struct tls *t);

/* The context new connections start from (the default certificate; SNI
 * may switch a connection to another during its handshake). */
struct ssl_ctx_st *tls_server_ctx(const struct tls *t);

/* The context whose certificate a server name selects (exact names
 * first, then "*.domain" wildcards, then the default): what SNI does. */
struct ssl_ctx_st *tls_ctx_for_name(const struct tls *t, const char *name);

/* ---- connections --------------------------------------------------------- */

enum tls_rc {
    TLS_OK,             /* done (for tls_read: the buffers are full) */
    TLS_WANT_READ,      /* wait until the socket is readable */
    TLS_WANT_WRITE,     /* wait until the socket is writable */
    TLS_CLOSED,         /* the peer closed the stream */
    TLS_FAILED          /* a protocol or socket error: drop the connection */
};

/* A server-side TLS connection on the accepted socket fd, or NULL after
 * logging why.  The caller still owns fd. */
struct ssl_st *tls_conn_new(struct ssl_ctx_st *ctx, int fd);

/* Advances the handshake.  Logs a failure with the peer's address and
 * OpenSSL's reason: at debug level when the peer just went away, at info
 * level otherwise (a client that refuses the certificate says why). */
enum tls_rc tls_accept(struct ssl_st *ssl);

/* Reads decrypted bytes into iov[0..cnt), in order, until they are full
 * or nothing more is buffered in OpenSSL or the socket: one read(2) at
 * most when little arrived.  *got says how many; even when it is not 0
 * the status says what stopped the reading.  TLS_OK means the buffers
 * are full: more may be buffered (tls_has_pending), and then no
 * readiness event will come for it. */
enum tls_rc tls_read(struct ssl_st *ssl, const struct iovec *iov, int cnt,
                     size_t *got);

/* Writes the start of p[0..n), in records of at most 16 KiB, and
 * returns after the first that goes out whole; *done says how many bytes
 * went.  After TLS_WANT_WRITE (or TLS_WANT_READ) no byte counts as
 * written: call again with at least as many bytes starting with the same
 * ones (they may sit elsewhere in memory); *done then also counts the
 * records that the calls which waited wrote. */
enum tls_rc tls_write(struct ssl_st *ssl, const void *p, size_t n,
                      size_t *done);

/* True while OpenSSL holds received bytes not yet read. */
bool tls_has_pending(const struct ssl_st *ssl);

/* Sends close_notify once, after a completed handshake, without waiting
 * for the peer's (the socket is closed or shut down next). */
void tls_shutdown(struct ssl_st *ssl);

/* tls_shutdown, then frees the connection; NULL is fine. */
void tls_conn_free(struct ssl_st *ssl);

/* Whether a server name matches a name of a [tls NAME] section: equal
 * ignoring case, or "*.example.org" for exactly one more label. */
bool tls_name_matches(const char *pattern, const char *name);

#endif
