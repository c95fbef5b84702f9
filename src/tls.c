/*
 * tls.c - OpenSSL contexts and non-blocking connections (see tls.h).
 *
 * Choices made for every context, and why:
 * - TLS 1.2 and 1.3 only; renegotiation off (nothing here needs it, and
 *   it would let a client make SSL_write wait for input);
 * - read-ahead on: one read(2) takes in every record that has arrived,
 *   instead of one for each record header and one for each body;
 * - SSL_MODE_RELEASE_BUFFERS (unless release_buffers = off): an idle
 *   connection gives its 34 KiB of record buffers back;
 * - partial writes and moving write buffers: conn.c writes one record at
 *   a time from its output queue, which may gather the same bytes into
 *   another buffer when it retries;
 * - resumption by session tickets alone: their keys are made with the
 *   context, in the master, so every worker takes every ticket, while a
 *   session cache would be private to one worker;
 * - an end of stream without close_notify reads as an ordinary end of
 *   stream: WebSocket frames say for themselves whether a message was cut
 *   short, and many clients just close the socket;
 * - ALPN: "http/1.1" when the client offers it; a client that offers
 *   protocols but not that one gets the fatal no_application_protocol
 *   alert (RFC 7301, section 3.2), as from nginx.  A client that offers
 *   none (most WebSocket libraries) is served without ALPN.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"

struct tls_site {
    SSL_CTX *ctx;
    char **names;
    size_t nnames;
};

struct tls {
    struct tls_site *sites;     /* sites[0] is the default */
    size_t nsites;
};

/* ---- configuration ------------------------------------------------------ */

static void free_words(char **w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(w[i]);
    free(w);
}

void tls_conf_free(struct tls_conf *conf)
{
    for (size_t i = 0; i < conf->ncerts; i++) {
        struct tls_cert_conf *c = &conf->certs[i];
        free_words(c->names, c->nnames);
        free(c->certificate);
        free(c->key);
        free(c->chain);
    }
    free(conf->certs);
    free(conf->ciphers);
    free(conf->ciphersuites);
    *conf = (struct tls_conf){ 0 };
}

/* ---- building contexts --------------------------------------------------- */

struct builder {
    tls_report_fn *report;
    void *arg;
    unsigned errors;
};

static void fail(struct builder *b, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct builder *b, unsigned line, const char *fmt, ...)
{
    char msg[640];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->report(b->arg, line, msg);
    b->errors++;
    ERR_clear_error();
}

/* OpenSSL's reason for the last failure, for a message. */
static const char *ssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r ? r : "no reason given";
}

