/*
 * static_file.c - the file half of static serving: finds the file a
 * request names beneath the route's folder, checks it, reads it and
 * builds the reply.  static.c has already made the path safe to spell.
 *
 * Symlinks inside the folder are followed, as a web server would, but
 * the file reached must lie beneath the folder: realpath(3) gives the
 * canonical name, which must start with the folder's (canonical since
 * the config was loaded).  The file is then opened by that name with
 * O_NOFOLLOW, its identity compared with what was checked, and the name
 * the kernel gives the open descriptor checked again, so that a folder
 * swapped for a symlink in between cannot lead outside.  Only regular
 * files are opened at all: a FIFO or a device is never touched.
 *
 * The worker's loop waits while a file is read: files are local and
 * small (at most STATIC_FILE_MAX), and this serves a demo page, not a
 * download site.
 */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handshake.h"
#include "log.h"

/* A request being answered. */
struct answer {
    const struct route *r;
    const struct http_request *req;
    struct static_target t;
    char rel[STATIC_PATH_MAX + sizeof "/index.html"];  /* what is served */
    char canon[PATH_MAX];
    struct stat st;
    int fd;
};

/* True when canon is root itself or lies beneath it. */
static bool beneath(const char *root, const char *canon)
{
    size_t n = strlen(root);

    if (n == 1)
        return canon[0] == '/';   /* the folder is "/" */
    return strncmp(canon, root, n) == 0 &&
           (canon[n] == '\0' || canon[n] == '/');
}

/* Finds rel beneath root: fills canon and *st.  Returns 0, or -ENOENT
 * for what is neither a regular file nor a folder, -EXDEV when a symlink
 * leads outside root, or the -errno of the failed call. */
static int find(const char *root, const char *rel, char canon[PATH_MAX],
                struct stat *st)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", root, rel);

    if (n < 0 || (size_t)n >= sizeof path)
        return -ENAMETOOLONG;
    if (!realpath(path, canon))
        return -errno;
    if (!beneath(root, canon))
        return -EXDEV;
    if (lstat(canon, st) != 0)
        return -errno;
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
        return -ENOENT;
    return 0;
}

/* Where the kernel says fd leads.  Without /proc, the realpath check
 * made before the open stands alone. */
static bool fd_beneath(const char *root, int fd)
{
    char link[64], where[PATH_MAX];

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, where, sizeof where - 1);
    if (n < 0)
        return true;
    where[n] = '\0';
    return beneath(root, where);
}

/* Opens the regular file that find() checked; -errno on failure. */
static int open_checked(struct answer *a)
{
    int fd = open(a->canon, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                  O_NOCTTY);
    struct stat now;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &now) != 0 || now.st_dev != a->st.st_dev ||
        now.st_ino != a->st.st_ino || !S_ISREG(now.st_mode)) {
        close(fd);
        return -ENOENT;   /* replaced since it was checked */
    }
    if (!fd_beneath(a->r->static_dir, fd)) {
        close(fd);
        return -EXDEV;
    }
    a->st = now;
    return fd;
}

/* Finds and opens the file for a->t.  Returns 0 with a->fd open, 301
 * for a folder asked for without its slash, or a -errno. */
static int locate(struct answer *a)
{
    const char *root = a->r->static_dir;

    snprintf(a->rel, sizeof a->rel, "%s", a->t.rel);
    int rc = find(root, a->rel, a->canon, &a->st);
    if (rc == 0 && S_ISDIR(a->st.st_mode)) {
        if (!a->t.slash)
            return 301;
        snprintf(a->rel, sizeof a->rel, "%s%sindex.html", a->t.rel,
                 a->t.rel_len ? "/" : "");
        rc = find(root, a->rel, a->canon, &a->st);
        if (rc == 0 && !S_ISREG(a->st.st_mode))
            rc = -ENOENT;
    } else if (rc == 0 && a->t.slash) {
        rc = -ENOTDIR;   /* "/page.html/" names no folder */
    }
    if (rc != 0)
        return rc;
    a->fd = open_checked(a);
    return a->fd < 0 ? a->fd : 0;
}

/* The status for a failure of locate(), logged when the operator should
 * know: missing files are the client's business, the rest is not.
 * Every "cannot" is 404 unless the server itself is failing, so that the
 * answer never tells what exists outside the folder or is protected. */
static int failure_status(const struct answer *a, int err)
{
    switch (-err) {
    case ENOENT: case ENOTDIR: case ENAMETOOLONG:
        return 404;
    case EXDEV:
        log_warn("static %s: %s/%s leads outside %s; answering 404",
                 a->r->path, a->r->static_dir, a->rel, a->r->static_dir);
        return 404;
    case EACCES: case ELOOP:
        log_warn("static %s: %s/%s: %s; answering 404", a->r->path,
                 a->r->static_dir, a->rel, strerror(-err));
        return 404;
    default:
        log_warn("static %s: %s/%s: %s; answering 500", a->r->path,
                 a->r->static_dir, a->rel, strerror(-err));
        return 500;
    }
}

