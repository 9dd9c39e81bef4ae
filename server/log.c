#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level log_min = LOG_INFO;

static const char *const log_names[] = {"debug", "info", "warn", "error",
                                        "fatal"};

int log_level_parse(const char *name)
{
    if (strcmp(name, "panic") == 0) {
        return LOG_FATAL;
    }
    for (int i = 0; i <= LOG_FATAL; i++) {
        if (strcmp(name, log_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    log_min = level;
}

/* Append @s to @out (capacity @cap, current length *n) as JSON string
 * content. */
static void json_escape(char *out, size_t cap, size_t *n, const char *s)
{
    for (; *s != '\0' && *n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*n)++] = '\\';
            out[(*n)++] = (char)c;
        } else if (c < 0x20) {
            *n += (size_t)snprintf(out + *n, cap - *n, "\\u%04x", c);
        } else {
            out[(*n)++] = (char)c;
        }
    }
    out[*n] = '\0';
}

void log_emit(enum log_level level, const char *fmt, ...)
{
    char msg[1024];
    char line[2400];
    char ts[64];
    struct timeval tv;
    struct tm tm;
    size_t n;
    va_list ap;

    if (level < log_min) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%06ldZ", (long)tv.tv_usec);

    n = (size_t)snprintf(line, sizeof line,
                         "{\"level\":\"%s\",\"ts\":\"%s\",\"msg\":\"",
                         log_names[level], ts);
    json_escape(line, sizeof line - 4, &n, msg);
    memcpy(line + n, "\"}\n", 4);
    fputs(line, stderr);
}