/* Opens a file for reading, with errno's reason when it cannot be. */
static FILE *open_file(struct builder *b, unsigned line, const char *key,
                       const char *path)
{
    struct stat st;
    FILE *fp = fopen(path, "r");

    if (!fp) {
        fail(b, line, "%s: '%s': %s", key, path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(b, line, "%s: '%s' is not a file", key, path);
        fclose(fp);
        return NULL;
    }
    return fp;
}

/* Reads every PEM certificate of a file: the first into *first (unless
 * first is NULL), the others onto *rest. */
static int read_certs(struct builder *b, unsigned line, const char *key,
                      const char *path, X509 **first, STACK_OF(X509) *rest)
{
    FILE *fp = open_file(b, line, key, path);
    X509 *x;
    int n = 0;

    if (!fp)
        return -1;
    while ((x = PEM_read_X509(fp, NULL, NULL, NULL))) {
        if (n++ == 0 && first)
            *first = x;
        else
            sk_X509_push(rest, x);
    }
    /* The loop ends at the end of the file ("no start line") or at
     * something that is not a certificate. */
    unsigned long e = ERR_peek_last_error();
    bool at_end = ERR_GET_LIB(e) == ERR_LIB_PEM &&
                  ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    fclose(fp);
    if (n == 0) {
        fail(b, line, "%s: '%s' holds no PEM certificate (%s)", key, path,
             at_end ? "no line '-----BEGIN CERTIFICATE-----'"
                    : ssl_reason());
        return -1;
    }
    if (!at_end) {
        fail(b, line, "%s: '%s': certificate %d cannot be read (%s)", key,
             path, n + 1, ssl_reason());
        return -1;
    }
    ERR_clear_error();
    return 0;
}

/* Never asks for a passphrase (a daemon has nobody to ask): notes that
 * one was wanted and fails the read. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(bool *)u = true;
    return -1;
}

static EVP_PKEY *read_key(struct builder *b, unsigned line, const char *path)
{
    FILE *fp = open_file(b, line, "key", path);
    bool encrypted = false;

    if (!fp)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, no_passphrase, &encrypted);
    fclose(fp);
    if (!k && encrypted)
        fail(b, line, "key: '%s' is encrypted with a passphrase, which snowd "
             "cannot ask for (decrypt it: openssl pkey -in KEY -out KEY2)",
             path);
    else if (!k)
        fail(b, line, "key: '%s' holds no PEM private key (%s)", path,
             ssl_reason());
    ERR_clear_error();
    return k;
}

/* Loads a section's certificate, chain and key into ctx. */
static void load_cert(struct builder *b, SSL_CTX *ctx,
                      const struct tls_cert_conf *c)
{
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    const char *key_path = c->key ? c->key : c->certificate;
    unsigned key_line = c->key ? c->key_line : c->certificate_line;
    unsigned errors = b->errors;
    EVP_PKEY *key = NULL;

    if (!chain)
        abort();
    read_certs(b, c->certificate_line, "certificate", c->certificate, &leaf,
               chain);
    if (c->chain)
        read_certs(b, c->chain_line, "chain", c->chain, NULL, chain);
    key = read_key(b, key_line, key_path);
    if (b->errors != errors)
        goto out;
    if (!X509_check_private_key(leaf, key)) {
        fail(b, key_line, "key: '%s' does not match the certificate in '%s'",
             key_path, c->certificate);
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        fail(b, c->certificate_line, "certificate: '%s' is refused by "
             "OpenSSL: %s", c->certificate, ssl_reason());
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        fail(b, key_line, "key: '%s' is refused by OpenSSL: %s", key_path,
             ssl_reason());
        goto out;
    }
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1) {
            fail(b, c->chain ? c->chain_line : c->certificate_line,
                 "%s: a chain certificate is refused by OpenSSL: %s",
                 c->chain ? "chain" : "certificate", ssl_reason());
            goto out;
        }
    if (SSL_CTX_check_private_key(ctx) != 1)
        fail(b, key_line, "key: '%s' does not match the certificate in '%s'",
             key_path, c->certificate);
out:
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
}

static int select_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    /* Trust boundary: the client's list, length-prefixed names. */
    for (unsigned i = 0; i < inlen;) {
        unsigned n = in[i++];
        if (n > inlen - i)
            break;
        if (n == 8 && memcmp(in + i, "http/1.1", 8) == 0) {
            *out = in + i;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int select_site(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    (void)alert;
    if (name) {
        SSL_CTX *ctx = tls_ctx_for_name(arg, name);
        if (ctx != SSL_get_SSL_CTX(ssl))
            SSL_set_SSL_CTX(ssl, ctx);
    }
    return SSL_TLSEXT_ERR_OK;   /* an unknown name gets the default */
}

static void ignore(void *arg, unsigned line, const char *msg)
{
    (void)arg;
    (void)line;
    (void)msg;
}

/* A context with every setting but the certificate.  The cipher
 * settings are reported for the default context only: the others share
 * them. */
static SSL_CTX *new_ctx(struct builder *b, const struct tls_conf *conf,
                        bool report)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *ciphers = conf->ciphers ? conf->ciphers : TLS_DEFAULT_CIPHERS;
    struct builder quiet = { .report = ignore };

    if (!ctx) {
        fail(b, 0, "[tls]: cannot make an OpenSSL context: %s", ssl_reason());
        return NULL;
    }
    if (!report)
        b = &quiet;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                        SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                     (conf->keep_buffers ? 0 : SSL_MODE_RELEASE_BUFFERS));
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"snowd", 5);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
        fail(b, conf->ciphers_line, "ciphers: '%s' names no cipher OpenSSL "
             "knows (%s)", ciphers, ssl_reason());
    if (conf->ciphersuites &&
        SSL_CTX_set_ciphersuites(ctx, conf->ciphersuites) != 1)
        fail(b, conf->ciphersuites_line, "ciphersuites: '%s' is not a list "
             "of TLS 1.3 cipher suites OpenSSL knows (%s)",
             conf->ciphersuites, ssl_reason());
    ERR_clear_error();
    return ctx;
}

