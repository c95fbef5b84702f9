/*
 * log.h - the daemon's log lines, on stderr.
 *
 * Two formats.  Plain: a UTC timestamp, the pid and the level, then the
 * message.  Journal: a priority prefix that journald reads ("<3>", see
 * sd-daemon(3)), then the pid and the message, and no timestamp, since
 * the journal records its own.  The journal format is chosen when stderr
 * is the stream systemd connected to the journal (JOURNAL_STREAM names
 * its device and inode), or when the configuration asks for it.
 */
#ifndef SNOWD_LOG_H
#define SNOWD_LOG_H

/* The values are syslog's, as journald's prefixes use them. */
enum log_level { LOG_ERROR = 3, LOG_WARN = 4, LOG_INFO = 6, LOG_DEBUG = 7 };

enum log_format { LOG_FORMAT_AUTO, LOG_FORMAT_PLAIN, LOG_FORMAT_JOURNAL };

extern enum log_level log_threshold;

/* Chooses the format automatically: journal iff stderr is the journal. */
void log_init(void);

/* Sets the format; LOG_FORMAT_AUTO detects it as log_init does. */
void log_set_format(enum log_format format);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses "error", "warn", "info" or "debug"; returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);

/* Parses "auto", "plain" or "journal"; returns 0 or -1. */
int log_format_parse(const char *s, enum log_format *out);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_threshold >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
