/*
 * log.c - log lines on stderr, one write(2) each so that lines from
 * several processes never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_INFO;
static int journal;

void log_init(void)
{
    journal = getenv("JOURNAL_STREAM") != NULL;
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

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    size_t n;

    if (level > log_threshold)
        return;
    if (journal) {
        n = (size_t)snprintf(line, sizeof line, "<%d>", (int)level);
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