struct tls *tls_new(const struct tls_conf *conf, tls_report_fn *report,
                    void *arg)
{
    struct builder b = { .report = report, .arg = arg };
    struct tls *t = calloc(1, sizeof *t);
    size_t def = conf->ncerts;

    if (!t)
        abort();
    for (size_t i = 0; i < conf->ncerts; i++)
        if (conf->certs[i].nnames == 0)
            def = i;
    if (def == conf->ncerts)
        abort();   /* config.c promised a default */
    t->sites = calloc(conf->ncerts, sizeof *t->sites);
    if (!t->sites)
        abort();
    /* The default first, then the named ones in file order. */
    for (size_t k = 0; k < conf->ncerts; k++) {
        size_t i = k == 0 ? def : k <= def ? k - 1 : k;
        const struct tls_cert_conf *c = &conf->certs[i];
        struct tls_site *s = &t->sites[t->nsites];
        s->ctx = new_ctx(&b, conf, k == 0);
        if (!s->ctx)
            break;
        t->nsites++;
        load_cert(&b, s->ctx, c);
        s->names = calloc(c->nnames ? c->nnames : 1, sizeof *s->names);
        if (!s->names)
            abort();
        for (size_t j = 0; j < c->nnames; j++)
            s->names[s->nnames++] = strdup(c->names[j]);
    }
    if (t->nsites) {
        SSL_CTX_set_tlsext_servername_callback(t->sites[0].ctx, select_site);
        SSL_CTX_set_tlsext_servername_arg(t->sites[0].ctx, t);
    }
    if (b.errors || t->nsites < conf->ncerts) {
        tls_free(t);
        return NULL;
    }
    return t;
}

void tls_free(struct tls *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nsites; i++) {
        SSL_CTX_free(t->sites[i].ctx);
        free_words(t->sites[i].names, t->sites[i].nnames);
    }
    free(t->sites);
    free(t);
}

struct ssl_ctx_st *tls_server_ctx(const struct tls *t)
{
    return t->sites[0].ctx;
}

bool tls_name_matches(const char *pattern, const char *name)
{
    if (pattern[0] != '*')
        return strcasecmp(pattern, name) == 0;
    /* "*.example.org": one label, not empty, then ".example.org". */
    const char *dot = strchr(name, '.');
    return pattern[1] == '.' && dot && dot != name &&
           strcasecmp(pattern + 1, dot) == 0;
}

struct ssl_ctx_st *tls_ctx_for_name(const struct tls *t, const char *name)
{
    for (int wild = 0; wild < 2; wild++)
        for (size_t i = 1; i < t->nsites; i++)
            for (size_t j = 0; j < t->sites[i].nnames; j++) {
                const char *p = t->sites[i].names[j];
                if ((p[0] == '*') == wild && tls_name_matches(p, name))
                    return t->sites[i].ctx;
            }
    return t->sites[0].ctx;
}

/* ---- connections ---------------------------------------------------------- */

/* The peer's address, for log lines. */
static void peer_name(SSL *ssl, char *out, size_t cap)
{
    struct sockaddr_storage a = { .ss_family = AF_UNSPEC };
    socklen_t len = sizeof a;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (getpeername(SSL_get_fd(ssl), (struct sockaddr *)&a, &len) == 0) {
        if (a.ss_family == AF_INET) {
            struct sockaddr_in *x = (struct sockaddr_in *)&a;
            inet_ntop(AF_INET, &x->sin_addr, host, sizeof host);
            port = ntohs(x->sin_port);
        } else if (a.ss_family == AF_INET6) {
            struct sockaddr_in6 *x = (struct sockaddr_in6 *)&a;
            inet_ntop(AF_INET6, &x->sin6_addr, host, sizeof host);
            port = ntohs(x->sin6_port);
        }
    }
    snprintf(out, cap, a.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
             port);
}

