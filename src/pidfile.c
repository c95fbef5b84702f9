/*
 * pidfile.c - the pid file (see pidfile.h).
 *
 * The file is written by rename(2), so a reader sees the old content or
 * the whole new one, never a part.  Nothing locks it: the check at start
 * asks the kernel whether the pid in it is alive, which is what every
 * tool reading the file does too.
 */
#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Reads the pid in path: > 0, 0 when there is no file, -1 when it holds
 * no pid, or -2 after logging a read error. */
static long read_pid(const char *path)
{
    char text[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        log_error("pid_file %s: cannot open: %s", path, strerror(errno));
        return -2;
    }
    ssize_t n = read(fd, text, sizeof text - 1);
    int err = errno;
    close(fd);
    if (n < 0) {
        log_error("pid_file %s: cannot read: %s", path, strerror(err));
        return -2;
    }
    text[n] = '\0';
    char *end;
    errno = 0;
    long pid = text[0] >= '0' && text[0] <= '9' ? strtol(text, &end, 10) : 0;
    if (pid <= 0 || pid > INT_MAX || errno != 0 ||
        (*end != '\0' && strcmp(end, "\n") != 0))
        return -1;
    return pid;
}

int pidfile_check(const char *path)
{
    if (!path)
        return 0;
    long pid = read_pid(path);
    if (pid == 0)
        return 0;
    if (pid == -2)
        return -1;
    if (pid == -1) {
        log_warn("pid_file %s: holds no pid; replacing it", path);
        return 0;
    }
    /* Our own pid can only be left from an earlier life, as when the
     * daemon is the first process of a container started again. */
    if (pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
        log_error("pid_file %s: another snowd (pid %ld) is running; stop it "
                  "first, or remove the file if that process is not snowd",
                  path, pid);
        return -1;
    }
    log_warn("pid_file %s: pid %ld is not running; replacing the stale "
             "file", path, pid);
    return 0;
}

int pidfile_write(const char *path)
{
    char *tmp = NULL, text[32];
    const char *call;
    int fd, len, err;

    if (!path)
        return 0;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        abort();
    len = snprintf(text, sizeof text, "%d\n", (int)getpid());
    call = "mkstemp";
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        goto fail;
    call = "fchmod";
    if (fchmod(fd, 0644) != 0)
        goto fail_unlink;
    call = "write";
    errno = EIO;   /* what a short write means */
    if (write(fd, text, (size_t)len) != len)
        goto fail_unlink;
    call = "close";
    err = close(fd);
    fd = -1;
    if (err != 0)
        goto fail_unlink;
    call = "rename";
    if (rename(tmp, path) != 0)
        goto fail_unlink;
    free(tmp);
    return 0;

fail_unlink:
    err = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = err;
fail:
    log_error("pid_file %s: cannot write it: %s %s: %s", path, call, tmp,
              strerror(errno));
    free(tmp);
    return -1;
}

void pidfile_remove(const char *path)
{
    if (!path)
        return;
    long pid = read_pid(path);
    if (pid == getpid()) {
        if (unlink(path) != 0)
            log_warn("pid_file %s: cannot remove it: %s", path,
                     strerror(errno));
    } else if (pid > 0) {
        log_warn("pid_file %s: now holds pid %ld, not ours; left in place",
                 path, pid);
    }
}
