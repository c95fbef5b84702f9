/*
 * log.h - the daemon's log lines, on stderr.
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with a journald
 * priority prefix ("<3>"); otherwise with a UTC timestamp and the level.
 */
#ifndef SNOWD_LOG_H
#define SNOWD_LOG_H

enum log_level { LOG_ERROR = 3, LOG_WARN = 4, LOG_INFO = 6, LOG_DEBUG = 7 };

extern enum log_level log_threshold;

void log_init(void);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses "error", "warn", "info" or "debug"; returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_threshold >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
