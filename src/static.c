/*
 * static.c - the I/O-free half of static file serving: which route
 * answers, which file a target names, its content type, and the
 * response head.
 *
 * The path mapping is the security boundary, so it is deliberately
 * simple and strict, in the manner of nginx's URI normalization: strip
 * the query, strip the route's prefix, percent-decode exactly once, then
 * split on '/' and rebuild the path from its segments.  Empty and "."
 * segments are dropped; a ".." segment is refused outright rather than
 * resolved, as is any NUL, control byte or backslash, decoded or not.
 * The result can therefore only name something beneath the folder by
 * its spelling; symlinks are the file half's business (static_file.c).
 */
#include "static.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "handshake.h"

/* ---- which route ------------------------------------------------------ */

const struct route *static_route(const struct route *routes, size_t n,
                                 const struct http_request *req)
{
    const struct http_header *up = http_header_find(req, "Upgrade");

    /* An upgrade keeps the exact match to a handler route, whatever the
     * folders around it hold. */
    if (up && http_list_has(up->value, up->value_len, "websocket"))
        return NULL;
    const struct route *r = route_find(routes, n, req->path, req->path_len);
    if (r)
        return r->static_dir ? r : NULL;
    return route_find_static(routes, n, req->path, req->path_len);
}

/* ---- target to relative path ----------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Ends the segment of seg_len bytes at the end of out->rel: refuses
 * "..", drops "." (with the separator before it) and sets *dot, keeps
 * the rest. */
static enum static_rc end_segment(struct static_target *out, size_t seg_len,
                                  bool *dot)
{
    const char *s = out->rel + out->rel_len - seg_len;

    *dot = seg_len == 1 && s[0] == '.';
    if (seg_len == 2 && s[0] == '.' && s[1] == '.')
        return STATIC_ERR_TRAVERSAL;
    /* Hidden files and folders (.git, .env, .htpasswd) are never
     * served: a folder published as a whole often holds some.  Only
     * /.well-known/ (RFC 8615) is meant for the world. */
    if (seg_len >= 2 && s[0] == '.' &&
        !(seg_len == 11 && memcmp(s, ".well-known", 11) == 0))
        return STATIC_ERR_TRAVERSAL;
    if (*dot) {
        out->rel_len -= 1;
        if (out->rel_len)
            out->rel_len--;   /* a separator precedes every later segment */
    }
    return STATIC_OK;
}

/* Appends one decoded byte of a segment; the separator before a segment
 * is written only with its first byte, so empty segments leave none. */
static enum static_rc push_byte(struct static_target *out, size_t *seg_len,
                                char c)
{
    size_t need = *seg_len == 0 && out->rel_len ? 2 : 1;

    if (out->rel_len + need > STATIC_PATH_MAX)
        return STATIC_ERR_TOO_LONG;
    if (need == 2)
        out->rel[out->rel_len++] = '/';
    out->rel[out->rel_len++] = c;
    (*seg_len)++;
    return STATIC_OK;
}

/* Splits the target into its path and query. */
static void split_target(const char *target, size_t len,
                         struct static_target *out)
{
    size_t p = 0;

    while (p < len && target[p] != '?' && target[p] != '#')
        p++;
    out->path = target;
    out->path_len = p;
    out->query = NULL;
    out->query_len = 0;
    if (p < len && target[p] == '?') {
        /* A fragment is not part of a request-target (RFC 9112 3.2),
         * but one sent anyway must not reach a Location field. */
        size_t q = p + 1;
        while (q < len && target[q] != '#')
            q++;
        out->query = target + p + 1;
        out->query_len = q - (p + 1);
    }
}

