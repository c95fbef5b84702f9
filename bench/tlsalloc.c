/*
 * tlsalloc - what OpenSSL keeps allocated for an idle server-side TLS
 * connection, with and without SSL_MODE_RELEASE_BUFFERS, apart from
 * heap fragmentation (which the RSS figures of bench/tls.sh include).
 *
 * The server contexts get the settings of snowd's src/tls.c (read-ahead,
 * partial writes, no session cache).  A child process makes N client
 * connections over socket pairs, one after another; each exchanges one
 * short message each way after its handshake, as a WebSocket upgrade
 * would.  The parent accepts them and keeps them.  mallinfo2's bytes in
 * use, before and after, divided by N, give the bytes per connection.
 * Prints one JSON line.
 *
 *   tlsalloc CERT.pem KEY.pem [N]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static void die(const char *what)
{
    fprintf(stderr, "tlsalloc: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void clients(int (*sv)[2], int n)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char buf[64];

    for (int i = 0; i < n; i++) {
        SSL *s = SSL_new(ctx);
        SSL_set_fd(s, sv[i][1]);
        if (SSL_connect(s) != 1 || SSL_write(s, "GET", 3) != 3 ||
            SSL_read(s, buf, sizeof buf) <= 0)
            die("client failed");
    }
}

/* Bytes in use per connection for n server connections. */
static size_t measure(const char *cert, const char *key, int n, int release)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int (*sv)[2] = calloc((size_t)n, sizeof *sv);
    SSL **keep = calloc((size_t)n, sizeof *keep);
    char buf[64];

    if (!ctx || !sv || !keep ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("cannot set up the server context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                     (release ? SSL_MODE_RELEASE_BUFFERS : 0));
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    for (int i = 0; i < n; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) != 0)
            die("socketpair failed");
    pid_t pid = fork();
    if (pid < 0)
        die("fork failed");
    if (pid == 0) {
        clients(sv, n);
        _exit(0);
    }
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < n; i++) {
        SSL *s = SSL_new(ctx);
        SSL_set_fd(s, sv[i][0]);
        if (SSL_accept(s) != 1 || SSL_read(s, buf, sizeof buf) <= 0 ||
            SSL_write(s, "101", 3) != 3)
            die("server failed");
        keep[i] = s;
    }
    size_t after = mallinfo2().uordblks;
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("the client process failed");
    for (int i = 0; i < n; i++) {
        SSL_free(keep[i]);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    free(keep);
    free(sv);
    SSL_CTX_free(ctx);
    return (after - before) / (size_t)n;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tlsalloc CERT.pem KEY.pem [N]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 1000;
    if (n < 1 || n > 10000)
        die("N must be from 1 to 10000");
    size_t on = measure(argv[1], argv[2], n, 1);
    size_t off = measure(argv[1], argv[2], n, 0);
    printf("{\"type\":\"alloc\",\"connections\":%d,\"bytes_per_conn_release\":%zu,"
           "\"bytes_per_conn_keep\":%zu}\n", n, on, off);
    return 0;
}