/* RFC 9110 section 13.1.3: not modified when the file is no newer than
 * the date the client has.  An If-None-Match takes precedence (13.2.2),
 * and with no ETag here it never matches, so the file is sent. */
static bool not_modified(const struct http_request *req, const struct stat *st)
{
    const struct http_header *h = http_header_find(req, "If-Modified-Since");
    int64_t since;

    if (!h || http_header_find(req, "If-None-Match"))
        return false;
    return static_parse_date(h->value, h->value_len, &since) == 0 &&
           (int64_t)st->st_mtime <= since;
}

/* Reads up to size bytes; a file that shrank meanwhile gives less. */
static int read_all(int fd, char *buf, size_t size, size_t *got)
{
    size_t off = 0;

    while (off < size) {
        ssize_t n = read(fd, buf + off, size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        off += (size_t)n;
    }
    *got = off;
    return 0;
}

static void set_head(struct static_reply *out, const struct static_head *h)
{
    size_t n = static_write_head(NULL, 0, h);

    out->status = h->status;
    out->head = malloc(n + 1);
    if (!out->head)
        abort();
    out->head_len = static_write_head(out->head, n + 1, h);
}

/* An error answer, with a one-line body naming the status. */
static void reply_error(struct static_reply *out, int status, bool head_only)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%s\n", handshake_reason(status));
    struct static_head h = { .status = status, .length = (size_t)n,
                             .type = "text/plain; charset=utf-8" };

    set_head(out, &h);
    if (!head_only) {
        out->body = strdup(body);
        if (!out->body)
            abort();
        out->body_len = (size_t)n;
    }
}

/* 200 or 304 for the open file; 500 when it is too large or unreadable. */
static void reply_file(struct answer *a, struct static_reply *out,
                       bool head_only)
{
    struct static_head h = { .status = 200, .has_mtime = true,
                             .mtime = (int64_t)a->st.st_mtime,
                             .length = (uint64_t)a->st.st_size,
                             .type = static_content_type(a->rel,
                                                         strlen(a->rel)) };

    if (not_modified(a->req, &a->st)) {
        h.status = 304;
    } else if (h.length > STATIC_FILE_MAX) {
        log_warn("static %s: %s: %llu bytes, over the %llu served; "
                 "answering 500", a->r->path, a->canon,
                 (unsigned long long)h.length,
                 (unsigned long long)STATIC_FILE_MAX);
        reply_error(out, 500, head_only);
        return;
    } else if (!head_only) {
        out->body = malloc(h.length ? h.length : 1);
        if (!out->body)
            abort();
        int rc = read_all(a->fd, out->body, h.length, &out->body_len);
        if (rc != 0) {
            log_warn("static %s: %s: read: %s; answering 500", a->r->path,
                     a->canon, strerror(-rc));
            static_reply_free(out);
            reply_error(out, 500, head_only);
            return;
        }
        h.length = out->body_len;
    }
    set_head(out, &h);
}

/* 0 when the method and the head allow an answer, else its status. */
static int request_status(const struct http_request *req, bool *head_only)
{
    *head_only = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    if (!*head_only &&
        !(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0))
        return 405;
    /* RFC 9112 section 3.2: a 1.1 request without Host is answered 400. */
    if (req->version_minor >= 1 && !http_header_find(req, "Host"))
        return 400;
    return 0;
}

void static_answer(const struct route *r, const struct http_request *req,
                   struct static_reply *out)
{
    struct answer a = { .r = r, .req = req, .fd = -1 };
    bool head_only;
    int status = request_status(req, &head_only);

    *out = (struct static_reply){ 0 };
    if (status == 0 &&
        static_resolve(r->path, req->target, req->target_len, &a.t) !=
        STATIC_OK)
        status = 404;   /* refused as if missing: see static.h */
    if (status == 0) {
        int rc = locate(&a);
        status = rc == 301 ? 301 : rc < 0 ? failure_status(&a, rc) : 0;
    }
    if (status == 301) {
        struct static_head h = { .status = 301, .redirect = &a.t };
        set_head(out, &h);
    } else if (status) {
        reply_error(out, status, head_only);
    } else {
        reply_file(&a, out, head_only);
        close(a.fd);
    }
    log_debug("static %s: %.*s %.*s: %d, %zu bytes", r->path,
              (int)req->method_len, req->method,
              (int)(req->target_len < 256 ? req->target_len : 256),
              req->target, out->status, out->body_len);
}

void static_reply_free(struct static_reply *rep)
{
    free(rep->head);
    free(rep->body);
    *rep = (struct static_reply){ 0 };
}
