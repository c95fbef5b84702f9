/*
 * http.c - HTTP/1.1 request head parser.
 *
 * Two phases: find the end of the head (resumable, remembers how far it
 * looked), then parse the complete head once.  Parsing never runs on a
 * partial head, so there is no half-parsed state to keep.
 */
#include "http.h"

#include <string.h>
#include <strings.h>

/* tchar of RFC 9110 section 5.6.2. */
static bool is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar and the whitespace allowed inside a field value. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Returns the offset just past the blank line ending the head, or 0. */
static size_t find_end(struct http_scan *scan, const char *buf, size_t len)
{
    /* Restart a little before where the last call stopped: the blank line
     * may straddle the boundary ("\r\n" + "\r\n"). */
    size_t i = scan->scanned > 3 ? scan->scanned - 3 : 0;

    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    scan->scanned = len;
    return 0;
}

/* Returns the length of the line at p (without its end) and sets *next to
 * the start of the following line.  The head is known to be complete, so a
 * line end is always found before `end`. */
static size_t line_at(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *next = nl + 1;
    size_t n = (size_t)(nl - p);
    if (n && p[n - 1] == '\r')
        n--;
    return n;
}

static enum http_rc parse_request_line(const char *p, size_t n,
                                       struct http_request *req)
{
    size_t i = 0;

    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        return HTTP_ERR_MALFORMED;
    req->method = p;
    req->method_len = i++;

    size_t t = i;
    while (i < n && (unsigned char)p[i] > 0x20 && p[i] != 0x7f)
        i++;
    if (i == t || i == n || p[i] != ' ')
        return HTTP_ERR_MALFORMED;
    req->target = p + t;
    req->target_len = i - t;
    const char *q = memchr(req->target, '?', req->target_len);
    req->path = req->target;
    req->path_len = q ? (size_t)(q - req->target) : req->target_len;
    i++;

    if (n - i != 8 || memcmp(p + i, "HTTP/", 5) != 0 || p[i + 6] != '.' ||
        p[i + 5] < '0' || p[i + 5] > '9' || p[i + 7] < '0' || p[i + 7] > '9')
        return HTTP_ERR_MALFORMED;
    if (p[i + 5] != '1')
        return HTTP_ERR_VERSION;
    req->version_minor = p[i + 7] - '0';
    return HTTP_DONE;
}

static enum http_rc parse_field(const char *p, size_t n,
                                struct http_request *req)
{
    size_t i = 0;

    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    /* No whitespace is allowed between name and colon (9112 5.1). */
    if (i == 0 || i == n || p[i] != ':')
        return HTTP_ERR_MALFORMED;
    if (req->nheaders == HTTP_MAX_HEADERS)
        return HTTP_ERR_TOO_LARGE;
    struct http_header *h = &req->headers[req->nheaders++];
    h->name = p;
    h->name_len = i++;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    size_t end = n;
    while (end > i && (p[end - 1] == ' ' || p[end - 1] == '\t'))
        end--;
    for (size_t k = i; k < end; k++)
        if (!is_value_char((unsigned char)p[k]))
            return HTTP_ERR_MALFORMED;
    h->value = p + i;
    h->value_len = end - i;
    return HTTP_DONE;
}

enum http_rc http_parse(struct http_scan *scan, const char *buf, size_t len,
                        size_t max_len, struct http_request *req)
{
    /* A method starts the head; a first byte that cannot (the 0x16 of a
     * TLS record, say) fails at once rather than after a timeout. */
    if (len && !is_tchar((unsigned char)buf[0]))
        return HTTP_ERR_MALFORMED;
    size_t head_len = find_end(scan, buf, len);

    if (head_len == 0)
        return len >= max_len ? HTTP_ERR_TOO_LARGE : HTTP_NEED_MORE;
    if (head_len > max_len)
        return HTTP_ERR_TOO_LARGE;

    memset(req, 0, offsetof(struct http_request, headers));
    req->head_len = head_len;

    const char *p = buf, *end = buf + head_len, *next;
    size_t n = line_at(p, end, &next);
    enum http_rc rc = parse_request_line(p, n, req);
    if (rc != HTTP_DONE)
        return rc;
    for (p = next; p < end; p = next) {
        n = line_at(p, end, &next);
        if (n == 0)
            break;                      /* the blank line */
        if (p[0] == ' ' || p[0] == '\t')
            return HTTP_ERR_MALFORMED;  /* obsolete line folding */
        rc = parse_field(p, n, req);
        if (rc != HTTP_DONE)
            return rc;
    }
    return HTTP_DONE;
}

const struct http_header *http_header_find(const struct http_request *req,
                                           const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == len && strncasecmp(h->name, name, len) == 0)
            return h;
    }
    return NULL;
}

bool http_list_each(const char *value, size_t len,
                    bool (*fn)(const char *item, size_t item_len, void *arg),
                    void *arg)
{
    size_t i = 0;

    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' ||
                           value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t stop = i;
        while (stop > start && (value[stop - 1] == ' ' ||
                                value[stop - 1] == '\t'))
            stop--;
        if (stop > start && fn(value + start, stop - start, arg))
            return true;
    }
    return false;
}

static bool token_equals(const char *item, size_t item_len, void *arg)
{
    const char *token = arg;
    return strlen(token) == item_len &&
           strncasecmp(item, token, item_len) == 0;
}

bool http_list_has(const char *value, size_t len, const char *token)
{
    return http_list_each(value, len, token_equals, (void *)token);
}
