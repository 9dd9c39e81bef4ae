/*
 * log: leveled logging to stderr, one line per event, in the shape etcd's
 * default logger uses (JSON object with level, ts, caller-free msg), so log
 * scrapers written for etcd keep working.
 */
#ifndef IKADA_LOG_H
#define IKADA_LOG_H

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
    LOG_FATAL,
};

/* Parse etcd's --log-level names (debug, info, warn, error, panic, fatal).
 * Returns the level or -1 when @name is not one of them. */
int log_level_parse(const char *name);

/* Messages below @level are dropped. Default LOG_INFO. */
void log_set_level(enum log_level level);

/* Emit one line: {"level":"info","ts":"<RFC3339>","msg":"<text>"}. The text
 * is JSON-escaped. */
void log_emit(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_emit(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_emit(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_emit(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_emit(LOG_ERROR, __VA_ARGS__)

#endif /* IKADA_LOG_H */