struct ssl_st *tls_conn_new(struct ssl_ctx_st *ctx, int fd)
{
    SSL *ssl = SSL_new(ctx);

    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        log_error("connection %d: cannot start TLS: %s", fd, ssl_reason());
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* What a failed call (its return value r) waits for, or why it failed.
 * A failure is logged (handshakes at info level unless the peer merely
 * went away), and no close_notify may follow it. */
static enum tls_rc status(SSL *ssl, int r, const char *what)
{
    int saved = errno;
    int err = SSL_get_error(ssl, r);
    unsigned long e = ERR_peek_error();
    char peer[INET6_ADDRSTRLEN + 8], reason[256];

    if (err == SSL_ERROR_WANT_READ)
        return TLS_WANT_READ;
    if (err == SSL_ERROR_WANT_WRITE)
        return TLS_WANT_WRITE;
    bool handshake = strcmp(what, "handshake") == 0;
    if (err == SSL_ERROR_ZERO_RETURN && !handshake) {
        ERR_clear_error();
        return TLS_CLOSED;
    }
    bool vanished = err == SSL_ERROR_ZERO_RETURN ||
                    (err == SSL_ERROR_SYSCALL && e == 0) ||
                    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    if (log_threshold >= (vanished || !handshake ? LOG_DEBUG : LOG_INFO)) {
        if (e)
            ERR_error_string_n(e, reason, sizeof reason);
        else if (err == SSL_ERROR_SYSCALL && saved)
            snprintf(reason, sizeof reason, "%s", strerror(saved));
        else
            snprintf(reason, sizeof reason, "the peer closed the connection");
        peer_name(ssl, peer, sizeof peer);
        log_msg(vanished || !handshake ? LOG_DEBUG : LOG_INFO,
                "connection %d from %s: TLS %s failed: %s", SSL_get_fd(ssl),
                peer, what, reason);
    }
    SSL_set_quiet_shutdown(ssl, 1);
    ERR_clear_error();
    return TLS_FAILED;
}

enum tls_rc tls_accept(struct ssl_st *ssl)
{
    ERR_clear_error();   /* a handshake costs far more than this */
    int r = SSL_do_handshake(ssl);
    if (r != 1)
        return status(ssl, r, "handshake");
    if (log_threshold >= LOG_DEBUG) {
        const unsigned char *alpn;
        unsigned alen;
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        SSL_get0_alpn_selected(ssl, &alpn, &alen);
        log_debug("connection %d: %s %s, server name %s, ALPN %.*s",
                  SSL_get_fd(ssl), SSL_get_version(ssl),
                  SSL_get_cipher_name(ssl), sni ? sni : "(none)",
                  alen ? (int)alen : 6, alen ? (const char *)alpn : "(none)");
    }
    return TLS_OK;
}

enum tls_rc tls_read(struct ssl_st *ssl, const struct iovec *iov, int cnt,
                     size_t *got)
{
    size_t total = 0;

    for (int i = 0; i < cnt; i++) {
        unsigned char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            size_t n;
            if (!SSL_read_ex(ssl, p, left, &n)) {
                *got = total;
                return status(ssl, 0, "read");
            }
            p += n;
            left -= n;
            total += n;
            /* Stop when OpenSSL holds nothing more rather than try the
             * socket once more for an EAGAIN: if more has come, the loop
             * says so again. */
            if (!SSL_has_pending(ssl)) {
                *got = total;
                return TLS_WANT_READ;
            }
        }
    }
    *got = total;
    return TLS_OK;
}

enum tls_rc tls_write(struct ssl_st *ssl, const void *p, size_t n,
                      size_t *done)
{
    if (SSL_write_ex(ssl, p, n, done))
        return TLS_OK;
    *done = 0;
    return status(ssl, 0, "write");
}

bool tls_has_pending(const struct ssl_st *ssl)
{
    return SSL_has_pending(ssl);
}

void tls_shutdown(struct ssl_st *ssl)
{
    if (!SSL_is_init_finished(ssl) ||
        (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        return;
    SSL_shutdown(ssl);
    /* Once is enough: the peer's close_notify is not awaited, and a
     * socket that is full or gone only loses the alert. */
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
    ERR_clear_error();
}

void tls_conn_free(struct ssl_st *ssl)
{
    if (!ssl)
        return;
    tls_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
}
