/*
 * log.c - log lines on stderr, one write(2) each so that lines from
 * several processes never interleave.
 *
 * The format is decided once in the master, before the fork, and every
 * worker inherits it with the descriptor it describes.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_INFO;
static bool journal;

/* Reads one decimal number ending at `stop`; false if there is none. */
static bool read_number(const char **p, char stop, unsigned long long *out)
{
    char *end;

    if (**p < '0' || **p > '9')
        return false;
    errno = 0;
    *out = strtoull(*p, &end, 10);
    if (errno != 0 || *end != stop)
        return false;
    *p = end + (stop != '\0');
    return true;
}

/* systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it gave a
 * service for stdout or stderr.  The variable is inherited by whatever
 * the service starts, which may log elsewhere, so it counts only while
 * stderr is still that stream (sd-daemon(3), systemd.exec(5)). */
static bool stderr_is_journal(void)
{
    const char *p = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!p || !read_number(&p, ':', &dev) || !read_number(&p, '\0', &ino))
        return false;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

void log_init(void)
{
    journal = stderr_is_journal();
}

void log_set_format(enum log_format format)
{
    journal = format == LOG_FORMAT_JOURNAL ||
              (format == LOG_FORMAT_AUTO && stderr_is_journal());
}

static const char *level_name(enum log_level level)
{
    switch (level) {
    case LOG_ERROR: return "error";
    case LOG_WARN: return "warn";
    case LOG_INFO: return "info";
    default: return "debug";
    }
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const enum log_level all[] = { LOG_ERROR, LOG_WARN, LOG_INFO,
                                          LOG_DEBUG };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, level_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return -1;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "auto") == 0)
        *out = LOG_FORMAT_AUTO;
    else if (strcmp(s, "plain") == 0)
        *out = LOG_FORMAT_PLAIN;
    else if (strcmp(s, "journal") == 0)
        *out = LOG_FORMAT_JOURNAL;
    else
        return -1;
    return 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    size_t n;

    if (level > log_threshold)
        return;
    if (journal) {
        /* The journal timestamps each line itself and shows the level
         * from the prefix; the pid tells the master from a worker, as
         * every process of the daemon shares the one stream. */
        n = (size_t)snprintf(line, sizeof line, "<%d>[%d] ", (int)level,
                             (int)getpid());
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ [%d] %s: ",
                              (int)(tv.tv_usec / 1000), (int)getpid(),
                              level_name(level));
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
