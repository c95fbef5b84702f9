/*
 * confval.h - parsers for configuration values: sizes, durations,
 * listen addresses and entries, counts.  Pure functions of a NUL-terminated string;
 * each returns 0 or a negative errno-style code and writes its result only
 * on success.  No I/O, no allocation.
 */
#ifndef SNOWD_CONFVAL_H
#define SNOWD_CONFVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* "512", "8K", "16M", "1G" (binary multiples, K = 1024; an optional
 * trailing B or iB is accepted).  Fails on overflow, negatives, junk. */
int confval_size(const char *s, uint64_t *out);

/* "30s", "2m", "1h", "500ms", "1d", or a bare number of seconds; "0" means
 * off.  The result is in milliseconds. */
int confval_duration(const char *s, uint64_t *out_ms);

/* An unsigned decimal integer in [min, max]. */
int confval_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* "on/off", "yes/no", "true/false", "1/0". */
int confval_bool(const char *s, bool *out);

/* "127.0.0.1:8080", "[::1]:8080", "*:8080" or "0.0.0.0:8080", "[::]:8080";
 * the port is required.  Literal addresses only: no name lookups. */
int confval_listen(const char *s, struct sockaddr_storage *addr,
                   socklen_t *addr_len);

/* A whole `listen` value: an address as confval_listen reads it, then
 * words after blanks that qualify it.  The only word is "tls" (sets
 * *tls; false without it).  Returns 0, -EINVAL for a bad address, or
 * -ENOTSUP for an unknown word. */
int confval_listen_entry(const char *s, struct sockaddr_storage *addr,
                         socklen_t *addr_len, bool *tls);

#endif
