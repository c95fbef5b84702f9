/*
 * confval.c - configuration value parsers.
 */
#include "confval.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

/* Reads leading decimal digits; fails on none or on overflow. */
static int read_digits(const char **sp, uint64_t *out)
{
    const char *s = *sp;
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *sp = s;
    *out = v;
    return 0;
}

static int scale(uint64_t v, uint64_t mult, uint64_t *out)
{
    if (mult && v > UINT64_MAX / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

int confval_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;
    int rc = read_digits(&s, &v);

    if (rc)
        return rc;
    switch (*s) {
    case 'k': case 'K': mult = 1ull << 10; s++; break;
    case 'm': case 'M': mult = 1ull << 20; s++; break;
    case 'g': case 'G': mult = 1ull << 30; s++; break;
    default: break;
    }
    if (mult > 1 && *s == 'i' && (s[1] == 'B' || s[1] == 'b'))
        s++;
    if (*s == 'B' || *s == 'b')
        s++;
    if (*s)
        return -EINVAL;
    return scale(v, mult, out);
}

int confval_duration(const char *s, uint64_t *out_ms)
{
    uint64_t v, mult;
    int rc = read_digits(&s, &v);

    if (rc)
        return rc;
    if (strcmp(s, "ms") == 0)
        mult = 1;
    else if (*s == '\0' || strcmp(s, "s") == 0)
        mult = 1000;
    else if (strcmp(s, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(s, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(s, "d") == 0)
        mult = 86400 * 1000;
    else
        return -EINVAL;
    return scale(v, mult, out_ms);
}

int confval_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    int rc = read_digits(&s, &v);

    if (rc)
        return rc;
    if (*s)
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int confval_bool(const char *s, bool *out)
{
    static const char *yes[] = { "on", "yes", "true", "1" };
    static const char *no[] = { "off", "no", "false", "0" };

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int confval_listen(const char *s, struct sockaddr_storage *addr,
                   socklen_t *addr_len)
{
    struct sockaddr_storage out;
    char host[64];
    const char *colon = strrchr(s, ':');
    uint64_t port;
    size_t hlen;

    if (!colon || confval_uint(colon + 1, 1, 65535, &port) != 0)
        return -EINVAL;
    hlen = (size_t)(colon - s);
    if (hlen >= sizeof host)
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(&out, 0, sizeof out);

    if (host[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out;
        if (hlen < 3 || host[hlen - 1] != ']')
            return -EINVAL;
        host[hlen - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return -EINVAL;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *addr = out;
        *addr_len = sizeof *a6;
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out;
    if (strcmp(host, "*") == 0)
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return -EINVAL;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *addr = out;
    *addr_len = sizeof *a4;
    return 0;
}

int confval_listen_entry(const char *s, struct sockaddr_storage *addr,
                         socklen_t *addr_len, bool *tls)
{
    char text[80];   /* longer than any address confval_listen accepts */
    size_t len = strcspn(s, " \t");
    bool want_tls = false;

    if (len >= sizeof text)
        return -EINVAL;
    memcpy(text, s, len);
    text[len] = '\0';
    struct sockaddr_storage a;
    socklen_t alen;
    if (confval_listen(text, &a, &alen) != 0)
        return -EINVAL;
    for (const char *p = s + len; *(p += strspn(p, " \t")); ) {
        size_t n = strcspn(p, " \t");
        if (n == 3 && memcmp(p, "tls", 3) == 0)
            want_tls = true;
        else
            return -ENOTSUP;
        p += n;
    }
    *addr = a;
    *addr_len = alen;
    *tls = want_tls;
    return 0;
}