enum static_rc static_resolve(const char *prefix, const char *target,
                              size_t len, struct static_target *out)
{
    split_target(target, len, out);
    out->rel_len = 0;
    out->rel[0] = '\0';
    out->slash = false;

    /* The request parser lets no blank or control byte into a target
     * (RFC 9112 3.2); checked again because the path and the query are
     * copied into a Location field, where CR or LF would end it. */
    for (size_t k = 0; k < len; k++)
        if ((unsigned char)target[k] <= 0x20 || target[k] == 0x7f)
            return STATIC_ERR_MALFORMED;
    size_t i = route_prefix_len(prefix, target, out->path_len);
    if (i == ROUTE_NO_MATCH)
        return STATIC_ERR_NO_MATCH;
    size_t seg_len = 0;
    bool last_was_slash = false, dot;
    while (i < out->path_len) {
        unsigned char c = (unsigned char)target[i++];
        if (c == '%') {
            /* Decoded once only: "%252e" is the name "%2e", never ".". */
            int hi = i + 1 < out->path_len ? hex_value(target[i]) : -1;
            int lo = hi >= 0 ? hex_value(target[i + 1]) : -1;
            if (lo < 0)
                return STATIC_ERR_MALFORMED;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        /* A backslash is a separator on some systems and in browsers'
         * URL parsing: refusing it keeps one meaning of a path. */
        if (c < 0x20 || c == 0x7f || c == '\\')
            return STATIC_ERR_MALFORMED;
        last_was_slash = c == '/';
        enum static_rc rc = last_was_slash ? end_segment(out, seg_len, &dot)
                                           : push_byte(out, &seg_len, (char)c);
        if (rc != STATIC_OK)
            return rc;
        if (last_was_slash)
            seg_len = 0;
    }
    enum static_rc rc = end_segment(out, seg_len, &dot);
    if (rc != STATIC_OK)
        return rc;
    /* "/a/" and "/a/." both ask for the folder a itself. */
    out->slash = last_was_slash || dot;
    out->rel[out->rel_len] = '\0';
    return STATIC_OK;
}

/* ---- content types ---------------------------------------------------- */

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    { "html", "text/html; charset=utf-8" },
    { "htm", "text/html; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "json", "application/json" },
    { "map", "application/json" },
    { "txt", "text/plain; charset=utf-8" },
    { "svg", "image/svg+xml" },
    { "png", "image/png" },
    { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },
    { "ico", "image/x-icon" },
    { "webp", "image/webp" },
    { "wasm", "application/wasm" },
    { "woff", "font/woff" },
    { "woff2", "font/woff2" },
};

const char *static_content_type(const char *name, size_t len)
{
    size_t i = len;

    while (i > 0 && name[i - 1] != '.' && name[i - 1] != '/')
        i--;
    /* No dot in the last segment, or only a leading one (".profile"). */
    if (i < 2 || name[i - 1] != '.' || name[i - 2] == '/')
        return "application/octet-stream";
    const char *ext = name + i;
    size_t ext_len = len - i;
    for (size_t k = 0; k < sizeof content_types / sizeof content_types[0];
         k++)
        if (strlen(content_types[k].ext) == ext_len &&
            strncasecmp(content_types[k].ext, ext, ext_len) == 0)
            return content_types[k].type;
    return "application/octet-stream";
}

/* ---- HTTP dates (RFC 9110 section 5.6.7) ------------------------------ */

static const char day_names[7][4] = {
    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const char month_names[12][4] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* The last second an IMF-fixdate's four-digit year can show. */
#define DATE_MAX INT64_C(253402300799)   /* 9999-12-31 23:59:59 */

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (the
 * well-known era-based algorithm; no libc call, so no locale and no
 * time zone can interfere). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void static_format_date(char out[STATIC_DATE_LEN + 1], int64_t t)
{
    /* A file's time outside 1970..9999 is shown clamped: the field has
     * room for neither a sign nor a fifth digit. */
    if (t < 0)
        t = 0;
    if (t > DATE_MAX)
        t = DATE_MAX;
    int64_t days = t / 86400, secs = t % 86400, y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(out, STATIC_DATE_LEN + 1, "%s, %02u %s %04u %02u:%02u:%02u GMT",
             day_names[(days + 4) % 7], d, month_names[m - 1], (unsigned)y,
             (unsigned)(secs / 3600), (unsigned)(secs / 60 % 60),
             (unsigned)(secs % 60));
}

/* n decimal digits at s, or -1. */
static int digits(const char *s, size_t n)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int name_index(const char names[][4], int count, const char *s)
{
    for (int i = 0; i < count; i++)
        if (memcmp(names[i], s, 3) == 0)
            return i;
    return -1;
}

int static_parse_date(const char *s, size_t len, int64_t *t)
{
    static const unsigned month_days[12] = {
        31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    /* "Sun, 06 Nov 1994 08:49:37 GMT": fixed positions. */
    if (len != STATIC_DATE_LEN || memcmp(s + 3, ", ", 2) != 0 ||
        s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' ||
        s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    int wday = name_index(day_names, 7, s);
    int mon = name_index(month_names, 12, s + 8);
    int day = digits(s + 5, 2), year = digits(s + 12, 4);
    int hh = digits(s + 17, 2), mm = digits(s + 20, 2), ss = digits(s + 23, 2);
    if (wday < 0 || mon < 0 || day < 1 || year < 1970 || hh < 0 || hh > 23 ||
        mm < 0 || mm > 59 || ss < 0 || ss > 59)
        return -1;
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if ((unsigned)day > month_days[mon] || (mon == 1 && day == 29 && !leap))
        return -1;
    int64_t days = days_from_civil(year, (unsigned)mon + 1, (unsigned)day);
    if ((days + 4) % 7 != wday)
        return -1;
    *t = days * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}

/* ---- response heads --------------------------------------------------- */

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    default: return handshake_reason(status);
    }
}

/* snprintf at out[*pos], counting what does not fit, so that the whole
 * head's length is known even when cap is too small. */
static void put(char *out, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *out, size_t cap, size_t *pos, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = *pos < cap ? vsnprintf(out + *pos, cap - *pos, fmt, ap)
                       : vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos += (size_t)n;
}

size_t static_write_head(char *out, size_t cap, const struct static_head *h)
{
    size_t pos = 0;

    put(out, cap, &pos, "HTTP/1.1 %d %s\r\n", h->status, reason_of(h->status));
    if (h->status != 304) {
        if (h->type)
            put(out, cap, &pos, "Content-Type: %s\r\n", h->type);
        put(out, cap, &pos, "Content-Length: %llu\r\n",
            (unsigned long long)h->length);
    }
    if (h->has_mtime) {
        char date[STATIC_DATE_LEN + 1];
        static_format_date(date, h->mtime);
        put(out, cap, &pos, "Last-Modified: %s\r\n", date);
    }
    if (h->redirect) {
        /* The path as the client sent it: still percent-encoded, and free
         * of CR, LF and blanks, which the request parser refuses. */
        const struct static_target *t = h->redirect;
        const char *path = t->path;
        size_t len = t->path_len;
        /* "//host/" would name another host: one leading slash only. */
        while (len > 1 && path[0] == '/' && path[1] == '/') {
            path++;
            len--;
        }
        put(out, cap, &pos, "Location: %.*s/%s%.*s\r\n", (int)len, path,
            t->query ? "?" : "", (int)t->query_len,
            t->query ? t->query : "");
    }
    if (h->status == 405)
        put(out, cap, &pos, "Allow: GET, HEAD\r\n");
    put(out, cap, &pos, "X-Content-Type-Options: nosniff\r\n"
        "Cache-Control: no-cache\r\n"
        "Connection: close\r\n\r\n");
    return pos;
}
